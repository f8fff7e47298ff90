//! A gateway's client sessions (`/mtos/client/2`): each connected client
//! gets delivery frames from its mailbox at a constant rate, real or
//! dummy; expired mailboxes are swept.

use super::*;

/// Payloads one mailbox holds.
pub(super) const MAILBOX_LIMIT: usize = 1_000;
/// Payloads all of a gateway's mailboxes hold (about 82 MiB at 4,113
/// bytes each).
pub(super) const MAILBOXES_LIMIT: usize = 20_000;

/// Sessions one connection (a libp2p identity) may hold at once: a
/// client needs one, two while it reconnects.
pub(super) const SESSIONS_PER_PEER: usize = 4;

pub(super) struct ClientSessions {
    pub(super) mailboxes: Arc<Mutex<Mailboxes>>,
    pub(super) topology: SharedTopology,
    pub(super) metrics: Metrics,
    pub(super) permits: Arc<tokio::sync::Semaphore>,
    /// Open sessions per connection and per source address.
    pub(super) limits: Mutex<SessionLimits<PeerId>>,
    /// Connected peers' source addresses (from the swarm task).
    pub(super) remote_ips: RemoteIps,
    /// This gateway's node key (sessions' work is bound to it).
    pub(super) me: [u8; 32],
    /// Peers holding a session whose work was shown.
    pub(super) verified: VerifiedSessions,
    /// Packets a second each Sphinx key admits (`None`: no bound), which
    /// bounds the clients served at once
    /// (`mtos_mixnode::sessions::sessions_for_capacity`).
    pub(super) key_rate: Option<f64>,
}

/// Peers holding sessions whose work was shown, and how many: a gateway
/// admits mix frames from a client only while it holds one, so the
/// per-client rate limit (kept per peer) belongs to a session that cost
/// work, not to an identity minted for free.
#[derive(Clone, Default)]
pub(super) struct VerifiedSessions(Arc<Mutex<HashMap<PeerId, usize>>>);

impl VerifiedSessions {
    /// Whether `peer` holds a verified session.
    pub(super) fn holds(&self, peer: &PeerId) -> bool {
        self.0.lock().is_ok_and(|v| v.contains_key(peer))
    }

    /// Counts a verified session of `peer` until the guard drops, unless
    /// `clients` distinct peers hold one already and `peer` is not among
    /// them (`None`: the gateway serves no more clients).
    fn enter(&self, peer: PeerId, clients: usize) -> Option<VerifiedGuard> {
        let mut v = self.0.lock().ok()?;
        if !v.contains_key(&peer) && v.len() >= clients {
            return None;
        }
        *v.entry(peer).or_insert(0) += 1;
        Some(VerifiedGuard {
            peer,
            sessions: self.clone(),
        })
    }
}

/// A verified session, counted while it lasts.
pub(super) struct VerifiedGuard {
    peer: PeerId,
    sessions: VerifiedSessions,
}

impl Drop for VerifiedGuard {
    fn drop(&mut self) {
        if let Ok(mut v) = self.sessions.0.lock()
            && let Some(n) = v.get_mut(&self.peer)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                v.remove(&self.peer);
            }
        }
    }
}

/// One of a peer's session slots, given back when its session ends.
pub(super) struct SessionSlot {
    peer: PeerId,
    address: Option<AddressPrefix>,
    sessions: Arc<ClientSessions>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl SessionSlot {
    /// A slot for `peer` within its connection's and its source address's
    /// shares (`mtos_mixnode::sessions`) while the gateway has a permit
    /// left (`max_connections` sessions in all), or why not.
    fn take(peer: PeerId, sessions: &Arc<ClientSessions>) -> Result<Self, &'static str> {
        let address = sessions
            .remote_ips
            .lock()
            .ok()
            .and_then(|ips| ips.get(&peer).copied())
            .map(AddressPrefix::of);
        let mut limits = sessions.limits.lock().map_err(|_| "permits")?;
        let permit = sessions
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| "permits")?;
        limits.open(&peer, address).map_err(|r| match r {
            SessionRefusal::Connection => "connection",
            SessionRefusal::Address => "address",
        })?;
        Ok(Self {
            peer,
            address,
            sessions: sessions.clone(),
            _permit: permit,
        })
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        if let Ok(mut limits) = self.sessions.limits.lock() {
            limits.close(&self.peer, self.address);
        }
    }
}

