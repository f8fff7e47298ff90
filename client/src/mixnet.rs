//! The client's side of the mixnet (`specs/client.md`): a session with a
//! gateway under a fresh libp2p identity, sending on the Loopix cover
//! schedule (real messages replace payload-stream cover; loops come back
//! to this client; drops end at service nodes) and receiving the
//! gateway's constant-rate delivery frames.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{Multiaddr, PeerId};
use mtos_crypto::envelope::{self, ClientAddress, MAX_CLIENT_MESSAGE};
use mtos_crypto::sphinx::{self, Destination, SURB_ID_LEN};
use mtos_crypto::{CryptoRng, VerifyKey};
use mtos_mixnode::admission::Position;
use mtos_mixnode::cover::{CoverRates, CoverSchedule, Send};
use mtos_mixnode::directory::{NetworkDocument, Trust, peer_id_of};
use mtos_mixnode::driver::net::{self, CLIENT_PROTOCOL};
use mtos_mixnode::mailbox::{DELIVERY_FRAME_SIZE, decode_delivery};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::sync::{mpsc, watch};
use zeroize::Zeroizing;

use crate::ClientError;

/// Real messages waiting for a payload-stream slot.
pub const SEND_QUEUE: usize = 1_000;
/// Received messages waiting for [`Session::recv`].
pub const RECEIVE_QUEUE: usize = 1_000;
/// Plaintext kinds inside an envelope.
const KIND_MESSAGE: u8 = 0;
const KIND_LOOP: u8 = 1;
/// The longest message [`Session::send`] takes.
pub const MAX_MESSAGE: usize = MAX_CLIENT_MESSAGE - 1;

/// How to reach and trust a network.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// The network id.
    pub network: String,
    /// The authority's ed25519 key.
    pub authority_key: [u8; 32],
    /// The authority's libp2p address.
    pub authority_addr: Multiaddr,
}

impl NetworkConfig {
    fn trust(&self) -> Result<Trust, ClientError> {
        let key = VerifyKey::from_bytes(self.authority_key)
            .map_err(|_| ClientError::Network("the authority key is not an ed25519 key".into()))?;
        Ok(Trust {
            network: self.network.clone(),
            authorities: vec![key],
            threshold: 1,
        })
    }
}

/// What a session sent, for measurements: when, and which stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SentKind {
    /// A real message.
    Real,
    /// Payload-stream cover (a drop).
    PayloadCover,
    /// A loop.
    Loop,
    /// Drop cover.
    Drop,
}

/// Counters and send times of a session.
#[derive(Debug, Clone, Default)]
pub struct SessionStats {
    /// Every packet written to the gateway, with its time since the
    /// session started.
    pub sent: Vec<(Duration, SentKind)>,
    /// Delivery frames received: real ones and dummies, with their times.
    pub deliveries: Vec<(Duration, bool)>,
    /// Loops that came back.
    pub loops_returned: u64,
    /// Real messages received.
    pub received: u64,
    /// Frames that did not open (not for us, tampered).
    pub undecodable: u64,
    /// Messages dropped because [`RECEIVE_QUEUE`] was full (the reader
    /// did not call [`Session::recv`] fast enough).
    pub dropped_unread: u64,
}

/// A session with a gateway.
pub struct Session {
    address: ClientAddress,
    outgoing: mpsc::Sender<(ClientAddress, Vec<u8>)>,
    incoming: mpsc::Receiver<Vec<u8>>,
    stats: Arc<Mutex<SessionStats>>,
    document: watch::Receiver<Arc<NetworkDocument>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn net_error(what: &str) -> impl FnOnce(String) -> ClientError + '_ {
    move |e| ClientError::Network(format!("{what}: {e}"))
}

async fn fetch(
    control: &mut libp2p_stream::Control,
    authority: PeerId,
    trust: &Trust,
) -> Result<NetworkDocument, ClientError> {
    mtos_mixnode::driver::node::fetch_document(control, authority, trust)
        .await
        .map_err(|e| ClientError::Network(format!("network document: {e}")))
}

