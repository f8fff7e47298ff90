//! The client's side of the mixnet (`specs/client.md`): a session with a
//! gateway under a fresh libp2p identity, sending on the Loopix cover
//! schedule (real messages replace payload-stream cover; loops come back
//! to this client; drops end at service nodes), receiving the gateway's
//! constant-rate delivery frames, and answering through reply blocks
//! (`replies`) without learning who asked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{Multiaddr, PeerId};
use mtos_crypto::envelope::{self, ClientAddress, MAX_CLIENT_MESSAGE};
use mtos_crypto::item::Locator;
use mtos_crypto::sphinx::{self, Destination, SURB_ID_LEN};
use mtos_crypto::{CryptoRng, VerifyKey};
use mtos_mixnode::admission::Position;
use mtos_mixnode::cover::{CoverRates, CoverSchedule, Send};
use mtos_mixnode::directory::{NetworkDocument, NodeEntry, Trust, peer_id_of};
use mtos_mixnode::driver::net::{self, CLIENT_PROTOCOL};
use mtos_mixnode::driver::unix_now;
use mtos_mixnode::mailbox::{DELIVERY_FRAME_SIZE, Stored, decode_delivery};
use mtos_mixnode::service::{Op, Request, Response};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::sync::{mpsc, oneshot, watch};
use zeroize::Zeroizing;

use crate::ClientError;
use crate::replies::{
    MAX_BLOCKS_PER_MESSAGE, Outstanding, Plain, ReplyBlock, ReplyPool, SenderTag, TAG_LEN,
    decode_reply, encode_reply, max_answerable,
};

/// Real messages waiting for a payload-stream slot.
pub const SEND_QUEUE: usize = 1_000;
/// Received messages waiting for [`Session::recv`].
pub const RECEIVE_QUEUE: usize = 1_000;
/// The longest message [`Session::send`] takes.
pub const MAX_MESSAGE: usize = MAX_CLIENT_MESSAGE - 1;
/// Time left for a reply's links, beyond its mixing delays, when a reply
/// block's expiry is set (`client.md` §5).
const REPLY_LINK_MARGIN_SECS: u64 = 30;

/// A message received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A message that cannot be answered.
    Message(Vec<u8>),
    /// A message whose sender left reply blocks: answer it with
    /// [`Session::reply`] and `from`, which names the sender only to this
    /// session.
    Answerable {
        /// The sender, as this session knows them.
        from: SenderTag,
        /// The message.
        body: Vec<u8>,
    },
    /// A reply through one of this session's reply blocks, in the
    /// conversation [`Session::send_answerable`] returned `tag` for.
    Reply {
        /// The conversation.
        tag: SenderTag,
        /// The reply.
        body: Vec<u8>,
    },
}

impl Received {
    /// The message's bytes.
    pub fn body(&self) -> &[u8] {
        match self {
            Received::Message(b) => b,
            Received::Answerable { body, .. } | Received::Reply { body, .. } => body,
        }
    }
}

/// What waits to become a frame for a payload slot.
enum Outgoing {
    /// A message to a client.
    Message(ClientAddress, Vec<u8>),
    /// A message carrying `blocks` new reply blocks under `tag`.
    Answerable {
        to: ClientAddress,
        tag: SenderTag,
        body: Vec<u8>,
        blocks: usize,
    },
    /// Reply blocks alone, replenishing what `to` holds for `tag`.
    MoreBlocks {
        to: ClientAddress,
        tag: SenderTag,
        blocks: usize,
    },
    /// A frame built already (a reply through a block).
    Frame(Vec<u8>),
}

/// Both sides of reply blocks: those this session handed out, and those
/// it holds to answer others.
#[derive(Default)]
struct Replies {
    outstanding: Outstanding,
    pool: ReplyPool,
    /// Service requests waiting for their answer, by reply block id.
    requests: HashMap<[u8; SURB_ID_LEN], (sphinx::SurbRecovery, oneshot::Sender<Vec<u8>>)>,
}

impl std::fmt::Debug for Replies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replies")
            .field("outstanding", &self.outstanding)
            .field("requests", &self.requests.len())
            .finish_non_exhaustive()
    }
}

/// Service requests a session waits on at once.
pub const MAX_PENDING_REQUESTS: usize = 1_024;

