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

/// The `k` replicas of `locator` among `nodes` (ed25519 keys), highest
/// weight first. Duplicate keys count once; fewer than `k` nodes give
/// them all.
pub fn replicas(locator: &Locator, nodes: &[[u8; 32]], k: usize) -> Vec<[u8; 32]> {
    let mut weighted: Vec<([u8; 32], [u8; 32])> = nodes
        .iter()
        .map(|n| (placement_weight(locator, n), *n))
        .collect();
    // Highest weight first; a tie (two equal 256-bit hashes) falls to the
    // key, so the order is total.
    weighted.sort_unstable_by(|a, b| b.cmp(a));
    weighted.dedup_by(|a, b| a.1 == b.1);
    weighted.into_iter().take(k).map(|(_, n)| n).collect()
}

/// The storage nodes of a document (keys), in document order.
pub fn storage_nodes(doc: &NetworkDocument) -> Vec<[u8; 32]> {
    doc.nodes
        .iter()
        .filter(|n| n.storage)
        .map(|n| n.key)
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
pub fn repair(locator: &Locator, old: &[[u8; 32]], new: &[[u8; 32]], k: usize) -> Repair {
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
        .filter(|n| !after.contains(n) && new.contains(n))
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
