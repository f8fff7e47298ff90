//! Anonymity metrics: the closed form of a single exponential mix, and
//! the direction of change with delay and cover rate.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use mtos_sim::scenario::Scenario;
use mtos_sim::sim::{AbstractMode, Simulation};
use mtos_sim::stratified::Stratified;

/// One Poisson mix fed by Poisson arrivals (rate λ), holding each message
/// Exp(mean 1/μ): the entropy of a message's output distribution is
/// ln(e·λ/μ) nats (Danezis, "The traffic analysis of continuous-time
/// mixes", PET 2004), for λ/μ large. The mix is the production engine,
/// driven by `mtos_sim::stratified` with one layer of one mix.
#[test]
fn single_exponential_mix_matches_the_closed_form() {
    let mix = Stratified {
        layers: 1,
        width: 1,
        load: 50.0, // λ = 500/s, μ = 10/s
        mean_delay: Duration::from_millis(100),
        tags: 300,
    };
    let results = mix.run(1);
    assert_eq!(results.len(), 300);
    let mean_bits = results.iter().sum::<f64>() / results.len() as f64;
    let expected_bits = (std::f64::consts::E * 50.0).ln() / std::f64::consts::LN_2;
    let rel = (mean_bits - expected_bits).abs() / expected_bits;
    eprintln!("single mix: H = {mean_bits:.4} bits, closed form {expected_bits:.4}");
    assert!(
        rel < 0.02,
        "H = {mean_bits:.3} bits, closed form {expected_bits:.3} (rel {rel:.4})"
    );
}

/// Stratified networks of exponential mixes at load λ/μ = 50 against
/// their closed form (`mtos_sim::stratified`): the differential entropy
/// of the Erlang(L, μ) delay plus log2 of the exit rate the mass can
/// reach (the last layer's; with one layer, the entry mix's alone, which
/// the adversary sees). Over 10 seeds, with the tags spread over many
/// states of the pools, each mean is within 3 standard errors and 0.05
/// bits of it.
#[test]
fn stratified_network_matches_its_closed_form() {
    for (layers, width) in [(3, 3), (1, 3)] {
        let net = Stratified {
            layers,
            width,
            load: 50.0,
            mean_delay: Duration::from_millis(100),
            tags: 150,
        };
        let c = net.compare(1, 10);
        eprintln!("stratified {layers}x{width}: {c:?}");
        let off = (c.mean_bits - c.closed_form_bits).abs();
        assert!(off < 3.0 * c.stderr_bits && off < 0.05, "{c:?}");
    }
}

const BASE: &str = r#"
name = "anonymity"
duration_s = 40
warmup_s = 10
[topology]
layers = 2
nodes_per_layer = 2
providers = 2
[clients]
count = 20
send = { kind = "poisson", rate = 1.0 }
[cover]
payload = 4.0
loop = 1.0
drop = 1.0
[mixing]
mode = "poisson"
mean_delay_ms = 30
[links]
latency = { kind = "constant", ms = 5 }
[anonymity]
tagged_messages = 150
"#;

fn mean_entropy(text: &str) -> (f64, f64) {
    let s = Scenario::parse(text, Path::new("a.toml")).unwrap();
    let mut sim = Simulation::<AbstractMode>::new(s, 11);
    sim.run(|_| {});
    assert!(
        sim.metrics.entropy.len() >= 140,
        "{}",
        sim.metrics.entropy.len()
    );
    sim.metrics.mean_entropy().unwrap()
}

#[test]
fn entropy_rises_with_the_mean_delay_and_the_cover_rate() {
    let (base, se) = mean_entropy(BASE);
    let (slow, se_slow) = mean_entropy(&BASE.replace("mean_delay_ms = 30", "mean_delay_ms = 120"));
    let (busy, se_busy) = mean_entropy(&BASE.replace("payload = 4.0", "payload = 16.0"));
    eprintln!(
        "H: base {base:.3}±{se:.3}, slow {slow:.3}±{se_slow:.3}, busy {busy:.3}±{se_busy:.3}"
    );
    // Differences well beyond the sampling error (3 standard errors).
    assert!(
        slow - base > 3.0 * (se + se_slow),
        "delay: {base} -> {slow}"
    );
    assert!(
        busy - base > 3.0 * (se + se_busy),
        "lambda: {base} -> {busy}"
    );
}

