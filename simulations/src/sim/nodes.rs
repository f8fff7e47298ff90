//! The simulator's nodes: the events of nodes: the engine, releases and deliveries, node loops, arrivals (`Simulation`'s fields are
//! the parent module's).

use super::*;

impl<M: Mode> Simulation<M> {
    /// Whether the adversary holds node `n`.
    pub(super) fn held_by_adversary(&self, n: u32) -> bool {
        self.held_by_adversary
            .get(n as usize)
            .copied()
            .unwrap_or(false)
    }

    /// How many packets node `n` holds to forward and to deliver.
    pub(super) fn held_by_role(&self, n: u32) -> (usize, usize) {
        let engine = &self.nodes[n as usize].engine;
        let deliver = engine.held_to_deliver();
        (engine.held().saturating_sub(deliver), deliver)
    }

    /// Hands out what node `n` released; `held` is how many packets it
    /// held to forward and to deliver before releasing them (each
    /// departure takes its share of its pool's tag masses).
    pub(super) fn drain_node(&mut self, n: u32, held: (usize, usize)) {
        let (mut forward, mut deliver) = held;
        let exact = self.held_by_adversary(n);
        while let Some(t) = self.nodes[n as usize].engine.poll_transmit() {
            let masses = match exact {
                true => M::frame_id(&t.frame)
                    .map_or_else(Carried::default, |id| self.entropy.depart_exact(n, id)),
                false => self.entropy.depart(n, Role::Forward, forward),
            };
            forward = forward.saturating_sub(1);
            self.n_minus_1_output(n, Some(&t.frame));
            match node_index(&t.next) {
                Some(next) => self.transmit(next, t.frame, masses),
                None => self.entropy.lose(&masses),
            }
        }
        while let Some(e) = self.nodes[n as usize].engine.poll_event() {
            match e {
                Event::Delivered(d) => {
                    self.n_minus_1_delivered(n, &d.payload);
                    let masses = match exact {
                        true => M::message_id(&d.payload)
                            .map_or_else(Carried::default, |id| self.entropy.depart_exact(n, id)),
                        false => self.entropy.depart(n, Role::Deliver, deliver),
                    };
                    deliver = deliver.saturating_sub(1);
                    // A tagged message's own delivery: what the
                    // adversary's distribution gives the truth.
                    let own = M::message_id(&d.payload).and_then(|id| self.tagged_ids.remove(&id));
                    if n < self.scenario.layers * self.scenario.nodes_per_layer {
                        // A mix delivers only its own returning loops.
                        self.entropy.rule_out(&masses);
                    } else if !masses.tags.is_empty() || own.is_some() {
                        let recipient = self.recipient_of(&d.payload);
                        if let (Some(tag), Some(r)) = (own, recipient) {
                            let true_sender = self.metrics.tag_sender.get(tag as usize).copied();
                            // The pair's other sender: Loopix's second target.
                            let other = self.metrics.tag_sender.get((tag ^ 1) as usize).copied();
                            let sender = true_sender.and_then(|c| {
                                crate::entropy::carried::sender_view(&masses.senders, c, other)
                            });
                            if let (Some((gateway, exit)), Some(c)) =
                                (self.scenario.focus, true_sender)
                            {
                                let mixes = self.scenario.layers * self.scenario.nodes_per_layer;
                                let own = self.clients.get(c as usize).map(|cl| cl.gateway);
                                if gateway.is_none_or(|g| own == Some(g))
                                    && exit.is_none_or(|e| n == mixes + e)
                                {
                                    self.metrics.focus_tags.insert(tag);
                                }
                            }
                            self.entropy.tags.true_exit(tag, r, &masses.tags, sender);
                        }
                        self.entropy.exit(&masses, ExitPoint { recipient, node: n });
                    }
                    self.on_delivery(n, &d.payload);
                }
                // Drops are summed from the engines' counters at the end.
                Event::Dropped(_) => {}
            }
        }
        // A packet released without an output (the engine's output queue
        // full) took its share with it: lost.
        let (f_now, d_now) = self.held_by_role(n);
        for (role, mut left, now) in [
            (Role::Forward, forward, f_now),
            (Role::Deliver, deliver, d_now),
        ] {
            while left > now && !exact {
                let masses = self.entropy.depart(n, role, left);
                self.entropy.lose(&masses);
                left -= 1;
            }
        }
    }

