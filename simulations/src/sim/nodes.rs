//! The simulator's nodes: the events of nodes: the engine, releases and deliveries, node loops, arrivals (`Simulation`'s fields are
//! the parent module's).

use super::*;

impl<M: Mode> Simulation<M> {
    /// Hands out what node `n` released; `held` is how many packets it
    /// held before releasing them (each departure takes its share of the
    /// node's tag masses).
    pub(super) fn drain_node(&mut self, n: u32, mut held: usize) {
        while let Some(t) = self.nodes[n as usize].engine.poll_transmit() {
            let masses = self.entropy.depart(n, held);
            held = held.saturating_sub(1);
            if let Some(next) = node_index(&t.next) {
                self.transmit(next, t.frame, masses);
            }
        }
        while let Some(e) = self.nodes[n as usize].engine.poll_event() {
            match e {
                Event::Delivered(d) => {
                    let masses = self.entropy.depart(n, held);
                    held = held.saturating_sub(1);
                    self.entropy.exit(&masses);
                    self.on_delivery(&d.payload);
                }
                // Drops are summed from the engines' counters at the end.
                Event::Dropped(_) => {}
            }
        }
    }

    pub(super) fn on_delivery(&mut self, payload: &[u8]) {
        let Some(id) = M::message_id(payload) else {
            self.metrics.undecodable += 1;
            return;
        };
        let Some(record) = self.sent.remove(&id) else {
            return;
        };
        if record.kind == Kind::Real {
            self.deliveries.push((id, self.now));
        }
        if let Some((n, loop_id)) = record.node_loop {
            self.loop_returned(n, &loop_id);
        }
        self.metrics.delivered(
            record.kind,
            record.created,
            self.now - record.sent,
            self.now - record.created,
        );
    }

    pub(super) fn on_node(&mut self, n: u32) {
        let now = self.now;
        if self.nodes[n as usize].wake != Some(now) {
            return;
        }
        self.nodes[n as usize].wake = None;
        let before = self.nodes[n as usize].engine.held();
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
        self.drain_node(n, before);
        self.node_loops(n);
        self.reschedule_node(n);
    }

    /// Node `n`'s loop cover: loops judged, alarms noted, loops due sent
    /// (the production machine and route rule).
    pub(super) fn node_loops(&mut self, n: u32) {
        let now = self.now;
        let (topology, timeout) = (self.topology, self.loop_timeout);
        let position = topology.position(n);
        loop {
            let node = &mut self.nodes[n as usize];
            let Some(loops) = node.loops.as_mut() else {
                return;
            };
            loops.handle_timeout(now);
            let send = loops.poll_send(now, &topology, n, position, timeout, &mut node.rng);
            self.note_alarm(n);
            let Some(send) = send else {
                return;
            };
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
        // An attacking node discards everything it receives.
        if let Some(a) = self.scenario.attack
            && a.dropping_node == n
            && now.since_origin().as_secs_f64() >= a.from_s
        {
            self.metrics.attack_drops += 1;
            return;
        }
        // Releases due at this very instant happen before the frame joins
        // (otherwise it would count in their anonymity set).
        if self.nodes[n as usize].wake.is_some_and(|w| w <= now) {
            self.on_node(n);
        }
        let before = self.nodes[n as usize].engine.held();
        {
            let node = &mut self.nodes[n as usize];
            node.engine.handle_frame(now, &frame, &mut node.rng);
        }
        // Only a packet the node took in joins its anonymity set.
        if self.nodes[n as usize].engine.held() > before {
            self.entropy.arrive(n, &masses);
        }
        let held = self.nodes[n as usize].engine.held();
        self.drain_node(n, held);
        self.reschedule_node(n);
    }

    pub(super) fn loop_returned(&mut self, n: u32, id: &LoopId) {
        let now = self.now;
        if let Some(loops) = self.nodes[n as usize].loops.as_mut() {
            loops.returned(now, id);
        }
        self.note_alarm(n);
    }
}
