//! The discrete-event loop: clients with the production cover schedule,
//! nodes with the production mix engine, links with latency and loss, all
//! under virtual time. Every component has its own RNG derived from the
//! run's seed, and events at equal times run in insertion order, so a seed
//! and a scenario give byte-identical results.

use rustc_hash::FxHashMap as HashMap;
use std::cmp::{Ordering, Reverse};

use dary_heap::QuaternaryHeap;
use std::time::Duration;

use mtos_crypto::sphinx::{
    self, Destination, Hop, SphinxSecret, build_forward, sample_exponential,
};
use mtos_mixnode::cover::Send;
use mtos_mixnode::directory::{
    DEFAULT_HEARTBEAT_SECS, DEFAULT_ROUND_SECS, EpochSchedule, Rates, Ticket,
};
use mtos_mixnode::windows::{ClassTimeline, WindowedSchedule};
use mtos_mixnode::{
    EngineConfig, EpochKey, Event, Instant, KeyRing, MixEngine, PacketFormat, ReplaySizing, Sphinx,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;

use mtos_mixnode::loops::{LoopId, NodeLoops};

use crate::entropy::{Carried, ExitPoint, Role, Trackers};
use crate::loops::SimNodes;
use crate::metrics::Metrics;
use crate::packet::{Abstract, client_address, node_address, node_index};
use crate::scenario::{Latency, Scenario};

mod attack;
mod churn;
mod clients;
mod epochs;
mod events;
mod mailbox;
mod mode;
mod nodes;
mod replies;
mod setup;

pub use attack::NMinusOneReport;

pub use mode::{AbstractMode, Mode, RealMode};

use events::{Ev, Scheduled};

const EPOCH: u32 = 1;
/// One link transmission: its latency, or `None` when the link loses it
/// (probability `loss`).
pub(crate) fn link_delay(latency: Latency, loss: f64, rng: &mut ChaCha20Rng) -> Option<Duration> {
    if loss > 0.0 && rng.random::<f64>() < loss {
        return None;
    }
    let ms = match latency {
        Latency::Constant { ms } => ms,
        Latency::Exponential { mean_ms } => {
            sample_exponential(rng, Duration::from_secs_f64(mean_ms / 1000.0)).as_secs_f64()
                * 1000.0
        }
        Latency::Uniform { min_ms, max_ms } => min_ms + (max_ms - min_ms) * rng.random::<f64>(),
    };
    Some(Duration::from_secs_f64(ms / 1000.0))
}

/// A node's keys: with replay filters, unless the scenario turns them
/// off (`[limits] replay_filters = false`).
pub(crate) fn key_ring<K>(
    scenario: &Scenario,
    key: EpochKey<K>,
    sizing: ReplaySizing,
) -> KeyRing<K> {
    match scenario.replay_filters {
        true => KeyRing::new(key, sizing),
        false => KeyRing::unfiltered(key, sizing),
    }
}

/// Destination of drop cover: discarded on arrival.
pub const DROP_DESTINATION: u32 = u32::MAX;
/// Destination of node loops: node loop packets are addressed to
/// `NODE_LOOP_BASE + node` (far above any client index).
pub const NODE_LOOP_BASE: u32 = 0x8000_0000;

/// A per-component RNG derived from the run's seed.
pub fn component_rng(seed: u64, kind: &str, index: u64) -> ChaCha20Rng {
    let mut h = blake3::Hasher::new_derive_key("mtos-sim v1 component rng");
    h.update(&seed.to_be_bytes());
    h.update(kind.as_bytes());
    h.update(&index.to_be_bytes());
    ChaCha20Rng::from_seed(*h.finalize().as_bytes())
}

/// A message a client has to send.
#[derive(Debug, Clone, Copy)]
struct Outgoing {
    id: u64,
    recipient: u32,
    /// The reply block it carries, or the one it is the answer through
    /// (`[replies]`).
    block: Option<u32>,
}

struct Client {
    schedule: WindowedSchedule<Outgoing>,
    rng: ChaCha20Rng,
    next_generate: Option<Instant>,
    gateway: u32,
    wake: Option<Instant>,
}

struct Node<F: PacketFormat> {
    engine: MixEngine<F>,
    rng: ChaCha20Rng,
    loops: Option<NodeLoops>,
    /// The loops machine's next instant, kept here (refreshed whenever
    /// the machine changes) so that the engine's wakes, most of a node's,
    /// need not read the machine: it lies elsewhere in memory.
    loops_due: Option<Instant>,
    wake: Option<Instant>,
}

/// What a message was, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A real message.
    Real,
    /// Payload-stream cover.
    PayloadCover,
    /// Client loop.
    Loop,
    /// Drop cover.
    Drop,
    /// Node loop.
    NodeLoop,
}

