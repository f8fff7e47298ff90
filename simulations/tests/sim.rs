//! The simulator against what the mixing model predicts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use mtos_sim::scenario::{Scenario, ScenarioError};
use mtos_sim::sim::{AbstractMode, RealMode, Simulation};

mod common;
use common::{erlang_cdf, ks};

fn scenario(text: &str) -> Scenario {
    Scenario::parse(text, Path::new("test.toml")).unwrap()
}

const BASE: &str = r#"
name = "test"
duration_s = 60
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
node_loop = 0.5
[mixing]
mode = "poisson"
mean_delay_ms = 20
[links]
latency = { kind = "constant", ms = 0 }
"#;

#[test]
fn latency_is_erlang_over_the_route() {
    // Gateway + 3 layers + exit provider: 5 hops, each holding Exp(20 ms)
    // (four from the header, the exit's own), zero link latency, no cap.
    let mut sim = Simulation::<AbstractMode>::new(scenario(BASE), 1);
    sim.run(|_| {});
    let mut lat: Vec<f64> = sim.metrics.network_latency_s.clone();
    assert!(lat.len() > 1500, "too few samples: {}", lat.len());
    let n = lat.len();
    let d = ks(&mut lat, erlang_cdf(5, 1.0 / 0.020));
    let crit = 1.6276 / (n as f64).sqrt();
    assert!(d < crit, "KS {d} >= {crit} (n = {n})");
    let d4 = ks(&mut lat, erlang_cdf(4, 1.0 / 0.020));
    assert!(d4 > crit, "the test cannot tell Erlang(4) from Erlang(5)");
}

#[test]
fn same_seed_same_bytes() {
    let run = |seed| {
        let s = scenario(BASE);
        let mut sim = Simulation::<AbstractMode>::new(s.clone(), seed);
        sim.run(|_| {});
        (
            serde_json::to_string(&sim.metrics.summary(&s, seed)).unwrap(),
            sim.metrics.latency_csv(),
        )
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7).1, run(8).1);
}

/// Turning the replay filters off (`[limits] replay_filters = false`)
/// changes nothing but the summary's word for it when no packet is a
/// replay or a false positive, as in every run the simulator makes; the
/// summary says which.
#[test]
fn replay_filters_off_change_no_figure() {
    let run = |text: &str| {
        let s = scenario(text);
        let mut sim = Simulation::<AbstractMode>::new(s.clone(), 5);
        let before = sim.replay_filter_bytes();
        sim.run(|_| {});
        assert_eq!(before > 0, sim.replay_filter_bytes() > 0);
        (
            sim.metrics.summary(&s, 5),
            sim.metrics.latency_csv(),
            before,
        )
    };
    let (on, on_csv, on_bytes) = run(BASE);
    let (mut off, off_csv, off_bytes) = run(&format!("{BASE}[limits]\nreplay_filters = false\n"));
    // The flag reaches every node's keys, and a mix that comes back
    // (a new engine, `[mix_churn]`) keeps none either.
    assert!(on_bytes > 0);
    assert_eq!(off_bytes, 0);
    let churn = "[mix_churn]\nevents = [{ at_s = 10, node = 0, up = false }, { at_s = 20, node = 0, up = true }]\n";
    let (_, _, _) = run(&format!("{BASE}[limits]\nreplay_filters = false\n{churn}"));
    assert_eq!(on["limits"]["replay_filters"], true);
    assert_eq!(off["limits"]["replay_filters"], false);
    assert_eq!(on["engine_drops"], serde_json::json!({}));
    off["limits"]["replay_filters"] = true.into();
    assert_eq!(on, off);
    assert_eq!(on_csv, off_csv);
}

#[test]
fn abstract_and_real_modes_agree() {
    let text = BASE
        .replace("duration_s = 60", "duration_s = 3")
        .replace("warmup_s = 5", "warmup_s = 0")
        .replace("count = 20", "count = 4")
        .replace("payload = 20.0", "payload = 5.0");
    let s = scenario(&text);
    let mut a = Simulation::<AbstractMode>::new(s.clone(), 3);
    a.run(|_| {});
    let mut r = Simulation::<RealMode>::new(s, 3);
    r.run(|_| {});
    assert!(a.deliveries.len() > 10);
    assert_eq!(a.deliveries, r.deliveries, "deliveries differ");
    assert_eq!(a.metrics.sent, r.metrics.sent);
    assert_eq!(a.metrics.network_latency_s, r.metrics.network_latency_s);
}

