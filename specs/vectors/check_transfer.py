# Independent check of specs/vectors/transfer.json (specs/transfer.md):
# /usr/bin/python3 specs/vectors/check_transfer.py
# Needs Debian's python3-spake2 (Brian Warner's python-spake2, the SPAKE2
# Magic Wormhole uses) and python3-cryptography. Rebuilds from the spec: the
# normalized code from what was typed (BIP 39 words by their first four
# letters), the rendezvous seeds, both SPAKE2 elements and keys from the fixed
# entropy, the frame keys, the invite body, and every sealed frame.
import json, os, struct

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from spake2 import SPAKE2_Symmetric

HERE = os.path.dirname(os.path.abspath(__file__))
from pure_blake3 import derive_key

BODY = 1024
WORDS = open(os.path.join(HERE, "..", "..", "crypto", "src", "transfer", "words.txt")).read().split()
assert len(WORDS) == 2048 and WORDS == sorted(WORDS)
assert len({w[:4] for w in WORDS}) == 2048


def normalize(typed, n_words):
    parts = [p for p in typed.replace("-", " ").split() if p]
    channel = int(parts[0])
    assert 1 <= channel <= 999999
    words = []
    for p in parts[1:]:
        p = p.lower()
        hits = [w for w in WORDS if w == p] or [w for w in WORDS if len(p) >= 4 and w.startswith(p)]
        assert len(hits) == 1, p
        words.append(hits[0])
    assert len(words) == n_words
    return "-".join([str(channel)] + words)


def capacity(role, i):
    return BODY - 32 - 16 if (role == 1 and i == 0) else BODY - 16


def frames(role, key, aad_prefix, element, payload):
    stream = struct.pack(">I", len(payload)) + payload
    out, i = [], 0
    while not out or stream:
        cap = capacity(role, i)
        plain, stream = stream[:cap].ljust(cap, b"\0"), stream[cap:]
        aad = aad_prefix + bytes([role]) + struct.pack(">I", i)
        sealed = ChaCha20Poly1305(key).encrypt(bytes(8) + struct.pack(">I", i), plain, aad)
        body = (element + sealed) if (role == 1 and i == 0) else sealed
        assert len(body) == BODY
        out.append({"slot": i + 1 if role == 0 else i, "body": body.hex()})
        i += 1
    return out


def main():
    with open(os.path.join(HERE, "transfer.json")) as f:
        v = json.load(f)
    for c in v["cases"]:
        p, e, ch = c["purpose"], c["epoch"], c["channel"]
        code = normalize(c["typed"], {1: 2, 2: 4}[p])
        assert code == c["code"] and int(code.split("-")[0]) == ch
        context = b"mtos-transfer-v1" + bytes([p]) + struct.pack(">QI", e, ch)
        for r, name in ((0, "inviter"), (1, "accepter")):
            seed = derive_key("mtos-transfer-v1 slots", bytes([p]) + struct.pack(">QI", e, ch) + bytes([r]))
            assert seed.hex() == c[name]["seed"], "seed"
        sides = []
        for name in ("inviter", "accepter"):
            entropy = bytes.fromhex(c["entropy_" + name])
            # python-spake2 reads its 64 bytes big-endian, the Rust crate
            # little-endian: the same scalar from the reversed bytes.
            s = SPAKE2_Symmetric(code.encode(), idSymmetric=context, entropy_f=lambda n, b=entropy[::-1]: b[:n])
            msg = s.start()
            assert msg[:1] == b"S" and msg[1:].hex() == c["element_" + name], "element " + name
            sides.append((s, msg))
        (sa, ma), (sb, mb) = sides
        key_a, key_b = sa.finish(mb), sb.finish(ma)
        assert key_a == key_b
        k_inv = derive_key("mtos-transfer-v1 inviter", key_a)
        k_acc = derive_key("mtos-transfer-v1 accepter", key_a)
        fill = bytes.fromhex(c["invite_fill"])
        assert len(fill) == BODY - 32
        assert (ma[1:] + fill).hex() == c["invite_body"], "invite body"
        got_a = frames(0, k_inv, context, None, bytes.fromhex(c["payload_inviter"]))
        got_b = frames(1, k_acc, context, mb[1:], bytes.fromhex(c["payload_accepter"]))
        assert got_a == c["frames_inviter"], "inviter frames"
        assert got_b == c["frames_accepter"], "accepter frames"
    print("transfer.json: %d exchanges match (python-spake2)" % len(v["cases"]))


main()
