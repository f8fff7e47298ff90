//! `mtos screen` as people run it on a local testnet: a wrong
//! passphrase starts nothing (exit 3); a second start on the same home
//! is refused and names the running one (exit 6); after `kill -9` its
//! lock and socket are stale and the next start replaces them; a program
//! speaking garbage to the socket gets an error and the screen goes on;
//! a publish interrupted with Ctrl-C stays queued and can be followed,
//! and one that finished unseen is collected by the same command after a
//! restart.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Output};

use mtos_tests::screen::CliScreen;
use mtos_tests::{CliTestnet, mtos_at, mtos_binary};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn with_passphrase(home: &Path, pass: &str, args: &[&str]) -> Output {
    Command::new(mtos_binary())
        .arg("--home")
        .arg(home)
        .args(args)
        .env("MTOS_PASSPHRASE", pass)
        .env("MTOS_KDF_LOG_N", "10")
        .output()
        .unwrap()
}

/// Sends `bytes` to the screen's socket and reads its one answer line.
fn raw(home: &Path, bytes: &[u8]) -> serde_json::Value {
    let mut s = UnixStream::connect(home.join("screen.sock")).unwrap();
    s.write_all(bytes).unwrap();
    s.shutdown(std::net::Shutdown::Write).ok();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
}

/// Writes 1 MiB of noise to `file` and starts `mtos publish` of it in
/// the background; returns the command and the job the screen queued it
/// as (the first not done).
#[allow(clippy::zombie_processes)] // returned to the caller, which waits on it
fn publish_in_background(home: &Path, file: &Path) -> (std::process::Child, u64) {
    let mut bytes = vec![0u8; 1 << 20];
    rand::RngExt::fill(&mut rand::rng(), &mut bytes[..]);
    std::fs::write(file, bytes).unwrap();
    let mut publishing = Command::new(mtos_binary())
        .arg("--home")
        .arg(home)
        .args(["publish", "--anonymous", file.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let status = mtos_at(home, &["screen", "status", "--json"]);
        let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap_or_default();
        let live = status["jobs"].as_array().and_then(|jobs| {
            jobs.iter()
                .find(|j| j["state"] != "done")
                .and_then(|j| j["job"].as_u64())
        });
        if let Some(job) = live {
            return (publishing, job);
        }
        if std::time::Instant::now() >= deadline {
            let _ = publishing.kill();
            let _ = publishing.wait();
            panic!("the publish was never queued");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_screen_refuses_a_second_start_a_wrong_passphrase_and_garbage_and_survives_kill_9() {
    let root = tempfile::tempdir().unwrap();
    let tn = root.path().join("tn");
    let _net = CliTestnet::up(&tn, &["--per-layer", "1", "--payload-rate", "20"]);
    let home = root.path().join("home");
    let used = mtos_at(&home, &["net", "use", "--testnet", tn.to_str().unwrap()]);
    assert!(used.status.success(), "{}", text(&used.stderr));
    let made = mtos_at(&home, &["id", "new", "--label", "alice"]);
    assert!(made.status.success(), "{}", text(&made.stderr));

    // A wrong passphrase: exit 3, nothing started.
    let wrong = with_passphrase(&home, "not it", &["screen", "start"]);
    assert_eq!(wrong.status.code(), Some(3), "{}", text(&wrong.stderr));
    assert!(!home.join("screen.sock").exists());
    let wrong = with_passphrase(&home, "not it", &["screen", "start", "--foreground"]);
    assert_eq!(wrong.status.code(), Some(3), "{}", text(&wrong.stderr));
    assert!(!home.join("screen.sock").exists());
    let none = mtos_at(&home, &["screen", "status"]);
    assert_eq!(none.status.code(), Some(1));
    assert!(text(&none.stderr).contains("mtos screen start"));

    let screen = CliScreen::start(&home, &["--poll-every", "86400"]);
    let pid = screen.pid().unwrap();
    // A second start is refused and names the running one.
    for args in [
        vec!["screen", "start"],
        vec!["screen", "start", "--foreground"],
    ] {
        let second = mtos_at(&home, &args);
        assert_eq!(second.status.code(), Some(6), "{}", text(&second.stderr));
        assert!(
            text(&second.stderr).contains(&format!("pid {pid}")),
            "{}",
            text(&second.stderr)
        );
    }

    // Garbage, a request too long, an unknown version, an unknown op:
    // each gets an error line; the screen goes on.
    for (bytes, kind) in [
        (b"\x00\xffnot json at all\n".to_vec(), "bad_request"),
        (vec![b'x'; 70_000], "bad_request"),
        (
            b"{\"api\":99,\"request\":{\"op\":\"status\"}}\n".to_vec(),
            "version",
        ),
        (
            b"{\"api\":1,\"request\":{\"op\":\"format_disk\"}}\n".to_vec(),
            "bad_request",
        ),
        (b"{\"api\":1}\n".to_vec(), "bad_request"),
    ] {
        let answer = raw(&home, &bytes);
        assert_eq!(answer["error"]["kind"], kind, "{answer}");
    }
    let answer = raw(&home, b"{\"api\":1,\"request\":{\"op\":\"status\"}}\n");
    assert_eq!(answer["ok"]["pid"], pid, "{answer}");
    let status = screen.status();
    assert_eq!(status["pid"], pid);

    // kill -9: the lock is released with the process; the socket file
    // stays, stale. The next start replaces it.
    screen.kill();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(home.join("screen.sock").exists());
    let stale = mtos_at(&home, &["screen", "status"]);
    assert_eq!(stale.status.code(), Some(1), "{}", text(&stale.stderr));
    let screen = CliScreen::start(&home, &["--poll-every", "86400"]);
    let new_pid = screen.pid().unwrap();
    assert_ne!(new_pid, pid);
    assert_eq!(screen.status()["pid"], new_pid);

    // A publish interrupted with Ctrl-C stays queued in the screen (exit
    // 130, and the command says how to cancel or follow it); `attach`
    // follows it to its reference.
    let interrupted = |name: &str| -> u64 {
        let (publishing, job) = publish_in_background(&home, &root.path().join(name));
        // Ctrl-C reaches the command (the screen is in its own group).
        Command::new("kill")
            .args(["-INT", &publishing.id().to_string()])
            .status()
            .unwrap();
        let out = publishing.wait_with_output().unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(130), "{err}");
        assert!(
            err.contains(&format!("stays queued in the screen as job {job}"))
                && err.contains(&format!("mtos screen cancel {job}")),
            "{err}"
        );
        assert!(text(&out.stdout).is_empty());
        job
    };
    let job = interrupted("first.bin");
    let attached = mtos_at(&home, &["screen", "attach", &job.to_string()]);
    assert!(attached.status.success(), "{}", text(&attached.stderr));
    assert!(text(&attached.stdout).starts_with("mtos:item:"));
    assert_eq!(screen.status()["pid"], new_pid, "the screen went on");
    assert_eq!(std::fs::read_dir(home.join("pending")).unwrap().count(), 0);

    // Interrupted again, and left to finish with nobody told: its record
    // says it is done, across a restart, until the same command, run
    // again, collects the reference.
    let job = interrupted("second.bin");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while screen.status()["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|j| j["job"] == job && j["state"] != "done")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "job {job} never finished"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    drop(screen);
    let records: Vec<String> = std::fs::read_dir(home.join("pending"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert_eq!(records.len(), 1);
    assert!(records[0].ends_with("done\n"), "{records:?}");
    let screen = CliScreen::start(&home, &["--poll-every", "86400"]);
    let file = root.path().join("second.bin");
    let again = mtos_at(&home, &["publish", "--anonymous", file.to_str().unwrap()]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(
        text(&again.stderr).contains("joined job"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(
        text(&again.stdout).trim(),
        records[0].lines().next().unwrap(),
        "the item published before"
    );
    assert_eq!(std::fs::read_dir(home.join("pending")).unwrap().count(), 0);

    // A queued publish cancelled: the command waiting on it is told, the
    // job says so, its record is gone.
    let (publishing, job) = publish_in_background(&home, &root.path().join("third.bin"));
    let cancelled = mtos_at(&home, &["screen", "cancel", &job.to_string()]);
    assert!(cancelled.status.success(), "{}", text(&cancelled.stderr));
    let out = publishing.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("cancelled"),
        "{}",
        text(&out.stderr)
    );
    let jobs = screen.status()["jobs"].clone();
    let state = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job"] == job)
        .map(|j| j["state"].clone());
    assert_eq!(state, Some(serde_json::json!("cancelled")));
    assert_eq!(std::fs::read_dir(home.join("pending")).unwrap().count(), 0);
    let again = mtos_at(&home, &["screen", "cancel", &job.to_string()]);
    assert_eq!(again.status.code(), Some(6), "over already");

    // A full house (64 connections that say nothing): the next is told
    // `busy` at once, and the screen serves again once they are gone.
    let idle: Vec<UnixStream> = (0..64)
        .map(|_| UnixStream::connect(home.join("screen.sock")).unwrap())
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let answer = raw(&home, b"{\"api\":1,\"request\":{\"op\":\"status\"}}\n");
    assert_eq!(answer["error"]["kind"], "busy", "{answer}");
    drop(idle);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let answer = raw(&home, b"{\"api\":1,\"request\":{\"op\":\"status\"}}\n");
    assert_eq!(answer["ok"]["reply"], "status", "{answer}");

    // Stopped, it is gone: socket removed, lock free.
    let stopped = mtos_at(&home, &["screen", "stop"]);
    assert!(stopped.status.success(), "{}", text(&stopped.stderr));
    assert!(text(&stopped.stdout).starts_with("screen stopped"));
    std::mem::forget(screen);
    assert!(!home.join("screen.sock").exists());
    let again = mtos_at(&home, &["screen", "stop"]);
    assert_eq!(again.status.code(), Some(1));
}