/// At 1% link loss every tag but those lost whole is measured (the mass a
/// link loses is counted, not the tag discarded), and the mean moves by
/// little: no survivorship bias.
#[test]
fn lost_mass_is_counted_not_a_reason_to_discard_a_tag() {
    let run = |text: &str| {
        let s = Scenario::parse(text, Path::new("a.toml")).unwrap();
        let mut sim = Simulation::<AbstractMode>::new(s, 11);
        sim.run(|_| {});
        sim.metrics
    };
    let clean = run(BASE);
    let lossy = run(&BASE.replace(
        "latency = { kind = \"constant\", ms = 5 }",
        "latency = { kind = \"constant\", ms = 5 }\nloss = 0.01",
    ));
    assert!(lossy.link_losses > 0);
    let tags = lossy.tag_sent_s.len() as u32;
    assert_eq!(tags, 150);
    assert_eq!(
        lossy.entropy.len() as u32 + lossy.tags_wholly_lost + lossy.tags_unfinished,
        tags
    );
    // A tag is lost whole only when its first link loses it (1%).
    assert!(
        lossy.entropy.len() >= 140,
        "{} measured",
        lossy.entropy.len()
    );
    let lost = lossy.entropy.iter().map(|t| t.lost_mass).sum::<f64>() / lossy.entropy.len() as f64;
    assert!(lost > 0.005 && lost < 0.1, "mean lost mass {lost}");
    let (h_clean, se_clean) = clean.mean_entropy().unwrap();
    let (h_lossy, se_lossy) = lossy.mean_entropy().unwrap();
    assert!(
        (h_clean - h_lossy).abs() < 0.3 + 3.0 * (se_clean + se_lossy),
        "{h_clean} vs {h_lossy}"
    );
}

/// Tags are spread over the run, not bunched after the warm-up.
#[test]
fn tags_are_spread_over_the_measured_run() {
    let s = Scenario::parse(BASE, Path::new("a.toml")).unwrap();
    let tail = s.tag_tail().as_secs_f64();
    let mut sim = Simulation::<AbstractMode>::new(s, 11);
    sim.run(|_| {});
    let sent = &sim.metrics.tag_sent_s;
    assert_eq!(sent.len(), 150);
    // warm-up 10 s, run 40 s: tags from 10 s to 40 s − tail.
    assert!(sent[0] >= 10.0 && sent[0] < 10.5, "{}", sent[0]);
    let last = sent[sent.len() - 1];
    assert!(
        last > 40.0 - tail - 1.0 && last <= 40.0 - tail + 1.0,
        "{last} (tail {tail})"
    );
    assert!(sim.metrics.tags_unfinished == 0);
    // Each tag's mass is all accounted for: exited, lost or ruled out.
    for t in &sim.metrics.entropy {
        let out = t.exited_mass + t.lost_mass + t.ruled_out_mass;
        assert!((out - 1.0).abs() < 1e-6, "{t:?}");
    }
}

/// Replications: the same seeds give the same bytes whatever the number
/// of threads, and different seeds give different runs.
#[test]
fn replications_are_reproducible_on_any_number_of_threads() {
    let s = Scenario::parse(BASE, Path::new("a.toml")).unwrap();
    let one = mtos_sim::replicate::replicate(&s, 5, 3, 1, |_| {});
    let two = mtos_sim::replicate::replicate(&s, 5, 3, 2, |_| {});
    let a = mtos_sim::replicate::summary(&s, &one).to_string();
    let b = mtos_sim::replicate::summary(&s, &two).to_string();
    assert_eq!(a, b);
    let v: serde_json::Value = serde_json::from_str(&a).unwrap();
    assert_eq!(v["seeds"], serde_json::json!([5, 6, 7]));
    let runs = v["runs"].as_array().unwrap();
    assert_ne!(runs[0]["entropy_bits"], runs[1]["entropy_bits"]);
    let h = &v["mean_over_runs"]["entropy_bits"];
    assert_eq!(h["runs"], 3);
    assert!(h["ci95_half_width"].as_f64().unwrap() > 0.0);
}

fn metrics_of(text: &str) -> mtos_sim::Metrics {
    let s = Scenario::parse(text, Path::new("a.toml")).unwrap();
    let mut sim = Simulation::<AbstractMode>::new(s, 11);
    sim.run(|_| {});
    sim.metrics
}

