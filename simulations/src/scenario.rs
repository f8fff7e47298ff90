//! Scenarios: TOML files describing a network, its clients and its
//! parameters. Unknown keys, impossible topologies, negative rates and bad
//! trace rows are refused, with the line and field, before anything runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mtos_crypto::geometry::MAX_PATH_LENGTH;
use mtos_mixnode::MixingMode;

mod derived;
mod raw;
mod sections;
mod trace;

pub use sections::*;

/// The most clients a run with sender entropy may have (its cost grows
/// with the senders each packet's mass reaches).
pub const MAX_SENDER_ENTROPY_CLIENTS: u32 = 2_000;

use raw::*;
use trace::load_trace;

/// A scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid TOML, an unknown key or a wrong type (the message names the
    /// line and the field).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message, with line and column.
        message: String,
    },
    /// A value out of range.
    #[error("{path}: field `{field}`: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// A trace row that does not parse.
    #[error("{path}:{line}: {reason}")]
    Trace {
        /// The trace file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// Why.
        reason: String,
    },
}

/// A validated scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Its name.
    pub name: String,
    /// Virtual time simulated.
    pub duration: Duration,
    /// Messages sent before this are not measured.
    pub warmup: Duration,
    /// Seconds between samples of every node's held packets (the queue
    /// series; 0: none).
    pub queue_series_s: f64,
    /// Packets a node's engine holds at most (`[limits] queue_limit`;
    /// production's by default).
    pub queue_limit: usize,
    /// Whether nodes keep replay filters (`[limits] replay_filters`,
    /// production's and the default: true). No party in a run copies a
    /// packet, so without them only their false positives are missing,
    /// and a large run takes a third less time and far less memory.
    pub replay_filters: bool,
    /// Frames waiting to leave a node at most (`[limits] output_limit`).
    pub output_limit: usize,
    /// Key rotation (`[epochs]`): an epoch's length and the grace period a
    /// node keeps the previous epoch's key for; `None`: one epoch.
    pub epochs: Option<(Duration, Duration)>,
    /// Default seed.
    pub seed: u64,
    /// Abstract or real packets.
    pub packet_mode: PacketMode,
    /// Mix layers between the gateway and the exit provider.
    pub layers: u32,
    /// Nodes in each mix layer.
    pub nodes_per_layer: u32,
    /// How clients' routes cross the mixes (node loops keep the
    /// production rule whatever it is).
    pub topology: TopologyKind,
    /// The mixes' bandwidth weights routes draw by (`[topology]
    /// bandwidth`; `None`: equal, as production draws).
    pub bandwidth: Option<crate::bandwidth::Bandwidth>,
    /// Providers (gateways and exits).
    pub providers: u32,
    /// Clients.
    pub clients: u32,
    /// Real messages per second per client (Poisson pattern).
    pub send_rate: f64,
    /// Replayed messages (trace pattern).
    pub trace: Vec<TraceMessage>,
    /// λP, λL, λD per client; λM per node.
    pub cover: mtos_mixnode::cover::CoverRates,
    /// The bulk class clients take turns in, by cohort (`[bulk]`; none:
    /// every client at `cover` all the time).
    pub bulk: Option<mtos_mixnode::directory::BulkRates>,
    /// Mixing mode.
    pub mixing: MixingMode,
    /// Mean per-hop delay senders draw.
    pub mean_delay: Duration,
    /// Drop packets asking for longer holds.
    pub max_delay: Duration,
    /// Link latency.
    pub latency: Latency,
    /// Probability a link loses a packet.
    pub loss: f64,
    /// Real messages sent after the warm-up whose anonymity is measured.
    pub tagged_messages: u32,
    /// Whether every packet carries its sender's mass too, for the
    /// tagged messages' sender entropy (`simulation.md` §2).
    pub sender_entropy: bool,
    /// The tagged messages the focused guesses are taken over: those
    /// sent through this gateway and delivered at this exit (provider
    /// numbers from 0; either may be left out). What a colluding
    /// gateway and service node learn (`simulation.md` §5).
    pub focus: Option<(Option<u32>, Option<u32>)>,
    /// The storage placement study, when asked for.
    pub storage: Option<StorageStudy>,
    /// A node that drops everything, if any.
    pub attack: Option<DropAttack>,
    /// `[adversary]`: nodes the adversary holds (`simulation.md` §5).
    pub adversary: Option<crate::adversary::AdversaryConfig>,
    /// `[disclosure]`: the statistical disclosure attack (§9).
    pub disclosure: Option<crate::disclosure::DisclosureConfig>,
    /// `[mix_churn]`: mixes leaving and coming back (§1).
    pub mix_churn: Option<crate::mix_churn::MixChurnConfig>,
    /// `[mailbox]`: payloads wait in their client's mailbox for a
    /// delivery frame (§1).
    pub mailbox: Option<crate::mailbox::MailboxConfig>,
    /// `[replies]`: recipients answer through reply blocks (§1).
    pub replies: Option<crate::replies::RepliesConfig>,
}

