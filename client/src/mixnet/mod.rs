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
use mtos_mixnode::cover::Send;
use mtos_mixnode::directory::{NetworkDocument, NodeEntry, Ticket, Trust};
use mtos_mixnode::mailbox::{DELIVERY_FRAME_SIZE, Stored, decode_delivery};
use mtos_mixnode::service::{Op, Request, Response};
use mtos_mixnode::windows::{ClassTimeline, WindowedSchedule};
use mtos_net::unix_now;
use mtos_net::{self as net, CLIENT_PROTOCOL, NodeEntryExt};
use mtos_net::{AuthorityAddr, NetError};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::sync::{mpsc, oneshot, watch};
use zeroize::Zeroizing;

use crate::ClientError;
use crate::replies::{
    MAX_BLOCKS_PER_MESSAGE, Outstanding, Plain, ReplyBlock, ReplyPool, SenderTag, TAG_LEN,
    conversation_expires, decode_reply, encode_reply, max_answerable,
};

mod builders;
mod cover;
mod network;
mod reader;
mod requests;
mod stats;
mod tasks;
#[cfg(test)]
mod tests;
mod windows;

use builders::*;
use cover::*;
use network::*;
pub use network::{NetworkConfig, SessionOptions};
use reader::*;
pub use requests::{Answer, PutOutcome, STAMPS_AHEAD, pick_service, probe_groups};
use stats::*;
pub use stats::{STATS_SERIES_LIMIT, SentKind, SessionStats};
use tasks::*;
use windows::*;

/// Real messages waiting for a payload-stream slot.
pub const SEND_QUEUE: usize = 1_000;
/// Received messages waiting for [`Session::recv`].
pub const RECEIVE_QUEUE: usize = 1_000;
/// The longest message [`Session::send`] takes.
pub const MAX_MESSAGE: usize = MAX_CLIENT_MESSAGE - 1;

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
    /// A message carrying `blocks` new reply blocks for key epoch
    /// `epoch` under `tag`.
    Answerable {
        to: ClientAddress,
        tag: SenderTag,
        body: Vec<u8>,
        blocks: usize,
        epoch: u32,
    },
    /// Reply blocks alone, for key epoch `epoch`, replenishing what `to`
    /// holds for `tag`.
    MoreBlocks {
        to: ClientAddress,
        tag: SenderTag,
        blocks: usize,
        epoch: u32,
    },
    /// A frame built already: a request, whose answer comes back
    /// (`returns`), or a reply through someone's block, which does not.
    Frame { frame: Vec<u8>, returns: bool },
}

/// A real frame for a payload slot, and whether something comes back for
/// it (a request's answer) or not (a message: [`DeliveryBalance`]).
pub(super) struct Real {
    pub(super) frame: Vec<u8>,
    pub(super) returns: bool,
}

/// Both sides of reply blocks: those this session handed out, and those
/// it holds to answer others.
#[derive(Default)]
struct Replies {
    outstanding: Outstanding,
    pool: ReplyPool,
    /// Service requests waiting for their answer, by reply block id.
    requests: HashMap<[u8; SURB_ID_LEN], (sphinx::SurbRecovery, AnswerTx)>,
    /// This session's own cover, in flight as replies.
    cover: CoverReplies,
}

impl std::fmt::Debug for Replies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replies")
            .field("outstanding", &self.outstanding)
            .field("requests", &self.requests.len())
            .field("cover", &self.cover.len())
            .finish_non_exhaustive()
    }
}

/// Service requests a session waits on at once.
pub const MAX_PENDING_REQUESTS: usize = 1_024;

type SharedReplies = Arc<Mutex<Replies>>;

/// Where a service node's answer to one request goes: its body, or why
/// the reply that came back was unusable.
type AnswerTx = oneshot::Sender<Result<Vec<u8>, NetError>>;

