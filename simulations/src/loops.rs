//! Node loop cover in the simulator: the production machine
//! (`mtos_mixnode::loops::NodeLoops`: schedule, route rule, loss alarm) on
//! the simulator's numbered nodes. Every node loops, providers too (they
//! are the network's gateways), each loop through every other position and
//! back to its node, exactly as a node does.

use std::time::Duration;

use mtos_mixnode::Instant;
use mtos_mixnode::admission::Position;
use mtos_mixnode::loops::{LoopConfig, LoopCounts, NodeLoops, loop_timeout};
use mtos_mixnode::route::Nodes;
use rand::Rng;
use serde_json::{Value, json};

use crate::scenario::Scenario;

/// The simulator's network as routes see it: `layers × per_layer` mix
/// nodes numbered layer by layer, then the providers, which are the
/// gateways and the exits (service position) at once.
#[derive(Debug, Clone)]
pub(crate) struct SimNodes {
    layers: u8,
    per_layer: u32,
    providers: u32,
    /// Nodes the routes' document leaves out (`[mix_churn]`), by node
    /// (mixes, then providers).
    unlisted: Vec<bool>,
    /// Listed mixes per layer.
    listed: Vec<u32>,
    /// Listed providers.
    providers_listed: u32,
    /// The mixes' bandwidth weights (`[topology] bandwidth`; `None`:
    /// equal, production's uniform draw).
    weights: Option<crate::bandwidth::Weights>,
}

impl SimNodes {
    pub(crate) fn new(scenario: &Scenario) -> Self {
        let mixes = scenario.layers * scenario.nodes_per_layer;
        Self {
            // At most MAX_PATH_LENGTH − 2 layers (scenario check).
            layers: u8::try_from(scenario.layers).unwrap_or(u8::MAX),
            per_layer: scenario.nodes_per_layer,
            providers: scenario.providers,
            unlisted: vec![false; (mixes + scenario.providers) as usize],
            listed: vec![scenario.nodes_per_layer; scenario.layers as usize],
            providers_listed: scenario.providers,
            weights: scenario.mix_weights().map(crate::bandwidth::Weights::new),
        }
    }

    /// Where node `n` stands.
    pub(crate) fn position(&self, n: u32) -> Position {
        let mixes = u32::from(self.layers) * self.per_layer;
        if n < mixes {
            Position::Layer(u8::try_from(n / self.per_layer + 1).unwrap_or(u8::MAX))
        } else {
            Position::Gateway
        }
    }

    /// The document lists node `n` again, or leaves it out.
    pub(crate) fn set_listed(&mut self, n: u32, listed: bool) {
        let mixes = u32::from(self.layers) * self.per_layer;
        let Some(u) = self.unlisted.get_mut(n as usize) else {
            return;
        };
        if *u != listed {
            return;
        }
        *u = !listed;
        let count = match n < mixes {
            true => self.listed.get_mut((n / self.per_layer) as usize),
            false => Some(&mut self.providers_listed),
        };
        if let Some(count) = count {
            if listed {
                *count += 1;
            } else {
                *count -= 1;
            }
        }
    }

    /// A listed provider, uniformly (any, when none is listed): a
    /// gateway, an exit for drop cover, a loop's service position.
    pub(crate) fn pick_provider<R: Rng + ?Sized>(&self, rng: &mut R) -> u32 {
        let first = u32::from(self.layers) * self.per_layer;
        if self.providers_listed == self.providers || self.providers_listed == 0 {
            return first + rand::RngExt::random_range(rng, 0..self.providers);
        }
        let k = rand::RngExt::random_range(rng, 0..self.providers_listed);
        (first..first + self.providers)
            .filter(|n| self.is_listed(*n))
            .nth(k as usize)
            .unwrap_or(first)
    }

    /// Whether the document lists every mix.
    fn all_listed(&self) -> bool {
        self.listed.iter().all(|c| *c == self.per_layer)
    }

