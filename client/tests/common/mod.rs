//! What the `mtos` command tests share: a temporary home, the real binary
//! run in it with the passphrase from `MTOS_PASSPHRASE`, and readers of
//! its `field: value` output.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The passphrase the tests' keychains are sealed with.
pub const PASSPHRASE: &str = "correct horse";

pub struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path().join(name)
    }

    pub fn keychain(&self) -> PathBuf {
        self.path().join("keychain.age")
    }

    pub fn run_with(&self, passphrase: Option<&str>, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mtos"));
        cmd.arg("--home")
            .arg(self.path())
            .args(args)
            .env_remove("MTOS_HOME")
            .env_remove("MTOS_PASSPHRASE")
            .env("MTOS_KDF_LOG_N", "4")
            .stdin(Stdio::null());
        if let Some(p) = passphrase {
            cmd.env("MTOS_PASSPHRASE", p);
        }
        cmd.output().unwrap()
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with(Some(PASSPHRASE), args)
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "mtos {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a command that must fail with `code` and one line of stderr
    /// holding `message`.
    pub fn fails(&self, args: &[&str], code: i32, message: &str) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "mtos {args:?}: {stderr}");
        assert!(stderr.contains(message), "mtos {args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        stderr
    }
}

pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The value of the first `name: value` line.
pub fn field(text: &str, name: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .trim()
        .to_owned()
}
