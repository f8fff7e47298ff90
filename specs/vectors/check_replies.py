# Independent check of specs/vectors/reply_keys.json (specs/client.md §5,
# reply blocks whose payload key no relay can derive) and of the hop
# layering in specs/vectors/deliveries.json (client.md §2):
# python3 specs/vectors/check_replies.py
# Needs the `cryptography` package. Re-implements, from the published
# constructions and not from the Rust code: the Sphinx payload key
# derivation (HKDF-SHA256, sphinx-packet's salt and info), the LIONESS
# wide-block cipher over ChaCha20 and keyed BLAKE2b-256 (Anderson-Biham,
# as lioness-rs arranges it), and the Sphinx payload encoding (16 zero
# bytes, message, 0x01, zero padding).
import hashlib, json, os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HERE = os.path.dirname(os.path.abspath(__file__))
SALT = b"sphinx-payload-key-V01-CS01-HKDF:SHA256-SALT"
INFO = b"sphinx-payload-key-V01-CS01-HKDF:SHA256-INFO"


def payload_key(seed):
    # 192 bytes: ChaCha20 key (32) | BLAKE2b key (64) | ChaCha20 key | BLAKE2b key
    return HKDF(algorithm=hashes.SHA256(), length=192, salt=SALT, info=INFO).derive(seed)


def xor(a, b):
    return bytes(x ^ y for x, y in zip(a, b))


def stream(key, data):
    # IETF ChaCha20, zero nonce, counter 0 (cryptography takes counter || nonce).
    enc = Cipher(algorithms.ChaCha20(key, b"\0" * 16), mode=None).encryptor()
    return enc.update(data)


def mac(key, data):
    return hashlib.blake2b(data, digest_size=32, key=key).digest()


def lioness(key, block, decrypt):
    k1, k2, k3, k4 = key[:32], key[32:96], key[96:128], key[128:]
    left, right = block[:32], block[32:]

    def r(k, left, right):  # right ^= ChaCha20(k ^ left)
        return stream(xor(k, left), right)

    def l(k, left, right):  # left ^= BLAKE2b_k(right)
        return xor(left, mac(k, right))

    if not decrypt:
        right = r(k1, left, right); left = l(k2, left, right)
        right = r(k3, left, right); left = l(k4, left, right)
    else:
        left = l(k4, left, right); right = r(k3, left, right)
        left = l(k2, left, right); right = r(k1, left, right)
    return left + right


def encode(message, size):
    body = b"\0" * 16 + message + b"\x01"
    return body + b"\0" * (size - len(body))


def sha(b):
    return hashlib.sha256(b).hexdigest()


v = json.load(open(os.path.join(HERE, "reply_keys.json")))
size = v["payload_size"]
hops = [bytes.fromhex(s) for s in v["hop_seeds"]]
creator = bytes.fromhex(v["creator_seed"])
message = bytes.fromhex(v["message"])

# The block's user adds one layer under the seed the block carries: the
# creator's random seed, not the last hop's.
payload = lioness(payload_key(creator), encode(message, size), decrypt=False)
assert sha(payload) == v["sent_payload_sha256"], "sent payload"
# Each hop removes one layer with its own seed, first hop first.
for i, seed in enumerate(hops):
    payload = lioness(payload_key(seed), payload, decrypt=True)
    assert sha(payload) == v["after_hop_sha256"][i], f"after hop {i}"
# Nothing a relay holds opens it: the last hop's seed does not.
assert lioness(payload_key(hops[-1]), payload, decrypt=True)[:16] != b"\0" * 16
# The creator re-adds the hops' layers, last hop first, then removes its own.
for seed in reversed(hops):
    payload = lioness(payload_key(seed), payload, decrypt=False)
plain = lioness(payload_key(creator), payload, decrypt=True)
assert plain[:16] == b"\0" * 16
end = plain.rindex(b"\x01")
assert plain[16:end] == message
assert plain[16:end].hex() == v["message"]
# The recovery material a client keeps: 0x02 || id || S || hop seeds.
assert v["recovery"] == "02" + v["id"] + v["creator_seed"] + "".join(v["hop_seeds"])
print("reply_keys.json: ok")

# Deliveries (client.md section 2, sphinx.md section 1): the raw payload is
# layered once per hop, last hop first; each hop removes its own layer and
# the last leaves the delivery byte for byte, with no Sphinx encoding.
d = json.load(open(os.path.join(HERE, "deliveries.json")))
hops = [bytes.fromhex(s) for s in d["hop_seeds"]]
delivery = bytes.fromhex(d["delivery"])
assert len(delivery) == d["payload_size"]
payload = delivery
for seed in reversed(hops):
    payload = lioness(payload_key(seed), payload, decrypt=False)
assert sha(payload) == d["sent_payload_sha256"], "sent delivery"
for i, seed in enumerate(hops):
    payload = lioness(payload_key(seed), payload, decrypt=True)
    assert sha(payload) == d["after_hop_sha256"][i], f"delivery after hop {i}"
assert payload == delivery
# Nothing of Sphinx's encoding is left for the final hop to see.
assert payload[:16] != b"\0" * 16 and payload.rstrip(b"\0")[-1:] != b"\x01"
print("deliveries.json: ok")
