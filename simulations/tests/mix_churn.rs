//! Mixes leaving and coming back (`[mix_churn]`, `specs/simulation.md`
//! §1): what a departed mix holds and receives is lost until the routes'
//! document leaves it out, it carries traffic again once listed after
//! its return, and the rate gives the share of time away it implies.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use mtos_sim::scenario::Scenario;
use mtos_sim::sim::{AbstractMode, Simulation};
use serde_json::Value;

const BASE: &str = r#"
name = "churn"
duration_s = 300
warmup_s = 5
[topology]
layers = 3
nodes_per_layer = 3
providers = 2
[clients]
count = 20
send = { kind = "poisson", rate = 0.5 }
[cover]
payload = 5.0
loop = 1.0
drop = 1.0
node_loop = 0.5
[mixing]
mode = "poisson"
mean_delay_ms = 20
[links]
latency = { kind = "constant", ms = 5 }
[anonymity]
tagged_messages = 40
"#;

fn run(text: &str, seed: u64) -> (Value, mtos_sim::Metrics) {
    let s = Scenario::parse(text, Path::new("churn.toml")).unwrap();
    let mut sim = Simulation::<AbstractMode>::new(s.clone(), seed);
    sim.run(|_| {});
    (sim.metrics.summary(&s, seed), sim.metrics)
}

/// Mix 4 (layer 2) leaves at 100 s and never comes back.
fn leaves(lag: f64) -> String {
    format!(
        "{BASE}[mix_churn]\nleave_lag_s = {lag}\nevents = [{{ at_s = 100, node = 4, up = false }}]\n"
    )
}

#[test]
fn a_departed_mix_loses_traffic_until_the_document_leaves_it_out() {
    let (short, short_metrics) = run(&leaves(20.0), 1);
    let (long, _) = run(&leaves(80.0), 1);
    let lost = |s: &Value| s["mix_churn"]["lost_arriving"].as_u64().unwrap();
    let (a, b) = (lost(&short), lost(&long));
    // A third of layer 2's traffic, for the lag: about 4 times as much
    // for 80 s as for 20 s (frames in flight at the change add a few).
    assert!(a > 100, "{}", short["mix_churn"]);
    let ratio = b as f64 / a as f64;
    assert!((3.0..5.0).contains(&ratio), "{a} then {b}: {ratio}");
    // What it would have received: a peer in its layer took a third of
    // the layer's frames for 100 s and half for 200 s, 4/9 of the
    // layer's rate on average, against the departed mix's 3/9.
    let peer_rate = short_metrics.node_load[3].received as f64 / 300.0;
    let expected = peer_rate * 0.75 * 20.0;
    assert!(
        (a as f64) > 0.7 * expected && (a as f64) < 1.4 * expected,
        "{a} lost against about {expected}"
    );
    assert_eq!(short["mix_churn"]["departures"], 1);
    assert_eq!(short["mix_churn"]["returns"], 0);
    let away = short["mix_churn"]["mix_seconds_away_but_listed"]
        .as_f64()
        .unwrap();
    assert!((away - 20.0).abs() < 1e-6, "{away}");
    // Every tag's mass is accounted for (exits, losses and rule-outs),
    // and what reached the departed mix counts as lost, more with the
    // longer lag.
    let anonymity = |s: &Value, k: &str| s["anonymity"][k].as_f64().unwrap();
    assert_eq!(anonymity(&short, "tagged_unfinished"), 0.0);
    assert!(anonymity(&short, "lost_mass_mean") > 0.0);
    assert!(anonymity(&long, "lost_mass_mean") > anonymity(&short, "lost_mass_mean"));
}

