//! `mtos-node run`: the tokio driver around [`MixEngine`].
//!
//! Tasks: the swarm (connections, identify, ping, dialling), one reader
//! per inbound mix stream (admission, token bucket, then a bounded queue
//! to the engine), one writer per next hop (a bounded send queue), the
//! directory loop (descriptor upload, document fetch), the metrics
//! endpoint, the replay group-commit thread, and the engine loop, which
//! alone owns the engine: timers from `poll_timeout`, sends from
//! `poll_transmit`, and a packet leaves only once its replay tag is on
//! disk.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId};
use mtos_crypto::sphinx::FRAME_SIZE;
use mtos_crypto::{Identity, VerifyKey};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::{mpsc, watch};

use super::metrics::{DriverDrop, Metrics};
use super::net::{self, DIR_GET_DOCUMENT, DIR_PUT_DESCRIPTOR, MIX_PROTOCOL};
use super::replaydb::{ReplayDb, TagBatch};
use super::{NodeError, keystore::KeyStore, unix_now};
use crate::admission::{Position, TokenBucket, accepts};
use crate::config::{CLIENT_RATE_FACTOR, NodeConfig, Role};
use crate::directory::{
    Descriptor, NetworkDocument, NodeEntry, SphinxKeyEntry, Topology, Trust, VERSION, peer_id_of,
};
use crate::engine::{Counters, Event, Link, MixEngine, Transmit};
use crate::keys::{EpochKey, KeyRing, ReplaySizing};
use crate::mailbox::{Mailboxes, Stored, encode_delivery};
use crate::time::Instant;

/// Frames waiting for the engine, from all links together.
const INBOUND_QUEUE: usize = 4_096;
/// Frames waiting for one next hop.
const SEND_QUEUE: usize = 1_024;
/// Frames the engine loop takes per wake-up before it looks at timers.
const BATCH: usize = 256;
/// Replay false-positive target per key.
const REPLAY_FP_RATE: f64 = 1e-6;

/// The shared view of the current network document.
type SharedTopology = watch::Receiver<Option<Arc<Topology>>>;

/// Everything the node needs from its config directory, loaded and
/// checked before anything listens.
struct Loaded {
    identity: Identity,
    trust: Trust,
    authority: PeerId,
    authority_addr: Multiaddr,
    p2p: Multiaddr,
    announce: Vec<Multiaddr>,
    keystore: KeyStore,
    replay: ReplayDb,
}

fn load(config: &NodeConfig, base: &Path) -> Result<Loaded, NodeError> {
    let keys = base.join(&config.node.keys);
    let identity = super::load_identity(&keys.join("identity.key"))?;
    let authority_hex = config.network.authority.trim().to_ascii_lowercase();
    if authority_hex.is_empty() {
        return Err(NodeError::Config(
            "network.authority is empty: paste the authority's public key (mtos-node authority init prints it)"
                .into(),
        ));
    }
    let authority_key = data_encoding::HEXLOWER
        .decode(authority_hex.as_bytes())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .and_then(|b| VerifyKey::from_bytes(b).ok())
        .ok_or_else(|| NodeError::Config("network.authority: not an ed25519 public key".into()))?;
    let authority = peer_id_of(authority_key.as_bytes())
        .map_err(|e| NodeError::Config(format!("network.authority: {e}")))?;
    let authority_addr: Multiaddr =
        config.network.authority_addr.parse().map_err(|e| {
            NodeError::Config(format!("network.authority_addr: not a multiaddr: {e}"))
        })?;
    let p2p: Multiaddr = config
        .listen
        .p2p
        .parse()
        .map_err(|e| NodeError::Config(format!("listen.p2p: not a multiaddr: {e}")))?;
    let announce = config
        .listen
        .announce
        .iter()
        .map(|a| a.parse::<Multiaddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| NodeError::Config(format!("listen.announce: not a multiaddr: {e}")))?;
    let keystore = KeyStore::open(keys.join("sphinx"))?;
    let data = base.join(&config.node.data);
    std::fs::create_dir_all(&data).map_err(|source| NodeError::Io {
        path: data.clone(),
        source,
    })?;
    let replay = ReplayDb::open(&data.join("replay"))?;
    Ok(Loaded {
        identity,
        trust: Trust {
            network: config.network.id.clone(),
            authorities: vec![authority_key],
            threshold: 1,
        },
        authority,
        authority_addr,
        p2p,
        announce,
        keystore,
        replay,
    })
}

fn my_position(config: &NodeConfig) -> Position {
    match (config.node.role, config.node.layer) {
        (Role::Gateway, _) => Position::Gateway,
        (Role::Service, _) => Position::Service,
        (Role::Mix, l) => Position::Layer(l.unwrap_or(0)),
    }
}

fn role_label(position: Position) -> &'static str {
    match position {
        Position::Client => "client",
        Position::Gateway => "gateway",
        Position::Layer(_) => "mix",
        Position::Service => "service",
    }
}

/// The test-only fault switch: with `MTOS_FAULT_DROP_ALL=1` in its
/// environment a node drops every frame it reads (counted as
/// `fault_injected`), as a node mounting a blocking attack would. Tests
/// use it to check that loop cover notices; it is announced loudly.
fn fault_drop_all() -> bool {
    let on = std::env::var_os("MTOS_FAULT_DROP_ALL").is_some_and(|v| v == "1");
    if on {
        tracing::warn!("MTOS_FAULT_DROP_ALL=1: this node drops every frame (test fault injection)");
    }
    on
}

/// Commands to the swarm task.
enum SwarmCommand {
    /// Learn the addresses of the document's nodes.
    Addresses(Vec<(PeerId, Vec<Multiaddr>)>),
    /// Connect to a peer at these addresses (a no-op when connected or
    /// dialling).
    Dial(PeerId, Vec<Multiaddr>),
}

