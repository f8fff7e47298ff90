//! The n−1 (flood and block) attack on one node (`[attack] kind =
//! "n-1"`, `simulation.md` §1, Attack): the attacker holds the links
//! into the node. It holds back one frame (the target), blocks every
//! other frame until the node holds nothing (it is granted the exact
//! count: an upper bound on what counting inputs against outputs gives
//! it), lets the target in alone and takes the first frame the node then
//! sends for it. The node's own loops leaving in between mislead it;
//! its returning loops, blocked, are what the alarm sees.

use super::*;
use crate::scenario::AttackKind;

/// Where the attacker is.
#[derive(Debug, Default)]
pub(super) enum Phase {
    /// Waiting for the next frame to take as a target.
    #[default]
    Wait,
    /// Holding the target back, blocking everything, until the node is
    /// empty.
    Flush {
        /// The target's frame and what it carries.
        target: Box<(Vec<u8>, Carried)>,
        /// Its id.
        id: u64,
    },
    /// The target alone in the node: the next frame out is the guess.
    Isolate {
        /// The target's id.
        id: u64,
        /// The node has taken it in (or refused it).
        settled: bool,
    },
    /// Letting traffic through until then.
    Pause(Instant),
}

/// What the attack achieved.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NMinusOneReport {
    /// Frames taken as targets.
    pub targets: u64,
    /// Targets let in alone (the node emptied).
    pub isolated: u64,
    /// Isolated targets whose guess was right: the first frame out was
    /// the target.
    pub traced: u64,
    /// Guesses that took one of the node's own loops for the target.
    pub misled: u64,
    /// Targets the node delivered itself (its own returning loops): no
    /// frame out to guess.
    pub delivered_here: u64,
    /// Traced before any node's alarm (at or after the attack's start).
    pub traced_before_alarm: u64,
    /// Frames blocked before any node's alarm.
    pub blocked_before_alarm: u64,
}

impl<M: Mode> Simulation<M> {
    /// The n−1 attack's node, once it has started.
    fn n_minus_1_on(&self, n: u32) -> bool {
        self.scenario.attack.is_some_and(|a| {
            a.kind == AttackKind::NMinusOne
                && a.dropping_node == n
                && self.now.since_origin().as_secs_f64() >= a.from_s
        })
    }

    fn alarm_yet(&self) -> bool {
        self.scenario
            .attack
            .and_then(|a| self.metrics.node_loops.first_alarm_after(a.from_s))
            .is_some()
    }

    /// A frame arrived at node `n`: the attacker's turn. Returns it when
    /// it goes on to the node, `None` when the attacker kept or blocked it.
    pub(super) fn n_minus_1_arrival(
        &mut self,
        n: u32,
        frame: Vec<u8>,
        masses: Carried,
    ) -> Option<(Vec<u8>, Carried)> {
        if !self.n_minus_1_on(n) {
            return Some((frame, masses));
        }
        let now = self.now;
        match self.attack_phase {
            Phase::Pause(until) if now < until => Some((frame, masses)),
            Phase::Wait | Phase::Pause(_) => {
                let Some(id) = M::frame_id(&frame) else {
                    return Some((frame, masses));
                };
                self.metrics.n_minus_1.targets += 1;
                self.attack_phase = Phase::Flush {
                    target: Box::new((frame, masses)),
                    id,
                };
                self.n_minus_1_check(n);
                None
            }
            Phase::Flush { .. } | Phase::Isolate { .. } => {
                self.metrics.attack_drops += 1;
                if !self.alarm_yet() {
                    self.metrics.n_minus_1.blocked_before_alarm += 1;
                }
                self.entropy.lose(&masses);
                None
            }
        }
    }

    /// Lets the target in once node `n` holds nothing; gives up on one
    /// the node took in and no longer holds without having sent it (a
    /// drop).
    pub(super) fn n_minus_1_check(&mut self, n: u32) {
        if !self.n_minus_1_on(n) || self.nodes[n as usize].engine.held() > 0 {
            return;
        }
        if matches!(self.attack_phase, Phase::Isolate { settled: true, .. }) {
            self.n_minus_1_pause();
            return;
        }
        if !matches!(self.attack_phase, Phase::Flush { .. }) {
            return;
        }
        let Phase::Flush { target, id } = std::mem::take(&mut self.attack_phase) else {
            return;
        };
        self.metrics.n_minus_1.isolated += 1;
        self.attack_phase = Phase::Isolate { id, settled: false };
        let (frame, masses) = *target;
        self.admit(n, frame, masses);
        if let Phase::Isolate { id, settled: false } = self.attack_phase {
            self.attack_phase = Phase::Isolate { id, settled: true };
            self.n_minus_1_check(n);
        }
    }

    /// Node `n` sent a frame (`id`: its packet's, `None` for one the
    /// node made itself): in isolation, the attacker's guess.
    pub(super) fn n_minus_1_output(&mut self, n: u32, id: Option<u64>) {
        if !self.n_minus_1_on(n) {
            return;
        }
        let Phase::Isolate { id: target, .. } = self.attack_phase else {
            return;
        };
        let before_alarm = !self.alarm_yet();
        let report = &mut self.metrics.n_minus_1;
        if id == Some(target) {
            report.traced += 1;
            if before_alarm {
                report.traced_before_alarm += 1;
            }
        } else {
            report.misled += 1;
        }
        self.n_minus_1_pause();
    }

    /// Node `n` delivered packet `id` itself: an isolated target it
    /// delivers leaves no frame to guess.
    pub(super) fn n_minus_1_delivered(&mut self, n: u32, id: Option<u64>) {
        if self.n_minus_1_on(n)
            && let Phase::Isolate { id: target, .. } = self.attack_phase
            && id == Some(target)
        {
            self.metrics.n_minus_1.delivered_here += 1;
            self.n_minus_1_pause();
        }
    }

    fn n_minus_1_pause(&mut self) {
        let pause = self.scenario.attack.map_or(0.0, |a| a.pause_s);
        self.attack_phase = Phase::Pause(self.now + Duration::from_secs_f64(pause));
    }
}
