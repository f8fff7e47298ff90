//! `[mix_churn]`: mixes leaving and coming back during a run, by a rate
//! or a trace (`specs/simulation.md` §1, Mix churn).
//!
//! A mix that leaves loses what it holds and every frame sent to it
//! while it is away. Routes (clients' and the nodes' loops) keep going
//! through it until the network document drops it, `leave_lag_s` later;
//! one that comes back starts empty, under the current key, and routes
//! take it again `join_lag_s` after its return. The defaults are
//! production's: a node silent for three heartbeats (60 s) leaves the next
//! round's document (30 s) and clients fetch within 30 s (15 s on
//! average); a node back is listed within two rounds (60 s), plus the
//! clients' fetch (`directory.md` §3 and §4). Every client switches at
//! once (no per-client fetch times). Providers do not churn: clients'
//! gateways are fixed.

use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

use mtos_crypto::sphinx::sample_exponential;
use std::time::Duration;

/// One row of a churn trace.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChurnEvent {
    /// When, virtual seconds.
    pub at_s: f64,
    /// The mix (numbered from 0 layer by layer).
    pub node: u32,
    /// Whether it comes back (true) or leaves (false).
    pub up: bool,
}

/// The `[mix_churn]` section.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MixChurnConfig {
    /// Mean time a mix stays up before it leaves, seconds (with
    /// `mean_down_s`: churn by a rate; each mix on its own).
    #[serde(default)]
    pub mean_up_s: Option<f64>,
    /// Mean time a mix stays away, seconds.
    #[serde(default)]
    pub mean_down_s: Option<f64>,
    /// How long after a mix leaves routes stop taking it, seconds.
    #[serde(default = "default_leave_lag")]
    pub leave_lag_s: f64,
    /// How long after a mix comes back routes take it again, seconds.
    #[serde(default = "default_join_lag")]
    pub join_lag_s: f64,
    /// Mixes away from the start (listed from `join_lag_s` after they
    /// come up in `events`).
    #[serde(default)]
    pub start_down: Vec<u32>,
    /// A trace of departures and returns, besides (or instead of) the
    /// rate.
    #[serde(default)]
    pub events: Vec<ChurnEvent>,
}

/// The longest time a churn setting may give, seconds.
const MAX_S: f64 = 1e9;

fn default_leave_lag() -> f64 {
    105.0
}

fn default_join_lag() -> f64 {
    75.0
}

impl MixChurnConfig {
    /// Why the section does not fit a network of `mixes` mixes, if it
    /// does not: the field and the reason.
    pub fn check(&self, mixes: u32, duration_s: f64) -> Result<(), (&'static str, String)> {
        let positive = |v: Option<f64>| v.is_some_and(|s| s.is_finite() && s > 0.0 && s <= MAX_S);
        match (self.mean_up_s, self.mean_down_s) {
            (None, None) => {
                if self.events.is_empty() && self.start_down.is_empty() {
                    return Err((
                        "mix_churn",
                        "set mean_up_s and mean_down_s, or a trace of events".into(),
                    ));
                }
            }
            (up, down) if positive(up) && positive(down) => {
                // A trace row would flip a mix the rate has its own next
                // change queued for.
                if !self.events.is_empty() {
                    return Err((
                        "mix_churn.events",
                        "a rate or a trace, not both (start_down goes with either)".into(),
                    ));
                }
            }
            _ => {
                return Err((
                    "mix_churn.mean_up_s",
                    "mean_up_s and mean_down_s go together, each > 0 and at most 10^9 s".into(),
                ));
            }
        }
        for (field, lag) in [
            ("mix_churn.leave_lag_s", self.leave_lag_s),
            ("mix_churn.join_lag_s", self.join_lag_s),
        ] {
            if !(lag.is_finite() && (0.0..=MAX_S).contains(&lag)) {
                return Err((field, "from 0 to 10^9 s".into()));
            }
        }
        let mix = |n: u32| -> Result<(), String> {
            (n < mixes).then_some(()).ok_or_else(|| {
                format!(
                    "node {n}: only mixes churn, numbered 0 to {} (providers are the clients' fixed gateways)",
                    mixes.saturating_sub(1)
                )
            })
        };
        for (i, n) in self.start_down.iter().enumerate() {
            mix(*n).map_err(|e| ("mix_churn.start_down", e))?;
            if self.start_down[..i].contains(n) {
                return Err(("mix_churn.start_down", format!("node {n} listed twice")));
            }
        }
        for e in &self.events {
            mix(e.node).map_err(|m| ("mix_churn.events", m))?;
            if !(e.at_s.is_finite() && (0.0..=duration_s).contains(&e.at_s)) {
                return Err((
                    "mix_churn.events",
                    format!("at_s {}: from 0 to the run's duration_s", e.at_s),
                ));
            }
        }
        Ok(())
    }

    /// The next time a mix that just changed state changes again by the
    /// rate (`None`: no rate, only the trace).
    pub fn next_change(&self, up_now: bool, rng: &mut ChaCha20Rng) -> Option<Duration> {
        let mean = if up_now {
            self.mean_up_s?
        } else {
            self.mean_down_s?
        };
        Some(sample_exponential(rng, Duration::from_secs_f64(mean)))
    }
}

/// What churn did in a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChurnReport {
    /// Mixes that left.
    pub departures: u64,
    /// Mixes that came back.
    pub returns: u64,
    /// Packets a mix held when it left (lost).
    pub lost_held: u64,
    /// Frames that reached a mix while it was away (lost).
    pub lost_arriving: u64,
    /// Mix-seconds away, over all mixes.
    pub down_s: f64,
    /// Mix-seconds away but still in the routes' view.
    pub down_listed_s: f64,
}

impl ChurnReport {
    /// The summary's `mix_churn` object.
    pub fn summary(&self, scenario: &crate::Scenario) -> serde_json::Value {
        let mixes = f64::from(scenario.layers * scenario.nodes_per_layer);
        let run = scenario.duration.as_secs_f64();
        serde_json::json!({
            "departures": self.departures,
            "returns": self.returns,
            "lost_held": self.lost_held,
            "lost_arriving": self.lost_arriving,
            "mean_mixes_away": if run > 0.0 { self.down_s / run } else { 0.0 },
            "share_of_mix_time_away": if run > 0.0 && mixes > 0.0 { self.down_s / (run * mixes) } else { 0.0 },
            "mix_seconds_away_but_listed": self.down_listed_s,
        })
    }
}
