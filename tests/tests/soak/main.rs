//! The soak run (`scripts/soak.sh DURATION [RESTART_EVERY]`): a testnet
//! with storage under a steady mixed load (questions answered through
//! reply blocks, plain messages, chunk and feed-slot puts, gets of what
//! was put, slot polls) while one node at a time is `kill -9`ed and
//! restarted. At the end nothing acknowledged is lost: every put the
//! client counted as stored (K signed receipts) is fetched back through
//! the mixnet and matches, and is held by each of its K replicas under
//! the final document (read from every node's RocksDB store once repair
//! is done and the nodes are stopped); every process's memory is flat
//! after warm-up. Ignored by `cargo test`: it runs for minutes.
//!
//! Settings (environment): `SOAK_DURATION` (default 4m) and
//! `SOAK_RESTART_EVERY` (default 5m), durations like `240s` or `30m`;
//! `SOAK_SAMPLE_EVERY` (default 10s) for memory samples.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use mtos_client::mixnet::{PutOutcome, Received, Session};
use mtos_crypto::envelope::ClientAddress;
use mtos_crypto::item::Locator;
use mtos_crypto::slot::{SlotRecord, slot_locator};
use mtos_mixnode::admission::Position::{self, Gateway, Layer, Service};
use mtos_mixnode::placement::{DEFAULT_REPLICAS, StorageNode, replicas, storage_nodes};
use mtos_mixnode::receipts::Held;
use mtos_mixnode::records::{Kind, Retention};
use mtos_mixnode::service::{Op, Status};
use mtos_tests::soak::{FlatRule, Lifetime, mib, parse_duration, percentile};
use mtos_tests::{AuthoritySettings, NodeSettings, Testnet, rss_bytes};

/// Two nodes at every position: a restarted node always has a twin to
/// carry the traffic meanwhile.
const NODES: [Position; 10] = [
    Gateway,
    Gateway,
    Layer(1),
    Layer(1),
    Layer(2),
    Layer(2),
    Layer(3),
    Layer(3),
    Service,
    Service,
];

/// The restart order (indices into [`NODES`]), and whether the node
/// stays down past the authority's liveness window (three heartbeats),
/// so that it leaves the document and comes back (repair both ways)
/// rather than only restarting from its store (persistence). Every
/// position is restarted, gateways too: their clients' sessions reopen
/// (`client.md` §3), which a person's screen relies on.
const ROTATION: [(usize, bool); 10] = [
    (4, true),
    (8, false),
    (0, false),
    (2, false),
    (6, true),
    (9, false),
    (3, true),
    (1, false),
    (5, false),
    (7, false),
];

/// Heartbeats of 3 s: a node silent for 9 s leaves the document.
const HEARTBEAT_SECS: u64 = 3;
const SHORT_DOWN: Duration = Duration::from_secs(2);
const LONG_DOWN: Duration = Duration::from_secs(15);
/// Key epochs short enough that a run crosses several key rotations.
const EPOCH_SECS: u64 = 120;
const MEAN_DELAY_MS: u64 = 20;
/// Clients' payload rate (each request and message waits for a slot).
const PAYLOAD: f64 = 10.0;

const CHUNK_PUT_EVERY: Duration = Duration::from_secs(1);
const SLOT_PUT_EVERY: Duration = Duration::from_secs(4);
const GET_EVERY: Duration = Duration::from_secs(1);
const POLL_EVERY: Duration = Duration::from_secs(3);
/// Slots probed per poll.
const POLL_WINDOW: u64 = 4;
const MESSAGE_EVERY: Duration = Duration::from_secs(1);
/// How long the last messages sent have to arrive.
const DRAIN: Duration = Duration::from_secs(20);
/// One request's wait for its answer (a service node gives its replicas
/// 10 s).
const REQUEST_WAIT: Duration = Duration::from_secs(20);
/// A put is asked again (fresh route, fresh service node) until it has
/// K receipts, as `mtos publish` does, this many times at most.
const PUT_ATTEMPTS: usize = 8;
/// A get is asked again this many times at most.
const GET_ATTEMPTS: usize = 6;
/// The smallest share of questions answered, and of messages delivered,
/// that passes.
const MIN_DELIVERY: f64 = 0.8;

