//! Mix churn (`[mix_churn]`, `crate::mix_churn`): mixes leave, losing
//! what they hold and what reaches them while away, and come back empty;
//! the routes' document follows each change after its lag
//! (`Simulation`'s fields are the parent module's).

use super::*;
use crate::mix_churn::{ChurnEvent, ChurnReport};

/// Adds `b`'s counts to `a`.
pub(super) fn add_counters(a: &mut mtos_mixnode::Counters, b: &mtos_mixnode::Counters) {
    a.received += b.received;
    a.forwarded += b.forwarded;
    a.delivered += b.delivered;
    for (d, o) in a.dropped.iter_mut().zip(b.dropped) {
        *d += o;
    }
}

/// Churn's state over a run.
#[derive(Debug, Default)]
pub(super) struct State {
    /// Since when each mix away has been away, by mix (`None`: up;
    /// empty: no churn).
    down_since: Vec<Option<Instant>>,
    /// Since when each mix away has still been listed.
    listed_since: Vec<Option<Instant>>,
    /// The trace, by time, each row's instant computed once (a row is
    /// due when the clock reaches that instant: comparing seconds as
    /// floats with the nanosecond clock could leave it never due).
    trace: Vec<(Instant, ChurnEvent)>,
    /// Each mix's changes so far: a listing event acts only if no change
    /// came after the one that queued it.
    generation: Vec<u32>,
    trace_next: usize,
    rng: Option<ChaCha20Rng>,
    /// The counters of the engines mixes had before they left, summed.
    retired: Vec<mtos_mixnode::Counters>,
    /// When each node last left.
    left_at: Vec<Instant>,
    /// Each node away since the start (`start_down`) and not back yet:
    /// its clients' moves are not cut-offs.
    from_start: Vec<bool>,
    /// Clients' choices of a new gateway (`gateways`): their own RNG.
    moves: Option<ChaCha20Rng>,
    /// What churn did.
    pub(super) report: ChurnReport,
}

impl State {
    /// Churn for `scenario` (none without `[mix_churn]`).
    pub(super) fn new(scenario: &Scenario, seed: u64) -> Self {
        let Some(c) = &scenario.mix_churn else {
            return Self::default();
        };
        let mixes = (scenario.layers * scenario.nodes_per_layer) as usize;
        // The nodes that churn: the mixes, and with `gateways` the
        // providers after them.
        let churning = mixes
            + if c.gateways {
                scenario.providers as usize
            } else {
                0
            };
        let mut trace: Vec<(Instant, ChurnEvent)> = c
            .events
            .iter()
            .map(|e| (Instant::from_duration(Duration::from_secs_f64(e.at_s)), *e))
            .collect();
        trace.sort_by_key(|(at, _)| *at);
        Self {
            generation: vec![0; churning],
            down_since: vec![None; churning],
            listed_since: vec![None; churning],
            trace,
            trace_next: 0,
            rng: Some(component_rng(seed, "churn", 0)),
            left_at: vec![Instant::ZERO; churning],
            from_start: vec![false; churning],
            moves: c.gateways.then(|| component_rng(seed, "gateway moves", 0)),
            retired: vec![mtos_mixnode::Counters::default(); churning],
            report: ChurnReport::default(),
        }
    }

    /// What node `n`'s engines before its current one counted.
    pub(super) fn retired(&self, n: usize) -> Option<&mtos_mixnode::Counters> {
        self.retired.get(n)
    }

    /// Counts a change of mix `n`; its number.
    fn next_generation(&mut self, n: u32) -> u32 {
        let g = &mut self.generation[n as usize];
        *g = g.wrapping_add(1);
        *g
    }

    /// Whether node `n` is away.
    pub(super) fn is_down(&self, n: u32) -> bool {
        self.down_since.get(n as usize).is_some_and(Option::is_some)
    }
}

impl<M: Mode> Simulation<M> {
    /// The first churn events: mixes away from the start, each mix's
    /// first change by the rate, the trace's first row.
    pub(super) fn start_churn(&mut self) {
        let Some(c) = self.scenario.mix_churn.clone() else {
            return;
        };
        for &n in &c.start_down {
            self.mix_leaves(n);
            // Not a departure: the routes' document starts without it.
            match self.is_provider(n) {
                true => self.churn.report.gateway_departures -= 1,
                false => self.churn.report.departures -= 1,
            }
            self.topology.set_listed(n, false);
            self.churn.listed_since[n as usize] = None;
            self.churn.from_start[n as usize] = true;
            if self.is_provider(n) {
                // Its clients move at their first check, now.
                let g = (n - self.provider(0)) as usize;
                for i in 0..self.gateway_clients[g].len() {
                    let c = self.gateway_clients[g][i];
                    self.push(Instant::ZERO, Ev::Move(c));
                }
            }
        }
        let churning = u32::try_from(self.churn.down_since.len()).unwrap_or(u32::MAX);
        for n in 0..churning {
            let up = !self.churn.is_down(n);
            if let Some(rng) = self.churn.rng.as_mut()
                && let Some(after) = c.next_change(up, rng)
            {
                self.push(Instant::ZERO + after, Ev::Churn(n));
            }
        }
        if let Some((at, _)) = self.churn.trace.first() {
            let at = *at;
            self.push(at, Ev::ChurnTrace);
        }
    }

