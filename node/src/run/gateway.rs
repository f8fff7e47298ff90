//! A gateway's client sessions (`/mtos/client/3`): each connected client
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

/// Peers holding sessions whose work was shown, how many, and the
/// ticket their bulk windows were granted under: a gateway admits mix
/// frames from a client only while it holds one, so the per-client rate
/// limit (kept per peer) belongs to a session that cost work, not to an
/// identity minted for free.
#[derive(Clone, Default)]
pub(super) struct VerifiedSessions(Arc<Mutex<HashMap<PeerId, Held>>>);

#[derive(Clone, Copy)]
struct Held {
    sessions: usize,
    /// The windows granted ([`Ticket::NONE`]: none).
    ticket: Ticket,
}

impl VerifiedSessions {
    /// Whether `peer` holds a verified session.
    pub(super) fn holds(&self, peer: &PeerId) -> bool {
        self.0.lock().is_ok_and(|v| v.contains_key(peer))
    }

    /// The ticket `peer`'s windows were granted under, if it holds a
    /// session.
    pub(super) fn ticket(&self, peer: &PeerId) -> Option<Ticket> {
        self.0.lock().ok()?.get(peer).map(|h| h.ticket)
    }

    /// Counts a verified session of `peer` until the guard drops, unless
    /// `clients` distinct peers hold one already and `peer` is not among
    /// them (`None`: the gateway serves no more clients). With it, the
    /// ticket its windows are granted under: the one it holds already,
    /// or `asked` while fewer than [`cohort_share`] clients hold windows
    /// in that cohort, or none (`client.md` §4.1).
    fn enter(
        &self,
        peer: PeerId,
        clients: usize,
        asked: Ticket,
        rates: &Rates,
    ) -> Option<(VerifiedGuard, Ticket)> {
        let mut v = self.0.lock().ok()?;
        if !v.contains_key(&peer) && v.len() >= clients {
            return None;
        }
        let ticket = match (v.get(&peer), rates.bulk) {
            (Some(held), _) => held.ticket,
            (None, Some(bulk)) => match asked.cohort(bulk.cohorts) {
                Some(cohort) => {
                    let taken = v
                        .values()
                        .filter(|h| h.ticket.cohort(bulk.cohorts) == Some(cohort))
                        .count();
                    if taken < cohort_share(clients, rates) {
                        asked
                    } else {
                        Ticket::NONE
                    }
                }
                None => Ticket::NONE,
            },
            (None, None) => asked,
        };
        v.entry(peer)
            .or_insert(Held {
                sessions: 0,
                ticket,
            })
            .sessions += 1;
        Some((
            VerifiedGuard {
                peer,
                sessions: self.clone(),
            },
            ticket,
        ))
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
            && let Some(h) = v.get_mut(&self.peer)
        {
            h.sessions = h.sessions.saturating_sub(1);
            if h.sessions == 0 {
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
    // `mailbox secret || epoch (4, BE) || nonce (8, BE) || ticket (2, BE)`
    // (`client.md` §3).
    let mut open = zeroize::Zeroizing::new([0u8; 46]);
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
    let asked = Ticket(u16::from_be_bytes([open[44], open[45]]));
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
    let rates = sessions
        .topology
        .borrow()
        .as_ref()
        .map(|t| t.document.rates);
    let clients = match (sessions.key_rate, rates) {
        (Some(rate), Some(r)) => sessions_for_capacity(rate, &r),
        _ => usize::MAX,
    };
    let no_windows = Rates {
        bulk: None,
        ..rates.unwrap_or(Rates {
            payload: 1.0,
            loops: 0.0,
            drops: 0.0,
            node_loops: 0.0,
            bulk: None,
        })
    };
    let entered = sessions.verified.enter(
        slot.peer,
        clients,
        asked,
        rates.as_ref().unwrap_or(&no_windows),
    );
    let Some((_verified, ticket)) = entered else {
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
    // The session's answer: whether its windows are granted (`client.md`
    // §3, §4.1). Its first frame follows at once: it tells the client its
    // work was checked and its mix frames are admitted (it waits for it,
    // within 10 s, whatever the delivery rate); then one per exponential
    // gap at the rate of the class it is in.
    let granted = [u8::from(ticket != Ticket::NONE)];
    let answered = async {
        stream.write_all(&granted).await?;
        stream.flush().await
    };
    if !matches!(
        tokio::time::timeout(WRITE_TIMEOUT, answered).await,
        Ok(Ok(()))
    ) {
        if let Ok(mut m) = sessions.mailboxes.lock() {
            m.close(&mailbox, mtos_net::unix_now());
        }
        metrics.client_sessions.dec();
        return;
    }
    let mut rng = StdRng::from_rng(&mut rand::rng());
    let mut next = tokio::time::Instant::now();
    let mut first = true;
    loop {
        if !std::mem::take(&mut first) {
            next = next_delivery(&sessions.topology, ticket, next, &mut rng);
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

/// When the frame after one written at `last` is due: one exponential gap
/// at the delivery rate of the client's class (`client.md` §4.1). A gap
/// that would cross a switch of class is drawn again from the switch at
/// the new class's rate (the gap is memoryless, so the stream is a
/// Poisson process at each class's rate while it is in it).
fn next_delivery(
    topology: &SharedTopology,
    ticket: Ticket,
    last: tokio::time::Instant,
    rng: &mut StdRng,
) -> tokio::time::Instant {
    let doc = topology.borrow().as_ref().map(|t| t.document.clone());
    let (now, now_ms) = (tokio::time::Instant::now(), unix_ms());
    // Unix ms of an instant, by the offset of now.
    let at_ms = |t: tokio::time::Instant| -> u64 {
        if t >= now {
            now_ms.saturating_add(u64::try_from((t - now).as_millis()).unwrap_or(u64::MAX))
        } else {
            now_ms.saturating_sub(u64::try_from((now - t).as_millis()).unwrap_or(u64::MAX))
        }
    };
    let mut from = last;
    // A few switches at most in one gap: windows are a second or longer.
    for _ in 0..8 {
        let (rate, change) = match &doc {
            Some(d) => {
                let t = at_ms(from);
                let rate = d.rates.class_at(&d.schedule, ticket, t).delivery();
                let change = d
                    .rates
                    .bulk
                    .and_then(|b| b.next_change(&d.schedule, ticket, t));
                (rate, change)
            }
            None => (1.0, None),
        };
        let mean = Duration::from_secs_f64(1.0 / rate.clamp(0.01, 10_000.0));
        let due = from + mtos_crypto::sphinx::sample_exponential(rng, mean);
        match change {
            Some(c) if at_ms(due) >= c => {
                from = now + Duration::from_millis(c.saturating_sub(now_ms));
                if from < now {
                    from = now;
                }
            }
            _ => return due,
        }
    }
    from
}

/// Unix time, ms.
pub(super) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
