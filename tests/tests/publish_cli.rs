//! `mtos publish` and `mtos fetch` as people run them, on a local
//! testnet: one home publishes (interrupted once, then resumed), another
//! fetches byte-identical, a second fetch stays off the network, and bad
//! or unknown references fail with a clear error and exit code.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use mtos_tests::{CliTestnet, mtos_at, mtos_binary};
use rand::RngExt;

fn mtos(home: &Path, args: &[&str]) -> Output {
    mtos_at(home, args)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn a_file_published_from_one_home_is_fetched_byte_identical_by_another() {
    let root = tempfile::tempdir().unwrap();
    let tn = root.path().join("tn");
    let _net = CliTestnet::up(&tn, &["--per-layer", "1", "--payload-rate", "50"]);
    let (alice, bob) = (root.path().join("alice"), root.path().join("bob"));
    // Without a network, publish says how to choose one.
    let none = mtos(&alice, &["publish", "--anonymous", "--text", "x"]);
    assert_eq!(none.status.code(), Some(5), "{}", text(&none.stderr));
    assert!(text(&none.stderr).contains("mtos net use"));
    for home in [&alice, &bob] {
        let used = mtos(home, &["net", "use", "--testnet", tn.to_str().unwrap()]);
        assert!(used.status.success(), "{}", text(&used.stderr));
        assert!(text(&used.stdout).contains("network:"));
    }

    // A 300 KB file: the first publish is killed once its item is sealed
    // and pending; the same command run again resumes that item.
    let mut bytes = vec![0u8; 300_000];
    rand::rng().fill(&mut bytes[..]);
    let file = root.path().join("noise.bin");
    std::fs::write(&file, &bytes).unwrap();
    let publish_args = [
        "publish",
        "--anonymous",
        "--tag",
        "noise",
        file.to_str().unwrap(),
    ];
    let mut first = Command::new(mtos_binary())
        .arg("--home")
        .arg(&alice)
        .args(publish_args)
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(first.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.starts_with("sealed public"), "{line}");
    let pending = alice.join("pending");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(&pending).map_or(0, |d| d.count()) == 0 {
        assert!(Instant::now() < deadline, "no pending publish recorded");
        std::thread::sleep(Duration::from_millis(20));
    }
    first.kill().unwrap();
    let out = first.wait_with_output().unwrap();
    assert!(
        text(&out.stdout).is_empty(),
        "no reference before every chunk is stored"
    );

    let second = mtos(&alice, &publish_args);
    assert!(second.status.success(), "{}", text(&second.stderr));
    assert!(
        text(&second.stderr).contains("resuming"),
        "{}",
        text(&second.stderr)
    );
    assert!(text(&second.stderr).contains("published"));
    let reference = text(&second.stdout).trim().to_owned();
    assert!(reference.starts_with("mtos:item:"), "{reference}");
    assert_eq!(std::fs::read_dir(&pending).unwrap().count(), 0);

    // Bob fetches it through the mixnet: the same bytes.
    let out_file = root.path().join("fetched.bin");
    let fetched = mtos(
        &bob,
        &["fetch", &reference, "-o", out_file.to_str().unwrap()],
    );
    assert!(fetched.status.success(), "{}", text(&fetched.stderr));
    assert!(
        text(&fetched.stderr).contains("fetched"),
        "{}",
        text(&fetched.stderr)
    );
    assert_eq!(std::fs::read(&out_file).unwrap(), bytes);
    // A second fetch finds it in the local store and sends nothing.
    let again = mtos(&bob, &["fetch", &reference]);
    assert!(again.status.success());
    assert!(
        text(&again.stderr).contains("nothing to fetch"),
        "{}",
        text(&again.stderr)
    );

    // A text item, printed by the reader.
    let note = mtos(
        &alice,
        &["publish", "--anonymous", "--text", "hello, mixnet"],
    );
    assert!(note.status.success(), "{}", text(&note.stderr));
    let note_ref = text(&note.stdout).trim().to_owned();
    let read = mtos(&bob, &["fetch", &note_ref]);
    assert!(read.status.success(), "{}", text(&read.stderr));
    assert!(
        text(&read.stdout).contains("hello, mixnet"),
        "{}",
        text(&read.stdout)
    );

    // A malformed reference, and one never published (sealed locally by
    // a third home only): clear errors, nothing written.
    let bad = mtos(&bob, &["fetch", "mtos:item:notareference"]);
    assert_eq!(bad.status.code(), Some(4), "{}", text(&bad.stderr));
    let carol = root.path().join("carol");
    let sealed = mtos(
        &carol,
        &["item", "seal", "--anonymous", "--text", "unpublished"],
    );
    assert!(sealed.status.success(), "{}", text(&sealed.stderr));
    let unpublished = text(&sealed.stdout).trim().to_owned();
    let missing = mtos(&bob, &["fetch", &unpublished]);
    assert_eq!(missing.status.code(), Some(5), "{}", text(&missing.stderr));
    assert!(
        text(&missing.stderr).contains("not found"),
        "{}",
        text(&missing.stderr)
    );
}
