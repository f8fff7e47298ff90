//! The `mtos id` commands as a user runs them: a real process, a temporary
//! home, the passphrase from `MTOS_PASSPHRASE`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use std::process::{Command, Stdio};

#[test]
fn identity_lifecycle() {
    let home = Home::new();
    let alice = home.ok(&["id", "new", "--label", "alice"]);
    assert!(alice.contains("created public identity \"alice\""));
    let bob = home.ok(&["id", "new", "--private"]);
    assert!(bob.contains("private identity \"identity-2\""));

    let list = home.ok(&["id", "list"]);
    assert!(list.contains("alice") && list.contains("identity-2"));
    assert!(list.contains("private") && list.contains("public"));

    let id = field(&alice, "id");
    let show = home.ok(&["id", "show", &id[..6]]);
    assert_eq!(field(&show, "fingerprint"), field(&alice, "fingerprint"));
    let uri = field(&show, "uri");
    assert!(uri.starts_with("mtos:id:"));
    let qr = home.ok(&["id", "show", "alice", "--qr"]);
    assert!(qr.contains('█'));

    // The safety number is the same from both sides.
    let bob_uri = field(&bob, "uri");
    let ab = home.ok(&["id", "compare", "alice", &bob_uri]);
    let ba = home.ok(&["id", "compare", "identity-2", &uri]);
    let digits = |t: &str| -> String {
        t.lines()
            .filter(|l| l.chars().all(|c| c.is_ascii_digit() || c == ' ') && !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(digits(&ab), digits(&ba));
    assert_eq!(digits(&ab).replace(' ', "").len(), 60);

    // Export, remove, import: the same identity comes back.
    let export = home.path().join("alice.mtos-id");
    home.ok(&["id", "export", "alice", "-o", export.to_str().unwrap()]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&export).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let removed = home.ok(&["id", "rm", "alice", "--yes"]);
    assert!(removed.contains("removed identity \"alice\""));
    assert!(!home.ok(&["id", "list"]).contains("alice"));
    let imported = home.ok(&["id", "import", export.to_str().unwrap()]);
    assert_eq!(field(&imported, "id"), id);
    assert_eq!(
        field(&imported, "fingerprint"),
        field(&alice, "fingerprint")
    );

    // The age export is a standard age identity for the same key.
    let age = home.ok(&["id", "export", "alice", "--age"]);
    assert!(age.lines().any(|l| l.starts_with("AGE-SECRET-KEY-1")));
    assert!(age.contains(&field(&alice, "age key")));

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(home.keychain())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn bad_input_gets_distinct_errors_and_changes_nothing() {
    let home = Home::new();
    home.ok(&["id", "new", "--label", "alice"]);
    let original = std::fs::read(home.keychain()).unwrap();
    let unchanged = || assert_eq!(std::fs::read(home.keychain()).unwrap(), original);

    let wrong = home.run_with(Some("battery staple"), &["id", "new", "--label", "x"]);
    assert_eq!(code(&wrong), 3, "{}", stderr(&wrong));
    assert!(stderr(&wrong).contains("wrong passphrase"));
    unchanged();

    let unknown = home.run(&["id", "show", "nobody"]);
    assert_eq!(code(&unknown), 5);
    assert!(stderr(&unknown).contains("no identity matches \"nobody\""));
    let unknown_rm = home.run(&["id", "rm", "nobody", "--yes"]);
    assert_eq!(code(&unknown_rm), 5);
    unchanged();

    let dup = home.run(&["id", "new", "--label", "alice"]);
    assert_eq!(code(&dup), 6);
    assert!(stderr(&dup).contains("already labelled \"alice\""));
    unchanged();

    let bad_label = home.run(&["id", "new", "--label", ""]);
    assert_eq!(code(&bad_label), 4);
    assert!(stderr(&bad_label).contains("invalid label"));
    unchanged();

    let bad_uri = home.run(&["id", "compare", "alice", "mtos:id:abc"]);
    assert_eq!(code(&bad_uri), 4);
    assert!(stderr(&bad_uri).contains("malformed mtos URI"));
    let not_uri = home.run(&["id", "compare", "alice", "https://example.org"]);
    assert_eq!(code(&not_uri), 4);
    assert!(stderr(&not_uri).contains("not an mtos URI"));

    let junk = home.path().join("junk.txt");
    std::fs::write(&junk, "hello\n").unwrap();
    let bad_import = home.run(&["id", "import", junk.to_str().unwrap()]);
    assert_eq!(code(&bad_import), 4);
    assert!(stderr(&bad_import).contains("not an mtos secret identity file"));
    let missing = home.run(&["id", "import", "/nonexistent/file"]);
    assert_eq!(code(&missing), 5);
    unchanged();

    // Without --yes and without a terminal, rm refuses.
    let rm = home.run(&["id", "rm", "alice"]);
    assert_eq!(code(&rm), 6);
    assert!(stderr(&rm).contains("--yes"));
    unchanged();

    // Export never overwrites a file.
    let target = home.path().join("existing");
    std::fs::write(&target, "precious").unwrap();
    let over = home.run(&["id", "export", "alice", "-o", target.to_str().unwrap()]);
    assert_eq!(code(&over), 6);
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");

    // No passphrase source at all.
    let none = home.run_with(None, &["id", "list"]);
    assert_eq!(code(&none), 1);
    assert!(stderr(&none).contains("MTOS_PASSPHRASE"));

    // Every error is one line.
    for out in [
        &wrong,
        &unknown,
        &dup,
        &bad_uri,
        &bad_import,
        &rm,
        &over,
        &none,
    ] {
        assert_eq!(stderr(out).trim_end().lines().count(), 1, "{}", stderr(out));
    }
}

#[test]
fn damaged_keychain_is_reported_and_left_alone() {
    let home = Home::new();
    home.ok(&["id", "new", "--label", "alice"]);
    let original = std::fs::read(home.keychain()).unwrap();

    let truncated = &original[..original.len() / 2];
    std::fs::write(home.keychain(), truncated).unwrap();
    let out = home.run(&["id", "new", "--label", "bob"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(stderr(&out).contains("damaged"));
    assert_eq!(std::fs::read(home.keychain()).unwrap(), truncated);

    let mut tampered = original.clone();
    let last = tampered.len() - 3;
    tampered[last] ^= 0xff;
    std::fs::write(home.keychain(), &tampered).unwrap();
    let out = home.run(&["id", "rm", "alice", "--yes"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert_eq!(std::fs::read(home.keychain()).unwrap(), tampered);

    let missing = Home::new();
    let out = missing.run(&["id", "list"]);
    assert_eq!(code(&out), 5);
    assert!(stderr(&out).contains("mtos id new"));
}

#[test]
fn every_command_explains_itself_with_an_example() {
    let home = Home::new();
    for args in [
        vec!["--help"],
        vec!["id", "--help"],
        vec!["id", "new", "--help"],
        vec!["id", "list", "--help"],
        vec!["id", "show", "--help"],
        vec!["id", "compare", "--help"],
        vec!["id", "export", "--help"],
        vec!["id", "import", "--help"],
        vec!["id", "rm", "--help"],
        vec!["id", "passwd", "--help"],
        vec!["screen", "--help"],
    ] {
        let out = home.ok(&args);
        assert!(
            out.contains("Example"),
            "mtos {args:?} --help has no example"
        );
    }
    // Every top-level command says what it is for.
    let help = home.ok(&["--help"]);
    for command in [
        "id", "contact", "item", "publish", "fetch", "follow", "feed", "screen", "net", "testnet",
    ] {
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{command} ")))
            .unwrap_or_else(|| panic!("mtos --help does not list {command}:\n{help}"));
        assert!(
            line.split_whitespace().count() > 2,
            "mtos --help does not describe {command}: {line:?}"
        );
    }
}

#[test]
fn passphrase_change_replaces_the_old_one() {
    let home = Home::new();
    home.ok(&["id", "new", "--label", "alice"]);
    let out = Command::new(env!("CARGO_BIN_EXE_mtos"))
        .arg("--home")
        .arg(home.path())
        .args(["id", "passwd"])
        .env("MTOS_PASSPHRASE", "correct horse")
        .env("MTOS_NEW_PASSPHRASE", "battery staple")
        .env("MTOS_KDF_LOG_N", "4")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let old = home.run_with(Some("correct horse"), &["id", "list"]);
    assert_eq!(code(&old), 3);
    let new = home.run_with(Some("battery staple"), &["id", "list"]);
    assert!(new.status.success());
    assert!(String::from_utf8_lossy(&new.stdout).contains("alice"));

    // A wrong current passphrase changes nothing.
    let before = std::fs::read(home.keychain()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mtos"))
        .arg("--home")
        .arg(home.path())
        .args(["id", "passwd"])
        .env("MTOS_PASSPHRASE", "wrong")
        .env("MTOS_NEW_PASSPHRASE", "x")
        .env("MTOS_KDF_LOG_N", "4")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&out), 3);
    assert_eq!(std::fs::read(home.keychain()).unwrap(), before);
}