/// Key epochs a node takes to warm up: it holds one replay filter per
/// Sphinx key alive (about 20 MB each at the default capacity,
/// `specs/mixing.md` §2), whose pages become resident as tags are
/// written and as a rotated-out filter's memory is reused; 30-minute
/// runs plateau by the fifth or sixth epoch.
const WARM_UP_EPOCHS: u64 = 6;

/// The memory rule: after a warm-up of [`WARM_UP_EPOCHS`] (or a
/// quarter of the lifetime, when longer), the last quarter's mean within
/// 1.25x the mean of the first quarter after warm-up, plus 16 MiB;
/// lifetimes with under two minutes (and eight samples) after warm-up are
/// not judged.
fn flat_rule(sample_every: Duration) -> FlatRule {
    let every = sample_every.as_secs().max(1);
    FlatRule {
        ratio: 1.25,
        slack_bytes: 16 << 20,
        warm_up_samples: (WARM_UP_EPOCHS * EPOCH_SECS / every) as usize,
        min_samples: (120 / every as usize).max(8),
    }
}

/// No process may ever exceed this (about twice the plateau every node
/// of a 30-minute run reached): what a run too short to judge flatness,
/// such as CI's, still checks.
const RSS_CEILING: u64 = 192 << 20;

/// What the run is told.
#[derive(Debug, Clone, Copy)]
struct Plan {
    duration: Duration,
    restart_every: Duration,
    sample_every: Duration,
}

fn env_duration(name: &str, default: Duration) -> Duration {
    match std::env::var(name) {
        Ok(v) => parse_duration(&v)
            .unwrap_or_else(|| panic!("{name}={v}: not a duration like 240s, 30m or 1h")),
        Err(_) => default,
    }
}

impl Plan {
    fn from_env() -> Self {
        Self {
            duration: env_duration("SOAK_DURATION", Duration::from_secs(240)),
            restart_every: env_duration("SOAK_RESTART_EVERY", Duration::from_secs(300)),
            sample_every: env_duration("SOAK_SAMPLE_EVERY", Duration::from_secs(10)),
        }
    }
}

