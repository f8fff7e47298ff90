//! Drives a storage node's repair (`specs/storage.md` §1; the rules are
//! the core's `mtos_mixnode::repair_plan::RepairPlan`): it feeds the
//! machine each document's storage nodes, reads the pages and records it
//! asks for from RocksDB, carries its `have` asks and copies to the
//! targets, keeps its baseline (the storage nodes of the last completed
//! pass) in the store's `m` row so a restarted node repairs the change it
//! slept through, and exports its counts.
//!
//! Records this node no longer replicates (another node joined ahead of
//! it) stay until retention evicts them: they are harmless and would be
//! the only copies if the newcomer failed early.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mtos_crypto::item::Locator;
use tokio::sync::{mpsc, watch};

use super::metrics::Metrics;
use super::record_db::RecordDb;
use super::replica::{ReplicaOp, ReplicaStatus, ask_detail, put_rest};
use mtos_mixnode::Instant;
use mtos_mixnode::placement::{StorageNode, storage_nodes};
use mtos_mixnode::records::Kind;
use mtos_mixnode::repair_plan::{
    ActionId, Copied, RepairAction, RepairConfig, RepairCounts, RepairPlan,
};
use mtos_net::{NodeEntryExt, Topology};

/// The meta row holding the storage nodes the last pass completed for.
/// The row of the baseline: each storage node's key and salt. (Before
/// salts, "repair-baseline" held keys only; a node upgraded starts from
/// its first document again.)
const BASELINE: &str = "repair-baseline-v2";
/// How long one replica request may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// What the repair task needs.
pub(super) struct Repairer {
    pub db: Arc<Mutex<RecordDb>>,
    pub topology: watch::Receiver<Option<Arc<Topology>>>,
    pub control: libp2p_stream::Control,
    pub metrics: Metrics,
    pub me: [u8; 32],
    /// Records sent per second at most.
    pub per_sec: u32,
}

/// What an action's task reports.
enum Done {
    Page(ActionId, Option<Vec<(Kind, Locator)>>),
    Have(ActionId, Option<(ReplicaStatus, Vec<u8>)>),
    Copied(ActionId, Copied),
}

fn encode(nodes: &[StorageNode]) -> Vec<u8> {
    nodes.iter().flat_map(|n| n.to_bytes()).collect()
}

fn decode(bytes: &[u8]) -> Option<Vec<StorageNode>> {
    if !bytes.len().is_multiple_of(64) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(64)
            .filter_map(|c| c.try_into().ok())
            .map(|c: &[u8; 64]| StorageNode::from_bytes(c))
            .collect(),
    )
}