#[test]
fn pool_mixes_never_go_below_their_threshold() {
    let text = BASE.replace(
        "mode = \"poisson\"\nmean_delay_ms = 20",
        "mode = \"pool\"\ninterval_ms = 50\nmin_pool = 15\nfraction = 0.5",
    );
    let s = scenario(&text);
    let mut sim = Simulation::<AbstractMode>::new(s, 5);
    sim.run(|_| {});
    assert!(sim.metrics.delivered[0] > 100);
    // Every flush of every node, observed by the loop: none went below.
    assert!(
        sim.metrics.pool_flushes > 1000,
        "{}",
        sim.metrics.pool_flushes
    );
    assert_eq!(sim.metrics.pool_threshold_violations, 0);
}

#[test]
fn bad_scenarios_are_refused_before_running() {
    let cases = [
        (BASE.replace("layers = 3", "layers = 4"), "topology.layers"),
        (
            BASE.replace("payload = 20.0", "payload = -1.0"),
            "cover.payload",
        ),
        (
            BASE.replace("providers = 2", "providers = 2\nsuperfluous = 1"),
            "superfluous",
        ),
        (BASE.replace("rate = 2.0", "rate = \"fast\""), "rate"),
        (
            BASE.replace("nodes_per_layer = 3", "nodes_per_layer = 0"),
            "topology.nodes_per_layer",
        ),
        (
            BASE.replace("nodes_per_layer = 3", "nodes_per_layer = 2000000000"),
            "topology.nodes_per_layer",
        ),
        (
            BASE.replace(
                "mean_delay_ms = 20",
                "mean_delay_ms = 20\nmax_delay_ms = 1e300",
            ),
            "mixing.max_delay_ms",
        ),
        (
            BASE.replace("payload = 20.0", "payload = 1e10"),
            "cover.payload",
        ),
        (BASE.replace("drop = 1.0", "drop = 1e-20"), "cover.drop"),
        (
            format!("{BASE}[storage]\nreplicas = 0\nrecords = 10\n"),
            "storage.replicas",
        ),
        (format!("{BASE}[storage]\nrecords = 0\n"), "storage.records"),
        (
            format!("{BASE}[storage]\nrecords = 10\nstores = \"some\"\n"),
            "stores",
        ),
        (
            BASE.replace("duration_s = 60", "duration_s = 1e20"),
            "duration_s",
        ),
        (
            format!("{BASE}[storage]\nrecords = 10\ndepart_s = 5\nheartbeat_s = 0\n"),
            "storage.heartbeat_s",
        ),
        (
            format!(
                "{BASE}[storage]\nrecords = 10\nstores = \"providers\"\ndepart_s = 5\ndepart_node = 0\n"
            ),
            "storage.depart_node",
        ),
        (
            format!("{BASE}[storage]\nrecords = 10\nput_rate = 0\n"),
            "storage.put_rate",
        ),
        (
            format!("{BASE}[attack]\ndropping_node = 11\nfrom_s = 1\n"),
            "attack.dropping_node",
        ),
        (
            format!("{BASE}[attack]\ndropping_node = 1\nfrom_s = 60\n"),
            "attack.from_s",
        ),
        (
            format!(
                "{}[attack]\nkind = \"n-1\"\ndropping_node = 1\nfrom_s = 1\n",
                BASE.replace("name = \"test\"", "name = \"test\"\npacket_mode = \"real\"")
            ),
            "attack.kind",
        ),
        (
            format!("{BASE}[attack]\ndropping_node = 1\nfrom_s = 1\npause_s = -1\n"),
            "attack.pause_s",
        ),
        (
            format!(
                "{}[attack]\nkind = \"n-1\"\ndropping_node = 1\nfrom_s = 1\n",
                BASE.replace(
                    "mode = \"poisson\"\nmean_delay_ms = 20",
                    "mode = \"pool\"\ninterval_ms = 100\nmin_pool = 2\nfraction = 0.5"
                )
            ),
            "attack.kind",
        ),
        (
            format!("{BASE}[disclosure]\nsender = 20\nfriends = 3\n"),
            "disclosure.sender",
        ),
        (
            format!("{BASE}[disclosure]\nfriends = 19\n"),
            "disclosure.friends",
        ),
        (
            format!(
                "{BASE}[bulk]\npayload = 10.0\nloop = 1.0\ndrop = 1.0\nwindow_s = 30\ncohorts = 20\n"
            ),
            "rates.bulk.payload",
        ),
        (
            format!(
                "{BASE}[bulk]\npayload = 50.0\nloop = 1.0\ndrop = 1.0\nwindow_s = 30\ncohorts = 0\n"
            ),
            "rates.bulk.cohorts",
        ),
    ];
    for (text, field) in cases {
        let err = Scenario::parse(&text, Path::new("bad.toml")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(field), "{msg} does not name {field}");
        assert!(msg.contains("bad.toml"));
        if let ScenarioError::Parse { message, .. } = &err {
            assert!(message.contains("line"), "{message} has no line");
        }
    }
}

