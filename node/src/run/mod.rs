//! `mtos-node run`: the tokio driver around [`MixEngine`], started here
//! and split by job into the submodules.
//!
//! Tasks: the swarm (connections, identify, ping, dialling), one reader
//! per inbound mix stream (admission, token bucket, then the inbound
//! queue, fair between peers, to the engine), one writer per next hop (a bounded send queue), the
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

use crate::config::{NodeConfig, Role};
use crate::metrics::{DriverDrop, Metrics};
use crate::replay_db::{ReplayDb, TagBatch};
use crate::{NodeError, keystore::KeyStore, listen_reason};
use mtos_mixnode::admission::{Admission, AdmissionConfig, Position, Refusal};
use mtos_mixnode::directory::{
    Descriptor, NetworkDocument, NodeEntry, Rates, SphinxKeyEntry, Ticket, Trust, VERSION,
};
use mtos_mixnode::dispatch::{FinalHop, FinalHopRule};
use mtos_mixnode::engine::{Counters, Event, MixEngine, Transmit};
use mtos_mixnode::fair::{FairQueue, Pushed};
use mtos_mixnode::keys::{EpochKey, KeyRing, ReplaySizing};
use mtos_mixnode::mailbox::{Filed, Mailboxes, Stored, encode_delivery};
use mtos_mixnode::sessions::{
    AddressPrefix, SessionLimits, SessionRefusal, cohort_share, sessions_for_capacity,
};
use mtos_mixnode::time::Instant;
use mtos_net::unix_now;
use mtos_net::{self as net, DIR_PUT_DESCRIPTOR, MIX_PROTOCOL};
use mtos_net::{NodeEntryExt, Topology, peer_id_of};

mod client_watch;
mod directory_loop;
mod document_server;
mod engine_loop;
mod gateway;
mod links;
mod swarm;
mod workers;

use directory_loop::*;
use engine_loop::*;
use gateway::*;
use links::*;
use swarm::*;
use workers::*;

/// Frames waiting for the engine, from all links together (per-peer
/// queues served in turn, `mtos_mixnode::fair`).
const INBOUND_QUEUE: usize = 4_096;
/// Frames waiting for one next hop.
const SEND_QUEUE: usize = 1_024;
/// Frames the engine loop takes per wake-up before it looks at timers.
const BATCH: usize = 256;
/// Replay false-positive target per key.
const REPLAY_FP_RATE: f64 = 1e-6;
/// Below this many packets a second per key a node warns at start.
const LOW_KEY_RATE: f64 = 100.0;

/// The shared view of the current network document.
type SharedTopology = watch::Receiver<Option<Arc<Topology>>>;

/// Everything the node needs from its config directory, loaded and
/// checked before anything listens.
struct Loaded {
    identity: Identity,
    trust: Trust,
    authorities: Vec<mtos_net::AuthorityAddr>,
    p2p: Multiaddr,
    announce: Vec<Multiaddr>,
    keystore: KeyStore,
    replay: ReplayDb,
}

