//! The engine loop, which alone owns the engine: timers from
//! `poll_timeout`, sends from `poll_transmit`, final-hop deliveries, key
//! rotation, and a packet leaves only once its replay tag is on disk.

use super::*;

/// Something the engine released.
pub(super) enum Output {
    Forward(Transmit),
    Deliver(mtos_mixnode::engine::Delivery),
}

pub(super) struct EngineLoop {
    /// The Sphinx threads (`None`: this loop does the work itself).
    pub(super) pool: Option<SphinxPool>,
    pub(super) engine: MixEngine,
    pub(super) rng: StdRng,
    pub(super) origin: tokio::time::Instant,
    pub(super) metrics: Metrics,
    pub(super) last: Counters,
    pub(super) journal: mpsc::Sender<TagBatch>,
    pub(super) committed: watch::Receiver<u64>,
    /// Tags accepted so far (their sequence numbers).
    pub(super) accepted: u64,
    /// Released frames waiting for their tags to be committed, with the
    /// sequence number that must be on disk first.
    pub(super) gated: std::collections::VecDeque<(u64, Output)>,
    pub(super) gated_limit: usize,
    pub(super) topology: SharedTopology,
    pub(super) outbound: HashMap<PeerId, mpsc::Sender<Vec<u8>>>,
    pub(super) control: libp2p_stream::Control,
    pub(super) commands: mpsc::Sender<SwarmCommand>,
    pub(super) schedule: mtos_mixnode::directory::EpochSchedule,
    pub(super) keystore: KeyStore,
    pub(super) replay: ReplayDb,
    pub(super) identity: Identity,
    pub(super) descriptor: watch::Sender<Vec<u8>>,
    pub(super) listen: watch::Receiver<Vec<Multiaddr>>,
    pub(super) config: NodeConfig,
    pub(super) announce: Vec<Multiaddr>,
    /// After a failed rotation: when to try again.
    pub(super) rotation_retry: Option<tokio::time::Instant>,
    /// A gateway's mailboxes.
    pub(super) mailboxes: Option<Arc<Mutex<Mailboxes>>>,
    /// This node's loop cover.
    pub(super) loops: crate::loops::LoopDriver,
    /// What its final-hop payloads are for.
    pub(super) final_hop: FinalHopRule,
    /// A service node's request queue.
    pub(super) service: Option<mpsc::Sender<Vec<u8>>>,
}

impl EngineLoop {
    pub(super) fn now(&self) -> Instant {
        Instant::ZERO + self.origin.elapsed()
    }

    pub(super) fn deadline(&self, at: Instant) -> tokio::time::Instant {
        self.origin + at.saturating_since(Instant::ZERO)
    }

