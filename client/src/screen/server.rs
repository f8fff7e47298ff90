//! The screen's process: it takes the home's lock, unlocks the keychain,
//! opens the store and the session, takes up unfinished work, polls the
//! followed feeds on its schedule, and answers its socket until asked to
//! stop (or until SIGTERM / SIGINT).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mtos_crypto::SecretString;
use mtos_crypto::item::ItemRef;
use mtos_crypto::item::seal::{self, MAX_SEALED_LEN};
use tokio::io::BufReader;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

use super::api::{
    self, API_VERSION, ApiError, CardInfo, Envelope, ErrorKind, Event, FeedEntryInfo, Line,
    MAX_POLL_ROUNDS, Reply, Request, TransferDone,
};
use super::jobs::{self, JobKind};
use super::state::{Keys, Screen};
use super::{ScreenLock, socket_path};
use crate::compose::SealRequest;
use crate::mixnet::{Session, SessionOptions};
use crate::pending::{PendingPublish, PendingPublishes};
use crate::{ClientError, Home};

/// How a screen runs.
#[derive(Debug, Clone)]
pub struct ScreenOptions {
    /// Seconds between scheduled poll rounds.
    pub poll_every: Duration,
    /// The cover schedule's seed, for tests that check the schedule
    /// against it (`None`: drawn; never give a seed used before, which
    /// would repeat a schedule a gateway saw).
    pub schedule_seed: Option<[u8; 32]>,
}

impl Default for ScreenOptions {
    fn default() -> Self {
        Self {
            poll_every: super::DEFAULT_POLL_EVERY,
            schedule_seed: None,
        }
    }
}

/// Connections served at once; more wait.
const CONNECTIONS: usize = 64;
/// How long a connection may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the guard is checked against the document.
const SUPERVISE_EVERY: Duration = Duration::from_secs(30);

/// Runs the screen of `home` until it is asked to stop. `lock` is held
/// for its life; `passphrase` unlocks the keychain (`None`: the home has
/// none). `ready` is called once the socket answers.
pub async fn run(
    home: Home,
    _lock: &ScreenLock,
    passphrase: Option<SecretString>,
    options: ScreenOptions,
    ready: impl FnOnce(&api::Status),
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
    let session = Session::connect_with(
        &config,
        &SessionOptions {
            gateway: Screen::guard(&home, &config.network),
            schedule_seed: options.schedule_seed,
        },
    )
    .await?;
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
    let screen = Screen::new(home, options, keys, session, store);
    let resumed = jobs::resume_all(&screen);
    if resumed > 0 {
        eprintln!("screen: took up {resumed} unfinished job(s)");
    }
    let tasks = [
        tokio::spawn(screen.clone().supervise(SUPERVISE_EVERY)),
        tokio::spawn(poll_loop(screen.clone())),
    ];
    ready(&screen.status());
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
                            serve(screen, stream).await;
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
async fn poll_once(
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

/// Answers one connection: one request, its events, its end.
async fn serve(screen: Arc<Screen>, stream: UnixStream) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let line = match tokio::time::timeout(REQUEST_TIMEOUT, api::read_line(&mut read, api::MAX_LINE))
        .await
    {
        Ok(Ok(Some(line))) => line,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            let _ = send(
                &mut write,
                &Line::Error(ApiError::new(ErrorKind::BadRequest, e.to_string())),
            )
            .await;
            drain(&mut read).await;
            return;
        }
        Err(_) => {
            let _ = send(
                &mut write,
                &Line::Error(ApiError::new(
                    ErrorKind::BadRequest,
                    format!("no request within {} s", REQUEST_TIMEOUT.as_secs()),
                )),
            )
            .await;
            return;
        }
    };
    let request = match parse(&line) {
        Ok(r) => r,
        Err(e) => {
            let _ = send(&mut write, &Line::Error(e)).await;
            drain(&mut read).await;
            return;
        }
    };
    // A client that goes away (Ctrl-C) is noticed when the next line to
    // it cannot be written: what was queued stays queued; a request that
    // sends no events (a poll, a lookup) runs to its end unseen. The end
    // of its input alone says nothing: a client may half-close after its
    // request.
    let stopping = request == Request::Stop;
    let mut out = Out {
        write: &mut write,
        read: &mut read,
    };
    let line = match handle(&screen, request, &mut out).await {
        Ok(Some(reply)) => Line::Ok(reply),
        Ok(None) => return,
        Err(e) => Line::Error(e),
    };
    let _ = send(out.write, &line).await;
    // Once its answer is out: the process ends soon after.
    if stopping {
        screen.stop.notify_one();
    }
}

