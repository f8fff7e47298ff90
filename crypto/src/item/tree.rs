//! The chunk tree: a sealed item is cut into fixed-size, content-addressed
//! data chunks under a tree of encrypted manifest nodes, all exactly
//! [`CHUNK_SIZE`] bytes, so a storer sees uniform ciphertext and learns
//! neither the item's size nor which chunks belong together. A small item
//! is one chunk: its root node holds the data inline. Normative layout:
//! `specs/item.md`.
//!
//! The tree's shape follows from the sealed length alone, so a reader
//! checks every node against the shape it expects and a manifest node has
//! exactly one valid encoding.

use std::collections::BTreeMap;
use std::io;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

use zeroize::Zeroizing;

use super::reference::Locator;
use crate::error::OpenError;
use crate::geometry::CHUNK_SIZE;

/// Poly1305 tag on each manifest node.
const TAG_LEN: usize = 16;
/// A manifest node's plaintext.
pub const NODE_PLAINTEXT_LEN: usize = CHUNK_SIZE - TAG_LEN;
/// version u8, level u8, count u16, covered u64.
const NODE_HEADER_LEN: usize = 12;
const NODE_VERSION: u8 = 1;
/// Children per manifest node.
pub const FANOUT: usize = (NODE_PLAINTEXT_LEN - NODE_HEADER_LEN) / 32;
/// The largest sealed item stored inline in its root node.
pub const INLINE_CAPACITY: usize = NODE_PLAINTEXT_LEN - NODE_HEADER_LEN;
/// Associated data of every node's AEAD.
const NODE_AD: &[u8] = b"mtos-manifest-node-v1";

/// Where chunks go when an item is sealed (the client store, a node's
/// store, or memory in tests and the simulator).
pub trait ChunkSink {
    /// Stores one chunk under its locator.
    fn put(&mut self, locator: &Locator, chunk: &[u8]) -> io::Result<()>;
}

/// Where chunks come from when an item is opened.
pub trait ChunkSource {
    /// The chunk stored under `locator`, if any. The caller verifies it.
    fn get(&mut self, locator: &Locator) -> io::Result<Option<Vec<u8>>>;
}

/// Chunks in memory.
#[derive(Debug, Default, Clone)]
pub struct MemoryChunks {
    chunks: BTreeMap<Locator, Vec<u8>>,
}

impl MemoryChunks {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of chunks.
    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Mutable access to a chunk (tests use it to damage one).
    pub fn chunk_mut(&mut self, locator: &Locator) -> Option<&mut Vec<u8>> {
        self.chunks.get_mut(locator)
    }

    /// Removes a chunk.
    pub fn remove(&mut self, locator: &Locator) -> Option<Vec<u8>> {
        self.chunks.remove(locator)
    }

    /// All locators.
    pub fn locators(&self) -> impl Iterator<Item = &Locator> {
        self.chunks.keys()
    }
}

impl ChunkSink for MemoryChunks {
    fn put(&mut self, locator: &Locator, chunk: &[u8]) -> io::Result<()> {
        self.chunks.insert(*locator, chunk.to_vec());
        Ok(())
    }
}

impl ChunkSource for MemoryChunks {
    fn get(&mut self, locator: &Locator) -> io::Result<Option<Vec<u8>>> {
        Ok(self.chunks.get(locator).cloned())
    }
}

/// The shape of a tree, determined by the sealed length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeShape {
    /// Length of the sealed item.
    pub sealed_len: u64,
    /// Data chunks (0 when inline).
    pub data_chunks: u64,
    /// Height of the root: 0 inline, 1 when the root lists data chunks.
    pub levels: u8,
}

impl TreeShape {
    /// The shape of a tree holding `sealed_len` bytes.
    pub fn for_len(sealed_len: u64) -> Self {
        if sealed_len <= INLINE_CAPACITY as u64 {
            return Self {
                sealed_len,
                data_chunks: 0,
                levels: 0,
            };
        }
        let data_chunks = sealed_len.div_ceil(CHUNK_SIZE as u64);
        let mut levels = 1;
        let mut count = data_chunks.div_ceil(FANOUT as u64);
        while count > 1 {
            levels += 1;
            count = count.div_ceil(FANOUT as u64);
        }
        Self {
            sealed_len,
            data_chunks,
            levels,
        }
    }

    /// Nodes at `level` (1..=levels).
    pub fn nodes_at(&self, level: u8) -> u64 {
        let mut count = self.data_chunks;
        for _ in 0..level {
            count = count.div_ceil(FANOUT as u64);
        }
        count
    }

