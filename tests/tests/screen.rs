//! The screen as its gateway sees it: one session (one libp2p identity,
//! one connection, one mix stream, one gateway) for as long as it runs,
//! sending on one schedule whether it is idle, publishing and fetching
//! 300 kB (with a feed entry, a poll and a card), or idle again: Poisson
//! at the idle rates outside its bulk windows and at the bulk rates in
//! them, the windows its ticket's (`specs/client.md` §4.1); the schedule
//! drawn from its seed is followed slot for slot, switches included, with
//! or without work.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mtos_client::Home;
use mtos_client::mixnet::{SEND_QUEUE, Session};
use mtos_client::store::ChunkStore;
use mtos_client::transfer::{TransferOptions, publish};
use mtos_crypto::item::seal::{self, Access};
use mtos_crypto::item::{ContentType, ItemDraft, Part};
use mtos_mixnode::admission::Position;
use mtos_mixnode::directory::Ticket;
use mtos_mixnode::windows::{ClassTimeline, WindowedSchedule};
use mtos_tests::screen::CliScreen;
use mtos_tests::{
    AuthoritySettings, CHAIN, FaultsSection, NodeSettings, Testnet, ks_critical, ks_statistic,
    mtos_at,
};
use rand::{RngExt, SeedableRng};

const PAYLOAD: f64 = 4.0;
const LOOPS: f64 = 1.0;
const DROPS: f64 = 1.0;
/// The bulk class: λP 20 (λL and λD as idle), in windows of 20 s taken
/// by 3 cohorts in turn, so the screen is in bulk a third of the time.
const BULK_PAYLOAD: f64 = 20.0;
const WINDOW_SECS: u64 = 20;
const COHORTS: u64 = 3;
/// Two classes tested: at 0.1% each, a correct client fails 0.2% of
/// runs, not the ~2% of two tests at 1%.
const ALPHA: f64 = 0.001;
const IDLE: Duration = Duration::from_secs(120);

/// What the watching gateway wrote (`[faults] watch_clients`).
#[derive(Debug, Default)]
struct Seen {
    /// Frame arrivals (µs since the epoch) by client.
    frames: BTreeMap<String, Vec<u128>>,
    /// Mix streams opened, by client.
    streams: BTreeMap<String, usize>,
    /// Connections, by client.
    connections: BTreeMap<String, usize>,
}

fn read_watch(node_dir: &Path) -> Seen {
    let text = std::fs::read_to_string(node_dir.join("data").join("client_frames.log"))
        .unwrap_or_default();
    let mut seen = Seen::default();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        match f.as_slice() {
            ["frame", peer, _, t] => seen
                .frames
                .entry((*peer).into())
                .or_default()
                .push(t.parse().unwrap()),
            ["stream", peer, _, _] => *seen.streams.entry((*peer).into()).or_default() += 1,
            ["connect", peer, _, _] => *seen.connections.entry((*peer).into()).or_default() += 1,
            _ => {}
        }
    }
    seen
}

fn now_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros()
}

