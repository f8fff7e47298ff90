//! What a running screen holds: the home, the keychain it unlocked, the
//! item store, its one session (and the guard gateway it keeps), the
//! queued work, and the feed schedule's state.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use mtos_crypto::{ExposeSecret, SecretString};
use mtos_crypto::{Identity, Keychain};
use mtos_mixnode::directory::Ticket;
use tokio::sync::{Notify, broadcast};

use super::api::{FeedEntryInfo, Status};
use super::jobs::Jobs;
use super::server::ScreenOptions;
use crate::mixnet::{Session, SessionOptions};
use crate::store::{ChunkStore, STORE_DIR};
use crate::{ClientError, Home};

/// The keychain as unlocked, and what reloads it when `mtos id` changes
/// the file: the passphrase, held as long as the keys it opens are.
pub(super) struct Keys {
    pub(super) keychain: Option<Keychain>,
    pub(super) passphrase: Option<SecretString>,
    pub(super) modified: Option<SystemTime>,
}

/// A running screen.
pub(super) struct Screen {
    pub(super) home: Home,
    pub(super) options: ScreenOptions,
    pub(super) store: ChunkStore,
    keys: Mutex<Keys>,
    session: Mutex<(Arc<Session>, Instant)>,
    /// The network the session is on.
    network: Mutex<Option<crate::mixnet::NetworkConfig>>,
    pub(super) sessions: AtomicU64,
    pub(super) started: Instant,
    pub(super) jobs: Jobs,
    /// Held across anything that loads, changes and saves the feed book.
    pub(super) book: tokio::sync::Mutex<()>,
    /// Held while a publish or fetch is admitted (checked against queued
    /// work, sealed, recorded, started).
    pub(super) admit: tokio::sync::Mutex<()>,
    pub(super) last_poll: Mutex<Option<u64>>,
    /// The scheduled rounds' count (their rotation over the follows).
    pub(super) round: AtomicU64,
    /// The count of rounds asked for (`mtos feed`), apart.
    pub(super) asked_round: AtomicU64,
    pub(super) entries: broadcast::Sender<FeedEntryInfo>,
    pub(super) stop: Notify,
    /// The web screen's access, when it serves one.
    pub(super) web: std::sync::OnceLock<Arc<super::web::access::Access>>,
}

/// `guard.json`: the gateway kept, for the network it belongs to.
#[derive(serde::Serialize, serde::Deserialize)]
struct Guard {
    network: String,
    gateway: String,
    /// The ticket of the screen's bulk windows on this network
    /// (`client.md` §4.1), kept so they come round at the same times.
    #[serde(default)]
    ticket: Option<u16>,
}

impl Screen {
    pub(super) fn new(
        home: Home,
        options: ScreenOptions,
        keys: Keys,
        session: Session,
        store: ChunkStore,
    ) -> Arc<Self> {
        let (entries, _) = broadcast::channel(256);
        let network = home.network().ok();
        let screen = Arc::new(Self {
            home,
            options,
            store,
            keys: Mutex::new(keys),
            network: Mutex::new(network),
            session: Mutex::new((Arc::new(session), Instant::now())),
            sessions: AtomicU64::new(1),
            started: Instant::now(),
            jobs: Jobs::default(),
            book: tokio::sync::Mutex::new(()),
            admit: tokio::sync::Mutex::new(()),
            last_poll: Mutex::new(None),
            round: AtomicU64::new(rand::RngExt::random_range(&mut rand::rng(), 0..1 << 32)),
            asked_round: AtomicU64::new(rand::RngExt::random_range(&mut rand::rng(), 0..1 << 32)),
            entries,
            stop: Notify::new(),
            web: std::sync::OnceLock::new(),
        });
        screen.save_guard();
        screen
    }

    /// The session in use.
    pub(super) fn session(&self) -> Arc<Session> {
        self.session
            .lock()
            .map(|s| s.0.clone())
            .unwrap_or_else(|p| p.into_inner().0.clone())
    }

    /// Opens the item store of `home`.
    pub(super) fn open_store(home: &Home) -> Result<ChunkStore, ClientError> {
        home.ensure()?;
        ChunkStore::open(&home.dir().join(STORE_DIR))
    }

    /// The guard gateway kept for `network`, if any.
    fn kept(home: &Home, network: &str) -> Option<Guard> {
        let text = std::fs::read_to_string(home.dir().join(super::GUARD_FILE)).ok()?;
        let guard: Guard = serde_json::from_str(&text).ok()?;
        (guard.network == network).then_some(guard)
    }

