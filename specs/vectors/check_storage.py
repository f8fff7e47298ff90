# Independent check of specs/vectors/slots.json, placement.json
# (specs/storage.md) and feeds.json (specs/feeds.md):
# python3 specs/vectors/check_storage.py
# Needs the blake3 and cryptography packages. Uses
# pure-Python Ed25519 arithmetic (RFC 8032 reference style), blake3, and
# `cryptography` for signature verification.
import json, hashlib, os, blake3
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey, Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization

HERE = os.path.dirname(os.path.abspath(__file__))

p = 2**255 - 19
l = 2**252 + 27742317777372353535851937790883648493
d = -121665 * pow(121666, p - 2, p) % p
def inv(x): return pow(x, p - 2, p)
def add(P, Q):
    x1, y1, z1, t1 = P; x2, y2, z2, t2 = Q
    A = (y1 - x1) * (y2 - x2) % p; B = (y1 + x1) * (y2 + x2) % p
    C = 2 * t1 * t2 * d % p; D = 2 * z1 * z2 % p
    E, F, G, H = B - A, D - C, D + C, B + A
    return (E * F % p, G * H % p, F * G % p, E * H % p)
def mul(s, P):
    Q = (0, 1, 1, 0)
    while s > 0:
        if s & 1: Q = add(Q, P)
        P = add(P, P); s >>= 1
    return Q
def compress(P):
    x, y, z, _ = P; zi = inv(z); x = x * zi % p; y = y * zi % p
    return int.to_bytes(y | ((x & 1) << 255), 32, "little")
