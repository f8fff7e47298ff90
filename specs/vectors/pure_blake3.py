"""Pure-Python BLAKE3 for the vector checks: inputs of at most one chunk
(1,024 bytes), hash and derive_key modes (the BLAKE3 paper, section 2)."""

IV = [0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19]
PERM = [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8]
CHUNK_START, CHUNK_END, ROOT, DERIVE_KEY_CONTEXT, DERIVE_KEY_MATERIAL = 1, 2, 8, 32, 64
M32 = 0xFFFFFFFF

def rotr(x, n):
    return ((x >> n) | (x << (32 - n))) & M32

def g(s, a, b, c, d, x, y):
    s[a] = (s[a] + s[b] + x) & M32; s[d] = rotr(s[d] ^ s[a], 16)
    s[c] = (s[c] + s[d]) & M32; s[b] = rotr(s[b] ^ s[c], 12)
    s[a] = (s[a] + s[b] + y) & M32; s[d] = rotr(s[d] ^ s[a], 8)
    s[c] = (s[c] + s[d]) & M32; s[b] = rotr(s[b] ^ s[c], 7)

def compress(cv, block, counter, blen, flags):
    m = [int.from_bytes(block[4 * i:4 * i + 4], "little") for i in range(16)]
    s = list(cv) + IV[:4] + [counter & M32, counter >> 32, blen, flags]
    for r in range(7):
        g(s, 0, 4, 8, 12, m[0], m[1]); g(s, 1, 5, 9, 13, m[2], m[3])
        g(s, 2, 6, 10, 14, m[4], m[5]); g(s, 3, 7, 11, 15, m[6], m[7])
        g(s, 0, 5, 10, 15, m[8], m[9]); g(s, 1, 6, 11, 12, m[10], m[11])
        g(s, 2, 7, 8, 13, m[12], m[13]); g(s, 3, 4, 9, 14, m[14], m[15])
        if r < 6:
            m = [m[PERM[i]] for i in range(16)]
    return [s[i] ^ s[i + 8] for i in range(8)]

def _hash(data, key, flags):
    assert len(data) <= 1024
    blocks = [data[i:i + 64] for i in range(0, max(len(data), 1), 64)] or [b""]
    cv = key
    for i, b in enumerate(blocks):
        f = flags
        if i == 0: f |= CHUNK_START
        if i == len(blocks) - 1: f |= CHUNK_END | ROOT
        cv = compress(cv, b.ljust(64, b"\0"), 0, len(b), f)
    return b"".join(w.to_bytes(4, "little") for w in cv)

def blake3(data):
    return _hash(data, IV, 0)

def derive_key(context, material):
    ck = _hash(context.encode(), IV, DERIVE_KEY_CONTEXT)
    k = [int.from_bytes(ck[4 * i:4 * i + 4], "little") for i in range(8)]
    return _hash(material, k, DERIVE_KEY_MATERIAL)
