//! A service node's side of storage requests (`specs/storage.md` §4): a
//! request arrives as the message of a forward packet addressed to this
//! node; the node performs it against the record's replicas
//! (`/mtos/store/1`, or its own store when it is one of them) and sends
//! the answer back through the request's reply block, handing the reply
//! packet to the block's first hop like any frame it forwards. It never
//! learns who asked: the request carries no address, only a reply block.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mtos_crypto::item::Locator;
use tokio::sync::{Semaphore, mpsc};

use super::metrics::Metrics;
use super::record_db::RecordDb;
use super::replica::{ReplicaOp, ReplicaStatus, ask, request_body, serve_counted};
use mtos_mixnode::cache::ChunkCache;
use mtos_mixnode::directory::NetworkDocument;
use mtos_mixnode::engine::Transmit;
use mtos_mixnode::placement::{DEFAULT_REPLICAS, replicas, storage_nodes};
use mtos_mixnode::records::{Kind, validate};
use mtos_mixnode::service::{Op, ReplyBlock, Request, Response, Status};
use mtos_net::{NodeEntryExt, Topology};

/// Requests waiting for a worker; beyond it they are dropped (counted).
pub const REQUEST_QUEUE: usize = 1_024;
/// Requests handled at once.
const WORKERS: usize = 64;
/// How long one replica may take to answer.
const REPLICA_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// Chunks fetched from replicas.
    pub cache: Arc<Mutex<ChunkCache>>,
}

impl ServiceNode {
    /// Handles requests until the engine loop goes away.
    pub async fn run(mut self) {
        let workers = Arc::new(Semaphore::new(WORKERS));
        while let Some(bytes) = self.requests.recv().await {
            let Ok(permit) = workers.clone().acquire_owned().await else {
                return;
            };
            let Some(doc) = self.topology.borrow().as_ref().map(|t| t.document.clone()) else {
                continue;
            };
            let (control, out, metrics, local, me, cache) = (
                self.control.clone(),
                self.out.clone(),
                self.metrics.clone(),
                self.local.clone(),
                self.me,
                self.cache.clone(),
            );
            tokio::spawn(async move {
                let _permit = permit;
                let Ok(request) = Request::decode(&bytes) else {
                    // No reply block to answer through: counted, dropped.
                    count(&metrics, "request", "bad_request");
                    return;
                };
                let mut replica = ServiceRequest {
                    control,
                    doc: &doc,
                    local,
                    me,
                    metrics: metrics.clone(),
                    cache,
                };
                let response = replica.perform(&request).await;
                count(&metrics, op_name(&request.op), status_name(response.status));
                match reply_transmit(&request.reply, &response, mtos_net::unix_now()) {
                    Some(t) => {
                        let _ = out.send(t).await;
                    }
                    None => count(&metrics, "reply", "expired_or_bad_block"),
                }
            });
        }
    }
}

fn count(metrics: &Metrics, op: &str, result: &str) {
    metrics
        .service_requests
        .with_label_values(&[op, result])
        .inc();
}

fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Put(Kind::Chunk, _) => "put_chunk",
        Op::Put(Kind::Slot, _) => "put_slot",
        Op::Get(Kind::Chunk) => "get_chunk",
        Op::Get(Kind::Slot) => "get_slot",
        Op::Probe(_) => "probe",
    }
}

fn status_name(s: Status) -> &'static str {
    match s {
        Status::Ok => "ok",
        Status::NotFound => "not_found",
        Status::Refused => "refused",
        Status::Unavailable => "unavailable",
        Status::BadRequest => "bad_request",
    }
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

/// One client request being performed against its record's replicas:
/// the links, the document it was routed under, this node's own store
/// and the chunk cache.
struct ServiceRequest<'a> {
    control: libp2p_stream::Control,
    doc: &'a NetworkDocument,
    local: Option<Arc<Mutex<RecordDb>>>,
    me: [u8; 32],
    metrics: Metrics,
    cache: Arc<Mutex<ChunkCache>>,
}

