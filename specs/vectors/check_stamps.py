# Independent check of specs/vectors/stamps.json (specs/storage.md §2,
# storage stamps): python3 specs/vectors/check_stamps.py
# Re-derives each case's Equi-X challenge and effort value from the spec
# and checks the effort rule. Whether the 16-byte solution solves its
# challenge is Equi-X's own check (the `equix` crate, run by the Rust
# test `stamp_vectors_match_the_spec`); this script does not repeat it.
import json, os, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pure_blake3 import blake3, derive_key

HERE = os.path.dirname(os.path.abspath(__file__))
v = json.load(open(os.path.join(HERE, "stamps.json")))
checked = 0
for c in v["cases"]:
    stamp = bytes.fromhex(c["stamp"])
    assert len(stamp) == 32, c["name"]
    effort = int.from_bytes(stamp[0:4], "big")
    epoch = int.from_bytes(stamp[4:8], "big")
    nonce, solution = stamp[8:16], stamp[16:32]
    record = bytes.fromhex(c["record"])
    material = (bytes([c["kind"]]) + bytes.fromhex(c["locator"]) + blake3(record)
                + epoch.to_bytes(4, "big") + effort.to_bytes(4, "big") + nonce)
    challenge = derive_key("mtos-storage-stamp-v1", material)
    assert challenge.hex() == c["challenge"], c["name"]
    value = int.from_bytes(derive_key("mtos-storage-stamp-effort-v1", challenge + solution)[:4], "big")
    assert value == c["effort_value"], c["name"]
    passes = effort >= 1 and value * effort <= 2**32 - 1
    # A valid case must pass the effort rule; a case that passes it can
    # still be invalid through its solution (Equi-X's check).
    if c["valid"]:
        assert passes, c["name"]
    checked += 1
print(f"stamps.json: {checked} cases re-derived")
