//! The inbound queue between a node's links and its engine, fair between
//! peers (`specs/mixing.md` §4): one queue per peer, served by deficit
//! round-robin, and, when the whole is full, a frame dropped from the
//! longest queue. So one upstream that floods takes the share of one
//! peer and loses its own frames, while every other peer's frames still
//! reach the engine: with one shared FIFO the flooder filled it and
//! everyone's frames were refused alike.
//!
//! Frames are of one size, so each peer's quantum is one frame and a
//! round serves one frame of every peer with frames waiting. Sans-IO: the
//! driver pushes what its links read and pops what the engine takes.
//! Written here rather than taken from a crate: what is needed is the
//! round-robin with longest-queue drop over a bounded total, a few dozen
//! lines; the queueing crates at hand are FIFO or priority queues.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::{BuildHasher, Hash, RandomState};

/// What became of a pushed frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed<P> {
    /// Queued.
    Queued,
    /// Queued, and to make room the newest frame of `0`, the peer with
    /// the longest queue, was dropped.
    QueuedDropping(P),
    /// Not queued: the queue is full and this peer's queue is already
    /// the longest.
    Dropped,
}

#[derive(Debug)]
struct PeerQueue<T> {
    id: u64,
    items: VecDeque<T>,
}

/// Per-peer queues of at most `capacity` frames in all.
#[derive(Debug)]
pub struct FairQueue<P, T> {
    queues: HashMap<P, PeerQueue<T>>,
    /// Peers with frames waiting, in service order (each once).
    order: VecDeque<P>,
    /// (queue length, keyed tie-break, peer id) of every peer with frames
    /// waiting, to find the longest at once; among equally long queues
    /// the one that loses a frame is drawn by a key this node keeps
    /// secret, not by which peer came first.
    lengths: BTreeSet<(usize, u64, u64)>,
    salt: RandomState,
    peers_by_id: HashMap<u64, P>,
    next_id: u64,
    len: usize,
    capacity: usize,
}

impl<P: Hash + Eq + Clone, T> FairQueue<P, T> {
    /// An empty queue holding at most `capacity` frames (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            queues: HashMap::new(),
            order: VecDeque::new(),
            lengths: BTreeSet::new(),
            salt: RandomState::new(),
            peers_by_id: HashMap::new(),
            next_id: 0,
            len: 0,
            capacity: capacity.max(1),
        }
    }

    /// Frames waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no frame waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Peers with frames waiting.
    pub fn peers(&self) -> usize {
        self.queues.len()
    }

    /// Queues `item` from `peer`. When the queue is full, the newest frame
    /// of the longest queue makes room, if that queue is longer than
    /// `peer`'s would be with `item`; otherwise `item` is dropped.
    pub fn push(&mut self, peer: P, item: T) -> Pushed<P> {
        let mut outcome = Pushed::Queued;
        if self.len >= self.capacity {
            let own = self.queues.get(&peer).map_or(0, |q| q.items.len());
            let Some(&(longest, _, id)) = self.lengths.last() else {
                return Pushed::Dropped;
            };
            // Room is made only from a queue longer than this peer's
            // would be: between equals, the frame already queued stays.
            if own + 1 >= longest {
                return Pushed::Dropped;
            }
            let Some(victim) = self.peers_by_id.get(&id).cloned() else {
                return Pushed::Dropped;
            };
            self.take(&victim, false);
            outcome = Pushed::QueuedDropping(victim);
        }
        let next_id = &mut self.next_id;
        let queue = self.queues.entry(peer.clone()).or_insert_with(|| {
            *next_id += 1;
            PeerQueue {
                id: *next_id,
                items: VecDeque::new(),
            }
        });
        let (id, before) = (queue.id, queue.items.len());
        queue.items.push_back(item);
        let tie = self.salt.hash_one(id);
        if before == 0 {
            self.order.push_back(peer.clone());
            self.peers_by_id.insert(id, peer);
        } else {
            self.lengths.remove(&(before, tie, id));
        }
        self.lengths.insert((before + 1, tie, id));
        self.len += 1;
        outcome
    }

    /// The next frame by round-robin over the peers with frames waiting,
    /// and whose it is.
    pub fn pop(&mut self) -> Option<(P, T)> {
        let peer = self.order.pop_front()?;
        let item = self.take(&peer, true)?;
        if self.queues.contains_key(&peer) {
            self.order.push_back(peer.clone());
        }
        Some((peer, item))
    }

    /// Removes `peer`'s oldest (`front`) or newest frame, keeping the
    /// books; forgets the peer when its queue empties (it leaves the
    /// service order too, unless the caller is `pop`, which has taken it
    /// out already).
    fn take(&mut self, peer: &P, front: bool) -> Option<T> {
        let queue = self.queues.get_mut(peer)?;
        let before = queue.items.len();
        let item = if front {
            queue.items.pop_front()
        } else {
            queue.items.pop_back()
        }?;
        let id = queue.id;
        let tie = self.salt.hash_one(id);
        self.lengths.remove(&(before, tie, id));
        self.len -= 1;
        if before == 1 {
            self.queues.remove(peer);
            self.peers_by_id.remove(&id);
            if !front {
                self.order.retain(|p| p != peer);
            }
        } else {
            self.lengths.insert((before - 1, tie, id));
        }
        Some(item)
    }
}

#[cfg(test)]
mod tests;
