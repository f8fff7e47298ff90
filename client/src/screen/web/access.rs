//! Who may use the web screen (`specs/screen.md` §8), and its access log.
//!
//! No cookie: browsers send a host's cookies to every port of it, so a
//! cookie would reach any other server on 127.0.0.1 the browser is sent
//! to. Instead, a one-time token (minted per `mtos screen web`, valid
//! [`TOKEN_TTL`]) travels in the address's fragment, which the browser
//! never sends; the page trades it for a session secret, keeps that in
//! its tab's `sessionStorage` (per origin, so per port) and sends it as
//! the `X-Mtos-Session` header on every request. A header no other origin
//! can set without a CORS preflight the screen never answers: it is the
//! CSRF token too.

use std::collections::{HashSet, VecDeque};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};

use crate::Home;

/// How long a minted token may wait to be used.
pub const TOKEN_TTL: Duration = Duration::from_secs(600);
/// Tokens waiting at once; minting more forgets the oldest.
const TOKENS: usize = 16;
/// Sessions at once (tabs); a new one ends the oldest.
const SESSIONS: usize = 64;
/// Bytes the access log may reach before it is moved to `.1`.
const LOG_CAP: u64 = 4 << 20;

/// 32 random bytes, as lowercase base32 without padding.
pub(super) fn secret() -> String {
    let bytes: [u8; 32] = rand::random();
    data_encoding::BASE32_NOPAD
        .encode(&bytes)
        .to_ascii_lowercase()
}

/// Secrets are kept by their hash: a lookup compares hashes, so its
/// timing says nothing about the secret.
fn key(secret: &str) -> [u8; 32] {
    *blake3::hash(secret.as_bytes()).as_bytes()
}

/// Session hashes, and the order they were opened in.
type Sessions = (HashSet<[u8; 32]>, VecDeque<[u8; 32]>);

/// The web screen's tokens and sessions.
#[derive(Debug)]
pub struct Access {
    /// The bound port.
    pub port: u16,
    tokens: Mutex<VecDeque<([u8; 32], Instant)>>,
    /// The sessions' hashes, and the order they were opened in.
    sessions: Mutex<Sessions>,
}

impl Access {
    pub(super) fn new(port: u16) -> Self {
        Self {
            port,
            tokens: Mutex::new(VecDeque::new()),
            sessions: Mutex::new((HashSet::new(), VecDeque::new())),
        }
    }

    /// A new address to open: `http://127.0.0.1:PORT/#token=T`, its token
    /// good once, for [`TOKEN_TTL`].
    pub fn mint(&self) -> String {
        let token = secret();
        if let Ok(mut t) = self.tokens.lock() {
            t.retain(|(_, at)| at.elapsed() < TOKEN_TTL);
            if t.len() >= TOKENS {
                t.pop_front();
            }
            t.push_back((key(&token), Instant::now()));
        }
        format!("http://127.0.0.1:{}/#token={token}", self.port)
    }

    /// Trades a token (once) for a new session secret.
    pub(super) fn open_session(&self, token: &str) -> Option<String> {
        let k = key(token);
        {
            let mut t = self.tokens.lock().ok()?;
            let at = t.iter().position(|(h, _)| *h == k)?;
            let (_, minted) = t.remove(at)?;
            if minted.elapsed() >= TOKEN_TTL {
                return None;
            }
        }
        let session = secret();
        let mut s = self.sessions.lock().ok()?;
        let (map, order) = &mut *s;
        if order.len() >= SESSIONS
            && let Some(old) = order.pop_front()
        {
            map.remove(&old);
        }
        map.insert(key(&session));
        order.push_back(key(&session));
        Some(session)
    }

    /// Whether `session` is one this screen gave.
    pub(super) fn valid(&self, session: &str) -> bool {
        self.sessions
            .lock()
            .is_ok_and(|s| s.0.contains(&key(session)))
    }
}

/// The access log ([`super::ACCESS_LOG`]): one line per request, its
/// time, method, path and status. Never the query, a header or a body.
/// Past [`LOG_CAP`] it moves to `.1` (one generation kept), so requests
/// that anyone on the machine can send cannot erase more than that.
pub(in crate::screen) struct AccessLog {
    path: PathBuf,
    file: Mutex<Option<std::fs::File>>,
}

impl AccessLog {
    pub(super) fn open(home: &Home) -> Self {
        let path = home.dir().join(super::ACCESS_LOG);
        let file = Self::create(&path);
        Self {
            path,
            file: Mutex::new(file),
        }
    }

    fn create(path: &std::path::Path) -> Option<std::fs::File> {
        let mut o = std::fs::OpenOptions::new();
        o.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(0o600);
        }
        o.open(path).ok()
    }

    /// Records one request. Paths are printable ASCII by the time the
    /// router sees them (percent-encoded otherwise); anything else is
    /// escaped all the same.
    pub(super) fn record(&self, method: &Method, path: &str, status: StatusCode) {
        let Ok(mut file) = self.file.lock() else {
            return;
        };
        if file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .is_some_and(|m| m.len() > LOG_CAP)
        {
            let mut old = self.path.clone().into_os_string();
            old.push(".1");
            let _ = std::fs::rename(&self.path, old);
            *file = Self::create(&self.path);
        }
        if let Some(f) = file.as_mut() {
            let path: String = path
                .chars()
                .take(200)
                .flat_map(char::escape_default)
                .collect();
            let _ = writeln!(
                f,
                "{} {} {} {}",
                mtos_net::unix_now(),
                method,
                path,
                status.as_u16()
            );
        }
    }
}