impl ServiceRequest<'_> {
    /// One replica request: `(answer kind, body)`, or `None` when the
    /// replica cannot be reached.
    async fn ask(
        &mut self,
        node: &[u8; 32],
        op: ReplicaOp,
        body: &[u8],
    ) -> Option<(ReplicaStatus, Vec<u8>)> {
        if *node == self.me {
            // This node is one of the replicas: its own store, served and
            // counted as a replica request from a peer is.
            let local = self.local.clone()?;
            return serve_counted(local, self.metrics.clone(), op.code(), body.to_vec()).await;
        }
        let peer = self.doc.node(node).and_then(|n| n.peer().ok())?;
        ask(&mut self.control, peer, op, body, REPLICA_TIMEOUT).await
    }

    fn replicas_of(&self, locator: &Locator) -> Vec<[u8; 32]> {
        replicas(locator, &storage_nodes(self.doc), DEFAULT_REPLICAS)
    }

    async fn perform(&mut self, request: &Request) -> Response {
        let respond = |status, body| Response {
            id: request.id,
            status,
            body,
        };
        let locator = request.locator;
        match &request.op {
            Op::Put(kind, record) => {
                // Checked here too, so a bad record costs no replica a
                // request.
                if let Err(e) = validate(*kind, &locator, record) {
                    return respond(Status::Refused, e.name().as_bytes().to_vec());
                }
                let body = request_body(*kind, &locator, record);
                let (mut stored, mut refused) = (0u8, None);
                for node in self.replicas_of(&locator) {
                    match self.ask(&node, ReplicaOp::Put, &body).await {
                        Some((ReplicaStatus::Ok, _)) => stored += 1,
                        Some((ReplicaStatus::Refused, reason)) => refused = Some(reason),
                        _ => {}
                    }
                }
                match (refused, stored) {
                    (Some(reason), _) => respond(Status::Refused, reason),
                    (None, 0) => respond(Status::Unavailable, Vec::new()),
                    (None, n) => respond(Status::Ok, vec![n]),
                }
            }
            Op::Get(kind) => {
                if *kind == Kind::Chunk {
                    let cached = self
                        .cache
                        .lock()
                        .ok()
                        .and_then(|c| c.get(&locator).map(<[u8]>::to_vec));
                    let result = if cached.is_some() { "hit" } else { "miss" };
                    self.metrics
                        .service_cache
                        .with_label_values(&[result])
                        .inc();
                    if let Some(chunk) = cached {
                        return respond(Status::Ok, chunk);
                    }
                }
                let body = request_body(*kind, &locator, &[]);
                let mut reached = false;
                for node in self.replicas_of(&locator) {
                    match self.ask(&node, ReplicaOp::Get, &body).await {
                        // A replica's record is checked before it is
                        // passed on: a bad replica is skipped.
                        Some((ReplicaStatus::Ok, record))
                            if validate(*kind, &locator, &record).is_ok() =>
                        {
                            if *kind == Kind::Chunk
                                && let Ok(mut cache) = self.cache.lock()
                            {
                                cache.insert(locator, record.clone());
                                self.metrics.service_cache_chunks.set(cache.len() as i64);
                            }
                            return respond(Status::Ok, record);
                        }
                        Some((ReplicaStatus::Ok, _)) => {
                            // A record that fails the checks: the replica
                            // is bad or broken; the next one is asked.
                            count(&self.metrics, "replica_get", "bad_record");
                            reached = true;
                        }
                        Some((ReplicaStatus::NotFound, _)) => reached = true,
                        _ => {}
                    }
                }
                respond(
                    if reached {
                        Status::NotFound
                    } else {
                        Status::Unavailable
                    },
                    Vec::new(),
                )
            }
            Op::Probe(more) => {
                let all: Vec<Locator> = std::iter::once(locator)
                    .chain(more.iter().copied())
                    .collect();
                let mut bitmap = vec![0u8; all.len().div_ceil(8)];
                for (i, l) in all.iter().enumerate() {
                    for node in self.replicas_of(l) {
                        match self.ask(&node, ReplicaOp::Probe, l.as_bytes()).await {
                            Some((ReplicaStatus::Ok, bits)) => {
                                if bits.first().is_some_and(|b| b & 0x80 != 0) {
                                    bitmap[i / 8] |= 0x80 >> (i % 8);
                                }
                                break;
                            }
                            _ => continue,
                        }
                    }
                }
                respond(Status::Ok, bitmap)
            }
        }
    }
}