    pub(super) fn guard(home: &Home, network: &str) -> Option<[u8; 32]> {
        let guard = Self::kept(home, network)?;
        data_encoding::HEXLOWER
            .decode(guard.gateway.as_bytes())
            .ok()?
            .try_into()
            .ok()
    }

    /// The ticket a screen's sessions ask for: none when the person
    /// turned bulk windows off, else the one kept for the network
    /// (`None`: a new one is drawn, and kept).
    pub(super) fn ticket(home: &Home, network: &str, bulk_windows: bool) -> Option<Ticket> {
        if !bulk_windows {
            return Some(Ticket::NONE);
        }
        Self::kept(home, network)?
            .ticket
            .map(Ticket)
            .filter(|t| *t != Ticket::NONE)
    }

    pub(super) fn save_guard(&self) {
        let Ok(config) = self.home.network() else {
            return;
        };
        let kept = Self::kept(&self.home, &config.network).and_then(|g| g.ticket);
        let guard = Guard {
            network: config.network,
            gateway: data_encoding::HEXLOWER.encode(&self.session().address().gateway),
            // The ticket drawn, kept while windows are on; a screen with
            // them off keeps the one it had.
            ticket: match self.session().windows().0 {
                Ticket::NONE => kept,
                t => Some(t.0),
            },
        };
        if let Ok(text) = serde_json::to_string(&guard) {
            let path = self.home.dir().join(super::GUARD_FILE);
            let _ = std::fs::remove_file(&path);
            let _ = mtos_crypto::create_owner_only(&path, (text + "\n").as_bytes());
        }
    }

    /// Opens a session to the home's network through its guard (a new
    /// guard when the document no longer lists it, or `fresh_guard`), and
    /// puts it in place of the current one.
    pub(super) async fn reconnect(&self, fresh_guard: bool) -> Result<(), ClientError> {
        let config = self.home.network()?;
        if let Ok(mut network) = self.network.lock() {
            *network = Some(config.clone());
        }
        let gateway = if fresh_guard {
            None
        } else {
            Self::guard(&self.home, &config.network)
        };
        let session = Session::connect_with(
            &config,
            &SessionOptions {
                gateway,
                schedule_seed: None,
                ticket: Self::ticket(&self.home, &config.network, self.options.bulk_windows),
            },
        )
        .await?;
        if let Ok(mut s) = self.session.lock() {
            *s = (Arc::new(session), Instant::now());
        }
        self.sessions.fetch_add(1, Ordering::Relaxed);
        self.save_guard();
        Ok(())
    }

    /// After `mtos net use`: a new session only when the home's network
    /// is not the one the session is on (a new session is a new identity
    /// and schedule the gateway sees begin); `Ok(false)` when unchanged.
    pub(super) async fn network_changed(&self) -> Result<bool, ClientError> {
        let config = self.home.network()?;
        let same = self
            .network
            .lock()
            .map(|n| n.as_ref() == Some(&config))
            .unwrap_or(false);
        if same {
            return Ok(false);
        }
        self.reconnect(false).await?;
        Ok(true)
    }

    /// Watches the session: when its document no longer lists its gateway
    /// (the guard left the network), a new guard is chosen; a document
    /// that expired and cannot be refreshed is waited out (the session
    /// refreshes it). Every `every`.
    pub(super) async fn supervise(self: Arc<Self>, every: Duration) {
        loop {
            tokio::time::sleep(every).await;
            let session = self.session();
            let doc = session.document();
            let listed = doc.nodes.iter().any(|n| n.key == session.address().gateway);
            if session.health().is_ok() && !listed {
                eprintln!("screen: the guard gateway left the network document; choosing another");
                if let Err(e) = self.reconnect(true).await {
                    eprintln!("screen: reconnecting failed: {e}");
                }
            }
        }
    }

    /// The identity `query` names (or the only one), reloading the
    /// keychain if its file changed since it was unlocked.
    pub(super) async fn identity(&self, query: Option<&str>) -> Result<Identity, ClientError> {
        let keys = self.keychain().await?;
        let keychain = keys.as_ref().ok_or_else(|| {
            ClientError::NotFound(
                "no keychain in this home: `mtos id new` first (then restart the screen)".into(),
            )
        })?;
        match (query, keychain.identities()) {
            (Some(q), _) => Ok(keychain.find(q)?.clone()),
            (None, [only]) => Ok(only.clone()),
            (None, []) => Err(ClientError::NotFound("no identity in the keychain".into())),
            (None, _) => Err(ClientError::Refused(
                "several identities: choose one with --as ID".into(),
            )),
        }
    }

