//! Prometheus metrics of the node and the `/metrics` endpoint.
//!
//! The endpoint is a few lines over a tokio listener rather than an HTTP
//! framework: it serves one read-only path, closes every connection after
//! one response, and reads at most a few kilobytes of request, so the
//! framework's features would only add attack surface and build time.

use std::time::Duration;

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use mtos_mixnode::engine::{Counters, DropReason};

/// Drops counted by the driver (before or after the engine).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverDrop {
    /// The sender's position may not send to this node.
    WrongLayer,
    /// The sender exceeded its token bucket.
    RateLimited,
    /// A client exceeded the rate the network document allows it (its
    /// gateway's per-client token bucket).
    ClientThrottled,
    /// The engine's inbound queue was full: this frame, or the newest of
    /// the peer with the longest queue, was dropped (`mtos_mixnode::fair`).
    Overloaded,
    /// A next hop's send queue was full.
    SendQueueFull,
    /// The next hop is not in the network document.
    UnknownNextHop,
    /// The link to the next hop broke while the frame was being sent.
    LinkFailed,
    /// Test-only fault injection (`[faults] drop_all`) dropped it.
    FaultInjected,
    /// A client without a session whose work was shown sent it to its
    /// gateway.
    NoSession,
}

impl DriverDrop {
    /// Every driver reason.
    pub const ALL: [DriverDrop; 9] = [
        DriverDrop::WrongLayer,
        DriverDrop::RateLimited,
        DriverDrop::ClientThrottled,
        DriverDrop::Overloaded,
        DriverDrop::SendQueueFull,
        DriverDrop::UnknownNextHop,
        DriverDrop::LinkFailed,
        DriverDrop::FaultInjected,
        DriverDrop::NoSession,
    ];

    /// Its label.
    pub fn name(self) -> &'static str {
        match self {
            DriverDrop::WrongLayer => "wrong_layer",
            DriverDrop::RateLimited => "rate_limited",
            DriverDrop::ClientThrottled => "client_throttled",
            DriverDrop::Overloaded => "overloaded",
            DriverDrop::SendQueueFull => "send_queue_full",
            DriverDrop::UnknownNextHop => "unknown_next_hop",
            DriverDrop::LinkFailed => "link_failed",
            DriverDrop::FaultInjected => "fault_injected",
            DriverDrop::NoSession => "no_session",
        }
    }
}

/// The node's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Frames read from links.
    pub frames_received: IntCounter,
    /// Frames sent to next hops.
    pub frames_forwarded: IntCounter,
    /// Payloads delivered at this final hop.
    pub frames_delivered: IntCounter,
    /// Drops by reason.
    pub frames_dropped: IntCounterVec,
    /// Replays caught.
    pub replays: IntCounter,
    /// Each held key's replay filter: tags it holds as a share of its
    /// capacity, by key (`previous`, `current`, `next`).
    pub replay_fill: GaugeVec,
    /// Each held key's predicted false-positive rate at its fill.
    pub replay_false_positive: GaugeVec,
    /// Packets held for mixing.
    pub queue_depth: IntGauge,
    /// Packets waiting for their replay tags to be committed.
    pub commit_queue_depth: IntGauge,
    /// Hold times.
    pub hold_time: Histogram,
    /// Open connections by the peer's role.
    pub connections: IntGaugeVec,
    /// Current epoch.
    pub epoch: IntGauge,
    /// Key rotations.
    pub key_rotations: IntCounter,
    /// Nodes in the current document.
    pub directory_nodes: IntGauge,
    /// Document fetches or uploads that failed.
    pub directory_failures: IntCounter,
    /// Tags restored into the filters at start.
    pub replay_tags_restored: IntCounter,
    /// Payloads for this gateway's mailboxes, by result.
    pub mailbox_messages: IntCounterVec,
    /// Payloads held in mailboxes.
    pub mailbox_held: IntGauge,
    /// Delivery frames sent to clients, by kind.
    pub client_deliveries: IntCounterVec,
    /// Connected client sessions.
    pub client_sessions: IntGauge,
    /// Client sessions refused, by reason (`connection`, `address`: the
    /// share held already; `permits`: the gateway has none left).
    pub client_sessions_refused: IntCounterVec,
    /// Records held (storage nodes).
    pub records_held: IntGauge,
    /// Bytes of records held.
    pub record_bytes: IntGauge,
    /// Record requests served, by operation and result.
    pub record_requests: IntCounterVec,
    /// Records evicted past the retention time.
    pub records_evicted: IntCounter,
    /// Records this node sent to new replicas, by result.
    pub repair_records: IntCounterVec,
    /// Bytes of records this node sent to new replicas.
    pub repair_bytes: IntCounter,
    /// Repair passes finished (one per change of the storage nodes).
    pub repair_passes: IntCounter,
    /// Client requests a service node handled, by operation and status.
    pub service_requests: IntCounterVec,
    /// How long a service node took to settle a request (taken to
    /// answered), by operation.
    pub service_seconds: HistogramVec,
    /// How long a replica took to answer a service node's ask (sent to
    /// answered, timeouts included), by replica operation.
    pub replica_ask_seconds: HistogramVec,
    /// A service node's chunk cache lookups, by result (hit, miss).
    pub service_cache: IntCounterVec,
    /// Chunks in a service node's cache.
    pub service_cache_chunks: IntGauge,
    /// This node's loops, by fate (sent, returned, lost).
    pub node_loops: IntCounterVec,
    /// Lost share of this node's recent loops.
    pub node_loop_loss: Gauge,
}

