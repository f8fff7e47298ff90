//! Mailboxes (`[mailbox]`, `crate::mailbox`): a payload its exit gateway
//! releases waits in its client's mailbox for a delivery frame, written
//! after exponential gaps at the client's delivery rate; only frames
//! that carry a payload are events (`Simulation`'s fields are the parent
//! module's).

use std::collections::VecDeque;

use mtos_mixnode::directory::ClassRates;

use super::*;
use crate::mailbox::{MailboxConfig, MailboxReport};

/// A payload waiting in a mailbox.
#[derive(Debug, Clone, Copy)]
pub(super) struct Waiting {
    pub(super) kind: Kind,
    /// When the message was generated (a real message) or sent.
    pub(super) created: Instant,
    /// Its time in the network, from its sender to its exit's release.
    pub(super) network: Duration,
    /// When it was filed.
    pub(super) filed: Instant,
    /// A real message's reply block, or the one it answers through
    /// (`[replies]`).
    pub(super) block: Option<u32>,
}

/// The mailboxes' state over a run.
#[derive(Debug, Default)]
pub(super) struct State {
    config: Option<MailboxConfig>,
    /// Each client's mailbox, oldest first.
    boxes: Vec<VecDeque<Waiting>>,
    /// When each mailbox's next frame is due, and whether that instant
    /// is a switch of class at which the gap is drawn again instead.
    due: Vec<Option<(Instant, bool)>>,
    /// Payloads each gateway holds.
    held: Vec<usize>,
    rng: Option<ChaCha20Rng>,
    /// What the mailboxes did.
    pub(super) report: MailboxReport,
}

impl State {
    /// Mailboxes for `scenario` (none without `[mailbox]`).
    pub(super) fn new(scenario: &Scenario, seed: u64) -> Self {
        let Some(config) = scenario.mailbox else {
            return Self::default();
        };
        let clients = scenario.clients as usize;
        Self {
            config: Some(config),
            boxes: vec![VecDeque::new(); clients],
            due: vec![None; clients],
            held: vec![0; scenario.providers as usize],
            // Their own RNG: with or without the section, every other
            // draw of a run is the same.
            rng: Some(component_rng(seed, "mailboxes", 0)),
            report: MailboxReport::default(),
        }
    }

    /// Whether payloads go through mailboxes.
    pub(super) fn on(&self) -> bool {
        self.config.is_some()
    }
}

impl<M: Mode> Simulation<M> {
    /// Files a payload released for client `c` in its mailbox, under the
    /// gateway's limits.
    pub(super) fn file(&mut self, c: u32, waiting: Waiting) {
        let Some(config) = self.mailboxes.config else {
            return;
        };
        let Some(gateway) = self.clients.get(c as usize).map(|cl| cl.gateway) else {
            return;
        };
        let g = gateway as usize;
        let state = &mut self.mailboxes;
        let own = state.boxes[c as usize].len();
        if own >= config.per_mailbox {
            state.report.dropped_full += 1;
            state.report.real_lost += u64::from(waiting.kind == Kind::Real);
            return;
        }
        if state.held[g] >= config.per_gateway {
            // The mailbox holding the most of this gateway's clients,
            // the first such on a tie; room only if it holds more than
            // this one would.
            let fullest = self.gateway_clients[g]
                .iter()
                .map(|i| *i as usize)
                .max_by_key(|i| (state.boxes[*i].len(), std::cmp::Reverse(*i)));
            match fullest {
                Some(f) if state.boxes[f].len() > own + 1 => {
                    if let Some(gone) = state.boxes[f].pop_front() {
                        state.report.real_lost += u64::from(gone.kind == Kind::Real);
                    }
                    state.held[g] -= 1;
                    state.report.displaced += 1;
                }
                _ => {
                    state.report.dropped_full += 1;
                    state.report.real_lost += u64::from(waiting.kind == Kind::Real);
                    return;
                }
            }
        }
        let mailbox = &mut state.boxes[c as usize];
        mailbox.push_back(waiting);
        state.held[g] += 1;
        state.report.filed += 1;
        state.report.max_depth = state.report.max_depth.max(mailbox.len());
        if state.due[c as usize].is_none() {
            let now = self.now;
            self.schedule_frame(c, now);
        }
    }

