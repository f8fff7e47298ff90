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
use mtos_mixnode::placement::{DEFAULT_REPLICAS, replicas, storage_nodes};
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

/// The memory rule: a lifetime's last quarter within 1.25x its second
/// quarter plus 16 MiB; lifetimes shorter than two minutes (or eight
/// samples) are not judged.
fn flat_rule(sample_every: Duration) -> FlatRule {
    FlatRule {
        ratio: 1.25,
        slack_bytes: 16 << 20,
        min_samples: (120 / sample_every.as_secs().max(1) as usize).max(8),
    }
}

const DROP_REASONS: [&str; 14] = [
    "wrong_size",
    "unknown_key",
    "header_mac",
    "malformed",
    "replay",
    "delay_too_long",
    "queue_full",
    "output_full",
    "wrong_layer",
    "rate_limited",
    "overloaded",
    "send_queue_full",
    "unknown_next_hop",
    "link_failed",
];

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

/// A record whose put was acknowledged with K receipts.
#[derive(Debug, Clone)]
struct Record {
    kind: Kind,
    locator: Locator,
    bytes: Vec<u8>,
}

/// The load's counters.
#[derive(Debug, Default)]
struct Figures {
    put_attempts: u64,
    puts_acked: u64,
    puts_given_up: u64,
    puts_short: u64,
    put_errors: u64,
    gets_ok: u64,
    gets_unanswered: u64,
    last_unanswered: Option<String>,
    gets_not_found_then_ok: u64,
    polls: u64,
    poll_errors: u64,
    probed_unknown: u64,
    slots_seen: u64,
    slot_reads: u64,
    questions: u64,
    answers: u64,
    messages_sent: u64,
    messages_delivered: u64,
    sends_refused: u64,
    replies_failed: u64,
    rtt_ms: Vec<f64>,
    one_way_ms: Vec<f64>,
}

/// What the load loops share.
#[derive(Debug, Default)]
struct Books {
    acked: Vec<Record>,
    /// Acknowledged feed slots: number, when acknowledged, index in
    /// `acked`.
    slots: BTreeMap<u64, (Instant, usize)>,
    f: Figures,
    /// Broken promises: each fails the run.
    violations: Vec<String>,
}

impl Books {
    /// A line of progress.
    fn progress(&self) -> String {
        let f = &self.f;
        format!(
            "puts acknowledged {} (given up {}), gets ok {} (unanswered {}), polls {}, questions {} answered {}, messages {} delivered {}, violations {}",
            f.puts_acked,
            f.puts_given_up,
            f.gets_ok,
            f.gets_unanswered,
            f.polls,
            f.questions,
            f.answers,
            f.messages_sent,
            f.messages_delivered,
            self.violations.len()
        )
    }
}

/// Prints progress every 30 s while the load runs.
async fn reporter(b: &Shared, t0: Instant, until: Instant, stop: &AtomicBool) {
    while running(until, stop) {
        tokio::time::sleep(
            Duration::from_secs(30).min(until.saturating_duration_since(Instant::now())),
        )
        .await;
        eprintln!(
            "soak: {:.0} s: {}",
            t0.elapsed().as_secs_f64(),
            books(b).progress()
        );
    }
}

type Shared = Mutex<Books>;

fn books(b: &Shared) -> std::sync::MutexGuard<'_, Books> {
    b.lock().unwrap()
}

/// Ends the load early when the controller fails (it sets this as it
/// unwinds).
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn running(until: Instant, stop: &AtomicBool) -> bool {
    Instant::now() < until && !stop.load(Ordering::SeqCst)
}

fn random_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|_| rand::random::<u8>()).collect()
}

