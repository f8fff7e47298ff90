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
    /// The cohort granted, under how many cohorts: a document that
    /// changes them voids the grant (the client asks again).
    grant: Grant,
}

/// A session's bulk windows as its gateway granted them: the cohort (as
/// a ticket: the client names only its cohort) and the number of cohorts
/// it was granted under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Grant {
    pub(super) ticket: Ticket,
    pub(super) cohorts: u16,
}

impl Grant {
    const NONE: Grant = Grant {
        ticket: Ticket::NONE,
        cohorts: 0,
    };

    /// The ticket to follow under `rates`: none once the document's
    /// cohorts differ from those it was granted under.
    pub(super) fn under(self, rates: &Rates) -> Ticket {
        match rates.bulk {
            Some(b) if b.cohorts == self.cohorts => self.ticket,
            _ => Ticket::NONE,
        }
    }
}

impl VerifiedSessions {
    /// Whether `peer` holds a verified session.
    pub(super) fn holds(&self, peer: &PeerId) -> bool {
        self.0.lock().is_ok_and(|v| v.contains_key(peer))
    }

    /// The windows `peer` was granted, if it holds a session.
    pub(super) fn grant(&self, peer: &PeerId) -> Option<Grant> {
        self.0.lock().ok()?.get(peer).map(|h| h.grant)
    }

