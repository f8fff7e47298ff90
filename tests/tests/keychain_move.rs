//! Moving a keychain between screens (`specs/transfer.md`, purpose 2):
//! a new screen with no keychain shows a pairing code, the old screen
//! sends an identity with it through the mixnet, and the new screen then
//! publishes into the same feed without colliding with the old screen's
//! next entries: a follower reads all of them, in slot order. A contact
//! code is refused as a pairing code.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use mtos_tests::screen::{CliScreen, Coded, field, ok};
use mtos_tests::{CliTestnet, mtos_at};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Publishes `text` as alice from `home`; returns the feed slot written.
fn publish(home: &Path, text: &str) -> u64 {
    let out = mtos_at(home, &["publish", "--text", text, "--as", "alice"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ok(out);
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("added as entry "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no feed entry in {stderr}"))
}

#[test]
fn an_identity_moved_to_a_new_screen_publishes_into_the_same_feed_without_collisions() {
    let root = tempfile::tempdir().unwrap();
    let tn = root.path().join("tn");
    let _net = CliTestnet::up(&tn, &["--per-layer", "1", "--payload-rate", "20"]);
    let homes = ["old", "new", "reader"].map(|h| root.path().join(h));
    for home in &homes {
        ok(mtos_at(
            home,
            &["net", "use", "--testnet", tn.to_str().unwrap()],
        ));
    }
    let [old, new, reader] = &homes;
    let shown = ok(mtos_at(old, &["id", "new", "--label", "alice"]));
    let carol = root.path().join("carol");
    ok(mtos_at(&carol, &["id", "new", "--label", "carol"]));
    let carol_uri = field(&ok(mtos_at(&carol, &["id", "show", "carol"])), "uri");
    ok(mtos_at(old, &["contact", "add", &carol_uri]));
    let feed = ok(mtos_at(old, &["id", "feed", "alice"])).trim().to_owned();
    let _screens: Vec<CliScreen> = homes
        .iter()
        .map(|h| CliScreen::start(h, &["--poll-every", "86400"]))
        .collect();
    assert_eq!(publish(old, "first, from the old screen"), 0);

    // The new screen (no keychain yet) shows a code; the old one sends
    // alice with it.
    let (pairing, code) = Coded::start(new, &["screen", "pair", "--wait", "120"]);
    assert_eq!(
        code.split('-').count(),
        5,
        "a channel and four words: {code}"
    );
    // A contact exchange cannot answer it.
    let wrong_kind = mtos_at(old, &["contact", "accept", &code]);
    assert_eq!(
        wrong_kind.status.code(),
        Some(4),
        "{}",
        text(&wrong_kind.stderr)
    );
    let sent = ok(mtos_at(old, &["screen", "send-keys", "alice", &code]));
    let fingerprint = field(&shown, "fingerprint");
    assert!(
        sent.contains("sent 1 identity and 1 contact(s); the other screen saved them"),
        "{sent}"
    );
    assert!(sent.contains(&format!("alice ({fingerprint})")), "{sent}");
    let out = pairing.finish();
    let rest = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        rest.contains("received and saved 1 identity and 1 contact(s)"),
        "{rest}"
    );
    assert!(rest.contains(&format!("alice ({fingerprint})")), "{rest}");

    // The same keys on the new screen, which made its keychain.
    let moved = ok(mtos_at(new, &["id", "show", "alice"]));
    assert_eq!(field(&moved, "fingerprint"), field(&shown, "fingerprint"));
    assert!(ok(mtos_at(new, &["contact", "list"])).contains("carol"));

    // Both publish as alice: the old screen's next entry, then the new
    // screen's, which finds that slot taken and moves past it.
    assert_eq!(publish(old, "second, from the old screen"), 1);
    assert_eq!(publish(new, "third, from the new screen"), 2);

    // A follower reads all three, in slot order.
    ok(mtos_at(reader, &["follow", &feed, "--label", "alice"]));
    let timeline = ok(mtos_at(reader, &["feed", "--rounds", "2"]));
    let at = |needle: &str| {
        timeline
            .find(needle)
            .unwrap_or_else(|| panic!("{needle} missing from:\n{timeline}"))
    };
    assert!(
        at("third") < at("second") && at("second") < at("first"),
        "{timeline}"
    );
    for slot in ["#0", "#1", "#2"] {
        at(slot);
    }
}
