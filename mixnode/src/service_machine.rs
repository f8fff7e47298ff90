//! A service node's work on client requests (`specs/storage.md` §4), as a
//! machine: a request comes in ([`ServiceMachine::handle_request`]), the
//! machine asks the record's replicas ([`ServiceMachine::poll_ask`]), the
//! driver carries each ask to its replica (over a link, or to its own
//! store) and hands the answer back ([`ServiceMachine::handle_answer`]);
//! an ask not answered within its timeout counts as unreachable
//! ([`ServiceMachine::handle_timeout`]). When a request is settled its
//! response comes out of [`ServiceMachine::poll_answered`] with the
//! request's reply context, which the driver turns into a reply packet.
//!
//! The rules: every ask carries a nonce derived from the client's request
//! id and the replica's key (`receipts::replica_nonce`), and every answer
//! a replica signs is checked here, signature and shape, so that a bad
//! one in a response is the service node's own; a put goes to
//! all K replicas at once and is answered with their signed answers (`Ok`
//! when one stored it, `Refused` when one refused, `Unavailable` when
//! none answered), from which the client counts the receipts itself; a
//! get asks the replicas in rank order and passes on the first record that
//! passes the checks (a replica answering a bad record is skipped and
//! counted), caching chunks; a probe asks every replica of every locator,
//! one ask per replica carrying the locators it is asked about, and is
//! answered with all their signed bitmaps (at most `MAX_SIGNED_ANSWERS`
//! replicas; a probe needing more is a bad request). Sans-IO: no clock,
//! no links, no metrics; the driver exports [`ServiceCounts`].

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use mtos_crypto::item::Locator;

use crate::cache::ChunkCache;
use crate::placement::{StorageNode, replicas};
use crate::receipts::{
    MAX_SIGNED_ANSWERS, Signed, bitmap, encode_list, probe_plan, replica_nonce, split_answer,
    well_formed,
};
use crate::records::{Kind, StampRule, validate};
use crate::replica_proto::{ReplicaOp, ReplicaStatus, put_rest, request_rest, with_nonce};
use crate::service::{Op, Response, Status};
use crate::time::Instant;

/// An ask's number, unique for the machine's life.
pub type AskId = u64;

/// How long a service node waits for one replica by default: a request
/// is answered within it (or the replica counts as unreachable).
pub const DEFAULT_ASK_TIMEOUT: Duration = Duration::from_secs(10);

/// How a service node works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceConfig {
    /// Replicas per record (K).
    pub replicas: usize,
    /// How long one replica may take to answer.
    pub ask_timeout: Duration,
    /// Requests in the machine at once (in work or answered and not yet
    /// polled); beyond it a request is refused as busy.
    pub max_requests: usize,
    /// Chunks cached from replicas' answers (0: none).
    pub cache_chunks: usize,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            replicas: crate::placement::DEFAULT_REPLICAS,
            ask_timeout: DEFAULT_ASK_TIMEOUT,
            max_requests: 64,
            cache_chunks: crate::cache::DEFAULT_CACHE_CHUNKS,
        }
    }
}

/// A client request as the machine takes it: the decoded request with
/// its reply context `T` (the reply block in a node; anything in the
/// simulator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job<T> {
    /// The client's request id (echoed in the response).
    pub id: [u8; 16],
    /// The record's locator (a probe's first).
    pub locator: Locator,
    /// What to do.
    pub op: Op,
    /// Where the answer goes.
    pub reply: T,
}

/// A request refused because the machine is full; the job comes back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Busy<T>(pub Job<T>);

/// One request to one replica for the driver to carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    /// Its number, for [`ServiceMachine::handle_answer`].
    pub id: AskId,
    /// The replica (a node key; possibly this node's own).
    pub node: [u8; 32],
    /// The replica operation.
    pub op: ReplicaOp,
    /// Its body (`replica_proto`).
    pub body: Vec<u8>,
}

/// A settled request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered<T> {
    /// The reply context of its job.
    pub reply: T,
    /// The response to send through it.
    pub response: Response,
    /// Its operation's label (`put_chunk`, `get_slot`, `probe`, ...).
    pub op: &'static str,
    /// When the machine took its request (for the service time).
    pub taken: Instant,
}

/// What the machine did, cumulative (the driver exports differences).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceCounts {
    /// Requests settled, by operation and status label.
    pub answered: BTreeMap<(&'static str, &'static str), u64>,
    /// Requests refused because the machine was full.
    pub busy: u64,
    /// Chunk gets served from the cache.
    pub cache_hits: u64,
    /// Chunk gets that had to ask replicas.
    pub cache_misses: u64,
    /// Replica answers whose record failed the checks (skipped).
    pub bad_records: u64,
    /// Asks that timed out.
    pub ask_timeouts: u64,
    /// Replica answers whose signature did not verify, or whose detail
    /// had a shape its operation does not allow (dropped, as if the
    /// replica had not answered).
    pub bad_signatures: u64,
}

