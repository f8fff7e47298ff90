//! Per-node load and byte overhead (`specs/simulation.md` §2, "Load and
//! bytes"): frames each node took in, forwarded and delivered, the most
//! it held at once, by layer; and the bytes a real network would carry
//! for the run (every link transmission a Sphinx frame) against the real
//! messages' payload.

use std::fmt::Write as _;

use mtos_crypto::sphinx::{FRAME_SIZE, MAX_MESSAGE};
use serde_json::{Value, json};

use crate::scenario::Scenario;

/// One node's load over a run.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NodeLoad {
    /// Frames handed to its engine.
    pub received: u64,
    /// Frames it sent on.
    pub forwarded: u64,
    /// Payloads it delivered.
    pub delivered: u64,
    /// The most packets it held at once.
    pub max_held: usize,
    /// The packets it held on average over the samples after the
    /// warm-up (the queue series).
    pub mean_held: f64,
}

/// Every node's held packets, sampled every `queue_series_s` of virtual
/// time: `held[k · nodes + n]` is node `n` at `times[k]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueSeries {
    /// When each sample was taken, seconds.
    pub times: Vec<f64>,
    /// Packets held, sample by sample, node by node.
    pub held: Vec<u32>,
}

impl QueueSeries {
    /// Node `n`'s mean over the samples at or after `from_s`.
    pub fn mean(&self, nodes: usize, n: usize, from_s: f64) -> f64 {
        let (mut sum, mut k) = (0u64, 0u64);
        for (i, t) in self.times.iter().enumerate() {
            if *t >= from_s
                && let Some(h) = self.held.get(i * nodes + n)
            {
                sum += u64::from(*h);
                k += 1;
            }
        }
        if k == 0 { 0.0 } else { sum as f64 / k as f64 }
    }

    /// `queue_series.csv`: a row per sample, the time and each node's
    /// held packets (`node_N` columns).
    pub fn csv(&self, nodes: usize) -> String {
        let mut out = String::from("time_s");
        for n in 0..nodes {
            let _ = write!(out, ",node_{n}");
        }
        out.push('\n');
        for (i, t) in self.times.iter().enumerate() {
            let _ = write!(out, "{t}");
            for h in self.held.iter().skip(i * nodes).take(nodes) {
                let _ = write!(out, ",{h}");
            }
            out.push('\n');
        }
        out
    }
}

/// Node `n`'s group: `layer-K` (1-based) or `providers`.
fn group(scenario: &Scenario, n: u32) -> String {
    let mixes = scenario.layers * scenario.nodes_per_layer;
    if n < mixes {
        format!("layer-{}", n / scenario.nodes_per_layer + 1)
    } else {
        "providers".to_owned()
    }
}

/// Load by group: per node frames received (min, mean, max, max/mean)
/// and the most any held.
pub fn summary(scenario: &Scenario, nodes: &[NodeLoad]) -> Value {
    let mut groups: Vec<(String, Vec<NodeLoad>)> = Vec::new();
    for (n, l) in nodes.iter().enumerate() {
        let g = group(scenario, n as u32);
        match groups.iter_mut().find(|(name, _)| *name == g) {
            Some((_, v)) => v.push(*l),
            None => groups.push((g, vec![*l])),
        }
    }
    groups
        .into_iter()
        .map(|(g, v)| {
            let r: Vec<u64> = v.iter().map(|l| l.received).collect();
            let mean = r.iter().sum::<u64>() as f64 / r.len().max(1) as f64;
            let max = r.iter().copied().max().unwrap_or(0);
            (
                g,
                json!({
                    "nodes": v.len(),
                    "received_min": r.iter().copied().min().unwrap_or(0),
                    "received_mean": mean,
                    "received_max": max,
                    "received_max_over_mean": if mean > 0.0 { max as f64 / mean } else { 0.0 },
                    "max_held": v.iter().map(|l| l.max_held).max().unwrap_or(0),
                    "mean_held": v.iter().map(|l| l.mean_held).sum::<f64>() / v.len().max(1) as f64,
                }),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// `node_load.csv`: one row per node.
pub fn csv(scenario: &Scenario, nodes: &[NodeLoad]) -> String {
    let mut out = String::from("node,group,received,forwarded,delivered,max_held,mean_held\n");
    for (n, l) in nodes.iter().enumerate() {
        let _ = writeln!(
            out,
            "{n},{},{},{},{},{},{}",
            group(scenario, n as u32),
            l.received,
            l.forwarded,
            l.delivered,
            l.max_held,
            l.mean_held
        );
    }
    out
}

/// Bytes: every link transmission (client to gateway and hop to hop) as
/// a Sphinx frame of [`FRAME_SIZE`] bytes, against the payload capacity
/// ([`MAX_MESSAGE`]) of the real messages delivered; the gateways'
/// delivery frames to their clients (mailbox retrieval, at each client's
/// delivery rate over the run); and what one client sends and receives a
/// day at its mean rates.
pub fn bytes(scenario: &Scenario, link_frames: u64, real_delivered: u64) -> Value {
    let frame = FRAME_SIZE as f64;
    let link = link_frames as f64 * frame;
    let delivery = f64::from(scenario.clients)
        * scenario.mean_delivery_rate()
        * scenario.duration.as_secs_f64()
        * frame;
    let payload = real_delivered as f64 * MAX_MESSAGE as f64;
    let per_payload = |b: f64| if payload > 0.0 { b / payload } else { 0.0 };
    json!({
        "frame_bytes": FRAME_SIZE,
        "message_bytes": MAX_MESSAGE,
        "link_bytes": link,
        "mailbox_delivery_bytes": delivery,
        "real_payload_bytes": payload,
        "link_bytes_per_payload_byte": per_payload(link),
        "link_and_delivery_bytes_per_payload_byte": per_payload(link + delivery),
        "client_upload_bytes_per_day": scenario.mean_client_rate() * frame * 86_400.0,
        "client_download_bytes_per_day": scenario.mean_delivery_rate() * frame * 86_400.0,
    })
}
