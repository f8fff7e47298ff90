//! Simulator speed: events per second of the production engine under
//! virtual time, in abstract mode (no public-key work; goal >= 1,000,000
//! per core) and in real Sphinx mode, on the shipped small scenario.
//!
//! `cargo bench -p mtos-benches --bench sim`
//!
//! The wall time of the 1,000-mix / 10,000-client scenario is measured by
//! a command, not here (one run takes minutes):
//! `cargo build --release -p mtos-sim && time target/release/mtos-sim run simulations/scenarios/large.toml --quiet`

#![allow(clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mtos_sim::scenario::PacketMode;
use mtos_sim::{Scenario, run_scenario};

fn scenario(mode: PacketMode, seconds: f64) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../simulations/scenarios/small.toml");
    let mut s = Scenario::load(&path).expect("small scenario");
    s.packet_mode = mode;
    s.duration = Duration::from_secs_f64(seconds);
    s.warmup = Duration::from_secs_f64(seconds / 10.0);
    s
}

fn sim(c: &mut Criterion) {
    let mut group = c.benchmark_group("simulator_events");
    group.sample_size(10);
    for (name, mode, seconds) in [
        ("abstract", PacketMode::Abstract, 60.0),
        ("real", PacketMode::Real, 4.0),
    ] {
        let s = scenario(mode, seconds);
        let events = run_scenario(s.clone(), 1, |_| {}).events;
        group.throughput(Throughput::Elements(events));
        group.bench_function(name, |b| b.iter(|| run_scenario(s.clone(), 1, |_| {})));
    }
    group.finish();
}

criterion_group!(benches, sim);
criterion_main!(benches);
