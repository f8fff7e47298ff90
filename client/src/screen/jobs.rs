//! The screen's queued work: publishes and fetches, each recorded in the
//! home's `pending/` directory before any of it is sent and forgotten
//! once done, so a screen that stops (or is killed) takes it up again at
//! its next start; chunks the replicas acknowledged are never sent
//! again (`crate::transfer`). A few jobs run at once; each asks the
//! screen's one session, so they share its payload slots.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mtos_crypto::item::ItemRef;
use tokio::sync::{Semaphore, broadcast};

use super::api::{ApiError, ErrorKind, Event, JobInfo, Line, Reply, TransferDone};
use super::state::Screen;
use crate::ClientError;
use crate::pending::{PendingPublish, PendingPublishes};

/// Jobs queued or running at once; more are refused as busy.
pub(super) const MAX_JOBS: usize = 256;
/// Jobs running at once (the rest wait): each keeps up to
/// `TransferOptions::parallel` requests in flight.
pub(super) const RUNNING: usize = 2;
/// Runs of a job that failed on the network before it is given up (its
/// record stays: the next start, or the same command, resumes it).
pub(super) const ATTEMPTS: u32 = 3;
/// The wait between them.
pub(super) const RETRY_AFTER: Duration = Duration::from_secs(10);
/// Finished jobs kept to answer `attach` and `jobs`.
const FINISHED_KEPT: usize = 64;

/// What a job does.
#[derive(Debug, Clone)]
pub(super) enum JobKind {
    /// Puts a sealed item (and its feed entry).
    Publish {
        /// Its author's id, for the feed entry.
        author: Option<String>,
    },
    /// Fetches an item into the store.
    Fetch,
}

struct Job {
    kind: JobKind,
    /// Its record's name in `pending/`.
    key: String,
    reference: ItemRef,
    state: &'static str,
    done: u64,
    total: u64,
    events: broadcast::Sender<Line>,
    result: Option<Result<TransferDone, ApiError>>,
    task: Option<tokio::task::AbortHandle>,
    /// Taken up from `pending/` at the screen's start: the command that
    /// queued it may be run again to collect it, even once it is over.
    resumed: bool,
    /// Its result reached a client.
    collected: bool,
}

/// The table of jobs.
pub(super) struct Jobs {
    table: Mutex<BTreeMap<u64, Job>>,
    next: AtomicU64,
    running: Arc<Semaphore>,
}

impl Default for Jobs {
    fn default() -> Self {
        Self {
            table: Mutex::default(),
            next: AtomicU64::new(1),
            running: Arc::new(Semaphore::new(RUNNING)),
        }
    }
}

fn unusable() -> ApiError {
    ApiError::new(ErrorKind::Failure, "the screen's job table is unusable")
}

impl Jobs {
    /// The job filed under `key` that a request for the same work joins:
    /// one queued or running, or one taken up at the start whose result
    /// no client has collected yet (the command interrupted by the
    /// screen's end, run again).
    pub(super) fn joinable(&self, key: &str) -> Option<u64> {
        let table = self.table.lock().ok()?;
        table
            .iter()
            .find(|(_, j)| {
                j.key == key
                    && (j.result.is_none()
                        || (j.resumed && !j.collected && matches!(j.result, Some(Ok(_)))))
            })
            .map(|(id, _)| *id)
    }

    /// Queued and running work, then what finished lately.
    pub(super) fn list(&self) -> Vec<JobInfo> {
        let Ok(table) = self.table.lock() else {
            return Vec::new();
        };
        table
            .iter()
            .map(|(id, j)| JobInfo {
                job: *id,
                kind: match j.kind {
                    JobKind::Publish { .. } => "publish",
                    JobKind::Fetch => "fetch",
                }
                .into(),
                reference: j.reference.to_uri(),
                state: j.state.into(),
                done: j.done,
                total: j.total,
            })
            .collect()
    }

    /// Subscribes to job `id`'s events; its result instead if it is over.
    pub(super) fn attach(
        &self,
        id: u64,
    ) -> Result<Result<broadcast::Receiver<Line>, Result<TransferDone, ApiError>>, ApiError> {
        let mut table = self.table.lock().map_err(|_| unusable())?;
        let job = table
            .get_mut(&id)
            .ok_or_else(|| ApiError::new(ErrorKind::NotFound, format!("no job {id}")))?;
        Ok(match &job.result {
            Some(r) => {
                job.collected = true;
                Err(r.clone())
            }
            None => Ok(job.events.subscribe()),
        })
    }