    /// Bytes of the sealed item a node at (`level`, `index`) covers.
    fn covered(&self, level: u8, index: u64) -> u64 {
        if level == 0 {
            return self.sealed_len;
        }
        let span =
            (CHUNK_SIZE as u64).saturating_mul((FANOUT as u64).saturating_pow(u32::from(level)));
        let start = index.saturating_mul(span);
        self.sealed_len.min(start.saturating_add(span)) - start.min(self.sealed_len)
    }

    /// Children of node (`level`, `index`).
    fn children(&self, level: u8, index: u64) -> u64 {
        let below = if level == 1 {
            self.data_chunks
        } else {
            self.nodes_at(level - 1)
        };
        let start = index * FANOUT as u64;
        below.min(start + FANOUT as u64) - start.min(below)
    }

    /// Total chunks: data chunks and manifest nodes.
    pub fn total_chunks(&self) -> u64 {
        if self.levels == 0 {
            return 1;
        }
        self.data_chunks + (1..=self.levels).map(|l| self.nodes_at(l)).sum::<u64>()
    }
}

/// The nonce of a non-root node: its place in the tree, unique per item.
fn nonce(level: u8, index: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[0] = level;
    n[4..].copy_from_slice(&index.to_be_bytes());
    Nonce::from(n)
}

/// The root's nonce, whatever its level: a reader learns the level from
/// the root itself. No other node uses level byte 0xff.
fn root_nonce() -> Nonce {
    nonce(0xff, 0)
}

fn seal_node(
    key: &[u8; 32],
    nonce: Nonce,
    level: u8,
    covered: u64,
    body: &[u8],
    count: u16,
) -> io::Result<Vec<u8>> {
    let mut plain = vec![0u8; NODE_PLAINTEXT_LEN];
    plain[0] = NODE_VERSION;
    plain[1] = level;
    plain[2..4].copy_from_slice(&count.to_be_bytes());
    plain[4..12].copy_from_slice(&covered.to_be_bytes());
    plain[NODE_HEADER_LEN..NODE_HEADER_LEN + body.len()].copy_from_slice(body);
    let cipher = ChaCha20Poly1305::new(Key::from_slice(key));
    let out = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: &plain,
                aad: NODE_AD,
            },
        )
        .map_err(|_| io::Error::other("manifest node encryption failed"))?;
    Ok(out)
}

/// Receives the sealed item as it is produced, cuts data chunks, and on
/// [`TreeWriter::finish`] writes the manifest nodes.
pub struct TreeWriter<'a, S: ChunkSink> {
    sink: &'a mut S,
    key: Zeroizing<[u8; 32]>,
    buf: Vec<u8>,
    data: Vec<Locator>,
    len: u64,
    max_len: u64,
}

impl<S: ChunkSink> std::fmt::Debug for TreeWriter<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TreeWriter")
            .field("len", &self.len)
            .field("data_chunks", &self.data.len())
            .finish_non_exhaustive()
    }
}

impl<'a, S: ChunkSink> TreeWriter<'a, S> {
    /// A writer storing into `sink`, manifest nodes encrypted under `key`,
    /// refusing more than `max_len` sealed bytes.
    pub fn new(sink: &'a mut S, key: [u8; 32], max_len: u64) -> Self {
        Self {
            sink,
            key: Zeroizing::new(key),
            buf: Vec::with_capacity(2 * CHUNK_SIZE),
            data: Vec::new(),
            len: 0,
            max_len,
        }
    }

    fn emit_data(&mut self, chunk: &[u8]) -> io::Result<()> {
        let locator = Locator::of(chunk);
        self.sink.put(&locator, chunk)?;
        self.data.push(locator);
        Ok(())
    }

    /// Writes the last data chunk and the manifest tree; returns the root
    /// locator and the shape.
    pub fn finish(mut self) -> io::Result<(Locator, TreeShape)> {
        let shape = TreeShape::for_len(self.len);
        if shape.levels == 0 {
            let body = std::mem::take(&mut self.buf);
            let root = seal_node(&self.key, root_nonce(), 0, self.len, &body, 0)?;
            let locator = Locator::of(&root);
            self.sink.put(&locator, &root)?;
            return Ok((locator, shape));
        }
        if !self.buf.is_empty() {
            let mut last = std::mem::take(&mut self.buf);
            last.resize(CHUNK_SIZE, 0);
            self.emit_data(&last)?;
        }
        let mut below = std::mem::take(&mut self.data);
        for level in 1..=shape.levels {
            let mut nodes = Vec::with_capacity(below.len().div_ceil(FANOUT));
            for (index, group) in below.chunks(FANOUT).enumerate() {
                let index = index as u64;
                let body: Vec<u8> = group.iter().flat_map(|l| *l.as_bytes()).collect();
                let count = u16::try_from(group.len()).unwrap_or(u16::MAX);
                let nonce = if level == shape.levels {
                    root_nonce()
                } else {
                    nonce(level, index)
                };
                let node = seal_node(
                    &self.key,
                    nonce,
                    level,
                    shape.covered(level, index),
                    &body,
                    count,
                )?;
                let locator = Locator::of(&node);
                self.sink.put(&locator, &node)?;
                nodes.push(locator);
            }
            below = nodes;
        }
        match below.as_slice() {
            [root] => Ok((*root, shape)),
            _ => Err(io::Error::other(
                "manifest tree did not converge to one root",
            )),
        }
    }
}

