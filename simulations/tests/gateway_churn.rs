//! Gateways leaving (`[mix_churn] gateways = true`, `specs/simulation.md`
//! §1, Gateway churn): a gateway that leaves loses its mailboxes and cuts
//! its clients off until the document leaves it out and each client,
//! at its next check, moves to another; then they are reached again.
//! What was built for the old gateway (answers through blocks handed
//! before the move) reaches a gateway that no longer files for them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use mtos_sim::scenario::Scenario;
use mtos_sim::sim::{AbstractMode, Simulation};
use serde_json::Value;

/// Nine mixes (nodes 0 to 8) and three gateways (nodes 9 to 11), twenty
/// clients each (client `i` at gateway `i mod 3`), 30 real messages a
/// second in all.
const BASE: &str = r#"
name = "gateway churn"
duration_s = 300
warmup_s = 5
[topology]
layers = 3
nodes_per_layer = 3
providers = 3
[clients]
count = 60
send = { kind = "poisson", rate = 0.5 }
[cover]
payload = 2.0
loop = 1.0
drop = 1.0
node_loop = 0.2
[mixing]
mode = "poisson"
mean_delay_ms = 20
[links]
latency = { kind = "constant", ms = 5 }
[mailbox]
"#;

/// The summary, the real messages' arrivals at their exits (s) and
/// each move's time cut off (s).
fn run(text: &str, seed: u64) -> (Value, Vec<f64>, Vec<f64>) {
    let s = Scenario::parse(text, Path::new("gateways.toml")).unwrap();
    let mut sim = Simulation::<AbstractMode>::new(s.clone(), seed);
    sim.run(|_| {});
    let at = sim
        .deliveries
        .iter()
        .map(|(_, t)| t.since_origin().as_secs_f64())
        .collect();
    let cut = sim
        .metrics
        .mix_churn
        .as_ref()
        .map(|c| c.cut_off_s.clone())
        .unwrap_or_default();
    (sim.metrics.summary(&s, seed), at, cut)
}

/// Gateway 0 (node 9) leaves at 100 s and is back at 140 s; the document
/// leaves it out at 130 s. Its 20 clients move between 130 and 160 s (30
/// to 60 s after it left; cut off until it was back or they moved), and
/// never go back. While it is away and its clients
/// have not moved, only messages between the other 40 clients arrive
/// (4/9 of them); once they have moved, all do. Answers through blocks
/// handed before the move go to the old gateway, which is back and no
/// longer files for those clients: misdelivered.
#[test]
fn clients_of_a_gateway_that_leaves_move_and_are_reached_again() {
    let churn = "[mix_churn]\ngateways = true\nleave_lag_s = 30\nevents = [{ at_s = 100, node = 9, up = false }, { at_s = 140, node = 9, up = true }]\n";
    let (summary, deliveries, cut_off) = run(&format!("{BASE}{churn}"), 1);
    let g = &summary["mix_churn"]["gateways"];
    assert_eq!(g["departures"], 1, "{g}");
    assert_eq!(g["returns"], 1, "{g}");
    assert_eq!(g["clients_moved"], 20, "{g}");
    assert_eq!(cut_off.len(), 20);
    assert!(
        cut_off.iter().all(|t| (30.0..=60.0).contains(t)),
        "{cut_off:?}"
    );
    // They skipped their slots while cut off: about 20 clients × 4
    // slots a second × 38 s (from its departure to the earlier of its
    // return and their move).
    let skipped = g["slots_skipped"].as_u64().unwrap() as f64;
    assert!((2_000.0..6_000.0).contains(&skipped), "{g}");
    assert!(g["mailbox_lost"].as_u64().unwrap() > 0, "{g}");
    assert!(g["lost_arriving"].as_u64().unwrap() > 0, "{g}");
    // No mix left.
    assert_eq!(summary["mix_churn"]["departures"], 0);
    // Real messages reaching their exit a second, in a window.
    let rate = |from: f64, to: f64| {
        deliveries
            .iter()
            .filter(|t| (from..to).contains(*t))
            .count() as f64
            / (to - from)
    };
    let (full, cut) = (30.0_f64, 30.0 * 4.0 / 9.0);
    let before = rate(20.0, 95.0);
    let during = rate(105.0, 128.0);
    let after = rate(170.0, 290.0);
    let se = |r: f64, span: f64| (r / span).sqrt();
    assert!(
        (before - full).abs() < 4.0 * se(full, 75.0),
        "{before} a second before"
    );
    assert!(
        (during - cut).abs() < 4.0 * se(cut, 23.0),
        "{during} a second while cut off"
    );
    assert!(
        (after - full).abs() < 4.0 * se(full, 120.0),
        "{after} a second after the moves"
    );
    // Messages on their way to the old gateway when it came back were
    // built before their recipients moved, and are lost there.
    let before_answers = summary["misdelivered"].as_u64().unwrap();

    // With answers 20 s (mean) after each message, answers through
    // blocks handed before the move reach the old gateway long after it
    // is back: many more are lost there.
    let (answered, _, _) = run(
        &format!("{BASE}{churn}[replies]\nanswer = 1.0\nthink_s = 20.0\n"),
        1,
    );
    let misdelivered = answered["misdelivered"].as_u64().unwrap();
    assert!(
        misdelivered > 10 * before_answers.max(1),
        "{misdelivered} against {before_answers}"
    );
    let r = &answered["replies"];
    let lost = r["sent"].as_u64().unwrap() - r["received"].as_u64().unwrap();
    assert!(lost >= misdelivered / 2, "{r}");
    // And a client that moved before answering holds blocks that start
    // at its old gateway: its new one drops those answers.
    assert!(r["void"].as_u64().unwrap() > 0, "{r}");
}

