//! Storage under churn (`specs/simulation.md` §3): the production service
//! node and repair machines (`mtos_mixnode::service_machine`,
//! `mtos_mixnode::repair_plan`) on the scenario's storage nodes, in
//! virtual time over the scenario's links (latency and loss). Records are
//! put through the providers' service machines at `put_rate`; at
//! `depart_s` one storage node dies with its records; the authority drops
//! it three heartbeats later (the liveness window, `directory.md` §3),
//! and every storage node's repair machine sees the new document. The
//! report says what the puts achieved, how many records the departed
//! node held and how many lost every copy, what repair sent, and when
//! every record was back at K copies on its new replicas.
//!
//! Requests reach the service machines directly here (the path through
//! the mixnet is the packet simulation's subject, not this one's), so the
//! study is the same in both packet modes. Deterministic in the seed.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::time::Duration;

use mtos_crypto::item::Locator;
use mtos_crypto::stamp::{STAMP_LEN, Stamp};
use mtos_mixnode::Instant;
use mtos_mixnode::placement::{StorageNode, replicas};
use mtos_mixnode::receipts::{Answering, signed_answer};
use mtos_mixnode::records::{Kind, StampRule};
use mtos_mixnode::repair_plan::{
    ActionId, Copied, RepairAction, RepairConfig, RepairCounts, RepairPlan,
};
use mtos_mixnode::replica_proto::{ReplicaOp, ReplicaStatus, kind_and_locator, split_nonce};
use mtos_mixnode::service::{Op, Status};
use mtos_mixnode::service_machine::{Ask, AskId, Job, ServiceConfig, ServiceMachine};
use rand::Rng;
use rand_chacha::ChaCha20Rng;
use serde_json::{Value, json};

use crate::scenario::{Scenario, StorageStudy};
use crate::sim::{component_rng, link_delay};
use crate::storage::storage_identities;

/// Virtual time after the departure at which the study gives up.
const HORIZON: Duration = Duration::from_secs(6 * 3600);

type Store = BTreeMap<(Kind, Locator), Vec<u8>>;

enum Ev {
    Put(u32),
    ServiceTimer(usize),
    AskAtReplica(usize, Ask),
    AnswerAtService(usize, AskId, Option<(ReplicaStatus, Vec<u8>)>),
    RepairTimer(usize),
    HaveAtTarget {
        from: usize,
        id: ActionId,
        target: usize,
        kind: Kind,
        locators: Vec<Locator>,
    },
    HaveBack(usize, ActionId, Option<(ReplicaStatus, Vec<u8>)>),
    CopyAtTarget {
        from: usize,
        id: ActionId,
        target: usize,
        kind: Kind,
        locator: Locator,
        bytes: Vec<u8>,
    },
    CopyBack(usize, ActionId, Copied),
    Depart,
    Document,
}

struct Churn<'a> {
    scenario: &'a Scenario,
    study: StorageStudy,
    now: Instant,
    seq: u64,
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    events: HashMap<u64, Ev>,
    links: ChaCha20Rng,
    keys: Vec<StorageNode>,
    /// The storage nodes' identities, which sign their answers.
    identities: Vec<mtos_crypto::Identity>,
    index: BTreeMap<[u8; 32], usize>,
    stores: Vec<Store>,
    alive: Vec<bool>,
    /// Listed in the current document (a dead node stays listed until the
    /// authority drops it).
    listed: Vec<bool>,
    plans: Vec<RepairPlan>,
    timers: Vec<Option<Instant>>,
    services: Vec<ServiceMachine<u32>>,
    service_timers: Vec<Option<Instant>>,
    records: Vec<(Locator, Vec<u8>)>,
    record_index: HashMap<Locator, u32>,
    heartbeat: Duration,
    departed: Option<usize>,
    /// Records that need a copy after the departure, not yet at K.
    short: BTreeSet<u32>,
    back_at_k: Option<Instant>,
    puts: BTreeMap<&'static str, u64>,
}

fn key_of(kind: Kind, locator: &Locator) -> (Kind, Locator) {
    (kind, *locator)
}