/// Runs the node until `shutdown` resolves.
pub async fn run(
    config: NodeConfig,
    base: &Path,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeError> {
    let loaded = load(&config, base)?;
    let metrics = Metrics::new()?;
    let metrics_listener = tokio::net::TcpListener::bind(&config.listen.metrics)
        .await
        .map_err(|e| NodeError::Listen {
            field: "listen.metrics",
            addr: config.listen.metrics.clone(),
            reason: e.to_string(),
        })?;
    let mut swarm = net::build_swarm(
        crate::directory::libp2p_keypair(&loaded.identity),
        config.limits.max_connections,
    )?;
    swarm
        .listen_on(loaded.p2p.clone())
        .map_err(|e| NodeError::Listen {
            field: "listen.p2p",
            addr: config.listen.p2p.clone(),
            reason: listen_reason(&e),
        })?;
    swarm.add_peer_address(loaded.authority, loaded.authority_addr.clone());
    let mut control = swarm.behaviour().stream.new_control();
    let incoming = control
        .accept(MIX_PROTOCOL)
        .map_err(|_| NodeError::Config("mix protocol registered twice".into()))?;
    let clients = match config.node.role {
        Role::Gateway => Some(
            control
                .accept(net::CLIENT_PROTOCOL)
                .map_err(|_| NodeError::Config("client protocol registered twice".into()))?,
        ),
        _ => None,
    };
    // A storage node serves replica requests from service nodes.
    let store = match config.node.storage {
        true => {
            let db = super::records::RecordDb::open(
                &base.join(&config.node.data).join("records"),
                crate::records::Retention {
                    min_age_secs: config.storage.retention_secs,
                    max_bytes: config.storage.max_bytes,
                },
            )?;
            metrics.records_held.set(db.records() as i64);
            metrics.record_bytes.set(db.bytes() as i64);
            let incoming = control
                .accept(super::store::STORE_PROTOCOL)
                .map_err(|_| NodeError::Config("store protocol registered twice".into()))?;
            Some((incoming, Arc::new(Mutex::new(db))))
        }
        false => None,
    };
    let local_store = store.as_ref().map(|(_, db)| db.clone());

    let position = my_position(&config);
    tracing::info!(
        peer = %swarm.local_peer_id(),
        role = role_label(position),
        layer = ?config.node.layer,
        network = %config.network.id,
        "mtos-node starting"
    );
    tokio::spawn(super::metrics::serve(metrics_listener, metrics.clone()));

    let (topology_tx, topology_rx) = watch::channel::<Option<Arc<Topology>>>(None);
    if let Some((incoming, db)) = store {
        tokio::spawn(super::store::serve(
            incoming,
            db,
            topology_rx.clone(),
            metrics.clone(),
            super::store::PutQuota {
                rate: f64::from(config.storage.puts_per_service),
                burst: f64::from(config.storage.put_burst),
            },
        ));
    }
    let (listen_tx, listen_rx) = watch::channel::<Vec<Multiaddr>>(Vec::new());
    let (command_tx, command_rx) = mpsc::channel::<SwarmCommand>(16);
    let buckets: Buckets = Arc::default();
    let origin = tokio::time::Instant::now();
    tokio::spawn(swarm_task(SwarmTask {
        swarm,
        commands: command_rx,
        topology: topology_rx.clone(),
        listen: listen_tx,
        metrics: metrics.clone(),
        buckets: buckets.clone(),
        authority: loaded.authority,
        log_clients: config.log.client_addresses,
    }));

    let mut shutdown = std::pin::pin!(shutdown);
    // The first document gives the epoch schedule the keys follow.
    let first = tokio::select! {
        d = fetch_until_ok(&mut control, &loaded, &metrics) => d,
        () = &mut shutdown => return Ok(()),
    };
    let schedule = first.schedule;
    let epoch = schedule.epoch_at(unix_now());
    let mut rng = StdRng::from_rng(&mut rand::rng());
    let ring = initial_ring(&loaded, &config, epoch, &mut rng, &metrics)?;
    let mut engine: MixEngine =
        MixEngine::new(first.mixing.engine_config(config.limits.queue_limit), ring);
    engine.enable_records();
    metrics.epoch.set(i64::from(epoch));

    // The first document is in use before any frame is read.
    metrics.directory_nodes.set(first.nodes.len() as i64);
    topology_tx.send_replace(Some(Arc::new(Topology::new(first.clone()))));
    let (frames_tx, frames_rx) = mpsc::channel::<Vec<u8>>(INBOUND_QUEUE);
    tokio::spawn(accept_task(
        incoming,
        Inbound {
            frames: frames_tx,
            topology: topology_rx.clone(),
            metrics: metrics.clone(),
            buckets,
            origin,
            me: position,
            rate: f64::from(config.limits.peer_rate_pps),
            client_burst: f64::from(config.limits.client_burst),
            drop_all: fault_drop_all(),
            streams: Mutex::default(),
        },
    ));
    let mailboxes = clients.map(|incoming| {
        let mailboxes = Arc::new(Mutex::new(Mailboxes::new(MAILBOX_LIMIT, MAILBOXES_LIMIT)));
        tokio::spawn(client_task(
            incoming,
            ClientSessions {
                mailboxes: mailboxes.clone(),
                topology: topology_rx.clone(),
                metrics: metrics.clone(),
                permits: Arc::new(tokio::sync::Semaphore::new(
                    config.limits.max_connections as usize,
                )),
            },
        ));
        tokio::spawn(expire_mailboxes(mailboxes.clone(), metrics.clone()));
        mailboxes
    });
    let (descriptor_tx, descriptor_rx) = watch::channel(Vec::new());
    let directory = DirectoryLoop {
        control: control.clone(),
        authority: loaded.authority,
        trust: loaded.trust.clone(),
        descriptor: descriptor_rx,
        topology: topology_tx,
        commands: command_tx.clone(),
        metrics: metrics.clone(),
        me: *loaded.identity.verify_key().as_bytes(),
    };
    tokio::spawn(directory.run(first));

    let writer = loaded.replay.clone().spawn_writer(64)?;
    let my_key = *loaded.identity.verify_key().as_bytes();
    let loop_tracker = Arc::new(Mutex::new(super::loops::LoopTracker::default()));
    let (loops_tx, loops_rx) = mpsc::channel::<Transmit>(64);
    // A storage node copies records to new replicas when the storage
    // nodes change (`storage.md` §1).
    if let Some(db) = &local_store {
        tokio::spawn(
            super::repair::Repairer {
                db: db.clone(),
                topology: topology_rx.clone(),
                control: control.clone(),
                metrics: metrics.clone(),
                me: my_key,
                per_sec: config.storage.repair_per_sec,
            }
            .run(),
        );
    }
    // A service node answers client requests (`storage.md` §4).
    let service = (config.node.role == Role::Service).then(|| {
        let (tx, rx) = mpsc::channel(super::service_node::REQUEST_QUEUE);
        tokio::spawn(
            super::service_node::ServiceNode {
                requests: rx,
                control: control.clone(),
                topology: topology_rx.clone(),
                out: loops_tx.clone(),
                metrics: metrics.clone(),
                local: local_store.clone(),
                me: my_key,
                cache: Arc::new(Mutex::new(crate::cache::ChunkCache::new(
                    config.storage.cache_chunks,
                ))),
            }
            .run(),
        );
        tx
    });
    tokio::spawn(super::loops::run(
        my_key,
        topology_rx.clone(),
        loops_tx,
        loop_tracker.clone(),
        metrics.clone(),
    ));
    let mut driver = EngineLoop {
        engine,
        rng,
        origin,
        metrics,
        last: Counters::default(),
        journal: writer.batches,
        committed: writer.committed,
        accepted: 0,
        gated: std::collections::VecDeque::new(),
        gated_limit: config.limits.queue_limit,
        topology: topology_rx,
        outbound: HashMap::new(),
        control,
        commands: command_tx,
        schedule,
        keystore: loaded.keystore.clone(),
        replay: loaded.replay.clone(),
        identity: loaded.identity,
        descriptor: descriptor_tx,
        listen: listen_rx,
        config: config.clone(),
        announce: loaded.announce.clone(),
        rotation_retry: None,
        mailboxes,
        loop_tracker,
        me: my_key,
        service,
    };
    driver.publish_descriptor().await;
    let outcome = driver.run(frames_rx, loops_rx, shutdown).await;
    // Close the replay database in order: the commit thread finishes its
    // last batch and exits, then the last handle is dropped.
    drop(driver);
    let thread = writer.thread;
    // Bounded: a commit retrying against a failing disk must not hold
    // the exit forever (its packets never left).
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::task::spawn_blocking(move || thread.join()),
    )
    .await;
    drop(loaded.replay);
    tracing::info!("mtos-node stopped");
    outcome
}