#[test]
fn bad_trace_rows_name_their_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("trace.csv"),
        "time_s,sender,recipient\n0.5,1,2\n1.0,1,x\n",
    )
    .unwrap();
    let text = BASE.replace(
        "send = { kind = \"poisson\", rate = 2.0 }",
        "send = { kind = \"trace\", file = \"trace.csv\" }",
    );
    let path = dir.path().join("s.toml");
    std::fs::write(&path, &text).unwrap();
    let err = Scenario::load(&path).unwrap_err().to_string();
    assert!(err.contains("trace.csv:3"), "{err}");
    assert!(err.contains("recipient"), "{err}");

    std::fs::write(dir.path().join("trace.csv"), "0.5,1,2\n1.0,3,0\n").unwrap();
    let s = Scenario::load(&path).unwrap();
    assert_eq!(s.trace.len(), 2);
    let mut sim = Simulation::<AbstractMode>::new(s, 1);
    sim.run(|_| {});
    assert_eq!(sim.metrics.sent[0], 2);
    assert_eq!(sim.metrics.delivered[0], 2);
}

#[test]
fn shipped_scenarios_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let s = Scenario::load(&path).unwrap();
            names.push(s.name);
        }
    }
    assert_eq!(names.len(), 8, "{names:?}");
    let large = Scenario::load(&dir.join("large.toml")).unwrap();
    assert!(large.layers * large.nodes_per_layer >= 999);
    assert_eq!(large.clients, 10_000);
    let xlarge = Scenario::load(&dir.join("xlarge.toml")).unwrap();
    assert_eq!(xlarge.clients, 100_000);
    assert_eq!(xlarge.layers * xlarge.nodes_per_layer, 999);
}

/// The storage study runs the production placement function over the
/// scenario's nodes: an even load, departures that move only the leaving
/// node's records (each to one new replica), a join that takes K/(n+1),
/// the same answer for the same seed.
#[test]
fn the_storage_study_places_records_with_the_production_ring() {
    let text = format!("{BASE}[storage]\nreplicas = 3\nrecords = 6000\n");
    let s = scenario(&text);
    let study = mtos_sim::storage::study(&s, 7).unwrap();
    let n = 3 * 3 + 2;
    assert_eq!(study["storage_nodes"], n);
    let mean = 6000.0 * 3.0 / f64::from(n);
    let load = &study["load"];
    assert!((load["mean"].as_f64().unwrap() - mean).abs() < 1e-9);
    // Binomial spread: within 5 standard deviations of the mean.
    let sigma = (mean * (1.0 - 3.0 / f64::from(n))).sqrt();
    for k in ["min", "max"] {
        let v = load[k].as_f64().unwrap();
        assert!((v - mean).abs() < 5.0 * sigma, "{k} {v} vs {mean}");
    }
    let leaves = &study["node_leaves"];
    assert_eq!(leaves["nodes"], n);
    assert_eq!(leaves["new_copies_per_record_moved"], 1.0);
    assert_eq!(leaves["other_records_moved"], 0);
    let moved = leaves["records_to_repair_per_leave"].as_f64().unwrap();
    assert!(
        (moved - mean).abs() < 1e-9,
        "the leaving nodes held {moved} on average"
    );
    let join = &study["node_join"];
    let share = join["share_of_records"].as_f64().unwrap();
    let expected = join["expected_share"].as_f64().unwrap();
    assert!((expected - 3.0 / f64::from(n + 1)).abs() < 1e-12);
    assert!((share - expected).abs() < 0.03, "{share} vs {expected}");
    // Deterministic in the seed, and the seed matters.
    assert_eq!(mtos_sim::storage::study(&s, 7).unwrap(), study);
    assert_ne!(
        mtos_sim::storage::study(&s, 8).unwrap()["load"],
        study["load"]
    );
    // Only the providers store.
    let providers = scenario(&format!("{text}stores = \"providers\"\n"));
    let only = mtos_sim::storage::study(&providers, 7).unwrap();
    assert_eq!(only["storage_nodes"], 2);
    assert_eq!(only["load"]["max"], 6000);
    // Without the section there is no study.
    assert!(mtos_sim::storage::study(&scenario(BASE), 7).is_none());
}

