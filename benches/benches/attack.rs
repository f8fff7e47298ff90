//! Honest delivery and node memory against attack load: a loopback
//! testnet whose gateway is scaled down (its Sphinx key admits 48
//! packets a second, so it serves four clients at λP 2, λL 1, λD 1),
//! two honest clients exchanging messages, and twenty fresh client
//! identities that each asked for a session (the gateway serves two of
//! them) flooding the gateway with packets valid for its layer at 1x,
//! 2x, 5x and 10x what its key admits. For each load: the share of
//! alice's messages bob received, the gateway's drops by reason, and
//! the largest resident memory of the gateway and of any node. One run,
//! one network: the loads are comparable.
//!
//! `cargo bench -p mtos-benches --bench attack` (`-- --secs N`: seconds
//! per load, default 30; `--profile dev` reuses the tests' build: the
//! nodes are the tests' binaries either way). On the project's 2-core
//! machine, 20 s per load: delivered 1.000 at 0x, 1x, 2x, 5x and 10x;
//! the gateway at 23-24 MiB, no node above 31 MiB; drops are no_session
//! (the 18 attackers refused a session) and, at 10x, client_throttled
//! (the 2 served ones sending 24 a second of their 8); no key_cap.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use mtos_client::mixnet::Session;
use mtos_mixnode::admission::Position;
use mtos_tests::flood::{Attackers, KEY_RATE, delivery_ratio, scaled_gateway_testnet};
use mtos_tests::{arg, rss_bytes};

const ATTACKERS: usize = 20;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let secs = arg("--secs", 30) as usize;
    let net = scaled_gateway_testnet();
    let config = net.network_config();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let alice = Session::connect(&config).await.unwrap();
        let mut bob = Session::connect(&config).await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut attackers = Attackers::connect(&net, ATTACKERS).await;
        println!(
            "gateway key: {KEY_RATE} packets/s (4 clients); {ATTACKERS} attacker identities asked for sessions, {} served; {secs} s per load; alice sends bob one message every 0.6 s",
            attackers.admitted
        );
        let gateway = net.node(Position::Gateway);
        let gateway_pid = gateway.proc.pid().unwrap();
        let pids: Vec<u32> = net.nodes.iter().filter_map(|n| n.proc.pid()).collect();
        let drops = |reason: &str| {
            gateway
                .metric("mtos_frames_dropped_total", &format!("reason=\"{reason}\""))
                .unwrap_or(0.0)
        };
        let reasons = ["no_session", "client_throttled", "key_cap", "overloaded"];
        println!(
            "load  offered/s  delivered  gateway RSS MiB  max node RSS MiB  drops/s {}",
            reasons.join(" ")
        );
        for load in [0usize, 1, 2, 5, 10] {
            let per_client = (load * KEY_RATE as usize).div_ceil(ATTACKERS);
            let packets = attackers.build(per_client, secs);
            let before: Vec<f64> = reasons.iter().map(|r| drops(r)).collect();
            let messages = secs * 10 / 6;
            let tag = format!("load {load} ");
            let (ratio, ()) = tokio::join!(
                delivery_ratio(
                    &alice,
                    &mut bob,
                    messages,
                    Duration::from_millis(600),
                    Duration::from_secs(20),
                    &tag,
                ),
                attackers.flood(packets)
            );
            let rss_gateway = rss_bytes(gateway_pid).unwrap_or(0);
            let rss_max = pids.iter().filter_map(|p| rss_bytes(*p)).max().unwrap_or(0);
            let rates: Vec<String> = reasons
                .iter()
                .zip(&before)
                .map(|(r, b)| format!("{:.1}", (drops(r) - b) / secs as f64))
                .collect();
            println!(
                "{load:>3}x  {:>9}  {ratio:>9.3}  {:>15}  {:>16}  {}",
                per_client * ATTACKERS,
                rss_gateway >> 20,
                rss_max >> 20,
                rates.join(" ")
            );
        }
    });
}
