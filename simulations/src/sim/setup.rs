//! Setting a run up: the nodes' engines, keys and loops, the clients'
//! schedules, the adversary's nodes, and the first events
//! (`Simulation`'s fields are the parent module's).

use super::*;

impl<M: Mode> Simulation<M> {
    /// Sets up a run of `scenario` with `seed`.
    pub fn new(scenario: Scenario, seed: u64) -> Self {
        let node_count = scenario.node_count();
        let mode = M::new(node_count, seed);
        let config = EngineConfig {
            mode: scenario.mixing,
            mean_delay: scenario.mean_delay,
            max_delay: scenario.max_delay,
            queue_limit: scenario.queue_limit,
            output_limit: scenario.output_limit,
        };
        let start = Instant::ZERO;
        // Replay filters sized for twice the packets each node can expect
        // over a key's life (the whole run, or with `[epochs]` an epoch and
        // its grace): a layer node sees 1/nodes_per_layer of all packets, a
        // provider 2/providers (as gateway and as exit). A fixed size would
        // take gigabytes at 1,000 nodes.
        let key_life = scenario
            .epochs
            .map_or(scenario.duration, |(length, grace)| {
                (length + grace).min(scenario.duration)
            });
        let packets = (f64::from(scenario.clients) * scenario.mean_client_rate()
            + f64::from(node_count) * scenario.cover.node_loop
            + f64::from(scenario.clients) * scenario.send_rate)
            * key_life.as_secs_f64()
            + scenario.trace.len() as f64;
        let mix_nodes = scenario.layers * scenario.nodes_per_layer;
        let expected = |i: u32| -> u64 {
            let share = if i < mix_nodes {
                1.0 / f64::from(scenario.nodes_per_layer)
            } else {
                2.0 / f64::from(scenario.providers)
            };
            ((packets * share * 2.0) as u64).max(1_000)
        };
        let replay: Vec<ReplaySizing> = (0..node_count)
            .map(|i| ReplaySizing {
                expected_per_key: expected(i),
                fp_rate: 1e-6,
                // The simulator sizes each filter for all its node will
                // see: no rate cap.
                per_second: None,
            })
            .collect();
        let nodes = (0..node_count)
            .map(|i| {
                let mut rng = component_rng(seed, "node", u64::from(i));
                let keys = key_ring(
                    &scenario,
                    EpochKey {
                        epoch: EPOCH,
                        secret: mode.key(i),
                    },
                    replay[i as usize],
                );
                let loops = crate::loops::machine(&scenario, start, &mut rng);
                Node {
                    engine: MixEngine::new(config, keys),
                    rng,
                    loops_due: loops.as_ref().and_then(NodeLoops::poll_timeout),
                    loops,
                    wake: None,
                }
            })
            .collect();
        let client_rates = mtos_mixnode::cover::CoverRates {
            node_loop: 0.0,
            ..scenario.cover
        };
        let clients: Vec<Client> = (0..scenario.clients)
            .map(|i| {
                let mut rng = component_rng(seed, "client", u64::from(i));
                // Windows count from the simulation's start (genesis 0,
                // Unix ms 0 at `start`); the ticket is the client's own
                // draw, so cohorts do not follow gateways.
                let ticket = match scenario.bulk {
                    Some(_) => Ticket::draw(&mut rng),
                    None => Ticket::NONE,
                };
                let timeline = ClassTimeline {
                    rates: Rates {
                        payload: client_rates.payload,
                        loops: client_rates.loop_cover,
                        drops: client_rates.drop_cover,
                        node_loops: 0.0,
                        bulk: scenario.bulk,
                    },
                    schedule: EpochSchedule {
                        genesis: 0,
                        epoch_secs: 3_600,
                        heartbeat_secs: DEFAULT_HEARTBEAT_SECS,
                        round_secs: DEFAULT_ROUND_SECS,
                    },
                    ticket,
                    origin_unix_ms: 0,
                };
                let schedule = WindowedSchedule::new(start, timeline, 100_000, &mut rng);
                let next_generate = (scenario.send_rate > 0.0).then(|| {
                    start
                        + sample_exponential(
                            &mut rng,
                            Duration::from_secs_f64(1.0 / scenario.send_rate),
                        )
                });
                Client {
                    schedule,
                    rng,
                    next_generate,
                    gateway: i % scenario.providers,
                    wake: None,
                }
            })
            .collect();
        let topology = SimNodes::new(&scenario);
        let scenario_disclosure = scenario.disclosure;
        let scenario_queue_series_s = scenario.queue_series_s;
        let friends = scenario_disclosure.map_or_else(Vec::new, |d| {
            d.draw_friends(scenario.clients, &mut component_rng(seed, "disclosure", 0))
        });
        let loop_timeout = crate::loops::timeout(&scenario);
        let held_by_adversary = crate::adversary::held_nodes(&scenario, seed);
        let sender_entropy = scenario.sender_entropy;
        let mut metrics = Metrics::new(&scenario);
        metrics.routes.held = (0..node_count)
            .filter(|n| held_by_adversary[*n as usize])
            .collect();
        let churn = churn::State::new(&scenario, seed);
        let mailboxes = mailbox::State::new(&scenario, seed);
        let replies = replies::State::new(&scenario, seed);
        let mut gateway_clients = vec![Vec::new(); scenario.providers as usize];
        for (c, client) in clients.iter().enumerate() {
            if let Some(g) = gateway_clients.get_mut(client.gateway as usize) {
                g.push(u32::try_from(c).unwrap_or(u32::MAX));
            }
        }
        let mut sim = Self {
            engine_config: config,
            replay,
            churn,
            mailboxes,
            replies,
            gateway_clients,
            metrics,
            scenario,
            mode,
            clients,
            nodes,
            queue: QuaternaryHeap::new(),
            client_queue: QuaternaryHeap::new(),
            in_flight: Vec::new(),
            free_slots: Vec::new(),
            seq: 0,
            now: start,
            next_id: 0,
            link_rng: component_rng(seed, "links", 0),
            route_rng: component_rng(seed, "routes", 0),
            trace_next: 0,
            sent: HashMap::default(),
            deliveries: Vec::new(),
            events: 0,
            entropy: Trackers::new(sender_entropy),
            tagged: 0,
            tagged_ids: HashMap::default(),
            topology,
            loop_timeout,
            held_by_adversary,
            max_held: vec![0; node_count as usize],
            attacker: attack::Attacker::default(),
            next_sample: (scenario_queue_series_s > 0.0).then_some(Instant::ZERO),
            friends,
            friend_rng: component_rng(seed, "disclosure", 1),
            disclosure: scenario_disclosure.map(|_| Default::default()),
        };
        for c in 0..sim.scenario.clients {
            sim.reschedule_client(c);
        }
        for n in 0..node_count {
            sim.reschedule_node(n);
        }
        if let Some(first) = sim.scenario.trace.first() {
            let at = Instant::from_duration(first.at);
            sim.push(at, Ev::Trace);
        }
        if let Some((length, _)) = sim.scenario.epochs {
            sim.push(Instant::ZERO + length, Ev::Epoch);
        }
        sim.start_churn();
        sim
    }
}
