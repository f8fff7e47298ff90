//! Repair (`specs/storage.md` §1) as a machine: when the document's
//! storage nodes change, every record whose replicas gained a node is
//! copied to that node by the replicas that held it before.
//!
//! The plan per record is [`placement::repair`]. Of a record's sources
//! (replicas under both the old and the new storage nodes), the one of
//! rank 0 (highest weight) copies in round 0, at once; rank r copies in
//! round r, r heartbeats after the pass began, so a record is normally
//! sent once, yet still arrives when its first sources are gone too. In
//! each round the node walks its records a page at a time, asks each
//! target which of its records it has (`have`, up to [`MAX_PROBE`]
//! locators an ask) and copies only the missing ones, paced at
//! `per_sec` with at most `in_flight` copies at once. A change of the
//! storage nodes during a pass starts it over (after the document
//! settles for a heartbeat) against the same old set; a pass with failed
//! copies runs again after 3, 9, 27… heartbeats (at most 10 minutes). The
//! old set of the last completed pass is the baseline, which the driver
//! keeps on disk so a restarted node repairs what it slept through.
//!
//! Sans-IO: the driver reads pages and records from its store, carries
//! `have` asks and copies to the targets, saves the baseline, and
//! exports [`RepairCounts`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use mtos_crypto::item::Locator;

use crate::placement::{self, DEFAULT_REPLICAS, StorageNode};
use crate::records::Kind;
use crate::replica_proto::ReplicaStatus;
use crate::service::MAX_PROBE;
use crate::time::Instant;

/// An action's number, unique for the machine's life.
pub type ActionId = u64;

/// How a node repairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepairConfig {
    /// Replicas per record (K).
    pub replicas: usize,
    /// Copies per second at most.
    pub per_sec: u32,
    /// Copies in flight at once.
    pub in_flight: usize,
    /// Records read from the store at a time.
    pub page: usize,
    /// A page read, `have` or copy not reported within this counts as
    /// failed (the driver's own timeouts are shorter; this keeps the
    /// machine from waiting forever on a report that never comes).
    pub action_timeout: Duration,
}

impl Default for RepairConfig {
    fn default() -> Self {
        Self {
            replicas: DEFAULT_REPLICAS,
            per_sec: 100,
            in_flight: 8,
            page: 1_024,
            action_timeout: Duration::from_secs(60),
        }
    }
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepairAction {
    /// Read up to `limit` records' keys after `after` (in key order; from
    /// the start when `None`) and hand them to
    /// [`RepairPlan::handle_page`].
    ReadPage {
        /// Its number.
        id: ActionId,
        /// The last key of the previous page.
        after: Option<(Kind, Locator)>,
        /// Keys at most.
        limit: usize,
    },
    /// Ask `target` which of `locators` (records of `kind`) it holds (a
    /// `have` request) and hand the bitmap to [`RepairPlan::handle_have`].
    Have {
        /// Its number.
        id: ActionId,
        /// The node asked.
        target: [u8; 32],
        /// The records' kind.
        kind: Kind,
        /// The records (1 to [`MAX_PROBE`]).
        locators: Vec<Locator>,
    },
    /// Read the record and put it on `target`, then report with
    /// [`RepairPlan::handle_copied`].
    Copy {
        /// Its number.
        id: ActionId,
        /// The new replica.
        target: [u8; 32],
        /// The record's kind.
        kind: Kind,
        /// The record.
        locator: Locator,
    },
    /// Keep these storage nodes (sorted) as the baseline.
    SaveBaseline(Vec<StorageNode>),
}

/// How a copy went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copied {
    /// The target stored it (`bytes` long).
    Sent {
        /// The record's length.
        bytes: usize,
    },
    /// The target refused it.
    Refused,
    /// The target could not be reached.
    Failed,
    /// This node no longer holds the record (evicted): nothing to send.
    Gone,
}

/// What repair did, cumulative (the driver exports differences).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RepairCounts {
    /// Records copied to a new replica.
    pub sent: u64,
    /// Bytes of those records.
    pub bytes: u64,
    /// Records a target already held.
    pub present: u64,
    /// Copies the target refused.
    pub refused: u64,
    /// Records not copied: target unreachable, or its `have` failed.
    pub failed: u64,
    /// Passes completed.
    pub passes: u64,
}

impl std::ops::AddAssign for RepairCounts {
    /// Sums two nodes' counts (a network's total).
    fn add_assign(&mut self, other: Self) {
        self.sent += other.sent;
        self.bytes += other.bytes;
        self.present += other.present;
        self.refused += other.refused;
        self.failed += other.failed;
        self.passes += other.passes;
    }
}