impl<S: ChunkSink> io::Write for TreeWriter<'_, S> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let new_len = self.len.saturating_add(bytes.len() as u64);
        if new_len > self.max_len {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!("sealed item exceeds {} bytes", self.max_len),
            ));
        }
        self.len = new_len;
        self.buf.extend_from_slice(bytes);
        // Keep more than the inline capacity buffered until we know the
        // item is not inline; after that, emit every full chunk.
        while self.buf.len() > CHUNK_SIZE {
            let rest = self.buf.split_off(CHUNK_SIZE);
            let chunk = std::mem::replace(&mut self.buf, rest);
            self.emit_data(&chunk)?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A manifest node, decrypted and checked.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// Height: 0 inline, 1 lists data chunks.
    pub level: u8,
    /// Position within its level.
    pub index: u64,
    /// The node's locator.
    pub locator: Locator,
    /// Bytes of the sealed item it covers.
    pub covered: u64,
    /// Children (data chunks at level 1).
    pub children: Vec<Locator>,
}

/// What a walk of the tree found.
#[derive(Debug, Clone)]
pub struct TreeInfo {
    /// The shape.
    pub shape: TreeShape,
    /// Every manifest node, root first, then level by level.
    pub nodes: Vec<NodeInfo>,
}

fn fetch<S: ChunkSource>(source: &mut S, locator: &Locator) -> Result<Vec<u8>, OpenError> {
    let chunk = source
        .get(locator)
        .map_err(OpenError::Store)?
        .ok_or_else(|| OpenError::ChunkMissing(locator.to_string()))?;
    if chunk.len() != CHUNK_SIZE || !locator.matches(&chunk) {
        return Err(OpenError::ChunkCorrupt(locator.to_string()));
    }
    Ok(chunk)
}

fn bad_node(locator: &Locator, reason: impl Into<String>) -> OpenError {
    OpenError::Manifest {
        locator: locator.to_string(),
        reason: reason.into(),
    }
}

/// Fetches, verifies and decrypts a node; checks it against the shape.
pub(super) fn open_node<S: ChunkSource>(
    source: &mut S,
    key: &[u8; 32],
    locator: &Locator,
    level: u8,
    index: u64,
    shape: Option<&TreeShape>,
) -> Result<(NodeInfo, Vec<u8>), OpenError> {
    let chunk = fetch(source, locator)?;
    let cipher = ChaCha20Poly1305::new(Key::from_slice(key));
    let nonce = if shape.is_none() {
        root_nonce()
    } else {
        nonce(level, index)
    };
    let plain = cipher
        .decrypt(
            &nonce,
            Payload {
                msg: &chunk,
                aad: NODE_AD,
            },
        )
        .map_err(|_| {
            bad_node(
                locator,
                "does not decrypt under this reference's key (wrong reference, or not at this place in the tree)",
            )
        })?;
    if plain[0] != NODE_VERSION {
        return Err(bad_node(locator, format!("unknown version {}", plain[0])));
    }
    let node_level = plain[1];
    let count = usize::from(u16::from_be_bytes([plain[2], plain[3]]));
    let mut covered_bytes = [0u8; 8];
    covered_bytes.copy_from_slice(&plain[4..12]);
    let covered = u64::from_be_bytes(covered_bytes);
    let body = &plain[NODE_HEADER_LEN..];
    // The root defines the shape; every other node must match it.
    let expected = match shape {
        Some(s) => *s,
        None => TreeShape::for_len(covered),
    };
    if node_level != level && shape.is_some() {
        return Err(bad_node(locator, "wrong level"));
    }
    if shape.is_none() && node_level != expected.levels {
        return Err(bad_node(locator, "root level does not fit the item size"));
    }
    let level = node_level;
    if covered != expected.covered(level, index) {
        return Err(bad_node(locator, "covered length does not fit the tree"));
    }
    let (children, inline) = if level == 0 {
        if count != 0 {
            return Err(bad_node(locator, "inline node with children"));
        }
        let len = usize::try_from(covered).unwrap_or(usize::MAX);
        if len > INLINE_CAPACITY || body[len..].iter().any(|b| *b != 0) {
            return Err(bad_node(locator, "inline data is not canonical"));
        }
        (Vec::new(), body[..len].to_vec())
    } else {
        if count as u64 != expected.children(level, index) || count == 0 {
            return Err(bad_node(locator, "wrong number of children"));
        }
        if body[count * 32..].iter().any(|b| *b != 0) {
            return Err(bad_node(locator, "padding is not zero"));
        }
        let children = body[..count * 32]
            .chunks_exact(32)
            .map(|c| {
                let mut l = [0u8; 32];
                l.copy_from_slice(c);
                Locator::from_bytes(l)
            })
            .collect();
        (children, Vec::new())
    };
    Ok((
        NodeInfo {
            level,
            index,
            locator: *locator,
            covered,
            children,
        },
        inline,
    ))
}