impl Repairer {
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&RecordDb) -> Option<T> + Send + 'static,
    ) -> Option<T> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&*db.lock().ok()?))
            .await
            .ok()
            .flatten()
    }

    /// The current document's storage nodes and heartbeat.
    fn document(&self) -> Option<(Vec<StorageNode>, Duration)> {
        let topology = self.topology.borrow();
        let doc = &topology.as_ref()?.document;
        Some((
            storage_nodes(doc),
            Duration::from_secs(doc.schedule.heartbeat_secs),
        ))
    }

    /// Runs until the node stops.
    pub async fn run(mut self) {
        let baseline = self
            .blocking(|db| db.meta(BASELINE).ok().flatten())
            .await
            .and_then(|b| decode(&b));
        let config = RepairConfig {
            per_sec: self.per_sec,
            ..RepairConfig::default()
        };
        let mut plan = RepairPlan::new(self.me, config, baseline);
        let origin = tokio::time::Instant::now();
        let now = || Instant::ZERO + origin.elapsed();
        // Each action's task reports once; actions out are bounded by the
        // machine (one page or `have`, `in_flight` copies).
        let (done_tx, mut done) = mpsc::channel::<Done>(64);
        let mut exported = RepairCounts::default();
        if let Some((storage, heartbeat)) = self.document() {
            plan.handle_document(now(), storage, heartbeat);
        }
        loop {
            while let Some(action) = plan.poll_action() {
                self.carry(action, done_tx.clone()).await;
            }
            while let Some(outcome) = plan.poll_outcome() {
                tracing::info!(outcome = ?outcome, "repair pass");
            }
            self.export(plan.counts(), &mut exported);
            let timer = plan.poll_timeout().map(|t| origin + t.since_origin());
            tokio::select! {
                changed = self.topology.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if let Some((storage, heartbeat)) = self.document() {
                        plan.handle_document(now(), storage, heartbeat);
                    }
                }
                Some(d) = done.recv() => match d {
                    Done::Page(id, page) => plan.handle_page(now(), id, page),
                    Done::Have(id, answer) => plan.handle_have(now(), id, answer),
                    Done::Copied(id, result) => plan.handle_copied(now(), id, result),
                },
                () = async {
                    match timer {
                        Some(t) => tokio::time::sleep_until(t).await,
                        None => std::future::pending().await,
                    }
                } => plan.handle_timeout(now()),
            }
        }
    }

    /// Starts one action; its task reports to `done`.
    async fn carry(&self, action: RepairAction, done: mpsc::Sender<Done>) {
        match action {
            RepairAction::SaveBaseline(nodes) => {
                let bytes = encode(&nodes);
                let saved = self
                    .blocking(move |db| db.set_meta(BASELINE, &bytes).ok())
                    .await;
                if saved.is_none() {
                    tracing::warn!("the repair state could not be stored");
                }
            }
            RepairAction::ReadPage { id, after, limit } => {
                let db = self.db.clone();
                tokio::spawn(async move {
                    let page = tokio::task::spawn_blocking(move || {
                        db.lock().ok()?.keys_after(after, limit).ok()
                    })
                    .await
                    .ok()
                    .flatten();
                    let _ = done.send(Done::Page(id, page)).await;
                });
            }
            RepairAction::Have {
                id,
                target,
                kind,
                locators,
            } => {
                let peer = self.peer(&target);
                let mut control = self.control.clone();
                tokio::spawn(async move {
                    let mut question = vec![kind.byte()];
                    for l in &locators {
                        question.extend_from_slice(l.as_bytes());
                    }
                    let answer = match peer {
                        Some(peer) => {
                            ask_detail(&mut control, peer, ReplicaOp::Have, &question, TIMEOUT)
                                .await
                        }
                        None => None,
                    };
                    let _ = done.send(Done::Have(id, answer)).await;
                });
            }
            RepairAction::Copy {
                id,
                target,
                kind,
                locator,
            } => {
                let peer = self.peer(&target);
                let (db, mut control) = (self.db.clone(), self.control.clone());
                tokio::spawn(async move {
                    let record = tokio::task::spawn_blocking(move || {
                        db.lock().ok()?.get_stamped(kind, &locator).ok().flatten()
                    })
                    .await
                    .ok()
                    .flatten();
                    let result = match (record, peer) {
                        // Gone since the page was read (evicted).
                        (None, _) => Copied::Gone,
                        (Some(_), None) => Copied::Failed,
                        // The record goes with the stamp it came with.
                        (Some((stamp, record)), Some(peer)) => {
                            let body = put_rest(kind, &locator, &stamp, &record);
                            match ask_detail(&mut control, peer, ReplicaOp::Copy, &body, TIMEOUT)
                                .await
                            {
                                Some((ReplicaStatus::Ok, _)) => Copied::Sent {
                                    bytes: record.len(),
                                },
                                Some(_) => Copied::Refused,
                                None => Copied::Failed,
                            }
                        }
                    };
                    let _ = done.send(Done::Copied(id, result)).await;
                });
            }
        }
    }

    fn peer(&self, target: &[u8; 32]) -> Option<libp2p::PeerId> {
        self.topology
            .borrow()
            .as_ref()
            .and_then(|t| t.document.node(target)?.peer().ok())
    }

    /// Moves what the machine counted since the last call to metrics.
    fn export(&self, counts: RepairCounts, exported: &mut RepairCounts) {
        if counts == *exported {
            return;
        }
        for (result, now, before) in [
            ("sent", counts.sent, exported.sent),
            ("present", counts.present, exported.present),
            ("refused", counts.refused, exported.refused),
            ("failed", counts.failed, exported.failed),
        ] {
            Metrics::add_since(&self.metrics.repair_records, &[result], now, before);
        }
        self.metrics
            .repair_bytes
            .inc_by(counts.bytes.saturating_sub(exported.bytes));
        self.metrics
            .repair_passes
            .inc_by(counts.passes.saturating_sub(exported.passes));
        *exported = counts;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_baseline_round_trips_and_bad_bytes_are_refused() {
        let nodes: Vec<StorageNode> = (1..=3u8)
            .map(|i| StorageNode {
                key: [i; 32],
                salt: [i + 10; 32],
            })
            .collect();
        assert_eq!(decode(&encode(&nodes)), Some(nodes));
        assert_eq!(decode(&[0u8; 33]), None);
        assert_eq!(decode(&[0u8; 96]), None);
        assert_eq!(decode(&[]), Some(vec![]));
    }
}
