//! Answers through reply blocks (`[replies]`, `specs/simulation.md` §1):
//! the recipient answers in its payload stream through the block its
//! message brought, over the route and with the delays the sender drew;
//! an answer crosses as many hops as a message, so its time in the
//! network is the same Erlang law; it takes a slot rather than adding a
//! packet; and an answer due after its block's epoch goes through a
//! block of the next.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use mtos_sim::scenario::Scenario;
use mtos_sim::sim::{AbstractMode, Simulation};
use serde_json::Value;

mod common;
use common::{erlang_cdf, ks, mean, variance};

/// Two layers, zero link latency: a message (and an answer) crosses
/// gateway, two mixes and its exit, four Exp(20 ms) holds.
const BASE: &str = r#"
name = "replies"
duration_s = 300
warmup_s = 20
[topology]
layers = 2
nodes_per_layer = 2
providers = 3
[clients]
count = 150
send = { kind = "poisson", rate = 0.05 }
[cover]
payload = 2.0
loop = 1.0
drop = 1.0
node_loop = 0.0
[mixing]
mode = "poisson"
mean_delay_ms = 20
[links]
latency = { kind = "constant", ms = 0 }
"#;

fn run(text: &str, seed: u64) -> (Value, mtos_sim::Metrics, String) {
    let s = Scenario::parse(text, Path::new("replies.toml")).unwrap();
    let mut sim = Simulation::<AbstractMode>::new(s.clone(), seed);
    sim.run(|_| {});
    let csv = sim.metrics.latency_csv();
    (sim.metrics.summary(&s, seed), sim.metrics, csv)
}

/// Every message is answered 2 s (mean) after it arrives. The answers'
/// time in the network is Erlang(4, 1/20 ms) by KS at 1%; each round
/// trip is the message's way, the thinking time and the answer's way, so
/// their means add up (at 4 standard errors); every answer reached the
/// client that asked, at that client's gateway (none delivered where its
/// client has no mailbox); and answers took payload slots: each client
/// still sends λP + λL + λD packets a second.
#[test]
fn answers_cross_the_network_as_messages_do_and_take_a_slot() {
    let (plain, plain_metrics, _) = run(BASE, 3);
    assert!(plain["replies"].is_null());
    let (summary, metrics, _) = run(
        &format!("{BASE}[replies]\nanswer = 1.0\nthink_s = 2.0\n"),
        3,
    );
    let r = &summary["replies"];
    let report = metrics.replies.as_ref().unwrap();
    // Every message that is not an answer brought a block.
    let real = summary["sent"]["real"].as_u64().unwrap();
    assert_eq!(report.answerable + report.sent, real, "{r}");
    assert!(report.answerable > 1_500, "{r}");
    // All answered but those the run's last seconds cut short.
    assert!(report.answered + 40 > report.answerable, "{r}");
    assert!(report.received + 40 > report.sent, "{r}");
    assert_eq!(report.queue_drops, 0, "{r}");
    assert_eq!(summary["misdelivered"], 0, "{summary}");
    let mut network = report.network_latency_s.clone();
    let n = network.len() as f64;
    let d = ks(&mut network, erlang_cdf(4, 50.0));
    assert!(d < 1.63 / n.sqrt(), "KS distance {d} over {n} answers");
    // Round trip = message end to end + think + answer end to end. The
    // messages' end to end is taken from the run without answers (the
    // same network and rates: answers take cover slots only).
    let se2 = |v: &[f64]| variance(v) / v.len() as f64;
    let msgs = &plain_metrics.end_to_end_latency_s;
    let parts = mean(msgs) + 2.0 + mean(&report.end_to_end_s);
    let rtt = mean(&report.round_trip_s);
    // The thinking times' spread is in the round trips', not apart.
    let se = (se2(&report.round_trip_s) + se2(msgs) + se2(&report.end_to_end_s)).sqrt();
    assert!(
        (rtt - parts).abs() < 4.0 * se,
        "round trip {rtt} s against {parts} s (se {se})"
    );
    // The same number of packets left the clients: the answers took
    // payload slots that would have carried cover.
    let per_client_second = |s: &Value| {
        ["real", "payload_cover", "loop", "drop"]
            .iter()
            .map(|k| s["sent"][k].as_u64().unwrap())
            .sum::<u64>() as f64
            / (150.0 * 300.0)
    };
    let (with, without) = (per_client_second(&summary), per_client_second(&plain));
    let se = (4.0 / (150.0 * 300.0_f64)).sqrt();
    assert!(
        (with - 4.0).abs() < 4.0 * se,
        "{with} packets a client-second"
    );
    assert!(
        (without - 4.0).abs() < 4.0 * se,
        "{without} packets a client-second"
    );
    let cover_left = summary["sent"]["payload_cover"].as_u64().unwrap() as f64;
    let cover_before = plain["sent"]["payload_cover"].as_u64().unwrap() as f64;
    let took = cover_before - cover_left;
    assert!(
        (took - report.sent as f64).abs() < 4.0 * (2.0 * cover_before).sqrt(),
        "answers took {took} cover slots, not {}",
        report.sent
    );
}