/// A session with a gateway.
pub struct Session {
    address: ClientAddress,
    peer: PeerId,
    outgoing: mpsc::Sender<Outgoing>,
    incoming: mpsc::Receiver<Received>,
    replies: SharedReplies,
    stats: Arc<Mutex<SessionStats>>,
    document: watch::Receiver<Arc<NetworkDocument>>,
    windows: Arc<SessionWindows>,
    /// Asks the receiver to open the session again (a window now).
    reopen: mpsc::Sender<()>,
    /// Service nodes caught lying: not asked again by this session.
    avoided: Mutex<std::collections::HashSet<[u8; 32]>>,
    /// The stamp effort replicas last asked for above the document's
    /// floor, and when; puts start from it for a while (`storage.md` §2).
    stamp_effort: Mutex<Option<(u32, std::time::Instant)>>,
    /// Chunk stamps made ahead of their puts ([`Session::prepare_stamp`]),
    /// by locator, epoch and effort: a put takes its own.
    stamps: Mutex<HashMap<(Locator, u32, u32), mtos_crypto::stamp::Stamp>>,
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

impl Session {
    /// Connects to a random gateway of the network with a fresh libp2p
    /// identity and a fresh mailbox, and starts the cover schedule.
    /// A link that breaks or a gateway that closes the session while it
    /// opens is asked again, twice, after 0.5 and 1 s, each time under a
    /// fresh identity (a real client would not give up on one broken
    /// link).
    pub async fn connect(config: &NetworkConfig) -> Result<Self, ClientError> {
        Self::connect_with(config, &SessionOptions::default()).await
    }