fn load(config: &NodeConfig, base: &Path) -> Result<Loaded, NodeError> {
    let keys = base.join(&config.node.keys);
    let identity = crate::load_identity(&keys.join("identity.key"))?;
    let authorities = config.network.authority_addrs()?;
    if authorities.is_empty() {
        return Err(NodeError::Config(
            "network.authorities is empty: add each authority's key and address (mtos-node authority init prints them)"
                .into(),
        ));
    }
    let trust = Trust {
        network: config.network.id.clone(),
        authorities: authorities
            .iter()
            .filter_map(|a| VerifyKey::from_bytes(a.key).ok())
            .collect(),
        threshold: config.network.signatures_needed(),
        addresses: mtos_net::check_multiaddr,
    };
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
        trust,
        authorities,
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

/// The faults a test asked for (`[faults]`, honoured only by a `faults`
/// build), announced loudly.
fn announce_faults(config: &NodeConfig) {
    let faults = config.faults();
    if faults.drop_all {
        tracing::warn!("[faults] drop_all: this node drops every frame (test fault injection)");
    }
    if faults.tamper_records {
        tracing::warn!(
            "[faults] tamper_records: this node returns tampered records (test fault injection)"
        );
    }
}

/// Runs the node until `shutdown` resolves.
pub async fn run(
    config: NodeConfig,
    base: &Path,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeError> {
    let loaded = load(&config, base)?;
    announce_faults(&config);
    let files = crate::nofile::raise_for(config.limits.max_connections);
    if files.enough() {
        tracing::debug!(soft = ?files.soft, needed = files.needed, "open-file limit");
    } else {
        tracing::warn!(
            soft = ?files.soft,
            hard = ?files.hard,
            needed = files.needed,
            "the open-file limit is below what limits.max_connections needs: raise it \
             (systemd: LimitNOFILE=65536; a shell: ulimit -n) or lower max_connections"
        );
    }
    let metrics = Metrics::new()?;
    let metrics_listener = tokio::net::TcpListener::bind(&config.listen.metrics)
        .await
        .map_err(|e| NodeError::Listen {
            field: "listen.metrics",
            addr: config.listen.metrics.clone(),
            reason: e.to_string(),
        })?;
    let mut swarm = net::build_swarm(
        mtos_net::libp2p_keypair(&loaded.identity),
        config.limits.max_connections,
    )?;
    swarm
        .listen_on(loaded.p2p.clone())
        .map_err(|e| NodeError::Listen {
            field: "listen.p2p",
            addr: config.listen.p2p.clone(),
            reason: listen_reason(&e),
        })?;
    for a in &loaded.authorities {
        swarm.add_peer_address(a.peer, a.addr.clone());
    }
    let mut control = swarm.behaviour().stream.new_control();
    let incoming = control
        .accept(MIX_PROTOCOL)
        .map_err(|_| NodeError::Config("mix protocol registered twice".into()))?;
    // Every node serves the signed document it installed, so anyone can
    // compare what nodes were given with what authorities serve.
    let (signed_tx, signed_rx) = watch::channel::<Option<Arc<Vec<u8>>>>(None);
    tokio::spawn(document_server::serve(
        control
            .accept(net::DIR_PROTOCOL)
            .map_err(|_| NodeError::Config("directory protocol registered twice".into()))?,
        signed_rx,
    ));
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
            let db = crate::record_db::RecordDb::open(
                &base.join(&config.node.data).join("records"),
                mtos_mixnode::records::Retention {
                    min_age_secs: config.storage.retention_secs,
                    max_bytes: config.storage.max_bytes,
                },
            )?;
            metrics.records_held.set(db.records() as i64);
            metrics.record_bytes.set(db.bytes() as i64);
            let incoming = control
                .accept(crate::replica::STORE_PROTOCOL)
                .map_err(|_| NodeError::Config("store protocol registered twice".into()))?;
            Some((incoming, Arc::new(Mutex::new(db))))
        }
        false => None,
    };
    let local_store = store.as_ref().map(|(_, db)| db.clone());

    let position = my_position(&config);
    let my_peer = *swarm.local_peer_id();
    tracing::info!(
        peer = %my_peer,
        role = role_label(position),
        layer = ?config.node.layer,
        network = %config.network.id,
        "mtos-node starting"
    );
    tokio::spawn(crate::metrics::serve(metrics_listener, metrics.clone()));

    let (topology_tx, topology_rx) = watch::channel::<Option<Arc<Topology>>>(None);
    let signer = crate::replica::Signer {
        identity: Arc::new(loaded.identity.clone()),
        topology: topology_rx.clone(),
    };
    if let Some((incoming, db)) = store {
        tokio::spawn(crate::replica::serve(
            incoming,
            db,
            signer.clone(),
            metrics.clone(),
            crate::replica::PutQuota {
                rate: f64::from(config.storage.puts_per_service),
                burst: f64::from(config.storage.put_burst),
            },
            config.faults().tamper_records,
        ));
    }
    let (listen_tx, listen_rx) = watch::channel::<Vec<Multiaddr>>(Vec::new());
    let (command_tx, command_rx) = mpsc::channel::<SwarmCommand>(16);
    let admission: SharedAdmission = Arc::new(Mutex::new(Admission::new(AdmissionConfig {
        me: position,
        peer_rate: f64::from(config.limits.peer_rate_pps),
        client_burst: f64::from(config.limits.client_burst),
    })));
    let origin = tokio::time::Instant::now();
    let remote_ips = RemoteIps::default();
    // Test-only: a gateway that writes down its clients' frame times.
    let client_watch = if config.faults().watch_clients {
        tracing::warn!(
            "[faults] watch_clients: this node logs its clients' frame times (test fault injection)"
        );
        let dir = base.join(&config.node.data);
        std::fs::create_dir_all(&dir)
            .and_then(|()| client_watch::ClientWatch::create(&dir))
            .map(Arc::new)
            .map_err(|e| NodeError::Config(format!("[faults] watch_clients: {e}")))
            .map(Some)?
    } else {
        None
    };
    tokio::spawn(swarm_task(SwarmTask {
        swarm,
        commands: command_rx,
        topology: topology_rx.clone(),
        listen: listen_tx,
        metrics: metrics.clone(),
        admission: admission.clone(),
        authorities: loaded.authorities.iter().map(|a| a.peer).collect(),
        log_clients: config.log.client_addresses,
        watch: client_watch.clone(),
        remote_ips: remote_ips.clone(),
    }));

    let mut shutdown = std::pin::pin!(shutdown);
    // The first document gives the epoch schedule the keys follow.
    let (first, first_signed) = tokio::select! {
        d = fetch_until_ok(&mut control, &loaded, &metrics) => d,
        () = &mut shutdown => return Ok(()),
    };
    let schedule = first.schedule;
    let epoch = schedule.epoch_at(unix_now());
    let mut rng = StdRng::from_rng(&mut rand::rng());
    let ring = initial_ring(
        &loaded,
        &config,
        (epoch, schedule.epoch_secs),
        &mut rng,
        &metrics,
    )?;
    let mut engine: MixEngine =
        MixEngine::new(first.mixing.engine_config(config.limits.queue_limit), ring);
    engine.enable_journal();
    metrics.epoch.set(i64::from(epoch));

    // The first document is in use before any frame is read.
    metrics.directory_nodes.set(first.nodes.len() as i64);
    topology_tx.send_replace(Some(Arc::new(Topology::new(first.clone()))));
    let frames = Arc::new(InboundFrames::new(INBOUND_QUEUE));
    // A gateway admits mix frames from a client only while it holds a
    // session whose work was shown (`client.md` §3).
    let verified = clients.is_some().then(VerifiedSessions::default);
    tokio::spawn(accept_task(
        incoming,
        Inbound {
            me: my_peer,
            frames: frames.clone(),
            topology: topology_rx.clone(),
            metrics: metrics.clone(),
            admission,
            origin,
            drop_all: config.faults().drop_all,
            streams: Mutex::default(),
            verified: verified.clone(),
            watch: client_watch.clone(),
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
                limits: Mutex::new(SessionLimits::new(
                    SESSIONS_PER_PEER,
                    config.limits.sessions_per_address as usize,
                )),
                remote_ips,
                me: *loaded.identity.verify_key().as_bytes(),
                verified: verified.clone().unwrap_or_default(),
                key_rate: ReplaySizing::for_epochs(
                    config.limits.replay_capacity,
                    REPLAY_FP_RATE,
                    Duration::from_secs(schedule.epoch_secs),
                )
                .per_second,
            },
        ));
        tokio::spawn(expire_mailboxes(mailboxes.clone(), metrics.clone()));
        mailboxes
    });
    let (descriptor_tx, descriptor_rx) = watch::channel(Vec::new());
    let directory = DirectoryLoop {
        control: control.clone(),
        authorities: loaded.authorities.clone(),
        next: 0,
        trust: loaded.trust.clone(),
        descriptor: descriptor_rx,
        topology: topology_tx,
        commands: command_tx.clone(),
        metrics: metrics.clone(),
        me: *loaded.identity.verify_key().as_bytes(),
        signed: signed_tx,
    };
    tokio::spawn(directory.run(first, first_signed));

    let writer = loaded.replay.clone().spawn_writer(64)?;
    let my_key = *loaded.identity.verify_key().as_bytes();
    // Frames other tasks send through the engine loop (service answers).
    let (sends_tx, sends_rx) = mpsc::channel::<Transmit>(64);
    // A storage node copies records to new replicas when the storage
    // nodes change (`storage.md` §1).
    if let Some(db) = &local_store {
        tokio::spawn(
            crate::repair::Repairer {
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
        let (tx, rx) = mpsc::channel(crate::service_node::REQUEST_QUEUE);
        tokio::spawn(
            crate::service_node::ServiceNode {
                requests: rx,
                control: control.clone(),
                topology: topology_rx.clone(),
                out: sends_tx.clone(),
                metrics: metrics.clone(),
                local: local_store.clone(),
                me: my_key,
                signer: signer.clone(),
                cache_chunks: config.storage.cache_chunks,
                lie: config.faults().service_lie,
            }
            .run(),
        );
        tx
    });
    let final_hop = FinalHopRule {
        me: my_key,
        service: service.is_some(),
        gateway: mailboxes.is_some(),
    };
    let workers = worker_count(config.limits.sphinx_workers);
    let pool = if workers > 1 {
        Some(SphinxPool::start(workers).map_err(|e| {
            NodeError::Config(format!(
                "limits.sphinx_workers: cannot start {workers} threads: {e}"
            ))
        })?)
    } else {
        None
    };
    tracing::info!(
        sphinx_threads = workers,
        "Sphinx work on {workers} thread(s)"
    );
    let mut driver = EngineLoop {
        pool,
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
        loops: crate::loops::LoopDriver::new(my_key),
        final_hop,
        service,
    };
    driver.publish_descriptor().await;
    let outcome = driver.run(&frames, sends_rx, shutdown).await;
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

/// Fetches and verifies documents until one passes.
async fn fetch_until_ok(
    control: &mut libp2p_stream::Control,
    loaded: &Loaded,
    metrics: &Metrics,
) -> (NetworkDocument, Vec<u8>) {
    let mut backoff = Duration::from_millis(200);
    let start = rand::random_range(0..loaded.authorities.len().max(1));
    loop {
        match net::fetch_document_any(control, &loaded.authorities, &loaded.trust, start).await {
            Ok((d, signed, _)) => return (d, signed),
            Err(e) => {
                metrics.directory_failures.inc();
                tracing::warn!(error = %e, "network document unavailable; retrying");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// The key ring at start: the previous epoch's key if it is still on
/// disk, the current and next keys (loaded or made), older keys erased,
/// and every filter rebuilt from the stored tags.
fn initial_ring(
    loaded: &Loaded,
    config: &NodeConfig,
    (epoch, epoch_secs): (u32, u64),
    rng: &mut StdRng,
    metrics: &Metrics,
) -> Result<KeyRing, NodeError> {
    let keep_from = epoch.saturating_sub(1);
    for e in loaded.keystore.erase_before(keep_from)? {
        tracing::info!(epoch = e, "erased an expired Sphinx key");
    }
    loaded.replay.erase_before(keep_from)?;
    // Each key admits at most its filter's capacity, at most at the rate
    // that fills it in one epoch (`mixing.md` §2).
    let sizing = ReplaySizing::for_epochs(
        config.limits.replay_capacity,
        REPLAY_FP_RATE,
        Duration::from_secs(epoch_secs),
    );
    if let Some(rate) = sizing.per_second
        && rate < LOW_KEY_RATE
    {
        tracing::warn!(
            per_second = rate,
            epoch_secs,
            "each Sphinx key admits few packets a second at this epoch length (limits.replay_capacity / epoch): raise limits.replay_capacity, or packets will be refused as key_cap"
        );
    }
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