impl Session {
    /// Connects to a random gateway of the network with a fresh libp2p
    /// identity and a fresh mailbox, and starts the cover schedule.
    pub async fn connect(config: &NetworkConfig) -> Result<Self, ClientError> {
        let trust = config.trust()?;
        let keypair = libp2p::identity::Keypair::generate_ed25519();
        let mut swarm =
            net::build_swarm(keypair, 64).map_err(|e| ClientError::Network(e.to_string()))?;
        let authority = peer_id_of(&config.authority_key)
            .map_err(|e| ClientError::Network(format!("authority key: {e}")))?;
        swarm.add_peer_address(authority, config.authority_addr.clone());
        let mut control = swarm.behaviour().stream.new_control();
        let (addr_tx, mut addr_rx) = mpsc::channel::<AddressBook>(64);
        let swarm_task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    cmd = addr_rx.recv() => match cmd {
                        Some(AddressBook::Add(peer, addrs)) => {
                            for a in addrs {
                                swarm.add_peer_address(peer, a);
                            }
                        }
                        Some(AddressBook::Barrier(done)) => {
                            let _ = done.send(());
                        }
                        None => return,
                    },
                    _ = swarm.select_next_some() => {}
                }
            }
        });
        let doc = fetch(&mut control, authority, &trust).await?;
        for n in &doc.nodes {
            if let Ok(p) = n.peer() {
                let _ = addr_tx.send(AddressBook::Add(p, n.multiaddrs())).await;
            }
        }
        // The addresses are in the swarm before anything dials.
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let _ = addr_tx.send(AddressBook::Barrier(done_tx)).await;
        let _ = done_rx.await;
        let mut rng = StdRng::from_rng(&mut rand::rng());
        let gateway = doc
            .pick(&mut rng, Position::Gateway)
            .ok_or_else(|| ClientError::Network("the network document lists no gateway".into()))?
            .clone();
        let gateway_peer = gateway
            .peer()
            .map_err(|e| ClientError::Network(e.to_string()))?;
        let mut mailbox_secret = Zeroizing::new([0u8; 32]);
        rng.fill(mailbox_secret.as_mut_slice());
        let key_secret = Zeroizing::new({
            let mut k = [0u8; 32];
            rng.fill(&mut k[..]);
            k
        });
        let key = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(*key_secret))
            .to_bytes();
        let address = ClientAddress {
            gateway: gateway.key,
            mailbox: envelope::mailbox_id(&mailbox_secret),
            key,
        };
        // The delivery stream first: register the mailbox.
        let mut deliveries = tokio::time::timeout(
            net::MIX_READY_TIMEOUT,
            control.open_stream(gateway_peer, CLIENT_PROTOCOL),
        )
        .await
        .map_err(|_| ClientError::Network("the gateway did not answer".into()))?
        .map_err(|e| net_error("gateway session")(e.to_string()))?;
        deliveries
            .write_all(mailbox_secret.as_slice())
            .await
            .map_err(|e| net_error("gateway session")(e.to_string()))?;
        deliveries
            .flush()
            .await
            .map_err(|e| net_error("gateway session")(e.to_string()))?;
        let mix = net::open_mix_stream(&mut control, gateway_peer)
            .await
            .map_err(net_error("gateway mix stream"))?;

        let stats = Arc::new(Mutex::new(SessionStats::default()));
        let started = tokio::time::Instant::now();
        let (doc_tx, doc_rx) = watch::channel(Arc::new(doc));
        let (out_tx, out_rx) = mpsc::channel(SEND_QUEUE);
        let (frames_tx, frames_rx) = mpsc::channel(SEND_QUEUE);
        let (loops_tx, loops_rx) = mpsc::channel(COVER_READY);
        let (drops_tx, drops_rx) = mpsc::channel(COVER_READY);
        let cover_builder = tokio::spawn(cover_loop(
            loops_tx,
            drops_tx,
            doc_rx.clone(),
            address,
            StdRng::from_rng(&mut rng),
        ));
        let builder = tokio::spawn(build_loop(
            out_rx,
            frames_tx,
            doc_rx.clone(),
            address,
            StdRng::from_rng(&mut rng),
        ));
        let (in_tx, in_rx) = mpsc::channel(RECEIVE_QUEUE);
        let sender = tokio::spawn(send_loop(SendLoop {
            mix,
            control: control.clone(),
            gateway: gateway_peer,
            me: address,
            document: doc_rx.clone(),
            outgoing: frames_rx,
            loops: loops_rx,
            drops: drops_rx,
            stats: stats.clone(),
            started,
            rng,
        }));
        let receiver = tokio::spawn(receive_loop(
            deliveries,
            key_secret,
            in_tx,
            stats.clone(),
            started,
        ));
        let refresher = tokio::spawn(refresh_loop(control, authority, trust, doc_tx, addr_tx));
        Ok(Self {
            address,
            outgoing: out_tx,
            incoming: in_rx,
            stats,
            document: doc_rx,
            tasks: vec![
                swarm_task,
                builder,
                cover_builder,
                sender,
                receiver,
                refresher,
            ],
        })
    }

    /// Where this session receives.
    pub fn address(&self) -> ClientAddress {
        self.address
    }

    /// The network document in use.
    pub fn document(&self) -> Arc<NetworkDocument> {
        self.document.borrow().clone()
    }

    /// Queues a message for `to`; it leaves in the next payload-stream
    /// slot. Fails when the queue is full or the message too long.
    pub fn send(&self, to: &ClientAddress, message: &[u8]) -> Result<(), ClientError> {
        if message.len() > MAX_MESSAGE {
            return Err(ClientError::Network(format!(
                "message of {} bytes exceeds {MAX_MESSAGE}",
                message.len()
            )));
        }
        self.outgoing
            .try_send((*to, message.to_vec()))
            .map_err(|_| ClientError::Network("the send queue is full".into()))
    }

    /// The next message received (loops and dummies are not messages).
    pub async fn recv(&mut self) -> Option<Vec<u8>> {
        self.incoming.recv().await
    }

    /// A snapshot of the counters and send times.
    pub fn stats(&self) -> SessionStats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// Commands to the session's swarm task.
