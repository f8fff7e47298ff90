//! Sphinx key rotation: a node holds its previous, current and next
//! epoch keys, each with its own replay filter covering the key's whole
//! lifetime. A frame's key tag (epoch mod 256) picks the key, so a node
//! never tries two keys on one packet.

use mtos_crypto::sphinx::SphinxSecret;

use crate::replay::ReplayFilter;

/// A Sphinx key and the epoch it belongs to.
#[derive(Debug, Clone)]
pub struct EpochKey<K = SphinxSecret> {
    /// The epoch number (from the network document).
    pub epoch: u32,
    /// The key.
    pub secret: K,
}

/// A key in use and its replay filter.
#[derive(Debug)]
pub struct KeySlot<K = SphinxSecret> {
    /// Epoch number.
    pub epoch: u32,
    /// The key.
    pub secret: K,
    /// Tags seen under this key.
    pub filter: ReplayFilter,
}

impl<K> KeySlot<K> {
    /// The tag frames carry for this key.
    pub fn tag(&self) -> u8 {
        (self.epoch % 256) as u8
    }
}

/// How large each key's replay filter is.
#[derive(Debug, Clone, Copy)]
pub struct ReplaySizing {
    /// Packets expected over one key's lifetime.
    pub expected_per_key: u64,
    /// Target false-positive rate at that count.
    pub fp_rate: f64,
}

/// What moving to a new epoch asks of the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advanced {
    /// The epoch now current.
    pub epoch: u32,
    /// Keys (and their replay rows) of epochs before this are erased.
    pub erase_before: u32,
    /// The epoch whose key to make (or load) and install as next, and
    /// publish.
    pub next: u32,
}

/// Previous, current and next keys.
#[derive(Debug)]
pub struct KeyRing<K = SphinxSecret> {
    previous: Option<KeySlot<K>>,
    current: KeySlot<K>,
    next: Option<KeySlot<K>>,
    sizing: ReplaySizing,
}

impl<K> KeyRing<K> {
    /// A ring with only a current key.
    pub fn new(current: EpochKey<K>, sizing: ReplaySizing) -> Self {
        Self {
            previous: None,
            current: Self::slot(current, sizing),
            next: None,
            sizing,
        }
    }

    fn slot(key: EpochKey<K>, sizing: ReplaySizing) -> KeySlot<K> {
        KeySlot {
            epoch: key.epoch,
            secret: key.secret,
            filter: ReplayFilter::new(sizing.expected_per_key, sizing.fp_rate),
        }
    }

    /// Announces the next epoch's key (it is accepted from now on).
    /// Installing the same epoch again keeps the slot and its replay
    /// filter (a driver may re-read the same network document), so replays
    /// under that key stay caught.
    pub fn install_next(&mut self, key: EpochKey<K>) {
        if self.next.as_ref().is_some_and(|n| n.epoch == key.epoch) {
            return;
        }
        self.next = Some(Self::slot(key, self.sizing));
    }

    /// Moves to the next epoch: next becomes current, current is kept as
    /// previous for the grace period, the old previous key and its filter
    /// are dropped. Does nothing without an installed next key.
    pub fn rotate(&mut self) -> bool {
        let Some(next) = self.next.take() else {
            return false;
        };
        let old = std::mem::replace(&mut self.current, next);
        self.previous = Some(old);
        true
    }

    /// Moves to `key`'s epoch, the one the clock is in (`specs/mixing.md`,
    /// key rotation): that key becomes current (the published next key,
    /// when it is this epoch's, keeps its slot and replay filter), the
    /// current key stays as previous for the grace period only if it is
    /// the epoch just before (after a long pause there is no overlap), and
    /// the key before that is dropped. Returns what the driver must do on
    /// disk, or `None` when `key` is not later than the current epoch.
    pub fn advance_to(&mut self, key: EpochKey<K>) -> Option<Advanced> {
        let current = self.current_epoch();
        let target = key.epoch;
        if target <= current {
            return None;
        }
        self.install_next(key);
        self.rotate();
        if target != current.saturating_add(1) {
            self.retire_previous();
        }
        Some(Advanced {
            epoch: target,
            erase_before: target.saturating_sub(1),
            next: target.saturating_add(1),
        })
    }

    /// Ends the grace period of the previous key.
    pub fn retire_previous(&mut self) {
        self.previous = None;
    }

    /// The current epoch.
    pub fn current_epoch(&self) -> u32 {
        self.current.epoch
    }

    /// The slot whose tag is `tag`.
    pub fn by_tag(&mut self, tag: u8) -> Option<&mut KeySlot<K>> {
        if self.current.tag() == tag {
            return Some(&mut self.current);
        }
        if let Some(n) = self.next.as_mut().filter(|s| s.tag() == tag) {
            return Some(n);
        }
        self.previous.as_mut().filter(|s| s.tag() == tag)
    }

    /// All slots, for snapshots and metrics.
    pub fn slots(&self) -> impl Iterator<Item = &KeySlot<K>> {
        self.previous
            .iter()
            .chain(std::iter::once(&self.current))
            .chain(self.next.iter())
    }

    /// Mutable access, to restore filters from snapshots.
    pub fn slots_mut(&mut self) -> impl Iterator<Item = &mut KeySlot<K>> {
        self.previous
            .iter_mut()
            .chain(std::iter::once(&mut self.current))
            .chain(self.next.iter_mut())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn key(epoch: u32) -> EpochKey<u32> {
        EpochKey {
            epoch,
            secret: epoch * 10,
        }
    }

    fn epochs(ring: &KeyRing<u32>) -> Vec<u32> {
        ring.slots().map(|s| s.epoch).collect()
    }

    const SIZING: ReplaySizing = ReplaySizing {
        expected_per_key: 1_000,
        fp_rate: 1e-6,
    };

    #[test]
    fn advancing_one_epoch_keeps_the_previous_key_and_the_published_next_slot() {
        let mut ring = KeyRing::new(key(5), SIZING);
        ring.install_next(key(6));
        // A replay tag seen under the published next key stays seen.
        let tag = ring.by_tag(6).unwrap().tag();
        assert_eq!(tag, 6);
        assert!(
            ring.by_tag(6)
                .unwrap()
                .filter
                .check_and_insert(&[1; 32])
                .is_ok()
        );
        let done = ring.advance_to(key(6)).unwrap();
        assert_eq!(
            done,
            Advanced {
                epoch: 6,
                erase_before: 5,
                next: 7
            }
        );
        assert_eq!(epochs(&ring), vec![5, 6]);
        assert!(ring.by_tag(6).unwrap().filter.contains(&[1; 32]));
        ring.install_next(key(done.next));
        assert_eq!(epochs(&ring), vec![5, 6, 7]);
        // Not later than the current epoch: nothing happens.
        assert_eq!(ring.advance_to(key(6)), None);
        assert_eq!(ring.advance_to(key(3)), None);
        assert_eq!(epochs(&ring), vec![5, 6, 7]);
    }

    #[test]
    fn after_a_long_pause_there_is_no_overlap_with_a_stale_key() {
        let mut ring = KeyRing::new(key(5), SIZING);
        ring.install_next(key(6));
        let done = ring.advance_to(key(9)).unwrap();
        assert_eq!(done.erase_before, 8);
        // Neither epoch 5's key nor the unused epoch 6 key is accepted.
        assert_eq!(epochs(&ring), vec![9]);
        assert_eq!(ring.current_epoch(), 9);
    }
}
