//! A service node's side of storage requests (`specs/storage.md` §4): a
//! request arrives as the message of a forward packet addressed to this
//! node; the core's `ServiceMachine` decides which replicas to ask and
//! what to answer, and this driver only carries its asks (over
//! `/mtos/store/3`, or to its own store when it is one of the replicas),
//! hands back the answers, and sends each response back through the
//! request's reply block, handing the reply packet to the block's first
//! hop like any frame it forwards. It never learns who asked: the request
//! carries no address, only a reply block.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::metrics::Metrics;
use super::record_db::RecordDb;
use super::replica::{Signer, ask, serve_counted};
use mtos_mixnode::Instant;
use mtos_mixnode::engine::Transmit;
use mtos_mixnode::placement::{DEFAULT_REPLICAS, StorageNode, replicas, storage_nodes};
use mtos_mixnode::receipts::{
    Answering, Signed, decode_list, encode_list, replica_nonce, signed_answer,
};
use mtos_mixnode::records::StampRule;
use mtos_mixnode::replica_proto::{ReplicaOp, put_rest};
use mtos_mixnode::service::{Op, Status};

use super::config::ServiceLie;
use mtos_mixnode::replica_proto::ReplicaStatus;
use mtos_mixnode::service::{ReplyBlock, Request, Response};
use mtos_mixnode::service_machine::{
    Ask, AskId, Job, ServiceConfig, ServiceCounts, ServiceMachine,
};
use mtos_net::{NodeEntryExt, Topology};

/// Requests waiting for the machine; beyond it they are dropped (counted
/// by the engine loop).
pub const REQUEST_QUEUE: usize = 1_024;
/// Replies waiting for the engine loop; beyond it they are dropped
/// (counted; the client asks again).
const REPLY_QUEUE: usize = 1_024;

/// What the request loop needs.
pub(super) struct ServiceNode {
    pub requests: mpsc::Receiver<Vec<u8>>,
    pub control: libp2p_stream::Control,
    pub topology: tokio::sync::watch::Receiver<Option<Arc<Topology>>>,
    pub out: mpsc::Sender<Transmit>,
    pub metrics: Metrics,
    /// This node's own store, when it is a storage node too.
    pub local: Option<Arc<Mutex<RecordDb>>>,
    pub me: [u8; 32],
    /// Signs this node's own answers as a replica.
    pub signer: Signer,
    /// Chunks kept from replicas' answers.
    pub cache_chunks: usize,
    /// The test-only lie it tells (`[faults] service_lie`).
    pub lie: ServiceLie,
}

type Answer = (AskId, Option<(ReplicaStatus, Vec<u8>)>);

