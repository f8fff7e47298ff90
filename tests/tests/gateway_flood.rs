//! A gateway flooded from many fresh client identities at five times
//! what its Sphinx key admits keeps delivering its clients' messages
//! (`specs/client.md` §3). The gateway is scaled down rather than the
//! flood: its key admits 48 packets a second (building five times a
//! default gateway's load would take ~15 CPU-seconds a second here), so
//! it serves four clients (each may send 8 a second and gets 4 back).
//! Two honest clients hold sessions; twenty attackers with fresh
//! identities each open one (with its work) and send packets valid for
//! the gateway's layer at 12 a second, 240 in all, for 60 s.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use mtos_client::mixnet::Session;
use mtos_mixnode::admission::Position;
use mtos_tests::flood::{Attackers, KEY_RATE, delivery_ratio, scaled_gateway_testnet};
use mtos_tests::{Testnet, rss_bytes};

const ATTACKERS: usize = 20;
/// Five times the key's rate, shared by the attackers.
const FLOOD_PER_SECOND: usize = 5 * KEY_RATE as usize / ATTACKERS;
const FLOOD_SECS: usize = 60;
/// What the gateway may grow by under the flood: its queues are bounded
/// (4,096 inbound frames of 4 KiB, per-client buckets) and a refused
/// session holds nothing.
const RSS_GROWTH: u64 = 64 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_fresh_identities_at_five_times_capacity_leaves_clients_their_delivery() {
    let net = tokio::task::block_in_place(scaled_gateway_testnet);
    let gateway_metric = |net: &Testnet, name: &str, labels: &str| {
        net.node(Position::Gateway)
            .metric(name, labels)
            .unwrap_or(0.0)
    };
    let alice = Session::connect(&net.network_config()).await.unwrap();
    let mut bob = Session::connect(&net.network_config()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Unloaded: 30 messages, one every half second.
    let gap = Duration::from_millis(500);
    let settle = Duration::from_secs(30);
    let unloaded = delivery_ratio(&alice, &mut bob, 30, gap, settle, "calm ").await;
    assert!(unloaded > 0.9, "unloaded: {unloaded}\n{}", net.report());
    let gateway_pid = net.node(Position::Gateway).proc.pid().unwrap();
    let rss_before = rss_bytes(gateway_pid).unwrap();

    // The attackers: fresh identities, each with its session's work; the
    // gateway serves four clients, so two of them get a session.
    let mut attackers = Attackers::connect(&net, ATTACKERS).await;
    let admitted = attackers.admitted;
    let refused = gateway_metric(
        &net,
        "mtos_client_sessions_refused_total",
        "reason=\"capacity\"",
    );
    println!("attackers: {admitted} of {ATTACKERS} sessions served, {refused} refused");
    assert!(admitted <= 2, "{admitted} attacker sessions served");
    assert!(refused >= (ATTACKERS - 2) as f64, "{refused} refused");

    // Their packets, built before the flood: valid for the gateway's
    // layer, through the mix layers to the service node.
    let packets = tokio::task::block_in_place(|| attackers.build(FLOOD_PER_SECOND, FLOOD_SECS));
    let no_session_before =
        gateway_metric(&net, "mtos_frames_dropped_total", "reason=\"no_session\"");
    // Meanwhile alice sends 100 messages to bob over the flood's minute.
    // The gateway's resident memory, sampled every second meanwhile.
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(rss_before));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                let now = rss_bytes(gateway_pid).unwrap_or(0);
                peak.fetch_max(now, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    let (loaded, ()) = tokio::join!(
        delivery_ratio(
            &alice,
            &mut bob,
            100,
            Duration::from_millis(600),
            settle,
            "flood ",
        ),
        attackers.flood(packets)
    );
    sampler.abort();
    let rss_peak = peak
        .load(std::sync::atomic::Ordering::Relaxed)
        .max(rss_bytes(gateway_pid).unwrap_or(0));
    let drops = |reason: &str| {
        gateway_metric(
            &net,
            "mtos_frames_dropped_total",
            &format!("reason=\"{reason}\""),
        )
    };
    let no_session = drops("no_session") - no_session_before;
    println!(
        "delivery: unloaded {unloaded:.3}, under the flood {loaded:.3}; gateway drops: no_session {no_session}, client_throttled {}, key_cap {}, overloaded {}; RSS {} MiB before, {} MiB at most",
        drops("client_throttled"),
        drops("key_cap"),
        drops("overloaded"),
        rss_before >> 20,
        rss_peak >> 20
    );
    assert!(
        loaded >= 0.99 * unloaded,
        "delivery {loaded} under the flood, {unloaded} without\n{}",
        net.report()
    );
    // The refused attackers' packets were dropped before any crypto, and
    // counted.
    let refused_packets = ((ATTACKERS - admitted) * FLOOD_PER_SECOND * FLOOD_SECS) as f64;
    assert!(
        no_session >= 0.9 * refused_packets,
        "{no_session} of {refused_packets}"
    );
    // No packet was refused for the key's rate: what the served clients
    // may send fits it.
    assert_eq!(drops("key_cap"), 0.0);
    assert!(
        rss_peak <= rss_before + RSS_GROWTH,
        "{} MiB before, {} MiB under the flood",
        rss_before >> 20,
        rss_peak >> 20
    );
}
