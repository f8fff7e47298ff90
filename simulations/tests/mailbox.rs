//! Mailboxes (`[mailbox]`, `specs/simulation.md` §1): what comes back to
//! a client waits at its gateway for a delivery frame at λΔ, so a
//! mailbox is an M/M/1 queue whose waits are exponential at λΔ − λP − λL;
//! end-to-end latency includes the wait; the gateway's limits drop and
//! displace as production's do.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use mtos_sim::scenario::Scenario;
use mtos_sim::sim::{AbstractMode, Simulation};
use serde_json::Value;

mod common;
use common::{exponential_cdf, ks, mean};

/// Production's rates (λP = 2, λL = 1, λD = 1: λΔ = 4, and 3 a second
/// come back to each mailbox), over many mailboxes, each receiving a
/// real message about every 20 s, far apart next to the queue's memory
/// (a busy period of about a second), so the real messages' waits are
/// close to independent.
const BASE: &str = r#"
name = "mailboxes"
duration_s = 240
warmup_s = 40
[topology]
layers = 2
nodes_per_layer = 2
providers = 2
[clients]
count = 200
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
latency = { kind = "constant", ms = 5 }
"#;

fn run(text: &str, seed: u64) -> (Value, mtos_sim::Metrics) {
    let (summary, metrics, _) = run_with_deliveries(text, seed);
    (summary, metrics)
}

/// Also the real messages' arrivals at their exits (id, time).
fn run_with_deliveries(text: &str, seed: u64) -> (Value, mtos_sim::Metrics, Vec<(u64, f64)>) {
    let s = Scenario::parse(text, Path::new("mailbox.toml")).unwrap();
    let mut sim = Simulation::<AbstractMode>::new(s.clone(), seed);
    sim.run(|_| {});
    let deliveries = sim
        .deliveries
        .iter()
        .map(|(id, at)| (*id, at.since_origin().as_secs_f64()))
        .collect();
    (sim.metrics.summary(&s, seed), sim.metrics, deliveries)
}

/// A real message waits Exp(λΔ − λP − λL) for its frame: 1 s at
/// production's rates (the mean within 3 standard errors, the law by
/// Kolmogorov–Smirnov at the 1% level), and 1/(6 − 3) with λΔ set to 6.
/// End-to-end latency grows by the wait and the last link.
#[test]
fn mailbox_waits_are_those_of_an_mm1_queue() {
    let (without, plain) = run(BASE, 1);
    assert!(without["mailbox"].is_null());
    for (section, rate) in [
        ("[mailbox]\n", 1.0),
        ("[mailbox]\ndelivery_rate = 6.0\n", 3.0),
    ] {
        let (summary, metrics) = run(&format!("{BASE}{section}"), 1);
        let m = &summary["mailbox"];
        let predicted = m["predicted_mean_wait_s"].as_f64().unwrap();
        assert!((predicted - 1.0 / rate).abs() < 1e-9, "{m}");
        let mut waits = metrics.mailbox.as_ref().unwrap().real_waits_s.clone();
        let n = waits.len() as f64;
        assert!(n > 1_000.0, "{n} real waits");
        let (mu, sd) = (mean(&waits), 1.0 / rate);
        assert!(
            (mu - 1.0 / rate).abs() < 3.0 * sd / n.sqrt(),
            "mean wait {mu} s against {} s ({n} waits)",
            1.0 / rate
        );
        let d = ks(&mut waits, exponential_cdf(rate));
        assert!(d < 1.63 / n.sqrt(), "KS distance {d} over {n} waits");
        // Every payload that came back waited as the real ones did.
        let all = m["wait_s"]["mean"].as_f64().unwrap();
        assert!((all - 1.0 / rate).abs() < 0.1 / rate, "{m}");
        // Frames carried payloads at the queue's load, λP + λL over λΔ.
        let load = m["share_of_frames_with_payload"].as_f64().unwrap();
        let delivery = m["delivery_rate"].as_f64().unwrap();
        assert!((load - 3.0 / delivery).abs() < 0.03, "{m}");
        assert_eq!(m["dropped_full"], 0);
        // The end-to-end mean grows by the mean wait and one 5 ms link.
        let grown = mean(&metrics.end_to_end_latency_s) - mean(&plain.end_to_end_latency_s);
        let want = 1.0 / rate + 0.005;
        assert!(
            (grown - want).abs() < 4.0 * sd / n.sqrt(),
            "end to end grew by {grown} s, not {want} s"
        );
        // The network part is the same figure as without mailboxes.
        let net = |m: &mtos_sim::Metrics| mean(&m.network_latency_s);
        assert!((net(&metrics) - net(&plain)).abs() < 0.005);
    }
}

