//! `mtos-sim run` and `sweep` as a researcher uses them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use mtos_sim::Scenario;
use mtos_sim::sweep::{SweepError, parse_param, set_param};

const TINY: &str = r#"
name = "tiny"
duration_s = 20
warmup_s = 2
[topology]
layers = 1
nodes_per_layer = 2
providers = 2
[clients]
count = 6
send = { kind = "poisson", rate = 1.0 }
[cover]
payload = 3.0
loop = 1.0
drop = 1.0
[mixing]
mode = "poisson"
mean_delay_ms = 20
[links]
latency = { kind = "constant", ms = 1 }
[anonymity]
tagged_messages = 20
"#;

#[test]
fn run_writes_summary_series_and_plots_reproducibly() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("tiny.toml");
    std::fs::write(&scenario, TINY).unwrap();
    let run = |out: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_mtos-sim"))
            .args([
                "run",
                scenario.to_str().unwrap(),
                "--seed",
                "4",
                "--quiet",
                "--out",
            ])
            .arg(dir.path().join(out))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    run("a");
    run("b");
    for f in [
        "summary.json",
        "latency.csv",
        "entropy.csv",
        "node_load.csv",
        "latency_cdf.svg",
        "entropy.svg",
    ] {
        let a = std::fs::read(dir.path().join("a").join(f)).unwrap();
        let b = std::fs::read(dir.path().join("b").join(f)).unwrap();
        assert!(!a.is_empty(), "{f} empty");
        assert_eq!(a, b, "{f} differs between identical runs");
    }
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("a/summary.json")).unwrap()).unwrap();
    assert_eq!(summary["seed"], 4);
    assert!(summary["anonymity"]["tagged_measured"].as_u64().unwrap() >= 18);
    // Which code, and how fast: the version in both, the wall time and
    // rate in run.json only.
    let version = summary["code_version"].as_str().unwrap();
    assert!(version.starts_with(env!("CARGO_PKG_VERSION")), "{version}");
    let timing: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("a/run.json")).unwrap()).unwrap();
    assert_eq!(timing["code_version"].as_str(), Some(version));
    assert_eq!(timing["events"], summary["events"]);
    assert!(timing["events_per_second"].as_f64().unwrap() > 0.0);
    assert!(summary.get("wall_seconds").is_none());
    // Load by layer, and bytes against the real messages' payload.
    let load = &summary["node_load"];
    assert!(
        load["layer-1"]["received_mean"].as_f64().unwrap() > 0.0,
        "{load}"
    );
    assert!(
        load["providers"]["max_held"].as_u64().unwrap() >= 1,
        "{load}"
    );
    let bytes = &summary["bytes"];
    assert!(
        bytes["link_bytes_per_payload_byte"].as_f64().unwrap() > 1.0,
        "{bytes}"
    );
    let rows = std::fs::read_to_string(dir.path().join("a/node_load.csv")).unwrap();
    let received: u64 = rows
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(2).unwrap().parse::<u64>().unwrap())
        .sum();
    let carried =
        summary["link_frames"].as_u64().unwrap() - summary["link_losses"].as_u64().unwrap();
    // Every frame a link carried reached a node, but those still in
    // flight at the end.
    assert!(
        received <= carried && received + 200 >= carried,
        "{received} of {carried}"
    );
}

