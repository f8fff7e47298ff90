//! The screen (`specs/screen.md`): one long-lived local process per home
//! that unlocks the keychain once, holds the item store, and keeps one
//! mixnet session whose cover traffic runs for as long as the screen
//! does, through the same gateway over time (a guard). Publishes and
//! fetches are queued work that takes payload slots from the cover
//! stream, and survives a restart; followed feeds are polled on a fixed
//! schedule. Programs reach it through an owner-only Unix socket in the
//! home ([`api`], [`ScreenClient`]).

pub mod api;
mod client;
mod connection;
mod exchange;
mod jobs;
mod server;
mod state;
pub mod web;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::PathBuf;
use std::time::Duration;

pub use client::ScreenClient;
pub use server::{ScreenOptions, run};

use crate::{ClientError, Home};

/// The socket, in the home.
pub const SOCKET_FILE: &str = "screen.sock";
/// The lock held for the screen's life; it names its process.
pub const LOCK_FILE: &str = "screen.lock";
/// The screen's log (`mtos screen start` without `--foreground`).
pub const LOG_FILE: &str = "screen.log";
/// The gateway the screen keeps, by network.
pub const GUARD_FILE: &str = "guard.json";
/// Seconds between scheduled poll rounds, unless configured.
pub const DEFAULT_POLL_EVERY: Duration = Duration::from_secs(300);

/// Where the screen of `home` listens.
pub fn socket_path(home: &Home) -> PathBuf {
    home.dir().join(SOCKET_FILE)
}

/// The lock of a running screen: an exclusive lock on [`LOCK_FILE`] that
/// the kernel releases when the process ends however it ends, so a screen
/// killed with `kill -9` leaves nothing that stops the next one (its
/// socket file is replaced).
#[derive(Debug)]
pub struct ScreenLock {
    _file: File,
}

impl ScreenLock {
    /// Takes the lock of `home`'s screen and writes this process's id in
    /// it; a screen that holds it already is named in a
    /// [`ClientError::Conflict`] (exit 6).
    pub fn acquire(home: &Home) -> Result<Self, ClientError> {
        home.ensure()?;
        let path = home.dir().join(LOCK_FILE);
        let io = |source| ClientError::Io {
            path: path.clone(),
            source,
        };
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&path).map_err(io)?;
        // A few tries: [`ScreenLock::held`] takes the lock for an instant
        // when it asks.
        let mut tries = 0;
        let locked = loop {
            match file.try_lock() {
                Err(std::fs::TryLockError::WouldBlock) if tries < 5 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break other,
            }
        };
        match locked {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let pid = text.trim();
                return Err(ClientError::Conflict(format!(
                    "a screen runs for {} already (pid {}); `mtos screen status` shows it, `mtos screen stop` stops it",
                    home.dir().display(),
                    if pid.is_empty() { "unknown" } else { pid }
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(Self { _file: file })
    }

    /// Whether a screen holds the lock of `home` now (its pid if so).
    pub fn held(home: &Home) -> Option<String> {
        let path = home.dir().join(LOCK_FILE);
        let mut file = OpenOptions::new().read(true).write(true).open(path).ok()?;
        match file.try_lock() {
            Ok(()) => None,
            Err(_) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                Some(text.trim().to_owned())
            }
        }
    }
}
