//! A chain of real `mtos-node` processes on loopback (gateway, three mix
//! layers, service; zero mixing delay), fed with pre-built packets, next
//! to the raw Sphinx unwrap rate measured in the same run:
//!
//! * raw: header check + replay tag + unwrap of one hop, in this process;
//! * chain: packets delivered per CPU-second of the five node processes
//!   (user + system time from /proc, as getrusage counts it), times five
//!   (each packet is unwrapped once per node), divided by raw. The goal
//!   is >= 0.8. Run with the nodes' Sphinx work on 1 thread (the engine
//!   loop's own), on 2 and on one per core (`limits.sphinx_workers`),
//!   each a fresh chain: packets per CPU-second and packets per second of
//!   each, so the pool's cost and its scaling show (five processes share
//!   this machine's cores, so on a small machine the total cannot grow
//!   much);
//! * flood: 60 s of unauthentic frames of the right size and key tag at
//!   the gateway as fast as one client can send them (reported against
//!   the node's capacity), sampling the gateway's RSS every second: it
//!   must stay bounded.
//!
//! `cargo bench -p mtos-benches --bench chain` (release build of the
//! node; `-- --packets N --flood-secs S` to change the sizes).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use mtos_crypto::sphinx::FRAME_SIZE;
use mtos_mixnode::admission::Position;
use mtos_tests::{NodeSettings, TestClient, Testnet, arg, cpu_seconds, rss_bytes};
use rand::RngExt;

fn raw_unwrap_rate(seconds: f64) -> f64 {
    mtos_node::capacity::unwrap_rate(seconds).unwrap()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let packets = arg("--packets", 40_000) as usize;
    let flood_secs = arg("--flood-secs", 60);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut runs = vec![1u32, 2, cores as u32];
    runs.dedup();
    let raw = raw_unwrap_rate(3.0);
    println!("raw unwrap: {raw:.0} hops/s per core; {cores} cores");
    let mut last = None;
    for workers in runs {
        let (net, mut client, route) = rt.block_on(chain_net(workers));
        let (per_cpu, rate) = rt.block_on(run_chain(&net, &mut client, &route, packets));
        println!(
            "sphinx_workers {workers}: {rate:.0} packets/s, {per_cpu:.0} packets per CPU-second = {:.0} hops per CPU-second; ratio to raw unwrap {:.3}",
            per_cpu * 5.0,
            per_cpu * 5.0 / raw
        );
        for n in &net.nodes {
            println!(
                "  {} cpu {:.1} s rss {:.1} MiB",
                n.proc.name,
                cpu_seconds(n.proc.pid().unwrap()).unwrap(),
                rss_bytes(n.proc.pid().unwrap()).unwrap() as f64 / (1 << 20) as f64
            );
        }
        last = Some((net, client, route));
    }
    let (net, mut client, route) = last.unwrap();
    rt.block_on(async {
        // The flood.
        let gateway = net.node(Position::Gateway);
        let gpid = gateway.proc.pid().unwrap();
        let tag = (client.document.epoch % 256) as u8;
        let mut rng = rand::rng();
        let garbage: Vec<Vec<u8>> = (0..2_000)
            .map(|_| {
                let mut f = vec![0u8; FRAME_SIZE];
                rng.fill(&mut f[..]);
                f[0] = tag;
                f
            })
            .collect();
        let rss0 = rss_bytes(gpid).unwrap();
        let received0 = gateway.metric("mtos_frames_received_total", "").unwrap();
        let start = Instant::now();
        let mut offered = 0u64;
        let mut samples = Vec::new();
        let mut next_sample = Instant::now();
        while start.elapsed() < Duration::from_secs(flood_secs) {
            client.send(&route[0], &garbage).await;
            offered += garbage.len() as u64;
            if Instant::now() >= next_sample {
                samples.push(rss_bytes(gpid).unwrap());
                next_sample += Duration::from_secs(1);
            }
        }
        let secs = start.elapsed().as_secs_f64();
        let received = gateway.metric("mtos_frames_received_total", "").unwrap() - received0;
        let overloaded = gateway.metric("mtos_frames_dropped_total", "reason=\"overloaded\"").unwrap();
        let mac = gateway.metric("mtos_frames_dropped_total", "reason=\"header_mac\"").unwrap();
        let max = samples.iter().copied().max().unwrap_or(rss0);
        let last = samples.last().copied().unwrap_or(rss0);
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        println!(
            "flood: {secs:.0} s, offered {:.0} frames/s = {:.1}x the gateway's capacity ({:.0}/s); gateway read {received:.0}, checked {mac:.0} (MAC failed), shed {overloaded:.0} (queue full)",
            offered as f64 / secs,
            offered as f64 / secs / raw,
            raw
        );
        println!(
            "gateway RSS: {:.1} MiB before, max {:.1} MiB, last {:.1} MiB (samples per second: {:?})",
            mib(rss0),
            mib(max),
            mib(last),
            samples.iter().map(|b| (mib(*b) * 10.0).round() / 10.0).collect::<Vec<_>>()
        );
        assert!(gateway.metric("mtos_directory_nodes", "").is_some(), "the gateway died");
    });
}

