//! Short-code contact exchange as people run it (`specs/transfer.md`):
//! two screens on a loopback testnet exchange identities by code and both
//! end verified with each other's keys; a wrong code fails on both sides;
//! someone answering an invitation first with a guess makes it fail for
//! the inviter, the interloper and the real accepter alike; and the
//! storage nodes' records of all this hold none of the keys exchanged.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use mtos_crypto::transfer::{Purpose, Rendezvous, Role};
use mtos_tests::screen::{CliScreen, Coded, field, ok};
use mtos_tests::{CliTestnet, mtos_at, mtos_binary};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `mtos contact invite` in the background, and the code it printed.
fn invite(home: &Path) -> (Coded, String) {
    Coded::start(home, &["contact", "invite", "--wait", "120"])
}

/// `mtos contact accept ARGS` with the code given on standard input.
fn accept_from_stdin(home: &Path, code: &str, args: &[&str]) -> Output {
    let mut child = Command::new(mtos_binary())
        .arg("--home")
        .arg(home)
        .args(["contact", "accept"])
        .args(args)
        .env("MTOS_PASSPHRASE", "test passphrase")
        .env("MTOS_KDF_LOG_N", "10")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        child.stdin.as_mut().unwrap(),
        format!("{code}\n").as_bytes(),
    )
    .unwrap();
    child.wait_with_output().unwrap()
}

/// The same channel with other words: a code that parses but is wrong.
fn wrong(code: &str) -> String {
    let mut parts: Vec<&str> = code.split('-').collect();
    parts[2] = if parts[2] == "zoo" { "abandon" } else { "zoo" };
    parts.join("-")
}

