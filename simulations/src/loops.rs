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
    /// Mixes the routes' document leaves out (`[mix_churn]`), by mix.
    unlisted: Vec<bool>,
    /// Listed mixes per layer.
    listed: Vec<u32>,
}

impl SimNodes {
    pub(crate) fn new(scenario: &Scenario) -> Self {
        let mixes = scenario.layers * scenario.nodes_per_layer;
        Self {
            // At most MAX_PATH_LENGTH − 2 layers (scenario check).
            layers: u8::try_from(scenario.layers).unwrap_or(u8::MAX),
            per_layer: scenario.nodes_per_layer,
            providers: scenario.providers,
            unlisted: vec![false; mixes as usize],
            listed: vec![scenario.nodes_per_layer; scenario.layers as usize],
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

    /// The document lists mix `n` again, or leaves it out.
    pub(crate) fn set_listed(&mut self, n: u32, listed: bool) {
        let Some(u) = self.unlisted.get_mut(n as usize) else {
            return;
        };
        if *u != listed {
            return;
        }
        *u = !listed;
        if let Some(count) = self.listed.get_mut((n / self.per_layer) as usize) {
            if listed {
                *count += 1;
            } else {
                *count -= 1;
            }
        }
    }

    /// Whether the document lists every mix.
    fn all_listed(&self) -> bool {
        self.listed.iter().all(|c| *c == self.per_layer)
    }

    /// Whether the document lists mix `n` (providers always).
    pub(crate) fn is_listed(&self, n: u32) -> bool {
        !self.unlisted.get(n as usize).copied().unwrap_or(false)
    }

    /// A uniformly chosen listed node among `first..first + count` (all
    /// of them when none is listed: a sender with no listed choice sends
    /// anyway, and loses the packet).
    pub(crate) fn pick_listed<R: Rng + ?Sized>(&self, rng: &mut R, first: u32, count: u32) -> u32 {
        if self.all_listed() {
            return first + rand::RngExt::random_range(rng, 0..count);
        }
        let listed = (first..first + count)
            .filter(|n| self.is_listed(*n))
            .count() as u32;
        if listed == count || listed == 0 {
            return first + rand::RngExt::random_range(rng, 0..count);
        }
        let k = rand::RngExt::random_range(rng, 0..listed);
        (first..first + count)
            .filter(|n| self.is_listed(*n))
            .nth(k as usize)
            .unwrap_or(first)
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
                if all_listed {
                    Some(first + rand::RngExt::random_range(rng, 0..self.per_layer))
                } else {
                    Some(self.pick_listed(rng, first, self.per_layer))
                }
            }
            Position::Gateway | Position::Service => {
                let first = u32::from(self.layers) * self.per_layer;
                (self.providers > 0)
                    .then(|| first + rand::RngExt::random_range(rng, 0..self.providers))
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
