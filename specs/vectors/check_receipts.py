# Independent derivation and check of specs/vectors/receipts.json
# (specs/storage.md §4, signed replica answers):
#   python3 specs/vectors/check_receipts.py          check the file
#   python3 specs/vectors/check_receipts.py --write  write it afresh
# Needs the `cryptography` package (Ed25519, RFC 8032; signatures are
# deterministic). Re-implements, from the spec and not from the Rust code:
# the signed statement, the answer trailer and the signed-answer list.
import hashlib, json, os, sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

HERE = os.path.dirname(os.path.abspath(__file__))
DOMAIN = b"mtos/replica-answer/1"
NONCE_DOMAIN = b"mtos/replica-nonce/1"
OPS = {"put": 1, "get": 2, "probe": 3, "have": 4}
STATUS = {"ok": 0x10, "not_found": 0x11, "refused": 0x12, "error": 0x13}


def key_of(seed):
    sk = Ed25519PrivateKey.from_private_bytes(seed)
    pk = sk.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return sk, pk


def statement(nonce, epoch, node, op, status, rest, detail):
    return (
        DOMAIN
        + nonce
        + epoch.to_bytes(4, "big")
        + node
        + bytes([OPS[op], STATUS[status]])
        + hashlib.sha256(rest).digest()
        + hashlib.sha256(detail).digest()
    )


def replica_nonce(request_id, node):
    return hashlib.sha256(NONCE_DOMAIN + request_id + node).digest()[:16]


def derive(case):
    seed = bytes.fromhex(case["node_seed"])
    sk, node = key_of(seed)
    nonce = replica_nonce(bytes.fromhex(case["request_id"]), node)
    rest = bytes.fromhex(case["request_rest"])
    detail = bytes.fromhex(case["detail"])
    s = statement(nonce, case["epoch"], node, case["op"], case["status"], rest, detail)
    sig = sk.sign(s)
    out = dict(case)
    out["node"] = node.hex()
    out["nonce"] = nonce.hex()
    out["request_body"] = (nonce + rest).hex()
    out["statement"] = s.hex()
    out["signature"] = sig.hex()
    out["answer_body"] = (detail + case["epoch"].to_bytes(4, "big") + sig).hex()
    scope = bytes.fromhex(case["scope"])
    out["signed_answer"] = (
        node
        + bytes([STATUS[case["status"]]])
        + case["epoch"].to_bytes(4, "big")
        + len(scope).to_bytes(2, "big")
        + scope
        + len(detail).to_bytes(2, "big")
        + detail
        + sig
    ).hex()
    return out


def put_rest(kind, locator, stamp, record):
    # kind, locator, the put's storage stamp (32 bytes, storage.md §2:
    # opaque here, the replica checks it) and the record
    assert len(stamp) == 32
    return bytes([kind]) + locator + stamp + record


CASES = [
    {
        "name": "a chunk stored",
        "node_seed": "01" * 32,
        "request_id": "a0" * 16,
        "epoch": 41,
        "op": "put",
        "status": "ok",
        # kind 1 (chunk), locator, stamp, record
        "request_rest": put_rest(1, bytes(range(32)), bytes([0x5c]) * 32, b"chunk bytes").hex(),
        "scope": "",
        "detail": "",
    },
    {
        "name": "a slot refused as taken",
        "node_seed": "02" * 32,
        "request_id": "b1" * 16,
        "epoch": 42,
        "op": "put",
        "status": "refused",
        "request_rest": put_rest(2, bytes([0x33]) * 32, bytes([0x5d]) * 32, b"slot record").hex(),
        "scope": "",
        "detail": b"slot_taken".hex(),
    },
    {
        "name": "a probe of three slots, the second held",
        "node_seed": "03" * 32,
        "request_id": "c2" * 16,
        "epoch": 7,
        "op": "probe",
        "status": "ok",
        # locators 0, 2 and 3 of a probe of five (scope 1011 0...)
        "request_rest": (bytes([1]) * 32 + bytes([2]) * 32 + bytes([3]) * 32).hex(),
        "scope": "b0",
        "detail": "40",
    },
]


def build():
    cases = [derive(c) for c in CASES]
    # A response body: the list of the first two answers.
    listed = bytes([2]) + b"".join(bytes.fromhex(c["signed_answer"]) for c in cases[:2])
    return {
        "spec": "specs/storage.md §4 (signed replica answers)",
        "domain": DOMAIN.decode(),
        "cases": cases,
        "list_of_first_two": listed.hex(),
    }


def main():
    path = os.path.join(HERE, "receipts.json")
    want = build()
    if "--write" in sys.argv:
        with open(path, "w") as f:
            json.dump(want, f, indent=2)
            f.write("\n")
        print("wrote", path)
        return
    with open(path) as f:
        have = json.load(f)
    assert have == want, "receipts.json differs from the spec's derivation"
    print("receipts.json: %d cases re-derived" % len(want["cases"]))


main()
