//! `[replies]`: answers through reply blocks (`specs/simulation.md` §1,
//! Replies; production: `client.md` §5).
//!
//! A sender puts a reply block in a share of its real messages; the
//! recipient answers through it a thinking time after the message
//! reaches it. The block is the sender's: built when the message is
//! sent, over a route the sender draws (the recipient's gateway, one mix
//! per layer, the sender's gateway) with delays the sender draws, under
//! the keys of the epoch it is sent in. The answer is a real message in
//! the recipient's payload stream (it takes a slot as any message does:
//! neither its gateway nor an observer of its link can tell it apart),
//! and it exits at the sender's gateway. An answer due in a later epoch
//! than its block travels through a block of that epoch instead, which
//! production's sender hands out before the epoch begins
//! (`replies::block_epochs`); it is counted as `replenished`.

use serde::Deserialize;

/// The `[replies]` section.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RepliesConfig {
    /// The share of real messages (not answers) sent with a reply block
    /// that their recipient answers through.
    pub answer: f64,
    /// Mean seconds from a message reaching its recipient to its answer
    /// joining the recipient's queue (exponential; 0: at once).
    #[serde(default)]
    pub think_s: f64,
}

impl RepliesConfig {
    /// Why the section cannot be run, if it cannot: the field and the
    /// reason.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !(self.answer.is_finite() && (0.0..=1.0).contains(&self.answer)) {
            return Err(("replies.answer", format!("{}: from 0 to 1", self.answer)));
        }
        if !(self.think_s.is_finite() && self.think_s >= 0.0) {
            return Err((
                "replies.think_s",
                format!("{}: 0 or more seconds", self.think_s),
            ));
        }
        Ok(())
    }
}

/// What the answers did in a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RepliesReport {
    /// Real messages sent with a reply block their recipient will use.
    pub answerable: u64,
    /// Answers that joined their recipient's queue.
    pub answered: u64,
    /// Answers refused by a full queue.
    pub queue_drops: u64,
    /// Answers that left their client.
    pub sent: u64,
    /// Of those, answers through a block of a later epoch than the
    /// message's (the first block's epoch had ended).
    pub replenished: u64,
    /// Answers that reached the message's sender.
    pub received: u64,
    /// Answers through a block that starts at a gateway the answerer has
    /// left (`[mix_churn] gateways`): its new gateway drops them.
    pub void: u64,
    /// At the end: blocks whose message never reached its recipient (lost
    /// or on its way) or whose answer had not left, and blocks whose
    /// answer never arrived (lost or on its way).
    pub open_unused: u64,
    pub open_used: u64,
    /// For messages generated after the warm-up and answered: from the
    /// message's generation to its answer reaching its sender, seconds.
    pub round_trip_s: Vec<f64>,
    /// Those answers' time in the network (from the recipient to the
    /// sender's gateway releasing it), seconds.
    pub network_latency_s: Vec<f64>,
    /// Those answers' time from joining the recipient's queue to
    /// reaching the sender, seconds.
    pub end_to_end_s: Vec<f64>,
}

impl RepliesReport {
    /// The summary's `replies` object.
    pub fn summary(&self, scenario: &crate::Scenario) -> serde_json::Value {
        let config = scenario.replies;
        serde_json::json!({
            "answer": config.map(|c| c.answer),
            "think_s": config.map(|c| c.think_s),
            "answerable": self.answerable,
            "answered": self.answered,
            "queue_drops": self.queue_drops,
            "sent": self.sent,
            "replenished": self.replenished,
            "received": self.received,
            "void": self.void,
            "open_unused": self.open_unused,
            "open_used": self.open_used,
            "round_trip_s": crate::metrics::stats(&self.round_trip_s),
            "network_latency_s": crate::metrics::stats(&self.network_latency_s),
            "end_to_end_s": crate::metrics::stats(&self.end_to_end_s),
        })
    }
}