/// Why a listener could not be opened, in an operator's words.
pub(super) fn listen_reason<E: std::fmt::Debug + std::fmt::Display>(
    e: &libp2p::TransportError<E>,
) -> String {
    match e {
        libp2p::TransportError::MultiaddrNotSupported(a) => format!("unsupported address {a}"),
        libp2p::TransportError::Other(inner) => {
            let text = inner.to_string();
            let debug = format!("{inner:?}");
            if debug.contains("AddrInUse") || text.contains("in use") {
                "address already in use".to_owned()
            } else {
                text
            }
        }
    }
}

/// Fetches and verifies documents until one passes.
async fn fetch_until_ok(
    control: &mut libp2p_stream::Control,
    loaded: &Loaded,
    metrics: &Metrics,
) -> NetworkDocument {
    let mut backoff = Duration::from_millis(200);
    loop {
        match fetch_document(control, loaded.authority, &loaded.trust).await {
            Ok(d) => return d,
            Err(e) => {
                metrics.directory_failures.inc();
                tracing::warn!(error = %e, "network document unavailable; retrying");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// Fetches the authority's current document and verifies it.
pub async fn fetch_document(
    control: &mut libp2p_stream::Control,
    authority: PeerId,
    trust: &Trust,
) -> Result<NetworkDocument, String> {
    let bytes = net::directory_request_retrying(
        control,
        authority,
        DIR_GET_DOCUMENT,
        &[],
        Duration::from_secs(10),
    )
    .await?;
    NetworkDocument::verify(&bytes, trust, unix_now()).map_err(|e| e.to_string())
}

/// The key ring at start: the previous epoch's key if it is still on
/// disk, the current and next keys (loaded or made), older keys erased,
/// and every filter rebuilt from the stored tags.
fn initial_ring(
    loaded: &Loaded,
    config: &NodeConfig,
    epoch: u32,
    rng: &mut StdRng,
    metrics: &Metrics,
) -> Result<KeyRing, NodeError> {
    let keep_from = epoch.saturating_sub(1);
    for e in loaded.keystore.erase_before(keep_from)? {
        tracing::info!(epoch = e, "erased an expired Sphinx key");
    }
    loaded.replay.erase_before(keep_from)?;
    let sizing = ReplaySizing {
        expected_per_key: config.limits.replay_capacity,
        fp_rate: REPLAY_FP_RATE,
    };
    let current = EpochKey {
        epoch,
        secret: loaded.keystore.load_or_generate(epoch, rng)?,
    };
    let mut ring = match loaded.keystore.load(keep_from)?.filter(|_| epoch > 0) {
        Some(previous) => {
            let mut ring = KeyRing::new(
                EpochKey {
                    epoch: keep_from,
                    secret: previous,
                },
                sizing,
            );
            ring.install_next(current);
            ring.rotate();
            ring
        }
        None => KeyRing::new(current, sizing),
    };
    let next = epoch.saturating_add(1);
    ring.install_next(EpochKey {
        epoch: next,
        secret: loaded.keystore.load_or_generate(next, rng)?,
    });
    let mut restored = 0u64;
    for slot in ring.slots_mut() {
        loaded.replay.for_each_tag(slot.epoch, |tag| {
            let _ = slot.filter.check_and_insert(&tag);
            restored += 1;
        })?;
    }
    metrics.replay_tags_restored.inc_by(restored);
    tracing::info!(epoch, restored, "Sphinx keys ready, replay filters rebuilt");
    Ok(ring)
}

struct SwarmTask {
    swarm: libp2p::Swarm<net::Behaviour>,
    commands: mpsc::Receiver<SwarmCommand>,
    topology: SharedTopology,
    listen: watch::Sender<Vec<Multiaddr>>,
    metrics: Metrics,
    buckets: Buckets,
    authority: PeerId,
    log_clients: bool,
}

async fn swarm_task(mut t: SwarmTask) {
    // The role each connected peer was counted under.
    let mut counted: HashMap<PeerId, &'static str> = HashMap::new();
    loop {
        tokio::select! {
            command = t.commands.recv() => match command {
                Some(SwarmCommand::Addresses(list)) => {
                    for (peer, addrs) in list {
                        for a in addrs {
                            t.swarm.add_peer_address(peer, a);
                        }
                    }
                }
                Some(SwarmCommand::Dial(peer, addrs)) => {
                    let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                        .addresses(addrs)
                        .condition(libp2p::swarm::dial_opts::PeerCondition::DisconnectedAndNotDialing)
                        .build();
                    if let Err(e) = t.swarm.dial(opts) {
                        tracing::debug!(%peer, error = %e, "dial refused");
                    }
                }
                None => return,
            },
            event = t.swarm.select_next_some() => match event {
                SwarmEvent::NewListenAddr { address, .. } => {
                    tracing::info!(%address, "listening");
                    t.listen.send_modify(|l| l.push(address));
                }
                SwarmEvent::ConnectionEstablished { peer_id, num_established, .. }
                    if num_established.get() == 1 =>
                {
                        let role = if peer_id == t.authority {
                            "authority"
                        } else {
                            t.topology
                                .borrow()
                                .as_ref()
                                .map_or("client", |topo| role_label(topo.position_of(&peer_id)))
                        };
                        t.metrics.connections.with_label_values(&[role]).inc();
                        counted.insert(peer_id, role);
                        // Links to other nodes are the operator's to see;
                        // a client's identity is logged only when the
                        // operator opted in to client addresses.
                        if role != "client" || t.log_clients {
                            tracing::info!(peer = %peer_id, role, "connected");
                        }
                }
                SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                    if let Some(role) = counted.remove(&peer_id) {
                        t.metrics.connections.with_label_values(&[role]).dec();
                    }
                    if let Ok(mut b) = t.buckets.lock() {
                        b.remove(&peer_id);
                    }
                }
                SwarmEvent::ListenerError { error, .. } => {
                    tracing::warn!(%error, "listener error");
                }
                _ => {}
            },
        }
    }
}

/// Per-peer token buckets, each marked with whether it was made for a
/// client (whose rate comes from the document) or a node.
type Buckets = Arc<Mutex<HashMap<PeerId, (bool, TokenBucket)>>>;

struct Inbound {
    frames: mpsc::Sender<Vec<u8>>,
    topology: SharedTopology,
    metrics: Metrics,
    buckets: Buckets,
    origin: tokio::time::Instant,
    me: Position,
    rate: f64,
    /// Depth of a client's token bucket (its rate comes from the document).
    client_burst: f64,
    /// Test-only fault: drop every frame (see [`fault_drop_all`]).
    drop_all: bool,
    /// Open inbound mix streams per peer.
    streams: Mutex<HashMap<PeerId, usize>>,
}

/// Holds one of a peer's inbound stream slots while its reader runs.
struct StreamSlot {
    peer: PeerId,
    inbound: Arc<Inbound>,
}

impl StreamSlot {
    fn take(peer: PeerId, inbound: &Arc<Inbound>) -> Option<Self> {
        let mut streams = inbound.streams.lock().ok()?;
        let open = streams.entry(peer).or_insert(0);
        if *open >= STREAMS_PER_PEER {
            return None;
        }
        *open += 1;
        Some(Self {
            peer,
            inbound: inbound.clone(),
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        if let Ok(mut streams) = self.inbound.streams.lock()
            && let Some(open) = streams.get_mut(&self.peer)
        {
            *open = open.saturating_sub(1);
            if *open == 0 {
                streams.remove(&self.peer);
            }
        }
    }
}

async fn accept_task(mut incoming: libp2p_stream::IncomingStreams, inbound: Inbound) {
    let inbound = Arc::new(inbound);
    while let Some((peer, stream)) = incoming.next().await {
        // A peer needs one stream (two while one is being replaced); more
        // would only multiply buffers and tasks. Dropping the stream
        // resets it, so its sender never gets the ready byte.
        if let Some(slot) = StreamSlot::take(peer, &inbound) {
            tokio::spawn(read_frames(stream, slot));
        }
    }
}

/// Reads fixed-size frames from one stream until it ends. Each frame is
/// admitted (the sender's layer, its token bucket) before it is queued
/// for the engine; every refusal is counted.
async fn read_frames(mut stream: libp2p::Stream, slot: StreamSlot) {
    let (peer, inbound) = (slot.peer, slot.inbound.clone());
    if stream.write_all(&[net::MIX_READY]).await.is_err() || stream.flush().await.is_err() {
        return;
    }
    let mut buf = vec![0u8; FRAME_SIZE];
    loop {
        let mut got = 0;
        while got < FRAME_SIZE {
            match stream.read(&mut buf[got..]).await {
                Ok(0) | Err(_) => {
                    if got > 0 {
                        inbound.metrics.frames_received.inc();
                        inbound
                            .metrics
                            .frames_dropped
                            .with_label_values(&[crate::engine::DropReason::WrongSize.name()])
                            .inc();
                    }
                    return;
                }
                Ok(n) => got += n,
            }
        }
        let (sender, layers, client_rate) = match inbound.topology.borrow().as_ref() {
            Some(t) => {
                let r = &t.document.rates;
                (
                    t.position_of(&peer),
                    t.document.layers,
                    CLIENT_RATE_FACTOR * (r.payload + r.loops + r.drops),
                )
            }
            None => (Position::Client, 0, 0.0),
        };
        let refuse = |reason| {
            inbound.metrics.frames_received.inc();
            inbound.metrics.driver_drop(reason);
        };
        if inbound.drop_all {
            refuse(DriverDrop::FaultInjected);
            continue;
        }
        if !accepts(inbound.me, sender, layers) {
            // Counted, and the stream closed: this peer has no business
            // sending here.
            refuse(DriverDrop::WrongLayer);
            return;
        }
        let now = Instant::ZERO + inbound.origin.elapsed();
        // Nodes get the operator's per-peer rate; a client gets twice the
        // rate its cover schedule sends at (the per-client limit of
        // `client.md` §6), so one client cannot take more than its share.
        let (rate, burst, reason) = if sender == Position::Client {
            (
                client_rate,
                inbound.client_burst,
                DriverDrop::ClientThrottled,
            )
        } else {
            (
                inbound.rate,
                (inbound.rate / 4.0).max(64.0),
                DriverDrop::RateLimited,
            )
        };
        // A peer's bucket follows its current position: a node that was
        // not yet in this node's document counted as a client, and must
        // get a node's bucket once it is.
        let as_client = sender == Position::Client;
        let admitted = inbound.buckets.lock().is_ok_and(|mut b| {
            let entry = b
                .entry(peer)
                .or_insert_with(|| (as_client, TokenBucket::new(now, rate, burst)));
            if entry.0 != as_client {
                *entry = (as_client, TokenBucket::new(now, rate, burst));
            }
            entry.1.try_take(now)
        });
        if !admitted {
            refuse(reason);
            continue;
        }
        match inbound.frames.try_send(buf.clone()) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => refuse(DriverDrop::Overloaded),
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}

/// How long a writer with nothing to send keeps its link; the engine loop
/// starts a new writer when frames for that hop come again.
const WRITER_IDLE: Duration = Duration::from_secs(300);
/// Longest one write may block before the link counts as dead (a next hop
/// that stops reading must not hold frames forever).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Inbound mix streams one peer may hold open at once.
const STREAMS_PER_PEER: usize = 2;

/// Sends queued frames to one next hop. It connects only while it has a
/// frame to send, reconnects with backoff when the link fails (the frame
/// being written is lost and counted), and ends after [`WRITER_IDLE`].
async fn write_frames(
    peer: PeerId,
    mut control: libp2p_stream::Control,
    commands: mpsc::Sender<SwarmCommand>,
    topology: SharedTopology,
    mut frames: mpsc::Receiver<Vec<u8>>,
    metrics: Metrics,
) {
    let mut pending: Option<Vec<u8>> = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        if pending.is_none() {
            match tokio::time::timeout(WRITER_IDLE, frames.recv()).await {
                Ok(Some(frame)) => pending = Some(frame),
                Ok(None) | Err(_) => return,
            }
        }
        let addrs = topology
            .borrow()
            .as_ref()
            .and_then(|t| t.node_by_peer(&peer))
            .map(NodeEntry::multiaddrs)
            .unwrap_or_default();
        if commands
            .send(SwarmCommand::Dial(peer, addrs))
            .await
            .is_err()
        {
            return;
        }
        let mut stream = match net::open_mix_stream(&mut control, peer).await {
            Ok(s) => {
                backoff = Duration::from_millis(100);
                s
            }
            Err(e) => {
                tracing::debug!(%peer, error = %e, "cannot open a mix stream; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        loop {
            let frame = match pending.take() {
                Some(f) => f,
                None => match tokio::time::timeout(WRITER_IDLE, frames.recv()).await {
                    Ok(Some(f)) => f,
                    Ok(None) | Err(_) => {
                        let _ = stream.close().await;
                        return;
                    }
                },
            };
            let more = !frames.is_empty();
            let write = async {
                stream.write_all(&frame).await?;
                if !more {
                    stream.flush().await?;
                }
                Ok::<(), std::io::Error>(())
            };
            let failure = match tokio::time::timeout(WRITE_TIMEOUT, write).await {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e.to_string(),
                Err(_) => "write timed out".to_owned(),
            };
            metrics.driver_drop(DriverDrop::LinkFailed);
            tracing::info!(%peer, error = %failure, "mix link broke; reconnecting");
            break;
        }
    }
}

/// Payloads one mailbox holds.
const MAILBOX_LIMIT: usize = 1_000;
/// Payloads all of a gateway's mailboxes hold (about 82 MiB at 4,113
/// bytes each).
const MAILBOXES_LIMIT: usize = 20_000;

struct ClientSessions {
    mailboxes: Arc<Mutex<Mailboxes>>,
    topology: SharedTopology,
    metrics: Metrics,
    permits: Arc<tokio::sync::Semaphore>,
}

async fn client_task(mut incoming: libp2p_stream::IncomingStreams, sessions: ClientSessions) {
    let sessions = Arc::new(sessions);
    while let Some((_peer, stream)) = incoming.next().await {
        // Never the peer in logs: it is a client.
        if let Ok(permit) = sessions.permits.clone().try_acquire_owned() {
            tokio::spawn(serve_client(stream, sessions.clone(), permit));
        }
    }
}

/// Drops, once a minute, mailboxes whose last session closed more than
/// [`crate::mailbox::MAILBOX_KEEP_SECS`] ago, with what they held.
async fn expire_mailboxes(mailboxes: Arc<Mutex<Mailboxes>>, metrics: Metrics) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        let Ok(mut m) = mailboxes.lock() else { return };
        let dropped = m.expire(super::unix_now());
        metrics
            .mailbox_messages
            .with_label_values(&["expired"])
            .inc_by(dropped as u64);
        metrics.mailbox_held.set(m.held() as i64);
    }
}

/// One client session: the client names its mailbox by the secret the id
/// derives from, then gets one delivery frame per exponential gap of mean
/// 1/λP, a stored payload when there is one and a dummy otherwise, so the
/// link shows the same traffic whether or not replies arrive.
async fn serve_client(
    mut stream: libp2p::Stream,
    sessions: Arc<ClientSessions>,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    let mut secret = zeroize::Zeroizing::new([0u8; 32]);
    match tokio::time::timeout(net::MIX_READY_TIMEOUT, stream.read_exact(secret.as_mut())).await {
        Ok(Ok(())) => {}
        _ => return,
    }
    let mailbox = mtos_crypto::envelope::mailbox_id(&secret);
    drop(secret);
    let metrics = &sessions.metrics;
    // Only opened mailboxes take payloads (`client.md` §3).
    if !sessions
        .mailboxes
        .lock()
        .is_ok_and(|mut m| m.open(mailbox, super::unix_now()))
    {
        return;
    }
    metrics.client_sessions.inc();
    let mut rng = StdRng::from_rng(&mut rand::rng());
    let mut next = tokio::time::Instant::now();
    loop {
        let rate = sessions
            .topology
            .borrow()
            .as_ref()
            .map_or(1.0, |t| t.document.rates.payload);
        let mean = Duration::from_secs_f64(1.0 / rate.clamp(0.01, 10_000.0));
        next += mtos_crypto::sphinx::sample_exponential(&mut rng, mean);
        tokio::time::sleep_until(next).await;
        let stored = sessions.mailboxes.lock().ok().and_then(|mut m| {
            let stored = m.pop(&mailbox);
            metrics.mailbox_held.set(m.held() as i64);
            stored
        });
        let frame = encode_delivery(stored.as_ref());
        let write = async {
            stream.write_all(&frame).await?;
            stream.flush().await
        };
        if !matches!(tokio::time::timeout(WRITE_TIMEOUT, write).await, Ok(Ok(()))) {
            // The client went away: its payload waits for the next session.
            if let (Some(s), Ok(mut m)) = (stored, sessions.mailboxes.lock()) {
                m.push(mailbox, s);
            }
            break;
        }
        let kind = if stored.is_some() { "real" } else { "dummy" };
        metrics.client_deliveries.with_label_values(&[kind]).inc();
    }
    if let Ok(mut m) = sessions.mailboxes.lock() {
        m.close(&mailbox, super::unix_now());
    }
    metrics.client_sessions.dec();
}

/// Keeps the node's descriptor at the authority and its document fresh.
struct DirectoryLoop {
    control: libp2p_stream::Control,
    authority: PeerId,
    trust: Trust,
    descriptor: watch::Receiver<Vec<u8>>,
    topology: watch::Sender<Option<Arc<Topology>>>,
    commands: mpsc::Sender<SwarmCommand>,
    metrics: Metrics,
    me: [u8; 32],
}

impl DirectoryLoop {
    async fn run(mut self, first: NetworkDocument) {
        self.install(first).await;
        let mut uploaded: Vec<u8> = Vec::new();
        let mut uploaded_at: Option<tokio::time::Instant> = None;
        loop {
            let current = self.descriptor.borrow_and_update().clone();
            let (listed, heartbeat) = match self.topology.borrow().as_ref() {
                Some(t) => (
                    t.document.nodes.iter().any(|n| n.key == self.me),
                    Duration::from_secs(t.document.schedule.heartbeat_secs.max(1)),
                ),
                None => (false, Duration::ZERO),
            };
            // The heartbeat: the same descriptor again, so the authority
            // keeps listing this node (`specs/directory.md` §3).
            let due = uploaded_at.is_none_or(|at| at.elapsed() >= heartbeat);
            if !current.is_empty() && (current != uploaded || !listed || due) {
                match net::directory_request_retrying(
                    &mut self.control,
                    self.authority,
                    DIR_PUT_DESCRIPTOR,
                    &current,
                    Duration::from_secs(10),
                )
                .await
                {
                    Ok(_) => {
                        uploaded = current;
                        uploaded_at = Some(tokio::time::Instant::now());
                    }
                    Err(e) => {
                        self.metrics.directory_failures.inc();
                        tracing::warn!(error = %e, "descriptor upload failed");
                    }
                }
            }
            match fetch_document(&mut self.control, self.authority, &self.trust).await {
                Ok(doc) => self.install(doc).await,
                Err(e) => {
                    self.metrics.directory_failures.inc();
                    tracing::warn!(error = %e, "document fetch failed");
                }
            }
            let (listed, schedule) = match self.topology.borrow().as_ref() {
                Some(t) => (
                    t.document.nodes.iter().any(|n| n.key == self.me),
                    Some(t.document.schedule),
                ),
                None => (false, None),
            };
            // Quickly until the node is listed, then often enough that
            // nodes joining within an epoch are soon reachable and the
            // heartbeat is never late.
            let pause = if let (true, Some(schedule)) = (listed, schedule) {
                Duration::from_secs(
                    (schedule.epoch_secs / 60)
                        .clamp(1, 30)
                        .min(schedule.heartbeat_secs.max(1)),
                )
            } else {
                Duration::from_millis(500)
            };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                changed = self.descriptor.changed() => if changed.is_err() { return },
            }
        }
    }

    async fn install(&mut self, doc: NetworkDocument) {
        // Every time: the address book is a bounded cache that identify
        // reports from clients can push document nodes out of.
        let addresses = doc
            .nodes
            .iter()
            .filter_map(|n| n.peer().ok().map(|p| (p, n.multiaddrs())))
            .collect();
        let _ = self.commands.send(SwarmCommand::Addresses(addresses)).await;
        let current = self
            .topology
            .borrow()
            .as_ref()
            // Compared whole: a restarted authority counts serials from 1.
            .map(|t| (t.document.epoch, t.document == doc));
        match current {
            Some((_, true)) => return,
            Some((epoch, false)) if doc.epoch < epoch => {
                tracing::debug!(epoch = doc.epoch, "an older document is ignored");
                return;
            }
            _ => {}
        }
        self.metrics.directory_nodes.set(doc.nodes.len() as i64);
        tracing::info!(
            epoch = doc.epoch,
            serial = doc.serial,
            nodes = doc.nodes.len(),
            "network document installed"
        );
        self.topology
            .send_replace(Some(Arc::new(Topology::new(doc))));
    }
}

/// Something the engine released.
enum Output {
    Forward(Transmit),
    Deliver(crate::engine::Delivery),
}

struct EngineLoop {
    engine: MixEngine,
    rng: StdRng,
    origin: tokio::time::Instant,
    metrics: Metrics,
    last: Counters,
    journal: mpsc::Sender<TagBatch>,
    committed: watch::Receiver<u64>,
    /// Tags accepted so far (their sequence numbers).
    accepted: u64,
    /// Released frames waiting for their tags to be committed, with the
    /// sequence number that must be on disk first.
    gated: std::collections::VecDeque<(u64, Output)>,
    gated_limit: usize,
    topology: SharedTopology,
    outbound: HashMap<PeerId, mpsc::Sender<Vec<u8>>>,
    control: libp2p_stream::Control,
    commands: mpsc::Sender<SwarmCommand>,
    schedule: crate::directory::EpochSchedule,
    keystore: KeyStore,
    replay: ReplayDb,
    identity: Identity,
    descriptor: watch::Sender<Vec<u8>>,
    listen: watch::Receiver<Vec<Multiaddr>>,
    config: NodeConfig,
    announce: Vec<Multiaddr>,
    /// After a failed rotation: when to try again.
    rotation_retry: Option<tokio::time::Instant>,
    /// A gateway's mailboxes.
    mailboxes: Option<Arc<Mutex<Mailboxes>>>,
    /// This node's loops in flight.
    loop_tracker: Arc<Mutex<super::loops::LoopTracker>>,
    /// This node's key (its loops come back addressed to it).
    me: [u8; 32],
    /// A service node's request queue.
    service: Option<mpsc::Sender<Vec<u8>>>,
}

impl EngineLoop {
    fn now(&self) -> Instant {
        Instant::ZERO + self.origin.elapsed()
    }

    fn deadline(&self, at: Instant) -> tokio::time::Instant {
        self.origin + at.saturating_since(Instant::ZERO)
    }

    /// Runs until `shutdown`; an error if the node cannot go on.
    async fn run(
        &mut self,
        mut frames: mpsc::Receiver<Vec<u8>>,
        mut loops: mpsc::Receiver<Transmit>,
        mut shutdown: std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Result<(), NodeError> {
        loop {
            let timer = self.engine.poll_timeout().map(|t| self.deadline(t));
            let rotation = self.rotation_deadline();
            tokio::select! {
                biased;
                () = &mut shutdown => return Ok(()),
                () = tokio::time::sleep_until(rotation) => self.rotate().await,
                () = async {
                    match timer {
                        Some(t) => tokio::time::sleep_until(t).await,
                        None => std::future::pending().await,
                    }
                } => {
                    let now = self.now();
                    self.engine.handle_timeout(now, &mut self.rng);
                }
                frame = frames.recv() => {
                    let Some(frame) = frame else { return Ok(()) };
                    let now = self.now();
                    self.engine.handle_frame(now, Link(0), &frame, &mut self.rng);
                    for _ in 1..BATCH {
                        let Ok(frame) = frames.try_recv() else { break };
                        self.engine.handle_frame(now, Link(0), &frame, &mut self.rng);
                    }
                }
                Some(t) = loops.recv() => self.send(t),
                changed = self.committed.changed() => {
                    if changed.is_err() {
                        return Err(NodeError::Database {
                            path: "replay".into(),
                            reason: "the replay commit thread stopped".into(),
                        });
                    }
                }
            }
            self.after_input().await;
        }
    }

    /// Moves the engine's outputs on: tags to the commit thread, frames
    /// behind the commit gate, events to metrics.
    async fn after_input(&mut self) {
        let records = self.engine.take_records();
        for hold in &records.holds {
            self.metrics.hold_time.observe(hold.as_secs_f64());
        }
        if !records.tags.is_empty() {
            self.accepted += records.tags.len() as u64;
            let batch = TagBatch {
                tags: records.tags,
                seq: self.accepted,
            };
            // A slow disk slows the engine here rather than letting
            // uncommitted packets pile up.
            if self.journal.send(batch).await.is_err() {
                tracing::error!("the replay commit thread stopped");
            }
        }
        // Forwards and deliveries both wait behind the commit gate: after a
        // crash, neither may happen twice for one packet.
        let mut released: Vec<Output> = Vec::new();
        while let Some(t) = self.engine.poll_transmit() {
            released.push(Output::Forward(t));
        }
        while let Some(event) = self.engine.poll_event() {
            if let Event::Delivered(d) = event {
                released.push(Output::Deliver(d));
            }
        }
        for output in released {
            if self.gated.len() >= self.gated_limit {
                self.metrics.driver_drop(DriverDrop::SendQueueFull);
                continue;
            }
            self.gated.push_back((self.accepted, output));
        }
        let committed = *self.committed.borrow_and_update();
        while self.gated.front().is_some_and(|(seq, _)| *seq <= committed) {
            match self.gated.pop_front() {
                Some((_, Output::Forward(t))) => self.send(t),
                Some((_, Output::Deliver(d))) => self.deliver(d),
                None => break,
            }
        }
        self.metrics
            .sync_engine(&mut self.last, self.engine.counters());
        self.metrics.queue_depth.set(self.engine.held() as i64);
        self.metrics.commit_queue_depth.set(self.gated.len() as i64);
    }

    /// A payload for which this node is the final hop: a gateway files it
    /// in the mailbox its destination names. (What a service node answers
    /// comes with the storage layer.)
    fn deliver(&mut self, d: crate::engine::Delivery) {
        if d.destination.address == self.me && d.destination.surb_id == [0; 16] {
            // A request to this service node (`storage.md` §4).
            if let Some(queue) = &self.service {
                let result = match mtos_crypto::sphinx::open_forward_payload(&d.payload) {
                    Ok(request) => match queue.try_send(request) {
                        Ok(()) => None,
                        Err(_) => Some("queue_full"),
                    },
                    Err(_) => Some("bad_request"),
                };
                if let Some(result) = result {
                    self.metrics
                        .service_requests
                        .with_label_values(&["request", result])
                        .inc();
                }
            }
            return;
        }
        if d.destination.address == self.me {
            // One of this node's loops (or a forgery, which is ignored).
            if let Ok(mut t) = self.loop_tracker.lock() {
                t.returned(&d.destination.surb_id, &self.metrics);
            }
            return;
        }
        let Some(mailboxes) = &self.mailboxes else {
            tracing::trace!(bytes = d.payload.len(), "payload delivered");
            return;
        };
        let Ok(mut boxes) = mailboxes.lock() else {
            return;
        };
        let filed = boxes.push(
            d.destination.address,
            Stored {
                surb_id: d.destination.surb_id,
                payload: d.payload,
            },
        );
        self.metrics
            .mailbox_messages
            .with_label_values(&[filed.name()])
            .inc();
        self.metrics.mailbox_held.set(boxes.held() as i64);
    }

    fn send(&mut self, t: Transmit) {
        let peer = {
            let topology = self.topology.borrow();
            topology
                .as_ref()
                .and_then(|topo| topo.node(&t.next))
                .and_then(|n| n.peer().ok())
        };
        let Some(peer) = peer else {
            self.metrics.driver_drop(DriverDrop::UnknownNextHop);
            return;
        };
        let mut frame = t.frame;
        // Twice at most: a writer that ended while idle is replaced once.
        for _ in 0..2 {
            let sender = self.outbound.entry(peer).or_insert_with(|| {
                let (tx, rx) = mpsc::channel(SEND_QUEUE);
                tokio::spawn(write_frames(
                    peer,
                    self.control.clone(),
                    self.commands.clone(),
                    self.topology.clone(),
                    rx,
                    self.metrics.clone(),
                ));
                tx
            });
            match sender.try_send(frame) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(_)) => break,
                Err(mpsc::error::TrySendError::Closed(f)) => {
                    self.outbound.remove(&peer);
                    frame = f;
                }
            }
        }
        self.metrics.driver_drop(DriverDrop::SendQueueFull);
    }

    fn rotation_deadline(&self) -> tokio::time::Instant {
        let next = self
            .schedule
            .start(self.engine.keys().current_epoch().saturating_add(1));
        // Sub-second precision: a deadline rounded down could fire before
        // the epoch starts and spin until it does.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let wait = Duration::from_secs(next)
            .saturating_sub(now)
            .min(Duration::from_secs(86_400 * 365));
        let at = tokio::time::Instant::now() + wait;
        self.rotation_retry.map_or(at, |retry| retry.max(at))
    }

    /// Moves to the epoch the clock is in: the published next key becomes
    /// current (after a long pause, a fresh key for the clock's epoch), the
    /// key before the new previous one is erased with its replay rows, and
    /// a new next key is made and published. A key that cannot be stored
    /// is retried in 5 s, never in a tight loop.
    async fn rotate(&mut self) {
        let target = self.schedule.epoch_at(unix_now());
        let current = self.engine.keys().current_epoch();
        if target <= current {
            return;
        }
        let secret = match self.keystore.load_or_generate(target, &mut self.rng) {
            Ok(secret) => secret,
            Err(e) => {
                tracing::error!(error = %e, "cannot store a Sphinx key; retrying in 5 s");
                self.rotation_retry = Some(tokio::time::Instant::now() + Duration::from_secs(5));
                return;
            }
        };
        self.rotation_retry = None;
        // Installing the epoch already published as next keeps its slot
        // and replay filter.
        self.engine.keys_mut().install_next(EpochKey {
            epoch: target,
            secret,
        });
        self.engine.keys_mut().rotate();
        if target != current.saturating_add(1) {
            // The old current key is not the previous epoch's: no overlap.
            self.engine.keys_mut().retire_previous();
        }
        // Erase first, so at most three keys are ever on disk.
        let keep_from = target.saturating_sub(1);
        if let Err(e) = self.keystore.erase_before(keep_from) {
            tracing::error!(error = %e, "cannot erase an old Sphinx key");
        }
        if let Err(e) = self.replay.erase_before(keep_from) {
            tracing::warn!(error = %e, "cannot prune old replay tags");
        }
        let next = target.saturating_add(1);
        match self.keystore.load_or_generate(next, &mut self.rng) {
            Ok(secret) => self.engine.keys_mut().install_next(EpochKey {
                epoch: next,
                secret,
            }),
            Err(e) => tracing::error!(error = %e, "cannot store the next Sphinx key"),
        }
        self.metrics.key_rotations.inc();
        self.metrics.epoch.set(i64::from(target));
        tracing::info!(epoch = target, "Sphinx keys rotated");
        self.publish_descriptor().await;
    }

    /// Signs a descriptor with the keys now held and hands it to the
    /// directory loop.
    async fn publish_descriptor(&mut self) {
        let mut addrs = self.announce.clone();
        if addrs.is_empty() {
            // Wait briefly for the listener to report its addresses.
            let _ = tokio::time::timeout(
                Duration::from_secs(5),
                self.listen.wait_for(|l| !l.is_empty()),
            )
            .await;
            addrs = self.listen.borrow().clone();
        }
        let key = *self.identity.verify_key().as_bytes();
        let Ok(peer) = peer_id_of(&key) else { return };
        let descriptor = Descriptor {
            version: VERSION,
            network: self.config.network.id.clone(),
            published: unix_now(),
            node: NodeEntry {
                key,
                peer_id: peer.to_string(),
                addrs: addrs
                    .iter()
                    .take(crate::directory::MAX_ADDRS)
                    .map(|a| a.to_string())
                    .collect(),
                role: self.config.node.role,
                layer: self.config.node.layer,
                storage: self.config.node.storage,
                sphinx_keys: self
                    .engine
                    .keys()
                    .slots()
                    .filter(|s| s.epoch >= self.engine.keys().current_epoch())
                    .map(|s| SphinxKeyEntry {
                        epoch: s.epoch,
                        public: s.secret.public(),
                    })
                    .collect(),
            },
        };
        self.descriptor
            .send_replace(descriptor.sign(&self.identity));
    }
}
