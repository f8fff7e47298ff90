//! What a run measures, and how it is written out (JSON summary, CSV
//! series). Formulas: `specs/simulation.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use mtos_mixnode::{Counters, DropReason, Instant, MixingMode};
use serde_json::{Value, json};

use crate::entropy::TagResult;
use crate::loops::LoopReport;
use crate::scenario::Scenario;
use crate::sim::Kind;

const KINDS: [(Kind, &str); 5] = [
    (Kind::Real, "real"),
    (Kind::PayloadCover, "payload_cover"),
    (Kind::Loop, "loop"),
    (Kind::Drop, "drop"),
    (Kind::NodeLoop, "node_loop"),
];

fn kind_index(kind: Kind) -> usize {
    KINDS.iter().position(|(k, _)| *k == kind).unwrap_or(0)
}

/// Counts and samples of one run.
#[derive(Debug, Clone)]
pub struct Metrics {
    warmup: Instant,
    duration: Duration,
    /// Packets sent, by kind.
    pub sent: [u64; 5],
    /// Packets delivered at their final hop, by kind.
    pub delivered: [u64; 5],
    /// Client send to final-hop delivery, seconds, real messages created
    /// after the warm-up.
    pub network_latency_s: Vec<f64>,
    /// Creation (queued at the client) to delivery, seconds.
    pub end_to_end_latency_s: Vec<f64>,
    /// Frames put on links.
    pub link_frames: u64,
    /// Frames lost by links.
    pub link_losses: u64,
    /// Real messages refused by a full client queue.
    pub client_queue_drops: u64,
    /// Payloads for a client that reached a gateway other than its own
    /// (it changed gateway after they were built): lost.
    pub misdelivered: u64,
    /// Deliveries whose payload did not decode.
    pub undecodable: u64,
    /// Engine drops by reason.
    pub engine_drops: BTreeMap<&'static str, u64>,
    /// Events processed.
    pub events: u64,
    /// Pool flushes that released packets (pool mode).
    pub pool_flushes: u64,
    /// Flushes that left fewer packets than the pool threshold.
    pub pool_threshold_violations: u64,
    /// Tagged messages' anonymity, in tag order.
    pub entropy: Vec<TagResult>,
    /// Tags the scenario asks for (`anonymity.tagged_messages`).
    pub tags_asked: u32,
    /// Tagged messages whose whole mass was lost (not measured).
    pub tags_wholly_lost: u32,
    /// Tagged messages with under 99% of their mass out at the end.
    pub tags_unfinished: u32,
    /// When each tagged message was sent, seconds of virtual time, in tag
    /// order (measured or not).
    pub tag_sent_s: Vec<f64>,
    /// Who sent each tagged message, in tag order.
    pub tag_sender: Vec<u32>,
    /// What the nodes' loops found.
    pub node_loops: LoopReport,
    /// Frames the attacking node discarded, or the n−1 attacker blocked
    /// (`[attack]`).
    pub attack_drops: u64,
    /// Epochs begun after the first (`[epochs]`).
    pub epochs: u32,
    /// Tags delivered in the scenario's focus (`anonymity.focus_*`).
    pub focus_tags: std::collections::BTreeSet<u32>,
    /// The statistical disclosure attack's result (`[disclosure]`).
    pub disclosure: Option<Value>,
    /// What mix churn did (`[mix_churn]`).
    pub mix_churn: Option<crate::mix_churn::ChurnReport>,
    /// What the mailboxes did (`[mailbox]`).
    pub mailbox: Option<crate::mailbox::MailboxReport>,
    /// What the answers did (`[replies]`).
    pub replies: Option<crate::replies::RepliesReport>,
    /// What the n−1 attacker achieved.
    pub n_minus_1: crate::sim::NMinusOneReport,
    /// Routes of real messages the adversary held (`[adversary]`).
    pub routes: RouteCompromise,
    /// Each node's load, by node.
    pub node_load: Vec<crate::load::NodeLoad>,
    /// Every node's held packets over time.
    pub queue_series: crate::load::QueueSeries,
}

