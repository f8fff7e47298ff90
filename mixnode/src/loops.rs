//! Node loop cover (λM, `specs/mixing.md` §5) and the loss alarm, as a
//! machine. Every node sends loops on the node stream of a
//! [`CoverSchedule`], each through every other position of the network and
//! back to itself ([`route::loop_route`], the one rule the node and the
//! simulator share), and tracks them. A loop not back within its timeout
//! is lost; a loss share above the alarm threshold over the recent loops
//! means packets are being dropped on purpose somewhere, the signature of
//! an n−1 or blocking attack.
//!
//! Sans-IO like the engine: the driver passes `now` and its RNG, sleeps
//! until [`NodeLoops::poll_timeout`], builds and sends the loops
//! [`NodeLoops::poll_send`] asks for, reports returns, and exports
//! [`NodeLoops::counts`] and alarms. Nothing here reads a clock or
//! touches metrics.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use mtos_crypto::sphinx::SURB_ID_LEN;
use rand::Rng;

use crate::admission::Position;
use crate::cover::{CoverRates, CoverSchedule, Send};
use crate::route::{self, Nodes};
use crate::time::Instant;

/// A loop's identifier: the SURB id of its destination.
pub type LoopId = [u8; SURB_ID_LEN];

/// How loops are judged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoopConfig {
    /// Resolved loops (returned or lost) the loss share is taken over.
    pub window: usize,
    /// Resolved loops needed before a loss share is reported.
    pub min_resolved: usize,
    /// A loss share above this raises the alarm.
    pub alarm: f64,
    /// After an alarm, no other for this long (one per episode, not one
    /// per lost loop).
    pub quiet: Duration,
    /// Loops in flight tracked at once; none is sent beyond it.
    pub max_pending: usize,
    /// A send overdue by more than this (the driver was stalled) is not
    /// made up: the stream restarts from `now`, so a stall never ends in
    /// a burst of loops (a traffic signature, and full send queues that
    /// would count as losses).
    pub max_late: Duration,
}

impl Default for LoopConfig {
    fn default() -> Self {
        Self {
            window: 100,
            min_resolved: 20,
            alarm: 0.5,
            quiet: Duration::from_secs(60),
            max_pending: 10_000,
            max_late: Duration::from_secs(1),
        }
    }
}

/// How long a loop may take before it is counted lost, for a network
/// whose hops hold packets at most `max_delay_ms`: a loop takes about
/// five mean delays, and a mix's loop waits at a service node for its
/// answer (asking the replicas, each within
/// [`DEFAULT_ASK_TIMEOUT`](crate::service_machine::DEFAULT_ASK_TIMEOUT));
/// one not back after four maximum delays (at least 10 s) and that wait
/// is lost.
pub fn loop_timeout(max_delay_ms: u64) -> Duration {
    Duration::from_millis(max_delay_ms.saturating_mul(4)).max(Duration::from_secs(10))
        + crate::service_machine::DEFAULT_ASK_TIMEOUT
}

/// Loops by fate since the start (cumulative, like engine counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoopCounts {
    /// Sent.
    pub sent: u64,
    /// Came back in time.
    pub returned: u64,
    /// Not back within their timeout.
    pub lost: u64,
}

impl std::ops::AddAssign for LoopCounts {
    /// Sums two nodes' counts (a network's total).
    fn add_assign(&mut self, other: Self) {
        self.sent += other.sent;
        self.returned += other.returned;
        self.lost += other.lost;
    }
}

/// An alarm: most recent loops were lost, or the loops through one node
/// were, while the others came back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossAlarm {
    /// When it was raised.
    pub at: Instant,
    /// The lost share of the recent loops.
    pub loss: f64,
    /// The node the losses point at, when they concentrate on one: most
    /// loops through it lost, few of the others (see [`LoopTracker`]).
    pub suspect: Option<[u8; 32]>,
}

/// Loops through a node, among the recent ones, before it can be a
/// suspect (and loops not through it, to compare with).
const MIN_THROUGH: usize = 10;

/// Loops in flight and the fate of recent ones. Each loop remembers the
/// nodes it crosses, so a loss can be attributed: one dropping mix among
/// several per layer costs everyone else only a share of their loops
/// (below the overall threshold), but every loop through it. A node is a
/// suspect when, over the recent loops, more than the alarm share of the
/// loops through it were lost and at most a quarter of that share of the
/// loops not through it.
#[derive(Debug)]
pub struct LoopTracker {
    config: LoopConfig,
    pending: HashMap<LoopId, (Instant, Vec<[u8; 32]>)>,
    /// The same loops by deadline (deadline, id), for expiry in order.
    deadlines: BTreeSet<(Instant, LoopId)>,
    recent: VecDeque<(bool, Vec<[u8; 32]>)>,
    counts: LoopCounts,
    alarmed_at: Option<Instant>,
    alarm: Option<LossAlarm>,
}

