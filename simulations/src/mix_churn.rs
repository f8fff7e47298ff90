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
//! once (no per-client fetch times).
//!
//! With `gateways = true` the providers churn too, by the same rate or
//! trace (numbered after the mixes). A gateway that leaves loses its
//! mailboxes with the rest; once the document leaves it out, each of its
//! clients draws another listed gateway at its next check of the
//! document (within 30 s, `screen.md`'s guard rule: a client keeps its
//! gateway while it is listed). A client's address names its gateway,
//! so what was built for the old one (messages on their way, reply
//! blocks handed out) reaches a gateway that no longer files for it and
//! is lost (`misdelivered`); senders use the new address at once (an
//! address book updated without delay: the figures are a bound). A
//! gateway that comes back is listed again and keeps no clients: they
//! have moved, and stay where they are.

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
    /// Whether the providers (the clients' gateways, numbered after the
    /// mixes) churn too.
    #[serde(default)]
    pub gateways: bool,
}

/// How often a client checks that the document still lists its gateway
/// (production's guard check, `screen.md`), seconds.
pub const GUARD_CHECK_S: f64 = 30.0;

/// The longest time a churn setting may give, seconds.
const MAX_S: f64 = 1e9;

fn default_leave_lag() -> f64 {
    105.0
}

fn default_join_lag() -> f64 {
    75.0
}

impl MixChurnConfig {
    /// Why the section does not fit a network of `mixes` mixes and
    /// `providers` providers, if it does not: the field and the reason.
    pub fn check(
        &self,
        mixes: u32,
        providers: u32,
        duration_s: f64,
    ) -> Result<(), (&'static str, String)> {
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
        if self.gateways && providers < 2 {
            return Err((
                "mix_churn.gateways",
                "a client whose gateway leaves moves to another: at least 2 providers".into(),
            ));
        }
        let mix = |n: u32| -> Result<(), String> {
            match self.gateways {
                true => (n < mixes + providers).then_some(()).ok_or_else(|| {
                    format!(
                        "node {n}: mixes are 0 to {}, providers {mixes} to {}",
                        mixes.saturating_sub(1),
                        mixes + providers - 1
                    )
                }),
                false => (n < mixes).then_some(()).ok_or_else(|| {
                    format!(
                        "node {n}: only mixes churn, numbered 0 to {} (set gateways = true for providers)",
                        mixes.saturating_sub(1)
                    )
                }),
            }
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
    /// Gateways that left and came back (`gateways = true`; the figures
    /// above count mixes only).
    pub gateway_departures: u64,
    pub gateway_returns: u64,
    /// Packets a gateway held when it left, and frames that reached it
    /// while away (lost).
    pub gateway_lost_held: u64,
    pub gateway_lost_arriving: u64,
    /// Payloads waiting in the mailboxes of a gateway that left (lost;
    /// `[mailbox]`).
    pub mailbox_lost: u64,
    /// Gateway-seconds away.
    pub gateway_down_s: f64,
    /// Clients that moved to another gateway.
    pub clients_moved: u64,
    /// Slots clients skipped while their gateway was away (a real
    /// message in one went back to its queue).
    pub slots_skipped: u64,
    /// For each move, how long its client was without a gateway: from
    /// its gateway leaving to the move, seconds.
    pub cut_off_s: Vec<f64>,
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
            "gateways": scenario.mix_churn.as_ref().is_some_and(|c| c.gateways).then(|| {
                let providers = f64::from(scenario.providers);
                serde_json::json!({
                    "departures": self.gateway_departures,
                    "returns": self.gateway_returns,
                    "lost_held": self.gateway_lost_held,
                    "lost_arriving": self.gateway_lost_arriving,
                    "mailbox_lost": self.mailbox_lost,
                    "share_of_gateway_time_away": if run > 0.0 { self.gateway_down_s / (run * providers) } else { 0.0 },
                    "clients_moved": self.clients_moved,
                    "slots_skipped": self.slots_skipped,
                    "cut_off_s": crate::metrics::stats(&self.cut_off_s),
                })
            }),
        })
    }
}