/// Reads what a refused client sent beyond its request (at most 1 MiB,
/// for at most a second) before the connection closes: a Unix socket
/// closed with unread input resets its peer, which would lose the error
/// line just written.
async fn drain<R: tokio::io::AsyncRead + Unpin>(read: &mut R) {
    let mut sink = tokio::io::sink();
    let mut limited = tokio::io::AsyncReadExt::take(read, 1 << 20);
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        tokio::io::copy(&mut limited, &mut sink),
    )
    .await;
}

/// Parses a request line.
fn parse(line: &str) -> Result<Request, ApiError> {
    let value: serde_json::Value = serde_json::from_str(line)
        .map_err(|e| ApiError::new(ErrorKind::BadRequest, format!("not JSON: {e}")))?;
    match value.get("api").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(API_VERSION) => {}
        Some(v) => {
            return Err(ApiError::new(
                ErrorKind::Version,
                format!("API version {v} asked; this screen speaks {API_VERSION}"),
            ));
        }
        None => {
            return Err(ApiError::new(
                ErrorKind::BadRequest,
                format!("a request names its API version (\"api\": {API_VERSION})"),
            ));
        }
    }
    let envelope: Envelope = serde_json::from_value(value)
        .map_err(|e| ApiError::new(ErrorKind::BadRequest, format!("not a request: {e}")))?;
    Ok(envelope.request)
}

/// Where a request's events go.
struct Out<'a> {
    write: &'a mut tokio::net::unix::OwnedWriteHalf,
    /// The client's side, read only to notice a watcher leave.
    read: &'a mut BufReader<tokio::net::unix::OwnedReadHalf>,
}

impl Out<'_> {
    async fn event(&mut self, e: Event) -> Result<(), ApiError> {
        send(self.write, &Line::Event(e)).await
    }
}

/// How long one line to a client may take to write: a client that stops
/// reading loses its connection, not a slot for ever.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Writes `line` within [`WRITE_TIMEOUT`].
async fn send(write: &mut tokio::net::unix::OwnedWriteHalf, line: &Line) -> Result<(), ApiError> {
    match tokio::time::timeout(WRITE_TIMEOUT, api::write_line(write, line)).await {
        Ok(r) => written(r),
        Err(_) => Err(ApiError::new(
            ErrorKind::Failure,
            "the client stopped reading",
        )),
    }
}

fn written(r: std::io::Result<()>) -> Result<(), ApiError> {
    r.map_err(|e| ApiError::new(ErrorKind::Failure, e.to_string()))
}

fn api_err(e: ClientError) -> ApiError {
    ApiError::from(&e)
}