    /// The keychain, reloaded with the passphrase kept when its file
    /// changed since (`mtos id new`, `import`). The key derivation runs
    /// off the runtime's workers and outside the lock, so the session's
    /// send loop never waits on it; a reload that fails (`mtos id
    /// passwd` changed the passphrase) keeps the keychain unlocked at
    /// start and is not tried again until the file changes again.
    pub(super) async fn keychain(&self) -> Result<Option<Keychain>, ClientError> {
        let file = self.home.keychain();
        let modified = std::fs::metadata(file.path())
            .and_then(|m| m.modified())
            .ok();
        let pass = {
            let keys = self
                .keys
                .lock()
                .map_err(|_| ClientError::Refused("the screen's keychain is unusable".into()))?;
            if modified == keys.modified {
                return Ok(keys.keychain.clone());
            }
            match &keys.passphrase {
                Some(p) => SecretString::from(p.expose_secret().to_owned()),
                None => return Ok(keys.keychain.clone()),
            }
        };
        let loaded = tokio::task::spawn_blocking(move || file.load(&pass))
            .await
            .map_err(|e| ClientError::Refused(format!("the keychain reload stopped: {e}")))?;
        let mut keys = self
            .keys
            .lock()
            .map_err(|_| ClientError::Refused("the screen's keychain is unusable".into()))?;
        keys.modified = modified;
        match loaded {
            Ok(k) => keys.keychain = Some(k),
            Err(e) => eprintln!(
                "screen: the changed keychain could not be opened with the passphrase given at start ({}); the keys unlocked then stay in use: restart the screen",
                e
            ),
        }
        Ok(keys.keychain.clone())
    }

    /// Creates an identity and saves the keychain with the passphrase
    /// the screen was unlocked with; a home without a keychain gets one
    /// under `new_passphrase` ([`Screen::edit_keychain_with`]).
    pub(super) async fn add_identity(
        self: &std::sync::Arc<Self>,
        label: Option<mtos_crypto::Label>,
        visibility: mtos_crypto::Visibility,
        new_passphrase: Option<SecretString>,
    ) -> Result<Identity, ClientError> {
        self.edit_keychain_with(new_passphrase, move |keychain| {
            let label = match label {
                Some(l) => l,
                None => keychain.free_label()?,
            };
            let identity =
                Identity::generate(&mut rand::rng(), label, visibility, mtos_net::unix_now());
            keychain.add(identity.clone())?;
            Ok(identity)
        })
        .await
    }