    /// Mix `n` changes by the rate; its next change is drawn.
    pub(super) fn on_churn(&mut self, n: u32) {
        if self.churn.is_down(n) {
            self.mix_returns(n);
        } else {
            self.mix_leaves(n);
        }
        let up = !self.churn.is_down(n);
        let after = match (self.scenario.mix_churn.as_ref(), self.churn.rng.as_mut()) {
            (Some(c), Some(rng)) => c.next_change(up, rng),
            _ => None,
        };
        if let Some(after) = after {
            let at = self.now + after;
            self.push(at, Ev::Churn(n));
        }
    }

    /// The trace rows due now.
    pub(super) fn on_churn_trace(&mut self) {
        while let Some((at, e)) = self.churn.trace.get(self.churn.trace_next).copied() {
            if at > self.now {
                self.push(at, Ev::ChurnTrace);
                return;
            }
            self.churn.trace_next += 1;
            match (e.up, self.churn.is_down(e.node)) {
                (true, true) => self.mix_returns(e.node),
                (false, false) => self.mix_leaves(e.node),
                _ => {}
            }
        }
    }

    /// Node `n` leaves (a mix, or a gateway with `gateways`): what it
    /// holds is lost (a gateway's mailboxes too), it gets an empty engine
    /// (under the keys it has) and no loops until it comes back, and the
    /// document leaves it out after the lag.
    fn mix_leaves(&mut self, n: u32) {
        let Some(lag) = self.scenario.mix_churn.as_ref().map(|c| c.leave_lag_s) else {
            return;
        };
        let now = self.now;
        let provider = self.is_provider(n);
        self.churn.down_since[n as usize] = Some(now);
        // Time away but listed is counted for mixes (the figure is the
        // mixes').
        if self.topology.is_listed(n) && !provider {
            self.churn.listed_since[n as usize] = Some(now);
        }
        self.churn.left_at[n as usize] = now;
        self.churn.from_start[n as usize] = false;
        let engine = self.fresh_engine(n);
        let node = &mut self.nodes[n as usize];
        let held = node.engine.held() as u64;
        let report = &mut self.churn.report;
        match provider {
            true => {
                report.gateway_departures += 1;
                report.gateway_lost_held += held;
            }
            false => {
                report.departures += 1;
                report.lost_held += held;
            }
        }
        // Its loops so far count; those still out are lost with it.
        if let Some(loops) = node.loops.as_mut() {
            self.metrics.node_loops.add(loops.tracker().counts());
        }
        let old = std::mem::replace(&mut node.engine, engine);
        if let Some(r) = self.churn.retired.get_mut(n as usize) {
            add_counters(r, old.counters());
        }
        node.loops = None;
        node.loops_due = None;
        node.wake = None;
        self.entropy.lose_node(n);
        if provider {
            let lost = self.empty_mailboxes(n - self.provider(0));
            self.churn.report.mailbox_lost += lost;
        }
        let generation = self.churn.next_generation(n);
        self.push(
            now + Duration::from_secs_f64(lag),
            Ev::Listing(n, false, generation),
        );
    }

    /// Whether node `n` is a provider.
    pub(super) fn is_provider(&self, n: u32) -> bool {
        n >= self.provider(0)
    }

    /// An empty engine for mix `n` under the keys it has now (the
    /// previous epoch's too, in its grace period), with a fresh replay
    /// filter: a restarted node keeps its keys on disk.
    fn fresh_engine(&self, n: u32) -> MixEngine<M::Format> {
        let epoch = self.epoch();
        let sizing = self.replay[n as usize];
        let in_grace = self.nodes[n as usize].engine.keys().slots().count() > 1;
        let key = |epoch| EpochKey {
            epoch,
            secret: self.mode.key(n),
        };
        let keys = if in_grace {
            let mut ring = key_ring(&self.scenario, key(epoch - 1), sizing);
            ring.advance_to(key(epoch));
            ring
        } else {
            key_ring(&self.scenario, key(epoch), sizing)
        };
        MixEngine::new(self.engine_config, keys)
    }