#[test]
fn every_node_loops_through_the_network_and_back_as_a_node_does() {
    let s = scenario(BASE);
    let mut sim = Simulation::<AbstractMode>::new(s.clone(), 11);
    sim.run(|_| {});
    let loops = &sim.metrics.node_loops;
    // λM = 0.5 for 60 s at each of the 11 nodes, providers (the
    // gateways) included: 330 expected; the 9 mixes alone would send 270.
    assert!(
        (300..360).contains(&loops.counts.sent),
        "{:?}",
        loops.counts
    );
    assert_eq!(sim.metrics.sent[4], loops.counts.sent);
    // Every loop comes back to its node (none is lost; the last few are
    // still in flight at the end) and no alarm is raised.
    assert_eq!(loops.counts.lost, 0);
    assert!(
        loops.counts.returned + 5 >= loops.counts.sent,
        "{:?}",
        loops.counts
    );
    assert!(loops.alarms.is_empty());
    let summary = sim.metrics.summary(&s, 11);
    assert_eq!(summary["node_loops"]["alarms"], 0);
    assert!(summary["attack"].is_null());
}

#[test]
fn a_mix_dropping_everything_raises_the_loop_alarm() {
    // One mix per layer, so the dropper (layer 2's) is on every loop, as
    // in an n−1 attack on a small network. It starts at 100 s.
    let text = BASE
        .replace("duration_s = 60", "duration_s = 300")
        .replace("nodes_per_layer = 3", "nodes_per_layer = 1")
        .replace("count = 20", "count = 2")
        .replace("payload = 20.0", "payload = 1.0")
        .replace("node_loop = 0.5", "node_loop = 1.0");
    let text = format!("{text}[attack]\ndropping_node = 1\nfrom_s = 100\n");
    for mode in ["abstract", "real"] {
        let s = scenario(&text.replace(
            "name = \"test\"",
            &format!("name = \"test\"\npacket_mode = \"{mode}\""),
        ));
        let summary = if mode == "abstract" {
            let mut sim = Simulation::<AbstractMode>::new(s.clone(), 5);
            sim.run(|_| {});
            assert!(sim.metrics.node_loops.first_alarm_after(0.0).unwrap() >= 100.0);
            sim.metrics.summary(&s, 5)
        } else {
            let mut sim = Simulation::<RealMode>::new(s.clone(), 5);
            sim.run(|_| {});
            sim.metrics.summary(&s, 5)
        };
        let attack = &summary["attack"];
        assert!(attack["frames_dropped"].as_u64().unwrap() > 100, "{attack}");
        // The loops' window holds 100: 51 lost loops, sent over about
        // 51 s at λM = 1, each judged after the 40 s timeout.
        let after = attack["first_alarm_after_s"].as_f64().unwrap();
        assert!((40.0..40.0 + 90.0).contains(&after), "{mode}: {after}");
        // Every node notices: the 3 mixes and the 2 providers.
        assert_eq!(
            summary["node_loops"]["nodes_alarmed"], 5,
            "{mode}: {summary}"
        );
        assert!(summary["node_loops"]["lost"].as_u64().unwrap() > 200);
    }
}