    /// [`Session::connect`] with `options`: a gateway to keep (a screen's
    /// guard) and the seed of the cover schedule.
    pub async fn connect_with(
        config: &NetworkConfig,
        options: &SessionOptions,
    ) -> Result<Self, ClientError> {
        let mut backoff = Duration::from_millis(500);
        let mut attempt = 0;
        loop {
            let keypair = libp2p::identity::Keypair::generate_ed25519();
            let swarm = net::build_swarm(keypair, 64).map_err(|e| NetError::Link(e.to_string()))?;
            match Self::connect_over(config, swarm, options, |_| true).await {
                Err(ClientError::Network(NetError::Link(_) | NetError::Timeout(_)))
                    if attempt < 2 =>
                {
                    attempt += 1;
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                other => return other,
            }
        }
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
        for a in &config.authorities {
            crate::tor::tor_target(&a.addr)
                .map_err(|e| NetError::Config(format!("an authority through Tor: {e}")))?;
        }
        let keypair = libp2p::identity::Keypair::generate_ed25519();
        let swarm = crate::tor::build_swarm(keypair, tor, 64)?;
        Self::connect_over(config, swarm, &SessionOptions::default(), |n| {
            n.multiaddrs().iter().any(crate::tor::reachable)
        })
        .await
    }

    async fn connect_over(
        config: &NetworkConfig,
        mut swarm: libp2p::Swarm<net::Behaviour>,
        options: &SessionOptions,
        usable: impl Fn(&NodeEntry) -> bool,
    ) -> Result<Self, ClientError> {
        let trust = config.trust()?;
        for a in &config.authorities {
            swarm.add_peer_address(a.peer, a.addr.clone());
        }
        let authorities = config.authorities.clone();
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
        let doc = fetch(&mut control, &authorities, &trust).await?;
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
            return Err(NetError::NoRoute("a gateway this session can reach".into()).into());
        }
        // The gateway asked for while the document lists it (a screen's
        // guard); otherwise one drawn uniformly.
        let gateway = match options
            .gateway
            .and_then(|g| gateways.iter().find(|n| n.key == g))
        {
            Some(kept) => (*kept).clone(),
            None => gateways[rng.random_range(0..gateways.len())].clone(),
        };
        let gateway_peer = gateway
            .peer()
            .map_err(|e| NetError::Config(format!("gateway key: {e}")))?;
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
        let asked = options
            .ticket
            .unwrap_or_else(|| ticket_for(options.schedule_seed, &mut rng));
        let windows = SessionWindows::new(asked, 0);
        let wire = windows.wire(&doc);
        // The delivery stream first: register the mailbox.
        let mut deliveries = open_deliveries(
            &mut control,
            (gateway_peer, gateway.key),
            (&mailbox_secret, peer),
            doc.epoch,
            wire.0,
        )
        .await?;
        // The gateway admits this session's mix frames once it has
        // checked its work, which its first frame shows.
        let (granted, first) = first_delivery(&mut deliveries).await?;
        let mix = net::open_mix_stream(&mut control, gateway_peer).await?;

        let stats = Arc::new(Mutex::new(SessionStats::default()));
        let started = tokio::time::Instant::now();
        windows.anchor(Duration::ZERO);
        windows.set_grant(wire, granted);
        let windows = Arc::new(windows);
        let (reopen_tx, reopen_rx) = mpsc::channel(1);
        let (doc_tx, doc_rx) = watch::channel(Arc::new(doc));
        let (out_tx, out_rx) = mpsc::channel(SEND_QUEUE);
        let (frames_tx, frames_rx) = mpsc::channel(SEND_QUEUE);
        let (loops_tx, loops_rx) = mpsc::channel(COVER_READY);
        let (drops_tx, drops_rx) = mpsc::channel(COVER_READY);
        let (covers_tx, covers_rx) = mpsc::channel(COVER_READY);
        let replies = SharedReplies::default();
        let balance = Arc::new(DeliveryBalance::default());
        let cover_builder = tokio::spawn(cover_loop(CoverBuilder {
            loops: loops_tx,
            drops: drops_tx,
            covers: covers_tx,
            document: doc_rx.clone(),
            me: address,
            replies: replies.clone(),
            stats: stats.clone(),
            rng: StdRng::from_rng(&mut rng),
        }));
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
            covers: covers_rx,
            replies: replies.clone(),
            balance: balance.clone(),
            stats: stats.clone(),
            started,
            windows: windows.clone(),
            // Its own generator, drawn from for nothing but the schedule's
            // instants: with a given seed they are the same whatever the
            // session has to send.
            schedule_rng: match options.schedule_seed {
                Some(seed) => StdRng::from_seed(seed),
                None => StdRng::from_rng(&mut rng),
            },
            rng,
        }));
        let replenish = Replenish {
            replies: replies.clone(),
            outgoing: out_tx.clone(),
            stats: stats.clone(),
            balance,
        };
        let receiver = tokio::spawn(receive_loop(
            Receiver {
                stream: deliveries,
                control: control.clone(),
                gateway: gateway_peer,
                gateway_key: address.gateway,
                me: peer,
                mailbox_secret,
                messages: in_tx,
                started,
                reader: Reader {
                    key: key_secret,
                    replenish: replenish.clone(),
                    document: doc_rx.clone(),
                    seen: SeenIds::default(),
                },
                windows: windows.clone(),
                reopen: reopen_rx,
                reopen_self: reopen_tx.clone(),
            },
            first,
            wire.1,
        ));
        let refresher = tokio::spawn(refresh_loop(
            control,
            authorities,
            trust,
            doc_tx,
            addr_tx,
            replenish,
        ));
        Ok(Self {
            address,
            peer,
            outgoing: out_tx,
            incoming: in_rx,
            replies,
            stats,
            document: doc_rx,
            windows,
            reopen: reopen_tx,
            avoided: Mutex::default(),
            stamp_effort: Mutex::new(None),
            stamps: Mutex::default(),
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

    /// The ticket this session asked its gateway for bulk windows under
    /// (`client.md` §4.1; [`Ticket::NONE`]: none), and whether it was
    /// granted.
    pub fn windows(&self) -> (Ticket, bool) {
        (self.windows.asked(), self.windows.granted())
    }

    /// Starts a bulk window now (`client.md` §4.1): the session opens
    /// again under a ticket of the cohort whose window is running, so it
    /// sends at the bulk rates for the rest of that window and then in
    /// that cohort's windows. This leaks: the gateway and any observer of
    /// the link see the session change cohort the moment it has work,
    /// which is what scheduled windows hide. Returns the new ticket (the
    /// gateway may not grant it: [`Session::windows`] shows its answer
    /// once the session is open again); an error when the network has
    /// no bulk windows.
    pub fn window_now(&self) -> Result<Ticket, ClientError> {
        let doc = self.document();
        let ticket = ticket_for_now(
            &doc.rates,
            &doc.schedule,
            net::unix_now_ms(),
            &mut rand::rng(),
        )
        .ok_or_else(|| ClientError::Invalid("the network has no bulk windows".into()))?;
        self.windows.set_asked(ticket);
        // A request already waiting does the same.
        let _ = self.reopen.try_send(());
        Ok(ticket)
    }

    /// The classes of this session's clock under the current document:
    /// its schedule's zero in Unix ms, and the windows it follows.
    pub fn class_timeline(&self) -> ClassTimeline {
        self.windows.timeline(&self.document())
    }

    /// Queues a message for `to`; it leaves in the next payload-stream
    /// slot. Fails when the queue is full or the message too long.
    pub fn send(&self, to: &ClientAddress, message: &[u8]) -> Result<(), ClientError> {
        if message.len() > MAX_MESSAGE {
            return Err(ClientError::Invalid(format!(
                "message of {} bytes exceeds {MAX_MESSAGE}",
                message.len()
            )));
        }
        self.outgoing
            .try_send(Outgoing::Message(*to, message.to_vec()))
            .map_err(send_error)
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
            return Err(ClientError::Invalid(format!(
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
        let permit = self.outgoing.try_reserve().map_err(send_error)?;
        let doc = self.document();
        let active_until = unix_now() + 2 * doc.schedule.epoch_secs;
        // Blocks for the key epoch of this session's packets, which its
        // correspondent's are most likely under too; the session adds the
        // next epoch's before it begins (`client.md` §5).
        let epoch = doc.epoch;
        let tag = {
            let mut r = self.replies.lock().map_err(|_| poisoned())?;
            let tag = r.outstanding.tag_for(to, blocks, active_until, random_tag);
            r.outstanding.plan(&tag, epoch, blocks);
            tag
        };
        permit.send(Outgoing::Answerable {
            to: *to,
            tag,
            body: message.to_vec(),
            blocks,
            epoch,
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
        let permit = self.outgoing.try_reserve().map_err(send_error)?;
        let now = unix_now();
        // The key epoch this session's own packets are built under.
        let epoch = self.document().epoch;
        let block = self
            .replies
            .lock()
            .map_err(|_| poisoned())?
            .pool
            .take(from, now, epoch)?;
        let (first, frame) = block
            .reply_frame(&plain)
            .map_err(|e| NetError::BadAnswer(format!("reply block: {e}")))?;
        // A block starts at the gateway of the address it was sent to.
        if first.0 != self.address.gateway {
            return Err(NetError::BadAnswer(
                "the reply block starts at another gateway than this session's".into(),
            )
            .into());
        }
        permit.send(Outgoing::Frame {
            frame,
            returns: false,
        });
        if let Ok(mut st) = self.stats.lock() {
            st.replies_sent += 1;
        }
        Ok(())
    }

    /// Usable reply blocks held for `from`.
    pub fn reply_blocks(&self, from: &SenderTag) -> usize {
        let now = unix_now();
        let epoch = self.document().epoch;
        self.replies
            .lock()
            .map_or(0, |r| r.pool.available(from, now, epoch))
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
        Err(NetError::DocumentExpired(format!(
            "the network document for epoch {} expired at {} (now {now}): {why}",
            doc.epoch, doc.valid_until
        ))
        .into())
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

/// A send (or reservation) on the send queue refused: full (try later)
/// or closed (this session is over).
fn send_error<T>(e: mpsc::error::TrySendError<T>) -> ClientError {
    match e {
        mpsc::error::TrySendError::Full(_) => NetError::QueueFull("the send queue".into()),
        mpsc::error::TrySendError::Closed(_) => NetError::Closed("the session ended".into()),
    }
    .into()
}

fn poisoned() -> ClientError {
    NetError::Closed("the session's reply table is unusable".into()).into()
}

fn random_tag() -> [u8; TAG_LEN] {
    rand::rng().random()
}