    /// Whether the document lists node `n`.
    pub(crate) fn is_listed(&self, n: u32) -> bool {
        !self.unlisted.get(n as usize).copied().unwrap_or(false)
    }

    /// A listed node among `first..first + count`, uniformly or in
    /// proportion to its bandwidth weight (all of them when none is
    /// listed: a sender with no listed choice sends anyway, and loses the
    /// packet).
    pub(crate) fn pick_listed<R: Rng + ?Sized>(&self, rng: &mut R, first: u32, count: u32) -> u32 {
        self.pick_in(rng, first, count, self.all_listed())
    }

    /// [`Self::pick_listed`], told whether every node of the run is
    /// listed (the fast path: production's uniform draw, or a binary
    /// search over the weights).
    fn pick_in<R: Rng + ?Sized>(&self, rng: &mut R, first: u32, count: u32, all: bool) -> u32 {
        let draw_all = |rng: &mut R| match &self.weights {
            None => first + rand::RngExt::random_range(rng, 0..count),
            Some(w) => w.draw(rand::RngExt::random::<f64>(rng), first, count),
        };
        if all {
            return draw_all(rng);
        }
        let weight = |n: u32| match (self.is_listed(n), &self.weights) {
            (false, _) => 0.0,
            (true, None) => 1.0,
            (true, Some(w)) => w.of(n),
        };
        let total: f64 = (first..first + count).map(weight).sum();
        if total <= 0.0 {
            return draw_all(rng);
        }
        let mut left = rand::RngExt::random::<f64>(rng) * total;
        let mut last = first;
        for n in first..first + count {
            let w = weight(n);
            if w > 0.0 {
                last = n;
                if left < w {
                    return n;
                }
                left -= w;
            }
        }
        last
    }
}

impl SimNodes {
    /// A uniformly chosen cascade (`[topology] kind = "cascade"`: cascade
    /// `j` is mix `j` of each layer) whose mixes are all listed (any, when
    /// none is whole).
    pub(crate) fn pick_cascade<R: Rng + ?Sized>(&self, rng: &mut R) -> u32 {
        if self.all_listed() {
            return rand::RngExt::random_range(rng, 0..self.per_layer);
        }
        let whole =
            |j: u32| (0..u32::from(self.layers)).all(|l| self.is_listed(l * self.per_layer + j));
        let count = (0..self.per_layer).filter(|j| whole(*j)).count() as u32;
        if count == self.per_layer || count == 0 {
            return rand::RngExt::random_range(rng, 0..self.per_layer);
        }
        let k = rand::RngExt::random_range(rng, 0..count);
        (0..self.per_layer)
            .filter(|j| whole(*j))
            .nth(k as usize)
            .unwrap_or(0)
    }
}

impl Nodes for SimNodes {
    type Node = u32;

    fn layers(&self) -> u8 {
        self.layers
    }

    fn pick<R: Rng + ?Sized>(&self, rng: &mut R, position: Position) -> Option<u32> {
        match position {
            Position::Layer(l) if (1..=self.layers).contains(&l) && self.per_layer > 0 => {
                let first = u32::from(l - 1) * self.per_layer;
                let all_listed = self.listed.get(usize::from(l - 1)) == Some(&self.per_layer);
                Some(self.pick_in(rng, first, self.per_layer, all_listed))
            }
            Position::Gateway | Position::Service => {
                (self.providers > 0).then(|| self.pick_provider(rng))
            }
            Position::Layer(_) | Position::Client => None,
        }
    }

    fn key(&self, node: &u32) -> [u8; 32] {
        node_key(*node)
    }
}

/// The key loss attribution names node `n` by.
pub fn node_key(n: u32) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[..4].copy_from_slice(&n.to_be_bytes());
    k
}

/// The node a key names.
pub fn node_of(key: &[u8; 32]) -> Option<u32> {
    (key[4..] == [0u8; 28]).then(|| u32::from_be_bytes([key[0], key[1], key[2], key[3]]))
}