/// A simulation run.
pub struct Simulation<M: Mode> {
    scenario: Scenario,
    mode: M,
    clients: Vec<Client>,
    nodes: Vec<Node<M::Format>>,
    /// Events by time (then insertion), in two heaps popped as one: the
    /// clients' wakes, one per client and far apart, and the rest
    /// (frames in flight, nodes' wakes), where nearly every event is. A
    /// hundred thousand clients' wakes in the one heap made every event
    /// pay for a heap too large for the cache (`large.toml` with 10×
    /// its clients: 0.97 M events/s with one heap).
    queue: QuaternaryHeap<Reverse<Scheduled>>,
    client_queue: QuaternaryHeap<Reverse<Scheduled>>,
    in_flight: Vec<Option<(Vec<u8>, Carried)>>,
    free_slots: Vec<usize>,
    seq: u64,
    now: Instant,
    next_id: u64,
    link_rng: ChaCha20Rng,
    route_rng: ChaCha20Rng,
    trace_next: usize,
    /// Packets in flight, by id (removed on delivery; only inserted,
    /// looked up and removed, never iterated, so its order cannot affect
    /// results).
    sent: HashMap<u64, SentRecord>,
    /// What was measured.
    pub metrics: Metrics,
    /// Real deliveries (id, time), in delivery order.
    pub deliveries: Vec<(u64, Instant)>,
    /// Events processed.
    pub events: u64,
    entropy: Trackers,
    tagged: u32,
    /// Tagged real messages not yet delivered: message id to tag (only
    /// looked up and removed, never iterated).
    tagged_ids: HashMap<u64, u32>,
    /// The network as node loop routes see it.
    topology: SimNodes,
    loop_timeout: Duration,
    /// Nodes the adversary holds (`[adversary]`), by node.
    held_by_adversary: Vec<bool>,
    /// The most packets each node held at once.
    max_held: Vec<usize>,
    /// Where the n−1 attacker is (`[attack] kind = "n-1"`).
    attacker: attack::Attacker,
    /// When the queue series takes its next sample (`None`: off).
    next_sample: Option<Instant>,
    /// Alice's friends and what the disclosure attacker saw
    /// (`[disclosure]`).
    friends: Vec<u32>,
    friend_rng: ChaCha20Rng,
    disclosure: Option<crate::disclosure::Observations>,
    /// The engines' settings, for a mix that comes back (`[mix_churn]`).
    engine_config: EngineConfig,
    /// Each node's replay filter sizing, likewise.
    replay: Vec<ReplaySizing>,
    /// Mix churn's state (`[mix_churn]`).
    churn: churn::State,
    /// The mailboxes (`[mailbox]`).
    mailboxes: mailbox::State,
    /// The reply blocks handed and their answers (`[replies]`).
    replies: replies::State,
    /// Each provider's clients (those whose gateway it is), in no
    /// particular order.
    gateway_clients: Vec<Vec<u32>>,
}

impl<M: Mode> Simulation<M> {
    fn provider(&self, p: u32) -> u32 {
        self.scenario.layers * self.scenario.nodes_per_layer + p
    }

    fn client_wake_time(&self, c: u32) -> Option<Instant> {
        let client = &self.clients[c as usize];
        [client.schedule.poll_timeout(), client.next_generate]
            .into_iter()
            .flatten()
            .min()
    }

    fn reschedule_client(&mut self, c: u32) {
        if let Some(at) = self.client_wake_time(c) {
            let client = &mut self.clients[c as usize];
            if client.wake.is_none_or(|w| at < w) {
                client.wake = Some(at);
                self.push(at, Ev::Client(c));
            }
        }
    }

