//! Feeds as people use them, through their homes' screens on a local
//! testnet: an identity publishes three items, a follower sees them
//! newest first, the identity's card is found from its fingerprint or
//! URI, and polling costs the same number of probe packets whether one
//! follows one feed or three, asked for or on the screen's schedule.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use mtos_tests::screen::CliScreen;
use mtos_tests::{CliTestnet, mtos_at, mtos_binary};

fn mtos(home: &Path, args: &[&str]) -> Output {
    mtos_at(home, args)
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_follower_sees_a_three_item_feed_in_order_and_polling_does_not_count_feeds() {
    let root = tempfile::tempdir().unwrap();
    let tn = root.path().join("tn");
    // No node loops: a mix's loops are probes to the service node
    // (`mixing.md` §5), which would blur the count of a follower's probes
    // below.
    let _net = CliTestnet::up(
        &tn,
        &[
            "--per-layer",
            "1",
            "--payload-rate",
            "50",
            "--node-loop-rate",
            "0",
        ],
    );
    let homes = ["alice", "bob", "carol"].map(|h| root.path().join(h));
    for home in &homes {
        ok(mtos(
            home,
            &["net", "use", "--testnet", tn.to_str().unwrap()],
        ));
    }
    let [alice, bob, carol] = &homes;
    ok(mtos(alice, &["id", "new", "--label", "alice"]));
    // Screens that poll once a day: no scheduled round falls inside the
    // counts below.
    let quiet = ["--poll-every", "86400"];
    let screens: Vec<CliScreen> = homes.iter().map(|h| CliScreen::start(h, &quiet)).collect();
    let uri = ok(mtos(alice, &["id", "feed", "alice"])).trim().to_owned();
    assert!(uri.starts_with("mtos:feed:"), "{uri}");
    for (text, tag) in [("first", "one"), ("second", "two"), ("third", "three")] {
        let out = mtos(
            alice,
            &["publish", "--text", text, "--tag", tag, "--as", "alice"],
        );
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        ok(out);
        assert!(stderr.contains("of the feed of \"alice\""), "{stderr}");
    }

    ok(mtos(bob, &["follow", &uri, "--label", "alice"]));
    let again = mtos(bob, &["follow", &uri]);
    assert_eq!(again.status.code(), Some(6), "following twice is refused");
    let timeline = ok(mtos(bob, &["feed"]));
    eprintln!("{timeline}");
    let at = |needle: &str| {
        timeline
            .find(needle)
            .unwrap_or_else(|| panic!("{needle} missing from:\n{timeline}"))
    };
    assert!(
        at("third") < at("second") && at("second") < at("first"),
        "{timeline}"
    );
    for tag in ["tags: one", "tags: two", "tags: three", "#0", "#2"] {
        at(tag);
    }
    assert!(!timeline.contains("NOT signed"), "{timeline}");

    // Alice publishes her identity's card; carol, who has nothing but
    // the fingerprint (or the URI), finds it through the mixnet and with
    // it the feed.
    let published = ok(mtos(alice, &["id", "publish", "alice"]));
    let digits = published
        .lines()
        .find_map(|l| l.strip_prefix("anyone can find it with: mtos id lookup "))
        .unwrap_or_else(|| panic!("{published}"))
        .to_owned();
    let shown = ok(mtos(alice, &["id", "show", "alice"]));
    let id_uri = shown
        .lines()
        .find_map(|l| l.strip_prefix("uri:"))
        .unwrap()
        .trim()
        .to_owned();
    for query in [digits.as_str(), id_uri.as_str()] {
        let card = ok(mtos(carol, &["id", "lookup", query]));
        assert!(card.contains("label:       alice"), "{card}");
        assert!(card.contains(&format!("feed:        {uri}")), "{card}");
    }
    ok(mtos(
        alice,
        &["id", "new", "--label", "hidden", "--private"],
    ));
    let private = mtos(alice, &["id", "publish", "hidden"]);
    assert_eq!(private.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&private.stderr).contains("never published"));
    let unknown = mtos(carol, &["id", "lookup", &"1".repeat(30)]);
    assert_eq!(unknown.status.code(), Some(5));
    let malformed = mtos(carol, &["id", "lookup", "hello"]);
    assert_eq!(malformed.status.code(), Some(4));

    // Probe packets reaching the service node: the same for a follower
    // of one feed (bob) and of three (carol: alice's and two empty ones),
    // a round's fixed number each round.
    let state = mtos_client::testnet::load(&tn).unwrap();
    let service = state
        .processes
        .iter()
        .find(|p| p.name.starts_with("service"))
        .and_then(|p| p.metrics.clone())
        .unwrap();
    let probes = || {
        mtos_client::testnet::metric(&service, "mtos_service_requests_total", "op=\"probe\"")
            .unwrap_or(0.0)
    };
    for label in ["x", "y"] {
        ok(mtos(carol, &["id", "new", "--label", label]));
        let other = ok(mtos(carol, &["id", "feed", label])).trim().to_owned();
        ok(mtos(carol, &["follow", &other]));
    }
    ok(mtos(carol, &["follow", &uri]));
    // A probe a replica did not answer is asked again, whole, through
    // another service node (the command says how many): whatever the
    // number of feeds, the first asks are a round's fixed number.
    let asked_again = |out: &Output| -> f64 {
        let err = String::from_utf8_lossy(&out.stderr);
        err.split("; ")
            .find_map(|part| {
                part.strip_suffix(" probe(s) asked again (a replica did not answer)\n")
                    .or_else(|| {
                        part.strip_suffix(" probe(s) asked again (a replica did not answer)")
                    })
            })
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0.0)
    };
    let before = probes();
    let bob_feed = mtos(bob, &["feed", "--rounds", "3"]);
    let one_feed = probes() - before - asked_again(&bob_feed);
    ok(bob_feed);
    let before = probes();
    let carol_feed = mtos(carol, &["feed", "--rounds", "3"]);
    let three_feeds = probes() - before - asked_again(&carol_feed);
    let carol_timeline = ok(carol_feed);
    let per_round = mtos_client::feeds::POLL_PROBES as f64;
    assert_eq!((one_feed, three_feeds), (3.0 * per_round, 3.0 * per_round));
    assert!(carol_timeline.contains("third"), "{carol_timeline}");

    // On the screen's own schedule (a round a second): the same number of
    // probes for one feed and for three, and a new entry shows up in a
    // watching `mtos feed --every`.
    drop(screens);
    let watch = |home: &Path| {
        Command::new(mtos_binary())
            .arg("--home")
            .arg(home)
            .args(["feed", "--every", "1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let every_second = ["--poll-every", "1"];
    let mut rates = Vec::new();
    for home in [bob, carol] {
        let screen = CliScreen::start(home, &every_second);
        let before = probes();
        std::thread::sleep(Duration::from_secs(6));
        rates.push(probes() - before);
        drop(screen);
    }
    assert!(
        rates[0] >= 3.0 * per_round && (rates[0] - rates[1]).abs() <= 2.0 * per_round,
        "probes in 6 s: one feed {}, three feeds {}",
        rates[0],
        rates[1]
    );
    let _alice_screen = CliScreen::start(alice, &quiet);
    let _bob_screen = CliScreen::start(bob, &every_second);
    let mut child = watch(bob);
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    ok(mtos(
        alice,
        &["publish", "--text", "fourth", "--as", "alice"],
    ));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = false;
    while !seen && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
            seen = line.contains("fourth");
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(seen, "the watching follower never printed the new entry");
}