/// How often the adversary held a real message's route
/// (`simulation.md` §5): every mix of it, or every node (gateway and
/// exit provider too).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteCompromise {
    /// The nodes the adversary holds.
    pub held: Vec<u32>,
    /// Real messages sent after the warm-up.
    pub routes: u64,
    /// Those whose every mix the adversary held.
    pub mixes_held: u64,
    /// Those whose every node it held.
    pub all_held: u64,
    /// When the first route with every mix held was sent (virtual s).
    pub first_mixes_held_s: Option<f64>,
    /// When the first route with every node held was sent (virtual s).
    pub first_all_held_s: Option<f64>,
}

impl RouteCompromise {
    /// Counts one route sent at `at_s`.
    pub fn count(&mut self, at_s: f64, mixes_held: bool, all_held: bool) {
        self.routes += 1;
        if mixes_held {
            self.mixes_held += 1;
            self.first_mixes_held_s.get_or_insert(at_s);
        }
        if all_held {
            self.all_held += 1;
            self.first_all_held_s.get_or_insert(at_s);
        }
    }
}

impl Metrics {
    /// Empty metrics for a scenario.
    pub fn new(scenario: &Scenario) -> Self {
        Self {
            warmup: Instant::from_duration(scenario.warmup),
            duration: scenario.duration,
            sent: [0; 5],
            delivered: [0; 5],
            network_latency_s: Vec::new(),
            end_to_end_latency_s: Vec::new(),
            link_frames: 0,
            link_losses: 0,
            client_queue_drops: 0,
            misdelivered: 0,
            undecodable: 0,
            engine_drops: BTreeMap::new(),
            events: 0,
            pool_flushes: 0,
            pool_threshold_violations: 0,
            entropy: Vec::new(),
            tags_asked: scenario.tagged_messages,
            tags_wholly_lost: 0,
            tags_unfinished: 0,
            tag_sent_s: Vec::new(),
            tag_sender: Vec::new(),
            node_loops: LoopReport::default(),
            attack_drops: 0,
            n_minus_1: Default::default(),
            disclosure: None,
            mix_churn: None,
            mailbox: None,
            replies: None,
            focus_tags: Default::default(),
            epochs: 0,
            routes: RouteCompromise::default(),
            node_load: Vec::new(),
            queue_series: crate::load::QueueSeries::default(),
        }
    }

    pub(crate) fn sent(&mut self, kind: Kind) {
        self.sent[kind_index(kind)] += 1;
    }

    /// A packet of this kind reached its exit (or its node, for node
    /// loops) and was released there.
    pub(crate) fn delivered(&mut self, kind: Kind) {
        self.delivered[kind_index(kind)] += 1;
    }

    /// A real message generated at `created` reached its client: its
    /// time in the network (sender to exit) and end to end (generation
    /// to its client: at the exit, or through its mailbox with
    /// `[mailbox]`). Kept for messages generated after the warm-up.
    pub(crate) fn latencies(&mut self, created: Instant, network: Duration, end_to_end: Duration) {
        if created >= self.warmup {
            self.network_latency_s.push(network.as_secs_f64());
            self.end_to_end_latency_s.push(end_to_end.as_secs_f64());
        }
    }

    pub(crate) fn finish(&mut self, events: u64, nodes: &[Counters], max_held: &[usize]) {
        self.events = events;
        let from = self.warmup.since_origin().as_secs_f64();
        let count = nodes.len();
        self.node_load = nodes
            .iter()
            .zip(max_held)
            .enumerate()
            .map(|(n, (c, h))| crate::load::NodeLoad {
                received: c.received,
                forwarded: c.forwarded,
                delivered: c.delivered,
                max_held: *h,
                mean_held: self.queue_series.mean(count, n, from),
            })
            .collect();
        for reason in DropReason::ALL {
            let total: u64 = nodes.iter().map(|c| c.drops(reason)).sum();
            if total > 0 {
                self.engine_drops.insert(reason.name(), total);
            }
        }
    }

    /// Total packets sent.
    pub fn total_sent(&self) -> u64 {
        self.sent.iter().sum()
    }

    /// The share of packets sent that were not real messages.
    pub fn cover_fraction(&self) -> f64 {
        let total = self.total_sent();
        if total == 0 {
            return 0.0;
        }
        (total - self.sent[kind_index(Kind::Real)]) as f64 / total as f64
    }

