//! The scenario file's sections as read (`Scenario::parse` checks them).

use serde::Deserialize;

use super::{DropAttack, Latency, PacketMode, SendPattern, StorageStudy};

fn default_queue_series_s() -> f64 {
    1.0
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScenario {
    pub(super) name: String,
    pub(super) duration_s: f64,
    #[serde(default)]
    pub(super) warmup_s: f64,
    #[serde(default)]
    pub(super) seed: u64,
    #[serde(default)]
    pub(super) packet_mode: PacketMode,
    #[serde(default = "default_queue_series_s")]
    pub(super) queue_series_s: f64,
    pub(super) topology: RawTopology,
    pub(super) clients: RawClients,
    pub(super) cover: RawCover,
    pub(super) mixing: RawMixing,
    pub(super) links: RawLinks,
    #[serde(default)]
    pub(super) anonymity: RawAnonymity,
    #[serde(default)]
    pub(super) storage: Option<StorageStudy>,
    #[serde(default)]
    pub(super) attack: Option<DropAttack>,
    #[serde(default)]
    pub(super) bulk: Option<RawBulk>,
    #[serde(default)]
    pub(super) adversary: Option<crate::adversary::AdversaryConfig>,
    #[serde(default)]
    pub(super) disclosure: Option<crate::disclosure::DisclosureConfig>,
    #[serde(default)]
    pub(super) limits: RawLimits,
    #[serde(default)]
    pub(super) epochs: Option<RawEpochs>,
    #[serde(default)]
    pub(super) mix_churn: Option<crate::mix_churn::MixChurnConfig>,
    #[serde(default)]
    pub(super) mailbox: Option<crate::mailbox::MailboxConfig>,
    #[serde(default)]
    pub(super) replies: Option<crate::replies::RepliesConfig>,
}

/// `[epochs]`: key rotation (`mixing.md`, key rotation).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEpochs {
    pub(super) length_s: f64,
    #[serde(default)]
    pub(super) grace_s: f64,
}

/// `[limits]`: the engine's bounds on a node (production's by default).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    #[serde(default = "default_queue_limit")]
    pub(super) queue_limit: usize,
    #[serde(default = "default_output_limit")]
    pub(super) output_limit: usize,
    #[serde(default = "default_replay_filters")]
    pub(super) replay_filters: bool,
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            queue_limit: default_queue_limit(),
            output_limit: default_output_limit(),
            replay_filters: default_replay_filters(),
        }
    }
}

fn default_queue_limit() -> usize {
    mtos_mixnode::EngineConfig::default().queue_limit
}

fn default_replay_filters() -> bool {
    true
}

fn default_output_limit() -> usize {
    mtos_mixnode::EngineConfig::default().output_limit
}

/// `[bulk]`: a bulk class with windows taken by cohorts in turn
/// (`client.md` §4.1); each client draws its ticket.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBulk {
    pub(super) payload: f64,
    #[serde(rename = "loop")]
    pub(super) loop_cover: f64,
    pub(super) drop: f64,
    pub(super) window_s: u64,
    pub(super) cohorts: u16,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAnonymity {
    #[serde(default)]
    pub(super) tagged_messages: u32,
    #[serde(default)]
    pub(super) sender_entropy: bool,
    #[serde(default)]
    pub(super) focus_gateway: Option<u32>,
    #[serde(default)]
    pub(super) focus_exit: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTopology {
    pub(super) layers: u32,
    pub(super) nodes_per_layer: u32,
    pub(super) providers: u32,
    #[serde(default)]
    pub(super) kind: super::TopologyKind,
    #[serde(default)]
    pub(super) bandwidth: Option<crate::bandwidth::Bandwidth>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClients {
    pub(super) count: u32,
    pub(super) send: SendPattern,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCover {
    pub(super) payload: f64,
    #[serde(rename = "loop")]
    pub(super) loop_cover: f64,
    pub(super) drop: f64,
    #[serde(default)]
    pub(super) node_loop: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase", deny_unknown_fields)]
pub(super) enum RawMixing {
    Poisson {
        mean_delay_ms: f64,
        #[serde(default)]
        max_delay_ms: Option<f64>,
    },
    Pool {
        interval_ms: f64,
        min_pool: usize,
        fraction: f64,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLinks {
    pub(super) latency: Latency,
    #[serde(default)]
    pub(super) loss: f64,
}