enum AddressBook {
    /// Learn a node's addresses.
    Add(PeerId, Vec<Multiaddr>),
    /// Answer once every earlier command is done.
    Barrier(tokio::sync::oneshot::Sender<()>),
}

struct SendLoop {
    mix: libp2p::Stream,
    control: libp2p_stream::Control,
    gateway: PeerId,
    me: ClientAddress,
    document: watch::Receiver<Arc<NetworkDocument>>,
    /// Real frames, built by [`build_loop`].
    outgoing: mpsc::Receiver<Vec<u8>>,
    /// Ready loop and drop frames, built by [`cover_loop`].
    loops: mpsc::Receiver<Vec<u8>>,
    drops: mpsc::Receiver<Vec<u8>>,
    stats: Arc<Mutex<SessionStats>>,
    started: tokio::time::Instant,
    rng: StdRng,
}

fn core_now(started: tokio::time::Instant) -> mtos_mixnode::Instant {
    mtos_mixnode::Instant::ZERO + started.elapsed()
}

/// A frame for `send`, or `None` when the document lacks the nodes for it.
fn build<R: rand::Rng + CryptoRng + ?Sized>(
    rng: &mut R,
    doc: &NetworkDocument,
    me: &ClientAddress,
    send: &Send<(ClientAddress, Vec<u8>)>,
) -> Option<Vec<u8>> {
    let gateway = doc.nodes.iter().find(|n| n.key == me.gateway)?;
    let mut route = vec![gateway];
    for layer in 1..=doc.layers {
        route.push(doc.pick(rng, Position::Layer(layer))?);
    }
    let (last, address, message, seal_to) = match send {
        Send::Real((to, body)) => {
            let mut m = Vec::with_capacity(1 + body.len());
            m.push(KIND_MESSAGE);
            m.extend_from_slice(body);
            let last = doc.nodes.iter().find(|n| n.key == to.gateway)?;
            (last, to.mailbox, m, to.key)
        }
        Send::Loop => {
            let mut nonce = [0u8; 16];
            rng.fill(&mut nonce[..]);
            let mut m = vec![KIND_LOOP];
            m.extend_from_slice(&nonce);
            (gateway, me.mailbox, m, me.key)
        }
        // Drops end at a service node, which discards them.
        Send::PayloadCover | Send::Drop | Send::NodeLoop => {
            let last = doc.pick(rng, Position::Service)?;
            let mut key = [0u8; 32];
            rng.fill(&mut key[..]);
            let public =
                x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(key)).to_bytes();
            let mut address = [0u8; 32];
            rng.fill(&mut address[..]);
            (last, address, vec![KIND_MESSAGE], public)
        }
    };
    route.push(last);
    let sealed = envelope::seal(rng, &seal_to, &message).ok()?;
    let destination = Destination {
        address,
        surb_id: [0; SURB_ID_LEN],
    };
    doc.forward_frame(rng, &route, &destination, &sealed)
}

