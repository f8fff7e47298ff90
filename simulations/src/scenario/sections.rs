//! A scenario's sections as the simulator uses them: how clients send,
//! link latency, the storage study, attacks, topology, packet mode and
//! trace rows (`Scenario::parse` checks them).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How clients generate real messages.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum SendPattern {
    /// Each client sends real messages as a Poisson process.
    Poisson {
        /// Messages per second per client.
        rate: f64,
    },
    /// Messages replayed from a CSV trace: `time_s,sender,recipient` rows.
    Trace {
        /// Relative to the scenario file.
        file: PathBuf,
    },
}

/// Per-link latency.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Latency {
    /// Always the same.
    Constant {
        /// Milliseconds.
        ms: f64,
    },
    /// Exponentially distributed.
    Exponential {
        /// Mean, milliseconds.
        mean_ms: f64,
    },
    /// Uniform between two bounds.
    Uniform {
        /// Lower bound, milliseconds.
        min_ms: f64,
        /// Upper bound, milliseconds.
        max_ms: f64,
    },
}

/// Which nodes store records in the placement study.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Stores {
    /// Every mix node and provider.
    #[default]
    All,
    /// The mix nodes only.
    Mixes,
    /// The providers only.
    Providers,
}

/// `[storage]`: the placement study, and with `depart_s` the churn study
/// (`specs/simulation.md` §3).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StorageStudy {
    /// Replicas per record (K).
    #[serde(default = "default_replicas")]
    pub replicas: usize,
    /// Records placed.
    pub records: u32,
    /// Which nodes store.
    #[serde(default)]
    pub stores: Stores,
    /// Churn study: when a storage node dies, virtual seconds.
    #[serde(default)]
    pub depart_s: Option<f64>,
    /// The dying node (the scenario's numbering); default: the storage
    /// node holding the most records.
    #[serde(default)]
    pub depart_node: Option<u32>,
    /// The document's heartbeat, seconds (the authority drops a node
    /// silent for three).
    #[serde(default = "default_heartbeat")]
    pub heartbeat_s: f64,
    /// Puts per second through the service nodes.
    #[serde(default = "default_put_rate")]
    pub put_rate: f64,
    /// Copies per second each storage node's repair makes at most.
    #[serde(default = "default_repair_rate")]
    pub repair_per_sec: u32,
}

fn default_heartbeat() -> f64 {
    20.0
}

fn default_put_rate() -> f64 {
    200.0
}

fn default_repair_rate() -> u32 {
    100
}

/// `[attack]`: an active attacker on one node, from `from_s` on, to see
/// when the nodes' loops notice (`simulation.md` §1, Attack).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DropAttack {
    /// The node attacked (mix nodes are numbered from 0 layer by layer,
    /// then the providers): the dropping node, or the n−1 attack's mix.
    pub dropping_node: u32,
    /// When it starts, virtual seconds.
    pub from_s: f64,
    /// What the attacker does.
    #[serde(default)]
    pub kind: AttackKind,
    /// n−1: seconds the attacker lets every frame through after each
    /// target (0: one target after another).
    #[serde(default)]
    pub pause_s: f64,
    /// The attacker tells node loops apart and lets them through: the
    /// dropping node discards everything else, the n−1 attacker never
    /// blocks a loop nor takes one for a target (abstract packets only;
    /// `simulation.md` §8).
    #[serde(default)]
    pub spare_loops: bool,
}

/// The attack `[attack]` runs.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
pub enum AttackKind {
    /// The node discards every frame it receives (a blocking attacker).
    #[default]
    #[serde(rename = "drop")]
    Drop,
    /// The n−1 attack by blocking the links into the node: the attacker
    /// holds back one frame (the target), blocks every other frame until
    /// the node holds nothing, lets the target in alone, and follows the
    /// frame the node sends for it; then it lets traffic through for
    /// `pause_s` and starts again.
    #[serde(rename = "n-1")]
    NMinusOne,
}

fn default_replicas() -> usize {
    mtos_mixnode::placement::DEFAULT_REPLICAS
}

/// How a route crosses the mixes (`[topology] kind`).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
pub enum TopologyKind {
    /// One uniformly chosen mix of each layer in turn (production).
    #[default]
    #[serde(rename = "stratified")]
    Stratified,
    /// `layers` hops, each a uniformly chosen mix of all of them.
    #[serde(rename = "free-route")]
    FreeRoute,
    /// `nodes_per_layer` fixed cascades (cascade j: mix j of each layer),
    /// one chosen uniformly per message.
    #[serde(rename = "cascade")]
    Cascade,
}

/// Real Sphinx or the abstract format.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum PacketMode {
    /// Same decisions, no public-key work.
    #[default]
    Abstract,
    /// Real Sphinx packets.
    Real,
}

/// One real message of a trace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TraceMessage {
    /// When it is handed to the sender's queue.
    pub at: Duration,
    /// Sending client.
    pub sender: u32,
    /// Receiving client.
    pub recipient: u32,
}
