# Independent check of specs/vectors/client.json (specs/client.md §1, §2):
# python3 specs/vectors/check_client.py
# Needs the `cryptography` package (X25519, ChaCha20-Poly1305). Re-implements,
# from the published constructions and not from the Rust code: BLAKE3's
# derive_key mode (for inputs of one chunk, which is all this needs), the
# Elligator2 map from a representative to a Curve25519 point (Bernstein,
# Hamburg, Krasnova, Lange; non-square 2, as RFC 9380's map_to_curve_elligator2
# for curve25519), the mailbox id, the client address and the envelope.
import json, os

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

HERE = os.path.dirname(os.path.abspath(__file__))

from pure_blake3 import blake3, derive_key


# Elligator2 (representative -> Montgomery u), Curve25519.
P = 2**255 - 19
A = 486662


def is_square(x):
    return x % P == 0 or pow(x, (P - 1) // 2, P) == 1


def from_representative(rep):
    r = int.from_bytes(bytes(rep[:31]) + bytes([rep[31] & 0x3F]), "little") % P
    tv1 = 2 * r * r % P
    if tv1 == P - 1:
        tv1 = 0
    d = (-A) * pow(1 + tv1, P - 2, P) % P
    gx = (d * d * d + A * d * d + d) % P
    u = d if is_square(gx) else (-(d + A)) % P
    return u.to_bytes(32, "little")


def x25519_public(secret):
    return X25519PrivateKey.from_private_bytes(secret).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def main():
    with open(os.path.join(HERE, "client.json")) as f:
        v = json.load(f)
    b = lambda k: bytes.fromhex(v[k])
    mailbox = derive_key("mtos-mailbox-v1", b("mailbox_secret"))
    assert mailbox == b("mailbox_id"), "mailbox id"
    recipient_secret = b("recipient_secret")
    recipient = x25519_public(recipient_secret)
    assert b("address") == bytes([1]) + bytes([0x47]) * 32 + mailbox + recipient, "address"
    env = b("envelope")
    assert len(env) == 4079, "envelope size"
    rep, sealed = env[:32], env[32:]
    point = from_representative(rep)
    shared = X25519PrivateKey.from_private_bytes(recipient_secret).exchange(
        X25519PublicKey.from_public_bytes(point)
    )
    key = derive_key("mtos-client-envelope-v2", shared + point + recipient)
    plain = ChaCha20Poly1305(key).decrypt(bytes(12), sealed, rep)
    n = int.from_bytes(plain[:2], "big")
    assert plain[2:2 + n] == b("message") and not any(plain[2 + n:]), "message"
    # The map on its own, high bits set, both branches.
    branches = set()
    for e in v["elligator2"]:
        rep = bytes.fromhex(e["representative"])
        assert from_representative(rep).hex() == e["point"], e
        r = int.from_bytes(rep[:31] + bytes([rep[31] & 0x3F]), "little") % P
        d = (-A) * pow(1 + 2 * r * r, P - 2, P) % P
        branches.add(is_square(d * d * d + A * d * d + d))
    assert branches == {True, False}, "both branches of the map"
    assert any(bytes.fromhex(e["representative"])[31] >= 0xC0 for e in v["elligator2"])
    print("client.json: mailbox id, address, envelope and %d Elligator2 points re-derived" % len(v["elligator2"]))


def open_envelope(recipient_secret, env):
    assert len(env) == 4079, "envelope size"
    recipient = x25519_public(recipient_secret)
    rep, sealed = env[:32], env[32:]
    point = from_representative(rep)
    shared = X25519PrivateKey.from_private_bytes(recipient_secret).exchange(
        X25519PublicKey.from_public_bytes(point)
    )
    key = derive_key("mtos-client-envelope-v2", shared + point + recipient)
    plain = ChaCha20Poly1305(key).decrypt(bytes(12), sealed, rep)
    n = int.from_bytes(plain[:2], "big")
    assert not any(plain[2 + n:]), "padding"
    return plain[2:2 + n]


def deliveries():
    # A delivery payload (client.md section 2): the envelope, then 17 bytes
    # the recipient does not read. The hop layering is checked by
    # check_replies.py.
    with open(os.path.join(HERE, "deliveries.json")) as f:
        v = json.load(f)
    delivery = bytes.fromhex(v["delivery"])
    assert len(delivery) == v["payload_size"] == 4096, "delivery size"
    message = open_envelope(bytes.fromhex(v["recipient_secret"]), delivery[:4079])
    assert message.hex() == v["message"], "delivery message"
    print("deliveries.json: the delivery opens as an envelope")


def leading_zero_bits(h):
    bits = 0
    for b in h:
        if b == 0:
            bits += 8
            continue
        return bits + 8 - b.bit_length()
    return bits


def session_work():
    # client.md section 3: the work a client shows to open a session.
    with open(os.path.join(HERE, "session_work.json")) as f:
        v = json.load(f)
    for c in v["cases"]:
        def work(nonce):
            client = bytes.fromhex(c["client"])
            material = (bytes.fromhex(c["gateway"]) + c["epoch"].to_bytes(4, "big")
                        + bytes.fromhex(c["mailbox"]) + bytes([len(client)]) + client
                        + (nonce % 2**64).to_bytes(8, "big"))
            return derive_key("mtos-session-work-v1", material)
        nonce, start = int(c["nonce"]), int(c["start"])
        h = work(nonce)
        assert h.hex() == c["hash"], c
        assert leading_zero_bits(h) == c["leading_zero_bits"] >= c["bits"], c
        assert work(nonce - 1).hex() == c["previous_nonce_hash"], c
        # The first valid nonce from `start` (wrapping): none before it.
        n = start
        while n % 2**64 != nonce:
            assert leading_zero_bits(work(n)) < c["bits"], (c, n)
            n += 1
    print("session_work.json: %d cases re-derived, each the first valid nonce from its start" % len(v["cases"]))


assert blake3(b"").hex() == "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
main()
deliveries()
session_work()