/// An operation's label.
pub fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Put(Kind::Chunk, ..) => "put_chunk",
        Op::Put(Kind::Slot, ..) => "put_slot",
        Op::Get(Kind::Chunk) => "get_chunk",
        Op::Get(Kind::Slot) => "get_slot",
        Op::Probe(_) => "probe",
    }
}

/// A status's label.
pub fn status_name(s: Status) -> &'static str {
    match s {
        Status::Ok => "ok",
        Status::NotFound => "not_found",
        Status::Refused => "refused",
        Status::Unavailable => "unavailable",
        Status::BadRequest => "bad_request",
    }
}

enum Work {
    Put {
        /// The request body after the nonce, which the replicas sign.
        rest: Vec<u8>,
        answers: Vec<Signed>,
        waiting: usize,
    },
    Get {
        kind: Kind,
        /// The request body after the nonce.
        rest: Vec<u8>,
        replicas: Vec<[u8; 32]>,
        next: usize,
        reached: bool,
    },
    Probe {
        /// Per ask: the locators asked (the body after the nonce), how
        /// many, and the scope bitmap over the probe's locators.
        asked: HashMap<usize, (Vec<u8>, usize, Vec<u8>)>,
        answers: Vec<Signed>,
    },
}

struct InWork<T> {
    id: [u8; 16],
    locator: Locator,
    op: &'static str,
    reply: T,
    work: Work,
    taken: Instant,
}

/// One service node's requests in work.
pub struct ServiceMachine<T> {
    config: ServiceConfig,
    next_request: u64,
    next_ask: AskId,
    requests: HashMap<u64, InWork<T>>,
    /// Asks out: their request, (probes) group, replica and deadline.
    pending: HashMap<AskId, (u64, usize, [u8; 32], Instant)>,
    deadlines: BTreeSet<(Instant, AskId)>,
    asks: VecDeque<Ask>,
    answered: VecDeque<Answered<T>>,
    cache: ChunkCache,
    counts: ServiceCounts,
    stamps: StampRule,
}

impl<T> std::fmt::Debug for ServiceMachine<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceMachine")
            .field("requests", &self.requests.len())
            .field("asks_out", &self.pending.len())
            .field("answered", &self.answered.len())
            .finish_non_exhaustive()
    }
}

impl<T> ServiceMachine<T> {
    /// An idle machine.
    pub fn new(config: ServiceConfig) -> Self {
        Self {
            config,
            next_request: 0,
            next_ask: 0,
            requests: HashMap::new(),
            pending: HashMap::new(),
            deadlines: BTreeSet::new(),
            asks: VecDeque::new(),
            answered: VecDeque::new(),
            cache: ChunkCache::new(config.cache_chunks),
            counts: ServiceCounts::default(),
            stamps: StampRule::default(),
        }
    }

    /// What a put's stamp must meet from now on: the driver sets it from
    /// each new document (its epoch and stamp floor; `storage.md` §2).
    pub fn set_stamp_rule(&mut self, rule: StampRule) {
        self.stamps = StampRule {
            any_past: false,
            ..rule
        };
    }