fn registered<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    c: prometheus::Result<C>,
) -> prometheus::Result<C> {
    let c = c?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

impl Metrics {
    /// Exports each held key's replay-filter fill and predicted
    /// false-positive rate (`mixing.md` §2).
    pub fn sync_replay<K>(&self, keys: &mtos_mixnode::keys::KeyRing<K>) {
        self.replay_fill.reset();
        self.replay_false_positive.reset();
        for slot in keys.slots() {
            let role = match slot.phase() {
                mtos_mixnode::keys::KeyPhase::Next => "next",
                mtos_mixnode::keys::KeyPhase::Current => "current",
                mtos_mixnode::keys::KeyPhase::Previous => "previous",
            };
            self.replay_fill.with_label_values(&[role]).set(slot.fill());
            self.replay_false_positive
                .with_label_values(&[role])
                .set(slot.filter.current_fp_rate());
        }
    }

    /// Registers every metric.
    pub fn new() -> prometheus::Result<Self> {
        let r = Registry::new();
        let m = Self {
            frames_received: registered(
                &r,
                IntCounter::new("mtos_frames_received_total", "Mix frames read from links."),
            )?,
            frames_forwarded: registered(
                &r,
                IntCounter::new(
                    "mtos_frames_forwarded_total",
                    "Mix frames released to a next hop.",
                ),
            )?,
            frames_delivered: registered(
                &r,
                IntCounter::new(
                    "mtos_frames_delivered_total",
                    "Payloads delivered at this node as the final hop.",
                ),
            )?,
            frames_dropped: registered(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "mtos_frames_dropped_total",
                        "Mix frames dropped, by reason.",
                    ),
                    &["reason"],
                ),
            )?,
            replays: registered(
                &r,
                IntCounter::new("mtos_replays_total", "Replayed packets caught."),
            )?,
            replay_fill: registered(
                &r,
                GaugeVec::new(
                    Opts::new(
                        "mtos_replay_fill_ratio",
                        "Tags in each key's replay filter as a share of its capacity (never above 1: beyond it packets are refused as key_cap).",
                    ),
                    &["key"],
                ),
            )?,
            replay_false_positive: registered(
                &r,
                GaugeVec::new(
                    Opts::new(
                        "mtos_replay_false_positive_ratio",
                        "Predicted false-positive rate of each key's replay filter at its fill (an honest packet dropped as a replay with this probability).",
                    ),
                    &["key"],
                ),
            )?,
            queue_depth: registered(
                &r,
                IntGauge::new("mtos_queue_depth_packets", "Packets held for mixing."),
            )?,
            commit_queue_depth: registered(
                &r,
                IntGauge::new(
                    "mtos_commit_queue_depth_packets",
                    "Released packets waiting for their replay tags to reach disk.",
                ),
            )?,
            hold_time: registered(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "mtos_hold_time_seconds",
                        "Time packets were held for mixing.",
                    )
                    .buckets(prometheus::exponential_buckets(0.001, 2.0, 15)?),
                ),
            )?,
            connections: registered(
                &r,
                IntGaugeVec::new(
                    Opts::new("mtos_connections", "Open connections, by the peer's role."),
                    &["role"],
                ),
            )?,
            epoch: registered(&r, IntGauge::new("mtos_epoch", "The current epoch."))?,
            key_rotations: registered(
                &r,
                IntCounter::new("mtos_key_rotations_total", "Sphinx key rotations."),
            )?,
            directory_nodes: registered(
                &r,
                IntGauge::new(
                    "mtos_directory_nodes",
                    "Nodes in the network document in use.",
                ),
            )?,
            directory_failures: registered(
                &r,
                IntCounter::new(
                    "mtos_directory_failures_total",
                    "Failed document fetches and descriptor uploads.",
                ),
            )?,
            replay_tags_restored: registered(
                &r,
                IntCounter::new(
                    "mtos_replay_tags_restored_total",
                    "Replay tags reloaded from disk at start.",
                ),
            )?,
            mailbox_messages: registered(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "mtos_mailbox_messages_total",
                        "Payloads for this gateway's mailboxes, by result (stored; displacing: stored in a full gateway in the place of the fullest mailbox's oldest; full, no_session, expired).",
                    ),
                    &["result"],
                ),
            )?,
            mailbox_held: registered(
                &r,
                IntGauge::new("mtos_mailbox_held_messages", "Payloads held in mailboxes."),
            )?,
            client_deliveries: registered(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "mtos_client_deliveries_total",
                        "Delivery frames sent to clients, by kind (real, dummy).",
                    ),
                    &["kind"],
                ),
            )?,
            client_sessions: registered(
                &r,
                IntGauge::new("mtos_client_sessions", "Connected client sessions."),
            )?,
            client_sessions_refused: registered(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "mtos_client_sessions_refused_total",
                        "Client sessions refused, by reason: connection (it holds 4), address (its source address holds limits.sessions_per_address), permits (limits.max_connections in all), work (no valid proof of work for this gateway, epoch and mailbox), capacity (the gateway serves as many clients as its keys admit packets for: limits.replay_capacity).",
                    ),
                    &["reason"],
                ),
            )?,
            records_held: registered(
                &r,
                IntGauge::new("mtos_records_held", "Records this storage node holds."),
            )?,
            record_bytes: registered(
                &r,
                IntGauge::new(
                    "mtos_record_bytes",
                    "Bytes of records this storage node holds.",
                ),
            )?,
            record_requests: registered(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "mtos_record_requests_total",
                        "Replica requests served, by operation (put, get, probe, have) and result (stored, duplicate, found, not_found, bad_request, error, or the refusal's reason).",
                    ),
                    &["op", "result"],
                ),
            )?,
            repair_records: registered(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "mtos_repair_records_total",
                        "Records this node offered to new replicas when the storage nodes changed, by result (sent, present, refused, failed).",
                    ),
                    &["result"],
                ),
            )?,
            repair_bytes: registered(
                &r,
                IntCounter::new(
                    "mtos_repair_bytes_total",
                    "Bytes of records this node sent to new replicas (repair traffic).",
                ),
            )?,
            repair_passes: registered(
                &r,
                IntCounter::new(
                    "mtos_repair_passes_total",
                    "Repair passes this storage node finished (one per change of the document's storage nodes).",
                ),
            )?,
            service_requests: registered(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "mtos_service_requests_total",
                        "Client requests this service node handled, by operation and status (ok, not_found, refused, unavailable, bad_request, queue_full).",
                    ),
                    &["op", "result"],
                ),
            )?,
            service_seconds: registered(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "mtos_service_seconds",
                        "Time this service node took to settle a client request (taken to answered), by operation.",
                    )
                    .buckets(prometheus::exponential_buckets(0.001, 2.0, 16)?),
                    &["op"],
                ),
            )?,
            replica_ask_seconds: registered(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "mtos_replica_ask_seconds",
                        "Time a replica took to answer this service node's ask (timeouts included), by replica operation.",
                    )
                    .buckets(prometheus::exponential_buckets(0.001, 2.0, 16)?),
                    &["op"],
                ),
            )?,
            service_cache: registered(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "mtos_service_cache_total",
                        "Chunk cache lookups of this service node, by result (hit, miss).",
                    ),
                    &["result"],
                ),
            )?,
            service_cache_chunks: registered(
                &r,
                IntGauge::new(
                    "mtos_service_cache_chunks",
                    "Chunks in this service node's cache.",
                ),
            )?,
            records_evicted: registered(
                &r,
                IntCounter::new(
                    "mtos_records_evicted_total",
                    "Records evicted (older than the retention time, store at its bound).",
                ),
            )?,
            node_loops: registered(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "mtos_node_loops_total",
                        "This node's loop cover packets, by fate (sent, returned, lost; unroutable: due but not sent, a position of the route having no node).",
                    ),
                    &["result"],
                ),
            )?,
            node_loop_loss: registered(
                &r,
                Gauge::new(
                    "mtos_node_loop_loss_ratio",
                    "Lost share of this node's last 100 resolved loops (above 0.5: packets are being dropped in the network).",
                ),
            )?,
            registry: r,
        };
        for reason in DropReason::ALL {
            m.frames_dropped.with_label_values(&[reason.name()]);
        }
        for reason in DriverDrop::ALL {
            m.frames_dropped.with_label_values(&[reason.name()]);
        }
        for result in ["sent", "returned", "lost", "unroutable"] {
            m.node_loops.with_label_values(&[result]);
        }
        for result in ["sent", "present", "refused", "failed"] {
            m.repair_records.with_label_values(&[result]);
        }
        for role in ["client", "gateway", "mix", "service", "authority"] {
            m.connections.with_label_values(&[role]);
        }
        Ok(m)
    }

    /// Counts a driver drop.
    pub fn driver_drop(&self, reason: DriverDrop) {
        self.frames_dropped
            .with_label_values(&[reason.name()])
            .inc();
    }

    /// Adds to the `labels` series of `counter` what a machine's
    /// cumulative count grew by since it was `before` (nothing, and no
    /// new series, when it did not grow).
    pub fn add_since(counter: &IntCounterVec, labels: &[&str], now: u64, before: u64) {
        if now > before {
            counter.with_label_values(labels).inc_by(now - before);
        }
    }

    /// Adds what the engine counted since `last` and remembers `now`.
    pub fn sync_engine(&self, last: &mut Counters, now: &Counters) {
        self.frames_received
            .inc_by(now.received.saturating_sub(last.received));
        self.frames_forwarded
            .inc_by(now.forwarded.saturating_sub(last.forwarded));
        self.frames_delivered
            .inc_by(now.delivered.saturating_sub(last.delivered));
        for reason in DropReason::ALL {
            let d = now.drops(reason).saturating_sub(last.drops(reason));
            if d > 0 {
                self.frames_dropped
                    .with_label_values(&[reason.name()])
                    .inc_by(d);
                if reason == DropReason::Replay {
                    self.replays.inc_by(d);
                }
            }
        }
        *last = now.clone();
    }

    /// The text exposition.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

/// Scrapes served at once; more connections wait in the listen backlog.
const MAX_SCRAPES: usize = 16;

/// Serves `GET /metrics` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Metrics) {
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_SCRAPES));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let mut socket = match listener.accept().await {
            Ok((socket, _)) => socket,
            Err(_) => {
                // Out of file descriptors, say: wait instead of spinning.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let respond = async {
                let mut buf = vec![0u8; 4096];
                let mut len = 0;
                while len < buf.len() {
                    let n = socket.read(&mut buf[len..]).await?;
                    if n == 0 {
                        break;
                    }
                    len += n;
                    if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let request = &buf[..len];
                let (status, body, kind) = if request.starts_with(b"GET /metrics ")
                    || request.starts_with(b"GET /metrics?")
                {
                    (
                        "200 OK",
                        metrics.render(),
                        "text/plain; version=0.0.4; charset=utf-8",
                    )
                } else {
                    ("404 Not Found", b"try /metrics\n".to_vec(), "text/plain")
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                socket.write_all(head.as_bytes()).await?;
                socket.write_all(&body).await?;
                socket.shutdown().await
            };
            let _ = tokio::time::timeout(Duration::from_secs(5), respond).await;
        });
    }
}