/// Held nodes see through their own mixing: an adversary holding every
/// node follows every message to its recipient (0 bits); one holding a
/// layer learns less than that but more than the links alone show.
#[test]
fn held_nodes_see_through_their_mixing() {
    let free_run = metrics_of(BASE);
    let all = metrics_of(&format!(
        "{BASE}\n[adversary]\nstrategy = \"random\"\nfraction = 1.0\n"
    ));
    assert!(all.entropy.len() >= 140);
    for t in &all.entropy {
        assert!(t.entropy_bits.abs() < 1e-9, "{t:?}");
        assert!(t.receiver_bits.abs() < 1e-9, "{t:?}");
    }
    assert_eq!(all.routes.held, vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(all.routes.all_held, all.routes.routes);
    assert!(all.routes.routes > 100);

    let layer = metrics_of(&format!(
        "{BASE}\n[adversary]\nstrategy = \"layer\"\nlayer = 2\n"
    ));
    // The same seed, so the same traffic and the same tags: only the
    // adversary's view differs, and the tags pair up.
    let diffs: Vec<f64> = free_run
        .entropy
        .iter()
        .zip(&layer.entropy)
        .map(|(a, b)| {
            assert_eq!(a.tag, b.tag);
            a.entropy_bits - b.entropy_bits
        })
        .collect();
    assert!(diffs.len() >= 140);
    let (d, se) = mtos_sim::metrics::mean_and_stderr(diffs.iter().copied()).unwrap();
    let (h, _) = layer.mean_entropy().unwrap();
    eprintln!("a held layer takes {d:.3} ± {se:.3} bits, leaving {h:.3}");
    assert!(h > 0.5 && d > 3.0 * se, "{d} ± {se}");
    assert_eq!(layer.routes.held, vec![2, 3]);
    // Two layers: one held layer never holds every mix of a route.
    assert_eq!(layer.routes.mixes_held, 0);
}

/// A run in real Sphinx mode cannot have held nodes (they see through
/// mixing by the abstract packets' ids): refused with its field named.
#[test]
fn an_adversary_needs_abstract_packets() {
    let text = format!(
        "{}\n[adversary]\nstrategy = \"mixes\"\nfraction = 0.5\n",
        BASE.replace("warmup_s = 10", "warmup_s = 10\npacket_mode = \"real\"")
    );
    let e = Scenario::parse(&text, Path::new("a.toml")).unwrap_err();
    assert!(e.to_string().contains("adversary.strategy"), "{e}");
}

/// BASE weakened: one mix per layer, 1 ms of mixing, no loop or drop
/// cover, payload slots barely above the real rate.
fn weakened() -> String {
    BASE.replace("nodes_per_layer = 2", "nodes_per_layer = 1")
        .replace("mean_delay_ms = 30", "mean_delay_ms = 1")
        .replace("payload = 4.0", "payload = 1.2")
        .replace("loop = 1.0", "loop = 0.0")
        .replace("drop = 1.0", "drop = 0.0")
}

/// Timing correlation by the global passive adversary (its posterior
/// being the mass tracking): against the weakened network its best
/// guess names nearly every recipient and every tag pair's senders are
/// told apart; against BASE it names few, and most pairs stay within a
/// factor e.
#[test]
fn timing_correlation_succeeds_against_a_weak_network_and_fails_against_the_default() {
    let summary = |text: &str| {
        let s = Scenario::parse(text, Path::new("a.toml")).unwrap();
        let seed = 11;
        let mut sim = Simulation::<AbstractMode>::new(s.clone(), seed);
        sim.run(|_| {});
        sim.metrics.summary(&s, seed)["anonymity"].clone()
    };
    let weak = summary(&weakened());
    let strong = summary(BASE);
    eprintln!(
        "weak: {} {}\nbase: {} {}",
        weak["recipient_guess"],
        weak["unlinkability"],
        strong["recipient_guess"],
        strong["unlinkability"]
    );
    let right = |a: &serde_json::Value| a["recipient_guess"]["best_guess_right"].as_f64().unwrap();
    let delta1 = |a: &serde_json::Value| {
        a["unlinkability"]["delta_at_epsilon"]["1"]
            .as_f64()
            .unwrap()
    };
    // Seed 11: 0.987 and 0.207 right, delta(1) 1.0 and 0.36 (a pair's
    // second message leaves a little after the first, so in this small
    // network a fifth of the pairs are told apart by timing alone).
    assert!(right(&weak) > 0.9, "{weak}");
    assert!(right(&strong) < 0.3, "{strong}");
    assert!(delta1(&weak) > 0.9, "{weak}");
    assert!(delta1(&strong) < 0.5, "{strong}");
    assert!(weak["unlinkability"]["samples"].as_u64().unwrap() >= 100);
}

/// Sender (backward) entropy: who sent the packet that was the tagged
/// message. Against the weakened network the best guess names nearly
/// every sender; against BASE few. Turning it on changes no other
/// figure; more than 2,000 clients are refused.
#[test]
fn sender_entropy_names_senders_only_in_a_weak_network() {
    let on = |text: &str| {
        text.replace(
            "tagged_messages = 150",
            "tagged_messages = 150\nsender_entropy = true",
        )
    };
    let run = |text: &str| {
        let s = Scenario::parse(text, Path::new("a.toml")).unwrap();
        let mut sim = Simulation::<AbstractMode>::new(s.clone(), 11);
        sim.run(|_| {});
        sim.metrics.summary(&s, 11)["anonymity"].clone()
    };
    let weak = run(&on(&weakened()));
    let strong = run(&on(BASE));
    let plain = run(BASE);
    eprintln!(
        "weak: {}\nbase: {}",
        weak["sender_guess"], strong["sender_guess"]
    );
    let right = |a: &serde_json::Value| a["sender_guess"]["best_guess_right"].as_f64().unwrap();
    assert!(right(&weak) > 0.9, "{weak}");
    assert!(right(&strong) < 0.3, "{strong}");
    let h = strong["sender_guess"]["sender_entropy_bits_mean"]
        .as_f64()
        .unwrap();
    // 20 clients: at most log2 20 bits.
    assert!(h > 1.0 && h < 20f64.log2(), "{h}");
    assert!(strong["sender_guess"]["delivered"].as_u64().unwrap() >= 140);
    assert_eq!(plain["sender_guess"], serde_json::Value::Null);
    let mut without = strong.clone();
    without["sender_guess"] = serde_json::Value::Null;
    assert_eq!(without, plain, "sender tracking changed another figure");

    let many = on(BASE).replace("count = 20", "count = 2001");
    let e = Scenario::parse(&many, Path::new("a.toml")).unwrap_err();
    assert!(e.to_string().contains("anonymity.sender_entropy"), "{e}");
}

/// The statistical disclosure attack (`[disclosure]`): Alice writes only
/// to 3 friends. Against the weakened network the adversary names them
/// after a few of her messages; against BASE (mixing and cover) it needs
/// at least ten times as many, or does not name them in ten minutes.
#[test]
fn statistical_disclosure_names_friends_in_a_weak_network_only() {
    let run = |text: String| {
        let text = text
            .replace("duration_s = 40", "duration_s = 600")
            .replace("tagged_messages = 150", "tagged_messages = 2");
        let text = format!("{text}[disclosure]\nsender = 0\nfriends = 3\n");
        metrics_of(&text).disclosure.unwrap()
    };
    let weak = run(weakened());
    eprintln!("weakened: {weak}");
    assert_eq!(weak["identified"], true, "{weak}");
    // The estimator that discounts each client's own returns names them
    // too (its figures are in simulation.md §9).
    assert_eq!(weak["own_sends"]["identified"], true, "{weak}");
    let fast = weak["real_messages_to_identify"].as_u64().unwrap();
    assert!(fast <= 50, "{weak}");
    let default = run(BASE.to_owned());
    eprintln!("default: {default}");
    assert!(
        default["real_messages"].as_u64().unwrap() > 400,
        "{default}"
    );
    if let Some(slow) = default["real_messages_to_identify"].as_u64() {
        assert!(slow >= 10 * fast, "{default}");
    }
}

/// What a colluding gateway and service node learn
/// (`anonymity.focus_gateway`, `focus_exit`): the sender guess over the
/// messages sent through gateway 0 and delivered at provider 1. Holding
/// the pair as well as every link makes the guess sharper than the
/// links alone, though mixing still hides most; holding every node
/// names every sender.
#[test]
fn a_colluding_gateway_and_service_node_sharpen_the_sender_guess() {
    let text = BASE.replace(
        "tagged_messages = 150",
        "tagged_messages = 600\nsender_entropy = true\nfocus_gateway = 0\nfocus_exit = 1",
    );
    let run = |held: &str| {
        let text = match held {
            "" => text.clone(),
            nodes => format!("{text}[adversary]\nstrategy = \"list\"\nnodes = [{nodes}]\n"),
        };
        let s = Scenario::parse(&text, Path::new("a.toml")).unwrap();
        let mut sim = Simulation::<AbstractMode>::new(s.clone(), 11);
        sim.run(|_| {});
        sim.metrics.summary(&s, 11)["anonymity"]["focus"].clone()
    };
    let links = run("");
    let pair = run("4, 5"); // provider 0 (node 4) and provider 1 (node 5)
    let all = run("0, 1, 2, 3, 4, 5");
    eprintln!("links: {links}\npair: {pair}\nall: {all}");
    let h = |f: &serde_json::Value| {
        f["sender_guess"]["sender_entropy_bits_mean"]
            .as_f64()
            .unwrap()
    };
    // The same messages in each run (the adversary draws nothing here).
    assert_eq!(links["delivered"], pair["delivered"]);
    assert!(links["delivered"].as_u64().unwrap() >= 100, "{links}");
    assert!(h(&pair) < h(&links) - 0.1, "{links} {pair}");
    assert!(h(&pair) > 1.0, "{pair}");
    assert!(h(&all) < 1e-9, "{all}");
    assert_eq!(all["sender_guess"]["best_guess_right"], 1.0);
}

/// Topologies (`[topology] kind`): an adversary holding mix 0 of each
/// layer (nodes 0 and 2 of `BASE`'s 2 × 2) holds every mix of the routes
/// of cascade 0, half of them in a cascade network; a quarter in a
/// stratified one (each layer's mix drawn apart) and in a free-route one
/// (each hop any of the four mixes: 2/4 · 2/4). The mass still reaches
/// every exit provider, where the cascades meet, so the entropies stay
/// close.
#[test]
fn cascades_and_free_routes_cross_the_mixes_as_named() {
    let with = |kind: &str| {
        let text = format!(
            "{}[adversary]\nstrategy = \"list\"\nnodes = [0, 2]\n",
            BASE.replace(
                "providers = 2",
                &format!("providers = 2\nkind = \"{kind}\"")
            )
        );
        let m = metrics_of(&text);
        let r = &m.routes;
        (
            r.mixes_held as f64 / r.routes as f64,
            m.mean_entropy().unwrap().0,
        )
    };
    let (stratified, h_s) = with("stratified");
    let (cascade, h_c) = with("cascade");
    let (free, h_f) = with("free-route");
    eprintln!(
        "held routes: stratified {stratified:.3}, cascade {cascade:.3}, free {free:.3}; H {h_s:.3} {h_c:.3} {h_f:.3}"
    );
    assert!((cascade - 0.5).abs() < 0.05, "{cascade}");
    assert!((stratified - 0.25).abs() < 0.05, "{stratified}");
    assert!((free - 0.25).abs() < 0.05, "{free}");
    assert!((h_c - h_s).abs() < 0.5 && (h_f - h_s).abs() < 0.5);
}

/// With bandwidth weights routes favour the large mixes, and an
/// adversary holding the busiest third of the mixes holds every mix of
/// `(6/11)^2` of the routes (Zipf, s = 1, three mixes a layer: the
/// largest draws 6/11 of its layer) and 6/11 of the mixes' traffic,
/// against `(1/3)^2` and a third for the largest third of equal mixes.
#[test]
fn the_busiest_mixes_hold_the_most_routes_when_routes_follow_bandwidth() {
    let network = BASE.replace("nodes_per_layer = 2", "nodes_per_layer = 3");
    let zipf = network.replace(
        "providers = 2",
        "providers = 2\nbandwidth = { kind = \"zipf\", s = 1.0 }",
    );
    let summary = |text: &str| {
        let s = Scenario::parse(text, Path::new("a.toml")).unwrap();
        let mut sim = Simulation::<AbstractMode>::new(s.clone(), 11);
        sim.run(|_| {});
        sim.metrics.summary(&s, 11)
    };
    let busiest = summary(&format!(
        "{zipf}[adversary]\nstrategy = \"busiest\"\nfraction = 0.34\n"
    ));
    let a = &busiest["adversary"];
    assert_eq!(a["nodes_held"], serde_json::json!([0, 3]), "{a}");
    let routes = a["routes_with_every_mix_held"].as_f64().unwrap();
    let expected = (6.0f64 / 11.0).powi(2);
    assert!(
        (routes - expected).abs() < 0.04,
        "{routes} against {expected}"
    );
    let traffic = a["mix_traffic_held"].as_f64().unwrap();
    assert!((traffic - 6.0 / 11.0).abs() < 0.03, "{traffic}");
    // The same two mixes with equal weights.
    let equal = summary(&format!(
        "{network}[adversary]\nstrategy = \"list\"\nnodes = [0, 3]\n"
    ));
    let e = &equal["adversary"];
    let routes = e["routes_with_every_mix_held"].as_f64().unwrap();
    assert!((routes - 1.0 / 9.0).abs() < 0.03, "{routes}");
    let traffic = e["mix_traffic_held"].as_f64().unwrap();
    assert!((traffic - 1.0 / 3.0).abs() < 0.03, "{traffic}");
    // Equal mixes have no busiest: refused, naming the field.
    let refused = Scenario::parse(
        &format!("{network}[adversary]\nstrategy = \"busiest\"\nfraction = 0.34\n"),
        Path::new("a.toml"),
    )
    .unwrap_err();
    assert!(
        refused.to_string().contains("adversary.strategy"),
        "{refused}"
    );
}