    /// The client whose mailbox a payload delivered at a provider goes
    /// to; `None` for what the provider discards (drop cover, node
    /// loops).
    fn recipient_of(&self, payload: &[u8]) -> Option<u32> {
        let record = M::message_id(payload).and_then(|id| self.sent.get(&id))?;
        matches!(record.kind, Kind::Real | Kind::Loop | Kind::PayloadCover).then_some(record.dest)
    }

    /// Node `n` released `payload` as its exit.
    pub(super) fn on_delivery(&mut self, n: u32, payload: &[u8]) {
        let Some(id) = M::message_id(payload) else {
            self.metrics.undecodable += 1;
            return;
        };
        let Some(record) = self.sent.remove(&id) else {
            return;
        };
        let for_a_client = matches!(record.kind, Kind::Real | Kind::Loop | Kind::PayloadCover)
            && record.dest < self.scenario.clients;
        // A gateway files only its own clients' payloads: one for a
        // client elsewhere (it changed gateway since the packet was
        // built) has no mailbox here and is lost.
        if for_a_client && self.provider(self.clients[record.dest as usize].gateway) != n {
            self.metrics.misdelivered += 1;
            return;
        }
        if record.kind == Kind::Real {
            self.deliveries.push((id, self.now));
        }
        if let Some(obs) = self.disclosure.as_mut()
            && matches!(record.kind, Kind::Real | Kind::Loop | Kind::PayloadCover)
        {
            obs.deposits
                .push((self.now.since_origin().as_secs_f64(), record.dest));
        }
        if let Some((n, loop_id)) = record.node_loop {
            self.loop_returned(n, &loop_id);
        }
        self.metrics.delivered(record.kind);
        let network = self.now - record.sent;
        if self.mailboxes.on() && for_a_client {
            let waiting = mailbox::Waiting {
                kind: record.kind,
                created: record.created,
                network,
                filed: self.now,
                block: record.block,
            };
            self.file(record.dest, waiting);
        } else if record.kind == Kind::Real {
            self.metrics
                .latencies(record.created, network, self.now - record.created);
            if let Some(b) = record.block {
                self.reached_client(b, self.now, record.created, network);
            }
        }
    }

    pub(super) fn on_node(&mut self, n: u32) {
        let now = self.now;
        if self.nodes[n as usize].wake != Some(now) {
            return;
        }
        self.nodes[n as usize].wake = None;
        let before = self.nodes[n as usize].engine.held();
        let held = self.held_by_role(n);
        {
            let node = &mut self.nodes[n as usize];
            node.engine.handle_timeout(now, &mut node.rng);
            let after = node.engine.held();
            if let mtos_mixnode::MixingMode::Pool { min_pool, .. } = self.scenario.mixing
                && after < before
            {
                self.metrics.pool_flushes += 1;
                if after < min_pool {
                    self.metrics.pool_threshold_violations += 1;
                }
            }
        }
        self.drain_node(n, held);
        self.node_loops(n);
        self.reschedule_node(n);
        self.n_minus_1_check(n);
    }

    /// Node `n`'s loop cover: loops judged, alarms noted, loops due sent
    /// (the production machine and route rule).
    pub(super) fn node_loops(&mut self, n: u32) {
        let now = self.now;
        // Nothing is due before the machine's own next instant (a loop
        // running out of time, or the next send): most wakes of a node
        // are its engine's, and skip the machine.
        if self.nodes[n as usize].loops_due.is_none_or(|t| t > now) {
            return;
        }
        let timeout = self.loop_timeout;
        let position = self.topology.position(n);
        loop {
            let node = &mut self.nodes[n as usize];
            let Some(loops) = node.loops.as_mut() else {
                return;
            };
            loops.handle_timeout(now);
            let send = loops.poll_send(now, &self.topology, n, position, timeout, &mut node.rng);
            node.loops_due = loops.poll_timeout();
            self.note_alarm(n);
            let Some(send) = send else {
                return;
            };
            self.n_minus_1_output(n, None);
            let id = self.send_packet(
                Kind::NodeLoop,
                send.route,
                NODE_LOOP_BASE + n,
                RngOf::Node(n),
            );
            if let Some(record) = self.sent.get_mut(&id) {
                record.node_loop = Some((n, send.id));
            }
        }
    }