    /// Mix `n` comes back: its loops start again, and the document lists
    /// it after the lag.
    fn mix_returns(&mut self, n: u32) {
        let Some(lag) = self.scenario.mix_churn.as_ref().map(|c| c.join_lag_s) else {
            return;
        };
        let now = self.now;
        self.count_away(n, now);
        match self.is_provider(n) {
            true => self.churn.report.gateway_returns += 1,
            false => self.churn.report.returns += 1,
        }
        let node = &mut self.nodes[n as usize];
        node.loops = crate::loops::machine(&self.scenario, now, &mut node.rng);
        node.loops_due = node.loops.as_ref().and_then(NodeLoops::poll_timeout);
        self.reschedule_node(n);
        let generation = self.churn.next_generation(n);
        self.push(
            now + Duration::from_secs_f64(lag),
            Ev::Listing(n, true, generation),
        );
    }

    /// The routes' document catches up with mix `n`'s change number
    /// `generation`, if no other change came since (a mix back before it
    /// was left out never was).
    pub(super) fn on_listing(&mut self, n: u32, listed: bool, generation: u32) {
        if self.churn.generation.get(n as usize) != Some(&generation) {
            return;
        }
        if !listed && let Some(since) = self.churn.listed_since[n as usize].take() {
            self.churn.report.down_listed_s += (self.now - since).as_secs_f64();
        }
        self.topology.set_listed(n, listed);
        if !listed && self.is_provider(n) {
            // Each of its clients finds it gone at its next check of the
            // document.
            let g = (n - self.provider(0)) as usize;
            for i in 0..self.gateway_clients[g].len() {
                let c = self.gateway_clients[g][i];
                let Some(rng) = self.churn.moves.as_mut() else {
                    return;
                };
                let check = rng.random::<f64>() * crate::mix_churn::GUARD_CHECK_S;
                let at = self.now + Duration::from_secs_f64(check);
                self.push(at, Ev::Move(c));
            }
        }
    }

    /// Client `c` checks its gateway: if the document no longer lists
    /// it, the client moves to a listed one (none listed: it checks
    /// again later).
    pub(super) fn on_move(&mut self, c: u32) {
        let old = self.clients[c as usize].gateway;
        if self.topology.is_listed(self.provider(old)) {
            return;
        }
        let Some(rng) = self.churn.moves.as_mut() else {
            return;
        };
        let to = self.topology.pick_provider(rng);
        if !self.topology.is_listed(to) {
            let at = self.now + Duration::from_secs_f64(crate::mix_churn::GUARD_CHECK_S);
            self.push(at, Ev::Move(c));
            return;
        }
        let from = self.provider(old) as usize;
        self.churn.report.clients_moved += 1;
        if !self.churn.from_start[from] {
            let left = self.churn.left_at[from];
            self.churn
                .report
                .cut_off_s
                .push((self.now - left).as_secs_f64());
        }
        self.set_gateway(c, to - self.provider(0));
    }

    /// Client `c`'s gateway becomes provider `g`.
    fn set_gateway(&mut self, c: u32, g: u32) {
        let old = self.clients[c as usize].gateway as usize;
        // What waits for it at the old gateway stays there.
        let lost = self.abandon_mailbox(c);
        self.churn.report.mailbox_lost += lost;
        if let Some(i) = self.gateway_clients[old].iter().position(|x| *x == c) {
            self.gateway_clients[old].swap_remove(i);
        }
        self.gateway_clients[g as usize].push(c);
        self.clients[c as usize].gateway = g;
    }

    /// Adds node `n`'s time away up to `now`.
    fn count_away(&mut self, n: u32, now: Instant) {
        let provider = self.is_provider(n);
        let report = &mut self.churn.report;
        if let Some(since) = self.churn.down_since[n as usize].take() {
            let away = (now - since).as_secs_f64();
            match provider {
                true => report.gateway_down_s += away,
                false => report.down_s += away,
            }
        }
        if let Some(since) = self.churn.listed_since[n as usize].take() {
            report.down_listed_s += (now - since).as_secs_f64();
        }
    }

    /// Counts the time of mixes still away at the end.
    pub(super) fn finish_churn(&mut self) {
        if self.scenario.mix_churn.is_none() {
            return;
        }
        let now = self.now;
        for n in 0..self.churn.down_since.len() {
            self.count_away(n as u32, now);
        }
        self.metrics.mix_churn = Some(self.churn.report.clone());
    }
}