/// A gateway away from the start: its clients move at once (no
/// cut-off counted), and every message arrives.
#[test]
fn clients_of_a_gateway_away_from_the_start_move_at_once() {
    let text = format!("{BASE}[mix_churn]\ngateways = true\nstart_down = [10]\n");
    let (summary, _, cut_off) = run(&text, 2);
    let g = &summary["mix_churn"]["gateways"];
    assert_eq!(g["clients_moved"], 20, "{g}");
    // Not cut off: they never had it.
    assert!(cut_off.is_empty(), "{cut_off:?}");
    assert_eq!(g["departures"], 0, "{g}");
    assert_eq!(g["lost_arriving"], 0, "{g}");
    assert_eq!(g["slots_skipped"], 0, "{g}");
    assert_eq!(summary["misdelivered"], 0);
    let (sent, delivered) = (
        summary["sent"]["real"].as_u64().unwrap(),
        summary["delivered"]["real"].as_u64().unwrap(),
    );
    // All but those on their way at the end.
    assert!(delivered + 20 > sent, "{sent} sent, {delivered} delivered");
}

/// Gateways by a rate: they are away the share of time the rate
/// implies, and clients move.
#[test]
fn gateway_churn_by_a_rate_keeps_the_share_of_time_away_it_implies() {
    let text = format!(
        "{BASE}[mix_churn]\ngateways = true\nmean_up_s = 200\nmean_down_s = 50\nleave_lag_s = 10\njoin_lag_s = 10\n"
    );
    let mut shares = Vec::new();
    let text = text
        .replace("duration_s = 300", "duration_s = 1500")
        .replace("count = 60", "count = 15");
    for seed in 1..=4 {
        let (summary, _, _) = run(&text, seed);
        let g = &summary["mix_churn"]["gateways"];
        shares.push(g["share_of_gateway_time_away"].as_f64().unwrap());
        assert!(g["departures"].as_u64().unwrap() > 0, "{g}");
        assert!(g["clients_moved"].as_u64().unwrap() > 0, "{g}");
        // Mixes churn too, by the same rate.
        assert!(summary["mix_churn"]["departures"].as_u64().unwrap() > 0);
    }
    let mean = shares.iter().sum::<f64>() / shares.len() as f64;
    // 50 / (200 + 50) = 0.2; starting up, 0.195 over 1,500 s.
    assert!((0.12..0.27).contains(&mean), "{shares:?}");
}

/// Provider numbers need `gateways = true`, and a moving client needs
/// somewhere to go.
#[test]
fn gateway_churn_is_refused_where_it_cannot_apply() {
    let no_flag = format!("{BASE}[mix_churn]\nevents = [{{ at_s = 10, node = 9, up = false }}]\n");
    let err = Scenario::parse(&no_flag, Path::new("g.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("gateways = true"), "{err}");
    let one = BASE
        .replace("providers = 3", "providers = 1")
        .replace("[mailbox]\n", "")
        + "[mix_churn]\ngateways = true\nmean_up_s = 100\nmean_down_s = 10\n";
    let err = Scenario::parse(&one, Path::new("g.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("mix_churn.gateways"), "{err}");
    let beyond = format!(
        "{BASE}[mix_churn]\ngateways = true\nevents = [{{ at_s = 10, node = 12, up = false }}]\n"
    );
    let err = Scenario::parse(&beyond, Path::new("g.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("providers 9 to 11"), "{err}");
}