#[test]
fn a_mix_back_carries_traffic_again_once_listed() {
    let trace = |back: &str| {
        format!(
            "{BASE}[mix_churn]\nleave_lag_s = 10\njoin_lag_s = 30\nevents = [{{ at_s = 50, node = 4, up = false }}{back}]\n"
        )
    };
    let (gone, gone_metrics) = run(&trace(""), 2);
    let (back, back_metrics) = run(&trace(", { at_s = 150, node = 4, up = true }"), 2);
    assert_eq!(back["mix_churn"]["returns"], 1);
    let received = |m: &mtos_sim::Metrics| m.node_load[4].received;
    // Listed again from 180 s: about 120 s of a third of layer 2, on top
    // of its first 50 s (counted from the engine it had before it left).
    let (g, b) = (received(&gone_metrics), received(&back_metrics));
    assert!(
        g > 0 && b as f64 > 2.5 * g as f64,
        "{g} without, {b} with the return"
    );
    let away = back["mix_churn"]["share_of_mix_time_away"]
        .as_f64()
        .unwrap();
    assert!((away - 100.0 / (300.0 * 9.0)).abs() < 1e-9, "{away}");
    // Once it is back, nothing sent to it is lost: the frames lost are
    // those of its 10 s lag either way.
    let lost = |s: &Value| s["mix_churn"]["lost_arriving"].as_u64().unwrap();
    assert_eq!(lost(&gone), lost(&back));
}

#[test]
fn churn_by_a_rate_keeps_the_share_of_time_away_it_implies() {
    // Each mix up for 60 s and away for 20 s on average: a quarter of
    // the mix-time away, over 9 mixes and 1,200 s.
    let text = format!(
        "{}[mix_churn]\nmean_up_s = 60\nmean_down_s = 20\n",
        BASE.replace("duration_s = 300", "duration_s = 1200")
            .replace("count = 20", "count = 5")
    );
    let (summary, _) = run(&text, 3);
    let c = &summary["mix_churn"];
    let share = c["share_of_mix_time_away"].as_f64().unwrap();
    assert!((0.18..0.32).contains(&share), "{c}");
    // About 9 × 1,200 / 80 = 135 departures.
    let departures = c["departures"].as_u64().unwrap();
    assert!((95..180).contains(&departures), "{c}");
    assert!(c["lost_held"].as_u64().unwrap() > 0, "{c}");
    // Reproducible.
    let (again, _) = run(&text, 3);
    assert_eq!(summary, again);
}

#[test]
fn churn_is_refused_where_it_cannot_apply() {
    for (section, field) in [
        ("mean_up_s = 60", "mix_churn.mean_up_s"),
        (
            "events = [{ at_s = 1, node = 9, up = false }]",
            "mix_churn.events",
        ),
        ("start_down = [12]", "mix_churn.start_down"),
        (
            "leave_lag_s = -1\nmean_up_s = 1\nmean_down_s = 1",
            "mix_churn.leave_lag_s",
        ),
        ("", "mix_churn"),
        (
            "mean_up_s = 60\nmean_down_s = 20\nevents = [{ at_s = 1, node = 0, up = false }]",
            "mix_churn.events",
        ),
        (
            "events = [{ at_s = 301, node = 0, up = false }]",
            "mix_churn.events",
        ),
        ("start_down = [1, 1]", "mix_churn.start_down"),
        (
            "start_down = [1]\n[attack]\ndropping_node = 4\nfrom_s = 10\nkind = \"n-1\"",
            "the n-1 attacker holds a mix",
        ),
    ] {
        let text = format!("{BASE}[mix_churn]\n{section}\n");
        let err = Scenario::parse(&text, Path::new("churn.toml")).unwrap_err();
        assert!(err.to_string().contains(field), "{section}: {err}");
    }
}

/// Each change is followed by its own listing: a mix that leaves, comes
/// back and leaves again is left out of the document `leave_lag_s` after
/// its second departure, not after its first (whose listing event is
/// stale). A trace row at a time finer than the clock's nanoseconds is
/// still due (the run ends).
#[test]
fn a_stale_listing_never_acts_on_a_later_change() {
    let text = format!(
        "{BASE}[mix_churn]\nleave_lag_s = 80\njoin_lag_s = 5\nevents = [\
         {{ at_s = 50, node = 4, up = false }}, \
         {{ at_s = 60, node = 4, up = true }}, \
         {{ at_s = 100.123456789123, node = 4, up = false }}]\n"
    );
    let (summary, _) = run(&text, 4);
    let c = &summary["mix_churn"];
    assert_eq!(c["departures"], 2, "{c}");
    assert_eq!(c["returns"], 1, "{c}");
    // Listed while away: 10 s the first time, 80 s the second.
    let listed = c["mix_seconds_away_but_listed"].as_f64().unwrap();
    assert!((listed - 90.0).abs() < 1e-6, "{c}");
}