    fn reschedule_node(&mut self, n: u32) {
        let node = &self.nodes[n as usize];
        let at = match (node.engine.poll_timeout(), node.loops_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(at) = at {
            let node = &mut self.nodes[n as usize];
            if node.wake.is_none_or(|w| at < w) {
                node.wake = Some(at);
                self.push(at, Ev::Node(n));
            }
        }
    }

    fn link_delay(&mut self) -> Option<Duration> {
        link_delay(
            self.scenario.latency,
            self.scenario.loss,
            &mut self.link_rng,
        )
    }

    /// Sends a frame (and the tag masses it carries) over a link to `node`.
    fn transmit(&mut self, node: u32, frame: Vec<u8>, masses: Carried) {
        self.metrics.link_frames += 1;
        let Some(delay) = self.link_delay() else {
            self.metrics.link_losses += 1;
            self.entropy.lose(&masses);
            return;
        };
        let slot = match self.free_slots.pop() {
            Some(s) => {
                self.in_flight[s] = Some((frame, masses));
                s
            }
            None => {
                self.in_flight.push(Some((frame, masses)));
                self.in_flight.len() - 1
            }
        };
        let at = self.now + delay;
        self.push(at, Ev::Arrive(node, slot));
    }

    /// A client's route: `first` (its gateway), one node per layer, `last`
    /// (the production rule, `route::through_layers`).
    fn route(&mut self, first: u32, last: u32) -> Vec<u32> {
        let (layers, per_layer) = (self.scenario.layers, self.scenario.nodes_per_layer);
        match self.scenario.topology {
            crate::scenario::TopologyKind::Stratified => {
                // Every layer has nodes (scenario check), so a route exists.
                mtos_mixnode::route::through_layers(
                    &self.topology,
                    &mut self.route_rng,
                    Some(first),
                    last,
                )
                .unwrap_or_default()
            }
            crate::scenario::TopologyKind::FreeRoute => {
                let mixes = layers * per_layer;
                let mut route = Vec::with_capacity(layers as usize + 2);
                route.push(first);
                for _ in 0..layers {
                    route.push(self.topology.pick_listed(&mut self.route_rng, 0, mixes));
                }
                route.push(last);
                route
            }
            crate::scenario::TopologyKind::Cascade => {
                // A cascade with a mix the document leaves out is not
                // taken (unless every cascade has one).
                let j = self.topology.pick_cascade(&mut self.route_rng);
                let mut route = Vec::with_capacity(layers as usize + 2);
                route.push(first);
                route.extend((0..layers).map(|l| l * per_layer + j));
                route.push(last);
                route
            }
        }
    }

    /// Sends a cover packet (or node loop) whose delays come from `rng_of`.
    fn send_packet(&mut self, kind: Kind, route: Vec<u32>, dest: u32, rng_of: RngOf) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let delays = self.draw_delays(route.len(), rng_of);
        let epoch = self.epoch();
        let frame = self.mode.build_frame(id, &route, &delays, dest, epoch);
        self.sent.insert(
            id,
            SentRecord {
                kind,
                dest,
                created: self.now,
                sent: self.now,
                node_loop: None,
                block: None,
            },
        );
        self.metrics.sent(kind);
        let sender = match rng_of {
            RngOf::Client(c) => c,
            RngOf::Node(n) => crate::entropy::carried::node_sender(n),
        };
        let carried = self.entropy.start(sender, Vec::new());
        self.transmit(route[0], frame, carried);
        id
    }

    /// One sender-chosen delay per hop, Exp(mean), from the sender's RNG.
    fn draw_delays(&mut self, hops: usize, rng_of: RngOf) -> Vec<Duration> {
        let (mean, max) = (self.scenario.mean_delay, self.scenario.max_delay);
        let rng = match rng_of {
            RngOf::Client(c) => &mut self.clients[c as usize].rng,
            RngOf::Node(n) => &mut self.nodes[n as usize].rng,
        };
        (0..hops)
            .map(|_| {
                if mean.is_zero() {
                    Duration::ZERO
                } else {
                    // As senders do: truncated at the network's maximum.
                    mtos_mixnode::route::capped_delay(rng, mean, max)
                }
            })
            .collect()
    }

    /// Runs to the scenario's end; `progress` is called with the fraction
    /// of virtual time done, now and then.
    pub fn run(&mut self, mut progress: impl FnMut(f64)) {
        let end = Instant::from_duration(self.scenario.duration);
        let total = self.scenario.duration.as_secs_f64();
        while let Some(Reverse(s)) = self.pop() {
            if s.at() > end {
                break;
            }
            self.sample_queues(s.at());
            self.now = s.at();
            self.events += 1;
            match s.ev {
                Ev::Client(c) => self.on_client(c),
                Ev::Node(n) => self.on_node(n),
                Ev::Arrive(n, slot) => self.on_arrive(n, slot),
                Ev::Trace => self.on_trace(),
                Ev::Epoch => self.on_epoch(),
                Ev::Grace => self.on_grace(),
                Ev::Churn(n) => self.on_churn(n),
                Ev::ChurnTrace => self.on_churn_trace(),
                Ev::Listing(n, listed, generation) => self.on_listing(n, listed, generation),
                Ev::Frame(c) => self.on_frame(c),
                Ev::Answer(b) => self.on_answer(b),
                Ev::Move(c) => self.on_move(c),
            }
            if self.events.is_multiple_of(65_536) {
                progress(self.now.since_origin().as_secs_f64() / total);
            }
        }
        self.sample_queues(end);
        self.now = end;
        self.finish_churn();
        self.finish_mailboxes();
        self.finish_replies();
        let outcome = self.entropy.tags.finish();
        self.metrics.entropy = outcome.tags;
        self.metrics.tags_wholly_lost = outcome.wholly_lost;
        self.metrics.tags_unfinished = outcome.unfinished;
        self.metrics
            .finish(self.events, &self.nodes_counters(), &self.max_held);
        for node in &mut self.nodes {
            if let Some(loops) = node.loops.as_mut() {
                self.metrics.node_loops.add(loops.tracker().counts());
            }
        }
        if let (Some(config), Some(obs)) = (self.scenario.disclosure, &self.disclosure) {
            // The attacker knows the network's latency: the window from its
            // 1st to its 99th percentile.
            let mut latency = self.metrics.network_latency_s.clone();
            latency.sort_by(f64::total_cmp);
            let at = |q: f64| crate::metrics::quantile(&latency, q).unwrap_or(0.0);
            // The share of a client's packets that come back to it, and
            // the real messages a mailbox receives, from the rates.
            let c = self.scenario.cover;
            let real = self.scenario.send_rate.min(c.payload);
            let all = (c.payload + c.loop_cover + c.drop_cover).max(f64::MIN_POSITIVE);
            let share = (c.payload - real + c.loop_cover) / all;
            let own = crate::disclosure::OwnReturns::new(&latency, share, real);
            self.metrics.disclosure = Some(crate::disclosure::attack(
                obs,
                &config,
                &self.friends,
                self.scenario.clients,
                self.scenario.warmup.as_secs_f64(),
                (at(0.01), at(0.99)),
                &own,
            ));
        }
        progress(1.0);
    }

