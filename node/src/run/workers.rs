//! Sphinx work spread over the cores (`specs/mixing.md` §4): a pool of
//! threads that unwrap frames (the header MAC, the public-key operation,
//! the header's and the body's layers) and hand them back; the engine
//! loop, which alone owns the engine, accepts them in their arrival order
//! (the replay check, the key's budget, the hold), so the engine does
//! what one thread would have done, and nothing leaves before its replay
//! check.
//!
//! Written here rather than with a thread-pool crate: the pool is a few
//! lines over `std::sync::mpsc`, and what matters (batches numbered in
//! arrival order, re-ordered on return, a bound on what is in flight) is
//! the engine's, not a pool's.

use std::collections::BTreeMap;
use std::sync::mpsc as std_mpsc;

use mtos_crypto::sphinx::SphinxSecret;
use mtos_mixnode::engine::{DropReason, Unwrapped, WorkerKeys, unwrap_frame};
use mtos_mixnode::format::Sphinx;

use super::*;

/// Frames per job: enough to make a job's hand-offs cheap beside its
/// work (a frame costs about 130 µs), few enough to keep the cores even.
pub(super) const JOB_FRAMES: usize = 32;

struct Job {
    seq: u64,
    keys: Arc<WorkerKeys<SphinxSecret>>,
    frames: Vec<Vec<u8>>,
}

/// The pool, as the engine loop holds it.
pub(super) struct SphinxPool {
    jobs: Option<std_mpsc::SyncSender<Job>>,
    done: mpsc::UnboundedReceiver<(u64, Vec<Unwrapped>)>,
    /// The next job's number, and the next to accept.
    next_seq: u64,
    next_accept: u64,
    /// Jobs back before an earlier one.
    ready: BTreeMap<u64, Vec<Unwrapped>>,
    /// Jobs sent and not yet accepted.
    in_flight: usize,
    limit: usize,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for SphinxPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SphinxPool")
            .field("threads", &self.threads.len())
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

/// How many Sphinx threads `configured` asks for (0: one per core).
pub(super) fn worker_count(configured: u32) -> usize {
    match configured {
        0 => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        n => n as usize,
    }
}

impl SphinxPool {
    /// `workers` threads (at least 2: with one, the engine loop does the
    /// work itself and no pool is made).
    pub(super) fn start(workers: usize) -> std::io::Result<Self> {
        let workers = workers.max(2);
        // Two jobs per thread in flight: one being worked on, one
        // waiting, so no thread idles between jobs.
        let limit = 2 * workers;
        let (jobs, queue) = std_mpsc::sync_channel::<Job>(limit);
        let queue = Arc::new(Mutex::new(queue));
        let (done_tx, done) = mpsc::unbounded_channel();
        let mut threads = Vec::with_capacity(workers);
        for i in 0..workers {
            let (queue, done_tx) = (queue.clone(), done_tx.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("sphinx-{i}"))
                    .spawn(move || work(&queue, &done_tx))?,
            );
        }
        Ok(Self {
            jobs: Some(jobs),
            done,
            next_seq: 0,
            next_accept: 0,
            ready: BTreeMap::new(),
            in_flight: 0,
            limit,
            threads,
        })
    }

    /// Whether another job may go out.
    pub(super) fn has_room(&self) -> bool {
        self.in_flight < self.limit
    }

    /// Hands `frames` (in arrival order) to the workers, under `keys`;
    /// gives them back when no worker takes jobs any more (the caller
    /// then works on them itself).
    pub(super) fn submit(
        &mut self,
        keys: Arc<WorkerKeys<SphinxSecret>>,
        frames: Vec<Vec<u8>>,
    ) -> Result<(), Vec<Vec<u8>>> {
        let Some(jobs) = &self.jobs else {
            return Err(frames);
        };
        let job = Job {
            seq: self.next_seq,
            keys,
            frames,
        };
        // Never full: at most `limit` jobs are out, the channel's size.
        match jobs.try_send(job) {
            Ok(()) => {
                self.next_seq += 1;
                self.in_flight += 1;
                Ok(())
            }
            Err(std_mpsc::TrySendError::Full(job) | std_mpsc::TrySendError::Disconnected(job)) => {
                Err(job.frames)
            }
        }
    }

    /// The next job back, whichever it is.
    pub(super) async fn next_done(&mut self) -> Option<(u64, Vec<Unwrapped>)> {
        self.done.recv().await
    }

    /// A job back already, if any (to take several in one turn of the
    /// engine loop: the replay tags of one turn are committed together).
    pub(super) fn try_done(&mut self) -> Option<(u64, Vec<Unwrapped>)> {
        self.done.try_recv().ok()
    }

    /// Files a job back, and returns the frames now acceptable in arrival
    /// order (none while an earlier job is out).
    pub(super) fn file(&mut self, seq: u64, results: Vec<Unwrapped>) -> Vec<Unwrapped> {
        self.ready.insert(seq, results);
        let mut out = Vec::new();
        while let Some(r) = self.ready.remove(&self.next_accept) {
            out.extend(r);
            self.next_accept += 1;
            self.in_flight = self.in_flight.saturating_sub(1);
        }
        out
    }
}

impl Drop for SphinxPool {
    fn drop(&mut self) {
        // The threads end when the job channel closes.
        self.jobs = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn work(
    queue: &Mutex<std_mpsc::Receiver<Job>>,
    done: &mpsc::UnboundedSender<(u64, Vec<Unwrapped>)>,
) {
    loop {
        let job = match queue.lock() {
            Ok(q) => q.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        // A frame whose unwrap panicked (no input should make it) is
        // dropped as malformed: a job lost would stall every later one
        // behind its number.
        let results = job
            .frames
            .iter()
            .map(|f| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    unwrap_frame::<Sphinx>(&job.keys, f)
                }))
                .unwrap_or_else(|_| Unwrapped::dropped(DropReason::Malformed))
            })
            .collect();
        if done.send((job.seq, results)).is_err() {
            return;
        }
    }
}
