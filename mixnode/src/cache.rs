//! A service node's chunk cache (`specs/storage.md` §4): chunks it fetched
//! from replicas, kept so a popular chunk is not fetched again for every
//! reader. Bounded in entries and bytes; the oldest insertion goes first.
//! Only chunks are cached: they never change (their locator is their
//! hash), while a slot that was absent may be written any moment.

use std::collections::{HashMap, VecDeque};

use mtos_crypto::item::Locator;

/// Chunks a cache holds by default (about 36 MB of 3,619-byte chunks).
pub const DEFAULT_CACHE_CHUNKS: usize = 10_000;

/// The cache.
#[derive(Debug)]
pub struct ChunkCache {
    chunks: HashMap<Locator, Vec<u8>>,
    order: VecDeque<Locator>,
    limit: usize,
}

impl ChunkCache {
    /// An empty cache of at most `limit` chunks.
    pub fn new(limit: usize) -> Self {
        Self {
            chunks: HashMap::new(),
            order: VecDeque::new(),
            limit,
        }
    }

    /// The chunk at `locator`, if cached.
    pub fn get(&self, locator: &Locator) -> Option<&[u8]> {
        self.chunks.get(locator).map(Vec::as_slice)
    }

    /// Caches a chunk that was checked against its locator; the oldest
    /// goes when the cache is full.
    pub fn insert(&mut self, locator: Locator, chunk: Vec<u8>) {
        if self.limit == 0 || self.chunks.contains_key(&locator) {
            return;
        }
        while self.chunks.len() >= self.limit {
            match self.order.pop_front() {
                Some(old) => {
                    self.chunks.remove(&old);
                }
                None => break,
            }
        }
        self.order.push_back(locator);
        self.chunks.insert(locator, chunk);
    }

    /// Chunks held.
    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    /// Nothing cached?
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_is_bounded_and_drops_the_oldest() {
        let mut c = ChunkCache::new(3);
        let l = |i: u8| Locator::from_bytes([i; 32]);
        for i in 0..5 {
            c.insert(l(i), vec![i]);
            assert!(c.len() <= 3);
        }
        assert_eq!(c.get(&l(0)), None);
        assert_eq!(c.get(&l(1)), None);
        assert_eq!(c.get(&l(4)), Some(&[4u8][..]));
        // Inserting a cached chunk again changes nothing.
        c.insert(l(2), vec![9]);
        assert_eq!(c.get(&l(2)), Some(&[2u8][..]));
        let mut off = ChunkCache::new(0);
        off.insert(l(1), vec![1]);
        assert!(off.is_empty());
    }
}