    /// Runs until `shutdown`; an error if the node cannot go on.
    pub(super) async fn run(
        &mut self,
        frames: &InboundFrames,
        mut sends: mpsc::Receiver<Transmit>,
        mut shutdown: std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Result<(), NodeError> {
        loop {
            let timer = self.engine.poll_timeout().map(|t| self.deadline(t));
            let rotation = self.rotation_deadline();
            let loops = self.deadline(self.loops.poll_timeout());
            let waiting = !frames.is_empty();
            let room = self.pool.as_ref().is_none_or(SphinxPool::has_room);
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
                // Before frames: a flood of frames must not stop the loops
                // that would reveal it, nor the service node's answers.
                () = tokio::time::sleep_until(loops) => self.node_loops(),
                Some(t) = sends.recv() => self.send(t),
                // Frames the Sphinx threads unwrapped, taken in arrival
                // order.
                done = async {
                    match self.pool.as_mut() {
                        Some(pool) => pool.next_done().await,
                        None => std::future::pending().await,
                    }
                } => {
                    let Some((seq, results)) = done else {
                        return Err(NodeError::Config(
                            "every Sphinx thread stopped".into(),
                        ));
                    };
                    let now = self.now();
                    if let Some(pool) = self.pool.as_mut() {
                        // Every job back by now, in one turn: their tags
                        // go to the replay database in one commit.
                        let mut back = Some((seq, results));
                        while let Some((seq, results)) = back {
                            for u in pool.file(seq, results) {
                                self.engine.accept(now, u, &mut self.rng);
                            }
                            back = pool.try_done();
                        }
                    }
                }
                () = std::future::ready(()), if waiting && room => {
                    let now = self.now();
                    // A full engine drops before any cryptography, as
                    // `handle_frame` does: no thread's time spent on it.
                    let full = self.engine.held() >= self.engine.config().queue_limit;
                    match self.pool.as_mut().filter(|_| !full) {
                        Some(pool) => {
                            // The keys of now: a rotation since the last
                            // job is in this one's.
                            let keys = Arc::new(self.engine.worker_keys());
                            while pool.has_room() {
                                let batch = frames.pop(JOB_FRAMES);
                                if batch.is_empty() {
                                    break;
                                }
                                if let Err(batch) = pool.submit(keys.clone(), batch) {
                                    // No worker takes jobs: the frames
                                    // are handled here, none lost.
                                    for frame in batch {
                                        self.engine.handle_frame(now, &frame, &mut self.rng);
                                    }
                                    break;
                                }
                            }
                        }
                        None => {
                            for frame in frames.pop(BATCH) {
                                self.engine.handle_frame(now, &frame, &mut self.rng);
                            }
                        }
                    }
                }
                // Nothing waiting: sleep until a link queues a frame.
                () = frames.ready(), if !waiting => continue,
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
    pub(super) async fn after_input(&mut self) {
        let records = self.engine.take_journal();
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

    /// A payload for which this node is the final hop, handled as the
    /// core's final-hop rule says (`mtos_mixnode::dispatch`).
    pub(super) fn deliver(&mut self, d: mtos_mixnode::engine::Delivery) {
        match self.final_hop.classify(&d.destination) {
            FinalHop::ServiceRequest => {
                // A request to this service node (`storage.md` §4).
                let Some(queue) = &self.service else { return };
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
            FinalHop::OwnLoop(id) => {
                // One of this node's loops (or a forgery, which is ignored).
                let now = self.now();
                self.loops.returned(now, &id);
                self.loops.export(&self.metrics);
            }
            FinalHop::Mailbox { address, surb_id } => {
                let Some(mailboxes) = &self.mailboxes else {
                    return;
                };
                let Ok(mut boxes) = mailboxes.lock() else {
                    return;
                };
                let filed = boxes.push(
                    address,
                    Stored {
                        surb_id,
                        payload: d.payload,
                    },
                );
                self.metrics
                    .mailbox_messages
                    .with_label_values(&[filed.name()])
                    .inc();
                self.metrics.mailbox_held.set(boxes.held() as i64);
            }
            FinalHop::Discard => {
                tracing::trace!(bytes = d.payload.len(), "payload for nobody here discarded");
            }
        }
    }

    /// Wakes the loop cover: loops judged, loops due sent.
    pub(super) fn node_loops(&mut self) {
        let now = self.now();
        let topology = self.topology.borrow().clone();
        // Follow the document's delays (checked at every loop wake, at
        // least every 5 s): senders draw their delays under the current
        // cap, and a packet within it must not be dropped here.
        if let Some(t) = &topology {
            let mixing = &t.document.mixing;
            let (mean, max) = (
                Duration::from_millis(mixing.mean_delay_ms),
                Duration::from_millis(mixing.max_delay_ms),
            );
            let config = *self.engine.config();
            if (config.mean_delay, config.max_delay) != (mean, max) {
                tracing::info!(
                    mean_ms = mixing.mean_delay_ms,
                    max_ms = mixing.max_delay_ms,
                    "the network's mixing delays changed"
                );
                self.engine.set_delays(mean, max);
            }
            // And its mode: every node mixes alike.
            let mode = mixing.engine_config(config.queue_limit).mode;
            if mode != config.mode {
                tracing::info!(mode = ?mixing.mode, "the network's mixing mode changed");
                self.engine.set_mode(now, mode, &mut self.rng);
            }
        }
        for t in self.loops.wake(now, topology.as_deref(), &mut self.rng) {
            self.send(t);
        }
        self.loops.export(&self.metrics);
        // At every loop wake-up, at least every 5 s.
        self.metrics.sync_replay(self.engine.keys());
    }

    pub(super) fn send(&mut self, t: Transmit) {
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

    pub(super) fn rotation_deadline(&self) -> tokio::time::Instant {
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
    pub(super) async fn rotate(&mut self) {
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
        let Some(advanced) = self.engine.keys_mut().advance_to(EpochKey {
            epoch: target,
            secret,
        }) else {
            return;
        };
        // Erase first, so at most three keys are ever on disk.
        if let Err(e) = self.keystore.erase_before(advanced.erase_before) {
            tracing::error!(error = %e, "cannot erase an old Sphinx key");
        }
        if let Err(e) = self.replay.erase_before(advanced.erase_before) {
            tracing::warn!(error = %e, "cannot prune old replay tags");
        }
        let next = advanced.next;
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
    pub(super) async fn publish_descriptor(&mut self) {
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
                since: None,
                salt: None,
                family: None,
                key,
                peer_id: peer.to_string(),
                addrs: addrs
                    .iter()
                    .take(mtos_mixnode::directory::MAX_ADDRS)
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
