//! A session's tasks: packet building, the cover schedule, the send
//! loop, the delivery receiver and the document refresh.

use super::*;

/// Commands to the session's swarm task.
pub(super) enum AddressBook {
    /// Learn a node's addresses.
    Add(PeerId, Vec<Multiaddr>),
    /// Answer once every earlier command is done.
    Barrier(tokio::sync::oneshot::Sender<()>),
}

pub(super) struct SendLoop {
    pub(super) mix: libp2p::Stream,
    pub(super) control: libp2p_stream::Control,
    pub(super) gateway: PeerId,
    pub(super) me: ClientAddress,
    pub(super) document: watch::Receiver<Arc<NetworkDocument>>,
    /// Real frames, built by [`build_loop`].
    pub(super) outgoing: mpsc::Receiver<Real>,
    /// Ready loop and drop frames, built by [`cover_loop`].
    pub(super) loops: mpsc::Receiver<Vec<u8>>,
    pub(super) drops: mpsc::Receiver<Vec<u8>>,
    /// Ready payload-slot cover, built by [`cover_loop`].
    pub(super) covers: mpsc::Receiver<Vec<u8>>,
    pub(super) replies: SharedReplies,
    /// Deliveries owed or in surplus, which drop and cover slots pay.
    pub(super) balance: Arc<DeliveryBalance>,
    pub(super) stats: Arc<Mutex<SessionStats>>,
    pub(super) started: tokio::time::Instant,
    /// The session's bulk windows.
    pub(super) windows: Arc<SessionWindows>,
    /// Draws the schedule's instants and nothing else.
    pub(super) schedule_rng: StdRng,
    /// Builds frames in slots the cover builder missed.
    pub(super) rng: StdRng,
}

/// How long after an epoch boundary a session fetches the new document
/// at most (a random share of it).
pub(super) const BOUNDARY_JITTER_MS: u64 = 5_000;

/// Cover frames kept ready per kind.
pub(super) const COVER_READY: usize = 4;

pub(super) struct CoverBuilder {
    pub(super) loops: mpsc::Sender<Vec<u8>>,
    pub(super) drops: mpsc::Sender<Vec<u8>>,
    pub(super) covers: mpsc::Sender<Vec<u8>>,
    pub(super) document: watch::Receiver<Arc<NetworkDocument>>,
    pub(super) me: ClientAddress,
    pub(super) replies: SharedReplies,
    pub(super) stats: Arc<Mutex<SessionStats>>,
    pub(super) rng: StdRng,
}

/// The three kinds of cover a session keeps ready.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CoverKind {
    Loop,
    Drop,
    Reply,
}