    /// Counts a verified session of `peer` until the guard drops, unless
    /// `clients` distinct peers hold one already and `peer` is not among
    /// them (`None`: the gateway serves no more clients). With it, the
    /// ticket its windows are granted under: the one it holds already
    /// when it asks for that one again, else `asked` while fewer than
    /// [`cohort_share`] other clients hold windows in that cohort, else
    /// none (`client.md` §4.1). A peer's allowance follows its latest
    /// session's grant (a session opened again for a window now).
    fn enter(
        &self,
        peer: PeerId,
        clients: usize,
        asked: Ticket,
        rates: Option<&Rates>,
    ) -> Option<(VerifiedGuard, Grant)> {
        let mut v = self.0.lock().ok()?;
        if !v.contains_key(&peer) && v.len() >= clients {
            return None;
        }
        let held = v.get(&peer).map(|h| h.grant);
        let grant = match rates.and_then(|r| r.bulk.map(|b| (r, b))) {
            // No windows in this document: none granted, whatever is
            // asked (a grant made now would escape the share once a
            // document brings windows).
            None => Grant::NONE,
            Some((rates, bulk)) => match asked.cohort(bulk.cohorts) {
                None => Grant::NONE,
                Some(cohort) => {
                    let asked = Grant {
                        ticket: Ticket(cohort),
                        cohorts: bulk.cohorts,
                    };
                    // Counted per peer: each holds one grant.
                    let taken = v
                        .iter()
                        .filter(|(p, h)| **p != peer && h.grant == asked)
                        .count();
                    if held == Some(asked) || taken < cohort_share(clients, rates) {
                        asked
                    } else {
                        Grant::NONE
                    }
                }
            },
        };
        let entry = v.entry(peer).or_insert(Held { sessions: 0, grant });
        entry.sessions += 1;
        entry.grant = grant;
        Some((
            VerifiedGuard {
                peer,
                sessions: self.clone(),
            },
            grant,
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
    let entered = sessions
        .verified
        .enter(slot.peer, clients, asked, rates.as_ref());
    let Some((_verified, grant)) = entered else {
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
    let granted = [u8::from(grant.ticket != Ticket::NONE)];
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
            next = next_delivery(&sessions.topology, grant, next, &mut rng);
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
    grant: Grant,
    last: tokio::time::Instant,
    rng: &mut StdRng,
) -> tokio::time::Instant {
    let settings = topology
        .borrow()
        .as_ref()
        .map(|t| (t.document.rates, t.document.schedule));
    let Some((rates, schedule)) = settings else {
        return last + mtos_crypto::sphinx::sample_exponential(rng, Duration::from_secs(1));
    };
    let (now, now_ms) = (tokio::time::Instant::now(), mtos_net::unix_now_ms());
    // Unix ms of an instant, by the offset of now.
    let at_ms = |t: tokio::time::Instant| -> u64 {
        if t >= now {
            now_ms.saturating_add(u64::try_from((t - now).as_millis()).unwrap_or(u64::MAX))
        } else {
            now_ms.saturating_sub(u64::try_from((now - t).as_millis()).unwrap_or(u64::MAX))
        }
    };
    let ticket = grant.under(&rates);
    let mut from = last;
    // Each redraw starts at a switch, a window (a second or more) on from
    // the one before, so this ends; the bound is for a clock gone wrong.
    for _ in 0..10_000 {
        let t = at_ms(from);
        let rate = rates.class_at(&schedule, ticket, t).delivery();
        let change = rates.bulk.and_then(|b| b.next_change(&schedule, ticket, t));
        let mean = Duration::from_secs_f64(1.0 / rate.clamp(0.01, 10_000.0));
        let due = from + mtos_crypto::sphinx::sample_exponential(rng, mean);
        match change {
            Some(c) if at_ms(due) >= c => {
                // From the switch, at the new class's rate.
                from = if c >= now_ms {
                    now + Duration::from_millis(c - now_ms)
                } else {
                    now.checked_sub(Duration::from_millis(now_ms - c))
                        .unwrap_or(now)
                };
            }
            _ => return due,
        }
    }
    from
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use mtos_mixnode::directory::BulkRates;

    use super::*;

    fn rates(bulk: Option<u16>) -> Rates {
        Rates {
            payload: 2.0,
            loops: 1.0,
            drops: 1.0,
            node_loops: 0.0,
            bulk: bulk.map(|cohorts| BulkRates {
                payload: 50.0,
                loops: 1.0,
                drops: 1.0,
                window_secs: 30,
                cohorts,
            }),
        }
    }

    #[test]
    fn a_gateway_grants_a_cohorts_share_of_windows_and_no_more() {
        let v = VerifiedSessions::default();
        let r = rates(Some(20));
        // 60 clients, 20 cohorts: 3 a cohort.
        let mut guards = Vec::new();
        let mut granted = 0;
        for _ in 0..5 {
            let (g, grant) = v.enter(PeerId::random(), 60, Ticket(47), Some(&r)).unwrap();
            granted += usize::from(grant.ticket != Ticket::NONE);
            guards.push(g);
        }
        assert_eq!(granted, 3);
        // Another cohort still has room, and a ticket is told apart only
        // by its cohort.
        let other = PeerId::random();
        let (g, grant) = v.enter(other, 60, Ticket(48), Some(&r)).unwrap();
        assert_eq!(grant.ticket, Ticket(8));
        assert_eq!(grant.under(&r), Ticket(8));
        // The same peer asking again keeps its grant; asking a full
        // cohort loses it (its allowance follows its latest session).
        let (g2, again) = v.enter(other, 60, Ticket(8), Some(&r)).unwrap();
        assert_eq!(again, grant);
        let (g3, moved) = v.enter(other, 60, Ticket(7), Some(&r)).unwrap();
        assert_eq!(moved.ticket, Ticket::NONE);
        assert_eq!(v.grant(&other).unwrap(), moved);
        drop((g, g2, g3));
        assert!(v.grant(&other).is_none());
        // A document without windows grants none, whatever is asked, and
        // one with other cohorts voids a grant made under these.
        let (_g4, none) = v
            .enter(PeerId::random(), 60, Ticket(3), Some(&rates(None)))
            .unwrap();
        assert_eq!(none.ticket, Ticket::NONE);
        let (_g5, made) = v.enter(PeerId::random(), 60, Ticket(9), Some(&r)).unwrap();
        assert_eq!(made.under(&rates(Some(10))), Ticket::NONE);
        assert_eq!(made.under(&rates(None)), Ticket::NONE);
        // No more clients than the bound.
        assert!(v.enter(PeerId::random(), 7, Ticket(1), Some(&r)).is_none());
    }
}
