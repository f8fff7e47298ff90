//! `[mailbox]`: the last leg, from the recipient's gateway to the
//! recipient (`specs/simulation.md` §1, Mailboxes; production:
//! `client.md` §3, `mtos_mixnode::mailbox`, the node's gateway).
//!
//! A payload released by its exit gateway is filed in its client's
//! mailbox; the gateway writes the client one delivery frame at a time,
//! each after an exponential gap at the client's delivery rate λΔ =
//! max(λP + λL + λD, 1.25 (λP + λL)) (`ClassRates::delivery`), the oldest
//! waiting payload or a dummy. A message's end-to-end latency then runs
//! to the frame reaching its client.
//!
//! Frames are a Poisson process whatever they carry, so only those that
//! carry a payload are simulated: a mailbox that receives its first
//! payload draws its next frame's gap from then, which by the
//! exponential's lack of memory is the same process. Dummies are not
//! events. What comes back to a mailbox (its client's payload cover and
//! loops, and the messages sent to it) comes at λP + λL a second, and
//! without real messages as a Poisson process, so a mailbox is then an
//! M/M/1 queue: a payload waits Exp(λΔ − λP − λL) for its frame (test
//! `mailbox_waits_are_those_of_an_mm1_queue`). Real messages bunch the
//! arrivals (a client's own cover stops coming back while it sends), and
//! waits are longer (test
//! `a_clients_own_sending_bunches_its_mailboxs_arrivals`).

use serde::Deserialize;

/// A gateway's limits, production's (`node/src/run/gateway.rs`).
const PER_MAILBOX: usize = 1_000;
const PER_GATEWAY: usize = 20_000;

/// The `[mailbox]` section.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MailboxConfig {
    /// Frames a second to each client, whatever its class; unset:
    /// production's λΔ of the client's class at each instant.
    #[serde(default)]
    pub delivery_rate: Option<f64>,
    /// Payloads one mailbox holds; a payload for a full mailbox is
    /// dropped.
    #[serde(default = "default_per_mailbox")]
    pub per_mailbox: usize,
    /// Payloads one gateway holds over its mailboxes; when it is full, a
    /// payload takes the place of the oldest payload of the mailbox
    /// holding the most, if that holds more than its own would.
    #[serde(default = "default_per_gateway")]
    pub per_gateway: usize,
}

fn default_per_mailbox() -> usize {
    PER_MAILBOX
}

fn default_per_gateway() -> usize {
    PER_GATEWAY
}

impl MailboxConfig {
    /// Why the section cannot be run, if it cannot: the field and the
    /// reason.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        // Production's gateway clamps the rate to the same range.
        if let Some(r) = self.delivery_rate
            && !(r.is_finite() && (0.01..=10_000.0).contains(&r))
        {
            return Err((
                "mailbox.delivery_rate",
                format!("{r}: from 0.01 to 10,000 frames a second"),
            ));
        }
        if self.per_mailbox == 0 {
            return Err(("mailbox.per_mailbox", "at least 1".into()));
        }
        if self.per_gateway == 0 {
            return Err(("mailbox.per_gateway", "at least 1".into()));
        }
        Ok(())
    }
}

/// What the mailboxes did in a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MailboxReport {
    /// Payloads filed (real messages, payload cover and loops).
    pub filed: u64,
    /// Frames that carried a payload.
    pub frames: u64,
    /// How long payloads filed after the warm-up waited for their
    /// frames, seconds (those still waiting at the end are left out): a
    /// systematic sample of at most about a million.
    pub waits_s: Sample,
    /// The same, real messages only.
    pub real_waits_s: Vec<f64>,
    /// Payloads dropped for a full mailbox (or a full gateway with no
    /// fuller mailbox to take from).
    pub dropped_full: u64,
    /// Payloads a full gateway dropped from the fullest mailbox to make
    /// room.
    pub displaced: u64,
    /// Real messages among those dropped or displaced (counted as
    /// delivered at their exit, they never reach their client).
    pub real_lost: u64,
    /// The most payloads one mailbox held.
    pub max_depth: usize,
    /// Payloads still waiting when the run ended.
    pub waiting_at_end: u64,
}

impl MailboxReport {
    /// The summary's `mailbox` object. `predicted_mean_wait_s` is the
    /// M/M/1 queue's 1/(λΔ − λP − λL), given without bulk windows and
    /// with a stable queue: exact without real messages, a floor with.
    pub fn summary(&self, scenario: &crate::Scenario) -> serde_json::Value {
        let delivery = scenario
            .mailbox
            .and_then(|m| m.delivery_rate)
            .unwrap_or_else(|| scenario.mean_delivery_rate());
        let back = scenario.cover.payload + scenario.cover.loop_cover;
        let predicted =
            (scenario.bulk.is_none() && delivery > back).then(|| 1.0 / (delivery - back));
        let client_seconds = f64::from(scenario.clients) * scenario.duration.as_secs_f64();
        serde_json::json!({
            "delivery_rate": delivery,
            "predicted_mean_wait_s": predicted,
            "wait_s": crate::metrics::stats(&self.waits_s.kept),
            "real_wait_s": crate::metrics::stats(&self.real_waits_s),
            "filed": self.filed,
            "frames_with_payload": self.frames,
            "share_of_frames_with_payload": if client_seconds > 0.0 { self.frames as f64 / (delivery * client_seconds) } else { 0.0 },
            "dropped_full": self.dropped_full,
            "displaced": self.displaced,
            "real_lost": self.real_lost,
            "max_depth": self.max_depth,
            "waiting_at_end": self.waiting_at_end,
        })
    }
}

/// A systematic sample of a long series: every `stride`-th value, the
/// stride doubling (and every other value kept so far dropped) whenever
/// `LIMIT` are kept, so memory stays bounded in long runs (an hour of
/// `large.toml` files 5 × 10^7 payloads).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// The values kept.
    pub kept: Vec<f64>,
    stride: u64,
    seen: u64,
}

impl Sample {
    const LIMIT: usize = 1 << 20;

    /// Offers the next value of the series.
    pub fn push(&mut self, value: f64) {
        let stride = self.stride.max(1);
        if self.seen.is_multiple_of(stride) {
            self.kept.push(value);
            if self.kept.len() >= Self::LIMIT {
                let mut i = 0;
                self.kept.retain(|_| {
                    i += 1;
                    i % 2 == 1
                });
                self.stride = stride * 2;
            }
        }
        self.seen += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample keeps every stride-th value of the series, evenly, and
    /// never more than its limit.
    #[test]
    fn a_sample_stays_systematic_and_bounded() {
        let mut s = Sample::default();
        let n = 3 * Sample::LIMIT as u64 + 5;
        for i in 0..n {
            s.push(i as f64);
        }
        assert!(s.kept.len() < Sample::LIMIT);
        assert_eq!(s.stride, 4);
        assert!(s.kept.iter().enumerate().all(|(j, v)| *v == (4 * j) as f64));
        assert_eq!(s.kept.len() as u64, n.div_ceil(4));
    }
}