impl LoopTracker {
    /// An empty tracker.
    pub fn new(config: LoopConfig) -> Self {
        Self {
            config,
            pending: HashMap::new(),
            deadlines: BTreeSet::new(),
            recent: VecDeque::new(),
            counts: LoopCounts::default(),
            alarmed_at: None,
            alarm: None,
        }
    }

    /// Forgets a loop that was tracked but never sent (its frame could not
    /// be built): neither sent nor lost.
    pub fn cancel(&mut self, id: &LoopId) {
        if let Some((deadline, _)) = self.pending.remove(id) {
            self.deadlines.remove(&(deadline, *id));
            self.counts.sent = self.counts.sent.saturating_sub(1);
        }
    }

    /// Tracks a loop sent at `now` that must be back within `timeout`;
    /// `false` (not tracked: do not send it) when too many are in flight
    /// or the id is already in flight.
    pub fn track(&mut self, now: Instant, id: LoopId, timeout: Duration) -> bool {
        self.track_via(now, id, timeout, Vec::new())
    }

    /// [`LoopTracker::track`] for a loop crossing the nodes `via` (keys;
    /// not the sender itself), whose fate then counts for or against them.
    pub fn track_via(
        &mut self,
        now: Instant,
        id: LoopId,
        timeout: Duration,
        via: Vec<[u8; 32]>,
    ) -> bool {
        if self.pending.len() >= self.config.max_pending || self.pending.contains_key(&id) {
            return false;
        }
        let deadline = now + timeout;
        self.pending.insert(id, (deadline, via));
        self.deadlines.insert((deadline, id));
        self.counts.sent += 1;
        true
    }

    /// A loop with this id came back at `now`; `false` if it is not one
    /// in flight (a forgery, a duplicate, or one already counted lost).
    pub fn returned(&mut self, now: Instant, id: &LoopId) -> bool {
        let Some((deadline, via)) = self.pending.remove(id) else {
            return false;
        };
        self.deadlines.remove(&(deadline, *id));
        self.counts.returned += 1;
        self.resolve(now, true, via);
        true
    }

    /// Counts as lost every loop whose deadline is `now` or past.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            let via = self.pending.remove(&id).map(|p| p.1).unwrap_or_default();
            self.counts.lost += 1;
            self.resolve(now, false, via);
        }
    }

    /// When the next loop in flight runs out of time.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.first().map(|(d, _)| *d)
    }

    /// Lost share of the recent loops, once enough are resolved.
    pub fn loss_ratio(&self) -> Option<f64> {
        (self.recent.len() >= self.config.min_resolved.max(1))
            .then(|| self.recent.iter().filter(|r| !r.0).count() as f64 / self.recent.len() as f64)
    }

    /// Loops by fate so far.
    pub fn counts(&self) -> LoopCounts {
        self.counts
    }

    /// Loops in flight.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// The alarm raised since the last call, if any (the newest).
    pub fn poll_alarm(&mut self) -> Option<LossAlarm> {
        self.alarm.take()
    }

    fn resolve(&mut self, now: Instant, returned: bool, via: Vec<[u8; 32]>) {
        if self.recent.len() >= self.config.window.max(1) {
            self.recent.pop_front();
        }
        self.recent.push_back((returned, via));
        let Some(loss) = self.loss_ratio() else {
            return;
        };
        let suspect = self.suspect();
        let quiet = self
            .alarmed_at
            .is_none_or(|t| now.saturating_since(t) >= self.config.quiet);
        if (loss > self.config.alarm || suspect.is_some()) && quiet {
            self.alarmed_at = Some(now);
            self.alarm = Some(LossAlarm {
                at: now,
                loss,
                suspect,
            });
        }
    }

    /// The node the recent losses concentrate on, if one stands out.
    pub fn suspect(&self) -> Option<[u8; 32]> {
        let total = self.recent.len();
        let lost_total = self.recent.iter().filter(|r| !r.0).count();
        let mut per: BTreeMap<[u8; 32], (usize, usize)> = BTreeMap::new();
        for (returned, via) in &self.recent {
            let mut seen: Vec<&[u8; 32]> = Vec::with_capacity(via.len());
            for node in via {
                if seen.contains(&node) {
                    continue;
                }
                seen.push(node);
                let e = per.entry(*node).or_default();
                e.0 += 1;
                if !returned {
                    e.1 += 1;
                }
            }
        }
        let mut best: Option<([u8; 32], f64)> = None;
        for (node, (through, lost)) in per {
            let outside_n = total - through;
            if through < MIN_THROUGH || outside_n < MIN_THROUGH {
                continue;
            }
            let inside = lost as f64 / through as f64;
            let outside = (lost_total - lost) as f64 / outside_n as f64;
            if inside > self.config.alarm
                && outside <= inside / 4.0
                && best.is_none_or(|(_, b)| inside - outside > b)
            {
                best = Some((node, inside - outside));
            }
        }
        best.map(|(node, _)| node)
    }
}