/// Reads the root and checks the announced size against `max_len`.
pub(super) fn open_root<S: ChunkSource>(
    source: &mut S,
    key: &[u8; 32],
    root: &Locator,
    max_len: u64,
) -> Result<(NodeInfo, Vec<u8>, TreeShape), OpenError> {
    let (info, inline) = open_node(source, key, root, 0, 0, None)?;
    let shape = TreeShape::for_len(info.covered);
    if shape.sealed_len > max_len {
        return Err(OpenError::TooLarge {
            size: shape.sealed_len,
            max: max_len,
        });
    }
    Ok((info, inline, shape))
}

/// Walks the whole tree, verifying every chunk, and returns the sealed
/// item's bytes.
pub fn assemble<S: ChunkSource>(
    source: &mut S,
    key: &[u8; 32],
    root: &Locator,
    max_len: u64,
) -> Result<Vec<u8>, OpenError> {
    prefix(source, key, root, max_len, usize::MAX)
}

/// The first `want` bytes of the sealed item (all of it when shorter),
/// reading only the chunks they lie in and the manifest nodes above them,
/// each verified as [`assemble`] verifies it.
pub fn prefix<S: ChunkSource>(
    source: &mut S,
    key: &[u8; 32],
    root: &Locator,
    max_len: u64,
    want: usize,
) -> Result<Vec<u8>, OpenError> {
    let (root_info, inline, shape) = open_root(source, key, root, max_len)?;
    if shape.levels == 0 {
        return Ok(inline);
    }
    // The size is announced by the root; grow as verified chunks arrive
    // rather than trusting it for one large allocation.
    let announced = usize::try_from(shape.sealed_len).unwrap_or(usize::MAX);
    let mut out = Vec::with_capacity(want.min(announced).min(64 << 20));
    walk(
        source,
        key,
        &shape,
        &root_info,
        &mut |chunk| {
            out.extend_from_slice(chunk);
            out.len() < want
        },
        &mut |_| {},
    )?;
    out.truncate(usize::try_from(shape.sealed_len).unwrap_or(usize::MAX));
    Ok(out)
}

/// Walks the tree's manifest nodes (not the data) for `mtos item inspect`.
pub fn inspect<S: ChunkSource>(
    source: &mut S,
    key: &[u8; 32],
    root: &Locator,
    max_len: u64,
) -> Result<TreeInfo, OpenError> {
    let (root_info, _, shape) = open_root(source, key, root, max_len)?;
    let mut nodes = vec![root_info.clone()];
    if shape.levels > 1 {
        let mut level_nodes = vec![root_info];
        for level in (1..shape.levels).rev() {
            let mut next = Vec::new();
            for parent in &level_nodes {
                for (i, child) in parent.children.iter().enumerate() {
                    let index = parent.index * FANOUT as u64 + i as u64;
                    let (info, _) = open_node(source, key, child, level, index, Some(&shape))?;
                    next.push(info);
                }
            }
            nodes.extend(next.iter().cloned());
            level_nodes = next;
        }
    }
    Ok(TreeInfo { shape, nodes })
}

