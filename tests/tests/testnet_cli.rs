//! `mtos testnet up / status / demo / down` as a newcomer runs them, and
//! a testnet that fails half-way leaves no process behind.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use mtos_tests::{mtos_binary, node_binary};

/// Pids of processes whose command line mentions `dir`.
fn processes_in(dir: &Path) -> Vec<u32> {
    let needle = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
        })
        .collect()
}

fn mtos(args: &[&str]) -> std::process::Output {
    Command::new(mtos_binary())
        .args(args)
        .env("MTOS_NODE_BIN", node_binary())
        .output()
        .unwrap()
}

/// Stops a testnet even when an assertion failed.
struct Down<'a>(&'a Path);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = mtos(&["testnet", "down", "--dir", &self.0.to_string_lossy()]);
        for pid in processes_in(self.0) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

#[test]
fn a_testnet_comes_up_carries_messages_and_goes_down() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("tn");
    let d = dir.to_str().unwrap();
    let _down = Down(&dir);
    let up = mtos(&["testnet", "up", "--dir", d, "--per-layer", "1"]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let text = String::from_utf8_lossy(&up.stdout).into_owned();
    assert_eq!(text.matches("/metrics").count(), 5, "{text}");
    assert_eq!(
        processes_in(&dir).len(),
        8,
        "three voting authorities and five nodes"
    );
    assert!(
        text.contains("3 authorities, a document needs 2 signatures"),
        "{text}"
    );
    // A second `up` on the same directory refuses.
    let again = mtos(&["testnet", "up", "--dir", d]);
    assert_eq!(again.status.code(), Some(6));

    let demo = mtos(&["testnet", "demo", "--dir", d, "--messages", "10"]);
    let out = String::from_utf8_lossy(&demo.stdout).into_owned();
    assert!(
        demo.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    assert!(out.contains("delivered: 10 of 10"), "{out}");
    assert!(out.contains("latency: p50"), "{out}");

    let down = mtos(&["testnet", "down", "--dir", d]);
    assert!(down.status.success());
    assert!(String::from_utf8_lossy(&down.stdout).contains("stopped 8 processes"));
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(processes_in(&dir).is_empty(), "{:?}", processes_in(&dir));
    let status = mtos(&["testnet", "status", "--dir", d]);
    assert_eq!(status.status.code(), Some(5));
}

#[test]
fn a_testnet_that_fails_half_way_leaves_nothing_running() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("tn");
    let _down = Down(&dir);
    // A node binary whose layer-2 mixes die as soon as they run.
    let wrapper = root.path().join("flaky-node");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\ncase \"$*\" in run*mix-2-*) exit 3;; esac\nexec {} \"$@\"\n",
            node_binary().display()
        ),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let up = Command::new(mtos_binary())
        .args(["testnet", "up", "--dir", dir.to_str().unwrap()])
        .arg("--node-bin")
        .arg(&wrapper)
        .output()
        .unwrap();
    assert!(!up.status.success());
    let err = String::from_utf8_lossy(&up.stderr);
    assert!(err.contains("mix-2-1") && err.contains("stopped"), "{err}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(processes_in(&dir).is_empty(), "{:?}", processes_in(&dir));
    assert!(!dir.join("testnet.json").exists());
}