    /// Takes a request at `now`, to be performed against the replicas its
    /// locator has among `storage` (the document's storage nodes).
    pub fn handle_request(
        &mut self,
        now: Instant,
        job: Job<T>,
        storage: &[StorageNode],
    ) -> Result<(), Busy<T>> {
        if self.requests.len() + self.answered.len() >= self.config.max_requests {
            self.counts.busy += 1;
            return Err(Busy(job));
        }
        let key = self.next_request;
        self.next_request += 1;
        let Job {
            id,
            locator,
            op,
            reply,
        } = job;
        let name = op_name(&op);
        let k = self.config.replicas;
        let work = match op {
            Op::Put(kind, record, stamp) => {
                // Checked here too, so a bad record or stamp costs no
                // replica a request.
                if let Err(e) = validate(kind, &locator, &record)
                    .and_then(|()| self.stamps.check(kind, &locator, &record, &stamp))
                {
                    let body = e.name().as_bytes().to_vec();
                    self.finish(now, name, id, reply, Status::Refused, body);
                    return Ok(());
                }
                let rest = put_rest(kind, &locator, &stamp, &record);
                let nodes = replicas(&locator, storage, k);
                for node in &nodes {
                    let body = with_nonce(&replica_nonce(&id, node), &rest);
                    self.ask(now, key, 0, *node, ReplicaOp::Put, body);
                }
                Work::Put {
                    rest,
                    answers: Vec::new(),
                    waiting: nodes.len(),
                }
            }
            Op::Get(kind) => {
                if kind == Kind::Chunk {
                    if let Some(chunk) = self.cache.get(&locator) {
                        let chunk = chunk.to_vec();
                        self.counts.cache_hits += 1;
                        self.finish(now, name, id, reply, Status::Ok, chunk);
                        return Ok(());
                    }
                    self.counts.cache_misses += 1;
                }
                Work::Get {
                    kind,
                    rest: request_rest(kind, &locator, &[]),
                    replicas: replicas(&locator, storage, k),
                    next: 0,
                    reached: false,
                }
            }
            Op::Probe(more) => {
                let locators: Vec<Locator> = std::iter::once(locator).chain(more).collect();
                let plan = probe_plan(&locators, storage, k);
                if plan.len() > MAX_SIGNED_ANSWERS {
                    // More signed answers than a reply holds: the client
                    // sizes its probes to fit (`specs/storage.md` §4).
                    self.finish(now, name, id, reply, Status::BadRequest, Vec::new());
                    return Ok(());
                }
                // One ask per replica, with every locator it is a replica
                // of (a probe has at most `MAX_PROBE` locators, so one ask
                // holds them).
                let mut asked = HashMap::new();
                for (group, (node, indices)) in plan.into_iter().enumerate() {
                    let rest: Vec<u8> = indices
                        .iter()
                        .flat_map(|&i| locators[i].as_bytes().iter().copied())
                        .collect();
                    self.ask(
                        now,
                        key,
                        group,
                        node,
                        ReplicaOp::Probe,
                        with_nonce(&replica_nonce(&id, &node), &rest),
                    );
                    let scope = bitmap(locators.len(), &indices);
                    asked.insert(group, (rest, indices.len(), scope));
                }
                Work::Probe {
                    asked,
                    answers: Vec::new(),
                }
            }
        };
        self.requests.insert(
            key,
            InWork {
                id,
                locator,
                op: name,
                reply,
                work,
                taken: now,
            },
        );
        self.step(now, key);
        Ok(())
    }

    /// The next ask for the driver to carry.
    pub fn poll_ask(&mut self) -> Option<Ask> {
        self.asks.pop_front()
    }

    /// A replica's answer to ask `ask` arrived at `now`: its status and
    /// body, or `None` when the replica could not be reached. An answer
    /// to an ask that timed out (or is unknown) is ignored.
    pub fn handle_answer(
        &mut self,
        now: Instant,
        ask: AskId,
        answer: Option<(ReplicaStatus, Vec<u8>)>,
    ) {
        let Some((key, index, node, deadline)) = self.pending.remove(&ask) else {
            return;
        };
        self.deadlines.remove(&(deadline, ask));
        self.absorb(key, index, node, answer);
        self.step(now, key);
    }

