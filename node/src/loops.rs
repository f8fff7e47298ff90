//! Drives this node's loop cover (`mtos_mixnode::loops::NodeLoops`, the
//! machine: λM from the document, routes by the one rule, loss verdicts):
//! the engine loop wakes it at its timeouts, sends the frames built here,
//! reports loops that came back, and this exports what the machine
//! counted (`mtos_node_loops_total`, `mtos_node_loop_loss_ratio`) and logs
//! its alarms.

use mtos_crypto::sphinx::Destination;
use mtos_mixnode::Instant;
use mtos_mixnode::engine::Transmit;
use mtos_mixnode::loops::request::{LoopDecoys, request_frame};
use mtos_mixnode::loops::{LoopConfig, LoopCounts, LoopId, NodeLoops, loop_timeout};
use mtos_net::{Topology, unix_now};
use rand::RngExt;
use rand::rngs::StdRng;

use super::metrics::Metrics;

/// While λM is 0 (or no document is known): how often to look again.
pub const IDLE_CHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// This node's loops and what has been exported of their counts.
#[derive(Debug)]
pub struct LoopDriver {
    loops: NodeLoops,
    exported: LoopCounts,
    /// Unroutable loops exported so far.
    exported_unroutable: u64,
    me: [u8; 32],
    /// The decoy feeds a mix's loops probe, drawn at the first loop and
    /// kept for the node's run.
    decoys: Option<LoopDecoys>,
    /// The next look at the document's λM, whatever the machine waits for.
    next_check: Instant,
}

impl LoopDriver {
    /// Loops of the node whose key is `me`.
    pub fn new(me: [u8; 32]) -> Self {
        Self {
            loops: NodeLoops::new(LoopConfig::default()),
            exported: LoopCounts::default(),
            exported_unroutable: 0,
            me,
            decoys: None,
            next_check: Instant::ZERO,
        }
    }

    /// When to wake: the machine's next timeout, or the next look at the
    /// document ([`IDLE_CHECK`] after the last).
    pub fn poll_timeout(&self) -> Instant {
        self.loops
            .poll_timeout()
            .map_or(self.next_check, |t| t.min(self.next_check))
    }

    /// At `now`, under the current document: follows its λM, judges the
    /// loops whose time ran out and returns the frames of the loops due.
    pub fn wake(
        &mut self,
        now: Instant,
        topology: Option<&Topology>,
        rng: &mut StdRng,
    ) -> Vec<Transmit> {
        self.loops.handle_timeout(now);
        self.next_check = now + IDLE_CHECK;
        let Some(topology) = topology else {
            return Vec::new();
        };
        let doc = &topology.document;
        let Some(me) = doc.node(&self.me) else {
            // Not listed (yet, or any more): no loops, and no schedule
            // left overdue.
            self.loops.set_rate(now, 0.0, rng);
            return Vec::new();
        };
        self.loops.set_rate(now, doc.rates.node_loops, rng);
        let timeout = loop_timeout(doc.mixing.max_delay_ms);
        let mut out = Vec::new();
        while let Some(send) = self
            .loops
            .poll_send(now, &doc, me, me.position(), timeout, rng)
        {
            let built = match send.turn {
                // A mix's loop: a probe to the service node at the turn,
                // answered back to this node (`mixing.md` §5).
                Some(turn) => {
                    let decoys = self.decoys.get_or_insert_with(|| LoopDecoys::new(rng));
                    decoys.window(rng).and_then(|window| {
                        request_frame(
                            rng,
                            doc,
                            &send.route,
                            turn,
                            &self.me,
                            send.id,
                            &window,
                            unix_now(),
                        )
                    })
                }
                None => {
                    let destination = Destination {
                        address: self.me,
                        surb_id: send.id,
                    };
                    let mut body = [0u8; 32];
                    rng.fill(&mut body[..]);
                    send.route.first().and_then(|first| {
                        Some(Transmit {
                            next: first.address(),
                            frame: doc.forward_frame(rng, &send.route, &destination, &body)?,
                        })
                    })
                }
            };
            match built {
                Some(t) => out.push(t),
                // A hop without a key for the epoch: not sent, not lost.
                None => self.loops.cancel(&send.id),
            }
        }
        out
    }

    /// A delivery addressed to this node with `id` arrived: one of its
    /// loops, or a forgery (ignored).
    pub fn returned(&mut self, now: Instant, id: &LoopId) {
        self.loops.returned(now, id);
    }

    /// Moves what the machine counted since the last call to `metrics`
    /// and logs an alarm.
    pub fn export(&mut self, metrics: &Metrics) {
        let unroutable = self.loops.unroutable();
        let tracker = self.loops.tracker();
        let counts = tracker.counts();
        for (result, now, before) in [
            ("sent", counts.sent, self.exported.sent),
            ("returned", counts.returned, self.exported.returned),
            ("lost", counts.lost, self.exported.lost),
        ] {
            Metrics::add_since(&metrics.node_loops, &[result], now, before);
        }
        self.exported = counts;
        if unroutable > self.exported_unroutable {
            if self.exported_unroutable == 0 {
                tracing::warn!(
                    "node loops have no route: a position they cross has no node in the document (a mix's loops need a service node); none is sent while none is listed"
                );
            }
            Metrics::add_since(
                &metrics.node_loops,
                &["unroutable"],
                unroutable,
                self.exported_unroutable,
            );
            self.exported_unroutable = unroutable;
        }
        if let Some(ratio) = tracker.loss_ratio() {
            metrics.node_loop_loss.set(ratio);
        }
        if let Some(alarm) = tracker.poll_alarm() {
            match alarm.suspect {
                // A node's key, from the document: not a client's.
                Some(suspect) => tracing::warn!(
                    loss = alarm.loss,
                    suspect = %data_encoding::HEXLOWER.encode(&suspect),
                    "node loops through one node are not coming back: it may be dropping packets (possible n-1 or blocking attack)"
                ),
                None => tracing::warn!(
                    loss = alarm.loss,
                    "most node loops are not coming back: packets are being dropped in the network (possible n-1 or blocking attack)"
                ),
            }
        }
    }
}