/// Carries out one request. `Ok(None)`: nothing more to say (a watch
/// that ended).
async fn handle(
    screen: &Arc<Screen>,
    request: Request,
    out: &mut Out<'_>,
) -> Result<Option<Reply>, ApiError> {
    match request {
        Request::Status => Ok(Some(Reply::Status(Box::new(screen.status())))),
        Request::Stop => Ok(Some(Reply::Done)),
        Request::Publish { seal } => publish(screen, seal, out).await.map(Some),
        Request::Fetch { reference } => fetch(screen, &reference, out).await.map(Some),
        Request::Follow { uri, label } => {
            let _book = screen.book.lock().await;
            let (label, owner) = crate::work::follow(&screen.home, &uri, label).map_err(api_err)?;
            Ok(Some(Reply::Followed { label, owner }))
        }
        Request::Poll { rounds } => {
            if rounds == 0 || rounds > MAX_POLL_ROUNDS {
                return Err(ApiError::new(
                    ErrorKind::BadInput,
                    format!("1 to {MAX_POLL_ROUNDS} rounds, not {rounds}"),
                ));
            }
            let (mut new, mut refused, mut again, mut follows) = (0, 0, 0, 0);
            for _ in 0..rounds {
                let round = screen.asked_round.fetch_add(1, Ordering::Relaxed);
                let r = poll_once(screen, round).await.map_err(api_err)?;
                new += r.new.len() as u64;
                refused += r.refused;
                again += r.asked_again;
                follows = r.follows;
                for e in r.new.iter().filter_map(|e| e.not_fetched.as_ref()) {
                    out.event(Event::Note {
                        text: format!("an entry's item was not fetched: {e}"),
                    })
                    .await?;
                }
            }
            Ok(Some(Reply::Polled {
                new,
                refused,
                asked_again: again,
                follows,
            }))
        }
        Request::PublishCard { id } => {
            let identity = screen.identity(Some(&id)).await.map_err(api_err)?;
            if identity.visibility() == mtos_crypto::Visibility::Private {
                return Err(ApiError::new(
                    ErrorKind::Conflict,
                    format!(
                        "\"{}\" is a private identity: private identities are never published",
                        identity.label()
                    ),
                ));
            }
            let (by_key, by_fingerprint) = crate::feeds::publish_card(
                &screen.session(),
                &identity,
                crate::work::unix_ms(),
                crate::transfer::TransferOptions::default(),
            )
            .await
            .map_err(api_err)?;
            Ok(Some(Reply::CardPublished {
                label: identity.label().to_string(),
                fingerprint: identity.fingerprint().to_string(),
                digits: identity.fingerprint().digits().to_string(),
                by_key,
                by_fingerprint,
            }))
        }
        Request::LookupCard { query } => {
            let q = crate::work::card_query(&query).map_err(api_err)?;
            let card = crate::feeds::lookup_card(
                &screen.session(),
                &q,
                crate::transfer::TransferOptions::default(),
            )
            .await
            .map_err(api_err)?
            .ok_or_else(|| {
                ApiError::new(
                    ErrorKind::NotFound,
                    "no card for this identity on the network",
                )
            })?;
            Ok(Some(Reply::Card(CardInfo {
                label: card.identity.label().to_string(),
                id: card.identity.id().to_string(),
                fingerprint: card.identity.fingerprint().to_string(),
                uri: card.identity.to_uri(),
                feed: card.follow.to_uri(),
                time_ms: card.time_ms,
            })))
        }
        Request::Jobs => Ok(Some(Reply::Jobs {
            jobs: screen.jobs.list(),
        })),
        Request::Attach { job } => attach(screen, job, out).await.map(Some),
        Request::Cancel { job } => {
            screen.jobs.cancel(screen, job)?;
            Ok(Some(Reply::Done))
        }
        Request::Watch => {
            // A watcher only listens: the end of its side (or anything it
            // sends) ends the watch at once, so a watcher that left holds
            // no connection until the next entry.
            let mut entries = screen.entries.subscribe();
            let mut byte = [0u8; 1];
            loop {
                let entry = tokio::select! {
                    e = entries.recv() => e,
                    _ = tokio::io::AsyncReadExt::read(out.read, &mut byte) => return Ok(None),
                };
                match entry {
                    Ok(e) => out.event(Event::Entry(e)).await?,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(None),
                }
            }
        }
        Request::Reconnect => {
            screen.network_changed().await.map_err(api_err)?;
            Ok(Some(Reply::Done))
        }
    }
}

/// Follows job `id` to its end, passing its events on.
async fn attach(screen: &Arc<Screen>, id: u64, out: &mut Out<'_>) -> Result<Reply, ApiError> {
    let mut events = match screen.jobs.attach(id)? {
        Ok(events) => events,
        Err(result) => {
            if result.is_ok() {
                screen.jobs.collected(screen, id);
            }
            return result.map(Reply::Transfer);
        }
    };
    loop {
        match events.recv().await {
            Ok(Line::Event(e)) => out.event(e).await?,
            Ok(Line::Ok(reply)) => {
                screen.jobs.collected(screen, id);
                return Ok(reply);
            }
            Ok(Line::Error(e)) => return Err(e),
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                return Err(ApiError::new(ErrorKind::Failure, "the job ended unseen"));
            }
        }
    }
}