    /// Asks whose time ran out by `now` count as unreachable replicas.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(deadline, ask)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.counts.ask_timeouts += 1;
            self.handle_answer(now, ask, None);
        }
    }

    /// When the next ask runs out of time.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.first().map(|(d, _)| *d)
    }

    /// The next settled request.
    pub fn poll_answered(&mut self) -> Option<Answered<T>> {
        self.answered.pop_front()
    }

    /// What the machine did so far.
    pub fn counts(&self) -> &ServiceCounts {
        &self.counts
    }

    /// Chunks in the cache.
    pub fn cached_chunks(&self) -> usize {
        self.cache.len()
    }

    /// Requests in work.
    pub fn in_work(&self) -> usize {
        self.requests.len()
    }

    fn ask(
        &mut self,
        now: Instant,
        key: u64,
        index: usize,
        node: [u8; 32],
        op: ReplicaOp,
        body: Vec<u8>,
    ) {
        let id = self.next_ask;
        self.next_ask += 1;
        let deadline = now + self.config.ask_timeout;
        self.pending.insert(id, (key, index, node, deadline));
        self.deadlines.insert((deadline, id));
        self.asks.push_back(Ask { id, node, op, body });
    }

    /// Folds one answer (from replica `node`) into its request's state.
    fn absorb(
        &mut self,
        key: u64,
        index: usize,
        node: [u8; 32],
        answer: Option<(ReplicaStatus, Vec<u8>)>,
    ) {
        let Some(request) = self.requests.get_mut(&key) else {
            return;
        };
        let (locator, nonce) = (request.locator, request.id);
        // A signed answer of the shape `op` allows (`asked` locators for
        // a probe) that verifies over `rest`; any other is dropped and
        // counted, as if the replica were silent.
        let nonce = replica_nonce(&nonce, &node);
        let mut check = |answer: Option<(ReplicaStatus, Vec<u8>)>, op, rest: &[u8], asked| {
            let (status, body) = answer?;
            let signed = Signed::from_answer(node, status, &body)?;
            if well_formed(op, status, &signed.detail, asked) && signed.verify(&nonce, op, rest) {
                Some(signed)
            } else {
                self.counts.bad_signatures += 1;
                None
            }
        };
        match &mut request.work {
            Work::Put {
                rest,
                answers,
                waiting,
            } => {
                *waiting = waiting.saturating_sub(1);
                // An error or an unknown status is an unreachable replica.
                if matches!(
                    answer,
                    Some((ReplicaStatus::Ok | ReplicaStatus::Refused, _))
                ) && let Some(signed) = check(answer, ReplicaOp::Put, rest, 0)
                {
                    answers.push(signed);
                }
            }
            Work::Probe { asked, answers } => {
                let Some((rest, count, scope)) = asked.remove(&index) else {
                    return;
                };
                if matches!(answer, Some((ReplicaStatus::Ok, _)))
                    && let Some(mut signed) = check(answer, ReplicaOp::Probe, &rest, count)
                {
                    signed.scope = scope;
                    answers.push(signed);
                }
            }
            Work::Get {
                kind,
                next,
                reached,
                ..
            } => {
                *next += 1;
                // A get's record proves itself; its signature is not needed.
                let answer = answer.and_then(|(status, body)| {
                    split_answer(&body).map(|(detail, _, _)| (status, detail.to_vec()))
                });
                match answer {
                    Some((ReplicaStatus::Ok, record)) => {
                        if validate(*kind, &locator, &record).is_ok() {
                            let kind = *kind;
                            let request = self.requests.remove(&key);
                            if let Some(r) = request {
                                if kind == Kind::Chunk {
                                    self.cache.insert(locator, record.clone());
                                }
                                self.finish(r.taken, r.op, r.id, r.reply, Status::Ok, record);
                            }
                            return;
                        }
                        // A record that fails the checks: the replica is
                        // bad or broken; the next one is asked.
                        self.counts.bad_records += 1;
                        *reached = true;
                    }
                    Some((ReplicaStatus::NotFound, _)) => *reached = true,
                    _ => {}
                }
            }
        }
    }

    /// Sends a request's next asks, or settles it.
    fn step(&mut self, now: Instant, key: u64) {
        let Some(request) = self.requests.get_mut(&key) else {
            return;
        };
        let mut asks: Vec<(usize, [u8; 32], ReplicaOp, Vec<u8>)> = Vec::new();
        let settled: Option<(Status, Vec<u8>)> = match &mut request.work {
            Work::Put {
                answers, waiting, ..
            } => (*waiting == 0).then(|| {
                let says = |s| answers.iter().any(|a| a.status == s);
                let status = if says(ReplicaStatus::Refused) {
                    Status::Refused
                } else if says(ReplicaStatus::Ok) {
                    Status::Ok
                } else {
                    Status::Unavailable
                };
                (status, encode_list(answers))
            }),
            Work::Get {
                rest,
                replicas,
                next,
                reached,
                ..
            } => match replicas.get(*next) {
                Some(node) => {
                    let body = with_nonce(&replica_nonce(&request.id, node), rest);
                    asks.push((0, *node, ReplicaOp::Get, body));
                    None
                }
                None if *reached => Some((Status::NotFound, Vec::new())),
                None => Some((Status::Unavailable, Vec::new())),
            },
            Work::Probe { asked, answers } => asked.is_empty().then(|| {
                let status = if answers.is_empty() {
                    Status::Unavailable
                } else {
                    Status::Ok
                };
                (status, encode_list(answers))
            }),
        };
        if let Some((status, body)) = settled {
            if let Some(r) = self.requests.remove(&key) {
                self.finish(r.taken, r.op, r.id, r.reply, status, body);
            }
            return;
        }
        for (index, node, op, body) in asks {
            self.ask(now, key, index, node, op, body);
        }
    }

    fn finish(
        &mut self,
        taken: Instant,
        op: &'static str,
        id: [u8; 16],
        reply: T,
        status: Status,
        body: Vec<u8>,
    ) {
        *self
            .counts
            .answered
            .entry((op, status_name(status)))
            .or_default() += 1;
        self.answered.push_back(Answered {
            reply,
            response: Response { id, status, body },
            op,
            taken,
        });
    }
}

#[cfg(test)]
mod tests;
