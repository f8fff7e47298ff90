//! The simulator's clients: the events of clients: their cover schedules, message generators and traces (`Simulation`'s fields are
//! the parent module's).

use super::*;

impl<M: Mode> Simulation<M> {
    pub(super) fn on_client(&mut self, c: u32) {
        let now = self.now;
        if self.clients[c as usize].wake != Some(now) {
            return; // superseded by an earlier wake
        }
        self.clients[c as usize].wake = None;
        // New real messages.
        while self.clients[c as usize]
            .next_generate
            .is_some_and(|t| t <= now)
        {
            let clients = self.scenario.clients;
            let rate = self.scenario.send_rate;
            let id = self.next_message_slot();
            let client = &mut self.clients[c as usize];
            let mut recipient = client.rng.random_range(0..clients - 1);
            if recipient >= c {
                recipient += 1;
            }
            // Alice writes to her friends only (`[disclosure]`), picked
            // with the attack's own RNG so that her stream (gaps, cover,
            // delays) is the one she has without the section.
            if self.scenario.disclosure.is_some_and(|d| d.sender == c) && !self.friends.is_empty() {
                recipient = self.friends[self.friend_rng.random_range(0..self.friends.len())];
            }
            let gap = sample_exponential(&mut client.rng, Duration::from_secs_f64(1.0 / rate));
            client.next_generate = client.next_generate.map(|t| t + gap);
            if client
                .schedule
                .push_real(Outgoing {
                    id,
                    recipient,
                    block: None,
                })
                .is_err()
            {
                self.sent.remove(&id);
                self.metrics.client_queue_drops += 1;
            }
        }
        loop {
            let client = &mut self.clients[c as usize];
            let Some((_, send)) = client.schedule.poll_send(now, &mut client.rng) else {
                break;
            };
            let gateway = client.gateway;
            // A client whose gateway is away (`[mix_churn] gateways`)
            // skips its slots, as production's does while its link is
            // broken: a real message in one goes back to its queue (its
            // order lost, as production's).
            if self.churn.is_down(self.provider(gateway)) {
                self.churn.report.slots_skipped += 1;
                if let Send::Real(out) = send {
                    self.queue_real(c, out);
                }
                continue;
            }
            if let Some(obs) = self.disclosure.as_mut() {
                let t = now.since_origin().as_secs_f64();
                obs.client_sends.push((t, c));
                if self.scenario.disclosure.is_some_and(|d| d.sender == c) {
                    obs.sends.push(t);
                    if matches!(send, Send::Real(_)) {
                        obs.real_sends.push(t);
                    }
                }
            }
            match send {
                Send::Real(mut out) => match out.block {
                    // An answer, through the block its message brought.
                    Some(b) => match self.use_block(b, self.provider(gateway)) {
                        Some((route, delays)) => self.real_send(c, out, route, Some(delays)),
                        // Its gateway cannot open a packet built for
                        // another: the frame leaves and is dropped there.
                        None => {
                            self.sent.remove(&out.id);
                            self.metrics.sent(Kind::Real);
                            self.metrics.link_frames += 1;
                        }
                    },
                    None => {
                        let exit = self.provider(self.clients[out.recipient as usize].gateway);
                        let route = self.route(self.provider(gateway), exit);
                        let created = self.sent.get(&out.id).map_or(now, |r| r.created);
                        out.block = self.hand_block(c, out.recipient, created);
                        self.real_send(c, out, route, None);
                    }
                },
                Send::Drop => {
                    let exit = self.topology.pick_provider(&mut self.route_rng);
                    let route = self.route(self.provider(gateway), exit);
                    self.send_packet(Kind::Drop, route, DROP_DESTINATION, RngOf::Client(c));
                }
                // Payload-slot cover comes back through the client's own
                // reply block, as a loop's route does (`client.md` §4).
                Send::PayloadCover => {
                    let g = self.provider(gateway);
                    let route = self.route(g, g);
                    self.send_packet(Kind::PayloadCover, route, c, RngOf::Client(c));
                }
                Send::Loop => {
                    let g = self.provider(gateway);
                    let route = self.route(g, g);
                    self.send_packet(Kind::Loop, route, c, RngOf::Client(c));
                }
                Send::NodeLoop => {}
            }
        }
        self.reschedule_client(c);
    }