    /// Each node's engine counters, with those of the engines it had
    /// before it last came back (`[mix_churn]`).
    fn nodes_counters(&self) -> Vec<mtos_mixnode::Counters> {
        self.nodes
            .iter()
            .enumerate()
            .map(|(n, node)| {
                let mut c = node.engine.counters().clone();
                if let Some(old) = self.churn.retired(n) {
                    churn::add_counters(&mut c, old);
                }
                c
            })
            .collect()
    }

    /// Samples every node's held packets at each sample instant up to
    /// `until` (the state before the events at `until`: nothing changes
    /// between events).
    fn sample_queues(&mut self, until: Instant) {
        // The next sample's instant is kept, so that the events between
        // samples cost one comparison.
        if self.next_sample.is_none_or(|t| t > until) {
            return;
        }
        let interval = self.scenario.queue_series_s;
        let series = &mut self.metrics.queue_series;
        while let Some(t) = self.next_sample.filter(|t| *t <= until) {
            series.times.push(t.since_origin().as_secs_f64());
            series.held.extend(
                self.nodes
                    .iter()
                    .map(|n| u32::try_from(n.engine.held()).unwrap_or(u32::MAX)),
            );
            let k = series.times.len() as f64;
            self.next_sample = Some(Instant::from_duration(Duration::from_secs_f64(
                k * interval,
            )));
        }
    }

    /// The scenario.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// Bytes the nodes' replay filters take now (none with `[limits]
    /// replay_filters = false`).
    pub fn replay_filter_bytes(&self) -> usize {
        self.nodes
            .iter()
            .flat_map(|n| n.engine.keys().slots())
            .map(|s| s.filter.memory_bytes())
            .sum()
    }

    /// Packets currently held by node `n`.
    pub fn held(&self, n: u32) -> usize {
        self.nodes[n as usize].engine.held()
    }
}

#[derive(Debug, Clone, Copy)]
struct SentRecord {
    kind: Kind,
    /// Its recipient (a client for real messages, loops and payload
    /// cover).
    dest: u32,
    /// When a real message was generated (queued at its client).
    created: Instant,
    /// When its packet left the client (or node).
    sent: Instant,
    /// A node loop: its node and loop id.
    node_loop: Option<(u32, LoopId)>,
    /// A real message's reply block, or the one it answers through
    /// (`[replies]`).
    block: Option<u32>,
}

#[derive(Debug, Clone, Copy)]
enum RngOf {
    Client(u32),
    Node(u32),
}

impl<M: Mode> std::fmt::Debug for Simulation<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulation")
            .field("scenario", &self.scenario.name)
            .field("now", &self.now)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

/// Runs a scenario in the mode it names.
pub fn run_scenario(scenario: Scenario, seed: u64, progress: impl FnMut(f64)) -> Metrics {
    match scenario.packet_mode {
        crate::scenario::PacketMode::Abstract => {
            let mut sim = Simulation::<AbstractMode>::new(scenario, seed);
            sim.run(progress);
            sim.metrics
        }
        crate::scenario::PacketMode::Real => {
            let mut sim = Simulation::<RealMode>::new(scenario, seed);
            sim.run(progress);
            sim.metrics
        }
    }
}
