//! A thread across two feeds as a reader sees it, through the screens of
//! a local testnet: alice and bob reply to each other in turn (five items
//! in two feeds); carol, who follows only alice, sees the chain cut at
//! bob's missing item, fetches the rest with `--fetch` and sees the whole
//! chain in order; once she follows bob too, the root shows every reply.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Output;

use mtos_tests::screen::CliScreen;
use mtos_tests::{CliTestnet, mtos_at};

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The item lines of a thread: (indent, the line).
fn items(thread: &str) -> Vec<(usize, String)> {
    thread
        .lines()
        .filter_map(|l| {
            let t = l.trim_start();
            (t.starts_with("* ") || t.starts_with("- ")).then(|| (l.len() - t.len(), t.to_owned()))
        })
        .collect()
}

#[test]
fn a_thread_across_two_feeds_shows_in_order_and_a_missing_item_as_missing() {
    let root = tempfile::tempdir().unwrap();
    let tn = root.path().join("tn");
    let _net = CliTestnet::up(&tn, &["--per-layer", "1", "--payload-rate", "50"]);
    let homes = ["alice", "bob", "carol"].map(|h| root.path().join(h));
    for home in &homes {
        ok(mtos_at(
            home,
            &["net", "use", "--testnet", tn.to_str().unwrap()],
        ));
    }
    let [alice, bob, carol] = &homes;
    ok(mtos_at(alice, &["id", "new", "--label", "alice"]));
    ok(mtos_at(bob, &["id", "new", "--label", "bob"]));
    let quiet = ["--poll-every", "86400"];
    let _screens: Vec<CliScreen> = homes.iter().map(|h| CliScreen::start(h, &quiet)).collect();
    let publish = |home: &Path, text: &str, reply_to: Option<&str>| -> String {
        let mut args = vec!["publish", "--text", text];
        if let Some(r) = reply_to {
            args.extend(["--reply-to", r]);
        }
        ok(mtos_at(home, &args)).trim().to_owned()
    };
    let one = publish(alice, "one, the root", None);
    let two = publish(bob, "two", Some(&one));
    let three = publish(alice, "three", Some(&two));
    let four = publish(bob, "four", Some(&three));
    let five = publish(alice, "five", Some(&four));

    let feed =
        |home: &Path, label: &str| ok(mtos_at(home, &["id", "feed", label])).trim().to_owned();
    ok(mtos_at(
        carol,
        &["follow", &feed(alice, "alice"), "--label", "alice"],
    ));
    ok(mtos_at(carol, &["feed"]));

    // Bob's items are not in carol's store: the chain stops at four.
    let cut = ok(mtos_at(carol, &["item", "thread", &five]));
    let shown = items(&cut);
    assert!(cut.starts_with("thread of 2 item(s), 1 missing"), "{cut}");
    assert!(
        shown[0].1.starts_with("- (missing: not in the local store"),
        "{cut}"
    );
    assert!(cut.contains(&four), "{cut}");
    assert!(
        shown[1].1.starts_with("* reply-to: Note by \"alice\""),
        "{cut}"
    );

    // --fetch brings the chain's missing items through the network.
    let whole = ok(mtos_at(carol, &["item", "thread", &five, "--fetch"]));
    let shown = items(&whole);
    assert!(whole.starts_with("thread of 5 item(s)\n"), "{whole}");
    for (i, (reference, text)) in [
        (&one, "one, the root"),
        (&two, "two"),
        (&three, "three"),
        (&four, "four"),
        (&five, "five"),
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(shown[i].0, 2 * i, "{whole}");
        let at = whole.find(reference.as_str()).unwrap();
        let text_at = whole.find(&format!("  {text}\n")).unwrap();
        assert!(text_at < at, "{whole}");
    }
    assert!(
        shown[4].1.starts_with('*'),
        "the item asked about is marked: {whole}"
    );

    // Following bob too, the root's thread holds every reply.
    ok(mtos_at(
        carol,
        &["follow", &feed(bob, "bob"), "--label", "bob"],
    ));
    ok(mtos_at(carol, &["feed"]));
    let from_root = ok(mtos_at(carol, &["item", "thread", &one]));
    let shown = items(&from_root);
    assert_eq!(shown.len(), 5, "{from_root}");
    assert!(shown[1].1.contains("by \"bob\""), "{from_root}");
    assert!(shown[2].1.contains("by \"alice\""), "{from_root}");
}
