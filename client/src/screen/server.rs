//! The screen's process: it takes the home's lock, unlocks the keychain,
//! opens the store and the session, takes up unfinished work, polls the
//! followed feeds on its schedule, and answers its socket until asked to
//! stop (or until SIGTERM / SIGINT).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mtos_crypto::SecretString;
use tokio::net::UnixListener;
use tokio::sync::Semaphore;

use super::api::{self, ApiError, ErrorKind, FeedEntryInfo, Line};
use super::jobs;
use super::state::{Keys, Screen};
use super::{ScreenLock, socket_path};
use crate::mixnet::{Session, SessionOptions};
use crate::{ClientError, Home};

/// How long a starting screen keeps trying to open its session while the
/// network fails it: within the 120 s `mtos screen start` waits.
const CONNECT_PATIENCE: Duration = Duration::from_secs(90);

/// Whether opening a session failed as a network not ready yet fails (no
/// agreed document, no gateway listed or answering), not as a wrong
/// configuration or a document that does not verify.
fn not_ready(e: &mtos_net::NetError) -> bool {
    use mtos_net::NetError as N;
    matches!(
        e,
        N::NoRoute(_)
            | N::Timeout(_)
            | N::QueueFull(_)
            | N::DocumentExpired(_)
            | N::Refused { .. }
            | N::Link(_)
            | N::GaveUp(_)
    )
}

/// How a screen runs.
#[derive(Debug, Clone)]
pub struct ScreenOptions {
    /// Seconds between scheduled poll rounds.
    pub poll_every: Duration,
    /// The cover schedule's seed, for tests that check the schedule
    /// against it (`None`: drawn; never give a seed used before, which
    /// would repeat a schedule a gateway saw).
    pub schedule_seed: Option<[u8; 32]>,
    /// Serve the web screen on 127.0.0.1 at this port (0: a free one).
    pub web: Option<u16>,
    /// Take bulk windows (`client.md` §4.1): off, the screen stays in the
    /// idle class, and large transfers take their time.
    pub bulk_windows: bool,
}

impl Default for ScreenOptions {
    fn default() -> Self {
        Self {
            poll_every: super::DEFAULT_POLL_EVERY,
            schedule_seed: None,
            web: None,
            bulk_windows: true,
        }
    }
}

/// Connections served at once; more wait.
const CONNECTIONS: usize = 64;
/// How often the guard is checked against the document.
const SUPERVISE_EVERY: Duration = Duration::from_secs(30);