type SharedReplies = Arc<Mutex<Replies>>;

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
    /// From its text form: the network id, the authority's key (64 hex
    /// digits) and its multiaddr; errors name `what` (the file) and the
    /// field.
    pub fn parse(
        network: &str,
        authority_key: &str,
        authority_addr: &str,
        what: &str,
    ) -> Result<Self, ClientError> {
        let bad =
            |field: &str, why: String| ClientError::Network(format!("{what}: {field}: {why}"));
        if network.trim().is_empty() || network.len() > 64 {
            return Err(bad("network", "must be 1 to 64 characters".into()));
        }
        let authority_key = data_encoding::HEXLOWER_PERMISSIVE
            .decode(authority_key.trim().as_bytes())
            .ok()
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
            .filter(|k| VerifyKey::from_bytes(*k).is_ok())
            .ok_or_else(|| {
                bad(
                    "authority_key",
                    "must be an ed25519 key, 64 hex digits".into(),
                )
            })?;
        let authority_addr = authority_addr
            .trim()
            .parse()
            .map_err(|e| bad("authority_addr", format!("not a multiaddr: {e}")))?;
        Ok(Self {
            network: network.trim().to_owned(),
            authority_key,
            authority_addr,
        })
    }

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

/// Entries each time series of [`SessionStats`] keeps (the first ones;
/// the counters go on): about a day at λP + λL + λD = 1.2/s.
pub const STATS_SERIES_LIMIT: usize = 100_000;

fn push_capped<T>(series: &mut Vec<T>, item: T) {
    if series.len() < STATS_SERIES_LIMIT {
        series.push(item);
    }
}

/// Counters and send times of a session.
#[derive(Debug, Clone, Default)]
pub struct SessionStats {
    /// Every packet written to the gateway, with its time since the
    /// session started (the first [`STATS_SERIES_LIMIT`]).
    pub sent: Vec<(Duration, SentKind)>,
    /// Delivery frames received: real ones and dummies, with their times
    /// (the first [`STATS_SERIES_LIMIT`]).
    pub deliveries: Vec<(Duration, bool)>,
    /// When each message (of any kind: plain, answerable, reply) was
    /// received (the first [`STATS_SERIES_LIMIT`]).
    pub received_at: Vec<Duration>,
    /// Loops that came back.
    pub loops_returned: u64,
    /// Real messages received.
    pub received: u64,
    /// Frames that did not open (not for us, tampered).
    pub undecodable: u64,
    /// Messages dropped because [`RECEIVE_QUEUE`] was full (the reader
    /// did not call [`Session::recv`] fast enough).
    pub dropped_unread: u64,
    /// Replies received through this session's reply blocks.
    pub replies_received: u64,
    /// Replies that came on a block this session does not hold (used
    /// already, forgotten after expiry, or forged): dropped.
    pub unknown_replies: u64,
    /// Replies sent through others' reply blocks.
    pub replies_sent: u64,
    /// Reply blocks this session handed out.
    pub blocks_sent: u64,
    /// Reply blocks received from others.
    pub blocks_received: u64,
    /// Reply blocks dropped to keep the pool within its bounds.
    pub blocks_dropped: u64,
    /// Messages carrying only reply blocks, sent to replenish them.
    pub top_ups_sent: u64,
    /// Times the delivery stream was reopened after the gateway went
    /// away.
    pub reconnects: u64,
    /// Network document refreshes that failed.
    pub document_refresh_failures: u64,
    /// Why the last refresh failed, while it has not succeeded since.
    pub last_document_error: Option<String>,
    /// Queued messages that could not be built (the document lacked a
    /// node for the route, or the reply table was full).
    pub unsendable: u64,
}