/// Keeps loop, drop and payload-slot cover frames ready, so the send
/// loop never builds one in a slot's time. (Ready frames carry the keys
/// of the document they were built from; a few stay ready, so they are
/// used long before it expires.)
pub(super) async fn cover_loop(mut c: CoverBuilder) {
    loop {
        let (slot, kind) = tokio::select! {
            slot = c.loops.reserve() => (slot, CoverKind::Loop),
            slot = c.drops.reserve() => (slot, CoverKind::Drop),
            slot = c.covers.reserve() => (slot, CoverKind::Reply),
        };
        let Ok(slot) = slot else { return };
        let doc = c.document.borrow().clone();
        let (me, replies, stats) = (c.me, c.replies.clone(), c.stats.clone());
        let mut rng = StdRng::from_rng(&mut c.rng);
        // Built off the runtime's workers: taking a ready frame wakes this
        // builder, and its public-key work would otherwise hold up the
        // send loop while that very frame is written, so cover would leave
        // a few milliseconds later than real frames.
        let built = tokio::task::spawn_blocking(move || match kind {
            CoverKind::Loop => build(&mut rng, &doc, &me, Target::Loop),
            CoverKind::Drop => build(&mut rng, &doc, &me, Target::Drop),
            // No room to record a cover reply: the slot sends a drop
            // (counted), and the other kinds go on being built.
            CoverKind::Reply => cover_reply(&mut rng, &doc, &me, &replies).or_else(|| {
                if let Ok(mut st) = stats.lock() {
                    st.cover_as_drops += 1;
                }
                build(&mut rng, &doc, &me, Target::Drop)
            }),
        })
        .await;
        let frame = built.ok().flatten();
        match frame {
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
pub(super) async fn send_loop(mut s: SendLoop) {
    // From the session's start: the schedule's instants are offsets from
    // it, the same ones `SessionStats::sent` counts from; the class the
    // session is in at each (its bulk windows) from the document and the
    // ticket its gateway granted.
    let first = s.windows.timeline(&s.document.borrow());
    let mut schedule: WindowedSchedule<Real> = WindowedSchedule::new(
        mtos_mixnode::Instant::ZERO,
        first,
        SEND_QUEUE,
        &mut s.schedule_rng,
    );
    // After a broken link: slots due before this are skipped.
    let mut skip_before: Option<Duration> = None;
    loop {
        // Marked seen, so `changed` below wakes for the next one only.
        let doc = s.document.borrow_and_update().clone();
        // The session's clock against the wall clock: a machine that
        // slept, or a clock stepped, moves the windows on its clock.
        s.windows.anchor(s.started.elapsed());
        // The rates of the current document and grant, not the first
        // ones: the gateway enforces and delivers at the current ones.
        let timeline = s.windows.timeline(&doc);
        if *schedule.timeline() != timeline {
            schedule.set_timeline(core_now(s.started), timeline, &mut s.schedule_rng);
        }
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
            // A new document: its rates are taken at once, not after the
            // gap drawn at the old ones (up to 1/λ, 1,000 s at the lowest).
            changed = s.document.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
            // The delivery stream reopened, its windows granted or not.
            () = s.windows.regranted.notified() => continue,
        }
        let now = core_now(s.started);
        while let Some((due, send)) = schedule.poll_send(now, &mut s.schedule_rng) {
            // The instant it was due, to record how late it left.
            let scheduled = due.saturating_since(mtos_mixnode::Instant::ZERO);
            if let Some(resumed) = skip_before {
                // Every slot that fell due before the link was back is
                // skipped: sent now, they would leave in a burst that
                // shows the break to the gateway.
                if scheduled < resumed {
                    // A real frame in it goes back to wait for the next
                    // payload slot (the order of the queue is lost).
                    if let Send::Real(real) = send {
                        let _ = schedule.push_real(real);
                    }
                    s.count(|st| st.slots_skipped += 1);
                    continue;
                }
                skip_before = None;
            }
            let (kind, sends, real) = plan_slot(send, &s.balance);
            match (kind, sends) {
                (SentKind::Drop, Sends::Cover) => s.count(|st| st.owed_paid += 1),
                (SentKind::PayloadCover, Sends::Drop) => s.count(|st| st.surplus_paid += 1),
                _ => {}
            }
            let frame = match sends {
                Sends::Real => real,
                Sends::Cover => s.covers.try_recv().ok(),
                Sends::Loop => s.loops.try_recv().ok(),
                Sends::Drop => s.drops.try_recv().ok(),
            };
            // The cover builder fell behind: build this one now (a
            // payload slot whose cover reply cannot be recorded sends a
            // drop, counted).
            let frame = match frame {
                Some(f) => f,
                None => {
                    s.count(|st| st.cover_built_in_slot += 1);
                    let built = match sends {
                        Sends::Loop => build(&mut s.rng, &doc, &s.me, Target::Loop),
                        Sends::Cover => {
                            cover_reply(&mut s.rng, &doc, &s.me, &s.replies).or_else(|| {
                                if let Ok(mut st) = s.stats.lock() {
                                    st.cover_as_drops += 1;
                                }
                                build(&mut s.rng, &doc, &s.me, Target::Drop)
                            })
                        }
                        Sends::Real | Sends::Drop => build(&mut s.rng, &doc, &s.me, Target::Drop),
                    };
                    match built {
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
                skip_before = Some(s.started.elapsed());
                s.count(|st| st.link_breaks += 1);
                continue;
            }
            if let Ok(mut st) = s.stats.lock() {
                let at = s.started.elapsed();
                push_capped(&mut st.sent, (at, kind));
                push_capped(&mut st.sent_late, at.saturating_sub(scheduled));
                match kind {
                    SentKind::Real => st.sent_real += 1,
                    _ => st.sent_cover += 1,
                }
            }
        }
    }
}

impl SendLoop {
    fn count(&self, f: impl FnOnce(&mut SessionStats)) {
        if let Ok(mut st) = self.stats.lock() {
            f(&mut st);
        }
    }
}

/// Keeps the recipients of active conversations supplied with reply
/// blocks (`client.md` §5).
#[derive(Clone)]
pub(super) struct Replenish {
    pub(super) replies: SharedReplies,
    pub(super) outgoing: mpsc::Sender<Outgoing>,
    pub(super) stats: Arc<Mutex<SessionStats>>,
    /// Deliveries owed or in surplus: what arrives unasked is counted.
    pub(super) balance: Arc<DeliveryBalance>,
}

impl Replenish {
    /// Queues top-ups for the conversations (or just `only`) whose
    /// recipient holds fewer blocks than asked for of a key epoch it
    /// needs: the current one, and the next once the current ends within
    /// `horizon` (`client.md` §5). A full send queue leaves the rest to
    /// the next check.
    pub(super) fn run(
        &self,
        doc: &NetworkDocument,
        now: u64,
        horizon: u64,
        only: Option<SenderTag>,
    ) {
        let Ok(mut r) = self.replies.lock() else {
            return;
        };
        r.outstanding.purge(now);
        for w in r.outstanding.wanted(&doc.schedule, doc.epoch, now, horizon) {
            if only.is_some_and(|t| t != w.tag) {
                continue;
            }
            let Ok(permit) = self.outgoing.try_reserve() else {
                return;
            };
            let blocks = w.blocks.min(MAX_BLOCKS_PER_MESSAGE);
            r.outstanding.plan(&w.tag, w.epoch, blocks);
            permit.send(Outgoing::MoreBlocks {
                to: w.to,
                tag: w.tag,
                blocks,
                epoch: w.epoch,
            });
        }
    }

    pub(super) fn count(&self, f: impl FnOnce(&mut SessionStats)) {
        if let Ok(mut st) = self.stats.lock() {
            f(&mut st);
        }
    }
}

pub(super) struct Receiver {
    pub(super) stream: libp2p::Stream,
    /// To reopen the delivery stream when it breaks.
    pub(super) control: libp2p_stream::Control,
    pub(super) gateway: PeerId,
    /// The gateway's node key (the session's work is bound to it).
    pub(super) gateway_key: [u8; 32],
    /// This session's libp2p identity (so is it).
    pub(super) me: PeerId,
    pub(super) mailbox_secret: Zeroizing<[u8; 32]>,
    pub(super) messages: mpsc::Sender<Received>,
    pub(super) started: tokio::time::Instant,
    pub(super) reader: Reader,
    /// The session's bulk windows (granted again on each reopening).
    pub(super) windows: Arc<SessionWindows>,
    /// Asks to reopen the session (under a new ticket).
    pub(super) reopen: mpsc::Receiver<()>,
    /// The same, from this loop itself.
    pub(super) reopen_self: mpsc::Sender<()>,
}

/// Opens the delivery stream, names the mailbox and shows the work for
/// the session (`client.md` §3): `mailbox secret || epoch (4, BE) ||
/// nonce (8, BE) || ticket (2, BE)`, the work bound to the gateway's key
/// (`gateway_key`), the key epoch `epoch`, the mailbox and this session's
/// libp2p identity (`me`); the ticket asks for bulk windows (§4.1).
pub(super) async fn open_deliveries(
    control: &mut libp2p_stream::Control,
    (gateway, gateway_key): (PeerId, [u8; 32]),
    (mailbox_secret, me): (&[u8; 32], PeerId),
    epoch: u32,
    ticket: Ticket,
) -> Result<libp2p::Stream, ClientError> {
    let session = |e: std::io::Error| NetError::Link(format!("gateway session: {e}"));
    let mailbox = envelope::mailbox_id(mailbox_secret);
    let start: u64 = rand::random();
    // About 2^16 hashes: off the runtime's workers.
    let client = me.to_bytes();
    let nonce = tokio::task::spawn_blocking(move || {
        let work = mtos_crypto::work::WorkFor {
            gateway: &gateway_key,
            epoch,
            mailbox: &mailbox,
            client: &client,
        };
        mtos_crypto::work::solve_session_work(work, mtos_crypto::work::SESSION_WORK_BITS, start)
    })
    .await
    .map_err(|e| NetError::Link(format!("session work: {e}")))?;
    let mut open = Zeroizing::new([0u8; 46]);
    open[..32].copy_from_slice(mailbox_secret);
    open[32..36].copy_from_slice(&epoch.to_be_bytes());
    open[36..44].copy_from_slice(&nonce.to_be_bytes());
    open[44..].copy_from_slice(&ticket.0.to_be_bytes());
    let mut stream = tokio::time::timeout(
        net::MIX_READY_TIMEOUT,
        control.open_stream(gateway, CLIENT_PROTOCOL),
    )
    .await
    .map_err(|_| NetError::Timeout("the gateway session".into()))?
    .map_err(|e| NetError::Link(format!("gateway session: {e}")))?;
    stream.write_all(open.as_ref()).await.map_err(session)?;
    stream.flush().await.map_err(session)?;
    Ok(stream)
}

/// Reads the gateway's answer and the session's first delivery frame:
/// the gateway answers only once it has checked the session's work
/// (`client.md` §3), and admits the client's mix frames only from then
/// on, so the send loop starts after it. The answer says whether the
/// session's bulk windows are granted (§4.1).
pub(super) async fn first_delivery(
    stream: &mut libp2p::Stream,
) -> Result<(bool, Vec<u8>), ClientError> {
    let mut frame = vec![0u8; 1 + DELIVERY_FRAME_SIZE];
    match tokio::time::timeout(net::MIX_READY_TIMEOUT, stream.read_exact(&mut frame)).await {
        Ok(Ok(())) => {
            let granted = frame.remove(0) == 1;
            Ok((granted, frame))
        }
        Ok(Err(e)) => Err(NetError::Link(format!(
            "the gateway closed the session (refused: its work, or a bound on sessions): {e}"
        ))
        .into()),
        Err(_) => Err(NetError::Timeout("the gateway session's first frame".into()).into()),
    }
}

/// Reads deliveries until the session ends, `first` (already read) first.
pub(super) async fn receive_loop(mut r: Receiver, first: Vec<u8>, asked_under: u16) {
    let mut frame = first;
    let mut have = true;
    let mut asked_under = asked_under;
    loop {
        // Windows turned on or off, or regrouped, in a new document: the
        // session asks again under its cohorts.
        if r.windows.stale(&r.reader.document.borrow(), asked_under) {
            let _ = r.reopen_self.try_send(());
        }
        let broken = !std::mem::take(&mut have)
            && tokio::select! {
                read = r.stream.read_exact(&mut frame) => read.is_err(),
                // A window now (`Session::window_now`): the session opens
                // again under its new ticket.
                Some(()) = r.reopen.recv() => true,
            };
        if broken {
            // The gateway went away: reopen with backoff. The mailbox
            // outlives the session (`client.md` §3), so what arrived
            // meanwhile is delivered then.
            let mut backoff = Duration::from_millis(200);
            loop {
                tokio::time::sleep(backoff).await;
                let epoch = r.reader.document.borrow().epoch;
                let gateway = (r.gateway, r.gateway_key);
                let mailbox = (&*r.mailbox_secret, r.me);
                let wire = r.windows.wire(&r.reader.document.borrow());
                let reopened =
                    match open_deliveries(&mut r.control, gateway, mailbox, epoch, wire.0).await {
                        // The session counts as back once its work is
                        // checked, which its first frame shows; that frame
                        // is read next. A refusal backs off like a broken
                        // link.
                        Ok(mut stream) => first_delivery(&mut stream).await.map(|f| (stream, f)),
                        Err(e) => Err(e),
                    };
                match reopened {
                    Ok((stream, (granted, first))) => {
                        r.stream = stream;
                        r.windows.set_grant(wire, granted);
                        asked_under = wire.1;
                        frame = first;
                        have = true;
                        break;
                    }
                    Err(_) => backoff = (backoff * 2).min(Duration::from_secs(10)),
                }
            }
            r.reader.replenish.count(|st| st.reconnects += 1);
            continue;
        }
        let at = r.started.elapsed();
        let stored = match decode_delivery(&frame) {
            Ok(s) => s,
            Err(_) => {
                r.reader.replenish.count(|st| st.undecodable += 1);
                continue;
            }
        };
        r.reader
            .replenish
            .count(|st| push_capped(&mut st.deliveries, (at, stored.is_some())));
        let Some(stored) = stored else { continue };
        let received = r.reader.read(&stored);
        // A full queue drops the message (counted): the reader is not
        // keeping up.
        if let Some(m) = received {
            r.reader
                .replenish
                .count(|st| push_capped(&mut st.received_at, at));
            if r.messages.try_send(m).is_err() {
                r.reader.replenish.count(|st| st.dropped_unread += 1);
            }
        }
    }
}

pub(super) async fn refresh_loop(
    mut control: libp2p_stream::Control,
    authorities: Vec<mtos_net::AuthorityAddr>,
    trust: Trust,
    document: watch::Sender<Arc<NetworkDocument>>,
    addresses: mpsc::Sender<AddressBook>,
    replenish: Replenish,
) {
    let mut rng = StdRng::from_rng(&mut rand::rng());
    loop {
        let (schedule, epoch) = {
            let d = document.borrow();
            (d.schedule, d.epoch)
        };
        let epoch_secs = schedule.epoch_secs;
        // Every epoch/60 (1 to 30 s), and just after each boundary (within
        // BOUNDARY_JITTER_MS, so that clients do not all ask at once): the
        // session's packets, and the replies it sends, move to the new
        // epoch's key tag together and soon (`client.md` §5).
        // (Once past the boundary with the old document, the usual
        // interval: the authority may not have the new one yet.)
        let every = Duration::from_secs((epoch_secs / 60).clamp(1, 30));
        let next = schedule.start(epoch.saturating_add(1));
        let now = unix_now();
        let wait = if next > now {
            every.min(
                Duration::from_secs(next - now)
                    + Duration::from_millis(rng.random_range(0..BOUNDARY_JITTER_MS)),
            )
        } else {
            every
        };
        tokio::time::sleep(wait).await;
        // The next epoch's blocks are handed out before it begins.
        let doc = document.borrow().clone();
        replenish.run(&doc, unix_now(), epoch_secs / 2, None);
        // A failed refresh keeps the last document, which stays usable
        // until it expires; the next attempt comes soon. Failures (an
        // unreachable authority, a bad signature) are counted with the
        // last reason, for [`Session::health`].
        let fetched = fetch(&mut control, &authorities, &trust).await;
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