mod load;
mod nodes;
use load::*;
use nodes::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a soak run of minutes: scripts/soak.sh DURATION [RESTART_EVERY]"]
async fn soak() {
    let plan = Plan::from_env();
    eprintln!("soak: {plan:?}");
    let net = tokio::task::block_in_place(|| {
        Testnet::start_custom(
            &NODES,
            EPOCH_SECS,
            MEAN_DELAY_MS,
            |p| NodeSettings {
                storage: Some(p != Gateway),
                // Every get asks the replicas.
                cache_chunks: Some(0),
                ..NodeSettings::default()
            },
            &AuthoritySettings {
                payload: Some(PAYLOAD),
                loops: Some(1.0),
                drops: Some(1.0),
                heartbeat_secs: Some(HEARTBEAT_SECS),
                ..AuthoritySettings::default()
            },
        )
    });
    let config = net.network_config();
    let mut alice = Session::connect(&config).await.unwrap();
    let mut bob = Session::connect(&config).await.unwrap();
    let writer = Session::connect(&config).await.unwrap();
    let follower = Session::connect(&config).await.unwrap();
    // The load starts once every storage node has its salt in each
    // session's document: a node first listed in an epoch gets one only
    // at the next (up to an epoch away), and the placement change that
    // brings it would land among the restarts. Repair moves records
    // from the placement of the storage set before a change to the one
    // after it, once; a record put under another view of the placement
    // meanwhile (a session or node a document behind) is not moved, as
    // nothing yet compares what a listed replica holds with what it
    // should hold (anti-entropy: the closing note of this change).
    let storing = NODES.iter().filter(|p| **p != Gateway).count();
    let deadline = Instant::now() + Duration::from_secs(EPOCH_SECS + 60);
    while [&alice, &bob, &writer, &follower]
        .iter()
        .any(|s| storage_nodes(&s.document()).len() < storing)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for s in [&alice, &bob, &writer, &follower] {
        assert_eq!(
            storage_nodes(&s.document()).len(),
            storing,
            "storage nodes without salts after an epoch: {}",
            net.report()
        );
    }
    let (alice_at, bob_at) = (alice.address(), bob.address());
    let feed: [u8; 32] = rand::random();
    let harness_rss = rss_bytes(std::process::id()).unwrap_or(0);

    let b = Mutex::new(Books::default());
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let until = t0 + plan.duration;
    let controller = {
        let stop = stop.clone();
        std::thread::spawn(move || control(net, plan, until, stop))
    };
    tokio::join!(
        chunk_writer(&writer, &b, until, &stop),
        slot_writer(&writer, &b, feed, until, &stop),
        reader(&follower, &b, until, &stop),
        poller(&follower, &b, feed, until, &stop),
        asker(&mut alice, bob_at, &b, t0, until, &stop),
        responder(&mut bob, alice_at, &b, t0, until, &stop),
        reporter(&b, t0, until, &stop),
    );
    let load_secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "soak: load over after {load_secs:.0} s; {}",
        books(&b).progress()
    );
    let harness_rss_end = rss_bytes(std::process::id()).unwrap_or(0);
    let session_stats: Vec<(&str, u64)> = [
        ("alice", &alice),
        ("bob", &bob),
        ("writer", &writer),
        ("follower", &follower),
    ]
    .iter()
    .map(|(n, s)| (*n, s.stats().reconnects))
    .collect();
    drop((alice, bob, writer, follower));
    let Controlled {
        mut net,
        lifetimes,
        mut drops,
        restarts,
    } = tokio::task::block_in_place(|| controller.join())
        .unwrap_or_else(|_| panic!("the controller failed (its message is above)"));
    eprintln!("soak: controller done");

    // Every acknowledged record, fetched back through the mixnet by
    // readers that never saw it (fresh sessions).
    tokio::task::block_in_place(|| {
        net.wait_until_listed(NODES.len(), Duration::from_secs(120));
    });
    let acked = std::mem::take(&mut books(&b).acked);
    eprintln!(
        "soak: fetching {} acknowledged records through the mixnet",
        acked.len()
    );
    let readers = [
        Session::connect(&config).await.unwrap(),
        Session::connect(&config).await.unwrap(),
    ];
    let fetch_started = Instant::now();
    // Bounded: a second per record, and five minutes at least.
    let budget = Duration::from_secs(300).max(Duration::from_secs(acked.len() as u64));
    let fetched: Vec<_> = futures::stream::iter(acked.iter().enumerate())
        .map(|(i, r)| {
            let s = &readers[i % readers.len()];
            async move { (i, fetch(s, r).await) }
        })
        .buffer_unordered(16)
        .take_until(tokio::time::sleep(budget))
        .collect()
        .await;
    let fetch_secs = fetch_started.elapsed().as_secs_f64();
    let final_gets_ok_before = books(&b).f.gets_ok;
    let mut unfetched: HashSet<usize> = (0..acked.len()).collect();
    for (i, got) in fetched {
        unfetched.remove(&i);
        count_get(&b, &acked[i], got, "final fetch");
    }
    for i in unfetched {
        books(&b).violations.push(format!(
            "final fetch: acknowledged {:?} {:?} not fetched within {} s",
            acked[i].kind,
            acked[i].locator,
            budget.as_secs()
        ));
    }
    let final_gets_ok = books(&b).f.gets_ok - final_gets_ok_before;
    let doc = readers[0].document();
    drop(readers);

    // K copies under the final document: once repair looks done, every
    // node is stopped and each store read. A copy still missing may be
    // repair not finished yet (a failed copy is tried again 3, 9, 27
    // heartbeats later): then the nodes are started again and the check
    // repeats, three rounds at most; a record no replica has any more
    // never comes back.
    let storage = storage_nodes(&doc);
    let keys = node_keys(&net);
    for n in &net.nodes {
        add_drops(n, &mut drops);
    }
    let mut rounds = Vec::new();
    let (mut missing, mut stored) = (Vec::new(), Vec::new());
    for round in 1..=3 {
        eprintln!("soak: K copies, round {round}: waiting for repair");
        let settled = settle(&net, &acked, &storage, &keys, Duration::from_secs(180)).await;
        (missing, stored) =
            tokio::task::block_in_place(|| check_stores(&mut net, &acked, &storage, &keys));
        rounds.push(format!(
            "round {round}: settled {}, {} copies missing",
            settled.map_or("no (180 s)".into(), |s| format!("after {s:.0} s")),
            missing.len()
        ));
        eprintln!("soak: {}", rounds.last().unwrap());
        if missing.is_empty() || round == 3 {
            break;
        }
        tokio::task::block_in_place(|| {
            for node in &mut net.nodes {
                node.kill_and_restart();
            }
            net.wait_until_listed(NODES.len(), Duration::from_secs(120));
        });
    }
    let mut v = std::mem::take(&mut books(&b).violations);
    v.extend(missing.iter().cloned());

    // Memory, per process lifetime.
    let rule = flat_rule(plan.sample_every);
    let mut memory = Vec::new();
    for l in &lifetimes {
        let Some(f) = rule.judge(&l.samples) else {
            continue;
        };
        let peak = l.samples.iter().copied().max().unwrap_or(0);
        if peak > RSS_CEILING {
            v.push(format!(
                "{} (pid {}): {} MiB resident, above the ceiling of {} MiB",
                l.name,
                l.pid,
                mib(peak as f64),
                RSS_CEILING >> 20
            ));
        }
        if !f.flat {
            v.push(format!(
                "{} (pid {}): memory grew from {} MiB after warm-up to {} MiB at the end of its life",
                l.name,
                l.pid,
                mib(f.after_warm_up),
                mib(f.end)
            ));
        }
        memory.push((l, f));
    }

    // The figures.
    let mut f = std::mem::take(&mut books(&b).f);
    let p = |v: &mut Vec<f64>, q: f64| percentile(v, q).map_or("-".into(), |x| format!("{x:.0}"));
    let ratio = |a: u64, b: u64| {
        if b == 0 {
            "-".into()
        } else {
            format!("{:.1}%", 100.0 * a as f64 / b as f64)
        }
    };
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(format!(
        "soak figures: {:.0} s of load, a restart every {} s, memory sampled every {} s",
        load_secs,
        plan.restart_every.as_secs(),
        plan.sample_every.as_secs()
    ));
    line(format!(
        "  puts acknowledged (K = {DEFAULT_REPLICAS} receipts) {} ({} chunks + {} slots); attempts {}, short of K {}, errors {}, given up {}",
        f.puts_acked,
        acked.iter().filter(|r| r.kind == Kind::Chunk).count(),
        acked.iter().filter(|r| r.kind == Kind::Slot).count(),
        f.put_attempts,
        f.puts_short,
        f.put_errors,
        f.puts_given_up
    ));
    line(format!(
        "  gets ok {} (after a not-found {}), unanswered after {GET_ATTEMPTS} tries {} (last: {:?}); slot polls {} (errors {}, slots unknown {}), slots seen {}, slot reads {}",
        f.gets_ok - final_gets_ok,
        f.gets_not_found_then_ok,
        f.gets_unanswered,
        f.last_unanswered,
        f.polls,
        f.poll_errors,
        f.probed_unknown,
        f.slots_seen,
        f.slot_reads
    ));
    line(format!(
        "  final fetch through the mixnet: {final_gets_ok} of {} in {fetch_secs:.0} s; K copies in the stores: {}",
        acked.len(),
        rounds.join("; ")
    ));
    line(format!(
        "  questions {} answered {} ({}), round trip ms p50 {} p95 {} p99 {}",
        f.questions,
        f.answers,
        ratio(f.answers, f.questions),
        p(&mut f.rtt_ms, 50.0),
        p(&mut f.rtt_ms, 95.0),
        p(&mut f.rtt_ms, 99.0)
    ));
    line(format!(
        "  messages sent {} delivered {} ({}), one way ms p50 {} p95 {} p99 {}; sends refused {}, replies failed {}",
        f.messages_sent,
        f.messages_delivered,
        ratio(f.messages_delivered, f.messages_sent),
        p(&mut f.one_way_ms, 50.0),
        p(&mut f.one_way_ms, 95.0),
        p(&mut f.one_way_ms, 99.0),
        f.sends_refused,
        f.replies_failed
    ));
    line(format!(
        "  session reopens after a gateway restart: {session_stats:?}"
    ));
    line(format!("  restarts {}:", restarts.len()));
    for r in &restarts {
        line(format!("    {r}"));
    }
    let dropped: Vec<String> = drops
        .iter()
        .filter(|(_, n)| **n > 0.0)
        .map(|(r, n)| format!("{r}={n}"))
        .collect();
    line(format!(
        "  frames dropped by reason (all nodes, all lifetimes): {}",
        dropped.join(" ")
    ));
    line("  records: node, acknowledged records it is a replica of, records in its store".into());
    for (name, of, held) in &stored {
        line(format!("    {name}: {of} {held}"));
    }
    line(format!(
        "  memory (MiB), per process lifetime (rule: warm-up {} samples or a quarter, then end <= {}x + {} MiB, >= {} samples after warm-up)",
        rule.warm_up_samples,
        rule.ratio,
        rule.slack_bytes >> 20,
        rule.min_samples
    ));
    for (l, m) in &memory {
        line(format!(
            "    {} pid {}: {} samples, first {} peak {} last {}; {}",
            l.name,
            l.pid,
            l.samples.len(),
            mib(l.samples.first().copied().unwrap_or(0) as f64),
            mib(l.samples.iter().copied().max().unwrap_or(0) as f64),
            mib(l.samples.last().copied().unwrap_or(0) as f64),
            if !m.judged {
                "too short to judge flatness".to_owned()
            } else {
                format!(
                    "after warm-up {} end {}: {}",
                    mib(m.after_warm_up),
                    mib(m.end),
                    if m.flat { "flat" } else { "GREW" }
                )
            }
        ));
    }
    line(format!(
        "  harness (clients) RSS {} -> {} MiB",
        mib(harness_rss as f64),
        mib(harness_rss_end as f64)
    ));
    eprint!("{out}");
    if let Ok(path) = std::env::var("SOAK_REPORT") {
        // The samples too, so that a memory rule can be judged again.
        let mut file = out.clone();
        file.push_str("  memory samples (MiB), per process lifetime:\n");
        for l in &lifetimes {
            let mibs: Vec<String> = l
                .samples
                .iter()
                .map(|&b| format!("{:.0}", b as f64 / f64::from(1 << 20)))
                .collect();
            file.push_str(&format!(
                "    {} pid {}: {}\n",
                l.name,
                l.pid,
                mibs.join(" ")
            ));
        }
        std::fs::write(&path, file).unwrap();
    }

    assert!(
        f.puts_acked > 0 && f.answers > 0 && f.messages_delivered > 0 && f.polls > 0,
        "the load did not run: {out}"
    );
    // Messages carry no promise of delivery (a mix killed loses what it
    // held), but a mixnet that loses a fifth of them is broken.
    for (what, got, sent) in [
        ("answers", f.answers, f.questions),
        ("messages", f.messages_delivered, f.messages_sent),
    ] {
        assert!(
            got as f64 >= MIN_DELIVERY * sent as f64,
            "{what}: {got} of {sent} arrived, below {MIN_DELIVERY}"
        );
    }
    assert!(v.is_empty(), "{} violations:\n{}", v.len(), v.join("\n"));
}