    /// Cancels job `id`: its task stops, its record is forgotten (what
    /// was stored or fetched stays).
    pub(super) fn cancel(&self, screen: &Screen, id: u64) -> Result<(), ApiError> {
        let key = {
            let mut table = self.table.lock().map_err(|_| unusable())?;
            let job = table
                .get_mut(&id)
                .ok_or_else(|| ApiError::new(ErrorKind::NotFound, format!("no job {id}")))?;
            if job.result.is_some() {
                return Err(ApiError::new(
                    ErrorKind::Conflict,
                    format!("job {id} is over already"),
                ));
            }
            if let Some(task) = job.task.take() {
                task.abort();
            }
            job.state = "cancelled";
            let result = Err(ApiError::new(
                ErrorKind::Cancelled,
                format!("job {id} was cancelled"),
            ));
            let _ = job.events.send(Line::Error(ApiError::new(
                ErrorKind::Cancelled,
                format!("job {id} was cancelled"),
            )));
            job.result = Some(result);
            job.key.clone()
        };
        PendingPublishes::of(&screen.home).done(&key);
        Ok(())
    }

    /// Queues a job (its record written already) and starts its task.
    pub(super) fn start(
        &self,
        screen: &Arc<Screen>,
        key: String,
        reference: ItemRef,
        kind: JobKind,
        resumed: bool,
    ) -> Result<u64, ApiError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        {
            let mut table = self.table.lock().map_err(|_| unusable())?;
            let live = table.values().filter(|j| j.result.is_none()).count();
            if live >= MAX_JOBS {
                return Err(ApiError::new(
                    ErrorKind::Busy,
                    format!("{live} jobs are queued already: try again later"),
                ));
            }
            // Forget the oldest finished jobs.
            let finished: Vec<u64> = table
                .iter()
                .filter(|(_, j)| j.result.is_some())
                .map(|(id, _)| *id)
                .collect();
            for old in finished
                .iter()
                .take(finished.len().saturating_sub(FINISHED_KEPT))
            {
                table.remove(old);
            }
            let (events, _) = broadcast::channel(64);
            table.insert(
                id,
                Job {
                    kind,
                    key,
                    reference,
                    state: "queued",
                    done: 0,
                    total: 0,
                    events,
                    result: None,
                    task: None,
                    resumed,
                    collected: false,
                },
            );
        }
        let task = tokio::spawn(run(screen.clone(), id));
        if let Ok(mut table) = self.table.lock()
            && let Some(job) = table.get_mut(&id)
        {
            job.task = Some(task.abort_handle());
        }
        Ok(id)
    }

    /// Job `id`'s result reached a client: the record of a publish that
    /// finished uncollected is forgotten.
    pub(super) fn collected(&self, screen: &Screen, id: u64) {
        let mut key = None;
        self.update(id, |j| {
            j.collected = true;
            key = Some(j.key.clone());
        });
        let pending = PendingPublishes::of(&screen.home);
        if let Some(key) = key
            && pending.published(&key).is_some()
        {
            pending.done(&key);
        }
    }

    /// A publish that finished before the screen stopped with nobody told
    /// (its record says so), as a finished job the same command collects.
    fn finished(&self, screen: &Arc<Screen>, key: String, publish: PendingPublish) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let chunks = crate::transfer::item_chunks(&screen.store, &publish.reference)
            .map_or(0, |c| c.len() as u64);
        let (events, _) = broadcast::channel(1);
        if let Ok(mut table) = self.table.lock() {
            table.insert(
                id,
                Job {
                    kind: JobKind::Publish {
                        author: publish.author,
                    },
                    key,
                    reference: publish.reference.clone(),
                    state: "done",
                    done: chunks,
                    total: chunks,
                    events,
                    result: Some(Ok(TransferDone {
                        job: id,
                        reference: publish.reference.to_uri(),
                        chunks,
                        transferred: 0,
                        requests: 0,
                        secs: 0.0,
                        feed_entry: None,
                    })),
                    task: None,
                    resumed: true,
                    collected: false,
                },
            );
        }
    }

    fn update(&self, id: u64, f: impl FnOnce(&mut Job)) {
        if let Ok(mut table) = self.table.lock()
            && let Some(job) = table.get_mut(&id)
        {
            f(job);
        }
    }

    fn progress(&self, id: u64, done: u64, total: u64) {
        self.update(id, |j| {
            j.done = done;
            j.total = total;
            let _ = j.events.send(Line::Event(Event::Progress {
                job: id,
                done,
                total,
            }));
        });
    }

    fn note(&self, id: u64, text: String) {
        self.update(id, |j| {
            let _ = j.events.send(Line::Event(Event::Note { text }));
        });
    }

    fn finish(&self, id: u64, result: Result<TransferDone, ApiError>) {
        self.update(id, |j| {
            j.state = if result.is_ok() { "done" } else { "failed" };
            let line = match &result {
                Ok(done) => Line::Ok(Reply::Transfer(done.clone())),
                Err(e) => Line::Error(e.clone()),
            };
            let _ = j.events.send(line);
            j.result = Some(result);
            j.task = None;
        });
    }
}

/// Whether a failure may pass when the job runs again.
fn retryable(e: &ClientError) -> bool {
    matches!(e, ClientError::Network(_))
}

