//! Storage placement (`specs/storage.md` §1): the replicas of a locator
//! are the K storage nodes of the network document with the highest
//! rendezvous weight ([`placement_weight`]). Sans-IO and deterministic, so
//! node, client and simulator compute the same replicas from the same
//! document; when a node leaves, only the records it held move (each gains
//! exactly one new replica), and a new node takes about K/n of the
//! records.
//!
//! Rendezvous (highest-random-weight) hashing rather than a token ring: no
//! virtual nodes to tune, the load is even by construction, and the same
//! few lines give both placement and the repair plan.

use mtos_crypto::item::{Locator, placement_weight};

use crate::directory::NetworkDocument;

/// Replicas per record unless the network says otherwise.
pub const DEFAULT_REPLICAS: usize = 3;

/// A storage node as placement sees it: its ed25519 key and its salt
/// (`specs/directory.md` §6.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StorageNode {
    /// Its key.
    pub key: [u8; 32],
    /// Its placement salt.
    pub salt: [u8; 32],
}

impl StorageNode {
    /// Its 64 bytes: key, then salt.
    pub fn to_bytes(&self) -> [u8; 64] {
        let mut out = [0; 64];
        out[..32].copy_from_slice(&self.key);
        out[32..].copy_from_slice(&self.salt);
        out
    }

    /// From [`StorageNode::to_bytes`].
    pub fn from_bytes(b: &[u8; 64]) -> Self {
        let (key, salt) = b.split_at(32);
        Self {
            key: key.try_into().unwrap_or([0; 32]),
            salt: salt.try_into().unwrap_or([0; 32]),
        }
    }
}

/// The `k` replicas of `locator` among `nodes`, highest weight first, as
/// keys. Duplicate keys count once; fewer than `k` nodes give them all.
pub fn replicas(locator: &Locator, nodes: &[StorageNode], k: usize) -> Vec<[u8; 32]> {
    let mut weighted: Vec<([u8; 32], [u8; 32])> = nodes
        .iter()
        .map(|n| (placement_weight(locator, &n.key, &n.salt), n.key))
        .collect();
    // Highest weight first; a tie (two equal 256-bit hashes) falls to the
    // key, so the order is total.
    weighted.sort_unstable_by(|a, b| b.cmp(a));
    weighted.dedup_by(|a, b| a.1 == b.1);
    weighted.into_iter().take(k).map(|(_, n)| n).collect()
}

/// The storage nodes of a document that take records, in document order:
/// those with a salt (a node in its first epoch has none yet and stores
/// nothing, `specs/directory.md` §6.4).
pub fn storage_nodes(doc: &NetworkDocument) -> Vec<StorageNode> {
    doc.nodes
        .iter()
        .filter(|n| n.storage)
        .filter_map(|n| {
            Some(StorageNode {
                key: n.key,
                salt: n.salt?,
            })
        })
        .collect()
}

/// What to do for one record when the storage nodes change from `old` to
/// `new` (`specs/storage.md` §1, repair).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repair {
    /// The record's replicas under `new`.
    pub replicas: Vec<[u8; 32]>,
    /// Replicas under both: they hold the record and copy it.
    pub sources: Vec<[u8; 32]>,
    /// Replicas under `new` only: they must receive a copy.
    pub targets: Vec<[u8; 32]>,
    /// Nodes of `new` that were replicas under `old` and no longer are:
    /// they may drop the record once the targets have it.
    pub released: Vec<[u8; 32]>,
}

/// The repair plan for `locator` between two sets of storage nodes.
pub fn repair(locator: &Locator, old: &[StorageNode], new: &[StorageNode], k: usize) -> Repair {
    let before = replicas(locator, old, k);
    let after = replicas(locator, new, k);
    let sources = after
        .iter()
        .filter(|n| before.contains(n))
        .copied()
        .collect();
    let targets = after
        .iter()
        .filter(|n| !before.contains(n))
        .copied()
        .collect();
    let released = before
        .iter()
        .filter(|n| !after.contains(n) && new.iter().any(|m| m.key == **n))
        .copied()
        .collect();
    Repair {
        replicas: after,
        sources,
        targets,
        released,
    }
}

#[cfg(test)]
mod tests;
