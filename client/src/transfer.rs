//! Putting an item's chunks on the network and fetching an item through
//! it (`specs/storage.md` §6): every chunk is one request through the
//! mixnet to a random service node, with its own route and reply block,
//! many in flight at once; a lost or failed request is asked again on a
//! fresh route, usually through another service node.
//!
//! Publishing counts a chunk as stored only when the service node
//! reports that all of its replicas hold it, and remembers that in the
//! local store, so an interrupted publish resumes where it stopped and
//! never puts a chunk twice. Fetching walks the item's tree from what the
//! local store holds ([`seal::walk`]), asking for each chunk as soon as
//! the node listing it has arrived, checks every chunk against its
//! locator before keeping it, and so sends nothing at all for an item it
//! holds already.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use mtos_crypto::geometry::CHUNK_SIZE;
use mtos_crypto::item::seal::{self, MAX_SEALED_LEN};
use mtos_crypto::item::walk::Place;
use mtos_crypto::item::{ItemRef, Locator};
use mtos_mixnode::records::Kind;
use mtos_mixnode::service::{Op, Status};
use mtos_net::NetError;

use crate::error::ClientError;
use crate::mixnet::{PutOutcome, Session};
use crate::store::ChunkStore;

/// How a transfer runs.
#[derive(Debug, Clone, Copy)]
pub struct TransferOptions {
    /// Requests in flight at once.
    pub parallel: usize,
    /// How long one request may wait for its answer beyond its turn in
    /// the send and delivery queues (which the transfer adds: twice
    /// `parallel / λP`, since every request and every answer takes one
    /// payload or delivery slot).
    pub timeout: Duration,
    /// Requests per chunk before the transfer gives up on it.
    pub attempts: u32,
}

impl Default for TransferOptions {
    fn default() -> Self {
        Self {
            parallel: 32,
            timeout: Duration::from_secs(30),
            attempts: 5,
        }
    }
}

/// What a transfer did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransferReport {
    /// Chunks of the item.
    pub chunks: u64,
    /// Chunks moved over the network (the rest were done already).
    pub transferred: u64,
    /// Requests sent, retries included.
    pub requests: u64,
}

impl TransferOptions {
    /// These options for a session whose payload slots come at `idle` a
    /// second, and at `peak` in its bulk windows (`client.md` §4.1): at
    /// least 3 s of the peak rate's slots in flight (a request's round
    /// trip crosses the mixes twice, so fewer would leave slots empty in
    /// a window), and the queueing time at the idle rate added to the
    /// timeout.
    fn at_rates(self, idle: f64, peak: f64) -> Self {
        let parallel = if peak.is_finite() && peak > 0.0 {
            self.parallel.max((3.0 * peak).ceil().min(1_000.0) as usize)
        } else {
            self.parallel
        };
        let queued = if idle > 0.0 {
            2.0 * parallel.max(1) as f64 / idle
        } else {
            0.0
        };
        Self {
            parallel,
            timeout: self.timeout + Duration::from_secs_f64(queued.min(3600.0)),
            ..self
        }
    }

    fn for_session(self, session: &Session) -> Self {
        let rates = session.document().rates;
        self.at_rates(rates.payload, rates.peak().payload)
    }
}

/// Makes the stamps of every chunk of the item at `reference` that is
/// not published yet, on every core (`Session::prepare_stamp`), so that
/// its puts then go at the rate of the payload slots. [`publish`] does
/// this first; a caller waiting for a bulk window may do it meanwhile.
/// Returns the stamps made.
pub async fn prepare(
    session: &Session,
    store: &ChunkStore,
    reference: &ItemRef,
) -> Result<u64, ClientError> {
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let mut todo = Vec::new();
    for l in item_chunks(store, reference)? {
        if store
            .published_at(&l)
            .map_err(|e| local(store, e))?
            .is_none()
        {
            todo.push(l);
        }
        if todo.len() >= crate::mixnet::STAMPS_AHEAD {
            break;
        }
    }
    let made: Vec<Result<(), ClientError>> = futures::stream::iter(todo)
        .map(|l| async move {
            let chunk = store.get(&l).map_err(|e| local(store, e))?.ok_or_else(|| {
                ClientError::NotFound(format!("chunk {l} is not in the local store"))
            })?;
            session.prepare_stamp(l, chunk).await
        })
        .buffer_unordered(cores)
        .collect()
        .await;
    let n = made.len() as u64;
    made.into_iter().collect::<Result<(), _>>()?;
    Ok(n)
}

fn local(store: &ChunkStore, e: std::io::Error) -> ClientError {
    ClientError::Store {
        path: store.path().to_owned(),
        reason: e.to_string(),
    }
}

/// Every chunk of the item at `reference` in the local store: manifest
/// nodes and data chunks, root first.
pub fn item_chunks(store: &ChunkStore, reference: &ItemRef) -> Result<Vec<Locator>, ClientError> {
    let tree = seal::inspect(&mut &*store, reference, MAX_SEALED_LEN)?;
    let mut all = Vec::new();
    for node in &tree.nodes {
        all.push(node.locator);
        if node.level == 1 {
            all.extend(node.children.iter().copied());
        }
    }
    Ok(all)
}