#[test]
fn a_storage_node_leaving_is_repaired_to_k_copies_by_the_production_machines() {
    let text =
        format!("{BASE}[storage]\nreplicas = 3\nrecords = 3000\ndepart_s = 30\nheartbeat_s = 2\n");
    let s = scenario(&text);
    let report = mtos_sim::churn::study(&s, 7).unwrap();
    // Every put reached its 3 replicas before the departure.
    assert_eq!(report["puts"]["ok"], 3000, "{report}");
    let on = report["records_on_departed_node"].as_u64().unwrap();
    assert!(on > 600, "{report}");
    // K = 3: the departure loses no record; repair sends each record the
    // departed node held exactly once, and every record ends on exactly
    // its 3 new replicas.
    assert_eq!(report["records_lost"], 0);
    assert_eq!(report["repair"]["sent"], on);
    assert_eq!(report["repair"]["failed"], 0);
    assert_eq!(report["records_at_exactly_k_copies"], 3000);
    // Dropped from the document after 3 heartbeats (6 s), a heartbeat to
    // settle (2 s), then copies paced at 100/s by each of 10 sources.
    let t = report["back_at_k_copies_after_s"].as_f64().unwrap();
    assert!((8.0..8.0 + 5.0).contains(&t), "{t}");
    // Deterministic in the seed; in the summary.
    assert_eq!(mtos_sim::churn::study(&s, 7).unwrap(), report);
    let mut sim = Simulation::<AbstractMode>::new(s.clone(), 7);
    sim.run(|_| {});
    assert_eq!(sim.metrics.summary(&s, 7)["storage_churn"], report);
    // Without depart_s, no churn study.
    assert!(mtos_sim::churn::study(&scenario(BASE), 7).is_none());
}