/// A loop to send now: its id (the SURB id of the destination, which is
/// the node itself) and its route, ending at the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopSend<N> {
    /// The loop's id.
    pub id: LoopId,
    /// The nodes it crosses; the first is the one its frame goes to.
    pub route: Vec<N>,
    /// A mix's loop: the index in `route` of the service node it asks,
    /// which answers through a reply block over the rest of the route
    /// ([`route::loop_turn`], [`request`]). `None`: one forward packet
    /// over the whole route.
    pub turn: Option<usize>,
}

/// One node's loop cover: the schedule and the tracker.
#[derive(Debug)]
pub struct NodeLoops {
    rate: f64,
    schedule: Option<CoverSchedule<()>>,
    tracker: LoopTracker,
    max_late: Duration,
    /// Loops due that had no route (a position of the route empty: a
    /// mix's loops need a service node).
    unroutable: u64,
}

impl NodeLoops {
    /// No loops until [`NodeLoops::set_rate`] gives a rate.
    pub fn new(config: LoopConfig) -> Self {
        Self {
            rate: 0.0,
            schedule: None,
            tracker: LoopTracker::new(config),
            max_late: config.max_late,
            unroutable: 0,
        }
    }

    /// The network's λM (per second; 0 or not finite: none). A new rate
    /// restarts the stream at `now`; the same rate leaves it alone.
    pub fn set_rate<R: Rng + ?Sized>(&mut self, now: Instant, rate: f64, rng: &mut R) {
        let rate = if rate.is_finite() && rate > 0.0 {
            rate.min(10_000.0)
        } else {
            0.0
        };
        if rate == self.rate && (self.schedule.is_some() || rate == 0.0) {
            return;
        }
        self.rate = rate;
        self.schedule = (rate > 0.0).then(|| {
            let rates = CoverRates {
                node_loop: rate,
                ..CoverRates::default()
            };
            CoverSchedule::new(now, rates, 0, rng)
        });
    }

    /// When to come back: the next loop due, or the next deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let send = self.schedule.as_ref().and_then(CoverSchedule::poll_timeout);
        [send, self.tracker.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Counts lost loops whose time ran out by `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tracker.handle_timeout(now);
    }

    /// The loop due at `now`, if any (call until `None`): routed through
    /// `nodes` from `me` at `position`, tracked with `timeout`. A loop
    /// that cannot be routed (a position is empty) or tracked is skipped;
    /// sends overdue by more than `max_late` are dropped, not caught up.
    /// A driver whose node is not in the document calls
    /// [`NodeLoops::set_rate`] with 0 instead.
    pub fn poll_send<N: Nodes, R: Rng + ?Sized>(
        &mut self,
        now: Instant,
        nodes: &N,
        me: N::Node,
        position: Position,
        timeout: Duration,
        rng: &mut R,
    ) -> Option<LoopSend<N::Node>> {
        if let Some(due) = self.schedule.as_ref().and_then(CoverSchedule::poll_timeout)
            && now.saturating_since(due) > self.max_late
        {
            let rates = CoverRates {
                node_loop: self.rate,
                ..CoverRates::default()
            };
            self.schedule = Some(CoverSchedule::new(now, rates, 0, rng));
        }
        let schedule = self.schedule.as_mut()?;
        while let Some(send) = schedule.poll_send(now, rng) {
            if !matches!(send, Send::NodeLoop) {
                continue;
            }
            let Some(route) = route::loop_route(nodes, rng, me.clone(), position) else {
                self.unroutable += 1;
                continue;
            };
            let mut id = [0u8; SURB_ID_LEN];
            rng.fill_bytes(&mut id);
            let via: Vec<[u8; 32]> = route
                .iter()
                .take(route.len().saturating_sub(1))
                .map(|n| nodes.key(n))
                .collect();
            if self.tracker.track_via(now, id, timeout, via) {
                let turn = route::loop_turn(position, nodes.layers());
                return Some(LoopSend { id, route, turn });
            }
        }
        None
    }

    /// Forgets a loop [`NodeLoops::poll_send`] asked for that was not sent
    /// after all (its frame could not be built).
    pub fn cancel(&mut self, id: &LoopId) {
        self.tracker.cancel(id);
    }

    /// A loop addressed to this node came back at `now`; `false` if it is
    /// not one in flight.
    pub fn returned(&mut self, now: Instant, id: &LoopId) -> bool {
        self.tracker.returned(now, id)
    }

    /// Loops due that were not sent for want of a route (a position
    /// the route crosses has no node), since the start.
    pub fn unroutable(&self) -> u64 {
        self.unroutable
    }

    /// The tracker (counts, loss share, alarms).
    pub fn tracker(&mut self) -> &mut LoopTracker {
        &mut self.tracker
    }
}

pub mod request;

#[cfg(test)]
mod tests;