    /// Changes the keychain with `edit` and saves it with the passphrase
    /// the screen was unlocked with (under the file's lock, off the
    /// runtime's workers); a failed edit writes nothing.
    pub(super) async fn edit_keychain<T: Send + 'static>(
        self: &std::sync::Arc<Self>,
        edit: impl FnOnce(&mut Keychain) -> Result<T, ClientError> + Send + 'static,
    ) -> Result<T, ClientError> {
        self.edit_keychain_with(None, edit).await
    }

    /// Whether [`Screen::edit_keychain_with`] could save the keychain
    /// (asked before an exchange whose end it saves, so nothing received
    /// is lost).
    pub(super) fn keychain_writable(&self, with_new_passphrase: bool) -> Result<(), ClientError> {
        let kept = self
            .keys
            .lock()
            .map_err(|_| ClientError::Refused("the screen's keychain is unusable".into()))?
            .passphrase
            .is_some();
        let exists = self.home.keychain().exists();
        match (kept, with_new_passphrase, exists) {
            (true, _, _) | (false, true, false) => Ok(()),
            (false, _, true) => Err(ClientError::Refused(
                "the screen was started without the keychain's passphrase: restart the screen"
                    .into(),
            )),
            (false, false, false) => Err(ClientError::Refused(
                "this home has no keychain yet: choose its passphrase".into(),
            )),
        }
    }

    /// [`Screen::edit_keychain`]; a home without a keychain gets one under
    /// `new_passphrase`, which the screen keeps from then on (as if it had
    /// been given at start). The passphrase never goes back out.
    pub(super) async fn edit_keychain_with<T: Send + 'static>(
        self: &std::sync::Arc<Self>,
        new_passphrase: Option<SecretString>,
        edit: impl FnOnce(&mut Keychain) -> Result<T, ClientError> + Send + 'static,
    ) -> Result<T, ClientError> {
        let kept = {
            let keys = self
                .keys
                .lock()
                .map_err(|_| ClientError::Refused("the screen's keychain is unusable".into()))?;
            keys.passphrase
                .as_ref()
                .map(|p| SecretString::from(p.expose_secret().to_owned()))
        };
        let file = self.home.keychain();
        let pass = match (kept, new_passphrase) {
            (Some(p), _) => p,
            (None, Some(_)) if file.exists() => {
                return Err(ClientError::Refused(format!(
                    "{} exists but the screen was started without its passphrase: restart the screen",
                    file.path().display()
                )));
            }
            (None, Some(p)) => p,
            (None, None) if file.exists() => {
                return Err(ClientError::Refused(
                    "the screen was started without the keychain's passphrase: restart the screen"
                        .into(),
                ));
            }
            (None, None) => {
                return Err(ClientError::Refused(
                    "this home has no keychain yet: choose its passphrase".into(),
                ));
            }
        };
        let cost = crate::passphrase::kdf_cost()?;
        let me = self.clone();
        let pass2 = SecretString::from(pass.expose_secret().to_owned());
        let (out, keychain) = tokio::task::spawn_blocking(move || {
            let file = me.home.keychain();
            me.home.ensure()?;
            let _lock = file.lock()?;
            let mut keychain = if file.exists() {
                file.load(&pass2)?
            } else {
                Keychain::new()
            };
            let out = edit(&mut keychain)?;
            file.save(&keychain, &pass2, cost)?;
            Ok::<_, ClientError>((out, keychain))
        })
        .await
        .map_err(|e| ClientError::Refused(format!("the keychain change stopped: {e}")))??;
        let modified = std::fs::metadata(self.home.keychain().path())
            .and_then(|m| m.modified())
            .ok();
        let mut keys = self
            .keys
            .lock()
            .map_err(|_| ClientError::Refused("the screen's keychain is unusable".into()))?;
        keys.keychain = Some(keychain);
        keys.modified = modified;
        keys.passphrase = Some(pass);
        Ok(out)
    }

    /// The X25519 secrets of the keychain's identities, to open private
    /// items addressed to them.
    pub(super) async fn item_secrets(
        &self,
    ) -> Result<Vec<zeroize::Zeroizing<[u8; 32]>>, ClientError> {
        Ok(self
            .keychain()
            .await?
            .map(|k| {
                k.identities()
                    .iter()
                    .map(|i| zeroize::Zeroizing::new(i.x25519_secret_bytes()))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// What `mtos screen status` shows.
    pub(super) fn status(&self) -> Status {
        let (session, connected) = self
            .session
            .lock()
            .map(|s| (s.0.clone(), s.1))
            .unwrap_or_else(|p| {
                let s = p.into_inner();
                (s.0.clone(), s.1)
            });
        let doc = session.document();
        let stats = session.stats();
        let gateway = session.address().gateway;
        let gateway_addrs = doc
            .node(&gateway)
            .map(|n| n.addrs.clone())
            .unwrap_or_default();
        let follows = crate::feeds::FeedBook::load(&self.home)
            .map(|b| b.follows.len() as u64)
            .unwrap_or(0);
        Status {
            pid: std::process::id(),
            network: doc.network.clone(),
            gateway: data_encoding::HEXLOWER.encode(&gateway),
            gateway_addrs,
            peer_id: session.peer_id().to_string(),
            up_secs: self.started.elapsed().as_secs(),
            connected_secs: connected.elapsed().as_secs(),
            sessions: self.sessions.load(Ordering::Relaxed),
            sent_real: stats.sent_real,
            sent_cover: stats.sent_cover,
            loops_returned: stats.loops_returned,
            link_breaks: stats.link_breaks,
            slots_skipped: stats.slots_skipped,
            epoch: doc.epoch,
            jobs: self.jobs.list(),
            follows,
            poll_every_secs: self.options.poll_every.as_secs(),
            last_poll: self.last_poll.lock().ok().and_then(|l| *l),
            store_chunks: self.store.approximate_chunks(),
            store_bytes: dir_size(self.store.path()),
            windows: {
                let (asked, granted) = session.windows();
                let timeline = session.class_timeline();
                let now = mtos_mixnode::Instant::ZERO
                    + Duration::from_millis(
                        crate::work::unix_ms().saturating_sub(timeline.origin_unix_ms),
                    );
                super::api::WindowsInfo {
                    ticket: (asked != Ticket::NONE).then_some(asked.0),
                    granted,
                    in_window: timeline.in_window(now),
                    next_change_ms: timeline.next_change(now).map(|t| {
                        timeline.origin_unix_ms
                            + u64::try_from(t.since_origin().as_millis()).unwrap_or(0)
                    }),
                    origin_ms: timeline.origin_unix_ms,
                }
            },
        }
    }
}

/// Bytes the files under `dir` take.
fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}
