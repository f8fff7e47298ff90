//! Two clients on a loopback mixnet (authority, gateway, three layers,
//! service): messages and answers cross it end to end, a client's sends
//! are one Poisson process whether it is idle or busy, and the gateway's
//! deliveries look the same with and without real traffic.

use std::time::Duration;

use mtos_client::mixnet::{NetworkConfig, SentKind, Session};
use mtos_mixnode::admission::Position;
use mtos_tests::{Testnet, ks_critical, ks_statistic, ks_two_sample, ks_two_sample_critical};

const CHAIN: [Position; 5] = [
    Position::Gateway,
    Position::Layer(1),
    Position::Layer(2),
    Position::Layer(3),
    Position::Service,
];
const PAYLOAD: f64 = 20.0;
const LOOPS: f64 = 5.0;
const DROPS: f64 = 5.0;
/// The KS tests' level. 0.1% rather than 1%: these run on a live network
/// on a shared machine, and a test that fails one run in thirty by chance
/// would be ignored; a client that built packets in its send slots (a
/// 4.5 ms floor on every gap) was still caught at this level.
const ALPHA: f64 = 0.001;

fn config(net: &Testnet) -> NetworkConfig {
    NetworkConfig {
        network: net.network.clone(),
        authority_key: net.authority_key,
        authority_addr: net.authority_addr.clone(),
    }
}

/// Gaps between consecutive times within `[from, to)`, in seconds.
fn gaps(times: &[Duration], from: Duration, to: Duration) -> Vec<f64> {
    let inside: Vec<f64> = times
        .iter()
        .filter(|t| **t >= from && **t < to)
        .map(Duration::as_secs_f64)
        .collect();
    inside.windows(2).map(|w| w[1] - w[0]).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_exchange_messages_and_their_traffic_does_not_show_it() {
    let net = tokio::task::block_in_place(|| {
        Testnet::start_custom(
            &CHAIN,
            600,
            5,
            |c| c,
            |a| {
                a.replace("payload = 2.0", &format!("payload = {PAYLOAD}"))
                    .replace("loops = 1.0", &format!("loops = {LOOPS}"))
                    .replace("drops = 1.0", &format!("drops = {DROPS}"))
            },
        )
    });
    let mut alice = Session::connect(&config(&net)).await.unwrap();
    let mut bob = Session::connect(&config(&net)).await.unwrap();
    assert_ne!(alice.address().mailbox, bob.address().mailbox);

    // Idle: cover only.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let idle_end = alice.stats().sent.last().unwrap().0;

    // A burst of 100 messages, each answered.
    for i in 0..100u32 {
        alice
            .send(&bob.address(), format!("question {i}").as_bytes())
            .unwrap();
    }
    let alice_address = alice.address();
    let answering = tokio::spawn(async move {
        let mut got = Vec::new();
        while got.len() < 100 {
            let m = bob.recv().await.unwrap();
            let text = String::from_utf8(m).unwrap();
            bob.send(
                &alice_address,
                text.replace("question", "answer").as_bytes(),
            )
            .unwrap();
            got.push(text);
        }
        (bob, got)
    });
    let mut answers = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while answers.len() < 100 {
        let m = tokio::time::timeout_at(deadline, alice.recv())
            .await
            .unwrap_or_else(|_| panic!("{} answers of 100\n{}", answers.len(), net.report()))
            .unwrap();
        answers.push(String::from_utf8(m).unwrap());
    }
    let (bob, questions) = answering.await.unwrap();
    let mut expected: Vec<String> = (0..100).map(|i| format!("question {i}")).collect();
    let mut q = questions.clone();
    q.sort();
    expected.sort();
    assert_eq!(q, expected, "bob got every question once");
    let mut a = answers.clone();
    a.sort();
    let mut e: Vec<String> = expected
        .iter()
        .map(|s| s.replace("question", "answer"))
        .collect();
    e.sort();
    assert_eq!(a, e, "alice got every answer once");

    let stats = alice.stats();
    let busy_end = stats.sent.last().unwrap().0;
    let real = stats
        .sent
        .iter()
        .filter(|(_, k)| *k == SentKind::Real)
        .count();
    assert_eq!(real, 100);
    assert!(stats.loops_returned > 0, "no loop came back");

    // All of alice's sends, idle and busy, are one Poisson process of
    // rate λP + λL + λD: real messages took payload slots, nothing more.
    let times: Vec<Duration> = stats.sent.iter().map(|(t, _)| *t).collect();
    let rate = PAYLOAD + LOOPS + DROPS;
    let exp = |x: f64| 1.0 - (-rate * x).exp();
    for (name, mut g) in [
        ("idle", gaps(&times, Duration::ZERO, idle_end)),
        ("burst", gaps(&times, idle_end, busy_end)),
    ] {
        let d = ks_statistic(&mut g, exp);
        let crit = ks_critical(g.len(), ALPHA);
        assert!(g.len() > 100, "{name}: only {} gaps", g.len());
        assert!(
            d < crit,
            "{name}: KS {d:.3} >= {crit:.3} over {} gaps",
            g.len()
        );
    }

    // Bob's gateway delivered at λP, dummies and real alike: the gaps
    // while idle and while 100 questions arrived are one distribution.
    let bob_stats = bob.stats();
    let deliveries: Vec<Duration> = bob_stats.deliveries.iter().map(|(t, _)| *t).collect();
    let real_at: Vec<Duration> = bob_stats
        .deliveries
        .iter()
        .filter(|(_, real)| *real)
        .map(|(t, _)| *t)
        .collect();
    let (first_real, last_real) = (real_at[0], *real_at.last().unwrap());
    let mut quiet = gaps(&deliveries, Duration::ZERO, first_real);
    let mut busy = gaps(&deliveries, first_real, last_real);
    let d = ks_two_sample(&mut quiet, &mut busy);
    let crit = ks_two_sample_critical(quiet.len(), busy.len(), ALPHA);
    assert!(
        d < crit,
        "delivery gaps differ: KS {d:.3} >= {crit:.3} ({} vs {})",
        quiet.len(),
        busy.len()
    );
    let mut all = gaps(&deliveries, Duration::ZERO, last_real);
    let d = ks_statistic(&mut all, |x| 1.0 - (-PAYLOAD * x).exp());
    assert!(
        d < ks_critical(all.len(), ALPHA),
        "deliveries not Exp(λP): {d:.3}"
    );
    drop(alice);
    drop(bob);
}
