//! Node loop cover (λM, `specs/mixing.md`): every node sends loops through
//! every other position of the network and back to itself, and counts the
//! ones that do not come back. A loss well above the network's usual one
//! means packets are being dropped on purpose somewhere, the signature of
//! an n−1 or blocking attack, and is reported (metric and log).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mtos_crypto::sphinx::{Destination, SURB_ID_LEN, sample_exponential};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::sync::mpsc;

use super::metrics::Metrics;
use mtos_mixnode::directory::{NetworkDocument, NodeEntry};
use mtos_mixnode::engine::Transmit;
use mtos_net::Topology;

/// Loops whose fate is remembered for the loss ratio.
const WINDOW: usize = 100;
/// Loops resolved before a loss ratio is reported.
const MIN_RESOLVED: usize = 20;
/// A loss ratio above this is reported as a possible attack.
pub const LOSS_ALARM: f64 = 0.5;
/// Loops in flight remembered at once.
const MAX_PENDING: usize = 10_000;

/// Loops in flight and the fate of recent ones.
#[derive(Debug, Default)]
pub struct LoopTracker {
    pending: HashMap<[u8; SURB_ID_LEN], tokio::time::Instant>,
    recent: VecDeque<bool>,
    alarmed_at: Option<tokio::time::Instant>,
}

impl LoopTracker {
    fn resolve(&mut self, returned: bool) {
        if self.recent.len() == WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(returned);
    }

    /// Lost share of the recent loops, once enough are resolved.
    pub fn loss_ratio(&self) -> Option<f64> {
        (self.recent.len() >= MIN_RESOLVED)
            .then(|| self.recent.iter().filter(|r| !**r).count() as f64 / self.recent.len() as f64)
    }

    /// A loop with this id came back; `false` if it is not one of ours
    /// (or came back after it was counted lost).
    pub fn returned(&mut self, id: &[u8; SURB_ID_LEN], metrics: &Metrics) -> bool {
        if self.pending.remove(id).is_none() {
            return false;
        }
        metrics.node_loops.with_label_values(&["returned"]).inc();
        self.resolve(true);
        self.report(metrics);
        true
    }

    fn expire(&mut self, now: tokio::time::Instant, timeout: Duration, metrics: &Metrics) {
        let before = self.pending.len();
        self.pending
            .retain(|_, sent| now.duration_since(*sent) < timeout);
        for _ in self.pending.len()..before {
            metrics.node_loops.with_label_values(&["lost"]).inc();
            self.resolve(false);
        }
        self.report(metrics);
    }

    fn report(&mut self, metrics: &Metrics) {
        let Some(ratio) = self.loss_ratio() else {
            return;
        };
        metrics.node_loop_loss.set(ratio);
        let now = tokio::time::Instant::now();
        let quiet = self
            .alarmed_at
            .is_none_or(|t| now.duration_since(t) > Duration::from_secs(60));
        if ratio > LOSS_ALARM && quiet {
            self.alarmed_at = Some(now);
            tracing::warn!(
                loss = ratio,
                "most node loops are not coming back: packets are being dropped in the network (possible n-1 or blocking attack)"
            );
        }
    }
}

fn build(
    rng: &mut StdRng,
    doc: &NetworkDocument,
    me: &NodeEntry,
    id: [u8; SURB_ID_LEN],
) -> Option<Transmit> {
    let route = doc.node_loop_route(rng, me)?;
    let destination = Destination {
        address: me.key,
        surb_id: id,
    };
    let mut body = [0u8; 32];
    rng.fill(&mut body[..]);
    let frame = doc.forward_frame(rng, &route, &destination, &body)?;
    Some(Transmit {
        next: route.first()?.address(),
        frame,
    })
}

/// Sends this node's loops at λM (from the document) until `out` closes.
pub async fn run(
    me: [u8; 32],
    topology: tokio::sync::watch::Receiver<Option<Arc<Topology>>>,
    out: mpsc::Sender<Transmit>,
    tracker: Arc<Mutex<LoopTracker>>,
    metrics: Metrics,
) {
    let mut rng = StdRng::from_rng(&mut rand::rng());
    loop {
        let topo = topology.borrow().clone();
        let Some(topo) = topo else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let doc = &topo.document;
        let rate = doc.rates.node_loops;
        if !(rate.is_finite() && rate > 0.0) {
            tokio::time::sleep(Duration::from_secs(5)).await;
            continue;
        }
        let gap = sample_exponential(&mut rng, Duration::from_secs_f64(1.0 / rate.min(10_000.0)));
        tokio::time::sleep(gap).await;
        // A loop takes about five mean delays; one that has not come back
        // after many more is lost.
        let timeout = Duration::from_millis(doc.mixing.max_delay_ms.saturating_mul(4))
            .max(Duration::from_secs(10));
        let now = tokio::time::Instant::now();
        if let Ok(mut t) = tracker.lock() {
            t.expire(now, timeout, &metrics);
        }
        let Some(me_entry) = doc.node(&me) else {
            continue;
        };
        let mut id = [0u8; SURB_ID_LEN];
        rng.fill(&mut id[..]);
        let Some(transmit) = build(&mut rng, doc, me_entry, id) else {
            continue;
        };
        let tracked = tracker.lock().is_ok_and(|mut t| {
            if t.pending.len() >= MAX_PENDING {
                return false;
            }
            t.pending.insert(id, now);
            true
        });
        if tracked {
            metrics.node_loops.with_label_values(&["sent"]).inc();
            if out.send(transmit).await.is_err() {
                return;
            }
        }
    }
}