modp_sqrt_m1 = pow(2, (p - 1) // 4, p)
def recover_x(y, sign):
    x2 = (y * y - 1) * inv(d * y * y + 1)
    x = pow(x2, (p + 3) // 8, p)
    if (x * x - x2) % p != 0: x = x * modp_sqrt_m1 % p
    assert (x * x - x2) % p == 0
    if (x & 1) != sign: x = p - x
    return x
def decompress(b):
    y = int.from_bytes(b, "little"); sign = y >> 255; y &= (1 << 255) - 1
    x = recover_x(y, sign); return (x, y, 1, x * y % p)
gy = 4 * inv(5) % p; G = (recover_x(gy, 0), gy, 1, recover_x(gy, 0) * gy % p)

v = json.load(open(os.path.join(HERE, "slots.json")))
seed = bytes.fromhex(v["feed_seed"])
hh = hashlib.sha512(seed).digest()
a = int.from_bytes(hh[:32], "little"); a &= (1 << 254) - 8; a |= 1 << 254
prefix = hh[32:]
A = compress(mul(a, G))
assert A.hex() == v["feed_key"]
pub = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
assert pub == A
for c in v["cases"]:
    n = c["slot"].to_bytes(8, "big")
    h = int.from_bytes(blake3.blake3(A + n, derive_key_context="mtos-slot-blind-v1").digest(length=64), "little") % l
    assert h.to_bytes(32, "little").hex() == c["blinding_scalar"]
    Ab = compress(mul(h, decompress(A)))
    assert Ab.hex() == c["slot_key"]
    loc = blake3.blake3(Ab, derive_key_context="mtos-slot-locator-v1").digest()
    assert loc.hex() == c["locator"]
    ab = h * a % l
    pb = blake3.blake3(prefix + n, derive_key_context="mtos-slot-prefix-v1").digest()
    M = b"mtos-slot-sig-v1" + Ab + b"slot body"
    r = int.from_bytes(hashlib.sha512(pb + M).digest(), "little") % l
    R = compress(mul(r, G))
    k = int.from_bytes(hashlib.sha512(R + Ab + M).digest(), "little") % l
    S = (r + k * ab) % l
    sig = R + S.to_bytes(32, "little")
    assert (Ab + sig + b"slot body").hex() == c["record"], "record bytes"
    Ed25519PublicKey.from_public_bytes(Ab).verify(sig, M)
print("slots: python agrees on", len(v["cases"]), "cases")

v = json.load(open(os.path.join(HERE, "placement.json")))
nodes = [bytes.fromhex(n) for n in v["nodes"]]
salts = [bytes.fromhex(n) for n in v["salts"]]
assert v["context"] == "mtos-placement-v2"
for c in v["cases"]:
    loc = bytes.fromhex(c["locator"])
    w = [blake3.blake3(loc + n + s, derive_key_context="mtos-placement-v2").digest() for n, s in zip(nodes, salts)]
    assert [x.hex() for x in w] == c["weights"]
    top = [n for _, n in sorted(zip(w, nodes), reverse=True)[:3]]
    assert [n.hex() for n in top] == c["replicas"]
print("placement: python agrees on", len(v["cases"]), "cases")

# Feeds (feeds.md): keys from the identity's ed25519 seed, entries sealed
# with ChaCha20-Poly1305 under the read key and signed as slots.
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
import base64
v = json.load(open(os.path.join(HERE, "feeds.json")))
id_seed = bytes([7] * 32)
owner = Ed25519PrivateKey.from_private_bytes(id_seed).public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
assert owner.hex() == v["identity_key"]
fseed = blake3.blake3(id_seed, derive_key_context="mtos feed v1 signing seed").digest()
read = blake3.blake3(id_seed, derive_key_context="mtos feed v1 read key").digest()
assert read.hex() == v["read_key"]
fh = hashlib.sha512(fseed).digest()
fa = int.from_bytes(fh[:32], "little"); fa &= (1 << 254) - 8; fa |= 1 << 254
FA = compress(mul(fa, G))
assert FA.hex() == v["feed_key"]
uri = v["follow_uri"]
assert uri.startswith("mtos:feed:")
payload = uri[len("mtos:feed:"):].upper()
payload += "=" * (-len(payload) % 8)
assert base64.b32decode(payload) == bytes([1]) + owner + FA + read
for e in v["entries"]:
    n = e["n"].to_bytes(8, "big")
    h = int.from_bytes(blake3.blake3(FA + n, derive_key_context="mtos-slot-blind-v1").digest(length=64), "little") % l
    Ab = compress(mul(h, decompress(FA)))
    assert blake3.blake3(Ab, derive_key_context="mtos-slot-locator-v1").digest().hex() == e["locator"]
    record = bytes.fromhex(e["record"])
    assert record[:32] == Ab
    sig, body = record[32:96], record[96:]
    Ed25519PublicKey.from_public_bytes(Ab).verify(sig, b"mtos-slot-sig-v1" + Ab + body)
    nonce, sealed = body[:12], body[12:]
    plain = ChaCha20Poly1305(read).decrypt(nonce, sealed, b"mtos-feed-entry-v1" + Ab)
    assert blake3.blake3(b"mtos-feed-nonce-v1" + Ab + plain, key=read).digest()[:12] == nonce
    item = e["item"][len("mtos:item:"):].upper()
    item += "=" * (-len(item) % 8)
    assert plain == bytes([1]) + e["time_ms"].to_bytes(8, "big") + base64.b32decode(item)
print("feeds: python agrees on", len(v["entries"]), "entries")

# Identity cards (feeds.md §6): the card's structure and signature, and
# its slot-0 locators by key and by fingerprint.
c = v["card"]
card = bytes.fromhex(c["card"])
assert card[0] == 1 and int.from_bytes(card[1:9], "big") == c["time_ms"]
idlen = int.from_bytes(card[9:11], "big")
ident = card[11:11 + idlen]
assert ident[1:33] == owner
follow = card[11 + idlen:11 + idlen + 97]
assert follow == bytes([1]) + owner + FA + read
sig = card[11 + idlen + 97:]
assert len(sig) == 64
Ed25519PublicKey.from_public_bytes(owner).verify(sig, b"mtos-card-v1" + card[:-64])
def slot0_locator(feed_key):
    h = int.from_bytes(blake3.blake3(feed_key + bytes(8), derive_key_context="mtos-slot-blind-v1").digest(length=64), "little") % l
    return blake3.blake3(compress(mul(h, decompress(feed_key))), derive_key_context="mtos-slot-locator-v1").digest()
assert slot0_locator(owner).hex() == c["slot0_by_key_locator"]
fp_seed = blake3.blake3(c["fingerprint"].encode(), derive_key_context="mtos card v1 fingerprint seed").digest()
fp_key = Ed25519PrivateKey.from_private_bytes(fp_seed).public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
assert slot0_locator(fp_key).hex() == c["slot0_by_fingerprint_locator"]
print("cards: python agrees on the card and its two locators")
