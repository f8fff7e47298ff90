//! The cost of cover traffic at the network's default rates (the
//! authority template's λP 2, λL 1, λD 1 per second): CPU of idle client
//! sessions, and of the gateway serving them, over one measured window.
//!
//! `cargo bench -p mtos-benches --bench clients` (release build;
//! `-- --clients N --seconds S`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use mtos_client::mixnet::Session;
use mtos_mixnode::admission::Position;
use mtos_tests::{Testnet, arg, cpu_seconds};

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let clients = arg("--clients", 10) as usize;
    let seconds = arg("--seconds", 60);
    let chain = mtos_tests::CHAIN;
    let net = Testnet::start(&chain, 3600, 50);
    let config = net.network_config();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let me = std::process::id();
    let gateway = net.node(Position::Gateway).proc.pid().unwrap();
    rt.block_on(async {
        let one = Session::connect(&config).await.unwrap();
        let rates = one.document().rates;
        println!(
            "rates: λP {} λL {} λD {} per second per client",
            rates.payload, rates.loops, rates.drops
        );
        // One idle client alone.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (c0, t0) = (cpu_seconds(me).unwrap(), Instant::now());
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let one_cpu = (cpu_seconds(me).unwrap() - c0) / t0.elapsed().as_secs_f64();
        let s = one.stats();
        println!(
            "1 idle client: {:.2}% of one core ({} packets sent, {} deliveries received, {} loops back)",
            one_cpu * 100.0,
            s.sent.len(),
            s.deliveries.len(),
            s.loops_returned
        );
        drop(one);
        // Many idle clients on one gateway.
        let mut sessions = Vec::new();
        for _ in 0..clients {
            sessions.push(Session::connect(&config).await.unwrap());
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (c0, g0, t0) = (
            cpu_seconds(me).unwrap(),
            cpu_seconds(gateway).unwrap(),
            Instant::now(),
        );
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let wall = t0.elapsed().as_secs_f64();
        let all = (cpu_seconds(me).unwrap() - c0) / wall;
        let gw = (cpu_seconds(gateway).unwrap() - g0) / wall;
        println!(
            "{clients} idle clients: {:.2}% of one core in all, {:.2}% each",
            all * 100.0,
            all * 100.0 / clients as f64
        );
        println!(
            "gateway serving {clients} idle clients: {:.2}% of one core ({:.0} frames/s in, {:.0} delivery frames/s out)",
            gw * 100.0,
            clients as f64 * (rates.payload + rates.loops + rates.drops),
            clients as f64 * rates.payload
        );
    });
}