/// Builds real messages' frames as they are queued, beside the send loop,
/// so a burst of messages does not hold up the schedule.
async fn build_loop(
    mut messages: mpsc::Receiver<(ClientAddress, Vec<u8>)>,
    frames: mpsc::Sender<Vec<u8>>,
    document: watch::Receiver<Arc<NetworkDocument>>,
    me: ClientAddress,
    mut rng: StdRng,
) {
    while let Some(m) = messages.recv().await {
        let doc = document.borrow().clone();
        if let Some(frame) = build(&mut rng, &doc, &me, &Send::Real(m))
            && frames.send(frame).await.is_err()
        {
            return;
        }
    }
}

/// Cover frames kept ready per kind.
const COVER_READY: usize = 4;

/// Keeps loop and drop frames ready, so the send loop never builds one in
/// a slot's time. (Ready frames carry the keys of the document they were
/// built from; a few stay ready, so they are used long before it expires.)
async fn cover_loop(
    loops: mpsc::Sender<Vec<u8>>,
    drops: mpsc::Sender<Vec<u8>>,
    document: watch::Receiver<Arc<NetworkDocument>>,
    me: ClientAddress,
    mut rng: StdRng,
) {
    loop {
        let (slot, kind) = tokio::select! {
            slot = loops.reserve() => (slot, Send::Loop),
            slot = drops.reserve() => (slot, Send::Drop),
        };
        let Ok(slot) = slot else { return };
        let doc = document.borrow().clone();
        match build(&mut rng, &doc, &me, &kind) {
            Some(frame) => slot.send(frame),
            // No route in this document: wait for a better one.
            None => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

/// Sends on the cover schedule. Frames are built ahead of their slot (a
/// real message when it is queued, one loop and one drop kept ready), so
/// a packet leaves at its scheduled instant, not a build time later: the
/// gaps an observer sees are the schedule's exponential gaps.
async fn send_loop(mut s: SendLoop) {
    let doc = s.document.borrow().clone();
    let rates = CoverRates {
        payload: doc.rates.payload,
        loop_cover: doc.rates.loops,
        drop_cover: doc.rates.drops,
        node_loop: 0.0,
    };
    let mut schedule: CoverSchedule<Vec<u8>> =
        CoverSchedule::new(core_now(s.started), rates, SEND_QUEUE, &mut s.rng);
    loop {
        let doc = s.document.borrow().clone();
        let next = schedule
            .poll_timeout()
            .map(|t| s.started + t.saturating_since(mtos_mixnode::Instant::ZERO));
        tokio::select! {
            () = async {
                match next {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            } => {}
            frame = s.outgoing.recv() => match frame {
                Some(frame) => {
                    // The session's queue is no longer than the schedule's.
                    let _ = schedule.push_real(frame);
                    continue;
                }
                None => return,
            },
        }
        let now = core_now(s.started);
        while let Some(send) = schedule.poll_send(now, &mut s.rng) {
            let (kind, frame) = match send {
                Send::Real(frame) => (SentKind::Real, Some(frame)),
                Send::PayloadCover => (SentKind::PayloadCover, s.drops.try_recv().ok()),
                Send::Loop => (SentKind::Loop, s.loops.try_recv().ok()),
                Send::Drop | Send::NodeLoop => (SentKind::Drop, s.drops.try_recv().ok()),
            };
            // The cover builder fell behind: build this one now.
            let frame = match frame {
                Some(f) => f,
                None => {
                    let cover = if kind == SentKind::Loop {
                        Send::Loop
                    } else {
                        Send::Drop
                    };
                    match build(&mut s.rng, &doc, &s.me, &cover) {
                        Some(f) => f,
                        None => continue,
                    }
                }
            };
            let mut written = s.mix.write_all(&frame).await;
            if written.is_ok() {
                written = s.mix.flush().await;
            }
            if written.is_err() {
                // Reconnect with backoff; this frame is lost (a mixnet is
                // lossy; loops measure it).
                let mut backoff = Duration::from_millis(200);
                loop {
                    tokio::time::sleep(backoff).await;
                    if let Ok(stream) = net::open_mix_stream(&mut s.control, s.gateway).await {
                        s.mix = stream;
                        break;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
                continue;
            }
            if let Ok(mut st) = s.stats.lock() {
                st.sent.push((s.started.elapsed(), kind));
            }
        }
    }
}

async fn receive_loop(
    mut stream: libp2p::Stream,
    key: Zeroizing<[u8; 32]>,
    messages: mpsc::Sender<Vec<u8>>,
    stats: Arc<Mutex<SessionStats>>,
    started: tokio::time::Instant,
) {
    let mut frame = vec![0u8; DELIVERY_FRAME_SIZE];
    while stream.read_exact(&mut frame).await.is_ok() {
        let at = started.elapsed();
        let stored = match decode_delivery(&frame) {
            Ok(s) => s,
            Err(_) => {
                if let Ok(mut st) = stats.lock() {
                    st.undecodable += 1;
                }
                continue;
            }
        };
        let opened = stored.as_ref().map(|s| {
            sphinx::open_forward_payload(&s.payload)
                .ok()
                .and_then(|sealed| envelope::open(&key, &sealed).ok())
        });
        let Ok(mut st) = stats.lock() else { return };
        st.deliveries.push((at, stored.is_some()));
        match opened {
            None => {}
            Some(None) => st.undecodable += 1,
            Some(Some(plain)) => match plain.split_first() {
                Some((&KIND_LOOP, _)) => st.loops_returned += 1,
                Some((&KIND_MESSAGE, body)) => {
                    st.received += 1;
                    // A full queue drops the message (counted): the reader
                    // is not keeping up.
                    if messages.try_send(body.to_vec()).is_err() {
                        st.dropped_unread += 1;
                    }
                }
                _ => st.undecodable += 1,
            },
        }
    }
}

async fn refresh_loop(
    mut control: libp2p_stream::Control,
    authority: PeerId,
    trust: Trust,
    document: watch::Sender<Arc<NetworkDocument>>,
    addresses: mpsc::Sender<AddressBook>,
) {
    loop {
        let epoch_secs = document.borrow().schedule.epoch_secs;
        tokio::time::sleep(Duration::from_secs((epoch_secs / 60).clamp(1, 30))).await;
        // A failed refresh keeps the last document, which stays usable
        // until it expires; the next attempt comes soon.
        if let Ok(doc) = fetch(&mut control, authority, &trust).await {
            for n in &doc.nodes {
                if let Ok(p) = n.peer() {
                    let _ = addresses.send(AddressBook::Add(p, n.multiaddrs())).await;
                }
            }
            if doc.epoch >= document.borrow().epoch {
                document.send_replace(Arc::new(doc));
            }
        }
    }
}