    /// Draws when client `c`'s next frame after `from` is due: an
    /// exponential gap at its delivery rate then, drawn again from a
    /// switch of class it would cross (as the gateway does).
    fn schedule_frame(&mut self, c: u32, from: Instant) {
        let Some(config) = self.mailboxes.config else {
            return;
        };
        let timeline = self.clients[c as usize].schedule.timeline();
        let (rate, change) = match config.delivery_rate {
            Some(r) => (r, None),
            None => {
                let r = timeline.rates_at(from);
                let class = ClassRates {
                    payload: r.payload,
                    loops: r.loop_cover,
                    drops: r.drop_cover,
                };
                (class.delivery(), timeline.next_change(from))
            }
        };
        let Some(rng) = self.mailboxes.rng.as_mut() else {
            return;
        };
        // Production's clamp (the gateway's `next_delivery`).
        let mean = Duration::from_secs_f64(1.0 / rate.clamp(0.01, 10_000.0));
        let due = from + sample_exponential(rng, mean);
        let next = match change {
            Some(switch) if switch > from && switch <= due => (switch, true),
            _ => (due, false),
        };
        self.mailboxes.due[c as usize] = Some(next);
        self.push(next.0, Ev::Frame(c));
    }

    /// Client `c`'s frame is due: it carries the oldest payload waiting,
    /// which reaches the client one link later.
    pub(super) fn on_frame(&mut self, c: u32) {
        let now = self.now;
        let Some((at, redraw)) = self.mailboxes.due[c as usize] else {
            return;
        };
        if at != now {
            return;
        }
        self.mailboxes.due[c as usize] = None;
        if redraw {
            return self.schedule_frame(c, now);
        }
        let gateway = self.clients[c as usize].gateway as usize;
        let Some(waiting) = self.mailboxes.boxes[c as usize].pop_front() else {
            return;
        };
        self.mailboxes.held[gateway] -= 1;
        self.mailboxes.report.frames += 1;
        // The gateway's stream to its client is reliable: a link's
        // latency, never lost.
        let latency = self.scenario.latency;
        let link = self
            .mailboxes
            .rng
            .as_mut()
            .and_then(|rng| link_delay(latency, 0.0, rng))
            .unwrap_or_default();
        if waiting.filed >= Instant::from_duration(self.scenario.warmup) {
            let wait = (now - waiting.filed).as_secs_f64();
            self.mailboxes.report.waits_s.push(wait);
            if waiting.kind == Kind::Real {
                self.mailboxes.report.real_waits_s.push(wait);
            }
        }
        if waiting.kind == Kind::Real {
            let end_to_end = (now + link) - waiting.created;
            self.metrics
                .latencies(waiting.created, waiting.network, end_to_end);
            if let Some(b) = waiting.block {
                self.reached_client(b, now + link, waiting.created, waiting.network);
            }
        }
        if !self.mailboxes.boxes[c as usize].is_empty() {
            self.schedule_frame(c, now);
        }
    }

    /// Gateway `g` left: its clients' mailboxes are lost; how many
    /// payloads they held.
    pub(super) fn empty_mailboxes(&mut self, g: u32) -> u64 {
        let clients = self.gateway_clients[g as usize].clone();
        clients.into_iter().map(|c| self.abandon_mailbox(c)).sum()
    }

    /// Client `c` leaves its gateway: what waits in its mailbox there
    /// is never fetched; how many payloads.
    pub(super) fn abandon_mailbox(&mut self, c: u32) -> u64 {
        if !self.mailboxes.on() {
            return 0;
        }
        let g = self.clients[c as usize].gateway as usize;
        let mailbox = &mut self.mailboxes.boxes[c as usize];
        let lost = mailbox.len();
        let real = mailbox.iter().filter(|w| w.kind == Kind::Real).count();
        mailbox.clear();
        self.mailboxes.report.real_lost += real as u64;
        self.mailboxes.held[g] -= lost;
        // Its next frame, if one was due, carries nothing.
        self.mailboxes.due[c as usize] = None;
        lost as u64
    }

    /// The mailboxes' report at the end of a run.
    pub(super) fn finish_mailboxes(&mut self) {
        if !self.mailboxes.on() {
            return;
        }
        let mut report = std::mem::take(&mut self.mailboxes.report);
        report.waiting_at_end = self.mailboxes.boxes.iter().map(|b| b.len() as u64).sum();
        self.metrics.mailbox = Some(report);
    }
}