/// Puts `record` until K replicas signed receipts for it; returns the
/// index of the acknowledged record.
async fn put_acknowledged(
    s: &Session,
    b: &Shared,
    kind: Kind,
    locator: Locator,
    record: Vec<u8>,
) -> Option<usize> {
    for _ in 0..PUT_ATTEMPTS {
        books(b).f.put_attempts += 1;
        match s.put(kind, locator, record.clone(), REQUEST_WAIT).await {
            Ok(PutOutcome::Stored { receipts, .. }) if receipts >= DEFAULT_REPLICAS => {
                let mut bk = books(b);
                bk.f.puts_acked += 1;
                bk.acked.push(Record {
                    kind,
                    locator,
                    bytes: record,
                });
                return Some(bk.acked.len() - 1);
            }
            Ok(PutOutcome::Stored { .. }) | Ok(PutOutcome::Unproven(_)) => {
                books(b).f.puts_short += 1;
            }
            Ok(PutOutcome::Refused(r)) if r == "quota" || r == "full" => {
                books(b).f.puts_short += 1;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Ok(PutOutcome::Refused(r)) => {
                books(b)
                    .violations
                    .push(format!("a valid {kind:?} put refused: {r}"));
                return None;
            }
            Ok(PutOutcome::Lied(lie)) => {
                books(b)
                    .violations
                    .push(format!("a service node lied about a put: {lie:?}"));
            }
            Err(_) => {
                books(b).f.put_errors += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    books(b).f.puts_given_up += 1;
    None
}

/// Why a get of an acknowledged record failed.
#[derive(Debug)]
enum Miss {
    /// Answered with other bytes.
    Mismatch,
    /// Every attempt answered that no replica holds it.
    NotFound,
    /// No usable answer (timeouts, unavailable), maybe some not-founds.
    Unanswered(String),
}

/// Gets `r` through the mixnet, asking again on no answer or a
/// not-found (a replica set in flux); `Ok(true)` when it took a
/// not-found before the record came.
async fn fetch(s: &Session, r: &Record) -> Result<bool, Miss> {
    let (mut not_found, mut last) = (0, String::new());
    for _ in 0..GET_ATTEMPTS {
        match s.request(Op::Get(r.kind), r.locator, REQUEST_WAIT).await {
            Ok(a) if a.status == Status::Ok => {
                return if a.body == r.bytes {
                    Ok(not_found > 0)
                } else {
                    Err(Miss::Mismatch)
                };
            }
            Ok(a) if a.status == Status::NotFound => not_found += 1,
            Ok(a) => last = format!("{:?}", a.status),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    if not_found == GET_ATTEMPTS {
        Err(Miss::NotFound)
    } else {
        Err(Miss::Unanswered(format!(
            "{not_found} not found, last {last}"
        )))
    }
}

/// Counts a get's outcome; a mismatch or a record no replica holds is a
/// violation.
fn count_get(b: &Shared, r: &Record, got: Result<bool, Miss>, when: &str) {
    let mut bk = books(b);
    match got {
        Ok(retried) => {
            bk.f.gets_ok += 1;
            bk.f.gets_not_found_then_ok += u64::from(retried);
        }
        Err(Miss::Unanswered(why)) if when == "mid-run" => {
            bk.f.gets_unanswered += 1;
            bk.f.last_unanswered = Some(why);
        }
        Err(m) => {
            let at = r.locator;
            bk.violations
                .push(format!("{when}: acknowledged {:?} {at:?}: {m:?}", r.kind));
        }
    }
}

async fn chunk_writer(s: &Session, b: &Shared, until: Instant, stop: &AtomicBool) {
    let mut tick = tokio::time::interval(CHUNK_PUT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while running(until, stop) {
        tick.tick().await;
        let chunk = random_bytes(200 + rand::random::<u64>() as usize % 3400);
        put_acknowledged(s, b, Kind::Chunk, Locator::of(&chunk), chunk).await;
    }
}

async fn slot_writer(s: &Session, b: &Shared, feed: [u8; 32], until: Instant, stop: &AtomicBool) {
    let mut tick = tokio::time::interval(SLOT_PUT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u64;
    while running(until, stop) {
        tick.tick().await;
        let body = random_bytes(100 + rand::random::<u64>() as usize % 1000);
        let slot = SlotRecord::sign(&feed, n, &body).unwrap();
        let at = slot_locator(&slot.key);
        if let Some(i) = put_acknowledged(s, b, Kind::Slot, at, slot.encode()).await {
            books(b).slots.insert(n, (Instant::now(), i));
        }
        n += 1;
    }
}

/// Gets a random acknowledged record every second.
async fn reader(s: &Session, b: &Shared, until: Instant, stop: &AtomicBool) {
    let mut tick = tokio::time::interval(GET_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while running(until, stop) {
        tick.tick().await;
        let pick = {
            let bk = books(b);
            (!bk.acked.is_empty())
                .then(|| bk.acked[rand::random::<u64>() as usize % bk.acked.len()].clone())
        };
        if let Some(r) = pick {
            let got = fetch(s, &r).await;
            count_get(b, &r, got, "mid-run");
        }
    }
}

/// Follows the feed as a reader does: probes a window of slots from the
/// first not seen yet, and reads each slot newly seen. An acknowledged
/// slot that every replica signs empty is lost.
async fn poller(s: &Session, b: &Shared, feed: [u8; 32], until: Instant, stop: &AtomicBool) {
    let mut tick = tokio::time::interval(POLL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next = 0u64;
    while running(until, stop) {
        tick.tick().await;
        let window: Vec<u64> = (next..next + POLL_WINDOW).collect();
        let locators: Vec<Locator> = window
            .iter()
            .map(|&n| slot_locator(&SlotRecord::sign(&feed, n, b"").unwrap().key))
            .collect();
        let asked = Instant::now();
        let held = match s.probe(&locators, REQUEST_WAIT, &mut Vec::new()).await {
            Ok(h) => h,
            Err(_) => {
                books(b).f.poll_errors += 1;
                continue;
            }
        };
        let mut seen = Vec::new();
        {
            let mut bk = books(b);
            bk.f.polls += 1;
            for (&n, h) in window.iter().zip(&held) {
                match h {
                    Held::Held => seen.push(n),
                    Held::Unknown => bk.f.probed_unknown += 1,
                    Held::Empty => {
                        if bk.slots.get(&n).is_some_and(|(at, _)| *at < asked) {
                            bk.violations
                                .push(format!("acknowledged slot {n} probed empty"));
                        }
                    }
                }
            }
            bk.f.slots_seen += seen.len() as u64;
        }
        for &n in &seen {
            let acked = {
                let bk = books(b);
                bk.slots.get(&n).map(|(_, i)| bk.acked[*i].clone())
            };
            // A slot whose put was not acknowledged may be held too;
            // only acknowledged ones are checked.
            if let Some(r) = acked {
                let got = fetch(s, &r).await;
                books(b).f.slot_reads += 1;
                count_get(b, &r, got, "mid-run");
            }
        }
        if let Some(&last) = seen.last() {
            next = last + 1;
        }
    }
}

/// "kind seq micros" as a message body.
fn stamp(kind: &str, seq: u64, t0: Instant) -> Vec<u8> {
    format!("{kind} {seq} {}", t0.elapsed().as_micros()).into_bytes()
}

/// The kind, sequence number and age in ms of a stamped body.
fn read_stamp(body: &[u8], t0: Instant) -> Option<(String, u64, f64)> {
    let text = std::str::from_utf8(body).ok()?;
    let mut parts = text.split(' ');
    let kind = parts.next()?.to_owned();
    let seq = parts.next()?.parse().ok()?;
    let micros: u128 = parts.next()?.parse().ok()?;
    let age = t0.elapsed().as_micros().checked_sub(micros)? as f64 / 1000.0;
    Some((kind, seq, age))
}

/// Asks `bob` a question every second, each carrying a reply block, and
/// times the answers; counts `bob`'s plain messages.
async fn asker(
    me: &mut Session,
    bob: ClientAddress,
    b: &Shared,
    t0: Instant,
    until: Instant,
    stop: &AtomicBool,
) {
    let mut tick = tokio::time::interval(MESSAGE_EVERY);
    let drained = tokio::time::sleep_until((until + DRAIN).into());
    tokio::pin!(drained);
    let (mut seq, mut answered, mut delivered) = (0u64, HashSet::new(), HashSet::new());
    loop {
        tokio::select! {
            _ = tick.tick(), if running(until, stop) => {
                let sent = me.send_answerable(&bob, &stamp("q", seq, t0), 1);
                let mut bk = books(b);
                match sent {
                    Ok(_) => bk.f.questions += 1,
                    Err(_) => bk.f.sends_refused += 1,
                }
                seq += 1;
            }
            m = me.recv() => {
                let Some(m) = m else { break };
                let mut bk = books(b);
                match (&m, read_stamp(m.body(), t0)) {
                    (Received::Reply { .. }, Some((k, seq, age))) if k == "a" => {
                        if answered.insert(seq) {
                            bk.f.answers += 1;
                            bk.f.rtt_ms.push(age);
                        }
                    }
                    (Received::Message(_), Some((k, seq, age))) if k == "m" => {
                        if delivered.insert(seq) {
                            bk.f.messages_delivered += 1;
                            bk.f.one_way_ms.push(age);
                        }
                    }
                    _ => bk.violations.push(format!("an unexpected message: {m:?}")),
                }
            }
            _ = &mut drained => break,
        }
    }
}

/// Sends `alice` a plain message every second and answers her questions
/// through their reply blocks, carrying the question's time back.
async fn responder(
    me: &mut Session,
    alice: ClientAddress,
    b: &Shared,
    t0: Instant,
    until: Instant,
    stop: &AtomicBool,
) {
    let mut tick = tokio::time::interval(MESSAGE_EVERY);
    let drained = tokio::time::sleep_until((until + DRAIN).into());
    tokio::pin!(drained);
    let mut seq = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick(), if running(until, stop) => {
                let sent = me.send(&alice, &stamp("m", seq, t0));
                let mut bk = books(b);
                match sent {
                    Ok(()) => bk.f.messages_sent += 1,
                    Err(_) => bk.f.sends_refused += 1,
                }
                seq += 1;
            }
            m = me.recv() => {
                let Some(m) = m else { break };
                if let Received::Answerable { from, body } = m {
                    let answer = [b"a", &body[1..]].concat();
                    if me.reply(&from, &answer).is_err() {
                        books(b).f.replies_failed += 1;
                    }
                } else {
                    books(b).violations.push(format!("an unexpected message: {m:?}"));
                }
            }
            _ = &mut drained => break,
        }
    }
}

/// What the controller hands back: the network, every process lifetime's
/// memory samples, drops counted by nodes before they were killed, and
/// what it restarted.
struct Controlled {
    net: Testnet,
    lifetimes: Vec<Lifetime>,
    drops: BTreeMap<String, f64>,
    restarts: Vec<String>,
}

fn add_drops(node: &mtos_tests::TestNode, drops: &mut BTreeMap<String, f64>) {
    for reason in DROP_REASONS {
        let v = node
            .metric("mtos_frames_dropped_total", &format!("reason=\"{reason}\""))
            .unwrap_or(0.0);
        *drops.entry(reason.to_owned()).or_default() += v;
    }
}

/// Memory samples: the lifetime of each process now running.
#[derive(Default)]
struct Sampler {
    current: BTreeMap<String, Lifetime>,
    done: Vec<Lifetime>,
}

impl Sampler {
    fn sample(&mut self, net: &Testnet) {
        let procs = net.nodes.iter().map(|n| &n.proc).chain([&net.authority]);
        for p in procs {
            let (Some(pid), name) = (p.pid(), &p.name) else {
                continue;
            };
            let Some(rss) = rss_bytes(pid) else { continue };
            if self.current.get(name).is_some_and(|l| l.pid != pid) {
                self.done.extend(self.current.remove(name));
            }
            self.current
                .entry(name.clone())
                .or_insert_with(|| Lifetime {
                    name: name.clone(),
                    pid,
                    samples: Vec::new(),
                })
                .samples
                .push(rss);
        }
    }

    fn finish(mut self) -> Vec<Lifetime> {
        self.done.extend(self.current.into_values());
        self.done
    }
}

/// Restarts one node every `restart_every` (while one more fits before
/// `until`) and samples memory, until `until`.
fn control(mut net: Testnet, plan: Plan, until: Instant, stop: Arc<AtomicBool>) -> Controlled {
    let _stop = StopOnDrop(stop);
    let mut sampler = Sampler::default();
    let (mut drops, mut restarts) = (BTreeMap::new(), Vec::new());
    let started = Instant::now();
    let mut next_sample = started;
    let mut next_restart = started + plan.restart_every;
    let mut turn = 0;
    let mut pause = |net: &Testnet, sampler: &mut Sampler, d: Duration| {
        let end = Instant::now() + d;
        while Instant::now() < end {
            if Instant::now() >= next_sample {
                sampler.sample(net);
                next_sample += plan.sample_every;
            }
            std::thread::sleep(Duration::from_millis(200).min(end - Instant::now()));
        }
    };
    while Instant::now() < until {
        let now = Instant::now();
        if now >= next_restart {
            next_restart += plan.restart_every;
            let (i, long) = ROTATION[turn % ROTATION.len()];
            let down = if long { LONG_DOWN } else { SHORT_DOWN };
            // Only when it has time to come back before the load ends.
            if now + down + Duration::from_secs(20) < until {
                turn += 1;
                add_drops(&net.nodes[i], &mut drops);
                net.nodes[i].proc.kill();
                let at = started.elapsed();
                pause(&net, &mut sampler, down);
                net.nodes[i].kill_and_restart();
                let back = Instant::now();
                net.wait_until_listed(NODES.len(), Duration::from_secs(120));
                restarts.push(format!(
                    "{} killed at {:.0} s, down {} s, every document lists it again {:.1} s after restart",
                    net.nodes[i].proc.name,
                    at.as_secs_f64(),
                    down.as_secs(),
                    back.elapsed().as_secs_f64()
                ));
                eprintln!("soak: {}", restarts.last().unwrap());
            }
        }
        pause(&net, &mut sampler, Duration::from_millis(500));
    }
    sampler.sample(&net);
    Controlled {
        net,
        lifetimes: sampler.finish(),
        drops,
        restarts,
    }
}

/// Each node's identity key, in the order of `net.nodes`.
fn node_keys(net: &Testnet) -> Vec<[u8; 32]> {
    net.nodes
        .iter()
        .map(|n| {
            *mtos_node::load_identity(&n.dir.join("keys/identity.key"))
                .unwrap()
                .verify_key()
                .as_bytes()
        })
        .collect()
}

/// Waits until repair looks done: every storage node holds at least as
/// many records as it is a replica of among `records`, and the nodes'
/// repair counters stood still for four heartbeats. Seconds waited, or
/// `None` after `timeout` (the store check then says what is missing).
async fn settle(
    net: &Testnet,
    records: &[Record],
    storage: &[[u8; 32]],
    keys: &[[u8; 32]],
    timeout: Duration,
) -> Option<f64> {
    let started = Instant::now();
    let expected: Vec<usize> = keys
        .iter()
        .map(|k| {
            records
                .iter()
                .filter(|r| replicas(&r.locator, storage, DEFAULT_REPLICAS).contains(k))
                .count()
        })
        .collect();
    let (mut last, mut still) = (Vec::new(), 0);
    while started.elapsed() < timeout {
        let (full, repair) = tokio::task::block_in_place(|| {
            let full = net
                .nodes
                .iter()
                .zip(keys)
                .zip(&expected)
                .all(|((n, k), e)| {
                    !storage.contains(k)
                        || n.metric("mtos_records_held", "").unwrap_or(-1.0) >= *e as f64
                });
            let repair: Vec<Option<f64>> = net
                .nodes
                .iter()
                .flat_map(|n| {
                    ["sent", "present", "failed"]
                        .map(|r| n.metric("mtos_repair_records_total", &format!("result=\"{r}\"")))
                        .into_iter()
                        .chain([n.metric("mtos_repair_passes_total", "")])
                })
                .collect();
            (full, repair)
        });
        still = if repair == last { still + 1 } else { 0 };
        last = repair;
        if full && still >= 4 {
            return Some(started.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_secs(HEARTBEAT_SECS)).await;
    }
    None
}

/// Stops every node and reads each storage node's store: the records
/// of `records` it lacks though it is one of their K replicas under
/// `storage`, and per node (name, replica of, records held).
fn check_stores(
    net: &mut Testnet,
    records: &[Record],
    storage: &[[u8; 32]],
    keys: &[[u8; 32]],
) -> (Vec<String>, Vec<(String, usize, u64)>) {
    for node in &mut net.nodes {
        node.proc.kill();
    }
    let (mut missing, mut stored) = (Vec::new(), Vec::new());
    for (node, key) in net.nodes.iter().zip(keys) {
        if !storage.contains(key) {
            continue;
        }
        // Nothing is evicted by a reader.
        let retention = Retention {
            min_age_secs: u64::MAX,
            max_bytes: u64::MAX,
        };
        let db = mtos_node::record_db::RecordDb::open(&node.dir.join("data/records"), retention)
            .unwrap();
        let mut replica_of = 0;
        for r in records {
            if !replicas(&r.locator, storage, DEFAULT_REPLICAS).contains(key) {
                continue;
            }
            replica_of += 1;
            if db.get(r.kind, &r.locator).unwrap().as_ref() != Some(&r.bytes) {
                missing.push(format!(
                    "{}: its store lacks acknowledged {:?} {:?}",
                    node.proc.name, r.kind, r.locator
                ));
            }
        }
        stored.push((node.proc.name.clone(), replica_of, db.records()));
    }
    (missing, stored)
}

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
    let fetched: Vec<_> = futures::stream::iter(acked.iter().enumerate())
        .map(|(i, r)| {
            let s = &readers[i % readers.len()];
            async move { (r, fetch(s, r).await) }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let fetch_secs = fetch_started.elapsed().as_secs_f64();
    let final_gets_ok_before = books(&b).f.gets_ok;
    for (r, got) in fetched {
        count_get(&b, r, got, "final fetch");
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
        "  memory (MiB), per process lifetime: samples, after warm-up, end, judged (rule: end <= {}x + {} MiB, >= {} samples)",
        rule.ratio,
        rule.slack_bytes >> 20,
        rule.min_samples
    ));
    for (l, m) in &memory {
        line(format!(
            "    {} pid {}: {} samples, {} -> {} {}",
            l.name,
            l.pid,
            l.samples.len(),
            mib(m.after_warm_up),
            mib(m.end),
            if !m.judged {
                "(too short to judge)"
            } else if m.flat {
                "flat"
            } else {
                "GREW"
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
        std::fs::write(&path, &out).unwrap();
    }

    assert!(
        f.puts_acked > 0 && f.answers > 0 && f.messages_delivered > 0 && f.polls > 0,
        "the load did not run: {out}"
    );
    assert!(v.is_empty(), "{} violations:\n{}", v.len(), v.join("\n"));
}