#[test]
fn churn_over_lossy_links_still_ends_every_repair_pass() {
    // 1% of messages lost: asks, answers, `have`s and copies. The
    // machines' timeouts turn every lost answer into a failure that is
    // retried, so no pass waits forever.
    let text = format!(
        "{}[storage]\nreplicas = 3\nrecords = 1500\ndepart_s = 30\nheartbeat_s = 2\n",
        BASE.replace(
            "latency = { kind = \"constant\", ms = 0 }",
            "latency = { kind = \"constant\", ms = 5 }\nloss = 0.01"
        )
    );
    let report = mtos_sim::churn::study(&scenario(&text), 3).unwrap();
    // Every node's pass completes (10), and follow-ups (ten heartbeats
    // later) that came to an end within the run.
    assert!(
        report["repair"]["passes"].as_u64().unwrap() >= 10,
        "{report}"
    );
    assert!(report["repair"]["failed"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["records_lost"], 0);
    // Lost put answers make short puts: repair does not heal those.
    assert!(report["puts"]["short"].as_u64().unwrap() > 0, "{report}");
}

#[test]
fn one_dropping_mix_among_three_per_layer_is_named_by_the_others() {
    let text = BASE
        .replace("duration_s = 60", "duration_s = 400")
        .replace("count = 20", "count = 2")
        .replace("payload = 20.0", "payload = 1.0")
        .replace("node_loop = 0.5", "node_loop = 1.0");
    let text = format!("{text}[attack]\ndropping_node = 4\nfrom_s = 100\n");
    let s = scenario(&text);
    let mut sim = Simulation::<AbstractMode>::new(s.clone(), 9);
    sim.run(|_| {});
    let summary = sim.metrics.summary(&s, 9);
    let attack = &summary["attack"];
    assert!(
        attack["alarms_naming_it"].as_u64().unwrap() >= 5,
        "{summary}"
    );
    assert!(
        attack["first_naming_it_after_s"].as_f64().unwrap() < 200.0,
        "{summary}"
    );
    // Only the dropper is ever named.
    assert_eq!(
        summary["node_loops"]["suspects"],
        serde_json::json!([4]),
        "{summary}"
    );
}

/// Clients in bulk windows send at the bulk class in their cohort's
/// windows and at the idle one otherwise (`client.md` §4.1, the core's
/// `WindowedSchedule`): with 2 cohorts every client is in bulk for half
/// of a run of whole window pairs, whatever ticket it drew, so the
/// payload slots of all clients are known in advance.
#[test]
fn clients_in_bulk_windows_send_at_their_class() {
    let count = |bulk: &str| {
        let s = scenario(&format!("{BASE}{bulk}"));
        let mut sim = Simulation::<AbstractMode>::new(s, 3);
        sim.run(|_| {});
        let sent = sim.metrics.sent;
        (sent[0] + sent[1], sent[2], sent[3])
    };
    // 20 clients for 60 s: λP 20 idle; 60 in windows of 10 s, half the
    // time each; loops and drops 1 and 2.
    let (idle, _, _) = count("");
    let (windowed, loops, drops) =
        count("[bulk]\npayload = 60.0\nloop = 1.0\ndrop = 2.0\nwindow_s = 10\ncohorts = 2\n");
    let within = |got: u64, mean: f64| (got as f64 - mean).abs() < 5.0 * mean.sqrt();
    assert!(
        within(idle, 20.0 * 20.0 * 60.0),
        "idle payload slots {idle}"
    );
    assert!(
        within(windowed, 20.0 * (20.0 * 30.0 + 60.0 * 30.0)),
        "payload slots with windows {windowed}"
    );
    assert!(within(loops, 20.0 * 60.0), "loops {loops}");
    assert!(within(drops, 20.0 * (30.0 + 60.0)), "drops {drops}");
}

/// The n−1 attack by blocking (`[attack] kind = "n-1"`) on a layer-2
/// mix (`simulation.md` §8). Without node loops (the weakened network)
/// there is nothing to notice it, and it follows every target it
/// isolates. With them (λM = 1) the same network raises no alarm
/// unattacked, a sustained attack is caught within two minutes by an
/// alarm naming the mix, and (nothing in the simulation reacting to an
/// alarm) the attacker goes on after it. One that pauses 0.5 s after
/// each target stays under the alarm: the limit §8 states.
#[test]
fn the_n_minus_1_attack_is_caught_by_node_loops_and_unseen_without_them() {
    let run = |node_loop: &str, pause: Option<&str>| {
        let text = BASE
            .replace("duration_s = 60", "duration_s = 240")
            .replace("node_loop = 0.5", &format!("node_loop = {node_loop}"));
        let text = match pause {
            Some(p) => format!(
                "{text}[attack]\nkind = \"n-1\"\ndropping_node = 4\nfrom_s = 60\npause_s = {p}\n"
            ),
            None => text,
        };
        let s = scenario(&text);
        let mut sim = Simulation::<AbstractMode>::new(s.clone(), 3);
        sim.run(|_| {});
        sim.metrics.summary(&s, 3)
    };
    let weak = run("0.0", Some("0"));
    let attack = &weak["attack"];
    let n1 = &attack["n_minus_1"];
    assert!(n1["isolated"].as_u64().unwrap() > 500, "{attack}");
    assert_eq!(n1["traced_share"], 1.0, "{attack}");
    assert!(attack["first_alarm_after_s"].is_null(), "{attack}");

    let quiet = run("1.0", None);
    assert_eq!(quiet["node_loops"]["alarms"], 0, "{}", quiet["node_loops"]);

    let sustained = run("1.0", Some("0"));
    let attack = &sustained["attack"];
    let n1 = &attack["n_minus_1"];
    assert_eq!(n1["traced_share"], 1.0, "{attack}");
    let after = attack["first_alarm_after_s"].as_f64().unwrap();
    assert!(after < 120.0, "{attack}");
    // The first alarm already names the mix.
    assert_eq!(attack["first_naming_it_after_s"].as_f64(), Some(after));
    assert_eq!(sustained["node_loops"]["suspects"], serde_json::json!([4]));
    // Nothing here acts on an alarm: the attacker goes on after it.
    assert!(
        n1["traced_before_alarm"].as_u64().unwrap() < n1["traced"].as_u64().unwrap(),
        "{attack}"
    );

    let paced = run("1.0", Some("0.5"));
    let attack = &paced["attack"];
    assert!(attack["first_alarm_after_s"].is_null(), "{attack}");
    assert!(
        attack["n_minus_1"]["traced"].as_u64().unwrap() > 150,
        "{attack}"
    );
}

/// The queue series (`queue_series_s`): every node's held packets
/// sampled each second; a mix's time-averaged queue is its arrival rate
/// over μ (Little's law), and the series can be turned off.
#[test]
fn queue_series_follow_littles_law() {
    let s = scenario(&BASE.replace("duration_s = 60", "duration_s = 120"));
    let mut sim = Simulation::<AbstractMode>::new(s.clone(), 4);
    sim.run(|_| {});
    let m = &sim.metrics;
    let nodes = m.node_load.len();
    assert_eq!(m.queue_series.times.len(), 121);
    assert_eq!(m.queue_series.held.len(), 121 * nodes);
    // Over the 9 mixes (116 samples each, after the 5 s warm-up): the
    // mean of a Poisson queue of about 3 is known to within 2%, 5% is
    // over 5 standard errors. Arrivals a second (over the whole run) over
    // μ = 1/20 ms.
    let (held, expected) = m.node_load.iter().take(9).fold((0.0, 0.0), |(h, e), l| {
        (h + l.mean_held, e + l.received as f64 / 120.0 * 0.020)
    });
    assert!(
        (held - expected).abs() < 0.05 * expected,
        "mixes hold {held} on average, Little's law {expected}"
    );
    let csv = m.queue_series.csv(nodes);
    assert!(csv.starts_with("time_s,node_0,"));
    assert_eq!(csv.lines().count(), 122);
    let off = scenario(&BASE.replace("warmup_s = 5", "warmup_s = 5\nqueue_series_s = 0"));
    let mut sim = Simulation::<AbstractMode>::new(off, 4);
    sim.run(|_| {});
    assert!(sim.metrics.queue_series.times.is_empty());
}

/// The engine's limits (`[limits]`): production's by default; a node
/// allowed to hold only a few packets drops the rest as production's
/// would (`queue_full`), and their tags' mass is lost, not spread.
#[test]
fn a_nodes_queue_limit_drops_what_it_cannot_hold() {
    let s = scenario(BASE);
    assert_eq!(s.queue_limit, 100_000);
    let tight = scenario(&format!(
        "{BASE}[limits]\nqueue_limit = 2\n[anonymity]\ntagged_messages = 50\n"
    ));
    let mut sim = Simulation::<AbstractMode>::new(tight.clone(), 2);
    sim.run(|_| {});
    let summary = sim.metrics.summary(&tight, 2);
    assert!(
        summary["engine_drops"]["queue_full"].as_u64().unwrap() > 100,
        "{}",
        summary["engine_drops"]
    );
    assert!(summary["anonymity"]["lost_mass_mean"].as_f64().unwrap() > 0.0);
    assert_eq!(summary["limits"]["queue_limit"], 2);
    let e = Scenario::parse(
        &format!("{BASE}[limits]\nqueue_limit = 0\n"),
        Path::new("t.toml"),
    )
    .unwrap_err();
    assert!(e.to_string().contains("limits.queue_limit"), "{e}");
}

/// Key rotation (`[epochs]`): every node moves to the new epoch's key at
/// each boundary and keeps the previous one for the grace period, as
/// production does. With a grace period longer than any packet's life
/// nothing is refused; with none, the packets in flight at a boundary
/// are refused at their next hop (`unknown_key`) and lost.
#[test]
fn nodes_rotate_keys_and_a_grace_period_keeps_packets_in_flight() {
    let run = |grace: &str| {
        let s = scenario(&format!(
            "{BASE}[epochs]\nlength_s = 10\ngrace_s = {grace}\n"
        ));
        let mut sim = Simulation::<AbstractMode>::new(s.clone(), 6);
        sim.run(|_| {});
        sim.metrics.summary(&s, 6)
    };
    let kept = run("5");
    assert!(
        kept["epochs"]["rotations"].as_u64().unwrap() >= 5,
        "{}",
        kept["epochs"]
    );
    assert!(
        kept["engine_drops"]["unknown_key"].is_null(),
        "{}",
        kept["engine_drops"]
    );
    let none = run("0");
    let refused = none["engine_drops"]["unknown_key"].as_u64().unwrap_or(0);
    assert!(refused > 10, "{}", none["engine_drops"]);
    // Without [epochs], one epoch and no summary entry.
    let plain = scenario(BASE);
    let mut sim = Simulation::<AbstractMode>::new(plain.clone(), 6);
    sim.run(|_| {});
    assert!(sim.metrics.summary(&plain, 6)["epochs"].is_null());
    let e = Scenario::parse(
        &format!("{BASE}[epochs]\nlength_s = 10\ngrace_s = 10\n"),
        Path::new("t.toml"),
    )
    .unwrap_err();
    assert!(e.to_string().contains("epochs.grace_s"), "{e}");
}