/// Runs the screen of `home` until it is asked to stop. `lock` is held
/// for its life; `passphrase` unlocks the keychain (`None`: the home has
/// none). `ready` is called once the socket answers, with the web
/// screen's port when it serves one.
pub async fn run(
    home: Home,
    _lock: &ScreenLock,
    passphrase: Option<SecretString>,
    options: ScreenOptions,
    ready: impl FnOnce(&api::Status, Option<u16>),
) -> Result<(), ClientError> {
    let file = home.keychain();
    let keys = match passphrase {
        Some(pass) => Keys {
            keychain: Some(file.load(&pass)?),
            modified: std::fs::metadata(file.path())
                .and_then(|m| m.modified())
                .ok(),
            passphrase: Some(pass),
        },
        None => Keys {
            keychain: None,
            passphrase: None,
            modified: None,
        },
    };
    let config = home.network()?;
    let store = Screen::open_store(&home)?;
    let session_options = SessionOptions {
        gateway: Screen::guard(&home, &config.network),
        schedule_seed: options.schedule_seed,
        // With a seed given (tests), the ticket comes from it.
        ticket: match options.schedule_seed {
            Some(_) if options.bulk_windows => None,
            _ => Screen::ticket(&home, &config.network, options.bulk_windows),
        },
    };
    // A network that is not ready yet (no agreed document, no gateway
    // listed that answers) is waited for, as a screen left running
    // would: tried again with backoff within `mtos screen start`'s wait.
    let began = std::time::Instant::now();
    let mut backoff = Duration::from_secs(1);
    let session = loop {
        match Session::connect_with(&config, &session_options).await {
            Ok(s) => break s,
            Err(ClientError::Network(e))
                if not_ready(&e) && began.elapsed() + backoff < CONNECT_PATIENCE =>
            {
                eprintln!(
                    "screen: the network is not ready ({e}); trying again in {} s",
                    backoff.as_secs()
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            Err(e) => return Err(e),
        }
    };
    let socket = socket_path(&home);
    // Holding the lock, any socket file is a dead screen's.
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket).map_err(|source| ClientError::Io {
        path: socket.clone(),
        source,
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600)).map_err(
            |source| ClientError::Io {
                path: socket.clone(),
                source,
            },
        )?;
    }
    let owner = owner_uid(&socket);
    let web_port = options.web;
    let screen = Screen::new(home, options, keys, session, store);
    let web = match web_port {
        Some(port) => {
            let (access, task) = super::web::start(screen.clone(), port).await?;
            let _ = screen.web.set(access);
            Some(task)
        }
        None => None,
    };
    let resumed = jobs::resume_all(&screen);
    if resumed > 0 {
        eprintln!("screen: took up {resumed} unfinished job(s)");
    }
    let tasks = [
        tokio::spawn(screen.clone().supervise(SUPERVISE_EVERY)),
        tokio::spawn(poll_loop(screen.clone())),
    ];
    ready(&screen.status(), screen.web.get().map(|a| a.port));
    let slots = Arc::new(Semaphore::new(CONNECTIONS));
    let mut terminate = signal(tokio::signal::unix::SignalKind::terminate());
    let mut interrupt = signal(tokio::signal::unix::SignalKind::interrupt());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors, say: wait, do not spin.
                        eprintln!("screen: accepting a connection failed: {e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                };
                // Only the home's owner: the socket is owner-only, and
                // the peer's uid is checked too.
                let same = stream.peer_cred().is_ok_and(|c| Some(c.uid()) == owner);
                if !same {
                    continue;
                }
                // Never waited for here: a full house answers `busy`, and
                // stop and the signals are still heard.
                match slots.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let screen = screen.clone();
                        tokio::spawn(async move {
                            super::connection::serve(screen, stream).await;
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        tokio::spawn(async move {
                            let (_, mut write) = stream.into_split();
                            let busy = Line::Error(ApiError::new(
                                ErrorKind::Busy,
                                format!("{CONNECTIONS} connections are open: try again later"),
                            ));
                            let _ = tokio::time::timeout(
                                Duration::from_secs(1),
                                api::write_line(&mut write, &busy),
                            )
                            .await;
                        });
                    }
                }
            }
            () = screen.stop.notified() => break,
            _ = recv(&mut terminate) => break,
            _ = recv(&mut interrupt) => break,
        }
    }
    eprintln!("screen: stopping (queued work stays queued)");
    for t in tasks {
        t.abort();
    }
    if let Some(task) = web {
        task.abort();
    }
    let _ = std::fs::remove_file(&socket);
    Ok(())
}

fn signal(kind: tokio::signal::unix::SignalKind) -> Option<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(kind).ok()
}

async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

fn owner_uid(path: &std::path::Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.uid())
}

/// The scheduled poll rounds: one every `poll_every` from a random start
/// within the first interval, whatever is followed (decoys fill a round:
/// `specs/feeds.md` §5) and whatever is found; a round that overruns
/// delays the next, never adds one.
async fn poll_loop(screen: Arc<Screen>) {
    let every = screen.options.poll_every.max(Duration::from_secs(1));
    let first = Duration::from_secs_f64(
        every.as_secs_f64() * rand::RngExt::random::<f64>(&mut rand::rng()),
    );
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + first, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let round = screen.round.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = poll_once(&screen, round).await {
            eprintln!("screen: a poll round failed: {e}");
        }
    }
}

/// Poll round `round`, its new entries told to every watcher. Rounds
/// asked for and scheduled ones run side by side (neither waits for the
/// other; the book is locked only to load and save it), and count their
/// rounds apart, so what a person asks for moves neither when the
/// scheduled rounds go out nor which feeds they probe.
pub(super) async fn poll_once(
    screen: &Arc<Screen>,
    round: u64,
) -> Result<crate::work::RoundReport, ClientError> {
    let session = screen.session();
    let report = crate::work::poll_round(
        &screen.home,
        &session,
        &screen.store,
        round,
        Some(&screen.book),
    )
    .await?;
    if let Ok(mut last) = screen.last_poll.lock() {
        *last = Some(mtos_net::unix_now());
    }
    for e in &report.new {
        let _ = screen.entries.send(FeedEntryInfo {
            feed: e.feed.clone(),
            n: e.entry.n,
            time_ms: e.entry.time_ms,
            item: e.entry.item.clone(),
            fetched: e.not_fetched.is_none(),
        });
    }
    Ok(report)
}