/// How the current pass ended, when it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassOutcome {
    /// Every record's new replicas have it (or were sent it).
    Complete,
    /// Some copies failed; the pass runs again later.
    Incomplete,
    /// The storage nodes changed again; the pass starts over.
    Interrupted,
}

/// One batch offered to one target.
struct Offer {
    target: [u8; 32],
    kind: Kind,
    locators: Vec<Locator>,
    phase: OfferPhase,
}

enum OfferPhase {
    /// To ask `have`.
    Ready,
    /// `have` asked.
    Asking(ActionId),
    /// Copying the missing records, paced from `start`.
    Copying {
        missing: VecDeque<Locator>,
        start: Instant,
        sent: u32,
        out: usize,
    },
}

enum RoundPhase {
    /// The round begins at this time.
    Waiting(Instant),
    /// A page was asked for.
    Reading(ActionId),
    /// Offering a page's records; `last` is its last key.
    Offering {
        last: (Kind, Locator),
        offers: VecDeque<Offer>,
    },
}

struct Pass {
    old: Vec<StorageNode>,
    new: Vec<StorageNode>,
    start: Instant,
    stagger: Duration,
    rank: usize,
    round: RoundPhase,
    incomplete: bool,
    /// A follow-up pass (from a set that held in between, or the same
    /// change again): its completion schedules no further one.
    follow_up: bool,
}

/// Follow-up passes kept at most (the oldest are dropped).
const MAX_FOLLOW_UPS: usize = 8;

enum State {
    Idle,
    /// The storage nodes changed: waiting for the document to settle.
    Settling(Instant),
    Passing(Box<Pass>),
    /// After an incomplete pass.
    Backoff(Instant),
}

/// One storage node's repair.
pub struct RepairPlan {
    me: [u8; 32],
    config: RepairConfig,
    baseline: Option<Vec<StorageNode>>,
    current: Option<Vec<StorageNode>>,
    heartbeat: Duration,
    state: State,
    failures: u32,
    next_id: ActionId,
    actions: VecDeque<RepairAction>,
    counts: RepairCounts,
    outcomes: VecDeque<PassOutcome>,
    /// Copies out, and whether they belong to the current pass.
    copies: BTreeMap<ActionId, bool>,
    /// Reports awaited: (deadline, action).
    deadlines: BTreeSet<(Instant, ActionId)>,
    /// Storage sets records may have been placed under that no completed
    /// pass moved from, each with the instant its pass may start: a set
    /// that held between two documents (a pass it began was
    /// interrupted), and each completed change again a while later, for
    /// the records written under the old view after the pass had read
    /// past them (clients and service nodes take a new document within
    /// a round, not at once).
    follow_ups: VecDeque<(Vec<StorageNode>, Instant)>,
}

impl std::fmt::Debug for RepairPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepairPlan")
            .field("counts", &self.counts)
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

fn sorted(mut nodes: Vec<StorageNode>) -> Vec<StorageNode> {
    nodes.sort_unstable();
    nodes.dedup();
    nodes
}

impl RepairPlan {
    /// The repair of node `me`, from the baseline the driver kept (`None`
    /// on a node's first start: the first document becomes it).
    pub fn new(me: [u8; 32], config: RepairConfig, baseline: Option<Vec<StorageNode>>) -> Self {
        Self {
            me,
            config,
            baseline: baseline.map(sorted),
            current: None,
            heartbeat: Duration::from_secs(1),
            state: State::Idle,
            failures: 0,
            next_id: 0,
            actions: VecDeque::new(),
            counts: RepairCounts::default(),
            outcomes: VecDeque::new(),
            copies: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            follow_ups: VecDeque::new(),
        }
    }

    fn follow_up(&mut self, old: Vec<StorageNode>, at: Instant) {
        if self.follow_ups.iter().any(|(o, _)| *o == old) {
            return;
        }
        if self.follow_ups.len() >= MAX_FOLLOW_UPS {
            self.follow_ups.pop_front();
        }
        self.follow_ups.push_back((old, at));
    }

