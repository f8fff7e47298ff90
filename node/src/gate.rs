//! Which directory requests are served (`specs/directory.md` §4): an
//! authority's three pools, so that a flood from one kind of peer starves
//! no other kind (a node serving its document uses the third alone). The other authorities (their PeerIds are configured, and
//! Noise authenticates them) exchange votes and signatures from a pool of
//! their own; the nodes the authority knows (approved keys, and the keys
//! of the descriptors it holds) upload and fetch from another; everyone
//! else (clients, auditors, new nodes of an open testnet) from a third.
//! In every pool one peer holds at most [`PER_PEER`] requests at once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use libp2p::PeerId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Requests served at once from the other authorities.
pub const AUTHORITY_REQUESTS: usize = 32;
/// Requests served at once from known nodes.
pub const NODE_REQUESTS: usize = 256;
/// Requests served at once from everyone else.
pub const OTHER_REQUESTS: usize = 256;
/// Requests one peer may have served at once (an authority's vote loop
/// needs one).
pub const PER_PEER: usize = 4;

/// The pools and who belongs to which.
pub struct Gate {
    authorities: HashSet<PeerId>,
    nodes: RwLock<HashSet<PeerId>>,
    pools: [Arc<Semaphore>; 3],
    per_peer: Mutex<HashMap<PeerId, usize>>,
    limit: usize,
}

/// A request being served; gives its places back when dropped.
pub struct Permit {
    _pool: OwnedSemaphorePermit,
    gate: Arc<Gate>,
    peer: PeerId,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Ok(mut held) = self.gate.per_peer.lock()
            && let Some(n) = held.get_mut(&self.peer)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.peer);
            }
        }
    }
}

impl Gate {
    /// An authority's gate, for a network whose other authorities are
    /// `authorities`.
    pub fn new(authorities: HashSet<PeerId>) -> Arc<Self> {
        Arc::new(Self {
            authorities,
            nodes: RwLock::default(),
            pools: [
                Arc::new(Semaphore::new(AUTHORITY_REQUESTS)),
                Arc::new(Semaphore::new(NODE_REQUESTS)),
                Arc::new(Semaphore::new(OTHER_REQUESTS)),
            ],
            per_peer: Mutex::default(),
            limit: PER_PEER,
        })
    }

    /// One pool of `size` for everyone, `per_peer` at once each (a node
    /// serving its document).
    pub fn single(size: usize, per_peer: usize) -> Arc<Self> {
        Arc::new(Self {
            authorities: HashSet::new(),
            nodes: RwLock::default(),
            pools: [
                Arc::new(Semaphore::new(0)),
                Arc::new(Semaphore::new(0)),
                Arc::new(Semaphore::new(size)),
            ],
            per_peer: Mutex::default(),
            limit: per_peer,
        })
    }

    /// The nodes known now (the vote loop refreshes them every round).
    pub fn set_nodes(&self, nodes: HashSet<PeerId>) {
        if let Ok(mut held) = self.nodes.write() {
            *held = nodes;
        }
    }

    /// A permit for one request from `peer`, or `None`: the stream is
    /// dropped (a node retries).
    pub fn admit(self: &Arc<Self>, peer: PeerId) -> Option<Permit> {
        let pool = if self.authorities.contains(&peer) {
            0
        } else if self.nodes.read().ok()?.contains(&peer) {
            1
        } else {
            2
        };
        let pool = self.pools[pool].clone().try_acquire_owned().ok()?;
        let mut held = self.per_peer.lock().ok()?;
        let n = held.entry(peer).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(Permit {
            _pool: pool,
            gate: self.clone(),
            peer,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_peer_has_its_own_pool_and_each_peer_a_share_of_it() {
        let authority = PeerId::random();
        let node = PeerId::random();
        let gate = Gate::new([authority].into());
        gate.set_nodes([node].into());
        // Strangers fill their pool, 4 each.
        let mut held = Vec::new();
        for _ in 0..OTHER_REQUESTS / PER_PEER {
            let stranger = PeerId::random();
            for _ in 0..PER_PEER {
                held.push(gate.admit(stranger).unwrap());
            }
            assert!(gate.admit(stranger).is_none(), "a fifth from one peer");
        }
        assert!(gate.admit(PeerId::random()).is_none(), "their pool is full");
        // The node and the authority are still served.
        let from_node: Vec<Permit> = (0..PER_PEER).map(|_| gate.admit(node).unwrap()).collect();
        let from_authority: Vec<Permit> = (0..PER_PEER)
            .map(|_| gate.admit(authority).unwrap())
            .collect();
        // One lying authority takes no more than its share of theirs.
        assert!(gate.admit(authority).is_none());
        drop(from_authority);
        assert!(gate.admit(authority).is_some(), "places come back");
        drop(from_node);
        drop(held);
        assert!(gate.admit(PeerId::random()).is_some());
    }

    #[test]
    fn a_single_pool_keeps_one_peer_to_its_share() {
        let gate = Gate::single(3, 2);
        let greedy = PeerId::random();
        let held: Vec<Permit> = (0..2).map(|_| gate.admit(greedy).unwrap()).collect();
        assert!(gate.admit(greedy).is_none(), "a third from one peer");
        let other = gate.admit(PeerId::random()).unwrap();
        assert!(gate.admit(PeerId::random()).is_none(), "the pool is full");
        drop(other);
        drop(held);
        assert!(gate.admit(greedy).is_some());
    }
}