/// A publish: joins the same publish if it is queued, takes it up if it
/// was left unfinished, or seals the item and queues it; then follows it.
async fn publish(
    screen: &Arc<Screen>,
    seal: SealRequest,
    out: &mut Out<'_>,
) -> Result<Reply, ApiError> {
    // The screen reads the files by path: only absolute ones, which mean
    // the same to it as to the client that named them.
    if let Some(f) = seal.files.iter().find(|f| !f.is_absolute()) {
        return Err(ApiError::new(
            ErrorKind::BadInput,
            format!("{}: give files by absolute path", f.display()),
        ));
    }
    // One admission at a time, from the check for the same work to the
    // job started: two identical requests never seal two items.
    let admitting = screen.admit.lock().await;
    let digest = {
        let seal = seal.clone();
        tokio::task::spawn_blocking(move || seal.digest())
            .await
            .map_err(|e| ApiError::new(ErrorKind::Failure, e.to_string()))?
            .map_err(api_err)?
    };
    if let Some(job) = screen.jobs.joinable(&digest) {
        drop(admitting);
        out.event(Event::Queued { job, joined: true }).await?;
        return attach(screen, job, out).await;
    }
    let pending = PendingPublishes::of(&screen.home);
    let (reference, author) = match pending.resumable(&digest, &screen.store) {
        Some(p) => {
            out.event(Event::Note {
                text: "resuming the unfinished publish of this item".into(),
            })
            .await?;
            (p.reference, p.author)
        }
        None => {
            let keychain = if seal.needs_keychain() {
                Some(screen.keychain().await.map_err(api_err)?.ok_or_else(|| {
                    ApiError::new(
                        ErrorKind::NotFound,
                        "no keychain in this home: `mtos id new`, or --anonymous",
                    )
                })?)
            } else {
                None
            };
            let screen2 = screen.clone();
            let sealed = tokio::task::spawn_blocking(move || {
                crate::compose::seal_into(
                    &screen2.store,
                    keychain.as_ref(),
                    seal,
                    mtos_net::unix_now(),
                )
            })
            .await
            .map_err(|e| ApiError::new(ErrorKind::Failure, e.to_string()))?
            .map_err(api_err)?;
            out.event(Event::Note {
                text: sealed.summary.clone(),
            })
            .await?;
            let author = sealed.author.as_ref().map(|a| a.id().to_string());
            pending
                .record(
                    &digest,
                    &PendingPublish {
                        reference: sealed.reference.clone(),
                        author: author.clone(),
                    },
                )
                .map_err(api_err)?;
            (sealed.reference, author)
        }
    };
    let job = screen.jobs.start(
        screen,
        digest,
        reference,
        JobKind::Publish { author },
        false,
    )?;
    drop(admitting);
    out.event(Event::Queued { job, joined: false }).await?;
    attach(screen, job, out).await
}

/// A fetch: nothing when the store holds the item; otherwise joins the
/// same fetch or queues one, and follows it.
async fn fetch(
    screen: &Arc<Screen>,
    reference: &str,
    out: &mut Out<'_>,
) -> Result<Reply, ApiError> {
    let parsed = ItemRef::from_uri(reference).map_err(|e| api_err(e.into()))?;
    let held = seal::missing(&mut &screen.store, &parsed, MAX_SEALED_LEN)
        .map_err(|e| api_err(e.into()))?
        .is_empty();
    if held {
        let chunks = crate::transfer::item_chunks(&screen.store, &parsed)
            .map_err(api_err)?
            .len() as u64;
        return Ok(Reply::Transfer(TransferDone {
            job: 0,
            reference: parsed.to_uri(),
            chunks,
            transferred: 0,
            requests: 0,
            secs: 0.0,
            feed_entry: None,
        }));
    }
    let key = PendingPublishes::fetch_key(&parsed);
    let admitting = screen.admit.lock().await;
    if let Some(job) = screen.jobs.joinable(&key) {
        drop(admitting);
        out.event(Event::Queued { job, joined: true }).await?;
        return attach(screen, job, out).await;
    }
    let key = PendingPublishes::of(&screen.home)
        .record_fetch(&parsed)
        .map_err(api_err)?;
    let job = screen
        .jobs
        .start(screen, key, parsed, JobKind::Fetch, false)?;
    drop(admitting);
    out.event(Event::Queued { job, joined: false }).await?;
    attach(screen, job, out).await
}