/// A session with a gateway.
pub struct Session {
    address: ClientAddress,
    peer: PeerId,
    outgoing: mpsc::Sender<Outgoing>,
    incoming: mpsc::Receiver<Received>,
    replies: SharedReplies,
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
        let keypair = libp2p::identity::Keypair::generate_ed25519();
        let swarm =
            net::build_swarm(keypair, 64).map_err(|e| ClientError::Network(e.to_string()))?;
        Self::connect_over(config, swarm, |_| true).await
    }

    /// [`Session::connect`] with every connection (to the authority and
    /// to the gateway) made through Tor, so neither learns this client's
    /// IP address (`client.md` §7). The authority and the chosen gateway
    /// must have addresses a Tor exit can reach.
    #[cfg(feature = "tor")]
    pub async fn connect_through_tor(
        config: &NetworkConfig,
        tor: &crate::tor::TorTransport,
    ) -> Result<Self, ClientError> {
        crate::tor::tor_target(&config.authority_addr)
            .map_err(|e| ClientError::Network(format!("the authority through Tor: {e}")))?;
        let keypair = libp2p::identity::Keypair::generate_ed25519();
        let swarm = crate::tor::build_swarm(keypair, tor, 64)?;
        Self::connect_over(config, swarm, |n| {
            n.multiaddrs().iter().any(crate::tor::reachable)
        })
        .await
    }

    async fn connect_over(
        config: &NetworkConfig,
        mut swarm: libp2p::Swarm<net::Behaviour>,
        usable: impl Fn(&NodeEntry) -> bool,
    ) -> Result<Self, ClientError> {
        let trust = config.trust()?;
        let authority = peer_id_of(&config.authority_key)
            .map_err(|e| ClientError::Network(format!("authority key: {e}")))?;
        swarm.add_peer_address(authority, config.authority_addr.clone());
        let peer = *swarm.local_peer_id();
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
        let gateways: Vec<&NodeEntry> = doc
            .nodes
            .iter()
            .filter(|n| n.position() == Position::Gateway && usable(n))
            .collect();
        if gateways.is_empty() {
            return Err(ClientError::Network(
                "the network document lists no gateway this session can reach".into(),
            ));
        }
        let gateway = gateways[rng.random_range(0..gateways.len())].clone();
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
        let deliveries = open_deliveries(&mut control, gateway_peer, &mailbox_secret).await?;
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
        let replies = SharedReplies::default();
        let cover_builder = tokio::spawn(cover_loop(
            loops_tx,
            drops_tx,
            doc_rx.clone(),
            address,
            StdRng::from_rng(&mut rng),
        ));
        let builder = tokio::spawn(build_loop(Builder {
            messages: out_rx,
            frames: frames_tx,
            document: doc_rx.clone(),
            me: address,
            replies: replies.clone(),
            stats: stats.clone(),
            rng: StdRng::from_rng(&mut rng),
        }));
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
        let replenish = Replenish {
            replies: replies.clone(),
            outgoing: out_tx.clone(),
            stats: stats.clone(),
        };
        let receiver = tokio::spawn(receive_loop(Receiver {
            stream: deliveries,
            control: control.clone(),
            gateway: gateway_peer,
            mailbox_secret,
            key: key_secret,
            messages: in_tx,
            replenish: replenish.clone(),
            document: doc_rx.clone(),
            started,
        }));
        let refresher = tokio::spawn(refresh_loop(
            control, authority, trust, doc_tx, addr_tx, replenish,
        ));
        Ok(Self {
            address,
            peer,
            outgoing: out_tx,
            incoming: in_rx,
            replies,
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

    /// This session's libp2p identity: the one its gateway (and only its
    /// gateway) sees; fresh for every session.
    pub fn peer_id(&self) -> PeerId {
        self.peer
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
            .try_send(Outgoing::Message(*to, message.to_vec()))
            .map_err(|_| queue_full())
    }

    /// Queues a message for `to` carrying `blocks` (1 to 8) reply blocks,
    /// so `to` can answer without learning this session's address.
    /// Returns the conversation's tag, which replies come back under.
    /// While the conversation is active (a message or reply within two
    /// key epochs) the session keeps `to` supplied with that many blocks,
    /// replacing those used and those about to expire.
    pub fn send_answerable(
        &self,
        to: &ClientAddress,
        message: &[u8],
        blocks: usize,
    ) -> Result<SenderTag, ClientError> {
        if blocks == 0 || blocks > MAX_BLOCKS_PER_MESSAGE {
            return Err(ClientError::Network(format!(
                "a message carries 1 to {MAX_BLOCKS_PER_MESSAGE} reply blocks, not {blocks}"
            )));
        }
        let max = max_answerable(blocks);
        if message.len() > max {
            return Err(crate::replies::ReplyError::TooLong {
                got: message.len(),
                blocks,
                max,
            }
            .into());
        }
        let permit = self.outgoing.try_reserve().map_err(|_| queue_full())?;
        let active_until = unix_now() + 2 * self.document().schedule.epoch_secs;
        let tag = {
            let mut r = self.replies.lock().map_err(|_| poisoned())?;
            let tag = r.outstanding.tag_for(to, blocks, active_until, random_tag);
            r.outstanding.plan(&tag, blocks);
            tag
        };
        permit.send(Outgoing::Answerable {
            to: *to,
            tag,
            body: message.to_vec(),
            blocks,
        });
        Ok(tag)
    }

    /// Answers the sender of an [`Received::Answerable`] message through
    /// one of its reply blocks (each is used once; the sender sends more).
    /// The reply leaves in the next payload slot. Fails with a clear error
    /// when no block is held for `from`, when all have expired, or when
    /// the message is longer than [`crate::replies::MAX_REPLY`].
    pub fn reply(&self, from: &SenderTag, message: &[u8]) -> Result<(), ClientError> {
        let plain = encode_reply(message)?;
        let permit = self.outgoing.try_reserve().map_err(|_| queue_full())?;
        let block = self
            .replies
            .lock()
            .map_err(|_| poisoned())?
            .pool
            .take(from, unix_now())?;
        let (first, frame) = block
            .reply_frame(&plain)
            .map_err(|e| ClientError::Network(format!("reply block: {e}")))?;
        // A block starts at the gateway of the address it was sent to.
        if first.0 != self.address.gateway {
            return Err(ClientError::Network(
                "the reply block starts at another gateway than this session's".into(),
            ));
        }
        permit.send(Outgoing::Frame(frame));
        if let Ok(mut st) = self.stats.lock() {
            st.replies_sent += 1;
        }
        Ok(())
    }

    /// Sends `op` on `locator` to a random service node through the
    /// mixnet, with a reply block for the answer, and waits for it at most
    /// `timeout` (`specs/storage.md` §4). The service node learns the
    /// locator, never this session's address.
    pub async fn request(
        &self,
        op: Op,
        locator: Locator,
        timeout: Duration,
    ) -> Result<Response, ClientError> {
        let doc = self.document();
        let mut rng = StdRng::from_rng(&mut rand::rng());
        let missing =
            |what: &str| ClientError::Network(format!("the network document lacks {what}"));
        let service = doc
            .pick(&mut rng, Position::Service)
            .ok_or_else(|| missing("a service node"))?;
        let mine = doc
            .nodes
            .iter()
            .find(|n| n.key == self.address.gateway)
            .ok_or_else(|| missing("this session's gateway"))?;
        let (reply, block_id, recovery) = block_to_me(&mut rng, &doc, &self.address, None)
            .ok_or_else(|| missing("nodes and keys for the reply block"))?;
        let mut id = [0u8; 16];
        rng.fill(&mut id[..]);
        let request = Request {
            id,
            locator,
            op,
            reply,
        };
        let bytes = request
            .encode()
            .map_err(|e| ClientError::Network(format!("request: {e}")))?;
        let mut forward = vec![mine];
        forward
            .extend(pick_layers(&mut rng, &doc).ok_or_else(|| missing("a node in every layer"))?);
        forward.push(service);
        let destination = Destination {
            address: service.key,
            surb_id: [0; SURB_ID_LEN],
        };
        let frame = doc
            .forward_frame(&mut rng, &forward, &destination, &bytes)
            .ok_or_else(|| missing("keys for the request"))?;
        let permit = self.outgoing.try_reserve().map_err(|_| queue_full())?;
        let (tx, rx) = oneshot::channel();
        {
            let mut r = self.replies.lock().map_err(|_| poisoned())?;
            if r.requests.len() >= MAX_PENDING_REQUESTS {
                return Err(ClientError::Network(format!(
                    "{MAX_PENDING_REQUESTS} requests are waiting already"
                )));
            }
            r.requests.insert(block_id, (recovery, tx));
        }
        permit.send(Outgoing::Frame(frame));
        let answer = tokio::time::timeout(timeout, rx).await;
        if let Ok(mut r) = self.replies.lock() {
            r.requests.remove(&block_id);
        }
        let body = answer
            .map_err(|_| {
                ClientError::Network(format!(
                    "no answer from the service node within {} s",
                    timeout.as_secs()
                ))
            })?
            .map_err(|_| ClientError::Network("the session ended".into()))?;
        let response = Response::decode(&body)
            .map_err(|e| ClientError::Network(format!("service response: {e}")))?;
        if response.id != id {
            return Err(ClientError::Network("a response to another request".into()));
        }
        Ok(response)
    }

    /// Usable reply blocks held for `from`.
    pub fn reply_blocks(&self, from: &SenderTag) -> usize {
        self.replies
            .lock()
            .map_or(0, |r| r.pool.available(from, unix_now()))
    }

    /// `Ok` while the session's network document is valid; otherwise why
    /// not (it expired and could not be refreshed, with the last refresh
    /// error): packets built from an expired document are dropped by the
    /// nodes, whose keys have moved on.
    pub fn health(&self) -> Result<(), ClientError> {
        let doc = self.document();
        let now = unix_now();
        if now < doc.valid_until {
            return Ok(());
        }
        let why = self
            .stats()
            .last_document_error
            .unwrap_or_else(|| "no refresh succeeded".into());
        Err(ClientError::Network(format!(
            "the network document for epoch {} expired at {} (now {now}): {why}",
            doc.epoch, doc.valid_until
        )))
    }

    /// The next message received (loops and dummies are not messages).
    pub async fn recv(&mut self) -> Option<Received> {
        self.incoming.recv().await
    }

    /// A snapshot of the counters and send times.
    pub fn stats(&self) -> SessionStats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

fn queue_full() -> ClientError {
    ClientError::Network("the send queue is full".into())
}

fn poisoned() -> ClientError {
    ClientError::Network("the session's reply table is unusable".into())
}

fn random_tag() -> [u8; TAG_LEN] {
    rand::rng().random()
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

/// What a frame carries.
enum Target<'a> {
    /// Envelope plaintext for a client.
    Client(&'a ClientAddress, &'a [u8]),
    /// A loop back to this session.
    Loop,
    /// A drop: to a random address at a service node, which discards it.
    Drop,
}

/// A frame from this session's gateway through one node per layer to
/// `target`, or `None` when the document lacks the nodes for it.
fn build<R: rand::Rng + CryptoRng + ?Sized>(
    rng: &mut R,
    doc: &NetworkDocument,
    me: &ClientAddress,
    target: Target<'_>,
) -> Option<Vec<u8>> {
    let gateway = doc.nodes.iter().find(|n| n.key == me.gateway)?;
    let mut route = vec![gateway];
    route.extend(pick_layers(rng, doc)?);
    let (last, address, message, seal_to) = match target {
        Target::Client(to, plain) => {
            let last = doc.nodes.iter().find(|n| n.key == to.gateway)?;
            (last, to.mailbox, plain.to_vec(), to.key)
        }
        Target::Loop => (gateway, me.mailbox, Plain::Loop.encode().ok()?, me.key),
        Target::Drop => {
            let last = doc.pick(rng, Position::Service)?;
            let mut key = [0u8; 32];
            rng.fill(&mut key[..]);
            let public =
                x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(key)).to_bytes();
            let mut address = [0u8; 32];
            rng.fill(&mut address[..]);
            (
                last,
                address,
                Plain::Message(Vec::new()).encode().ok()?,
                public,
            )
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

/// One node of each mix layer, in layer order, or `None` when a layer is
/// empty.
fn pick_layers<'d, R: rand::Rng + ?Sized>(
    rng: &mut R,
    doc: &'d NetworkDocument,
) -> Option<Vec<&'d NodeEntry>> {
    (1..=doc.layers)
        .map(|l| doc.pick(rng, Position::Layer(l)))
        .collect()
}

/// A reply block to this session: from `first` (a recipient's gateway, or
/// nothing for a service node, which hands replies to layer 1 itself)
/// through one node per layer to this session's gateway and mailbox,
/// with a fresh non-zero SURB id. `None` when the document lacks a node
/// or its epoch ends too soon for the block to be usable.
fn block_to_me<R: rand::Rng + CryptoRng + ?Sized>(
    rng: &mut R,
    doc: &NetworkDocument,
    me: &ClientAddress,
    first: Option<&NodeEntry>,
) -> Option<(ReplyBlock, [u8; SURB_ID_LEN], sphinx::SurbRecovery)> {
    let mine = doc.nodes.iter().find(|x| x.key == me.gateway)?;
    let mut route: Vec<&NodeEntry> = first.into_iter().collect();
    route.extend(pick_layers(rng, doc)?);
    route.push(mine);
    let mut id = [0u8; SURB_ID_LEN];
    while id == [0; SURB_ID_LEN] {
        rng.fill(&mut id[..]);
    }
    let (surb, recovery, delays) = doc.reply_block(rng, &route, &me.mailbox, id)?;
    // Nodes keep an epoch's key through the next epoch (`directory.md`).
    let expires = doc
        .schedule
        .start(doc.epoch.saturating_add(2))
        .saturating_sub(delays.as_secs() + 1 + REPLY_LINK_MARGIN_SECS);
    (expires > unix_now()).then_some((
        ReplyBlock {
            epoch: doc.epoch,
            expires,
            surb,
        },
        id,
        recovery,
    ))
}

/// `n` reply blocks through which `to` can answer this session, each
/// starting at `to`'s gateway (`client.md` §5).
fn make_blocks<R: rand::Rng + CryptoRng + ?Sized>(
    rng: &mut R,
    doc: &NetworkDocument,
    me: &ClientAddress,
    to: &ClientAddress,
    n: usize,
) -> Option<Vec<(ReplyBlock, [u8; SURB_ID_LEN], sphinx::SurbRecovery)>> {
    let first = doc.nodes.iter().find(|x| x.key == to.gateway)?;
    (0..n)
        .map(|_| block_to_me(rng, doc, me, Some(first)))
        .collect()
}

struct Builder {
    messages: mpsc::Receiver<Outgoing>,
    frames: mpsc::Sender<Vec<u8>>,
    document: watch::Receiver<Arc<NetworkDocument>>,
    me: ClientAddress,
    replies: SharedReplies,
    stats: Arc<Mutex<SessionStats>>,
    rng: StdRng,
}

impl Builder {
    /// A frame to `to` carrying `n` new reply blocks under `tag` (and
    /// `body`, or nothing for a top-up). The blocks are recorded before
    /// the frame exists, so a reply cannot outrun its block's record.
    fn with_blocks(
        &mut self,
        doc: &NetworkDocument,
        to: &ClientAddress,
        tag: SenderTag,
        n: usize,
        body: Option<Vec<u8>>,
    ) -> Option<Vec<u8>> {
        let made = make_blocks(&mut self.rng, doc, &self.me, to, n);
        let blocks = {
            let mut r = self.replies.lock().ok()?;
            let room = r.outstanding.has_room(n, unix_now());
            match made.filter(|_| room) {
                None => {
                    r.outstanding.unplan(&tag, n);
                    return None;
                }
                Some(made) => made
                    .into_iter()
                    .filter_map(|(block, id, recovery)| {
                        r.outstanding
                            .record(tag, id, recovery, block.expires)
                            .then_some(block)
                    })
                    .collect::<Vec<_>>(),
            }
        };
        if blocks.is_empty() {
            return None;
        }
        if let Ok(mut st) = self.stats.lock() {
            st.blocks_sent += blocks.len() as u64;
            st.top_ups_sent += u64::from(body.is_none());
        }
        let plain = match body {
            Some(body) => Plain::Answerable { tag, blocks, body },
            None => Plain::MoreBlocks { tag, blocks },
        }
        .encode()
        .ok()?;
        build(&mut self.rng, doc, &self.me, Target::Client(to, &plain))
    }
}

/// Builds real messages' frames as they are queued, beside the send loop,
/// so a burst of messages does not hold up the schedule.
async fn build_loop(mut b: Builder) {
    while let Some(item) = b.messages.recv().await {
        let doc = b.document.borrow().clone();
        let frame = match item {
            Outgoing::Frame(f) => Some(f),
            Outgoing::Message(to, body) => Plain::Message(body)
                .encode()
                .ok()
                .and_then(|p| build(&mut b.rng, &doc, &b.me, Target::Client(&to, &p))),
            Outgoing::Answerable {
                to,
                tag,
                body,
                blocks,
            } => b.with_blocks(&doc, &to, tag, blocks, Some(body)),
            Outgoing::MoreBlocks { to, tag, blocks } => b.with_blocks(&doc, &to, tag, blocks, None),
        };
        match frame {
            Some(frame) => {
                if b.frames.send(frame).await.is_err() {
                    return;
                }
            }
            None => {
                if let Ok(mut st) = b.stats.lock() {
                    st.unsendable += 1;
                }
            }
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
        let (slot, is_loop) = tokio::select! {
            slot = loops.reserve() => (slot, true),
            slot = drops.reserve() => (slot, false),
        };
        let Ok(slot) = slot else { return };
        let doc = document.borrow().clone();
        let target = if is_loop { Target::Loop } else { Target::Drop };
        match build(&mut rng, &doc, &me, target) {
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
                        Target::Loop
                    } else {
                        Target::Drop
                    };
                    match build(&mut s.rng, &doc, &s.me, cover) {
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
                push_capped(&mut st.sent, (s.started.elapsed(), kind));
            }
        }
    }
}

struct Receiver {
    stream: libp2p::Stream,
    /// To reopen the delivery stream when it breaks.
    control: libp2p_stream::Control,
    gateway: PeerId,
    mailbox_secret: Zeroizing<[u8; 32]>,
    key: Zeroizing<[u8; 32]>,
    messages: mpsc::Sender<Received>,
    replenish: Replenish,
    document: watch::Receiver<Arc<NetworkDocument>>,
    started: tokio::time::Instant,
}

/// Keeps the recipients of active conversations supplied with reply
/// blocks (`client.md` §5).
#[derive(Clone)]
struct Replenish {
    replies: SharedReplies,
    outgoing: mpsc::Sender<Outgoing>,
    stats: Arc<Mutex<SessionStats>>,
}

impl Replenish {
    /// Queues top-ups for the conversations (or just `only`) whose
    /// recipient holds fewer blocks usable beyond `now + horizon` than
    /// asked for. A full send queue leaves the rest to the next check.
    fn run(&self, now: u64, horizon: u64, only: Option<SenderTag>) {
        let Ok(mut r) = self.replies.lock() else {
            return;
        };
        r.outstanding.purge(now);
        for w in r.outstanding.wanted(now, horizon) {
            if only.is_some_and(|t| t != w.tag) {
                continue;
            }
            let Ok(permit) = self.outgoing.try_reserve() else {
                return;
            };
            let blocks = w.blocks.min(MAX_BLOCKS_PER_MESSAGE);
            r.outstanding.plan(&w.tag, blocks);
            permit.send(Outgoing::MoreBlocks {
                to: w.to,
                tag: w.tag,
                blocks,
            });
        }
    }

    fn count(&self, f: impl FnOnce(&mut SessionStats)) {
        if let Ok(mut st) = self.stats.lock() {
            f(&mut st);
        }
    }
}

impl Receiver {
    /// A payload that came through one of this session's reply blocks.
    fn on_reply(&self, stored: &Stored) -> Option<Received> {
        let r = &self.replenish;
        // A service node's answer to a request of this session.
        let waiting = r.replies.lock().ok()?.requests.remove(&stored.surb_id);
        if let Some((recovery, answer)) = waiting {
            match recovery
                .recover(&stored.payload)
                .ok()
                .and_then(|plain| decode_reply(&plain).ok().map(<[u8]>::to_vec))
            {
                Some(body) => {
                    let _ = answer.send(body);
                }
                None => r.count(|st| st.undecodable += 1),
            }
            return None;
        }
        let taken = r.replies.lock().ok()?.outstanding.take(&stored.surb_id);
        let Some((tag, recovery)) = taken else {
            r.count(|st| st.unknown_replies += 1);
            return None;
        };
        let body = recovery
            .recover(&stored.payload)
            .ok()
            .and_then(|plain| decode_reply(&plain).ok().map(<[u8]>::to_vec));
        let Some(body) = body else {
            r.count(|st| st.undecodable += 1);
            return None;
        };
        r.count(|st| {
            st.received += 1;
            st.replies_received += 1;
        });
        let (now, epoch_secs) = (unix_now(), self.document.borrow().schedule.epoch_secs);
        if let Ok(mut replies) = r.replies.lock() {
            replies.outstanding.touch(&tag, now + 2 * epoch_secs);
        }
        // A block was used: send its replacement now.
        r.run(now, epoch_secs / 2, Some(tag));
        Some(Received::Reply { tag, body })
    }

    /// A forward payload: a message, a loop, or reply blocks.
    fn on_forward(&self, stored: &Stored) -> Option<Received> {
        let r = &self.replenish;
        let plain = sphinx::open_forward_payload(&stored.payload)
            .ok()
            .and_then(|sealed| envelope::open(&self.key, &sealed).ok())
            .and_then(|plain| Plain::decode(&plain).ok());
        let add = |tag, blocks: Vec<ReplyBlock>| {
            let n = blocks.len() as u64;
            let dropped = r
                .replies
                .lock()
                .map_or(n as usize, |mut replies| replies.pool.add(tag, blocks));
            r.count(|st| {
                st.blocks_received += n;
                st.blocks_dropped += dropped as u64;
            });
        };
        match plain {
            None => {
                r.count(|st| st.undecodable += 1);
                None
            }
            Some(Plain::Loop) => {
                r.count(|st| st.loops_returned += 1);
                None
            }
            Some(Plain::Message(body)) => {
                r.count(|st| st.received += 1);
                Some(Received::Message(body))
            }
            Some(Plain::Answerable { tag, blocks, body }) => {
                add(tag, blocks);
                r.count(|st| st.received += 1);
                Some(Received::Answerable { from: tag, body })
            }
            Some(Plain::MoreBlocks { tag, blocks }) => {
                add(tag, blocks);
                None
            }
        }
    }
}

/// Opens the delivery stream and names the mailbox (`client.md` §3).
async fn open_deliveries(
    control: &mut libp2p_stream::Control,
    gateway: PeerId,
    mailbox_secret: &[u8; 32],
) -> Result<libp2p::Stream, ClientError> {
    let session = |e: std::io::Error| ClientError::Network(format!("gateway session: {e}"));
    let mut stream = tokio::time::timeout(
        net::MIX_READY_TIMEOUT,
        control.open_stream(gateway, CLIENT_PROTOCOL),
    )
    .await
    .map_err(|_| ClientError::Network("the gateway did not answer".into()))?
    .map_err(|e| ClientError::Network(format!("gateway session: {e}")))?;
    stream.write_all(mailbox_secret).await.map_err(session)?;
    stream.flush().await.map_err(session)?;
    Ok(stream)
}

async fn receive_loop(mut r: Receiver) {
    let mut frame = vec![0u8; DELIVERY_FRAME_SIZE];
    loop {
        if r.stream.read_exact(&mut frame).await.is_err() {
            // The gateway went away: reopen with backoff. The mailbox
            // outlives the session (`client.md` §3), so what arrived
            // meanwhile is delivered then.
            let mut backoff = Duration::from_millis(200);
            loop {
                tokio::time::sleep(backoff).await;
                match open_deliveries(&mut r.control, r.gateway, &r.mailbox_secret).await {
                    Ok(stream) => {
                        r.stream = stream;
                        break;
                    }
                    Err(_) => backoff = (backoff * 2).min(Duration::from_secs(10)),
                }
            }
            r.replenish.count(|st| st.reconnects += 1);
            continue;
        }
        let at = r.started.elapsed();
        let stored = match decode_delivery(&frame) {
            Ok(s) => s,
            Err(_) => {
                r.replenish.count(|st| st.undecodable += 1);
                continue;
            }
        };
        r.replenish
            .count(|st| push_capped(&mut st.deliveries, (at, stored.is_some())));
        let Some(stored) = stored else { continue };
        let received = if stored.surb_id == [0; SURB_ID_LEN] {
            r.on_forward(&stored)
        } else {
            r.on_reply(&stored)
        };
        // A full queue drops the message (counted): the reader is not
        // keeping up.
        if let Some(m) = received {
            r.replenish.count(|st| push_capped(&mut st.received_at, at));
            if r.messages.try_send(m).is_err() {
                r.replenish.count(|st| st.dropped_unread += 1);
            }
        }
    }
}

async fn refresh_loop(
    mut control: libp2p_stream::Control,
    authority: PeerId,
    trust: Trust,
    document: watch::Sender<Arc<NetworkDocument>>,
    addresses: mpsc::Sender<AddressBook>,
    replenish: Replenish,
) {
    loop {
        let epoch_secs = document.borrow().schedule.epoch_secs;
        tokio::time::sleep(Duration::from_secs((epoch_secs / 60).clamp(1, 30))).await;
        // Blocks about to expire are replaced while still usable.
        replenish.run(unix_now(), epoch_secs / 2, None);
        // A failed refresh keeps the last document, which stays usable
        // until it expires; the next attempt comes soon. Failures (an
        // unreachable authority, a bad signature) are counted with the
        // last reason, for [`Session::health`].
        let fetched = fetch(&mut control, authority, &trust).await;
        replenish.count(|st| match &fetched {
            Ok(_) => st.last_document_error = None,
            Err(e) => {
                st.document_refresh_failures += 1;
                st.last_document_error = Some(e.to_string());
            }
        });
        if let Ok(doc) = fetched {
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
