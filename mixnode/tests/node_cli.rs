//! `mtos-node init` and `check` as an operator runs them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};

fn node(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mtos-node"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn init_writes_private_keys_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("n1");
    let out = node(&[
        "init",
        "--dir",
        d.to_str().unwrap(),
        "--role",
        "mix",
        "--layer",
        "2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = d.join("keys/identity.key");
    let before = std::fs::read(&key).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let config = d.join("mtos-node.toml");
    let check = node(&["check", "--config", config.to_str().unwrap()]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(String::from_utf8_lossy(&check.stdout).contains("Mix node"));

    // A second init refuses and leaves the key alone.
    let again = node(&["init", "--dir", d.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));
    assert_eq!(std::fs::read(&key).unwrap(), before);
}

#[test]
fn check_names_the_bad_field_and_missing_keys() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("n2");
    assert!(
        node(&["init", "--dir", d.to_str().unwrap(), "--role", "gateway"])
            .status
            .success()
    );
    let config = d.join("mtos-node.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("127.0.0.1:9402", "nowhere")).unwrap();
    let out = node(&["check", "--config", config.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listen.metrics"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");

    std::fs::write(&config, &text).unwrap();
    std::fs::remove_file(d.join("keys/identity.key")).unwrap();
    let out = node(&["check", "--config", config.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("identity.key"));

    let bad = node(&[
        "init",
        "--dir",
        dir.path().join("n3").to_str().unwrap(),
        "--role",
        "mix",
        "--layer",
        "7",
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--layer 7"));
}