fn walk<S: ChunkSource>(
    source: &mut S,
    key: &[u8; 32],
    shape: &TreeShape,
    node: &NodeInfo,
    data: &mut dyn FnMut(&[u8]) -> bool,
    nodes: &mut dyn FnMut(&NodeInfo),
) -> Result<bool, OpenError> {
    nodes(node);
    for (i, child) in node.children.iter().enumerate() {
        let index = node.index * FANOUT as u64 + i as u64;
        if node.level == 1 {
            let chunk = fetch(source, child)?;
            let is_last = index + 1 == shape.data_chunks;
            if is_last {
                // The last chunk is zero-padded: the padding is canonical.
                let used = shape.sealed_len - index * CHUNK_SIZE as u64;
                let used = usize::try_from(used).unwrap_or(CHUNK_SIZE);
                if chunk[used..].iter().any(|b| *b != 0) {
                    return Err(OpenError::ChunkCorrupt(child.to_string()));
                }
            }
            if !data(&chunk) {
                return Ok(false);
            }
        } else {
            let (info, _) = open_node(source, key, child, node.level - 1, index, Some(shape))?;
            if !walk(source, key, shape, &info, data, nodes)? {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn build(len: usize) -> (MemoryChunks, Locator, TreeShape, Vec<u8>) {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
        let mut store = MemoryChunks::new();
        let mut w = TreeWriter::new(&mut store, [3; 32], u64::MAX);
        for piece in data.chunks(1000) {
            w.write_all(piece).unwrap();
        }
        let (root, shape) = w.finish().unwrap();
        (store, root, shape, data)
    }

    #[test]
    fn shapes() {
        assert_eq!(TreeShape::for_len(0).levels, 0);
        assert_eq!(TreeShape::for_len(INLINE_CAPACITY as u64).levels, 0);
        let s = TreeShape::for_len(INLINE_CAPACITY as u64 + 1);
        assert_eq!((s.levels, s.data_chunks), (1, 1));
        let s = TreeShape::for_len((FANOUT * CHUNK_SIZE) as u64);
        assert_eq!((s.levels, s.data_chunks), (1, FANOUT as u64));
        let s = TreeShape::for_len((FANOUT * CHUNK_SIZE) as u64 + 1);
        assert_eq!(s.levels, 2);
        let s = TreeShape::for_len(64 << 20);
        assert_eq!(s.levels, 3);
        assert_eq!(s.nodes_at(3), 1);
    }

    #[test]
    fn round_trip_across_sizes() {
        for len in [
            0,
            1,
            INLINE_CAPACITY,
            INLINE_CAPACITY + 1,
            CHUNK_SIZE,
            CHUNK_SIZE + 1,
            FANOUT * CHUNK_SIZE,
            FANOUT * CHUNK_SIZE + 5,
        ] {
            let (mut store, root, shape, data) = build(len);
            assert_eq!(store.len() as u64, shape.total_chunks(), "len {len}");
            let back = assemble(&mut store, &[3; 32], &root, u64::MAX).unwrap();
            assert_eq!(back, data, "len {len}");
            let info = inspect(&mut store, &[3; 32], &root, u64::MAX).unwrap();
            assert_eq!(
                info.nodes.len() as u64,
                (1..=shape.levels.max(1))
                    .map(|l| if shape.levels == 0 {
                        1
                    } else {
                        shape.nodes_at(l)
                    })
                    .sum::<u64>()
            );
        }
    }

    #[test]
    fn every_chunk_is_uniform_and_verified() {
        let (mut store, root, _, _) = build(FANOUT * CHUNK_SIZE + 5);
        let locators: Vec<Locator> = store.locators().copied().collect();
        for l in &locators {
            let chunk = store.get(l).unwrap().unwrap();
            assert_eq!(chunk.len(), CHUNK_SIZE);
            // Damage this chunk: the tree refuses it.
            let mut damaged = store.clone();
            damaged.chunk_mut(l).unwrap()[100] ^= 1;
            assert!(matches!(
                assemble(&mut damaged, &[3; 32], &root, u64::MAX),
                Err(OpenError::ChunkCorrupt(_))
            ));
            let mut missing = store.clone();
            missing.remove(l);
            assert!(matches!(
                assemble(&mut missing, &[3; 32], &root, u64::MAX),
                Err(OpenError::ChunkMissing(_))
            ));
        }
        assert!(matches!(
            assemble(&mut store, &[4; 32], &root, u64::MAX),
            Err(OpenError::Manifest { .. })
        ));
    }

    #[test]
    fn size_limits_hold_on_both_sides() {
        let (mut store, root, _, _) = build(3 * CHUNK_SIZE);
        assert!(matches!(
            assemble(&mut store, &[3; 32], &root, 2 * CHUNK_SIZE as u64),
            Err(OpenError::TooLarge { .. })
        ));
        let mut sink = MemoryChunks::new();
        let mut w = TreeWriter::new(&mut sink, [0; 32], 10);
        assert!(w.write_all(&[0; 11]).is_err());
    }
}
