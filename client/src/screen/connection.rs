//! One connection to the screen's socket: its request read and checked
//! (`specs/screen.md` §4), carried out, and answered with events and one
//! final line.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mtos_crypto::item::ItemRef;
use mtos_crypto::item::seal::{self, MAX_SEALED_LEN};
use tokio::io::BufReader;
use tokio::net::UnixStream;

use super::api::{
    self, API_VERSION, ApiError, CardInfo, Envelope, ErrorKind, Event, Line, MAX_POLL_ROUNDS,
    Reply, Request, TransferDone,
};
use super::jobs::JobKind;
use super::server::poll_once;
use super::state::Screen;
use crate::ClientError;
use crate::compose::SealRequest;
use crate::pending::{PendingPublish, PendingPublishes};

/// How long a connection may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Answers one connection: one request, its events, its end.
pub(super) async fn serve(screen: Arc<Screen>, stream: UnixStream) {
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
    let mut out = SocketOut {
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
pub(super) fn parse(line: &str) -> Result<Request, ApiError> {
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

/// Where a request's events go: the socket's connection, or a web
/// request's streamed answer (`super::web`).
pub(super) trait Out: Send {
    /// Sends one event; an error when the client has gone.
    fn event(&mut self, e: Event) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// Ends when the client has gone (or sent anything more).
    fn gone(&mut self) -> impl Future<Output = ()> + Send;
}

/// A socket connection's [`Out`].
struct SocketOut<'a> {
    write: &'a mut tokio::net::unix::OwnedWriteHalf,
    /// The client's side, read only to notice a watcher leave.
    read: &'a mut BufReader<tokio::net::unix::OwnedReadHalf>,
}

impl Out for SocketOut<'_> {
    async fn event(&mut self, e: Event) -> Result<(), ApiError> {
        send(self.write, &Line::Event(e)).await
    }

    async fn gone(&mut self) {
        let mut byte = [0u8; 1];
        let _ = tokio::io::AsyncReadExt::read(self.read, &mut byte).await;
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
pub(super) async fn handle(
    screen: &Arc<Screen>,
    request: Request,
    out: &mut impl Out,
) -> Result<Option<Reply>, ApiError> {
    match request {
        Request::Status => Ok(Some(Reply::Status(Box::new(screen.status())))),
        Request::Stop => Ok(Some(Reply::Done)),
        Request::Publish { seal } => publish(screen, *seal, out).await.map(Some),
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
            flag_if_changed(screen, &card.identity, out).await?;
            Ok(Some(Reply::Card(CardInfo::of(&card))))
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
            loop {
                let entry = tokio::select! {
                    e = entries.recv() => e,
                    () = out.gone() => return Ok(None),
                };
                match entry {
                    Ok(e) => out.event(Event::Entry(e)).await?,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(None),
                }
            }
        }
        Request::WindowNow => {
            let session = screen.session();
            session.window_now().map_err(api_err)?;
            // Kept: the screen's windows are that cohort's from now on.
            screen.save_guard();
            Ok(Some(Reply::Done))
        }
        Request::Reconnect => {
            screen.network_changed().await.map_err(api_err)?;
            Ok(Some(Reply::Done))
        }
        Request::ContactInvite { id, wait_secs } => {
            super::exchange::invite(screen, id, wait_secs, out)
                .await
                .map(Some)
        }
        Request::ContactAccept { code, id, label } => {
            super::exchange::accept(screen, &code, id, label, out)
                .await
                .map(Some)
        }
        Request::PairKeys {
            wait_secs,
            new_passphrase,
        } => super::exchange::pair(screen, wait_secs, new_passphrase, out)
            .await
            .map(Some),
        Request::SendKeys { code, ids } => super::exchange::send_keys(screen, &code, &ids, out)
            .await
            .map(Some),
        Request::WebAddress => match screen.web.get() {
            Some(access) => Ok(Some(Reply::WebAddress {
                address: access.mint(),
            })),
            None => Err(ApiError::new(
                ErrorKind::NotFound,
                "the screen serves no web screen: restart it with `mtos screen start --web`",
            )),
        },
    }
}

/// A card found for a contact's verify key with other keys flags the
/// contact (`specs/identity.md` §9): saved, and said to the person.
async fn flag_if_changed(
    screen: &Arc<Screen>,
    record: &mtos_crypto::PublicIdentity,
    out: &mut impl Out,
) -> Result<(), ApiError> {
    let Ok(Some(keychain)) = screen.keychain().await else {
        return Ok(());
    };
    let Some(contact) = keychain.contact_by_key(record.verify_key()) else {
        return Ok(());
    };
    if contact.identity().encryption_key() == record.encryption_key()
        || contact.changed() == Some(record)
    {
        return Ok(());
    }
    let label = contact.label().to_string();
    let seen = record.clone();
    let saved = screen.edit_keychain(move |k| Ok(k.observe(&seen))).await;
    out.event(Event::Note {
        text: match saved {
            Ok(_) => format!(
                "this card has other keys than your contact \"{label}\": the contact is flagged and keeps its old keys (mtos contact show {label})"
            ),
            Err(e) => format!(
                "this card has other keys than your contact \"{label}\"; the flag could not be saved: {e}"
            ),
        },
    })
    .await
}

/// Follows job `id` to its end, passing its events on.
async fn attach(screen: &Arc<Screen>, id: u64, out: &mut impl Out) -> Result<Reply, ApiError> {
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
    out: &mut impl Out,
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
    out: &mut impl Out,
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