/// The M/M/1 figure is exact when the payload stream carries no real
/// message, and a floor otherwise: a client's payload cover comes back
/// to its own mailbox only while it has no real message queued, so
/// while it sends, its own returns stop and then resume, and the
/// arrivals bunch (production's payload stream does the same). At
/// production's rates with one real message a second, payloads wait
/// about 15% longer than 1/(λΔ − λP − λL).
#[test]
fn a_clients_own_sending_bunches_its_mailboxs_arrivals() {
    let wait = |rate: &str| {
        let text = format!("{BASE}[mailbox]\n").replace("rate = 0.05", rate);
        let (s, _) = run(&text, 1);
        s["mailbox"]["wait_s"]["mean"].as_f64().unwrap()
    };
    // About 2,800 independent waits (a mailbox forgets in about 14 s):
    // a standard error of 2%.
    let quiet = wait("rate = 0.0");
    assert!(
        (quiet - 1.0).abs() < 0.05,
        "{quiet} s without real messages"
    );
    let busy = wait("rate = 1.0");
    assert!(busy > 1.08, "{busy} s with one real message a second");
}

/// Without `[mailbox]` a run is what it was: the mailboxes draw from an
/// RNG of their own, so with them every packet takes the same route at
/// the same times.
#[test]
fn mailboxes_change_no_other_draw() {
    let (a, _, da) = run_with_deliveries(BASE, 3);
    let (b, _, db) = run_with_deliveries(&format!("{BASE}[mailbox]\n"), 3);
    for key in ["sent", "delivered", "link_frames", "node_load", "anonymity"] {
        assert_eq!(a[key], b[key], "{key}");
    }
    assert!(da.len() > 1_000);
    assert_eq!(da, db);
}

/// A mailbox fed faster than it is drained fills to its limit and drops
/// what comes after; a full gateway files a payload for a smaller
/// mailbox in the place of the fullest mailbox's oldest.
#[test]
fn full_mailboxes_drop_and_a_full_gateway_displaces() {
    // λΔ = 2 < 3 come back: every mailbox grows until it is full.
    let (s, _) = run(
        &format!("{BASE}[mailbox]\ndelivery_rate = 2.0\nper_mailbox = 20\n"),
        1,
    );
    let m = &s["mailbox"];
    assert_eq!(m["max_depth"], 20, "{m}");
    assert!(m["dropped_full"].as_u64().unwrap() > 10_000, "{m}");
    // Real messages among them never reach their clients: counted.
    assert!(m["real_lost"].as_u64().unwrap() > 100, "{m}");
    assert!(m["predicted_mean_wait_s"].is_null(), "{m}");
    // Each gateway serves 100 mailboxes but holds 500 payloads: while it
    // is full a payload goes in the place of a fuller mailbox's oldest,
    // and the two gateways never hold more than their 1,000.
    let (s, _) = run(
        &format!("{BASE}[mailbox]\ndelivery_rate = 2.0\nper_mailbox = 20\nper_gateway = 500\n"),
        1,
    );
    let m = &s["mailbox"];
    assert!(m["displaced"].as_u64().unwrap() > 1_000, "{m}");
    assert!(m["waiting_at_end"].as_u64().unwrap() <= 1_000, "{m}");
}

/// Bad sections are refused, naming the field.
#[test]
fn bad_mailbox_sections_are_refused() {
    for (section, field) in [
        ("delivery_rate = 0.0", "mailbox.delivery_rate"),
        ("delivery_rate = -1.0", "mailbox.delivery_rate"),
        ("per_mailbox = 0", "mailbox.per_mailbox"),
        ("per_gateway = 0", "mailbox.per_gateway"),
        ("rate = 1.0", "unknown field"),
    ] {
        let text = format!("{BASE}[mailbox]\n{section}\n");
        let err = Scenario::parse(&text, Path::new("m.toml")).unwrap_err();
        assert!(err.to_string().contains(field), "{section}: {err}");
    }
}
