//! The n−1 attack on one node by blocking (`[attack] kind = "n-1"`,
//! `simulation.md` §8): the attacker holds the links into the node. It
//! holds back one frame (the target), blocks every other frame until the
//! node holds nothing, lets the target in alone and takes the frame the
//! node then sends for it. Against a Poisson mix, whose hold does not
//! depend on what else it holds, blocking alone isolates the target: no
//! flood of the attacker's own packets is needed. The attacker is
//! granted the exact count of packets the node holds (an upper bound on
//! what counting inputs against outputs gives it), so the node's own
//! loops leaving never mislead it: what they do is come back into the
//! blocked links, and that is what the alarm sees.
//!
//! With `spare_loops` the attacker tells node loops apart (as a gateway
//! that was their middle hop could, and as a service node that has
//! learnt a mix's recurring probe windows can for the loops through it,
//! `mixing.md` §5): it lets every loop through, never takes one for a
//! target, counts the loops inside the node apart, and takes the first
//! frame out that is not a loop for its guess. No loop is lost to it.

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

/// The attacker's state: its phase, and with `spare_loops` the loops it
/// let into the node that are still inside.
#[derive(Debug, Default)]
pub(super) struct Attacker {
    pub(super) phase: Phase,
    loops_inside: usize,
}

/// What the attack achieved.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NMinusOneReport {
    /// Frames taken as targets.
    pub targets: u64,
    /// Targets let in alone (the node emptied).
    pub isolated: u64,
    /// Isolated targets whose guess was right: the frame the node's
    /// engine sent after taking in the target alone was the target.
    pub traced: u64,
    /// Guesses that were wrong (the engine sent another packet: none
    /// when the count is exact, kept as a check).
    pub misled: u64,
    /// Targets the node delivered itself (its own returning loops, or at
    /// a provider what is delivered there): no frame out to follow.
    pub delivered_here: u64,
    /// Targets the node took in and dropped without sending.
    pub refused: u64,
    /// Traced before any node's alarm (at or after the attack's start).
    pub traced_before_alarm: u64,
    /// Frames blocked before any node's alarm.
    pub blocked_before_alarm: u64,
}

impl NMinusOneReport {
    /// The summary's `attack.n_minus_1`.
    pub fn summary(&self, pause_s: f64) -> serde_json::Value {
        let guesses = self.traced + self.misled;
        serde_json::json!({
            "pause_s": pause_s,
            "targets": self.targets,
            "isolated": self.isolated,
            "traced": self.traced,
            "misled": self.misled,
            "delivered_here": self.delivered_here,
            "refused": self.refused,
            "traced_share": if guesses == 0 { 0.0 } else { self.traced as f64 / guesses as f64 },
            "traced_before_alarm": self.traced_before_alarm,
            "frames_blocked_before_alarm": self.blocked_before_alarm,
        })
    }
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

    /// Whether the attacker spares node loops.
    fn spares_loops(&self) -> bool {
        self.scenario.attack.is_some_and(|a| a.spare_loops)
    }

    /// Whether `frame` carries a node loop (what a loop-recognising
    /// attacker knows; abstract packets only).
    pub(super) fn is_node_loop(&self, frame: &[u8]) -> bool {
        self.is_loop_id(M::frame_id(frame))
    }

    /// Whether the packet with this id is a node loop.
    fn is_loop_id(&self, id: Option<u64>) -> bool {
        id.and_then(|id| self.sent.get(&id))
            .is_some_and(|r| r.kind == Kind::NodeLoop)
    }

    /// Node `n` took `frame` in: a sparing attacker counts the loops
    /// inside.
    pub(super) fn n_minus_1_taken(&mut self, n: u32, frame: &[u8]) {
        if self.n_minus_1_on(n) && self.spares_loops() && self.is_node_loop(frame) {
            self.attacker.loops_inside += 1;
        }
    }

    /// A frame arrived at node `n`: the attacker's turn. Returns it when
    /// it goes on to the node, `None` when the attacker kept or blocked it.
    pub(super) fn n_minus_1_arrival(
        &mut self,
        n: u32,
        frame: Vec<u8>,
        masses: Carried,
    ) -> Option<(Vec<u8>, Carried)> {
        if !self.n_minus_1_on(n) || (self.spares_loops() && self.is_node_loop(&frame)) {
            return Some((frame, masses));
        }
        let now = self.now;
        match self.attacker.phase {
            Phase::Pause(until) if now < until => Some((frame, masses)),
            Phase::Wait | Phase::Pause(_) => {
                let Some(id) = M::frame_id(&frame) else {
                    return Some((frame, masses));
                };
                self.metrics.n_minus_1.targets += 1;
                self.attacker.phase = Phase::Flush {
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
        if !self.n_minus_1_on(n)
            || self.nodes[n as usize].engine.held() > self.attacker.loops_inside
        {
            return;
        }
        if matches!(self.attacker.phase, Phase::Isolate { settled: true, .. }) {
            self.metrics.n_minus_1.refused += 1;
            self.n_minus_1_pause();
            return;
        }
        if !matches!(self.attacker.phase, Phase::Flush { .. }) {
            return;
        }
        let Phase::Flush { target, id } = std::mem::take(&mut self.attacker.phase) else {
            return;
        };
        self.metrics.n_minus_1.isolated += 1;
        self.attacker.phase = Phase::Isolate { id, settled: false };
        let (frame, masses) = *target;
        self.admit(n, frame, masses);
        if let Phase::Isolate { id, settled: false } = self.attacker.phase {
            self.attacker.phase = Phase::Isolate { id, settled: true };
            self.n_minus_1_check(n);
        }
    }

    /// Node `n` sent `frame` (`None`: a packet the node made itself,
    /// which the attacker's count tells apart: the node still holds the
    /// target). In isolation, once the target is in, the engine's next
    /// frame is the attacker's guess.
    pub(super) fn n_minus_1_output(&mut self, n: u32, frame: Option<&[u8]>) {
        if !self.n_minus_1_on(n) {
            return;
        }
        // A loop leaving is one fewer inside, and never the guess.
        if let Some(f) = frame
            && self.spares_loops()
            && self.is_node_loop(f)
        {
            self.attacker.loops_inside = self.attacker.loops_inside.saturating_sub(1);
            return;
        }
        let Phase::Isolate {
            id: target,
            settled: true,
        } = self.attacker.phase
        else {
            return;
        };
        let Some(frame) = frame else {
            return;
        };
        let id = M::frame_id(frame);
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

    /// Node `n` delivered `payload` itself: an isolated target it
    /// delivers leaves no frame to guess.
    pub(super) fn n_minus_1_delivered(&mut self, n: u32, payload: &[u8]) {
        // Its own loop back is one fewer inside.
        if self.n_minus_1_on(n) && self.spares_loops() && self.is_loop_id(M::message_id(payload)) {
            self.attacker.loops_inside = self.attacker.loops_inside.saturating_sub(1);
            return;
        }
        if self.n_minus_1_on(n)
            && let Phase::Isolate { id: target, .. } = self.attacker.phase
            && M::message_id(payload) == Some(target)
        {
            self.metrics.n_minus_1.delivered_here += 1;
            self.n_minus_1_pause();
        }
    }

    fn n_minus_1_pause(&mut self) {
        let pause = self.scenario.attack.map_or(0.0, |a| a.pause_s);
        self.attacker.phase = Phase::Pause(self.now + Duration::from_secs_f64(pause));
    }
}