impl Scenario {
    /// Loads and validates a scenario file.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses scenario text; `path` names it in errors and anchors traces.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ScenarioError> {
        let raw: RawScenario = toml::from_str(text).map_err(|e| ScenarioError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        let invalid = |field: &'static str, reason: String| ScenarioError::Invalid {
            path: path.to_owned(),
            field,
            reason,
        };
        // Bounds keep every later conversion (to durations, to gaps between
        // sends) finite and non-zero: about 31 years of virtual time, and
        // rates from 1e-6 to 1e6 per second (or 0, off).
        const MAX_SECONDS: f64 = 1e9;
        let non_negative = |field: &'static str, v: f64| {
            if v.is_finite() && (0.0..=MAX_SECONDS * 1000.0).contains(&v) {
                Ok(v)
            } else {
                Err(invalid(
                    field,
                    format!(
                        "must be a number from 0 to {}, got {v}",
                        MAX_SECONDS * 1000.0
                    ),
                ))
            }
        };
        let rate = |field: &'static str, v: f64| {
            if v == 0.0 || (v.is_finite() && (1e-6..=1e6).contains(&v)) {
                Ok(v)
            } else {
                Err(invalid(
                    field,
                    format!("must be 0 (off) or from 1e-6 to 1e6 per second, got {v}"),
                ))
            }
        };
        let ms = |v: f64| Duration::from_secs_f64(v / 1000.0);
        if !(raw.duration_s.is_finite() && raw.duration_s > 0.0 && raw.duration_s <= MAX_SECONDS) {
            return Err(invalid(
                "duration_s",
                format!("must be > 0 and at most {MAX_SECONDS}"),
            ));
        }
        non_negative("warmup_s", raw.warmup_s)?;
        non_negative("queue_series_s", raw.queue_series_s)?;
        if let Some(e) = &raw.epochs {
            non_negative("epochs.length_s", e.length_s)?;
            non_negative("epochs.grace_s", e.grace_s)?;
            if e.length_s < 1.0 {
                return Err(invalid("epochs.length_s", "at least 1 s".into()));
            }
            if e.grace_s >= e.length_s {
                return Err(invalid(
                    "epochs.grace_s",
                    "shorter than an epoch (a node holds one previous key)".into(),
                ));
            }
        }
        if raw.limits.queue_limit == 0 {
            return Err(invalid("limits.queue_limit", "at least 1".into()));
        }
        if raw.limits.output_limit == 0 {
            return Err(invalid("limits.output_limit", "at least 1".into()));
        }
        if raw.queue_series_s > 0.0 && raw.queue_series_s < 0.001 {
            return Err(invalid(
                "queue_series_s",
                "at least 0.001 s between samples (or 0: none)".into(),
            ));
        }
        if raw.warmup_s >= raw.duration_s {
            return Err(invalid(
                "warmup_s",
                "must be shorter than duration_s".into(),
            ));
        }
        let t = &raw.topology;
        if t.layers == 0 || t.layers as usize + 2 > MAX_PATH_LENGTH {
            return Err(invalid(
                "topology.layers",
                format!(
                    "a route is gateway + layers + exit, at most {MAX_PATH_LENGTH} hops: layers must be 1 to {}",
                    MAX_PATH_LENGTH - 2
                ),
            ));
        }
        if t.nodes_per_layer == 0 {
            return Err(invalid("topology.nodes_per_layer", "must be >= 1".into()));
        }
        if t.providers == 0 {
            return Err(invalid("topology.providers", "must be >= 1".into()));
        }
        if let Some(b) = &t.bandwidth {
            b.weights(t.layers, t.nodes_per_layer)
                .map_err(|(field, reason)| invalid(field, reason))?;
            if t.kind == TopologyKind::Cascade {
                return Err(invalid(
                    "topology.bandwidth",
                    "a cascade is drawn as a whole: weights apply to stratified and free routes"
                        .into(),
                ));
            }
        }
        if raw.clients.count < 2 || raw.clients.count > 10_000_000 {
            return Err(invalid(
                "clients.count",
                "must be from 2 to 10,000,000".into(),
            ));
        }
        let nodes = u64::from(t.layers) * u64::from(t.nodes_per_layer) + u64::from(t.providers);
        if nodes > 1_000_000 {
            return Err(invalid(
                "topology.nodes_per_layer",
                format!("the network would have {nodes} nodes; at most 1,000,000"),
            ));
        }
        let cover = mtos_mixnode::cover::CoverRates {
            payload: rate("cover.payload", raw.cover.payload)?,
            loop_cover: rate("cover.loop", raw.cover.loop_cover)?,
            drop_cover: rate("cover.drop", raw.cover.drop)?,
            node_loop: rate("cover.node_loop", raw.cover.node_loop)?,
        };
        let bulk = match &raw.bulk {
            None => None,
            Some(b) => {
                let bulk = mtos_mixnode::directory::BulkRates {
                    payload: b.payload,
                    loops: b.loop_cover,
                    drops: b.drop,
                    window_secs: b.window_s,
                    cohorts: b.cohorts,
                };
                // The document's own checks: each bulk rate at least its
                // idle one, windows and cohorts in range.
                mtos_mixnode::directory::Rates {
                    payload: cover.payload,
                    loops: cover.loop_cover,
                    drops: cover.drop_cover,
                    node_loops: 0.0,
                    bulk: Some(bulk),
                }
                .validate()
                .map_err(|e| invalid("bulk", e.to_string()))?;
                Some(bulk)
            }
        };
        let (mixing, mean_delay, max_delay) = match raw.mixing {
            RawMixing::Poisson {
                mean_delay_ms,
                max_delay_ms,
            } => {
                let mean = non_negative("mixing.mean_delay_ms", mean_delay_ms)?;
                let max = match max_delay_ms {
                    Some(m) => ms(non_negative("mixing.max_delay_ms", m)?),
                    None => Duration::MAX,
                };
                (MixingMode::Poisson, ms(mean), max)
            }
            RawMixing::Pool {
                interval_ms,
                min_pool,
                fraction,
            } => {
                let interval = non_negative("mixing.interval_ms", interval_ms)?;
                if interval < 0.001 {
                    return Err(invalid(
                        "mixing.interval_ms",
                        "must be at least 0.001 (1 µs)".into(),
                    ));
                }
                if !(fraction > 0.0 && fraction <= 1.0) {
                    return Err(invalid("mixing.fraction", "must be in (0, 1]".into()));
                }
                (
                    MixingMode::Pool {
                        interval: ms(interval),
                        min_pool,
                        fraction,
                    },
                    Duration::ZERO,
                    Duration::MAX,
                )
            }
        };
        match raw.links.latency {
            Latency::Constant { ms: v } => {
                non_negative("links.latency.ms", v)?;
            }
            Latency::Exponential { mean_ms } => {
                non_negative("links.latency.mean_ms", mean_ms)?;
            }
            Latency::Uniform { min_ms, max_ms } => {
                non_negative("links.latency.min_ms", min_ms)?;
                non_negative("links.latency.max_ms", max_ms)?;
                if max_ms < min_ms {
                    return Err(invalid("links.latency.max_ms", "must be >= min_ms".into()));
                }
            }
        }
        let loss = non_negative("links.loss", raw.links.loss)?;
        if loss >= 1.0 {
            return Err(invalid("links.loss", "must be below 1".into()));
        }
        if let Some(st) = &raw.storage {
            if !(1..=16).contains(&st.replicas) {
                return Err(invalid("storage.replicas", "must be 1 to 16".into()));
            }
            if !(1..=10_000_000).contains(&st.records) {
                return Err(invalid("storage.records", "must be 1 to 10,000,000".into()));
            }
            if let Some(d) = st.depart_s {
                non_negative("storage.depart_s", d)?;
            }
            if !(st.heartbeat_s.is_finite() && (1.0..=60.0).contains(&st.heartbeat_s)) {
                return Err(invalid("storage.heartbeat_s", "must be 1 to 60".into()));
            }
            if !(st.put_rate.is_finite() && (0.001..=1e6).contains(&st.put_rate)) {
                return Err(invalid("storage.put_rate", "must be 0.001 to 1e6".into()));
            }
            if st.repair_per_sec == 0 {
                return Err(invalid("storage.repair_per_sec", "must be >= 1".into()));
            }
            if let Some(node) = st.depart_node {
                let ids = crate::storage::storage_node_ids_of(
                    t.layers,
                    t.nodes_per_layer,
                    t.providers,
                    st.stores,
                );
                if !ids.contains(&node) {
                    return Err(invalid(
                        "storage.depart_node",
                        "must be a storing node (mixes numbered from 0, then providers)".into(),
                    ));
                }
            }
        }
        if let Some(a) = &raw.attack {
            if u64::from(a.dropping_node) >= nodes {
                return Err(invalid(
                    "attack.dropping_node",
                    format!("the network has nodes 0 to {}", nodes - 1),
                ));
            }
            non_negative("attack.from_s", a.from_s)?;
            non_negative("attack.pause_s", a.pause_s)?;
            if a.spare_loops && raw.packet_mode != PacketMode::Abstract {
                return Err(invalid(
                    "attack.spare_loops",
                    "the attacker tells loops by the abstract packets' ids: set packet_mode = \"abstract\"".into(),
                ));
            }
            if a.kind == AttackKind::NMinusOne && raw.packet_mode != PacketMode::Abstract {
                return Err(invalid(
                    "attack.kind",
                    "the n-1 attack tells its target by the abstract packets' ids: set packet_mode = \"abstract\"".into(),
                ));
            }
            if a.kind == AttackKind::NMinusOne && !matches!(raw.mixing, RawMixing::Poisson { .. }) {
                return Err(invalid(
                    "attack.kind",
                    "the n-1 attack here isolates by blocking alone, which empties only a Poisson mix (a pool mix keeps its minimum): set mixing.mode = \"poisson\"".into(),
                ));
            }
            if a.from_s >= raw.duration_s {
                return Err(invalid(
                    "attack.from_s",
                    "must be before the end (duration_s)".into(),
                ));
            }
        }
        if let Some(a) = &raw.adversary {
            let shape = crate::adversary::Shape {
                layers: raw.topology.layers,
                per_layer: raw.topology.nodes_per_layer,
                providers: raw.topology.providers,
                weighted: raw.topology.bandwidth.is_some(),
            };
            a.check(shape)
                .map_err(|(field, reason)| invalid(field, reason))?;
            if raw.packet_mode != PacketMode::Abstract {
                return Err(invalid(
                    "adversary.strategy",
                    "held nodes see through their mixing by the abstract packets' ids: set packet_mode = \"abstract\"".into(),
                ));
            }
        }
        if let Some(c) = &raw.mix_churn {
            c.check(
                raw.topology.layers * raw.topology.nodes_per_layer,
                raw.topology.providers,
                raw.duration_s,
            )
            .map_err(|(field, reason)| invalid(field, reason))?;
            if raw.attack.is_some_and(|a| a.kind == AttackKind::NMinusOne) {
                return Err(invalid(
                    "mix_churn",
                    "the n-1 attacker holds a mix's traffic through its flush and target: not with a mix that may leave (set no [mix_churn])".into(),
                ));
            }
        }
        if let Some(m) = &raw.mailbox {
            m.check()
                .map_err(|(field, reason)| invalid(field, reason))?;
        }
        if let Some(r) = &raw.replies {
            r.check()
                .map_err(|(field, reason)| invalid(field, reason))?;
        }
        if let Some(d) = &raw.disclosure {
            d.check(raw.clients.count)
                .map_err(|(field, reason)| invalid(field, reason))?;
            if matches!(raw.clients.send, SendPattern::Trace { .. }) {
                return Err(invalid(
                    "disclosure.sender",
                    "a trace names every recipient itself: the disclosure attack needs clients.send = poisson".into(),
                ));
            }
        }
        for (field, p) in [
            ("anonymity.focus_gateway", raw.anonymity.focus_gateway),
            ("anonymity.focus_exit", raw.anonymity.focus_exit),
        ] {
            if let Some(p) = p
                && p >= raw.topology.providers
            {
                return Err(invalid(
                    field,
                    format!(
                        "a provider, numbered from 0 to {}",
                        raw.topology.providers.saturating_sub(1)
                    ),
                ));
            }
        }
        if raw.anonymity.sender_entropy && raw.clients.count > MAX_SENDER_ENTROPY_CLIENTS {
            return Err(invalid(
                "anonymity.sender_entropy",
                format!(
                    "every packet carries a mass for each sender that reached it: at most {MAX_SENDER_ENTROPY_CLIENTS} clients"
                ),
            ));
        }
        let (send_rate, trace) = match &raw.clients.send {
            SendPattern::Poisson { rate: r } => (rate("clients.send.rate", *r)?, Vec::new()),
            SendPattern::Trace { file } => {
                let trace_path = path.parent().unwrap_or(Path::new(".")).join(file);
                (0.0, load_trace(&trace_path, raw.clients.count)?)
            }
        };
        Ok(Self {
            name: raw.name,
            duration: Duration::from_secs_f64(raw.duration_s),
            warmup: Duration::from_secs_f64(raw.warmup_s),
            queue_series_s: raw.queue_series_s,
            queue_limit: raw.limits.queue_limit,
            replay_filters: raw.limits.replay_filters,
            output_limit: raw.limits.output_limit,
            epochs: raw.epochs.as_ref().map(|e| {
                (
                    Duration::from_secs_f64(e.length_s),
                    Duration::from_secs_f64(e.grace_s),
                )
            }),
            seed: raw.seed,
            packet_mode: raw.packet_mode,
            layers: t.layers,
            nodes_per_layer: t.nodes_per_layer,
            topology: t.kind,
            bandwidth: t.bandwidth.clone(),
            providers: t.providers,
            clients: raw.clients.count,
            send_rate,
            trace,
            cover,
            bulk,
            mixing,
            mean_delay,
            max_delay,
            latency: raw.links.latency,
            loss,
            tagged_messages: raw.anonymity.tagged_messages,
            sender_entropy: raw.anonymity.sender_entropy,
            focus: (raw.anonymity.focus_gateway.is_some() || raw.anonymity.focus_exit.is_some())
                .then_some((raw.anonymity.focus_gateway, raw.anonymity.focus_exit)),
            storage: raw.storage,
            attack: raw.attack,
            adversary: raw.adversary.clone(),
            disclosure: raw.disclosure,
            mix_churn: raw.mix_churn.clone(),
            mailbox: raw.mailbox,
            replies: raw.replies,
        })
    }
}