/// With mailboxes the message and its answer each wait for a delivery
/// frame: at these rates (λP = 2, λL = 1, λΔ = 4) about 1 s each, so
/// the round trip grows by about 2 s, and every answer still arrives.
#[test]
fn answers_wait_in_mailboxes_both_ways() {
    let replies = "[replies]\nanswer = 1.0\nthink_s = 2.0\n";
    let (_, plain, _) = run(&format!("{BASE}{replies}"), 4);
    let (summary, boxed, _) = run(&format!("{BASE}{replies}[mailbox]\n"), 4);
    let (a, b) = (
        plain.replies.as_ref().unwrap(),
        boxed.replies.as_ref().unwrap(),
    );
    assert!(b.received + 40 > b.sent, "{}", summary["replies"]);
    assert_eq!(b.open_used, b.sent - b.received, "{}", summary["replies"]);
    let grown = mean(&b.round_trip_s) - mean(&a.round_trip_s);
    let se = (variance(&a.round_trip_s) / a.round_trip_s.len() as f64
        + variance(&b.round_trip_s) / b.round_trip_s.len() as f64)
        .sqrt();
    // Real messages bunch a mailbox's arrivals, so each wait is a
    // little over the M/M/1 second (§1, Mailboxes).
    assert!(
        grown > 2.0 - 4.0 * se && grown < 2.6,
        "round trip grew by {grown} s (se {se})"
    );
}

/// `answer = 0` hands no block and draws nothing from any other
/// component: the run is the run without the section.
#[test]
fn no_answers_change_no_figure() {
    let (plain, _, plain_csv) = run(BASE, 5);
    let (mut none, _, none_csv) = run(&format!("{BASE}[replies]\nanswer = 0.0\n"), 5);
    assert_eq!(none["replies"]["answerable"], 0);
    none["replies"] = Value::Null;
    assert_eq!(plain, none);
    assert_eq!(plain_csv, none_csv);
}

/// With epochs of 20 s and answers 8 s (mean) after their message, many
/// answers are due after their block's epoch ended: they go through a
/// block of the epoch they leave in, as production's sender hands out
/// before each epoch, so none is refused for its key (`unknown_key`) and
/// all arrive.
#[test]
fn answers_after_their_blocks_epoch_use_one_of_the_next() {
    let text = format!(
        "{BASE}[epochs]\nlength_s = 20\ngrace_s = 2\n[replies]\nanswer = 1.0\nthink_s = 8.0\n"
    );
    let (summary, metrics, _) = run(&text, 7);
    let report = metrics.replies.as_ref().unwrap();
    assert!(
        report.replenished as f64 > 0.2 * report.sent as f64,
        "{}",
        summary["replies"]
    );
    assert!(
        summary["engine_drops"]["unknown_key"].is_null(),
        "{summary}"
    );
    assert!(report.received + 60 > report.sent, "{}", summary["replies"]);
}

/// Bad sections are refused, naming the field.
#[test]
fn bad_replies_sections_are_refused() {
    for (section, field) in [
        ("answer = 1.5\n", "replies.answer"),
        ("answer = -0.1\n", "replies.answer"),
        ("answer = 0.5\nthink_s = -1.0\n", "replies.think_s"),
        ("answer = 0.5\nthink = 1.0\n", "think"),
    ] {
        let text = format!("{BASE}[replies]\n{section}");
        let err = Scenario::parse(&text, Path::new("r.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(field), "{section}: {err}");
    }
}