/// A 300 kB item sealed into `store`.
fn sealed_noise(store: &ChunkStore, text: &str) -> mtos_crypto::item::ItemRef {
    let mut bytes = vec![0u8; 300_000];
    rand::rng().fill(&mut bytes[..]);
    let item = ItemDraft::new(
        ContentType::MediaObject,
        0,
        vec![
            Part::text(text),
            Part::binary(bytes, "application/octet-stream"),
        ],
    )
    .sign(&mtos_crypto::Identity::throwaway(&mut rand::rng(), 0))
    .unwrap();
    let mut writer = store.writer();
    let sealed = seal::seal(&mut rand::rng(), &item, Access::Public, &mut writer).unwrap();
    writer.finish().unwrap();
    sealed.reference
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_screens_gateway_sees_one_session_on_one_schedule_idle_busy_and_idle_again() {
    let net = tokio::task::block_in_place(|| {
        let mut net = Testnet::start_custom(
            &CHAIN,
            600,
            5,
            |_| NodeSettings {
                storage: Some(true),
                ..NodeSettings::default()
            },
            &AuthoritySettings {
                payload: Some(PAYLOAD),
                loops: Some(LOOPS),
                drops: Some(DROPS),
                node_loops: Some(0.0),
                bulk_payload: Some(BULK_PAYLOAD),
                bulk_loops: Some(LOOPS),
                bulk_drops: Some(DROPS),
                bulk_window_secs: Some(WINDOW_SECS),
                bulk_cohorts: Some(COHORTS),
                ..AuthoritySettings::default()
            },
        );
        net.node_mut(Position::Gateway)
            .restart_with_faults(FaultsSection {
                watch_clients: true,
                ..FaultsSection::default()
            });
        net
    });
    let gateway_dir = net.node(Position::Gateway).dir.clone();

    // Another client publishes the item the screen will fetch.
    let other = tempfile::tempdir().unwrap();
    let other_store = ChunkStore::open(&other.path().join("store")).unwrap();
    let theirs = sealed_noise(&other_store, "theirs");
    let session = Session::connect(&net.network_config()).await.unwrap();
    let other_peer = session.peer_id().to_string();
    publish(
        &session,
        &other_store,
        &theirs,
        TransferOptions::default(),
        &|_, _| {},
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", net.report()));
    drop(session);

    // The screen, with a known schedule seed.
    let root = tempfile::tempdir().unwrap();
    let home_dir = root.path().join("home");
    let home = Home::resolve(Some(home_dir.clone())).unwrap();
    home.set_network(&net.network_config()).unwrap();
    // An identity: the busy window has signed work too (a feed entry, a
    // card), which the screen's keychain signs.
    let made = mtos_at(&home_dir, &["id", "new", "--label", "alice"]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let mut seed = [0u8; 32];
    rand::rng().fill(&mut seed[..]);
    let seed_hex = data_encoding::HEXLOWER.encode(&seed);
    let file = root.path().join("mine.bin");
    let mut mine = vec![0u8; 300_000];
    rand::rng().fill(&mut mine[..]);
    std::fs::write(&file, &mine).unwrap();
    let theirs_uri = theirs.to_uri();
    let (screen, marks, status) = tokio::task::block_in_place(|| {
        let screen = CliScreen::start_env(
            &home_dir,
            &["--poll-every", "86400"],
            &[("MTOS_SCHEDULE_SEED", &seed_hex)],
        );
        let start = now_us();
        std::thread::sleep(IDLE);
        let busy_from = now_us();
        let published = mtos_at(
            &home_dir,
            &["publish", "--as", "alice", file.to_str().unwrap()],
        );
        assert!(
            published.status.success(),
            "{}",
            String::from_utf8_lossy(&published.stderr)
        );
        let fetched = mtos_at(&home_dir, &["fetch", &theirs_uri]);
        assert!(
            fetched.status.success(),
            "{}",
            String::from_utf8_lossy(&fetched.stderr)
        );
        assert!(String::from_utf8_lossy(&fetched.stdout).contains("theirs"));
        // Fetched once, it is served from the store.
        let again = mtos_at(&home_dir, &["fetch", &theirs_uri]);
        assert!(String::from_utf8_lossy(&again.stderr).contains("nothing to fetch"));
        // Following one's own feed, a poll round asked for, and a card.
        let uri = mtos_at(&home_dir, &["id", "feed", "alice"]);
        let uri = String::from_utf8_lossy(&uri.stdout).trim().to_owned();
        for args in [
            vec!["follow", uri.as_str()],
            vec!["feed"],
            vec!["id", "publish", "alice"],
        ] {
            let out = mtos_at(&home_dir, &args);
            assert!(
                out.status.success(),
                "mtos {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            if args == ["feed"] {
                assert!(String::from_utf8_lossy(&out.stdout).contains("#0"));
            }
        }
        let busy_to = now_us();
        std::thread::sleep(IDLE);
        let end = now_us();
        let status = screen.status();
        (screen, [start, busy_from, busy_to, end], status)
    });
    let [start, busy_from, busy_to, end] = marks;

    // One session all along: one identity, one connection, one stream,
    // the gateway of the status, never a second session or a broken link.
    let seen = read_watch(&gateway_dir);
    let peer = status["peer_id"].as_str().unwrap().to_owned();
    // No other client: the other one, which published the item fetched,
    // was gone before the screen started; a command that opened a session
    // of its own would show here.
    let mut clients: Vec<&String> = seen.frames.keys().collect();
    clients.sort();
    let mut expected = vec![&peer, &other_peer];
    expected.sort();
    assert_eq!(clients, expected, "clients the gateway saw");
    assert_eq!(
        seen.connections.get(&peer),
        Some(&1),
        "{:?}",
        seen.connections
    );
    assert_eq!(seen.streams.get(&peer), Some(&1), "{:?}", seen.streams);
    assert_eq!(status["sessions"], 1);
    assert_eq!(status["link_breaks"], 0);
    // (The frames are in the watching gateway's log: the one gateway.)
    assert!(status["sent_real"].as_u64().unwrap() >= 170, "{status}");
    assert_eq!(status["slots_skipped"], 0);

    // The windows the screen follows: its ticket, granted, from its
    // session's start (Unix ms), under the network's document.
    let windows = &status["windows"];
    assert_eq!(windows["granted"], true, "{status}");
    let ticket = Ticket(windows["ticket"].as_u64().unwrap() as u16);
    let document = mtos_tests::TestClient::connect(&net).await.document.clone();
    let timeline = ClassTimeline {
        rates: document.rates,
        schedule: document.schedule,
        ticket,
        origin_unix_ms: windows["origin_ms"].as_u64().unwrap(),
    };
    assert_eq!(document.rates.bulk.unwrap().cohorts, COHORTS as u16);

    // The schedule the seed gives, slot for slot, class switches
    // included: the i-th frame the gateway saw left in the i-th slot. A
    // slot skipped or added, or a switch at another instant, would shift
    // every later frame a gap (1/λ on average) off its slot.
    let arrivals = &seen.frames[&peer];
    let mut rng = rand::rngs::StdRng::from_seed(seed);
    let mut schedule: WindowedSchedule<()> =
        WindowedSchedule::new(mtos_mixnode::Instant::ZERO, timeline, SEND_QUEUE, &mut rng);
    let slots: Vec<mtos_mixnode::Instant> = (0..arrivals.len())
        .map(|_| {
            loop {
                let t = schedule.poll_timeout().unwrap();
                if let Some((at, _)) = schedule.poll_send(t, &mut rng) {
                    break at;
                }
            }
        })
        .collect();
    let secs = |t: &mtos_mixnode::Instant| {
        t.saturating_since(mtos_mixnode::Instant::ZERO)
            .as_secs_f64()
    };
    let offsets: Vec<f64> = arrivals
        .iter()
        .zip(&slots)
        .map(|(a, s)| *a as f64 / 1e6 - secs(s))
        .collect();
    // The session's start on the gateway's clock, from the quickest
    // frames (the path's own latency).
    let origin = offsets.iter().copied().fold(f64::INFINITY, f64::min);
    let mut late: Vec<f64> = offsets.iter().map(|o| o - origin).collect();
    late.sort_by(f64::total_cmp);
    let median = late[late.len() / 2];
    let p99 = late[late.len() * 99 / 100];
    eprintln!(
        "{} frames against the seed's slots: median {:.1} ms, 99% {:.1} ms after their slot",
        late.len(),
        median * 1e3,
        p99 * 1e3
    );
    assert!(
        median < 0.010 && p99 < 0.100,
        "frames do not follow the seed's slots: median {median:.3} s, 99% {p99:.3} s"
    );

    // Each class's gaps as the gateway saw them, the class's stretches
    // laid end to end: Exp(λP + λL + λD) of that class (a gap cut by a
    // switch goes on in the class's next stretch).
    let in_window = |t_us: u128| {
        let at = (t_us as f64 / 1e6 - origin).max(0.0);
        timeline.in_window(mtos_mixnode::Instant::ZERO + Duration::from_secs_f64(at))
    };
    let (from, to) = (start.max(arrivals[0]), end);
    let mut clock = [0.0f64; 2];
    let mut last: [Option<f64>; 2] = [None, None];
    let mut class_gaps: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut t = from;
    for &a in arrivals.iter().filter(|a| (from..to).contains(*a)) {
        // Time in each class between the last arrival and this one, by
        // steps of at most 10 ms (windows last seconds).
        while t < a {
            let step = (a - t).min(10_000);
            clock[usize::from(in_window(t + step / 2))] += step as f64 / 1e6;
            t += step;
        }
        let k = usize::from(in_window(a));
        if let Some(l) = last[k] {
            class_gaps[k].push(clock[k] - l);
        }
        last[k] = Some(clock[k]);
    }
    let windows_seen = clock[1];
    eprintln!(
        "{:.0} s in bulk windows, {:.0} s idle (between {busy_from} and {busy_to} µs busy)",
        clock[1], clock[0]
    );
    assert!(windows_seen > 60.0, "only {windows_seen:.0} s of windows");
    for (k, name, rate) in [
        (0, "idle", PAYLOAD + LOOPS + DROPS),
        (1, "bulk", BULK_PAYLOAD + LOOPS + DROPS),
    ] {
        let g = &mut class_gaps[k];
        let d = ks_statistic(g, |x| 1.0 - (-rate * x).exp());
        let crit = ks_critical(g.len(), ALPHA);
        eprintln!("{name}: {} gaps, KS {d:.4} (critical {crit:.4})", g.len());
        assert!(g.len() > 600, "{name}: only {} gaps", g.len());
        assert!(
            d < crit,
            "{name}: KS {d:.3} >= {crit:.3} over {} gaps",
            g.len()
        );
    }
    drop(screen);
}