/// Every file under `dir` (the nodes' databases and logs).
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn two_screens_exchange_contacts_by_short_code_and_wrong_codes_and_interlopers_fail_both_sides() {
    let root = tempfile::tempdir().unwrap();
    let tn = root.path().join("tn");
    let _net = CliTestnet::up(&tn, &["--per-layer", "1", "--payload-rate", "20"]);
    let homes = ["alice", "bob", "eve"].map(|h| root.path().join(h));
    for (home, name) in homes.iter().zip(["alice", "bob", "eve"]) {
        ok(mtos_at(
            home,
            &["net", "use", "--testnet", tn.to_str().unwrap()],
        ));
        ok(mtos_at(home, &["id", "new", "--label", name, "--private"]));
    }
    let [alice, bob, eve] = &homes;
    let uri = |home: &Path, name: &str| field(&ok(mtos_at(home, &["id", "show", name])), "uri");
    let (alice_uri, bob_uri) = (uri(alice, "alice"), uri(bob, "bob"));
    let _screens: Vec<CliScreen> = homes
        .iter()
        .map(|h| CliScreen::start(h, &["--poll-every", "86400"]))
        .collect();

    // The exchange: both end with the other's keys, verified, by code.
    let started = std::time::Instant::now();
    let (inviting, code) = invite(alice);
    let code_shown = started.elapsed();
    let first_channel: u32 = code.split('-').next().unwrap().parse().unwrap();
    assert!(code.split('-').count() == 3, "{code}");
    // Typed at the prompt, not on the command line.
    let accepted = ok(accept_from_stdin(bob, &code, &["--label", "Alice A."]));
    assert!(
        accepted.contains("added contact \"Alice A.\", verified by the code"),
        "{accepted}"
    );
    assert_eq!(field(&accepted, "uri"), alice_uri);
    let invited = ok(inviting.finish());
    eprintln!(
        "contact exchange: code shown after {:.1} s, both done after {:.1} s",
        code_shown.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert!(invited.contains("added contact \"bob\""), "{invited}");
    assert_eq!(field(&invited, "uri"), bob_uri);
    for (home, label, their_uri) in [(alice, "bob", &bob_uri), (bob, "Alice A.", &alice_uri)] {
        let shown = ok(mtos_at(home, &["contact", "show", label]));
        assert_eq!(&field(&shown, "uri"), their_uri);
        assert_eq!(field(&shown, "source"), "short code");
        assert_ne!(field(&shown, "verified"), "no", "{shown}");
    }

    // A wrong code (right channel, wrong words): both sides fail, and
    // neither keychain gains a contact.
    let (inviting, code) = invite(alice);
    let out = mtos_at(eve, &["contact", "accept", &wrong(&code)]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("the code was wrong"),
        "{}",
        text(&out.stderr)
    );
    let out = inviting.finish();
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("the code was wrong"),
        "{}",
        text(&out.stderr)
    );
    assert!(ok(mtos_at(eve, &["contact", "list"])).contains("no contacts"));
    assert!(!ok(mtos_at(alice, &["contact", "list"])).contains("eve"));

    // An interloper who answers first with a guess: the inviter fails,
    // and so does the real accepter with the right code, told why.
    let (inviting, code) = invite(alice);
    let out = mtos_at(eve, &["contact", "accept", &wrong(&code)]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
    let out = mtos_at(bob, &["contact", "accept", &code]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("someone else answered this invitation first"),
        "{}",
        text(&out.stderr)
    );
    let out = inviting.finish();
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
    // A mistyped word is refused before anything is sent.
    let out = mtos_at(bob, &["contact", "accept", "7-guitar-orbitx"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));

    // The storage nodes hold the exchanges' slots, and none of the keys:
    // neither identity's public keys (sealed in the frames) nor secrets.
    let mut needles: Vec<(String, Vec<u8>)> = Vec::new();
    for (home, name) in [(alice, "alice"), (bob, "bob")] {
        let export = ok(mtos_at(home, &["id", "export", name]));
        let id = mtos_crypto::Identity::import_secret(&export).unwrap();
        needles.push((
            format!("{name}'s verify key"),
            id.verify_key().as_bytes().to_vec(),
        ));
        needles.push((
            format!("{name}'s encryption key"),
            id.encryption_key().to_vec(),
        ));
        needles.push((format!("{name}'s signing seed"), id.ed25519_seed().to_vec()));
        needles.push((
            format!("{name}'s age secret"),
            id.x25519_secret_bytes().to_vec(),
        ));
    }
    let scanned = files(&tn);
    let mut bytes = 0;
    for file in &scanned {
        let data = std::fs::read(file).unwrap_or_default();
        bytes += data.len();
        for (what, needle) in &needles {
            assert!(
                !data.windows(needle.len()).any(|w| w == &needle[..]),
                "{what} found in {}",
                file.display()
            );
        }
    }
    // The scan does read the stored records: the accepter's first slot of
    // the first exchange (its blinded key, public) is there.
    let slot_keys: Vec<[u8; 32]> = (0..64u64)
        .map(|epoch| {
            Rendezvous {
                purpose: Purpose::Contact,
                epoch,
                channel: first_channel,
            }
            .slot_key(Role::Accepter, 0)
            .unwrap()
        })
        .collect();
    let seen = scanned.iter().any(|f| {
        let data = std::fs::read(f).unwrap_or_default();
        slot_keys.iter().any(|k| data.windows(32).any(|w| w == k))
    });
    assert!(
        seen,
        "the scan of {bytes} bytes in {} files found no exchange slot",
        scanned.len()
    );

    // A contact whose card turns up on the network with other keys is
    // flagged, never silently replaced: bob publishes a public identity's
    // card, alice adds it; then a card under the same signing key with
    // another encryption key is published (from eve's home, with the
    // signing key copied there), and alice's lookup flags the contact.
    let shown = ok(mtos_at(bob, &["id", "new", "--label", "robert"]));
    let robert_uri = field(&shown, "uri");
    ok(mtos_at(bob, &["id", "publish", "robert"]));
    ok(mtos_at(alice, &["contact", "add", &robert_uri]));
    let export = ok(mtos_at(bob, &["id", "export", "robert"]));
    let real = mtos_crypto::Identity::import_secret(&export).unwrap();
    let rekeyed = mtos_crypto::Identity::from_secrets(
        mtos_crypto::Label::new("robert").unwrap(),
        mtos_crypto::Visibility::Public,
        real.created(),
        &real.ed25519_seed(),
        &[0x42; 32],
    );
    let file = root.path().join("rekeyed.mtos-id");
    std::fs::write(&file, rekeyed.export_secret().as_bytes()).unwrap();
    ok(mtos_at(eve, &["id", "rm", "eve", "--yes"]));
    ok(mtos_at(eve, &["id", "import", file.to_str().unwrap()]));
    ok(mtos_at(eve, &["id", "publish", "robert"]));
    let looked = mtos_at(alice, &["id", "lookup", &robert_uri]);
    assert!(
        text(&looked.stderr).contains("the contact is flagged"),
        "{}",
        text(&looked.stderr)
    );
    let listed = ok(mtos_at(alice, &["contact", "list"]));
    assert!(
        listed
            .lines()
            .any(|l| l.ends_with("robert") && l.contains("KEYS CHANGED")),
        "{listed}"
    );
    let shown = ok(mtos_at(alice, &["contact", "show", "robert"]));
    assert_eq!(field(&shown, "age key"), real.age_recipient());
    assert_eq!(field(&shown, "new age key"), rekeyed.age_recipient());
}