/// How long a loop may take: as a node computes it from the network's
/// maximum delay (the production default, 10 s, when the scenario sets
/// none).
pub(crate) fn timeout(scenario: &Scenario) -> Duration {
    let max_ms = if scenario.max_delay == Duration::MAX {
        10_000
    } else {
        u64::try_from(scenario.max_delay.as_millis()).unwrap_or(u64::MAX)
    };
    loop_timeout(max_ms)
}

/// A node's loop machine, when the scenario has node loops.
pub(crate) fn machine<R: Rng + ?Sized>(
    scenario: &Scenario,
    start: Instant,
    rng: &mut R,
) -> Option<NodeLoops> {
    (scenario.cover.node_loop > 0.0).then(|| {
        let mut loops = NodeLoops::new(LoopConfig::default());
        loops.set_rate(start, scenario.cover.node_loop, rng);
        loops
    })
}

/// What the nodes' loops found over a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoopReport {
    /// Loops by fate, summed over the nodes.
    pub counts: LoopCounts,
    /// Alarms in the order raised: node, virtual seconds, loss share,
    /// the node they name as the suspect.
    pub alarms: Vec<(u32, f64, f64, Option<u32>)>,
}

impl LoopReport {
    pub(crate) fn add(&mut self, counts: LoopCounts) {
        self.counts += counts;
    }

    /// The first alarm at or after `from` seconds, if any.
    pub fn first_alarm_after(&self, from: f64) -> Option<f64> {
        self.alarms.iter().map(|a| a.1).find(|t| *t >= from)
    }

    pub(crate) fn summary(&self) -> Value {
        let mut alarmed: Vec<u32> = self.alarms.iter().map(|a| a.0).collect();
        alarmed.sort_unstable();
        alarmed.dedup();
        let mut suspects: Vec<u32> = self.alarms.iter().filter_map(|a| a.3).collect();
        suspects.sort_unstable();
        suspects.dedup();
        json!({
            "suspects": suspects,
            "sent": self.counts.sent,
            "returned": self.counts.returned,
            "lost": self.counts.lost,
            "alarms": self.alarms.len(),
            "nodes_alarmed": alarmed.len(),
            "first_alarm_s": self.alarms.first().map(|a| a.1),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use rand::SeedableRng;

    use super::*;

    /// One layer of three mixes weighted 1, 1/2, 1/3: draws follow the
    /// weights, and with the largest unlisted, the other two keep their
    /// ratio (3 : 2).
    #[test]
    fn draws_follow_the_weights_of_the_listed_mixes() {
        let text = r#"
name = "w"
duration_s = 1
[topology]
layers = 1
nodes_per_layer = 3
providers = 1
bandwidth = { kind = "zipf", s = 1.0 }
[clients]
count = 2
send = { kind = "poisson", rate = 1.0 }
[cover]
payload = 1.0
loop = 1.0
drop = 1.0
[mixing]
mode = "poisson"
mean_delay_ms = 1
[links]
latency = { kind = "constant", ms = 1 }
"#;
        let scenario = Scenario::parse(text, std::path::Path::new("w.toml")).unwrap();
        let mut nodes = SimNodes::new(&scenario);
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let mut count = |nodes: &SimNodes| {
            let mut c = [0u32; 3];
            for _ in 0..60_000 {
                c[nodes.pick(&mut rng, Position::Layer(1)).unwrap() as usize] += 1;
            }
            c.map(|k| f64::from(k) / 60_000.0)
        };
        let all = count(&nodes);
        for (got, want) in all.iter().zip([6.0 / 11.0, 3.0 / 11.0, 2.0 / 11.0]) {
            assert!((got - want).abs() < 0.01, "{all:?}");
        }
        nodes.set_listed(0, false);
        let two = count(&nodes);
        assert_eq!(two[0], 0.0);
        assert!((two[1] - 0.6).abs() < 0.01, "{two:?}");
        nodes.set_listed(0, true);
        assert!((count(&nodes)[0] - 6.0 / 11.0).abs() < 0.01);
    }
}
