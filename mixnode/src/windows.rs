//! A client's bulk windows on its own clock (`specs/client.md` §4.1): the
//! class it is in at each instant, and its cover schedule driven through
//! the switches. Sans-IO like the schedule: the client's send loop, the
//! tests that check a client at its gateway and the simulator all drive
//! [`WindowedSchedule`] alike, so the instants of every send follow from
//! the schedule's seed, the ticket and the document alone, whatever is
//! queued.

use std::time::Duration;

use rand::Rng;

use crate::cover::{CoverRates, CoverSchedule, QueueFull, Send};
use crate::directory::{EpochSchedule, Rates, Ticket};
use crate::time::Instant;

/// The classes of one client over its clock: `origin` (its
/// [`Instant::ZERO`]) is Unix ms `origin_unix_ms`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassTimeline {
    /// The document's rates (with its bulk class, if any).
    pub rates: Rates,
    /// The document's epoch schedule (windows count from its genesis).
    pub schedule: EpochSchedule,
    /// The ticket the client's windows are granted under.
    pub ticket: Ticket,
    /// Unix ms at the client's [`Instant::ZERO`].
    pub origin_unix_ms: u64,
}

impl ClassTimeline {
    fn unix_ms(&self, at: Instant) -> u64 {
        let since = u64::try_from(at.since_origin().as_millis()).unwrap_or(u64::MAX);
        self.origin_unix_ms.saturating_add(since)
    }

    fn instant(&self, unix_ms: u64) -> Instant {
        Instant::ZERO + Duration::from_millis(unix_ms.saturating_sub(self.origin_unix_ms))
    }

    /// The client's stream rates at `at`.
    pub fn rates_at(&self, at: Instant) -> CoverRates {
        let class = self
            .rates
            .class_at(&self.schedule, self.ticket, self.unix_ms(at));
        CoverRates {
            payload: class.payload,
            loop_cover: class.loops,
            drop_cover: class.drops,
            node_loop: 0.0,
        }
    }

    /// Whether the client is in a bulk window at `at`.
    pub fn in_window(&self, at: Instant) -> bool {
        self.rates
            .bulk
            .is_some_and(|b| b.in_window(&self.schedule, self.ticket, self.unix_ms(at)))
    }

    /// The first switch of class after `at`.
    pub fn next_change(&self, at: Instant) -> Option<Instant> {
        let b = self.rates.bulk?;
        let unix = b.next_change(&self.schedule, self.ticket, self.unix_ms(at))?;
        Some(self.instant(unix))
    }
}

/// A cover schedule that follows its client's class: each stream is a
/// Poisson process at the rate of the class the client is in, switching
/// at the exact instants of the window schedule (a stream whose rate
/// changes draws its next send afresh from the switch, which the
/// exponential's lack of memory makes exact). Queued real packets wait
/// for payload slots in either class; nothing queued moves a switch.
#[derive(Debug)]
pub struct WindowedSchedule<T> {
    schedule: CoverSchedule<T>,
    timeline: ClassTimeline,
    /// The instant up to which switches have been applied.
    applied: Instant,
}

impl<T> WindowedSchedule<T> {
    /// Starts every stream at `now` at the rates of the class the client
    /// is in then.
    pub fn new<R: Rng + ?Sized>(
        now: Instant,
        timeline: ClassTimeline,
        queue_limit: usize,
        rng: &mut R,
    ) -> Self {
        Self {
            schedule: CoverSchedule::new(now, timeline.rates_at(now), queue_limit, rng),
            timeline,
            applied: now,
        }
    }

    /// The timeline followed.
    pub fn timeline(&self) -> &ClassTimeline {
        &self.timeline
    }

    /// Follows a new timeline from `now` (a new document, or a ticket
    /// granted or withdrawn when the session reopened): streams whose
    /// rate differs from `now` on draw afresh, as at a switch.
    pub fn set_timeline<R: Rng + ?Sized>(
        &mut self,
        now: Instant,
        timeline: ClassTimeline,
        rng: &mut R,
    ) {
        if timeline == self.timeline {
            return;
        }
        // Switches before `now` under the old timeline first.
        self.apply_switches(now, rng);
        self.timeline = timeline;
        self.schedule.set_rates(now, timeline.rates_at(now), rng);
        self.applied = self.applied.max(now);
    }

    /// Applies every switch up to `until` that comes before the next send.
    fn apply_switches<R: Rng + ?Sized>(&mut self, until: Instant, rng: &mut R) {
        while let Some(c) = self.timeline.next_change(self.applied) {
            let due = self.schedule.poll_timeout();
            // A send due at or before the switch goes first, at the old
            // rate.
            if c > until || due.is_some_and(|d| d <= c) {
                return;
            }
            self.schedule.set_rates(c, self.timeline.rates_at(c), rng);
            self.applied = c;
        }
    }

    /// When to come back: the next send or the next switch.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let switch = self.timeline.next_change(self.applied);
        match (self.schedule.poll_timeout(), switch) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The send due at `now`, if any (call until `None`), with the
    /// instant it was scheduled for; switches due before it are applied
    /// first, at their own instants.
    pub fn poll_send<R: Rng + ?Sized>(
        &mut self,
        now: Instant,
        rng: &mut R,
    ) -> Option<(Instant, Send<T>)> {
        // Every switch before the next send is applied: that send is
        // the next event.
        self.apply_switches(now, rng);
        let due = self.schedule.poll_timeout()?;
        if due > now {
            return None;
        }
        self.schedule.poll_send(now, rng).map(|s| (due, s))
    }

    /// Queues a real packet for the payload stream.
    pub fn push_real(&mut self, item: T) -> Result<(), QueueFull<T>> {
        self.schedule.push_real(item)
    }

    /// Real packets waiting.
    pub fn queued(&self) -> usize {
        self.schedule.queued()
    }

    /// The rates followed now.
    pub fn rates(&self) -> CoverRates {
        self.schedule.rates()
    }
}

#[cfg(test)]
mod tests;
