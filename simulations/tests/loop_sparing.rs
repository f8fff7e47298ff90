//! An attacker that tells node loops apart (`[attack] spare_loops`,
//! `specs/simulation.md` §8): under the former loop route a gateway, the
//! middle hop of every mix's loop, knew them; a service node that learns
//! a mix's recurring probe windows still can for the loops through it
//! (`mixing.md` §5). Sparing loops defeats the loop alarm: a node that
//! drops every client packet, or an n−1 attacker on its links, loses no
//! loop and raises no alarm, where the same attack without loop
//! recognition is caught within two minutes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use mtos_sim::scenario::Scenario;
use mtos_sim::sim::{AbstractMode, Simulation};
use serde_json::Value;

const BASE: &str = r#"
name = "loops spared"
duration_s = 240
warmup_s = 5
[topology]
layers = 3
nodes_per_layer = 3
providers = 2
[clients]
count = 20
send = { kind = "poisson", rate = 2.0 }
[cover]
payload = 20.0
loop = 1.0
drop = 1.0
node_loop = 1.0
[mixing]
mode = "poisson"
mean_delay_ms = 20
[links]
latency = { kind = "constant", ms = 0 }
"#;

fn run(attack: &str) -> Value {
    let text = format!("{BASE}[attack]\ndropping_node = 4\nfrom_s = 60\n{attack}");
    let s = Scenario::parse(&text, Path::new("spare.toml")).unwrap();
    let mut sim = Simulation::<AbstractMode>::new(s.clone(), 3);
    sim.run(|_| {});
    sim.metrics.summary(&s, 3)
}

/// Mix 4 (layer 2) drops what reaches it from 60 s. Dropping
/// everything, it is named by an alarm within two minutes; dropping
/// everything but node loops, it drops as many client packets and no
/// alarm goes off.
#[test]
fn a_node_that_spares_loops_drops_client_traffic_unseen() {
    let all = run("");
    let attack = &all["attack"];
    let after = attack["first_naming_it_after_s"].as_f64().unwrap();
    assert!(after < 120.0, "{attack}");

    let spared = run("spare_loops = true\n");
    let attack = &spared["attack"];
    assert!(attack["first_alarm_after_s"].is_null(), "{attack}");
    assert_eq!(
        spared["node_loops"]["alarms"], 0,
        "{}",
        spared["node_loops"]
    );
    assert_eq!(spared["node_loops"]["lost"], 0, "{}", spared["node_loops"]);
    // It dropped about what the plain dropper did, less the loops.
    let (a, b) = (
        all["attack"]["frames_dropped"].as_u64().unwrap() as f64,
        attack["frames_dropped"].as_u64().unwrap() as f64,
    );
    assert!(b > 0.9 * a && b < a, "{b} frames dropped against {a}");
}

/// The n−1 attack on mix 4 with no pause: caught within two minutes by
/// the loop alarm; sparing loops, it traces as many targets, every guess
/// right, loses no loop, and no alarm goes off.
#[test]
fn an_n_minus_1_attacker_that_spares_loops_is_never_caught() {
    let plain = run("kind = \"n-1\"\n");
    let attack = &plain["attack"];
    assert!(
        attack["first_alarm_after_s"].as_f64().unwrap() < 120.0,
        "{attack}"
    );

    let spared = run("kind = \"n-1\"\nspare_loops = true\n");
    let attack = &spared["attack"];
    let n1 = &attack["n_minus_1"];
    assert!(attack["first_alarm_after_s"].is_null(), "{attack}");
    assert_eq!(spared["node_loops"]["alarms"], 0);
    assert_eq!(n1["traced_share"], 1.0, "{attack}");
    assert_eq!(n1["misled"], 0, "{attack}");
    let traced = n1["traced"].as_u64().unwrap() as f64;
    let before = plain["attack"]["n_minus_1"]["traced"].as_u64().unwrap() as f64;
    assert!(traced > 0.8 * before, "{traced} traced against {before}");
    assert_eq!(spared["node_loops"]["lost"], 0, "{}", spared["node_loops"]);
}

/// Telling loops apart needs the abstract packets' ids.
#[test]
fn sparing_loops_needs_abstract_packets() {
    let text = format!(
        "{}[attack]\ndropping_node = 4\nfrom_s = 60\nspare_loops = true\n",
        BASE.replace(
            "name = \"loops spared\"",
            "name = \"x\"\npacket_mode = \"real\""
        )
    );
    let err = Scenario::parse(&text, Path::new("s.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("attack.spare_loops"), "{err}");
}
