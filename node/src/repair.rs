//! Repair (`specs/storage.md` §1): when the network document's storage
//! nodes change, every record whose replicas gained a node is copied to
//! that node by the replicas that held it before.
//!
//! The plan per record is [`mtos_mixnode::placement::repair`]. Of a record's
//! sources (replicas under both the old and the new storage nodes), the
//! one with the highest weight copies at once; the next one checks a
//! round later, and so on, so a record is normally sent once, yet still
//! arrives when its first source is gone too. Every round first asks the
//! target which records it has (`have`, 113 locators a request) and sends
//! only the missing ones, paced at `[storage] repair_per_sec`. A pass
//! walks the store a page at a time; when the storage nodes change again
//! during a pass, it starts over against the same old set. The old set a
//! pass completed is kept in the store (`m` row), so a restarted node
//! still repairs the change it slept through.
//!
//! Records this node no longer replicates (another node joined ahead of
//! it) stay until retention evicts them: they are harmless and would be
//! the only copies if the newcomer failed early.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use mtos_crypto::item::Locator;
use tokio::sync::watch;

use super::metrics::Metrics;
use super::record_db::RecordDb;
use super::replica::{ReplicaOp, ReplicaStatus, ask, request_body};
use mtos_mixnode::placement::{DEFAULT_REPLICAS, repair, storage_nodes};
use mtos_mixnode::records::Kind;
use mtos_mixnode::service::MAX_PROBE;
use mtos_net::{NodeEntryExt, Topology};

/// The meta row holding the storage nodes the last pass completed for.
const BASELINE: &str = "repair-baseline";
/// Records read from the store at a time.
const PAGE: usize = 1_024;
/// Copies in flight at once (within the rate).
const IN_FLIGHT: usize = 8;
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

/// How a pass ended.
#[derive(Debug, PartialEq, Eq)]
enum Pass {
    /// Every record's new replicas have it (or were sent it).
    Complete,
    /// Some copies failed; the pass runs again later.
    Incomplete,
    /// The storage nodes changed again; the pass starts over.
    Interrupted,
}

fn encode(nodes: &[[u8; 32]]) -> Vec<u8> {
    nodes.concat()
}

fn decode(bytes: &[u8]) -> Option<Vec<[u8; 32]>> {
    if !bytes.len().is_multiple_of(32) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(32)
            .filter_map(|c| c.try_into().ok())
            .collect(),
    )
}

impl Repairer {
    /// The sorted storage nodes of the current document, if any.
    fn storage_set(&self) -> Option<Vec<[u8; 32]>> {
        let mut nodes = storage_nodes(&self.topology.borrow().as_ref()?.document);
        nodes.sort_unstable();
        Some(nodes)
    }

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

    async fn save_baseline(&self, nodes: &[[u8; 32]]) {
        let bytes = encode(nodes);
        let saved = self
            .blocking(move |db| db.set_meta(BASELINE, &bytes).ok())
            .await;
        if saved.is_none() {
            tracing::warn!("the repair state could not be stored");
        }
    }

    /// Runs until the node stops.
    pub async fn run(mut self) {
        let mut baseline = self
            .blocking(|db| db.meta(BASELINE).ok().flatten())
            .await
            .and_then(|b| decode(&b));
        let mut failures = 0u32;
        loop {
            let current = self.storage_set();
            match (&current, &baseline) {
                (Some(now), None) => {
                    // First document ever: nothing to compare with.
                    self.save_baseline(now).await;
                    baseline = current;
                }
                (Some(now), Some(old)) if now != old && now.contains(&self.me) => {
                    let heartbeat = self.heartbeat();
                    // Changes come in bursts (nodes restarting together):
                    // let the document settle first.
                    tokio::time::sleep(heartbeat).await;
                    if self.storage_set() != current {
                        continue;
                    }
                    let (old, new) = (old.clone(), now.clone());
                    let outcome = self.pass(&old, &new).await;
                    tracing::info!(
                        before = old.len(),
                        after = new.len(),
                        outcome = ?outcome,
                        "storage nodes changed: repair pass"
                    );
                    match outcome {
                        Pass::Complete => {
                            self.metrics.repair_passes.inc();
                            self.save_baseline(&new).await;
                            baseline = Some(new);
                            failures = 0;
                        }
                        Pass::Incomplete => {
                            // Again later, against the same old set: the
                            // targets' answers make it cheap.
                            failures = failures.saturating_add(1);
                            let wait = heartbeat
                                .saturating_mul(3u32.saturating_pow(failures.min(5)))
                                .min(Duration::from_secs(600));
                            tokio::time::sleep(wait).await;
                        }
                        Pass::Interrupted => {}
                    }
                    continue;
                }
                _ => {}
            }
            if self.topology.changed().await.is_err() {
                return;
            }
        }
    }

    fn heartbeat(&self) -> Duration {
        let secs = self
            .topology
            .borrow()
            .as_ref()
            .map_or(1, |t| t.document.schedule.heartbeat_secs);
        Duration::from_secs(secs.clamp(1, 60))
    }

