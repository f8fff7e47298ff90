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

/// A node directory whose config points at a (not running) authority.
fn configured_node(dir: &std::path::Path) -> std::path::PathBuf {
    let auth = dir.join("auth");
    let out = node(&["authority", "init", "--dir", auth.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let key = stdout
        .lines()
        .find_map(|l| l.strip_prefix("authority key: "))
        .unwrap();
    let d = dir.join("node");
    assert!(
        node(&["init", "--dir", d.to_str().unwrap()])
            .status
            .success()
    );
    let config = d.join("mtos-node.toml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(
            "authorities = []",
            &format!("authorities = [{{ key = \"{key}\", addr = \"/ip4/127.0.0.1/tcp/9400\" }}]"),
        )
        .replace("/ip4/0.0.0.0/tcp/9401", "/ip4/127.0.0.1/tcp/0")
        .replace("127.0.0.1:9402", "127.0.0.1:0");
    std::fs::write(&config, text).unwrap();
    config
}

fn run_fails(config: &std::path::Path, expected: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_mtos-node"))
        .args(["run", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.trim_end().lines().last().unwrap_or_default();
    assert!(last.starts_with("mtos-node: error: "), "{err}");
    for e in expected {
        assert!(last.contains(e), "{last:?} does not say {e:?}");
    }
}

#[test]
fn run_refuses_bad_setups_with_one_line_and_keeps_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    let config = configured_node(dir.path());
    let key = config.parent().unwrap().join("keys/identity.key");
    let key_bytes = std::fs::read(&key).unwrap();
    let text = std::fs::read_to_string(&config).unwrap();

    // Ports in use.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    std::fs::write(
        &config,
        text.replace("127.0.0.1:0\"", &format!("127.0.0.1:{port}\"")),
    )
    .unwrap();
    run_fails(&config, &["listen.metrics", "in use"]);
    std::fs::write(
        &config,
        text.replace(
            "/ip4/127.0.0.1/tcp/0",
            &format!("/ip4/127.0.0.1/tcp/{port}"),
        ),
    )
    .unwrap();
    run_fails(&config, &["listen.p2p", "in use"]);

    // No authority key, a bad field, a readable or missing key file.
    let no_authority = text
        .lines()
        .map(|l| {
            if l.starts_with("authorities = ") {
                "authorities = []"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&config, no_authority).unwrap();
    run_fails(&config, &["network.authorities"]);
    std::fs::write(
        &config,
        text.replace("queue_limit = 100000", "queue_limit = -1"),
    )
    .unwrap();
    run_fails(&config, &["queue_limit"]);
    std::fs::write(&config, &text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        run_fails(&config, &["identity.key", "chmod 600"]);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    assert_eq!(std::fs::read(&key).unwrap(), key_bytes);
    std::fs::rename(&key, key.with_extension("moved")).unwrap();
    run_fails(&config, &["identity.key"]);
    std::fs::rename(key.with_extension("moved"), &key).unwrap();
    assert_eq!(std::fs::read(&key).unwrap(), key_bytes);
}

#[test]
fn authority_config_errors_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("auth");
    assert!(
        node(&["authority", "init", "--dir", auth.to_str().unwrap()])
            .status
            .success()
    );
    let again = node(&["authority", "init", "--dir", auth.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));
    let config = auth.join("authority.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    for (bad, field) in [
        (text.replace("layers = 3", "layers = 7"), "layers"),
        (
            text.replace("epoch_secs = 3600", "epoch_secs = 0"),
            "epochs.epoch_secs",
        ),
        (
            text.replace("payload = 2.0", "payload = -1.0"),
            "rates.payload",
        ),
        // Subnormal: it passed once, and its gap overflowed a timer.
        (text.replace("drops = 1.0", "drops = 1e-320"), "rates.drops"),
        (
            text.replace("mode = \"poisson\"", "mode = \"fifo\""),
            "mode",
        ),
        (text.replace("allow = []", "allow = [\"beef\"]"), "allow"),
        // Open admission outside a testnet: anyone could fill the layers.
        (
            text.replace("admission = \"approved\"", "admission = \"open\""),
            "admission",
        ),
        (text.replace("threshold = 0", "threshold = 2"), "threshold"),
        (
            text.replace(
                "peers = []",
                "peers = [{ key = \"ab\", addr = \"/ip4/127.0.0.1/tcp/1\" }]",
            ),
            "peers[0].key",
        ),
        (
            text.replace("round_secs = 30", "round_secs = 7200"),
            "epochs.round_secs",
        ),
        (
            text.replace("max_delay_ms = 10000", "max_delay_ms = 99999999"),
            "mixing",
        ),
    ] {
        std::fs::write(&config, bad).unwrap();
        let out = node(&["authority", "run", "--config", config.to_str().unwrap()]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(field), "{err} does not name {field}");
    }
}

#[test]
fn the_operators_binary_refuses_to_start_with_a_faults_section() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("n3");
    assert!(
        node(&["init", "--dir", d.to_str().unwrap(), "--role", "gateway"])
            .status
            .success()
    );
    let config = d.join("mtos-node.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[faults]\ndrop_all = true\n");
    std::fs::write(&config, text).unwrap();
    for command in ["check", "run"] {
        let out = node(&[command, "--config", config.to_str().unwrap()]);
        assert!(!out.status.success(), "{command} accepted [faults]");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("faults"), "{command}: {err}");
    }
}
