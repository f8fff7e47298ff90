//! Mix links: one reader per inbound mix stream (admission, token bucket,
//! then the inbound queue, fair between peers, to the engine) and one
//! writer per next hop (a bounded send queue).

use super::*;

/// The core's admission rule with its per-peer buckets (forgotten when a
/// peer's last connection closes).
pub(super) type SharedAdmission = Arc<Mutex<Admission<PeerId>>>;

/// Frames read from the links, waiting for the engine: one queue per
/// peer, served in turn, the longest losing a frame when all are full
/// (`mtos_mixnode::fair`), and a wake-up for the engine loop.
pub(super) struct InboundFrames {
    queue: Mutex<FairQueue<PeerId, Vec<u8>>>,
    ready: tokio::sync::Notify,
}

impl InboundFrames {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            queue: Mutex::new(FairQueue::new(capacity)),
            ready: tokio::sync::Notify::new(),
        }
    }

    /// Queues a frame from `peer`; `false` when a frame (this one or a
    /// longer queue's) was dropped to keep the bound.
    fn push(&self, peer: PeerId, frame: Vec<u8>) -> bool {
        let pushed = match self.queue.lock() {
            Ok(mut q) => q.push(peer, frame),
            Err(_) => Pushed::Dropped,
        };
        self.ready.notify_one();
        pushed == Pushed::Queued
    }

    /// Up to `n` frames in turn by peer.
    pub(super) fn pop(&self, n: usize) -> Vec<Vec<u8>> {
        let Ok(mut q) = self.queue.lock() else {
            return Vec::new();
        };
        std::iter::from_fn(|| q.pop().map(|(_, f)| f))
            .take(n)
            .collect()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.queue.lock().map_or(true, |q| q.is_empty())
    }

    /// Resolves when a frame may have come since the last call.
    pub(super) async fn ready(&self) {
        self.ready.notified().await;
    }
}

pub(super) struct Inbound {
    /// This node's PeerId: its position is the document's.
    pub(super) me: PeerId,
    pub(super) frames: Arc<InboundFrames>,
    pub(super) topology: SharedTopology,
    pub(super) metrics: Metrics,
    pub(super) admission: SharedAdmission,
    pub(super) origin: tokio::time::Instant,
    /// Test-only fault: drop every frame (`[faults] drop_all`).
    pub(super) drop_all: bool,
    /// Open inbound mix streams per peer.
    pub(super) streams: Mutex<HashMap<PeerId, usize>>,
    /// A gateway's clients with a session whose work was shown: only
    /// their mix frames are admitted (`None`: not a gateway).
    pub(super) verified: Option<VerifiedSessions>,
    /// Test-only: where a watching gateway writes client frame times
    /// (`[faults] watch_clients`).
    pub(super) watch: Option<Arc<super::client_watch::ClientWatch>>,
}

/// Holds one of a peer's inbound stream slots while its reader runs.
pub(super) struct StreamSlot {
    pub(super) peer: PeerId,
    pub(super) inbound: Arc<Inbound>,
}

impl StreamSlot {
    pub(super) fn take(peer: PeerId, inbound: &Arc<Inbound>) -> Option<Self> {
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

pub(super) async fn accept_task(mut incoming: libp2p_stream::IncomingStreams, inbound: Inbound) {
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

/// How long before and after a switch of class a client's allowance is
/// the higher class's, ms: clocks a little apart and frames on their way
/// are not throttled at the edges of a window.
const WINDOW_GRACE_MS: u64 = 2_000;

/// Reads fixed-size frames from one stream until it ends. Each frame is
/// admitted (the sender's layer, its token bucket) before it is queued
/// for the engine; every refusal is counted.
pub(super) async fn read_frames(mut stream: libp2p::Stream, slot: StreamSlot) {
    let (peer, inbound) = (slot.peer, slot.inbound.clone());
    if stream.write_all(&[net::MIX_READY]).await.is_err() || stream.flush().await.is_err() {
        return;
    }
    let mut buf = vec![0u8; FRAME_SIZE];
    let mut watched: Option<u64> = None;
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
                            .with_label_values(
                                &[mtos_mixnode::engine::DropReason::WrongSize.name()],
                            )
                            .inc();
                    }
                    return;
                }
                Ok(n) => got += n,
            }
        }
        let (sender, me, layers, client_rate) = match inbound.topology.borrow().as_ref() {
            Some(t) => {
                let sender = t.position_of(&peer);
                // A client's allowance is its class's (`client.md` §4.1):
                // bulk in the windows its session was granted.
                let d = &t.document;
                let ticket = match (sender, &inbound.verified) {
                    (Position::Client, Some(v)) => {
                        v.grant(&peer).map_or(Ticket::NONE, |g| g.under(&d.rates))
                    }
                    _ => Ticket::NONE,
                };
                (
                    sender,
                    // The layer the authorities placed this node in, not
                    // the one its config asked for.
                    t.node_by_peer(&inbound.me).map(NodeEntry::position),
                    d.layers,
                    d.rates.allowance(
                        &d.schedule,
                        ticket,
                        mtos_net::unix_now_ms(),
                        WINDOW_GRACE_MS,
                    ),
                )
            }
            None => (Position::Client, None, 0, 0.0),
        };
        let refuse = |reason| {
            inbound.metrics.frames_received.inc();
            inbound.metrics.driver_drop(reason);
        };
        if sender == Position::Client
            && let Some(watch) = &inbound.watch
        {
            let stream = *watched.get_or_insert_with(|| watch.stream(&peer));
            watch.frame(&peer, stream);
        }
        if inbound.drop_all {
            refuse(DriverDrop::FaultInjected);
            continue;
        }
        // A client's frames only while it holds a session that showed its
        // work (checked before any crypto); one coming before the session
        // is verified, or after it ended, is dropped and counted.
        if sender == Position::Client
            && let Some(verified) = &inbound.verified
            && !verified.holds(&peer)
        {
            refuse(DriverDrop::NoSession);
            continue;
        }
        let now = Instant::ZERO + inbound.origin.elapsed();
        let verdict = match inbound.admission.lock() {
            Ok(mut admission) => {
                if let Some(me) = me {
                    admission.set_position(me);
                }
                admission.admit(now, &peer, sender, layers, client_rate)
            }
            Err(_) => return,
        };
        match verdict {
            Ok(()) => {}
            Err(Refusal::WrongLayer) => {
                // Counted, and the stream closed: this peer has no
                // business sending here.
                refuse(DriverDrop::WrongLayer);
                return;
            }
            Err(Refusal::RateLimited) => {
                refuse(DriverDrop::RateLimited);
                continue;
            }
            Err(Refusal::ClientThrottled) => {
                refuse(DriverDrop::ClientThrottled);
                continue;
            }
        }
        // A drop here is this frame's, or the newest of a peer whose
        // queue is longer: either way one frame is refused as overload.
        if !inbound.frames.push(peer, buf.clone()) {
            refuse(DriverDrop::Overloaded);
        }
    }
}

/// How long a writer with nothing to send keeps its link; the engine loop
/// starts a new writer when frames for that hop come again.
pub(super) const WRITER_IDLE: Duration = Duration::from_secs(300);
/// Longest one write may block before the link counts as dead (a next hop
/// that stops reading must not hold frames forever).
pub(super) const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Inbound mix streams one peer may hold open at once.
pub(super) const STREAMS_PER_PEER: usize = 2;

/// Sends queued frames to one next hop. It connects only while it has a
/// frame to send, reconnects with backoff when the link fails (the frame
/// being written is lost and counted), and ends after [`WRITER_IDLE`].
pub(super) async fn write_frames(
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