/// Runs job `id` to its end: up to [`ATTEMPTS`] runs while the network
/// fails it, then its result to everyone attached.
async fn run(screen: Arc<Screen>, id: u64) {
    let Some((kind, key, reference)) = screen.jobs.table.lock().ok().and_then(|t| {
        t.get(&id)
            .map(|j| (j.kind.clone(), j.key.clone(), j.reference.clone()))
    }) else {
        return;
    };
    let started = Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        // A run slot for this run only: a job waiting to run again does
        // not hold one.
        let Ok(permit) = screen.jobs.running.clone().acquire_owned().await else {
            return;
        };
        screen.jobs.update(id, |j| j.state = "running");
        let outcome = once(&screen, id, &kind, &reference).await;
        drop(permit);
        match outcome {
            Ok((report, feed_entry)) => {
                // Nobody attached (the command was interrupted): the
                // record says it is done, for the same command to collect
                // after a restart too.
                let watched = screen
                    .jobs
                    .table
                    .lock()
                    .ok()
                    .and_then(|t| t.get(&id).map(|j| j.events.receiver_count() > 0))
                    .unwrap_or(false);
                let pending = PendingPublishes::of(&screen.home);
                match &kind {
                    JobKind::Publish { author } if !watched => {
                        let kept = pending.mark_published(
                            &key,
                            &PendingPublish {
                                reference: reference.clone(),
                                author: author.clone(),
                            },
                        );
                        if kept.is_err() {
                            pending.done(&key);
                        }
                    }
                    _ => pending.done(&key),
                }
                screen.jobs.finish(
                    id,
                    Ok(TransferDone {
                        job: id,
                        reference: reference.to_uri(),
                        chunks: report.chunks,
                        transferred: report.transferred,
                        requests: report.requests,
                        secs: started.elapsed().as_secs_f64(),
                        feed_entry,
                    }),
                );
                eprintln!("screen: job {id} done");
                return;
            }
            Err(e) if retryable(&e) && attempt < ATTEMPTS => {
                eprintln!("screen: job {id}: run {attempt} failed; trying again");
                screen.jobs.update(id, |j| j.state = "waiting");
                screen.jobs.note(
                    id,
                    format!(
                        "{e}; trying again in {} s (run {} of {ATTEMPTS})",
                        RETRY_AFTER.as_secs(),
                        attempt + 1
                    ),
                );
                tokio::time::sleep(RETRY_AFTER).await;
            }
            Err(e) => {
                // A network failure keeps the record: the next start, or
                // the same command, resumes it. Anything else will not
                // pass by asking again.
                if !retryable(&e) {
                    PendingPublishes::of(&screen.home).done(&key);
                }
                eprintln!("screen: job {id} failed");
                screen.jobs.finish(id, Err(ApiError::from(&e)));
                return;
            }
        }
    }
}

/// One run of a job over the current session.
async fn once(
    screen: &Arc<Screen>,
    id: u64,
    kind: &JobKind,
    reference: &ItemRef,
) -> Result<(crate::transfer::TransferReport, Option<(String, u64)>), ClientError> {
    let session = screen.session();
    let progress = |done, total| screen.jobs.progress(id, done, total);
    match kind {
        JobKind::Fetch => Ok((
            crate::transfer::fetch(
                &session,
                &screen.store,
                reference,
                crate::transfer::TransferOptions::default(),
                &progress,
            )
            .await?,
            None,
        )),
        JobKind::Publish { author } => {
            let author = match author {
                Some(a) => Some(screen.identity(Some(a)).await?),
                None => None,
            };
            // The feed book is written under the screen's lock; the
            // chunks are put before it is taken.
            let report = crate::transfer::publish(
                &session,
                &screen.store,
                reference,
                crate::transfer::TransferOptions::default(),
                &progress,
            )
            .await?;
            let _book = screen.book.lock().await;
            let entry =
                crate::work::feed_entry(&screen.home, &session, reference, author.as_ref()).await?;
            Ok((report, entry))
        }
    }
}

/// The records of unfinished work in `pending/` as jobs, at a screen's
/// start.
pub(super) fn resume_all(screen: &Arc<Screen>) -> usize {
    let pending = PendingPublishes::of(&screen.home);
    let mut n = 0;
    for (key, work) in pending.all(&screen.store) {
        let (reference, kind) = match work {
            crate::pending::PendingWork::Publish(PendingPublish { reference, author }) => {
                (reference, JobKind::Publish { author })
            }
            crate::pending::PendingWork::Fetch(reference) => (reference, JobKind::Fetch),
            crate::pending::PendingWork::Published(publish) => {
                screen.jobs.finished(screen, key, publish);
                continue;
            }
        };
        if screen
            .jobs
            .start(screen, key, reference, kind, true)
            .is_ok()
        {
            n += 1;
        }
    }
    n
}
