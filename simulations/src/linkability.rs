//! What the adversary's distribution says about the truth
//! (`specs/simulation.md` §2): how well its best guess names a tagged
//! message's recipient (a timing-correlation attack by a global passive
//! adversary, the mass tracking being its posterior), and Loopix's (ε, δ)
//! sender-receiver unlinkability between the two senders of a tag pair.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::entropy::TagResult;

/// The ε thresholds δ(ε) is reported at.
pub const EPSILONS: [f64; 4] = [0.5, 1.0, 2.0, 4.0];

/// The recipient guess: tags whose message was delivered, the mean
/// posterior on the true recipient, the share where the best guess is
/// right (precision at 1) and within the top 5, and the mean rank.
pub fn recipient_guess(tags: &[TagResult]) -> Value {
    let truths: Vec<_> = tags.iter().filter_map(|t| t.truth).collect();
    if truths.is_empty() {
        return json!({ "delivered": 0 });
    }
    let n = truths.len() as f64;
    let share = |f: &dyn Fn(&crate::entropy::Truth) -> bool| {
        truths.iter().filter(|t| f(t)).count() as f64 / n
    };
    json!({
        "delivered": truths.len(),
        "posterior_on_true_recipient_mean": truths.iter().map(|t| t.recipient_share).sum::<f64>() / n,
        "best_guess_right": share(&|t| t.recipient_rank == 1),
        "true_recipient_in_top_5": share(&|t| t.recipient_rank <= 5),
        "true_recipient_rank_mean": truths.iter().map(|t| f64::from(t.recipient_rank)).sum::<f64>() / n,
    })
}

/// The sender guess (with `anonymity.sender_entropy`): over the tagged
/// messages delivered, the entropy of the distribution over senders of
/// the packet that was the message (sender, or backward, entropy), the
/// posterior on the true sender, the share where the best guess is right
/// and the mean rank; `null` without sender entropy.
pub fn sender_guess(tags: &[TagResult]) -> Value {
    let views: Vec<_> = tags
        .iter()
        .filter_map(|t| t.truth.and_then(|x| x.sender))
        .collect();
    if views.is_empty() {
        return Value::Null;
    }
    let n = views.len() as f64;
    let (h, se) = crate::metrics::mean_and_stderr(views.iter().map(|v| v.entropy_bits))
        .unwrap_or((f64::NAN, f64::NAN));
    json!({
        "delivered": views.len(),
        "sender_entropy_bits_mean": h,
        "sender_entropy_bits_stderr": se,
        "posterior_on_true_sender_mean": views.iter().map(|v| v.posterior_on_true_sender).sum::<f64>() / n,
        "best_guess_right": views.iter().filter(|v| v.rank == 1).count() as f64 / n,
        "true_sender_rank_mean": views.iter().map(|v| f64::from(v.rank)).sum::<f64>() / n,
        "unlinkability": delta_summary(sender_epsilon_samples(tags)),
    })
}

/// The ε samples of the tag pairs `(2j, 2j + 1)` both measured and
/// delivered: for each tag of a pair, `|ln(p_own / p_partner)|` where
/// `p` is each tag's posterior (mass over its exited mass) on the packet
/// that was this tag's message; infinite when the partner had no mass
/// on it (the adversary rules the other sender out).
pub fn epsilon_samples(tags: &[TagResult]) -> Vec<f64> {
    let by_tag: BTreeMap<u32, &TagResult> = tags.iter().map(|t| (t.tag, t)).collect();
    let mut out = Vec::new();
    for t in tags {
        let Some(partner) = by_tag.get(&(t.tag ^ 1)) else {
            continue;
        };
        let Some(truth) = t.truth else {
            continue;
        };
        let own = truth.own_mass / t.exited_mass;
        let other = truth.partner_mass / partner.exited_mass;
        out.push(match (own > 0.0, other > 0.0) {
            (true, true) => (own / other).ln().abs(),
            // Neither: the adversary has ruled the truth out, which says
            // nothing of the two senders; no sample.
            (false, false) => continue,
            _ => f64::INFINITY,
        });
    }
    out
}

/// The ε samples from the sender view (with `anonymity.sender_entropy`):
/// for each delivered tag, `|ln(p_true / p_other)|` where `p` are the
/// posteriors, on the one packet that was the message, of its true
/// sender and of the other sender of its pair (Loopix's comparison of two
/// target senders on one message); infinite when one of them is 0, none
/// when both are.
pub fn sender_epsilon_samples(tags: &[TagResult]) -> Vec<f64> {
    tags.iter()
        .filter_map(|t| t.truth.and_then(|x| x.sender))
        .filter_map(|v| {
            let (p, q) = (v.posterior_on_true_sender, v.posterior_on_other?);
            match (p > 0.0, q > 0.0) {
                (false, false) => None,
                (true, true) => Some((p / q).ln().abs()),
                _ => Some(f64::INFINITY),
            }
        })
        .collect()
}

/// The (ε, δ) summary of the pairs' samples ([`epsilon_samples`]).
pub fn unlinkability(tags: &[TagResult]) -> Value {
    delta_summary(epsilon_samples(tags))
}

/// The (ε, δ) summary: samples, δ(ε) = the share of samples above ε at
/// [`EPSILONS`], the share infinite, and the median ε.
pub fn delta_summary(mut eps: Vec<f64>) -> Value {
    if eps.is_empty() {
        return json!({ "samples": 0 });
    }
    eps.sort_by(f64::total_cmp);
    let n = eps.len() as f64;
    let above = |x: f64| eps.iter().filter(|e| **e > x).count() as f64 / n;
    let median = eps[(eps.len() - 1) / 2];
    json!({
        "samples": eps.len(),
        "delta_at_epsilon": EPSILONS
            .iter()
            .map(|e| (format!("{e}"), json!(above(*e))))
            .collect::<serde_json::Map<_, _>>(),
        "linked_share": eps.iter().filter(|e| e.is_infinite()).count() as f64 / n,
        "epsilon_median": if median.is_finite() { json!(median) } else { json!("inf") },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entropy::Truth;

    fn tag(tag: u32, own: f64, partner: f64, rank: u32) -> TagResult {
        TagResult {
            tag,
            entropy_bits: 1.0,
            receiver_bits: 1.0,
            exit_node_bits: 0.0,
            exited_mass: 1.0,
            lost_mass: 0.0,
            ruled_out_mass: 0.0,
            truth: Some(Truth {
                recipient_share: own,
                recipient_rank: rank,
                own_mass: own,
                partner_mass: partner,
                sender: None,
            }),
        }
    }

    #[test]
    fn epsilon_is_the_log_ratio_and_infinite_when_the_partner_is_ruled_out() {
        // Pair 0: tag 0's packet carries 0.5 of it and 0.25 of tag 1;
        // tag 1's carries 0.1 of it and none of tag 0.
        let tags = [
            tag(0, 0.5, 0.25, 1),
            tag(1, 0.1, 0.0, 3),
            tag(2, 0.3, 0.3, 1),
        ];
        let e = epsilon_samples(&tags);
        // Tag 2 has no partner measured.
        assert_eq!(e.len(), 2);
        assert!((e[0] - 2f64.ln()).abs() < 1e-12);
        assert!(e[1].is_infinite());
        let u = unlinkability(&tags);
        assert_eq!(u["linked_share"], 0.5);
        assert_eq!(u["delta_at_epsilon"]["0.5"], 1.0);
        assert_eq!(u["delta_at_epsilon"]["1"], 0.5);
        let g = recipient_guess(&tags);
        assert_eq!(g["delivered"], 3);
        assert!((g["best_guess_right"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-12);
    }
}