/// The chain's key epoch: short, so its replay filters sized for the
/// rate below stay small (about 4.9 bytes a packet).
const EPOCH_SECS: u64 = 600;

/// A chain whose nodes do their Sphinx work on `workers` threads, and a
/// client on it with the route through it.
async fn chain_net(workers: u32) -> (Testnet, TestClient, Vec<mtos_mixnode::directory::NodeEntry>) {
    let chain = mtos_tests::CHAIN;
    let net = tokio::task::block_in_place(|| {
        Testnet::start_with(&chain, EPOCH_SECS, 0, |_| NodeSettings {
            peer_rate_pps: Some(10_000_000),
            client_burst: Some(100_000_000),
            // Each Sphinx key admits replay_capacity / epoch packets a
            // second (`mixing.md` §2); the default's 4,000,000 over an
            // hour is 1,111/s, a tenth of one core's unwrap rate. Sized
            // here as an operator would for this load: 25,000/s.
            replay_capacity: Some(25_000 * EPOCH_SECS),
            sphinx_workers: Some(workers),
            ..NodeSettings::default()
        })
    });
    let client = TestClient::connect(&net).await;
    let route: Vec<_> = chain.iter().map(|p| client.at(*p)[0].clone()).collect();
    (net, client, route)
}

/// Sends `packets` through the chain; packets delivered per CPU-second of
/// the five nodes, and per second.
async fn run_chain(
    net: &Testnet,
    client: &mut TestClient,
    route: &[mtos_mixnode::directory::NodeEntry],
    packets: usize,
) -> (f64, f64) {
    let refs: Vec<_> = route.iter().collect();
    let t = Instant::now();
    let frames: Vec<Vec<u8>> = (0..packets as u32)
        .map(|i| client.frame(&refs, Duration::ZERO, &i.to_be_bytes()))
        .collect();
    println!(
        "built {packets} 5-hop packets in {:.1} s (not measured below)",
        t.elapsed().as_secs_f64()
    );
    let pids: Vec<u32> = net.nodes.iter().map(|n| n.proc.pid().unwrap()).collect();
    let cpu = |pids: &[u32]| pids.iter().map(|p| cpu_seconds(*p).unwrap()).sum::<f64>();
    let service = net.node(Position::Service);
    let delivered = || service.metric("mtos_frames_delivered_total", "").unwrap();
    let before = delivered();
    let cpu0 = cpu(&pids);
    let start = Instant::now();
    // Keep at most 4,000 packets in flight, so no queue overflows and
    // every packet sent is a packet delivered.
    let mut sent = 0;
    for batch in frames.chunks(1_000) {
        while sent as f64 - (delivered() - before) > 3_000.0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        client.send(&route[0], batch).await;
        sent += batch.len();
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while delivered() - before < packets as f64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu_used = cpu(&pids) - cpu0;
    let got = delivered() - before;
    println!("  {got} of {packets} delivered in {wall:.1} s, {cpu_used:.1} CPU-s over 5 nodes");
    if got < packets as f64 {
        // Where the rest went: each node's counters and drop reasons.
        for line in net.report().lines().filter(|l| !l.starts_with(' ')) {
            println!("  {line}");
        }
    }
    (got / cpu_used, got / wall)
}