    /// Records an alarm node `n`'s loops raised, if any.
    pub(super) fn note_alarm(&mut self, n: u32) {
        let alarm = self.nodes[n as usize]
            .loops
            .as_mut()
            .and_then(|l| l.tracker().poll_alarm());
        if let Some(a) = alarm {
            let at = a.at.since_origin().as_secs_f64();
            let suspect = a.suspect.as_ref().and_then(crate::loops::node_of);
            self.metrics
                .node_loops
                .alarms
                .push((n, at, a.loss, suspect));
        }
    }

    pub(super) fn on_arrive(&mut self, n: u32, slot: usize) {
        let Some((frame, masses)) = self.in_flight.get_mut(slot).and_then(Option::take) else {
            return;
        };
        self.free_slots.push(slot);
        let now = self.now;
        if self.churn.is_down(n) {
            match self.is_provider(n) {
                true => self.churn.report.gateway_lost_arriving += 1,
                false => self.churn.report.lost_arriving += 1,
            }
            self.entropy.lose(&masses);
            return;
        }
        // An attacking node discards everything it receives.
        if let Some(a) = self.scenario.attack
            && a.kind == crate::scenario::AttackKind::Drop
            && a.dropping_node == n
            && now.since_origin().as_secs_f64() >= a.from_s
            && !(a.spare_loops && self.is_node_loop(&frame))
        {
            self.metrics.attack_drops += 1;
            self.entropy.lose(&masses);
            return;
        }
        if let Some((frame, masses)) = self.n_minus_1_arrival(n, frame, masses) {
            self.admit(n, frame, masses);
        }
    }

    /// Frame `frame`, carrying `masses`, goes into node `n`'s engine.
    pub(super) fn admit(&mut self, n: u32, frame: Vec<u8>, masses: Carried) {
        let now = self.now;
        // Releases due at this very instant happen before the frame joins
        // (otherwise it would count in their anonymity set).
        if self.nodes[n as usize].wake.is_some_and(|w| w <= now) {
            self.on_node(n);
        }
        let before = self.held_by_role(n);
        {
            let node = &mut self.nodes[n as usize];
            node.engine.handle_frame(now, &frame, &mut node.rng);
        }
        // Only a packet the node took in joins its anonymity set, in the
        // pool of its role; one it dropped takes its mass with it.
        let after = self.held_by_role(n);
        if let Some(m) = self.max_held.get_mut(n as usize) {
            *m = (*m).max(after.0 + after.1);
        }
        let taken = after.0 + after.1 > before.0 + before.1;
        if taken {
            self.n_minus_1_taken(n, &frame);
        }
        if taken && self.held_by_adversary(n) {
            match M::frame_id(&frame) {
                Some(id) => self.entropy.arrive_exact(n, id, masses),
                None => self.entropy.lose(&masses),
            }
        } else if after.1 > before.1 {
            self.entropy.arrive(n, Role::Deliver, &masses);
        } else if after.0 > before.0 {
            self.entropy.arrive(n, Role::Forward, &masses);
        } else {
            self.entropy.lose(&masses);
        }
        self.drain_node(n, after);
        self.reschedule_node(n);
        self.n_minus_1_check(n);
    }

    pub(super) fn loop_returned(&mut self, n: u32, id: &LoopId) {
        let now = self.now;
        let node = &mut self.nodes[n as usize];
        if let Some(loops) = node.loops.as_mut() {
            loops.returned(now, id);
            node.loops_due = loops.poll_timeout();
        }
        self.note_alarm(n);
    }
}
