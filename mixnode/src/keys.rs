//! Sphinx key rotation: a node holds its previous, current and next
//! epoch keys, each with its own replay filter covering the key's whole
//! lifetime. A frame's key tag (epoch mod 256) picks the key, so a node
//! never tries two keys on one packet.

use std::time::Duration;

use mtos_crypto::sphinx::SphinxSecret;

use crate::admission::TokenBucket;
use crate::replay::ReplayFilter;
use crate::time::Instant;

/// A key admits, while announced as the next epoch's and again while
/// kept as the previous one, at most this share (1/8) of its capacity,
/// each counted apart from what it admits while current: clients use a
/// key once its epoch has begun, so a next key sees almost nothing
/// honest, and a flood under it cannot eat the budget of its epoch; a
/// previous key sees only stragglers. Its filter is sized for the
/// capacity and both shares.
pub const SIDE_SHARE: u64 = 8;
/// A key's per-second budget may be spent this many seconds ahead.
pub const KEY_BURST_SECS: f64 = 10.0;

/// Where a key stands in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPhase {
    /// Announced as the next epoch's key.
    Next,
    /// The current epoch's key.
    Current,
    /// Kept as the previous epoch's key for the grace period.
    Previous,
}

/// A Sphinx key and the epoch it belongs to.
#[derive(Debug, Clone)]
pub struct EpochKey<K = SphinxSecret> {
    /// The epoch number (from the network document).
    pub epoch: u32,
    /// The key.
    pub secret: K,
}

/// A key in use, its replay filter, and what it may still admit.
#[derive(Debug)]
pub struct KeySlot<K = SphinxSecret> {
    /// Epoch number.
    pub epoch: u32,
    /// The key.
    pub secret: K,
    /// Tags seen under this key.
    pub filter: ReplayFilter,
    /// Tags the key admits while current (its capacity).
    capacity: u64,
    /// The per-second cap, once a packet has come (from the sizing).
    per_second: Option<f64>,
    bucket: Option<TokenBucket>,
    phase: KeyPhase,
    /// Tags admitted in the current phase.
    phase_admitted: u64,
}

impl<K> KeySlot<K> {
    /// The tag frames carry for this key.
    pub fn tag(&self) -> u8 {
        (self.epoch % 256) as u8
    }

    /// Whether one more packet may enter this key's filter at `now`
    /// (`specs/mixing.md` §2). While current, at most its capacity; while
    /// next, and again while previous, at most [`SIDE_SHARE`] of it,
    /// counted apart; never beyond what the filter is sized for (the
    /// three together), so its false-positive rate stays at or under the
    /// target whatever arrives, and an honest packet is never dropped as a
    /// replay because of a flood. And at most the sizing's rate a second
    /// ([`KEY_BURST_SECS`] of it at once), which is set so that a flood
    /// cannot spend the key's capacity before its epoch ends. `false`:
    /// the packet is refused, counted as `key_cap`.
    pub fn admit(&mut self, now: Instant) -> bool {
        let share = match self.phase {
            KeyPhase::Current => self.capacity,
            KeyPhase::Next | KeyPhase::Previous => self.capacity / SIDE_SHARE,
        };
        if self.phase_admitted >= share || self.filter.inserted() >= sized_for(self.capacity) {
            return false;
        }
        let within_rate = match self.per_second {
            None => true,
            Some(rate) => self
                .bucket
                .get_or_insert_with(|| {
                    TokenBucket::new(now, rate, (rate * KEY_BURST_SECS).max(1.0))
                })
                .try_take(now),
        };
        if within_rate {
            self.phase_admitted += 1;
        }
        within_rate
    }

    /// Tags the filter holds as a share of what it is sized for.
    pub fn fill(&self) -> f64 {
        self.filter.inserted() as f64 / sized_for(self.capacity).max(1) as f64
    }

    /// Where the key stands.
    pub fn phase(&self) -> KeyPhase {
        self.phase
    }

    fn enter(&mut self, phase: KeyPhase) {
        if self.phase != phase {
            self.phase = phase;
            self.phase_admitted = 0;
        }
    }
}

/// Tags a key's filter is sized for: its capacity and the two side shares.
fn sized_for(capacity: u64) -> u64 {
    capacity.saturating_add(2 * (capacity / SIDE_SHARE))
}