/// Puts every chunk of the item at `reference` (sealed into `store`) on
/// the network; returns once the replicas acknowledged each. Chunks
/// acknowledged before (an earlier, interrupted run) are not sent again.
/// `progress(done, total)` is called as chunks are acknowledged.
pub async fn publish(
    session: &Session,
    store: &ChunkStore,
    reference: &ItemRef,
    options: TransferOptions,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<TransferReport, ClientError> {
    let options = options.for_session(session);
    prepare(session, store, reference).await?;
    let all = item_chunks(store, reference)?;
    let total = all.len() as u64;
    let mut todo = Vec::new();
    for l in &all {
        if store
            .published_at(l)
            .map_err(|e| local(store, e))?
            .is_none()
        {
            todo.push(*l);
        }
    }
    let done = AtomicU64::new(total - todo.len() as u64);
    progress(done.load(Ordering::Relaxed), total);
    let requests = AtomicU64::new(0);
    let result = each(&todo, options, &done, total, progress, |l| {
        put_one(session, store, l, options, &requests)
    })
    .await;
    store.sync().map_err(|e| local(store, e))?;
    result?;
    Ok(TransferReport {
        chunks: total,
        transferred: todo.len() as u64,
        requests: requests.into_inner(),
    })
}

/// Runs `op` on every locator, `options.parallel` at once, counting each
/// success in `done` and reporting `progress(done, total)`; the first
/// error, once all have run.
async fn each<F, Fut>(
    locators: &[Locator],
    options: TransferOptions,
    done: &AtomicU64,
    total: u64,
    progress: &(dyn Fn(u64, u64) + Sync),
    op: F,
) -> Result<(), ClientError>
where
    F: Fn(Locator) -> Fut,
    Fut: std::future::Future<Output = Result<(), ClientError>>,
{
    let results: Vec<Result<(), ClientError>> = futures::stream::iter(locators.iter().copied())
        .map(|l| {
            let fut = op(l);
            async move {
                fut.await?;
                progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
                Ok(())
            }
        })
        .buffer_unordered(options.parallel.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

/// What to make of one answer.
enum Verdict<T> {
    /// Done, with this.
    Done(T),
    /// Ask again (why this attempt failed).
    Again(String),
}

/// Sends `op` on `locator` until `judge` takes an answer, at most
/// `options.attempts` times, each on a fresh route (usually through
/// another service node), after 1, 2, 4… s; `Err(last reason)` when no
/// attempt was taken.
async fn ask_until<T>(
    session: &Session,
    op: Op,
    locator: &Locator,
    options: TransferOptions,
    requests: &AtomicU64,
    mut judge: impl FnMut(Result<mtos_mixnode::service::Response, ClientError>) -> Verdict<T>,
) -> Result<Result<T, String>, ClientError> {
    let mut last = String::new();
    for attempt in 0..options.attempts.max(1) {
        if attempt > 0 {
            tokio::time::sleep(backoff(attempt)).await;
        }
        requests.fetch_add(1, Ordering::Relaxed);
        let answer = session.request(op.clone(), *locator, options.timeout).await;
        // A closed session answers nothing again: asking more is pointless.
        if let Err(ClientError::Network(NetError::Closed(why))) = answer {
            return Err(NetError::Closed(why).into());
        }
        match judge(answer) {
            Verdict::Done(t) => return Ok(Ok(t)),
            Verdict::Again(why) => last = why,
        }
    }
    Ok(Err(last))
}

async fn put_one(
    session: &Session,
    store: &ChunkStore,
    locator: Locator,
    options: TransferOptions,
    requests: &AtomicU64,
) -> Result<(), ClientError> {
    let locator = &locator;
    let chunk = store
        .get(locator)
        .map_err(|e| local(store, e))?
        .ok_or_else(|| {
            ClientError::NotFound(format!("chunk {locator} is not in the local store"))
        })?;
    // Each attempt through a service node not caught lying; a chunk
    // counts as stored only with K receipts its replicas signed.
    let attempts = options.attempts.max(1);
    let mut last = String::new();
    for attempt in 0..attempts {
        if attempt > 0 {
            tokio::time::sleep(backoff(attempt)).await;
        }
        requests.fetch_add(1, Ordering::Relaxed);
        let outcome = session
            .put(Kind::Chunk, *locator, chunk.clone(), options.timeout)
            .await;
        match outcome {
            Ok(PutOutcome::Stored { .. }) => {
                return store
                    .mark_published(locator, mtos_net::unix_now())
                    .map_err(|e| local(store, e));
            }
            // A full or busy replica may take it later; anything else
            // about the chunk itself will not change.
            Ok(PutOutcome::Refused(reason)) if reason == "quota" || reason == "full" => {
                last = format!("refused ({reason})");
            }
            Ok(PutOutcome::Refused(reason)) => {
                return Err(ClientError::Refused(format!(
                    "the network refused chunk {locator}: {reason}"
                )));
            }
            Ok(PutOutcome::Unproven(why)) => last = why,
            Ok(PutOutcome::Lied(lie)) => {
                last = format!("a service node lied ({lie}) and is avoided");
            }
            // A closed session answers nothing again: asking more is
            // pointless.
            Err(ClientError::Network(NetError::Closed(why))) => {
                return Err(NetError::Closed(why).into());
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(NetError::GaveUp(format!(
        "chunk {locator} was not stored after {attempts} attempts: {last}"
    ))
    .into())
}

/// Waits between attempts: 1, 2, 4… seconds, at most 16.
fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(4))
}

/// Fetches every chunk of the item at `reference` that `store` lacks,
/// checking each against its locator, until the whole tree is local.
/// Each chunk is asked for as soon as the manifest node listing it has
/// arrived ([`seal::walk`]), `options.parallel` at once, so the request
/// slots stay busy while the rest of a tree level is on its way.
/// `progress(done, known)` counts chunks fetched against chunks known to
/// be needed so far (the tree reveals itself as it arrives).
pub async fn fetch(
    session: &Session,
    store: &ChunkStore,
    reference: &ItemRef,
    options: TransferOptions,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<TransferReport, ClientError> {
    let options = options.for_session(session);
    let requests = AtomicU64::new(0);
    let mut walk = seal::walk(reference, MAX_SEALED_LEN);
    let root = walk.root();
    let (mut done, mut known) = (0u64, 0u64);
    // Each pass fetches every chunk it learns of or fails, so the walk
    // from the root finds nothing lacking after a pass that succeeded;
    // it is asked again all the same, as the final check.
    loop {
        let lacking = walk.lacking_below(&mut &*store, &root, Place::Root)?;
        if lacking.is_empty() {
            break;
        }
        // The same chunk listed twice is asked for once.
        let mut asked: HashSet<Locator> = HashSet::new();
        let mut queue: VecDeque<(Locator, Place)> = VecDeque::new();
        for (l, p) in lacking {
            if asked.insert(l) {
                queue.push_back((l, p));
            }
        }
        known += queue.len() as u64;
        progress(done, known);
        let mut out = FuturesUnordered::new();
        let mut first_error = None;
        loop {
            while out.len() < options.parallel.max(1) && first_error.is_none() {
                let Some((l, place)) = queue.pop_front() else {
                    break;
                };
                let requests = &requests;
                out.push(async move {
                    (
                        l,
                        place,
                        get_one(session, store, l, options, requests).await,
                    )
                });
            }
            let Some((l, place, result)) = out.next().await else {
                break;
            };
            // The first error ends the pass once the requests out have
            // run (their chunks are kept for the next try). A data
            // chunk's walk finds nothing; a node's, its lacking children.
            let revealed = match result.and_then(|()| {
                walk.lacking_below(&mut &*store, &l, place)
                    .map_err(ClientError::from)
            }) {
                Ok(revealed) => revealed,
                Err(e) => {
                    first_error.get_or_insert(e);
                    continue;
                }
            };
            done += 1;
            for (c, p) in revealed {
                if asked.insert(c) {
                    known += 1;
                    queue.push_back((c, p));
                }
            }
            progress(done, known);
        }
        if let Some(e) = first_error {
            store.sync().map_err(|e| local(store, e))?;
            return Err(e);
        }
    }
    store.remember(reference).map_err(|e| local(store, e))?;
    store.sync().map_err(|e| local(store, e))?;
    Ok(TransferReport {
        chunks: item_chunks(store, reference)?.len() as u64,
        transferred: done,
        requests: requests.into_inner(),
    })
}

async fn get_one(
    session: &Session,
    store: &ChunkStore,
    locator: Locator,
    options: TransferOptions,
    requests: &AtomicU64,
) -> Result<(), ClientError> {
    let locator = &locator;
    let mut not_found = 0;
    let outcome = ask_until(
        session,
        Op::Get(Kind::Chunk),
        locator,
        options,
        requests,
        |answer| match answer {
            // Checked here too: a service node could lie.
            Ok(r) if r.status == Status::Ok => {
                if r.body.len() == CHUNK_SIZE && locator.matches(&r.body) {
                    Verdict::Done(r.body)
                } else {
                    Verdict::Again("an answer that does not match the locator".into())
                }
            }
            Ok(r) if r.status == Status::NotFound => {
                not_found += 1;
                Verdict::Again("not found on its replicas".into())
            }
            Ok(r) => Verdict::Again(format!("{:?}", r.status)),
            Err(e) => Verdict::Again(e.to_string()),
        },
    )
    .await?;
    let last = match outcome {
        Ok(chunk) => return store.put(locator, &chunk).map_err(|e| local(store, e)),
        Err(last) => last,
    };
    let message = format!(
        "chunk {locator} of the item could not be fetched after {} attempts ({not_found} not found): {last}",
        options.attempts.max(1)
    );
    Err(if not_found > 0 {
        ClientError::NotFound(message)
    } else {
        NetError::GaveUp(message).into()
    })
}
