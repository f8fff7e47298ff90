# Independent check of specs/vectors/identity.json (specs/identity.md §1-§9):
# python3 specs/vectors/check_identity.py
# Needs the `cryptography` package (Ed25519, X25519). Rebuilds, from the spec
# and not from the Rust code: each identity's keys from its secrets, the public
# identity record and its self-signature, the mtos:id: URI, the fingerprint,
# the secret record, the keychain plaintext of version 1 (identities) and of
# version 2 (identities, then contacts with a flagged key change).
import base64, hashlib, json, os, struct

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

HERE = os.path.dirname(os.path.abspath(__file__))
RAW = (serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def str8(s):
    b = s.encode()
    assert 1 <= len(b) <= 64
    return bytes([len(b)]) + b


def public_record(vk, ek, label, sig):
    return b"\x01" + vk + ek + str8(label) + sig


def parse_public(rec):
    assert rec[0] == 1
    vk, ek = rec[1:33], rec[33:65]
    n = rec[65]
    label = rec[66 : 66 + n].decode()
    sig = rec[66 + n :]
    assert len(sig) == 64
    body = b"mtos-public-identity-v1" + rec[: 66 + n]
    Ed25519PublicKey.from_public_bytes(vk).verify(sig, body)
    return vk, ek, label


def fingerprint(vk, ek):
    d = hashlib.sha512(b"mtos-fingerprint-v1" + vk + ek).digest()
    for _ in range(5200):
        d = hashlib.sha512(d + vk + ek).digest()
    return "".join("%05d" % (int.from_bytes(d[5 * i : 5 * i + 5], "big") % 100000) for i in range(6))


def secret_record(e):
    vis = {"public": 0, "private": 1}[e["visibility"]]
    return (
        bytes([vis])
        + struct.pack(">Q", e["created"])
        + str8(e["label"])
        + bytes.fromhex(e["ed25519_seed"])
        + bytes.fromhex(e["x25519_secret"])
    )


def main():
    with open(os.path.join(HERE, "identity.json")) as f:
        v = json.load(f)
    records = []
    for e in v["identities"]:
        seed, x = bytes.fromhex(e["ed25519_seed"]), bytes.fromhex(e["x25519_secret"])
        vk = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(*RAW)
        ek = X25519PrivateKey.from_private_bytes(x).public_key().public_bytes(*RAW)
        assert vk.hex() == e["verify_key"] and ek.hex() == e["encryption_key"], e["label"]
        assert e["id"] == vk[:8].hex()
        rec = bytes.fromhex(e["public_identity"])
        assert parse_public(rec) == (vk, ek, e["label"])
        uri = "mtos:id:" + base64.b32encode(rec).decode().rstrip("=").lower()
        assert uri == e["uri"], "uri"
        assert fingerprint(vk, ek) == e["fingerprint"], "fingerprint"
        sr = secret_record(e)
        assert sr.hex() == e["secret_record"], "secret record"
        records.append(sr)
    v1 = b"MTOSKEYCHAIN\x01" + struct.pack(">H", len(records)) + b"".join(records)
    assert v1.hex() == v["keychain_v1_plaintext"], "keychain v1"
    # Version 2: the first two identities, then the contacts.
    v2 = b"MTOSKEYCHAIN\x02" + struct.pack(">H", 2) + b"".join(records[:2])
    v2 += struct.pack(">H", len(v["contacts"]))
    for c in v["contacts"]:
        rec = bytes.fromhex(c["public_identity"])
        vk, ek, _ = parse_public(rec)
        changed = bytes.fromhex(c["changed"]) if c["changed"] else b""
        if changed:
            cvk, cek, _ = parse_public(changed)
            assert cvk == vk and cek != ek, "a change keeps the verify key and changes the encryption key"
        assert 1 <= c["source"] <= 6
        v2 += str8(c["label"]) + bytes([c["source"]]) + struct.pack(">QQ", c["added"], c["verified"])
        v2 += struct.pack(">H", len(rec)) + rec + struct.pack(">H", len(changed)) + changed
    assert v2.hex() == v["keychain_v2_plaintext"], "keychain v2"
    for s in v["safety_numbers"]:
        fa = v["identities"][s["a"]]["fingerprint"]
        fb = v["identities"][s["b"]]["fingerprint"]
        assert s["digits"] == min(fa, fb) + max(fa, fb), "safety number"
    print("identity.json: %d identities, %d contacts, keychains v1 and v2 match" % (len(records), len(v["contacts"])))


main()
