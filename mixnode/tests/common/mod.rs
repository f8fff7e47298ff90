//! A tiny network of engines under virtual time (quinn's `Pair` idea):
//! links have zero latency, time jumps to the earliest wake-up.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Duration;

use mtos_crypto::sphinx::{Frame, Hop, NodeAddress, SphinxSecret};
use mtos_mixnode::{
    Delivery, EngineConfig, EpochKey, Event, Instant, KeyRing, MixEngine, ReplaySizing,
};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

pub const EPOCH: u32 = 7;

pub struct Node {
    pub hop: Hop,
    pub secret: SphinxSecret,
    pub engine: MixEngine,
}

pub struct Net {
    pub nodes: BTreeMap<NodeAddress, Node>,
    pub order: Vec<NodeAddress>,
    pub now: Instant,
    pub rng: ChaCha20Rng,
    /// (time, node, delivery)
    pub delivered: Vec<(Instant, NodeAddress, Delivery)>,
    /// (time, from node, to node) of every transmit.
    pub hops: Vec<(Instant, NodeAddress, NodeAddress)>,
    /// Frames arriving at this node are kept, with their arrival time.
    pub record_to: Option<NodeAddress>,
    pub recorded: Vec<(Instant, Vec<u8>)>,
}

pub fn sizing() -> ReplaySizing {
    ReplaySizing {
        expected_per_key: 100_000,
        per_second: None,
        fp_rate: 1e-6,
    }
}

impl Net {
    pub fn new(n: usize, config: EngineConfig, seed: u8) -> Self {
        let mut rng = ChaCha20Rng::from_seed([seed; 32]);
        let mut nodes = BTreeMap::new();
        let mut order = Vec::new();
        for i in 0..n {
            let secret = SphinxSecret::generate(&mut rng);
            let address = NodeAddress([i as u8 + 1; 32]);
            let hop = Hop {
                address,
                sphinx_key: secret.public(),
            };
            let keys = KeyRing::new(
                EpochKey {
                    epoch: EPOCH,
                    secret: secret.clone(),
                },
                sizing(),
            );
            nodes.insert(
                address,
                Node {
                    hop,
                    secret,
                    engine: MixEngine::new(config, keys),
                },
            );
            order.push(address);
        }
        Self {
            nodes,
            order,
            now: Instant::ZERO,
            rng,
            delivered: Vec::new(),
            hops: Vec::new(),
            record_to: None,
            recorded: Vec::new(),
        }
    }

    pub fn hop(&self, i: usize) -> Hop {
        self.nodes[&self.order[i]].hop
    }

    pub fn secret(&self, i: usize) -> &SphinxSecret {
        &self.nodes[&self.order[i]].secret
    }

    pub fn engine(&mut self, i: usize) -> &mut MixEngine {
        let a = self.order[i];
        &mut self.nodes.get_mut(&a).unwrap().engine
    }

    pub fn frame(packet: &[u8]) -> Vec<u8> {
        Frame::encode((EPOCH % 256) as u8, packet).unwrap()
    }

    pub fn inject(&mut self, to: NodeAddress, packet: &[u8]) {
        self.inject_frame(to, &Self::frame(packet));
    }

    pub fn inject_frame(&mut self, to: NodeAddress, frame: &[u8]) {
        let now = self.now;
        let node = self.nodes.get_mut(&to).expect("known node");
        node.engine.handle_frame(now, frame, &mut self.rng);
        self.pump();
    }

    /// Moves every transmit to its next hop and collects deliveries.
    fn pump(&mut self) {
        loop {
            let mut moved = Vec::new();
            for (addr, node) in self.nodes.iter_mut() {
                while let Some(t) = node.engine.poll_transmit() {
                    moved.push((*addr, t));
                }
                while let Some(e) = node.engine.poll_event() {
                    if let Event::Delivered(d) = e {
                        self.delivered.push((self.now, *addr, d));
                    }
                }
            }
            if moved.is_empty() {
                return;
            }
            for (from, t) in moved {
                self.hops.push((self.now, from, t.next));
                if self.record_to == Some(t.next) {
                    self.recorded.push((self.now, t.frame.clone()));
                }
                let now = self.now;
                if let Some(node) = self.nodes.get_mut(&t.next) {
                    node.engine.handle_frame(now, &t.frame, &mut self.rng);
                }
            }
        }
    }

    /// Runs until nothing is pending before `now + limit`.
    pub fn run(&mut self, limit: Duration) {
        let end = self.now + limit;
        loop {
            let next = self
                .nodes
                .values()
                .filter_map(|n| n.engine.poll_timeout())
                .min();
            let Some(next) = next.filter(|t| *t <= end) else {
                return;
            };
            self.now = self.now.max(next);
            let now = self.now;
            for node in self.nodes.values_mut() {
                node.engine.handle_timeout(now, &mut self.rng);
            }
            self.pump();
        }
    }
}

/// The Kolmogorov-Smirnov statistic of `samples` against `cdf`.
pub fn ks_statistic(samples: &mut [f64], cdf: impl Fn(f64) -> f64) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    let n = samples.len() as f64;
    samples
        .iter()
        .enumerate()
        .map(|(i, x)| {
            let f = cdf(*x);
            (f - i as f64 / n).abs().max(((i + 1) as f64 / n - f).abs())
        })
        .fold(0.0, f64::max)
}

/// The KS critical value at significance 1% (asymptotic, n large).
pub fn ks_critical_1pct(n: usize) -> f64 {
    1.6276 / (n as f64).sqrt()
}

pub fn exp_cdf(rate: f64) -> impl Fn(f64) -> f64 {
    move |x| {
        if x < 0.0 {
            0.0
        } else {
            1.0 - (-rate * x).exp()
        }
    }
}

/// Erlang(k, rate) CDF.
pub fn erlang_cdf(k: u32, rate: f64) -> impl Fn(f64) -> f64 {
    move |x| {
        if x <= 0.0 {
            return 0.0;
        }
        let mut term = 1.0;
        let mut sum = 1.0;
        for i in 1..k {
            term *= rate * x / f64::from(i);
            sum += term;
        }
        1.0 - (-rate * x).exp() * sum
    }
}