pub(super) async fn client_task(
    mut incoming: libp2p_stream::IncomingStreams,
    sessions: ClientSessions,
) {
    let sessions = Arc::new(sessions);
    while let Some((peer, stream)) = incoming.next().await {
        // Never the peer in logs: it is a client. A peer over its share,
        // or a gateway out of permits, gets its stream dropped.
        match SessionSlot::take(peer, &sessions) {
            Ok(slot) => {
                tokio::spawn(serve_client(stream, sessions.clone(), slot));
            }
            Err(reason) => sessions
                .metrics
                .client_sessions_refused
                .with_label_values(&[reason])
                .inc(),
        }
    }
}

/// Drops, once a minute, mailboxes whose last session closed more than
/// [`mtos_mixnode::mailbox::MAILBOX_KEEP_SECS`] ago, with what they held.
pub(super) async fn expire_mailboxes(mailboxes: Arc<Mutex<Mailboxes>>, metrics: Metrics) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        let Ok(mut m) = mailboxes.lock() else { return };
        let dropped = m.expire(mtos_net::unix_now());
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
pub(super) async fn serve_client(
    mut stream: libp2p::Stream,
    sessions: Arc<ClientSessions>,
    slot: SessionSlot,
) {
    // `mailbox secret || epoch (4, BE) || nonce (8, BE)` (`client.md` §3).
    let mut open = zeroize::Zeroizing::new([0u8; 44]);
    match tokio::time::timeout(net::MIX_READY_TIMEOUT, stream.read_exact(open.as_mut())).await {
        Ok(Ok(())) => {}
        _ => return,
    }
    let mut secret = zeroize::Zeroizing::new([0u8; 32]);
    secret.copy_from_slice(&open[..32]);
    let mailbox = mtos_crypto::envelope::mailbox_id(&secret);
    drop(secret);
    let metrics = &sessions.metrics;
    // The session's work: for this gateway and mailbox, under the key
    // epoch of the gateway's document or one next to it (a client's
    // document may lag or lead across a boundary).
    let mut epoch = [0u8; 4];
    epoch.copy_from_slice(&open[32..36]);
    let epoch = u32::from_be_bytes(epoch);
    let mut nonce = [0u8; 8];
    nonce.copy_from_slice(&open[36..44]);
    let nonce = u64::from_be_bytes(nonce);
    let current = sessions
        .topology
        .borrow()
        .as_ref()
        .map(|t| t.document.epoch);
    let near = current.is_some_and(|c| epoch.abs_diff(c) <= 1);
    if !near
        || !mtos_crypto::work::session_work_ok(
            mtos_crypto::work::WorkFor {
                gateway: &sessions.me,
                epoch,
                mailbox: &mailbox,
                client: &slot.peer.to_bytes(),
            },
            nonce,
            mtos_crypto::work::SESSION_WORK_BITS,
        )
    {
        metrics
            .client_sessions_refused
            .with_label_values(&["work"])
            .inc();
        return;
    }
    // No more clients than the gateway's keys admit packets for.
    let clients = match (sessions.key_rate, sessions.topology.borrow().as_ref()) {
        (Some(rate), Some(t)) => sessions_for_capacity(rate, &t.document.rates),
        _ => usize::MAX,
    };
    let Some(_verified) = sessions.verified.enter(slot.peer, clients) else {
        metrics
            .client_sessions_refused
            .with_label_values(&["capacity"])
            .inc();
        return;
    };
    // Only opened mailboxes take payloads (`client.md` §3).
    if !sessions
        .mailboxes
        .lock()
        .is_ok_and(|mut m| m.open(mailbox, mtos_net::unix_now()))
    {
        return;
    }
    metrics.client_sessions.inc();
    let mut rng = StdRng::from_rng(&mut rand::rng());
    let mut next = tokio::time::Instant::now();
    // The first frame at once: it tells the client its work was checked
    // and its mix frames are admitted (it waits for it, within 10 s,
    // whatever the delivery rate); then one per exponential gap.
    let mut first = true;
    loop {
        if !std::mem::take(&mut first) {
            let rate = sessions
                .topology
                .borrow()
                .as_ref()
                .map_or(1.0, |t| t.document.rates.delivery());
            let mean = Duration::from_secs_f64(1.0 / rate.clamp(0.01, 10_000.0));
            next += mtos_crypto::sphinx::sample_exponential(&mut rng, mean);
            tokio::time::sleep_until(next).await;
        }
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
                let filed = m.put_back(mailbox, s);
                if filed != Filed::Stored {
                    metrics
                        .mailbox_messages
                        .with_label_values(&[filed.name()])
                        .inc();
                }
            }
            break;
        }
        let kind = if stored.is_some() { "real" } else { "dummy" };
        metrics.client_deliveries.with_label_values(&[kind]).inc();
    }
    if let Ok(mut m) = sessions.mailboxes.lock() {
        m.close(&mailbox, mtos_net::unix_now());
    }
    metrics.client_sessions.dec();
}