    /// A document with these storage nodes and heartbeat took effect at
    /// `now`.
    pub fn handle_document(
        &mut self,
        now: Instant,
        storage: Vec<StorageNode>,
        heartbeat: Duration,
    ) {
        self.heartbeat = heartbeat.clamp(Duration::from_secs(1), Duration::from_secs(60));
        let storage = sorted(storage);
        if self.current.as_ref() == Some(&storage) {
            return;
        }
        // The set that held until now, if no pass starts from it: records
        // put under it must reach the new set's replicas too.
        if let Some(previous) = self.current.replace(storage)
            && self.baseline.as_ref() != Some(&previous)
        {
            self.follow_up(previous, now);
        }
        match &self.state {
            State::Passing(_) => {
                self.end_pass(now, PassOutcome::Interrupted);
            }
            // Changes come in bursts (nodes restarting together): the
            // document must hold still for a heartbeat first.
            State::Settling(_) => self.state = State::Settling(now + self.heartbeat),
            State::Idle => self.evaluate(now),
            State::Backoff(_) => {}
        }
    }

    /// Timers due at `now`: a settled document starts a pass, a round
    /// begins, paced copies leave, a backoff ends.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            // Whichever kind of action it was: the others ignore the id.
            self.handle_page(now, id, None);
            self.handle_have(now, id, None);
            self.handle_copied(now, id, Copied::Failed);
        }
        match &self.state {
            State::Settling(at) | State::Backoff(at) if *at <= now => {
                self.state = State::Idle;
                self.evaluate_settled(now);
            }
            State::Idle if self.follow_ups.iter().any(|(_, at)| *at <= now) => {
                self.evaluate_settled(now);
            }
            _ => {}
        }
        self.drive(now);
    }

    /// When to come back.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let report = self.deadlines.first().map(|(d, _)| *d);
        [report, self.timer()].into_iter().flatten().min()
    }

    fn timer(&self) -> Option<Instant> {
        match &self.state {
            State::Idle => self.follow_ups.iter().map(|(_, at)| *at).min(),
            State::Settling(at) | State::Backoff(at) => Some(*at),
            State::Passing(pass) => match &pass.round {
                RoundPhase::Waiting(at) => Some(*at),
                RoundPhase::Reading(_) => None,
                RoundPhase::Offering { offers, .. } => match offers.front().map(|o| &o.phase) {
                    Some(OfferPhase::Copying {
                        missing,
                        start,
                        sent,
                        out,
                    }) if !missing.is_empty() && *out < self.config.in_flight.max(1) => {
                        Some(*start + self.interval() * *sent)
                    }
                    _ => None,
                },
            },
        }
    }

    /// The next thing for the driver to do.
    pub fn poll_action(&mut self) -> Option<RepairAction> {
        self.actions.pop_front()
    }

    /// How the passes ended, in order, since the last call.
    pub fn poll_outcome(&mut self) -> Option<PassOutcome> {
        self.outcomes.pop_front()
    }

    /// What repair did so far.
    pub fn counts(&self) -> RepairCounts {
        self.counts
    }

    /// The keys of a page asked for by [`RepairAction::ReadPage`] (empty:
    /// no more records); `None` when the store could not be read.
    pub fn handle_page(&mut self, now: Instant, id: ActionId, page: Option<Vec<(Kind, Locator)>>) {
        let (me, k) = (self.me, self.config.replicas);
        // Only the page this round asked for (a slow read from an
        // interrupted pass must not stand in for it).
        match &self.state {
            State::Passing(pass) if matches!(pass.round, RoundPhase::Reading(r) if r == id) => {}
            _ => return,
        }
        self.reported(id);
        let State::Passing(pass) = &mut self.state else {
            return;
        };
        let Some(page) = page else {
            pass.incomplete = true;
            self.next_round(now);
            return;
        };
        let Some(last) = page.last().copied() else {
            self.next_round(now);
            return;
        };
        // Records to offer, by target and kind.
        let mut by_target: BTreeMap<([u8; 32], Kind), Vec<Locator>> = BTreeMap::new();
        for (kind, locator) in page {
            let plan = placement::repair(&locator, &pass.old, &pass.new, k);
            if plan.sources.iter().position(|n| *n == me) != Some(pass.rank) {
                continue;
            }
            for target in plan.targets {
                by_target.entry((target, kind)).or_default().push(locator);
            }
        }
        let mut offers = VecDeque::new();
        for ((target, kind), locators) in by_target {
            for batch in locators.chunks(MAX_PROBE) {
                offers.push_back(Offer {
                    target,
                    kind,
                    locators: batch.to_vec(),
                    phase: OfferPhase::Ready,
                });
            }
        }
        pass.round = RoundPhase::Offering { last, offers };
        self.drive(now);
    }

    /// A target's answer to [`RepairAction::Have`]: its status and bitmap,
    /// or `None` when it could not be reached.
    pub fn handle_have(
        &mut self,
        now: Instant,
        id: ActionId,
        answer: Option<(ReplicaStatus, Vec<u8>)>,
    ) {
        match self.front_offer() {
            Some(o) if matches!(o.phase, OfferPhase::Asking(a) if a == id) => {}
            _ => return,
        }
        self.reported(id);
        let Some(offer) = self.front_offer() else {
            return;
        };
        let n = offer.locators.len();
        let held = match answer {
            Some((ReplicaStatus::Ok, bits)) if bits.len() == n.div_ceil(8) => bits,
            _ => {
                self.counts.failed += n as u64;
                self.offer_done(now, false);
                return;
            }
        };
        let missing: VecDeque<Locator> = offer
            .locators
            .iter()
            .enumerate()
            .filter(|(i, _)| !crate::receipts::bit(&held, *i))
            .map(|(_, l)| *l)
            .collect();
        let present = (n - missing.len()) as u64;
        offer.phase = OfferPhase::Copying {
            missing,
            start: now,
            sent: 0,
            out: 0,
        };
        self.counts.present += present;
        self.drive(now);
    }

    /// How the copy [`RepairAction::Copy`] `id` went.
    pub fn handle_copied(&mut self, now: Instant, id: ActionId, result: Copied) {
        let Some(current) = self.copies.remove(&id) else {
            return;
        };
        self.reported(id);
        // Counted even when the pass it belonged to was interrupted.
        let failed = match result {
            Copied::Sent { bytes } => {
                self.counts.sent += 1;
                self.counts.bytes += bytes as u64;
                false
            }
            Copied::Gone => false,
            Copied::Refused => {
                self.counts.refused += 1;
                true
            }
            Copied::Failed => {
                self.counts.failed += 1;
                true
            }
        };
        if !current {
            return;
        }
        if let State::Passing(pass) = &mut self.state {
            pass.incomplete |= failed;
        }
        if let Some(Offer {
            phase: OfferPhase::Copying { out, .. },
            ..
        }) = self.front_offer()
        {
            *out = out.saturating_sub(1);
        }
        self.drive(now);
    }

    /// The report for action `id` came: it no longer times out.
    fn reported(&mut self, id: ActionId) {
        self.deadlines.retain(|(_, a)| *a != id);
    }

    fn interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / f64::from(self.config.per_sec.max(1)))
    }

    fn front_offer(&mut self) -> Option<&mut Offer> {
        match &mut self.state {
            State::Passing(pass) => match &mut pass.round {
                RoundPhase::Offering { offers, .. } => offers.front_mut(),
                _ => None,
            },
            _ => None,
        }
    }

    /// Idle, with a document: start settling if the storage nodes moved.
    fn evaluate(&mut self, now: Instant) {
        let Some(current) = self.current.clone() else {
            return;
        };
        match &self.baseline {
            None => {
                // First document ever: nothing to compare with.
                self.baseline = Some(current.clone());
                self.actions.push_back(RepairAction::SaveBaseline(current));
            }
            Some(old) if *old != current && current.iter().any(|n| n.key == self.me) => {
                self.state = State::Settling(now + self.heartbeat);
            }
            Some(_) => {}
        }
    }

    /// The document held still: start the pass if there is one to do.
    fn evaluate_settled(&mut self, now: Instant) {
        let (Some(old), Some(new)) = (self.baseline.clone(), self.current.clone()) else {
            self.evaluate(now);
            return;
        };
        if !new.iter().any(|n| n.key == self.me) {
            return;
        }
        let (old, follow_up) = if old != new {
            (old, false)
        } else {
            // The baseline is the current set: a follow-up whose time
            // has come, if any (one from the current set moves nothing).
            self.follow_ups.retain(|(o, _)| *o != new);
            let Some(i) = self.follow_ups.iter().position(|(_, at)| *at <= now) else {
                return;
            };
            let Some((o, _)) = self.follow_ups.remove(i) else {
                return;
            };
            (o, true)
        };
        self.state = State::Passing(Box::new(Pass {
            old,
            new,
            start: now,
            stagger: self.heartbeat,
            rank: 0,
            round: RoundPhase::Waiting(now),
            incomplete: false,
            follow_up,
        }));
    }

    /// Moves the pass on as far as it can go at `now`.
    fn drive(&mut self, now: Instant) {
        let interval = self.interval();
        let (page, in_flight) = (self.config.page.max(1), self.config.in_flight.max(1));
        let timeout = self.config.action_timeout;
        loop {
            let State::Passing(pass) = &mut self.state else {
                return;
            };
            match &mut pass.round {
                RoundPhase::Waiting(at) => {
                    if *at > now {
                        return;
                    }
                    let id = self.next_id;
                    self.next_id += 1;
                    pass.round = RoundPhase::Reading(id);
                    self.deadlines.insert((now + timeout, id));
                    self.actions.push_back(RepairAction::ReadPage {
                        id,
                        after: None,
                        limit: page,
                    });
                    return;
                }
                RoundPhase::Reading(_) => return,
                RoundPhase::Offering { last, offers } => {
                    let Some(offer) = offers.front_mut() else {
                        let after = Some(*last);
                        let id = self.next_id;
                        self.next_id += 1;
                        pass.round = RoundPhase::Reading(id);
                        self.deadlines.insert((now + timeout, id));
                        self.actions.push_back(RepairAction::ReadPage {
                            id,
                            after,
                            limit: page,
                        });
                        return;
                    };
                    match &mut offer.phase {
                        OfferPhase::Ready => {
                            let id = self.next_id;
                            self.next_id += 1;
                            offer.phase = OfferPhase::Asking(id);
                            self.deadlines.insert((now + timeout, id));
                            self.actions.push_back(RepairAction::Have {
                                id,
                                target: offer.target,
                                kind: offer.kind,
                                locators: offer.locators.clone(),
                            });
                            return;
                        }
                        OfferPhase::Asking(_) => return,
                        OfferPhase::Copying {
                            missing,
                            start,
                            sent,
                            out,
                        } => {
                            // Paced: the i-th copy of a batch leaves no
                            // earlier than i intervals into it.
                            while *out < in_flight
                                && !missing.is_empty()
                                && *start + interval * *sent <= now
                            {
                                let Some(locator) = missing.pop_front() else {
                                    break;
                                };
                                let id = self.next_id;
                                self.next_id += 1;
                                *sent += 1;
                                *out += 1;
                                self.copies.insert(id, true);
                                self.deadlines.insert((now + timeout, id));
                                self.actions.push_back(RepairAction::Copy {
                                    id,
                                    target: offer.target,
                                    kind: offer.kind,
                                    locator,
                                });
                            }
                            if missing.is_empty() && *out == 0 {
                                offers.pop_front();
                                continue;
                            }
                            return;
                        }
                    }
                }
            }
        }
    }

    /// The front offer's `have` failed: it is dropped, the pass marked
    /// incomplete.
    fn offer_done(&mut self, now: Instant, ok: bool) {
        if let State::Passing(pass) = &mut self.state {
            if !ok {
                pass.incomplete = true;
            }
            if let RoundPhase::Offering { offers, .. } = &mut pass.round {
                offers.pop_front();
            }
        }
        self.drive(now);
    }

    /// A round walked every record: the next rank's round, or the end of
    /// the pass.
    fn next_round(&mut self, now: Instant) {
        let k = self.config.replicas;
        let State::Passing(pass) = &mut self.state else {
            return;
        };
        pass.rank += 1;
        if pass.rank >= k {
            let outcome = if pass.incomplete {
                PassOutcome::Incomplete
            } else {
                PassOutcome::Complete
            };
            self.end_pass(now, outcome);
            return;
        }
        // A later source waits for the earlier ones (at least this long,
        // and after its own earlier rounds).
        let at = pass.start + pass.stagger * u32::try_from(pass.rank).unwrap_or(u32::MAX);
        pass.round = RoundPhase::Waiting(at.max(now));
        self.drive(now);
    }

    fn end_pass(&mut self, now: Instant, outcome: PassOutcome) {
        let State::Passing(pass) = std::mem::replace(&mut self.state, State::Idle) else {
            return;
        };
        // Copies still out belong to no pass now.
        for current in self.copies.values_mut() {
            *current = false;
        }
        self.outcomes.push_back(outcome);
        match outcome {
            PassOutcome::Complete => {
                self.counts.passes += 1;
                self.failures = 0;
                if !pass.follow_up {
                    // The same change again once every client and service
                    // node has the document (ten heartbeats).
                    self.follow_up(pass.old.clone(), now + self.heartbeat * 10);
                }
                self.baseline = Some(pass.new.clone());
                self.actions.push_back(RepairAction::SaveBaseline(pass.new));
                self.evaluate(now);
            }
            PassOutcome::Incomplete => {
                // Again later, against the same old set: the targets'
                // answers make it cheap.
                self.failures = self.failures.saturating_add(1);
                let wait = self
                    .heartbeat
                    .saturating_mul(3u32.saturating_pow(self.failures.min(5)))
                    .min(Duration::from_secs(600));
                self.state = State::Backoff(now + wait);
            }
            PassOutcome::Interrupted => {
                self.state = State::Settling(now + self.heartbeat);
            }
        }
    }
}

#[cfg(test)]
mod tests;