#[test]
fn sweep_runs_every_value_and_refuses_unknown_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("tiny.toml");
    std::fs::write(&scenario, TINY).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_mtos-sim"))
        .args([
            "sweep",
            scenario.to_str().unwrap(),
            "--param",
            "cover.payload=1,4,8",
            "--jobs",
            "2",
            "--out",
        ])
        .arg(dir.path().join("s"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = std::fs::read_to_string(dir.path().join("s/sweep.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4, "{csv}");
    assert!(dir.path().join("s/sweep_latency.svg").exists());

    let o = Command::new(env!("CARGO_BIN_EXE_mtos-sim"))
        .args([
            "sweep",
            scenario.to_str().unwrap(),
            "--param",
            "cover.nope=1",
            "--out",
        ])
        .arg(dir.path().join("t"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("cover.nope"));
    // A value that makes the scenario invalid is refused before any run.
    let o = Command::new(env!("CARGO_BIN_EXE_mtos-sim"))
        .args([
            "sweep",
            scenario.to_str().unwrap(),
            "--param",
            "cover.payload=1,-2",
            "--out",
        ])
        .arg(dir.path().join("u"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("cover.payload"));
    assert!(!dir.path().join("u/sweep.csv").exists());
}

/// A grid of two parameters under two seeds, run here; the same grid as
/// emitted jobs, run by a shell one command at a time and merged: the
/// same sweep.csv.
#[test]
fn grid_sweeps_run_here_or_as_emitted_jobs_agree() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("tiny.toml");
    std::fs::write(&scenario, TINY).unwrap();
    let sweep = |out: &str, extra: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_mtos-sim"))
            .args(["sweep", scenario.to_str().unwrap()])
            .args([
                "--param",
                "cover.payload=2,4",
                "--param",
                "mixing.mean_delay_ms=10,30.5",
            ])
            .args(["--seeds", "2", "--seed", "3", "--jobs", "2", "--out"])
            .arg(dir.path().join(out))
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    sweep("here", &[]);
    let here = std::fs::read_to_string(dir.path().join("here/sweep.csv")).unwrap();
    let lines: Vec<&str> = here.lines().collect();
    assert_eq!(lines.len(), 5, "{here}");
    assert!(lines[0].starts_with(
        "cover.payload,mixing.mean_delay_ms,runs,entropy_bits_mean,entropy_bits_ci95"
    ));
    assert!(lines[4].starts_with("4,30.5,2,"), "{here}");
    assert!(dir.path().join("here/point-3/seed-4/summary.json").exists());

    // A directory holding a sweep is not reused: its runs would be merged
    // into the new one.
    let o = Command::new(env!("CARGO_BIN_EXE_mtos-sim"))
        .args([
            "sweep",
            scenario.to_str().unwrap(),
            "--param",
            "cover.payload=2",
            "--out",
        ])
        .arg(dir.path().join("here"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("already holds a sweep"));

    sweep("jobs", &["--emit-jobs"]);
    let jobs = std::fs::read_to_string(dir.path().join("jobs/jobs.txt")).unwrap();
    assert_eq!(jobs.lines().count(), 8, "{jobs}");
    assert!(!dir.path().join("jobs/sweep.csv").exists());
    for line in jobs.lines() {
        let o = Command::new("sh").args(["-c", line]).output().unwrap();
        assert!(
            o.status.success(),
            "{line}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let o = Command::new(env!("CARGO_BIN_EXE_mtos-sim"))
        .arg("merge")
        .arg(dir.path().join("jobs"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let merged = std::fs::read_to_string(dir.path().join("jobs/sweep.csv")).unwrap();
    assert_eq!(merged, here);

    // A missing run is left out of its point and said.
    std::fs::remove_file(dir.path().join("jobs/point-0/seed-3/summary.json")).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_mtos-sim"))
        .arg("merge")
        .arg(dir.path().join("jobs"))
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("1 runs have no summary.json"));
    let merged = std::fs::read_to_string(dir.path().join("jobs/sweep.csv")).unwrap();
    assert!(
        merged.lines().nth(1).unwrap().starts_with("2,10,1,"),
        "{merged}"
    );
}

#[test]
fn parameter_syntax() {
    assert_eq!(
        parse_param("a.b=1, 2,3").unwrap(),
        ("a.b".to_owned(), vec!["1".into(), "2".into(), "3".into()])
    );
    assert!(matches!(parse_param("a.b"), Err(SweepError::Syntax(_))));
    assert!(matches!(parse_param("=1"), Err(SweepError::Syntax(_))));
    // The seed is the runs', not a parameter.
    assert!(matches!(
        parse_param("seed=1,2"),
        Err(SweepError::SeedParam)
    ));
    let (text, x) = set_param(TINY, "clients.count", "9").unwrap();
    assert_eq!(x, 9.0);
    assert!(text.contains("count = 9"));
    // A key written as an integer takes a decimal: a number field keeps
    // it, a whole-number field refuses it when checked, naming itself.
    let (text, x) = set_param(TINY, "mixing.mean_delay_ms", "12.5").unwrap();
    assert_eq!(x, 12.5);
    let s = Scenario::parse(&text, Path::new("t.toml")).unwrap();
    assert_eq!(s.mean_delay, std::time::Duration::from_micros(12_500));
    let (text, _) = set_param(TINY, "clients.count", "9.5").unwrap();
    let e = Scenario::parse(&text, Path::new("t.toml")).unwrap_err();
    assert!(e.to_string().contains("count"), "{e}");
    assert!(matches!(
        set_param(TINY, "clients.count", "x"),
        Err(SweepError::BadValue { .. })
    ));
    assert!(matches!(
        set_param(TINY, "name", "x"),
        Err(SweepError::BadValue { .. })
    ));
}