impl ServiceNode {
    /// Handles requests until the engine loop goes away.
    pub async fn run(mut self) {
        let config = ServiceConfig {
            cache_chunks: self.cache_chunks,
            ..ServiceConfig::default()
        };
        let mut machine: ServiceMachine<ReplyBlock> = ServiceMachine::new(config);
        let origin = tokio::time::Instant::now();
        let now = || Instant::ZERO + origin.elapsed();
        // Every ask out has a task that sends exactly one answer; asks
        // out are bounded by the machine (requests × replicas).
        let (answers_tx, mut answers) = mpsc::channel::<Answer>(1_024);
        let mut exported = ServiceCounts::default();
        // Replies wait here, not in an `await` that would stop the
        // machine while the engine loop is busy.
        let mut replies: std::collections::VecDeque<Transmit> = std::collections::VecDeque::new();
        loop {
            let timer = machine.poll_timeout().map(|t| origin + t.since_origin());
            // Requests wait in their queue while the machine is full.
            let room = machine.in_work() < config.max_requests;
            tokio::select! {
                request = self.requests.recv(), if room => {
                    let Some(bytes) = request else { return };
                    if let Some((block, response)) = self.take(&mut machine, now(), &bytes)
                        && let Some(t) = reply_transmit(&block, &response, mtos_net::unix_now())
                        && replies.len() < REPLY_QUEUE
                    {
                        replies.push_back(t);
                    }
                }
                Some((id, answer)) = answers.recv() => machine.handle_answer(now(), id, answer),
                () = async {
                    match timer {
                        Some(t) => tokio::time::sleep_until(t).await,
                        None => std::future::pending().await,
                    }
                } => machine.handle_timeout(now()),
                permit = self.out.reserve(), if !replies.is_empty() => {
                    let Ok(permit) = permit else { return };
                    if let Some(t) = replies.pop_front() {
                        permit.send(t);
                    }
                }
            }
            while let Some(a) = machine.poll_ask() {
                self.carry(a, answers_tx.clone());
            }
            while let Some(mut done) = machine.poll_answered() {
                self.metrics
                    .service_seconds
                    .with_label_values(&[done.op])
                    .observe(now().saturating_since(done.taken).as_secs_f64());
                if self.lie == ServiceLie::HideHeld && done.op == "probe" {
                    hide_held(&mut done.response);
                    count(&self.metrics, done.op, "lie");
                }
                match reply_transmit(&done.reply, &done.response, mtos_net::unix_now()) {
                    Some(_) if replies.len() >= REPLY_QUEUE => {
                        count(&self.metrics, "reply", "queue_full");
                    }
                    Some(t) => replies.push_back(t),
                    None => count(&self.metrics, "reply", "expired_or_bad_block"),
                }
            }
            export(&self.metrics, &machine, &mut exported);
        }
    }

    /// Decodes a request and gives it to the machine under the current
    /// document's storage nodes; a lie told at once comes back instead.
    fn take(
        &self,
        machine: &mut ServiceMachine<ReplyBlock>,
        now: Instant,
        bytes: &[u8],
    ) -> Option<(ReplyBlock, Response)> {
        let Ok(request) = Request::decode(bytes) else {
            // No reply block to answer through: counted, dropped.
            count(&self.metrics, "request", "bad_request");
            return None;
        };
        let (storage, epoch, floor) = self.topology.borrow().as_ref().map(|t| {
            let d = &t.document;
            (storage_nodes(d), d.epoch, d.storage.stamp_floor)
        })?;
        // Stamps as this document asks (`storage.md` §2).
        machine.set_stamp_rule(StampRule {
            epoch,
            need: floor,
            any_past: false,
        });
        if let Some(response) = self.forge(&request, &storage, epoch) {
            count(&self.metrics, "put", "lie");
            return Some((request.reply, response));
        }
        let job = Job {
            id: request.id,
            locator: request.locator,
            op: request.op,
            reply: request.reply,
        };
        // Never full here: requests are taken only while there is room.
        if machine.handle_request(now, job, &storage).is_err() {
            count(&self.metrics, "request", "busy");
        }
        None
    }

    /// The answer a lying service node gives a put without asking any
    /// replica (`AckPuts`, `ForgeRefusals`): answers in the replicas'
    /// names, signed with its own key. `None` when it tells no such lie.
    fn forge(&self, request: &Request, storage: &[StorageNode], epoch: u32) -> Option<Response> {
        let (status, detail, code) = match self.lie {
            ServiceLie::AckPuts => (ReplicaStatus::Ok, Vec::new(), Status::Ok),
            ServiceLie::ForgeRefusals => (
                ReplicaStatus::Refused,
                b"wrong_locator".to_vec(),
                Status::Refused,
            ),
            ServiceLie::None | ServiceLie::HideHeld => return None,
        };
        let Op::Put(kind, record, stamp) = &request.op else {
            return None;
        };
        let rest = put_rest(*kind, &request.locator, stamp, record);
        let answers: Vec<Signed> = replicas(&request.locator, storage, DEFAULT_REPLICAS)
            .iter()
            .filter_map(|node| {
                let nonce = replica_nonce(&request.id, node);
                let answering = Answering {
                    nonce: &nonce,
                    epoch,
                    node,
                    op: ReplicaOp::Put,
                    request: &rest,
                };
                let body = signed_answer(
                    |m| self.signer.identity.sign(m),
                    &answering,
                    status,
                    detail.clone(),
                );
                Signed::from_answer(*node, status, &body)
            })
            .collect();
        Some(Response {
            id: request.id,
            status: code,
            body: encode_list(&answers),
        })
    }