    /// One pass from `old` to `new`: a round per source rank.
    async fn pass(&mut self, old: &[[u8; 32]], new: &[[u8; 32]]) -> Pass {
        let start = tokio::time::Instant::now();
        let stagger = self.heartbeat();
        let mut outcome = Pass::Complete;
        for rank in 0..DEFAULT_REPLICAS {
            // A later source waits for the earlier ones (at least this
            // long, and after its own earlier rounds).
            tokio::time::sleep_until(start + stagger * rank as u32).await;
            match self.round(old, new, rank).await {
                Pass::Complete => {}
                Pass::Incomplete => outcome = Pass::Incomplete,
                Pass::Interrupted => return Pass::Interrupted,
            }
        }
        outcome
    }

    /// The records for which this node is the source of rank `rank`,
    /// copied where missing.
    async fn round(&mut self, old: &[[u8; 32]], new: &[[u8; 32]], rank: usize) -> Pass {
        let mut after = None;
        let mut outcome = Pass::Complete;
        loop {
            if self.storage_set().as_deref() != Some(new) {
                return Pass::Interrupted;
            }
            let Some(page) = self
                .blocking(move |db| db.keys_after(after, PAGE).ok())
                .await
            else {
                return Pass::Incomplete;
            };
            let Some(last) = page.last().copied() else {
                return outcome;
            };
            after = Some(last);
            // Records to offer, by target and kind.
            let mut offers: BTreeMap<([u8; 32], u8), Vec<Locator>> = BTreeMap::new();
            for (kind, locator) in page {
                let plan = repair(&locator, old, new, DEFAULT_REPLICAS);
                if plan.sources.iter().position(|n| *n == self.me) != Some(rank) {
                    continue;
                }
                for target in plan.targets {
                    offers
                        .entry((target, kind.byte()))
                        .or_default()
                        .push(locator);
                }
            }
            for ((target, kind), locators) in offers {
                let Some(kind) = Kind::from_byte(kind) else {
                    continue;
                };
                for batch in locators.chunks(MAX_PROBE) {
                    if !self.offer(&target, kind, batch).await {
                        outcome = Pass::Incomplete;
                    }
                }
            }
        }
    }

    /// Asks `target` which of `batch` it holds and sends it the rest;
    /// false if anything failed.
    async fn offer(&mut self, target: &[u8; 32], kind: Kind, batch: &[Locator]) -> bool {
        let peer = self.topology.borrow().as_ref().and_then(|t| {
            t.document
                .nodes
                .iter()
                .find(|n| n.key == *target)?
                .peer()
                .ok()
        });
        let Some(peer) = peer else {
            return false;
        };
        let mut question = vec![kind.byte()];
        for l in batch {
            question.extend_from_slice(l.as_bytes());
        }
        let count = |result: &str, n: u64| {
            self.metrics
                .repair_records
                .with_label_values(&[result])
                .inc_by(n);
        };
        let held = match ask(&mut self.control, peer, ReplicaOp::Have, &question, TIMEOUT).await {
            Some((ReplicaStatus::Ok, bits)) if bits.len() == batch.len().div_ceil(8) => bits,
            _ => {
                count("failed", batch.len() as u64);
                return false;
            }
        };
        let missing: Vec<Locator> = batch
            .iter()
            .enumerate()
            .filter(|(i, _)| held[i / 8] & (0x80 >> (i % 8)) == 0)
            .map(|(_, l)| *l)
            .collect();
        count("present", (batch.len() - missing.len()) as u64);
        let interval = Duration::from_secs_f64(1.0 / f64::from(self.per_sec.max(1)));
        let start = tokio::time::Instant::now();
        let (db, control, metrics) = (self.db.clone(), self.control.clone(), self.metrics.clone());
        let results: Vec<bool> = futures::stream::iter(missing.into_iter().enumerate())
            .map(|(i, locator)| {
                let (db, mut control, metrics) = (db.clone(), control.clone(), metrics.clone());
                async move {
                    // Paced: the i-th copy leaves no earlier than i
                    // intervals into the batch.
                    tokio::time::sleep_until(start + interval * i as u32).await;
                    let record = tokio::task::spawn_blocking(move || {
                        db.lock().ok()?.get(kind, &locator).ok().flatten()
                    })
                    .await
                    .ok()
                    .flatten();
                    // Gone since the page was read (evicted): nothing to send.
                    let Some(record) = record else {
                        return true;
                    };
                    let body = request_body(kind, &locator, &record);
                    let result = match ask(&mut control, peer, ReplicaOp::Put, &body, TIMEOUT).await
                    {
                        Some((ReplicaStatus::Ok, _)) => {
                            metrics.repair_bytes.inc_by(record.len() as u64);
                            "sent"
                        }
                        Some(_) => "refused",
                        None => "failed",
                    };
                    metrics.repair_records.with_label_values(&[result]).inc();
                    result == "sent"
                }
            })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        results.into_iter().all(|ok| ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_baseline_round_trips_and_bad_bytes_are_refused() {
        let nodes = vec![[1u8; 32], [2u8; 32], [3u8; 32]];
        assert_eq!(decode(&encode(&nodes)), Some(nodes));
        assert_eq!(decode(&[0u8; 33]), None);
        assert_eq!(decode(&[]), Some(vec![]));
    }
}