impl<'a> Churn<'a> {
    fn push(&mut self, at: Instant, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq)));
        self.events.insert(self.seq, ev);
    }

    /// Sends `ev` over a link: after a latency, or never (lost).
    fn send(&mut self, ev: Ev) {
        if let Some(d) = link_delay(self.scenario.latency, self.scenario.loss, &mut self.links) {
            let at = self.now + d;
            self.push(at, ev);
        }
    }

    /// The storage nodes of the current document.
    fn storage_now(&self) -> Vec<StorageNode> {
        self.keys
            .iter()
            .zip(&self.listed)
            .filter(|(_, a)| **a)
            .map(|(k, _)| *k)
            .collect()
    }

    fn reschedule(&mut self) {
        for s in 0..self.services.len() {
            if let Some(t) = self.services[s].poll_timeout()
                && self.service_timers[s].is_none_or(|w| t < w)
            {
                self.service_timers[s] = Some(t);
                self.push(t, Ev::ServiceTimer(s));
            }
        }
        for j in 0..self.plans.len() {
            if !self.alive[j] {
                continue;
            }
            if let Some(t) = self.plans[j].poll_timeout()
                && self.timers[j].is_none_or(|w| t < w)
            {
                self.timers[j] = Some(t);
                self.push(t, Ev::RepairTimer(j));
            }
        }
    }

    fn drain_service(&mut self, s: usize) {
        while let Some(ask) = self.services[s].poll_ask() {
            if self.index.contains_key(&ask.node) {
                self.send(Ev::AskAtReplica(s, ask));
            } else {
                let now = self.now;
                self.services[s].handle_answer(now, ask.id, None);
            }
        }
        while let Some(done) = self.services[s].poll_answered() {
            let name = match (done.response.status, done.response.body.first()) {
                (Status::Ok, Some(&n)) if usize::from(n) >= self.study.replicas => "ok",
                (Status::Ok, _) => "short",
                (Status::Refused, _) => "refused",
                _ => "unavailable",
            };
            *self.puts.entry(name).or_default() += 1;
        }
    }

    fn drain_plan(&mut self, j: usize) {
        while let Some(action) = self.plans[j].poll_action() {
            let now = self.now;
            match action {
                RepairAction::ReadPage { id, after, limit } => {
                    let page: Vec<(Kind, Locator)> = self.stores[j]
                        .keys()
                        .filter(|k| after.is_none_or(|a| **k > a))
                        .take(limit)
                        .copied()
                        .collect();
                    self.plans[j].handle_page(now, id, Some(page));
                }
                RepairAction::Have {
                    id,
                    target,
                    kind,
                    locators,
                } => match self.index.get(&target).copied() {
                    Some(t) => self.send(Ev::HaveAtTarget {
                        from: j,
                        id,
                        target: t,
                        kind,
                        locators,
                    }),
                    None => self.plans[j].handle_have(now, id, None),
                },
                RepairAction::Copy {
                    id,
                    target,
                    kind,
                    locator,
                } => {
                    let bytes = self.stores[j].get(&key_of(kind, &locator)).cloned();
                    match (bytes, self.index.get(&target).copied()) {
                        (None, _) => self.plans[j].handle_copied(now, id, Copied::Gone),
                        (Some(_), None) => self.plans[j].handle_copied(now, id, Copied::Failed),
                        (Some(bytes), Some(t)) => self.send(Ev::CopyAtTarget {
                            from: j,
                            id,
                            target: t,
                            kind,
                            locator,
                            bytes,
                        }),
                    }
                }
                RepairAction::SaveBaseline(_) => {}
            }
        }
    }

    /// A replica's answer to a service node's ask, signed as a node signs
    /// it (`receipts`).
    fn replica_answer(&mut self, j: usize, ask: &Ask) -> Option<(ReplicaStatus, Vec<u8>)> {
        if !self.alive[j] {
            return None;
        }
        let (nonce, rest) = split_nonce(&ask.body)?;
        let store = &mut self.stores[j];
        let (status, detail) = match ask.op {
            ReplicaOp::Put => {
                let (kind, locator, record) = kind_and_locator(rest)?;
                store.insert(key_of(kind, &locator), record.to_vec());
                (ReplicaStatus::Ok, Vec::new())
            }
            ReplicaOp::Get => {
                let (kind, locator, _) = kind_and_locator(rest)?;
                match store.get(&key_of(kind, &locator)) {
                    Some(r) => (ReplicaStatus::Ok, r.clone()),
                    None => (ReplicaStatus::NotFound, Vec::new()),
                }
            }
            ReplicaOp::Probe | ReplicaOp::Have | ReplicaOp::Copy => {
                (ReplicaStatus::Error, Vec::new())
            }
        };
        let identity = &self.identities[j];
        let answering = Answering {
            nonce: &nonce,
            epoch: 0,
            node: &self.keys[j].key,
            op: ask.op,
            request: rest,
        };
        Some((
            status,
            signed_answer(|m| identity.sign(m), &answering, status, detail),
        ))
    }

    /// Whether record `i` is on all its replicas among `storage` (the
    /// current document's storage nodes).
    fn at_k(&self, i: u32, storage: &[StorageNode]) -> bool {
        let (l, _) = &self.records[i as usize];
        let want = replicas(l, storage, self.study.replicas);
        want.iter().all(|n| {
            self.index
                .get(n)
                .is_some_and(|&j| self.stores[j].contains_key(&key_of(Kind::Chunk, l)))
        })
    }

    fn handle(&mut self, ev: Ev) {
        let now = self.now;
        match ev {
            Ev::Put(i) => {
                let s = (i as usize) % self.services.len();
                let (locator, bytes) = self.records[i as usize].clone();
                let job = Job {
                    id: [0; 16],
                    locator,
                    // The simulated service nodes ask no stamp (below).
                    op: Op::Put(Kind::Chunk, bytes, Stamp::decode(&[0; STAMP_LEN])),
                    reply: i,
                };
                let storage = self.storage_now();
                if self.services[s].handle_request(now, job, &storage).is_err() {
                    *self.puts.entry("busy").or_default() += 1;
                }
                self.drain_service(s);
            }
            Ev::ServiceTimer(s) => {
                self.service_timers[s] = None;
                self.services[s].handle_timeout(now);
                self.drain_service(s);
            }
            Ev::AskAtReplica(s, ask) => {
                let j = self.index[&ask.node];
                if let Some(answer) = self.replica_answer(j, &ask) {
                    self.send(Ev::AnswerAtService(s, ask.id, Some(answer)));
                }
            }
            Ev::AnswerAtService(s, id, answer) => {
                self.services[s].handle_answer(now, id, answer);
                self.drain_service(s);
            }
            Ev::RepairTimer(j) => {
                self.timers[j] = None;
                if self.alive[j] {
                    self.plans[j].handle_timeout(now);
                    self.drain_plan(j);
                }
            }
            Ev::HaveAtTarget {
                from,
                id,
                target,
                kind,
                locators,
            } => {
                if self.alive[target] {
                    let mut bits = vec![0u8; locators.len().div_ceil(8)];
                    for (i, l) in locators.iter().enumerate() {
                        if self.stores[target].contains_key(&key_of(kind, l)) {
                            bits[i / 8] |= 0x80 >> (i % 8);
                        }
                    }
                    self.send(Ev::HaveBack(from, id, Some((ReplicaStatus::Ok, bits))));
                }
            }
            Ev::HaveBack(j, id, answer) => {
                if self.alive[j] {
                    self.plans[j].handle_have(now, id, answer);
                    self.drain_plan(j);
                }
            }
            Ev::CopyAtTarget {
                from,
                id,
                target,
                kind,
                locator,
                bytes,
            } => {
                if self.alive[target] {
                    let len = bytes.len();
                    self.stores[target].insert(key_of(kind, &locator), bytes);
                    self.send(Ev::CopyBack(from, id, Copied::Sent { bytes: len }));
                    if let Some(&i) = self.record_index.get(&locator)
                        && self.short.contains(&i)
                        && self.at_k(i, &self.storage_now())
                    {
                        self.short.remove(&i);
                        if self.short.is_empty() {
                            self.back_at_k = Some(now);
                        }
                    }
                }
            }
            Ev::CopyBack(j, id, result) => {
                if self.alive[j] {
                    self.plans[j].handle_copied(now, id, result);
                    self.drain_plan(j);
                }
            }
            Ev::Depart => {
                if let Some(d) = self.departed {
                    self.alive[d] = false;
                    self.stores[d].clear();
                    let at = now + self.heartbeat * 3;
                    self.push(at, Ev::Document);
                }
            }
            Ev::Document => {
                self.listed = self.alive.clone();
                let storage = self.storage_now();
                self.short = (0..self.records.len() as u32)
                    .filter(|i| !self.at_k(*i, &storage))
                    .collect();
                if self.short.is_empty() {
                    self.back_at_k = Some(now);
                }
                for j in 0..self.plans.len() {
                    if self.alive[j] {
                        self.plans[j].handle_document(now, storage.clone(), self.heartbeat);
                        self.drain_plan(j);
                    }
                }
            }
        }
    }
}

