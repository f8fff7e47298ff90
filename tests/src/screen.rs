//! A home's screen in tests: `mtos screen start` with the test
//! passphrase, stopped when dropped (killed if it will not stop), even
//! after a failed assertion.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{mtos_at, mtos_binary};

/// A running screen of a home.
#[derive(Debug)]
pub struct CliScreen {
    /// The home.
    pub home: PathBuf,
}

impl CliScreen {
    /// `mtos screen start ARGS` for `home`; panics with its stderr if it
    /// fails.
    pub fn start(home: &Path, args: &[&str]) -> Self {
        Self::start_env(home, args, &[])
    }

    /// [`CliScreen::start`] with more environment (`MTOS_SCHEDULE_SEED`).
    pub fn start_env(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let out = Command::new(mtos_binary())
            .arg("--home")
            .arg(home)
            .args(["screen", "start"])
            .args(args)
            .env("MTOS_PASSPHRASE", "test passphrase")
            .env("MTOS_KDF_LOG_N", "10")
            .envs(env.iter().copied())
            .output()
            .expect("run mtos screen start");
        assert!(
            out.status.success(),
            "mtos screen start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            home: home.to_owned(),
        }
    }

    /// The screen's process id, from its lock file.
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.home.join(mtos_client::screen::LOCK_FILE))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// `kill -9` of the screen, as a crash would end it.
    pub fn kill(self) {
        self.kill_now();
        std::mem::forget(self);
    }

    fn kill_now(&self) {
        // Only a screen that holds the lock: a dead one's pid may be
        // another process's by now.
        let Ok(home) = mtos_client::Home::resolve(Some(self.home.clone())) else {
            return;
        };
        let held = mtos_client::screen::ScreenLock::held(&home);
        if let Some(pid) = held.and_then(|p| p.parse::<u32>().ok()) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }

    /// `mtos screen status --json`, parsed.
    pub fn status(&self) -> serde_json::Value {
        let out = mtos_at(&self.home, &["screen", "status", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("status is JSON")
    }
}

impl Drop for CliScreen {
    fn drop(&mut self) {
        let stopped = Command::new(mtos_binary())
            .arg("--home")
            .arg(&self.home)
            .args(["screen", "stop"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !stopped {
            self.kill_now();
        }
    }
}

/// The standard output of a command that must succeed; panics with its
/// output otherwise.
pub fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of the first `name: value` line of `text`.
pub fn field(text: &str, name: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .trim()
        .to_owned()
}

/// A new address of `home`'s web screen (`mtos screen web`).
pub fn web_address(home: &Path) -> String {
    let address = ok(mtos_at(home, &["screen", "web"])).trim().to_owned();
    assert!(
        address.starts_with("http://127.0.0.1:") && address.contains("/#token="),
        "{address}"
    );
    address
}

/// A command that prints `code: CODE` first and goes on (an invitation,
/// a pairing), running in the background.
#[derive(Debug)]
pub struct Coded {
    /// The process.
    pub child: std::process::Child,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Coded {
    /// `mtos --home HOME ARGS`; returns it with the code it printed.
    pub fn start(home: &Path, args: &[&str]) -> (Self, String) {
        use std::io::BufRead as _;
        let mut child = Command::new(mtos_binary())
            .arg("--home")
            .arg(home)
            .args(args)
            .env("MTOS_PASSPHRASE", "test passphrase")
            .env("MTOS_KDF_LOG_N", "10")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run mtos");
        let Some(out) = child.stdout.take() else {
            panic!("no stdout");
        };
        let mut stdout = std::io::BufReader::new(out);
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        let Some(code) = line.strip_prefix("code: ").map(|c| c.trim().to_owned()) else {
            let _ = child.kill();
            let out = child.wait_with_output().ok();
            panic!(
                "no code: {line:?} {}",
                out.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                    .unwrap_or_default()
            );
        };
        (Self { child, stdout }, code)
    }

    /// Its end: the status, the rest of its standard output, its errors.
    pub fn finish(mut self) -> std::process::Output {
        let mut rest = Vec::new();
        let _ = std::io::Read::read_to_end(&mut self.stdout, &mut rest);
        let mut out = self.child.wait_with_output().expect("wait for mtos");
        out.stdout = rest;
        out
    }
}
