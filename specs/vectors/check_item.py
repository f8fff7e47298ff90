#!/usr/bin/env python3
"""Re-derives the item encodings of vectors/item.json from specs/item.md §1
alone (BLAKE3 from pure_blake3.py, Ed25519 from python3-cryptography), for
the items the Rust test builds: a note, a remix, a display component and an
item that names it (item.md §6, reference kind 4)."""

import json
import os
import struct
import sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization

sys.path.insert(0, os.path.dirname(__file__))
from pure_blake3 import blake3  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def str8(s):
    b = s.encode()
    assert len(b) <= 255
    return bytes([len(b)]) + b


def u64(n):
    return struct.pack(">Q", n)


def fixed_ref(fill, private):
    return bytes([1, 1 if private else 0]) + bytes([fill]) * 32 + bytes([(fill + 1) % 256]) * 32


def author_key(fill):
    seed = bytes((fill * (i + 1)) % 256 for i in range(32))
    return Ed25519PrivateKey.from_private_bytes(seed)


KINDS = {"reply-to": 1, "remix-of": 2, "reblog-of": 3, "component": 4}


def item(fill, created_ms, content_type, parts, tags=(), refs=(), feed=None):
    key = author_key(fill)
    pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    flags = 0
    position = b""
    if feed is not None:
        feed_id, seq, prev = feed
        flags |= 1
        position = feed_id + u64(seq)
        if prev is not None:
            flags |= 2
            position += prev
    unsigned = bytes([1]) + pub + u64(created_ms) + bytes([flags]) + position
    unsigned += str8(content_type)
    unsigned += bytes([len(tags)]) + b"".join(str8(t) for t in tags)
    unsigned += bytes([len(refs)]) + b"".join(bytes([KINDS[k]]) + r for k, r in refs)
    unsigned += bytes([len(parts)])
    for kind, mime, data in parts:
        unsigned += bytes([kind]) + str8(mime) + u64(len(data)) + blake3(data)
    header = unsigned + key.sign(b"mtos-item-v1" + unsigned)
    body = b"".join(data for _, _, data in parts)
    return header, struct.pack(">I", len(header)) + header + body


def main():
    with open(os.path.join(HERE, "item.json")) as f:
        vectors = json.load(f)["items"]
    expected = {
        "note": item(1, 1_764_000_000_123, "Note",
                     [(0, "text/plain; charset=utf-8", b"hello, mixnet")]),
        "remix": item(1, 1_764_000_100_000, "ImageObject",
                      [(0, "text/plain; charset=utf-8", b"a remix of a sunset"),
                       (1, "image/png", bytes(range(256)))],
                      tags=("sunset", "remix"),
                      refs=(("remix-of", fixed_ref(0x11, False)), ("reply-to", fixed_ref(0x22, True))),
                      feed=(bytes([0x33]) * 32, 7, fixed_ref(0x44, False))),
        "component": item(1, 1_764_000_200_000, "WebPage",
                          [(0, "text/html", b'<p id="v"></p>'),
                           (0, "text/javascript",
                            b"mtos.onitem(i => { document.getElementById('v').textContent = i.parts[0].text; });")]),
        "displayed": item(1, 1_764_000_300_000, "Note",
                          [(0, "text/plain; charset=utf-8", b"42 17 99")],
                          refs=(("component", fixed_ref(0x66, False)),)),
    }
    failed = 0
    for name, (header, encoded) in expected.items():
        v = vectors.get(name)
        if v is None or v["header"] != header.hex() or v["item"] != encoded.hex():
            print(f"item {name}: MISMATCH")
            failed += 1
        else:
            print(f"item {name}: ok")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