/// The churn study's report, or `None` when the scenario's `[storage]`
/// section sets no departure.
pub fn study(scenario: &Scenario, seed: u64) -> Option<Value> {
    let study = scenario.storage?;
    let depart_s = study.depart_s?;
    let identities = storage_identities(scenario, study.stores, seed);
    // Each with a salt, as a document gives them (`directory.md` §6.4).
    let keys: Vec<StorageNode> = identities
        .iter()
        .enumerate()
        .map(|(j, i)| {
            let mut salt = [0u8; 32];
            component_rng(seed, "storage-node-salt", j as u64).fill_bytes(&mut salt);
            StorageNode {
                key: *i.verify_key().as_bytes(),
                salt,
            }
        })
        .collect();
    let node_ids = crate::storage::storage_node_ids(scenario, study.stores);
    let mut rng = component_rng(seed, "churn-records", 0);
    let records: Vec<(Locator, Vec<u8>)> = (0..study.records)
        .map(|_| {
            let mut bytes = vec![0u8; 64];
            rng.fill_bytes(&mut bytes);
            (Locator::of(&bytes), bytes)
        })
        .collect();
    let heartbeat = Duration::from_secs_f64(study.heartbeat_s);
    let repair = RepairConfig {
        replicas: study.replicas,
        per_sec: study.repair_per_sec,
        ..RepairConfig::default()
    };
    let service = ServiceConfig {
        replicas: study.replicas,
        max_requests: 1_000_000,
        ..ServiceConfig::default()
    };
    let n = keys.len();
    let mut churn = Churn {
        scenario,
        study,
        now: Instant::ZERO,
        seq: 0,
        queue: BinaryHeap::new(),
        events: HashMap::new(),
        links: component_rng(seed, "churn-links", 0),
        index: keys.iter().enumerate().map(|(j, k)| (k.key, j)).collect(),
        stores: vec![Store::new(); n],
        alive: vec![true; n],
        listed: vec![true; n],
        plans: keys
            .iter()
            .map(|k| RepairPlan::new(k.key, repair, Some(keys.clone())))
            .collect(),
        timers: vec![None; n],
        services: (0..scenario.providers)
            .map(|_| {
                // Placement and repair are studied here, not the
                // puzzle's cost: no stamps asked.
                let mut m = ServiceMachine::new(service);
                m.set_stamp_rule(StampRule {
                    epoch: 0,
                    need: 0,
                    any_past: false,
                });
                m
            })
            .collect(),
        service_timers: vec![None; scenario.providers as usize],
        keys,
        identities,
        record_index: records
            .iter()
            .enumerate()
            .map(|(i, (l, _))| (*l, i as u32))
            .collect(),
        records,
        heartbeat,
        departed: None,
        short: BTreeSet::new(),
        back_at_k: None,
        puts: BTreeMap::new(),
    };
    for i in 0..study.records {
        let at = Instant::ZERO + Duration::from_secs_f64(f64::from(i) / study.put_rate);
        churn.push(at, Ev::Put(i));
    }
    let depart_at = Instant::ZERO + Duration::from_secs_f64(depart_s);
    churn.push(depart_at, Ev::Depart);
    // Every event up to the departure runs first, then the departing
    // node is chosen (the one holding the most records, unless named).
    let end = depart_at + HORIZON;
    let mut chosen = false;
    while let Some(Reverse((at, seq))) = churn.queue.pop() {
        if at > end {
            break;
        }
        let Some(ev) = churn.events.remove(&seq) else {
            continue;
        };
        churn.now = at;
        if matches!(ev, Ev::Depart) && !chosen {
            chosen = true;
            churn.departed = match study.depart_node {
                Some(node) => node_ids.iter().position(|id| *id == node),
                None => (0..n).max_by_key(|j| (churn.stores[*j].len(), Reverse(*j))),
            };
        }
        churn.handle(ev);
        churn.reschedule();
    }
    let d = churn.departed?;
    let storage = churn.storage_now();
    let (mut exact, mut lost) = (0u64, 0u64);
    for (i, (l, _)) in churn.records.iter().enumerate() {
        let held = churn
            .stores
            .iter()
            .filter(|s| s.contains_key(&key_of(Kind::Chunk, l)))
            .count();
        // On all its replicas, and nowhere else.
        if held == study.replicas.min(storage.len()) && churn.at_k(i as u32, &storage) {
            exact += 1;
        }
        if held == 0 {
            lost += 1;
        }
    }
    let mut counts = RepairCounts::default();
    for p in &churn.plans {
        counts += p.counts();
    }
    let on_departed = churn
        .records
        .iter()
        .filter(|(l, _)| replicas(l, &churn.keys, study.replicas).contains(&churn.keys[d].key))
        .count();
    Some(json!({
        "storage_nodes": n,
        "replicas": study.replicas,
        "records": study.records,
        "puts": churn.puts,
        "departed_node": node_ids.get(d),
        "departed_at_s": depart_s,
        "dropped_from_document_at_s": depart_s + 3.0 * study.heartbeat_s,
        "records_on_departed_node": on_departed,
        "records_lost": lost,
        "repair": {
            "sent": counts.sent,
            "present": counts.present,
            "failed": counts.failed,
            "refused": counts.refused,
            "passes": counts.passes,
        },
        "back_at_k_copies_after_s": churn.back_at_k.map(|t| t.saturating_since(depart_at).as_secs_f64()),
        "records_at_exactly_k_copies": exact,
    }))
}