/// How large each key's replay filter is, and how fast it may fill.
#[derive(Debug, Clone, Copy)]
pub struct ReplaySizing {
    /// Packets one key admits over its lifetime: its filter's size.
    pub expected_per_key: u64,
    /// Target false-positive rate at that count.
    pub fp_rate: f64,
    /// Packets one key admits per second at most (`None`: no rate cap,
    /// only the capacity; the simulator's setting).
    pub per_second: Option<f64>,
}

impl ReplaySizing {
    /// A node's sizing: `capacity` packets per key while current, the
    /// epoch it carries nearly all its traffic in, admitted at most at
    /// the rate that, with its burst, reaches the capacity only as an
    /// epoch of `epoch` ends.
    pub fn for_epochs(capacity: u64, fp_rate: f64, epoch: Duration) -> Self {
        let window = epoch.as_secs_f64().max(1.0) + KEY_BURST_SECS;
        Self {
            expected_per_key: capacity,
            fp_rate,
            per_second: Some(capacity as f64 / window),
        }
    }
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
    /// Whether its keys keep replay filters (always, but in a simulator
    /// that asks for [`KeyRing::unfiltered`]).
    filtered: bool,
}

impl<K> KeyRing<K> {
    /// A ring with only a current key.
    pub fn new(current: EpochKey<K>, sizing: ReplaySizing) -> Self {
        Self {
            previous: None,
            current: Self::slot(current, sizing, true),
            next: None,
            sizing,
            filtered: true,
        }
    }

    /// A ring whose keys keep no replay filter ([`ReplayFilter::off`]):
    /// every packet passes the replay check. Only for a simulation in
    /// which no party copies a packet (the simulator's abstract packets,
    /// when its scenario turns the filters off, as it reports); a node
    /// always uses [`KeyRing::new`]. The keys' budgets still hold.
    pub fn unfiltered(current: EpochKey<K>, sizing: ReplaySizing) -> Self {
        Self {
            previous: None,
            current: Self::slot(current, sizing, false),
            next: None,
            sizing,
            filtered: false,
        }
    }

    fn slot(key: EpochKey<K>, sizing: ReplaySizing, filtered: bool) -> KeySlot<K> {
        let filter = match filtered {
            true => ReplayFilter::new(sized_for(sizing.expected_per_key.max(1)), sizing.fp_rate),
            false => ReplayFilter::off(),
        };
        KeySlot {
            epoch: key.epoch,
            secret: key.secret,
            filter,
            capacity: sizing.expected_per_key.max(1),
            per_second: sizing.per_second.filter(|r| r.is_finite() && *r > 0.0),
            bucket: None,
            phase: KeyPhase::Current,
            phase_admitted: 0,
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
        let mut slot = Self::slot(key, self.sizing, self.filtered);
        slot.enter(KeyPhase::Next);
        self.next = Some(slot);
    }

    /// Moves to the next epoch: next becomes current, current is kept as
    /// previous for the grace period, the old previous key and its filter
    /// are dropped. Does nothing without an installed next key.
    pub fn rotate(&mut self) -> bool {
        let Some(mut next) = self.next.take() else {
            return false;
        };
        next.enter(KeyPhase::Current);
        let mut old = std::mem::replace(&mut self.current, next);
        old.enter(KeyPhase::Previous);
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
        per_second: None,
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

    /// An unfiltered ring's keys keep no filter through rotations, and a
    /// ring made by `new` keeps one for every key it installs.
    #[test]
    fn an_unfiltered_ring_stays_unfiltered_and_a_new_one_filtered() {
        let mut off = KeyRing::unfiltered(key(1), SIZING);
        let mut on = KeyRing::new(key(1), SIZING);
        for epoch in 2..5 {
            off.advance_to(key(epoch));
            on.advance_to(key(epoch));
            off.install_next(key(epoch + 1));
            on.install_next(key(epoch + 1));
            assert!(
                off.slots()
                    .all(|s| !s.filter.is_on() && s.filter.memory_bytes() == 0)
            );
            assert!(on.slots().all(|s| s.filter.is_on()));
        }
    }
}