    /// Carries one ask to its replica in a task that reports the answer.
    fn carry(&self, a: Ask, answers: mpsc::Sender<Answer>) {
        let timeout = ServiceConfig::default().ask_timeout;
        if a.node == self.me {
            // This node is one of the replicas: its own store, served and
            // counted as a replica request from a peer is.
            let (local, metrics, signer) = (
                self.local.clone(),
                self.metrics.clone(),
                self.signer.clone(),
            );
            tokio::spawn(async move {
                let answer = match local {
                    Some(db) => {
                        serve_counted(db, metrics, signer, a.op.code(), a.body, false).await
                    }
                    None => None,
                };
                let _ = answers.send((a.id, answer)).await;
            });
            return;
        }
        let peer = self
            .topology
            .borrow()
            .as_ref()
            .and_then(|t| t.document.node(&a.node).and_then(|n| n.peer().ok()));
        let mut control = self.control.clone();
        let seconds = self
            .metrics
            .replica_ask_seconds
            .with_label_values(&[a.op.name()]);
        tokio::spawn(async move {
            let sent = tokio::time::Instant::now();
            let answer = match peer {
                Some(peer) => {
                    let answer = ask(&mut control, peer, a.op, &a.body, timeout).await;
                    seconds.observe(sent.elapsed().as_secs_f64());
                    answer
                }
                // Not asked: a node the document does not list.
                None => None,
            };
            let _ = answers.send((a.id, answer)).await;
        });
    }
}

/// `HideHeld`: drops from a probe's answer every signed answer with a
/// bit set.
fn hide_held(response: &mut Response) {
    if let Ok(mut answers) = decode_list(&response.body) {
        answers.retain(|a| a.detail.iter().all(|b| *b == 0));
        response.body = encode_list(&answers);
    }
}

fn count(metrics: &Metrics, op: &str, result: &str) {
    metrics
        .service_requests
        .with_label_values(&[op, result])
        .inc();
}

/// Moves what the machine counted since the last call to `metrics`.
fn export(metrics: &Metrics, machine: &ServiceMachine<ReplyBlock>, exported: &mut ServiceCounts) {
    let counts = machine.counts();
    if counts == exported {
        return;
    }
    let requests = &metrics.service_requests;
    for (&(op, status), &n) in &counts.answered {
        let before = exported.answered.get(&(op, status)).copied().unwrap_or(0);
        Metrics::add_since(requests, &[op, status], n, before);
    }
    let cache = &metrics.service_cache;
    Metrics::add_since(cache, &["hit"], counts.cache_hits, exported.cache_hits);
    Metrics::add_since(cache, &["miss"], counts.cache_misses, exported.cache_misses);
    let (bad, timeouts) = (counts.bad_records, counts.ask_timeouts);
    Metrics::add_since(
        requests,
        &["replica_get", "bad_record"],
        bad,
        exported.bad_records,
    );
    Metrics::add_since(
        requests,
        &["replica_ask", "timeout"],
        timeouts,
        exported.ask_timeouts,
    );
    Metrics::add_since(
        requests,
        &["replica_ask", "bad_signature"],
        counts.bad_signatures,
        exported.bad_signatures,
    );
    metrics
        .service_cache_chunks
        .set(i64::try_from(machine.cached_chunks()).unwrap_or(i64::MAX));
    *exported = counts.clone();
}

/// The reply packet for `response` through `block`, as a frame for the
/// block's first hop; `None` when the block has expired or is not a
/// block.
pub fn reply_transmit(block: &ReplyBlock, response: &Response, now: u64) -> Option<Transmit> {
    if block.expires <= now {
        return None;
    }
    let mut plain = vec![0u8];
    plain.extend_from_slice(&response.encode().ok()?);
    let (next, frame) = block.reply_frame(&plain).ok()?;
    Some(Transmit { next, frame })
}