    /// The JSON summary.
    pub fn summary(&self, scenario: &Scenario, seed: u64) -> Value {
        let by_kind = |v: &[u64; 5]| -> Value {
            KINDS
                .iter()
                .map(|(k, name)| ((*name).to_owned(), json!(v[kind_index(*k)])))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        let total = self.total_sent();
        let cover = total - self.sent[kind_index(Kind::Real)];
        let mailbox = self.mailbox.as_ref().map(|m| m.summary(scenario));
        let mut summary = json!({
            "scenario": scenario.name,
            "seed": seed,
            "code_version": crate::CODE_VERSION,
            "packet_mode": scenario.packet_mode,
            "topology": scenario.topology,
            "bandwidth": scenario.bandwidth.as_ref().map(crate::bandwidth::Bandwidth::summary),
            "limits": {
                "queue_limit": scenario.queue_limit,
                "output_limit": scenario.output_limit,
                "replay_filters": scenario.replay_filters,
            },
            "epochs": scenario.epochs.map(|(length, grace)| json!({
                "length_s": length.as_secs_f64(),
                "grace_s": grace.as_secs_f64(),
                "rotations": self.epochs,
            })),
            "virtual_seconds": self.duration.as_secs_f64(),
            "warmup_seconds": scenario.warmup.as_secs_f64(),
            "events": self.events,
            "sent": by_kind(&self.sent),
            "delivered": by_kind(&self.delivered),
            "cover_fraction_of_packets": if total == 0 { 0.0 } else { cover as f64 / total as f64 },
            "link_frames": self.link_frames,
            "link_losses": self.link_losses,
            "client_queue_drops": self.client_queue_drops,
            "engine_drops": self.engine_drops,
            "pool_flushes": self.pool_flushes,
            "pool_threshold_violations": self.pool_threshold_violations,
            "anonymity": self.anonymity_summary(scenario),
            "network_latency_s": stats(&self.network_latency_s),
            "end_to_end_latency_s": stats(&self.end_to_end_latency_s),
            "storage": crate::storage::study(scenario, seed),
            "storage_churn": crate::churn::study(scenario, seed),
            "mix_churn": self.mix_churn.as_ref().map(|c| c.summary(scenario)),
            "node_loops": self.node_loops.summary(),
            "node_load": crate::load::summary(scenario, &self.node_load),
            "bytes": crate::load::bytes(scenario, self.link_frames, self.delivered[kind_index(Kind::Real)]),
            "attack": scenario.attack.map(|a| json!({
                "kind": a.kind,
                "dropping_node": a.dropping_node,
                "from_s": a.from_s,
                "frames_dropped": self.attack_drops,
                "n_minus_1": (a.kind == crate::scenario::AttackKind::NMinusOne)
                    .then(|| self.n_minus_1.summary(a.pause_s)),
                "first_alarm_after_s": self
                    .node_loops
                    .first_alarm_after(a.from_s)
                    .map(|t| t - a.from_s),
                "alarms_naming_it": self.node_loops.alarms.iter().filter(|x| x.3 == Some(a.dropping_node)).count(),
                "first_naming_it_after_s": self
                    .node_loops
                    .alarms
                    .iter()
                    .find(|x| x.3 == Some(a.dropping_node) && x.1 >= a.from_s)
                    .map(|x| x.1 - a.from_s),
            })),
            "disclosure": self.disclosure,
            "adversary": scenario.adversary.as_ref().map(|a| {
                let r = &self.routes;
                let share = |k: u64| if r.routes == 0 { 0.0 } else { k as f64 / r.routes as f64 };
                json!({
                    "strategy": a.strategy,
                    "nodes_held": r.held,
                    "routes": r.routes,
                    "routes_with_every_mix_held": share(r.mixes_held),
                    "routes_with_every_node_held": share(r.all_held),
                    "mix_traffic_held": self.mix_traffic_held(scenario),
                    "first_route_with_every_mix_held_s": r.first_mixes_held_s,
                    "first_route_with_every_node_held_s": r.first_all_held_s,
                })
            }),
        });
        // Apart: more keys are past the macro's recursion limit.
        summary["mailbox"] = json!(mailbox);
        summary["misdelivered"] = json!(self.misdelivered);
        summary["replies"] = json!(self.replies.as_ref().map(|r| r.summary(scenario)));
        summary
    }

    /// Mean entropy of the tagged messages (bits) and its standard error.
    pub fn mean_entropy(&self) -> Option<(f64, f64)> {
        mean_and_stderr(self.entropy.iter().map(|t| t.entropy_bits))
    }

    /// The share of the frames the mixes took in over the run (warm-up
    /// included; not those lost at a departed mix or held back by an
    /// attacker) that reached mixes the adversary holds.
    fn mix_traffic_held(&self, scenario: &Scenario) -> f64 {
        let mixes = (scenario.layers * scenario.nodes_per_layer) as usize;
        let load = || self.node_load.iter().take(mixes).enumerate();
        let all: u64 = load().map(|(_, l)| l.received).sum();
        let held: u64 = load()
            .filter(|(n, _)| self.routes.held.contains(&(*n as u32)))
            .map(|(_, l)| l.received)
            .sum();
        if all == 0 {
            0.0
        } else {
            held as f64 / all as f64
        }
    }

    /// The stratified closed form for a real message's route
    /// (`simulation.md` §2, Closed forms): `layers + 2` exponential stages,
    /// the `layers + 1` links between them, and the providers' exits over
    /// the run. Only where its assumptions hold: Poisson mixing, no link
    /// loss, no held nodes, no attack, no mix churn, equal mixes, one
    /// traffic class and a stratified topology.
    fn closed_form_bits(&self, scenario: &Scenario) -> Option<f64> {
        if scenario.mixing != MixingMode::Poisson
            || self.duration.is_zero()
            || scenario.loss > 0.0
            || scenario.adversary.is_some()
            || scenario.attack.is_some()
            || scenario.mix_churn.is_some()
            || scenario.bandwidth.is_some()
            || scenario.bulk.is_some()
            || scenario.topology != crate::scenario::TopologyKind::Stratified
        {
            return None;
        }
        let mixes = (scenario.layers * scenario.nodes_per_layer) as usize;
        let exits: u64 = self.node_load.iter().skip(mixes).map(|l| l.delivered).sum();
        let rate = exits as f64 / self.duration.as_secs_f64();
        let spread = match scenario.latency {
            crate::scenario::Latency::Constant { .. } => crate::stratified::LinkSpread::None,
            crate::scenario::Latency::Uniform { min_ms, max_ms } => {
                crate::stratified::LinkSpread::Uniform((max_ms - min_ms) / 1000.0)
            }
            crate::scenario::Latency::Exponential { mean_ms } => {
                crate::stratified::LinkSpread::Exponential(mean_ms / 1000.0)
            }
        };
        (rate > 0.0).then(|| {
            crate::stratified::exit_time_entropy_bits(
                scenario.layers + 2,
                scenario.mean_delay.as_secs_f64(),
                spread,
                scenario.layers + 1,
            ) + rate.log2()
        })
    }

    fn anonymity_summary(&self, scenario: &Scenario) -> Value {
        let tags = &self.entropy;
        // Over the tags that have the figure (a receiver entropy needs
        // mass in a mailbox).
        let stat = |f: fn(&TagResult) -> f64| {
            let has = tags.iter().map(f).filter(|v| v.is_finite());
            mean_and_stderr(has.clone()).map_or(Value::Null, |(mean, se)| {
                let min = has.clone().fold(f64::INFINITY, f64::min);
                json!({ "mean": mean, "stderr": se, "min": min, "tags": has.count() })
            })
        };
        let mut out = json!({
            "closed_form_bits": self.closed_form_bits(scenario),
            "tags_asked": self.tags_asked,
            "tagged": self.tag_sent_s.len(),
            "tagged_measured": tags.len(),
            "tagged_wholly_lost": self.tags_wholly_lost,
            "tagged_unfinished": self.tags_unfinished,
        });
        if let Some((mean, se)) = self.mean_entropy() {
            let min = tags
                .iter()
                .map(|t| t.entropy_bits)
                .fold(f64::INFINITY, f64::min);
            let sets = tags.iter().map(|t| t.entropy_bits.exp2()).sum::<f64>() / tags.len() as f64;
            let extra = json!({
                "entropy_bits_mean": mean,
                "entropy_bits_stderr": se,
                "entropy_bits_min": min,
                "effective_anonymity_set_mean": sets,
                "receiver_entropy_bits": stat(|t| t.receiver_bits),
                "exit_node_entropy_bits": stat(|t| t.exit_node_bits),
                // Over every tag done, those lost whole counting 1.
                "lost_mass_mean": (tags.iter().map(|t| t.lost_mass).sum::<f64>()
                    + f64::from(self.tags_wholly_lost))
                    / (tags.len() as f64 + f64::from(self.tags_wholly_lost)),
                "ruled_out_mass_mean": tags.iter().map(|t| t.ruled_out_mass).sum::<f64>() / tags.len() as f64,
                "recipient_guess": crate::linkability::recipient_guess(tags),
                "sender_guess": crate::linkability::sender_guess(tags),
                "focus": scenario.focus.map(|(gateway, exit)| {
                    let focused: Vec<TagResult> = tags
                        .iter()
                        .filter(|t| self.focus_tags.contains(&t.tag))
                        .copied()
                        .collect();
                    json!({
                        "gateway": gateway,
                        "exit": exit,
                        "delivered": focused.len(),
                        "sender_guess": crate::linkability::sender_guess(&focused),
                        "recipient_guess": crate::linkability::recipient_guess(&focused),
                    })
                }),
                "unlinkability": crate::linkability::unlinkability(tags),
            });
            if let (Some(o), Value::Object(e)) = (out.as_object_mut(), extra) {
                o.extend(e);
            }
        }
        out
    }

    /// One row per tagged message.
    pub fn entropy_csv(&self) -> String {
        let mut out = String::from(
            "tag,sent_s,entropy_bits,effective_anonymity_set,receiver_bits,exit_node_bits,exited_mass,lost_mass\n",
        );
        for t in &self.entropy {
            let sent = self
                .tag_sent_s
                .get(t.tag as usize)
                .copied()
                .unwrap_or(f64::NAN);
            // An empty cell where a tag has no receiver entropy.
            let receiver = if t.receiver_bits.is_finite() {
                format!("{:.9}", t.receiver_bits)
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "{},{sent:.6},{:.9},{:.6},{receiver},{:.9},{:.9},{:.9}",
                t.tag,
                t.entropy_bits,
                t.entropy_bits.exp2(),
                t.exit_node_bits,
                t.exited_mass,
                t.lost_mass
            );
        }
        out
    }

    /// One row per measured real message.
    pub fn latency_csv(&self) -> String {
        let mut out = String::from("network_latency_s,end_to_end_latency_s\n");
        for (n, e) in self
            .network_latency_s
            .iter()
            .zip(&self.end_to_end_latency_s)
        {
            let _ = writeln!(out, "{n:.9},{e:.9}");
        }
        out
    }
}

/// The `p` quantile of `sorted` (ascending): the sample at the nearest
/// rank, `None` when there is none.
pub(crate) fn quantile(sorted: &[f64], p: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    sorted.get((last as f64 * p).round() as usize).copied()
}

pub(crate) fn stats(samples: &[f64]) -> Value {
    if samples.is_empty() {
        return json!({ "count": 0 });
    }
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let q = |p: f64| quantile(&v, p).unwrap_or(f64::NAN);
    json!({
        "count": v.len(),
        "mean": v.iter().sum::<f64>() / v.len() as f64,
        "p50": q(0.5),
        "p90": q(0.9),
        "p99": q(0.99),
        "max": v[v.len() - 1],
    })
}

/// Mean and standard error `s/√k` of `values` (`None` when empty).
pub fn mean_and_stderr(values: impl Iterator<Item = f64> + Clone) -> Option<(f64, f64)> {
    let n = values.clone().count();
    if n == 0 {
        return None;
    }
    let mean = values.clone().sum::<f64>() / n as f64;
    let var = values.map(|v| (v - mean).powi(2)).sum::<f64>() / (n.max(2) - 1) as f64;
    Some((mean, (var / n as f64).sqrt()))
}
