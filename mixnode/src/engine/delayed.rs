//! The packets an engine holds under a delay, by release time.
//!
//! A heap of (release, arrival number, slot) over a slab of the packets,
//! so a heap step moves 32 bytes rather than a whole held packet (its
//! frame's handle and its next hop or destination, about 120 bytes): a
//! gateway holds hundreds at once, and the heap's pops were a tenth of a
//! large simulation's instructions.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::Held;
use crate::time::Instant;

#[derive(Debug, Default)]
pub(super) struct Delayed {
    /// Earliest release first; equal releases in arrival order.
    order: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    /// Each held packet and when it arrived, by slot.
    slots: Vec<Option<(Instant, Held)>>,
    /// Slots free for reuse.
    free: Vec<usize>,
}

impl Delayed {
    /// Holds `held` (arrived at `arrived`, the `seq`-th taken in) until
    /// `release`.
    pub(super) fn push(&mut self, release: Instant, seq: u64, arrived: Instant, held: Held) {
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s] = Some((arrived, held));
                s
            }
            None => {
                self.slots.push(Some((arrived, held)));
                self.slots.len() - 1
            }
        };
        self.order.push(Reverse((release, seq, slot)));
    }

    /// When the next packet is due.
    pub(super) fn next_release(&self) -> Option<Instant> {
        self.order.peek().map(|Reverse((release, _, _))| *release)
    }

    /// The next packet due at `now` or before, with its arrival time.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<(Instant, Held)> {
        if self.next_release().is_none_or(|r| r > now) {
            return None;
        }
        let Reverse((_, _, slot)) = self.order.pop()?;
        self.free.push(slot);
        self.slots.get_mut(slot).and_then(Option::take)
    }

    /// Packets held.
    pub(super) fn len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mtos_crypto::sphinx::Destination;

    use super::*;
    use crate::engine::Delivery;

    fn held(tag: u8) -> Held {
        Held::Deliver(Delivery {
            destination: Destination {
                address: [tag; 32],
                surb_id: [0; 16],
            },
            payload: vec![tag],
        })
    }

    fn tag_of(h: &Held) -> u8 {
        match h {
            Held::Deliver(d) => d.payload[0],
            Held::Forward(t) => t.frame[0],
        }
    }

    /// Packets leave by release time, equal releases in arrival order,
    /// none before its time; freed slots are reused, so the slab grows
    /// only to the most held at once.
    #[test]
    fn packets_leave_by_release_then_arrival() {
        let at = |ms: u64| Instant::ZERO + Duration::from_millis(ms);
        let mut d = Delayed::default();
        for (seq, (release, tag)) in [(30, 1), (10, 2), (30, 3), (20, 4), (10, 5)]
            .into_iter()
            .enumerate()
        {
            d.push(at(release), seq as u64, at(0), held(tag));
        }
        assert_eq!(d.next_release(), Some(at(10)));
        assert!(d.pop_due(at(9)).is_none());
        let mut out = Vec::new();
        while let Some((_, h)) = d.pop_due(at(30)) {
            out.push(tag_of(&h));
        }
        assert_eq!(out, [2, 5, 4, 1, 3]);
        assert_eq!(d.len(), 0);
        for round in 0..10u64 {
            d.push(at(40 + round), 10 + round, at(30), held(9));
            assert!(d.pop_due(at(40 + round)).is_some());
        }
        assert_eq!(d.slots.len(), 5);
    }
}