    /// Hands the trace rows due now to their senders' queues.
    pub(super) fn on_trace(&mut self) {
        let now = self.now;
        while let Some(t) = self.scenario.trace.get(self.trace_next).copied() {
            if Instant::from_duration(t.at) > now {
                self.push(Instant::from_duration(t.at), Ev::Trace);
                break;
            }
            self.trace_next += 1;
            let id = self.next_message_slot();
            let out = Outgoing {
                id,
                recipient: t.recipient,
                block: None,
            };
            if self.clients[t.sender as usize]
                .schedule
                .push_real(out)
                .is_err()
            {
                self.sent.remove(&id);
                self.metrics.client_queue_drops += 1;
            }
            self.reschedule_client(t.sender);
        }
    }

    /// Real messages get their id when generated, so latency counts the
    /// time spent in the client's queue too.
    pub(super) fn next_message_slot(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.sent.insert(
            id,
            SentRecord {
                kind: Kind::Real,
                // Set when it is sent.
                dest: 0,
                created: self.now,
                sent: self.now,
                node_loop: None,
                block: None,
            },
        );
        id
    }

    /// Client `c` sends real message `out` along `route`, with the
    /// delays given (an answer's, which its block's builder drew) or
    /// drawn now.
    pub(super) fn real_send(
        &mut self,
        c: u32,
        out: Outgoing,
        route: Vec<u32>,
        delays: Option<Vec<Duration>>,
    ) {
        let answer = delays.is_some();
        let delays = delays.unwrap_or_else(|| self.draw_delays(route.len(), RngOf::Client(c)));
        let epoch = self.epoch();
        let frame = self
            .mode
            .build_frame(out.id, &route, &delays, out.recipient, epoch);
        if let Some(entry) = self.sent.get_mut(&out.id) {
            entry.sent = self.now;
            entry.dest = out.recipient;
            entry.block = out.block;
        }
        self.metrics.sent(Kind::Real);
        if self.scenario.adversary.is_some() && self.now.since_origin() >= self.scenario.warmup {
            let held = |n: &u32| self.held_by_adversary(*n);
            let mixes = route
                .get(1..route.len().saturating_sub(1))
                .unwrap_or_default();
            let (mixes_held, all_held) = (mixes.iter().all(held), route.iter().all(held));
            let at = self.now.since_origin().as_secs_f64();
            self.metrics.routes.count(at, mixes_held, all_held);
        }
        // Tags are spread over the measured part of the run: the k-th is
        // the first real message sent at or after its instant
        // (`simulation.md` §2). The adversary sees this packet leave its
        // sender.
        // The second of a pair comes from another sender than the first.
        let partner_sender = (self.tagged % 2 == 1)
            .then(|| self.metrics.tag_sender.last().copied())
            .flatten();
        // No tag in the last half of the tail: a tag placed late (real
        // messages sparse) still has 25 routes' worth of time to leave.
        let last = Instant::from_duration(
            self.scenario
                .duration
                .saturating_sub(self.scenario.tag_tail() / 2),
        );
        let masses = if self.tagged < self.scenario.tagged_messages
            && self.now >= self.scenario.tag_instant(self.tagged)
            && self.now <= last
            && partner_sender != Some(c)
            && !answer
        {
            let tag = self.tagged;
            self.tagged += 1;
            self.metrics
                .tag_sent_s
                .push(self.now.since_origin().as_secs_f64());
            self.metrics.tag_sender.push(c);
            self.tagged_ids.insert(out.id, tag);
            self.entropy.tags.tag(tag)
        } else {
            Vec::new()
        };
        let carried = self.entropy.start(c, masses);
        self.transmit(route[0], frame, carried);
    }
}
