//! What an idle screen costs: a loopback testnet at the default rates
//! (λP 2, λL 1, λD 1 a second), one idle screen process (`mtos screen
//! start`, nothing followed, nothing queued) and, beside it over the
//! same minutes, a bare session in this process; the CPU time each used,
//! from `/proc`, as a share of one core. One run, one network, one
//! window: the two figures are comparable.
//!
//! `cargo bench --profile dev -p mtos-benches --bench screen_idle --
//! --secs 60` (`--secs`: the measured window after 10 s of warm-up;
//! `--profile dev` reuses the tests' build, as the screen binary is the
//! tests' `mtos`). On the project's 2-core machine, 60 s: the idle
//! screen used 0.98% of one core, the bare session 0.95% (screen / bare
//! 1.04); 271 and 285 packets sent, at 4 a second.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use mtos_client::Home;
use mtos_client::mixnet::Session;
use mtos_tests::screen::CliScreen;
use mtos_tests::{AuthoritySettings, CHAIN, NodeSettings, Testnet, arg, cpu_seconds};

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let secs = arg("--secs", 60);
    let net = Testnet::start_custom(
        &CHAIN,
        600,
        5,
        |_| NodeSettings::default(),
        &AuthoritySettings::default(),
    );
    let root = tempfile::tempdir().unwrap();
    let home_dir = root.path().join("home");
    Home::resolve(Some(home_dir.clone()))
        .unwrap()
        .set_network(&net.network_config())
        .unwrap();
    let screen = CliScreen::start(&home_dir, &[]);
    let screen_pid = screen.pid().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let rates = rt.block_on(async {
        let session = Session::connect(&net.network_config()).await.unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
        let me = std::process::id();
        let (screen_before, me_before) =
            (cpu_seconds(screen_pid).unwrap(), cpu_seconds(me).unwrap());
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let wall = started.elapsed().as_secs_f64();
        let screen_cpu = cpu_seconds(screen_pid).unwrap() - screen_before;
        let me_cpu = cpu_seconds(me).unwrap() - me_before;
        let stats = session.stats();
        let doc = session.document();
        drop(session);
        (
            screen_cpu / wall,
            me_cpu / wall,
            doc.rates.payload + doc.rates.loops + doc.rates.drops,
            stats.sent_real + stats.sent_cover,
        )
    });
    let (screen_share, bare_share, rate, sent) = rates;
    let status = screen.status();
    println!(
        "over {secs} s at {rate} packets/s: idle screen {:.2}% of one core ({} packets sent, {} real), bare session {:.2}% ({sent} sent); screen / bare {:.2}",
        screen_share * 100.0,
        status["sent_real"].as_u64().unwrap_or(0) + status["sent_cover"].as_u64().unwrap_or(0),
        status["sent_real"],
        bare_share * 100.0,
        screen_share / bare_share.max(f64::MIN_POSITIVE),
    );
}
