#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::placement::{StorageNode, replicas};

const K: usize = 3;
const HEARTBEAT: Duration = Duration::from_secs(2);

type Store = BTreeMap<(Kind, Locator), Vec<u8>>;

/// Storage nodes with their records, each running its repair machine in
/// virtual time; a node in `down` is listed but runs nothing and answers
/// nothing.
struct World {
    stores: BTreeMap<[u8; 32], Store>,
    plans: BTreeMap<[u8; 32], RepairPlan>,
    down: BTreeSet<[u8; 32]>,
    /// Targets whose answers are lost on the way: no report at all.
    mute: BTreeSet<[u8; 32]>,
    /// Copies received: (target, locator, time).
    received: Vec<([u8; 32], Locator, Instant)>,
    saved: BTreeMap<[u8; 32], Vec<[u8; 32]>>,
    now: Instant,
}

fn node(i: u8) -> [u8; 32] {
    [i; 32]
}

/// The storage nodes with these keys, each with a salt of its own.
fn ring(keys: &[[u8; 32]]) -> Vec<StorageNode> {
    keys.iter()
        .map(|k| StorageNode {
            key: *k,
            salt: [k[0] ^ 0xa5; 32],
        })
        .collect()
}

fn record(i: u32) -> (Locator, Vec<u8>) {
    let bytes = format!("record {i}").into_bytes();
    (Locator::of(&bytes), bytes)
}

impl World {
    /// `n` storage nodes holding `records` chunks on their K replicas.
    fn new(n: u8, records: u32) -> (Self, Vec<[u8; 32]>) {
        let nodes: Vec<[u8; 32]> = (1..=n).map(node).collect();
        let mut stores: BTreeMap<[u8; 32], Store> =
            nodes.iter().map(|n| (*n, Store::new())).collect();
        for i in 0..records {
            let (l, bytes) = record(i);
            for r in replicas(&l, &ring(&nodes), K) {
                stores
                    .get_mut(&r)
                    .unwrap()
                    .insert((Kind::Chunk, l), bytes.clone());
            }
        }
        let plans = nodes
            .iter()
            .map(|n| {
                let config = RepairConfig {
                    page: 50,
                    ..RepairConfig::default()
                };
                (*n, RepairPlan::new(*n, config, Some(ring(&nodes))))
            })
            .collect();
        let world = Self {
            stores,
            plans,
            down: BTreeSet::new(),
            mute: BTreeSet::new(),
            received: Vec::new(),
            saved: BTreeMap::new(),
            now: Instant::ZERO,
        };
        (world, nodes)
    }

    /// Every running node learns the document listing `storage`.
    fn document(&mut self, storage: &[[u8; 32]]) {
        let now = self.now;
        for (n, plan) in &mut self.plans {
            if !self.down.contains(n) {
                plan.handle_document(now, ring(storage), HEARTBEAT);
            }
        }
    }

    /// Carries actions (answers are immediate) and advances time to the
    /// next timer until nothing is left, or until `until`.
    fn run(&mut self, until: Instant) {
        loop {
            let mut progressed = false;
            let keys: Vec<[u8; 32]> = self.plans.keys().copied().collect();
            for n in keys {
                if self.down.contains(&n) {
                    continue;
                }
                while let Some(action) = self.plans.get_mut(&n).unwrap().poll_action() {
                    progressed = true;
                    self.carry(n, action);
                }
            }
            if progressed {
                continue;
            }
            let next = self
                .plans
                .iter()
                .filter(|(n, _)| !self.down.contains(*n))
                .filter_map(|(_, p)| p.poll_timeout())
                .min();
            match next {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    let now = self.now;
                    for (n, plan) in &mut self.plans {
                        if !self.down.contains(n) {
                            plan.handle_timeout(now);
                        }
                    }
                }
                _ => return,
            }
        }
    }

    fn carry(&mut self, n: [u8; 32], action: RepairAction) {
        let now = self.now;
        match action {
            RepairAction::ReadPage { id, after, limit } => {
                let page: Vec<(Kind, Locator)> = self.stores[&n]
                    .keys()
                    .filter(|k| after.is_none_or(|a| **k > a))
                    .take(limit)
                    .copied()
                    .collect();
                self.plans
                    .get_mut(&n)
                    .unwrap()
                    .handle_page(now, id, Some(page));
            }
            RepairAction::Have {
                id,
                target,
                kind,
                locators,
            } => {
                if self.mute.contains(&target) {
                    return;
                }
                let answer = (!self.down.contains(&target)).then(|| {
                    let mut bits = vec![0u8; locators.len().div_ceil(8)];
                    for (i, l) in locators.iter().enumerate() {
                        if self.stores[&target].contains_key(&(kind, *l)) {
                            bits[i / 8] |= 0x80 >> (i % 8);
                        }
                    }
                    (ReplicaStatus::Ok, bits)
                });
                self.plans.get_mut(&n).unwrap().handle_have(now, id, answer);
            }
            RepairAction::Copy {
                id,
                target,
                kind,
                locator,
            } => {
                let result = match self.stores[&n].get(&(kind, locator)).cloned() {
                    None => Copied::Gone,
                    Some(_) if self.down.contains(&target) => Copied::Failed,
                    Some(bytes) => {
                        self.received.push((target, locator, now));
                        let len = bytes.len();
                        self.stores
                            .get_mut(&target)
                            .unwrap()
                            .insert((kind, locator), bytes);
                        Copied::Sent { bytes: len }
                    }
                };
                self.plans
                    .get_mut(&n)
                    .unwrap()
                    .handle_copied(now, id, result);
            }
            RepairAction::SaveBaseline(nodes) => {
                self.saved.insert(n, nodes.iter().map(|s| s.key).collect());
            }
        }
    }

    /// Nodes holding each record, among `nodes`.
    fn holders(&self, l: &Locator, nodes: &[[u8; 32]]) -> Vec<[u8; 32]> {
        nodes
            .iter()
            .filter(|n| self.stores[*n].contains_key(&(Kind::Chunk, *l)))
            .copied()
            .collect()
    }

    fn counts(&self) -> RepairCounts {
        let mut total = RepairCounts::default();
        for p in self.plans.values() {
            total += p.counts();
        }
        total
    }
}

fn forever() -> Instant {
    Instant::ZERO + Duration::from_secs(86_400)
}

#[test]
fn after_a_departure_every_record_is_back_at_exactly_k_copies_each_sent_once() {
    let (mut w, nodes) = World::new(8, 400);
    let gone = nodes[3];
    let lost: Vec<Locator> = (0..400)
        .map(|i| record(i).0)
        .filter(|l| replicas(l, &ring(&nodes), K).contains(&gone))
        .collect();
    assert!(lost.len() > 100);
    w.down.insert(gone);
    w.plans.remove(&gone);
    let new: Vec<[u8; 32]> = nodes.iter().copied().filter(|n| *n != gone).collect();
    w.document(&new);
    w.run(forever());
    for i in 0..400 {
        let (l, _) = record(i);
        let mut want = replicas(&l, &ring(&new), K);
        want.sort_unstable();
        assert_eq!(w.holders(&l, &new), want, "record {i}");
    }
    let c = w.counts();
    // One copy per record that lost a replica: no record sent twice.
    assert_eq!(c.sent, lost.len() as u64);
    assert_eq!((c.failed, c.refused), (0, 0));
    // Each node's pass, and its follow-up ten heartbeats later (which
    // finds every copy in place and sends none).
    assert_eq!(c.passes, 2 * new.len() as u64);
    // Sent after the document settled for a heartbeat, all in round 0.
    let first = w.received.iter().map(|r| r.2).min().unwrap();
    let last = w.received.iter().map(|r| r.2).max().unwrap();
    assert_eq!(first, Instant::ZERO + HEARTBEAT);
    assert!(last < Instant::ZERO + HEARTBEAT * 2, "{last:?}");
    // Every node keeps the new set as its baseline.
    for n in &new {
        let mut sorted_new = new.clone();
        sorted_new.sort_unstable();
        assert_eq!(w.saved[n], sorted_new);
    }
}

#[test]
fn a_source_that_is_listed_but_silent_is_covered_by_the_next_rank_a_round_later() {
    let (mut w, nodes) = World::new(8, 400);
    let gone = nodes[3];
    let silent = nodes[5];
    w.down.insert(gone);
    w.plans.remove(&gone);
    // `silent` crashed but is still in the document: it repairs nothing.
    w.down.insert(silent);
    let new: Vec<[u8; 32]> = nodes.iter().copied().filter(|n| *n != gone).collect();
    w.document(&new);
    w.run(forever());
    let mut late = 0;
    for i in 0..400 {
        let (l, _) = record(i);
        let plan = placement::repair(&l, &ring(&nodes), &ring(&new), K);
        for target in &plan.targets {
            if *target == silent {
                continue;
            }
            let got: Vec<Instant> = w
                .received
                .iter()
                .filter(|r| r.0 == *target && r.1 == l)
                .map(|r| r.2)
                .collect();
            assert_eq!(got.len(), 1, "record {i} copied once");
            if plan.sources.first() == Some(&silent) {
                // Its rank-1 source copied it in round 1.
                assert!(got[0] >= Instant::ZERO + HEARTBEAT * 2, "{:?}", got[0]);
                late += 1;
            }
        }
    }
    assert!(late > 10, "{late}");
}

#[test]
fn a_pass_with_an_unreachable_target_runs_again_until_it_completes() {
    let (mut w, nodes) = World::new(6, 200);
    let joining = node(7);
    w.stores.insert(joining, Store::new());
    w.down.insert(joining);
    let mut new = nodes.clone();
    new.push(joining);
    w.document(&new);
    // The newcomer is unreachable for a minute.
    w.run(Instant::ZERO + Duration::from_secs(60));
    let c = w.counts();
    assert!(c.failed > 0 && c.sent == 0 && c.passes == 0, "{c:?}");
    w.down.remove(&joining);
    let mut plan = RepairPlan::new(joining, RepairConfig::default(), Some(ring(&new)));
    plan.handle_document(w.now, ring(&new), HEARTBEAT);
    w.plans.insert(joining, plan);
    w.run(forever());
    for i in 0..200 {
        let (l, _) = record(i);
        let mut want = replicas(&l, &ring(&new), K);
        want.sort_unstable();
        // The old replicas the newcomer displaced keep their copies
        // until retention evicts them.
        let holders = w.holders(&l, &new);
        for r in &want {
            assert!(holders.contains(r), "record {i}");
        }
    }
    // Each pass and its follow-up.
    assert_eq!(w.counts().passes, 2 * nodes.len() as u64);
}

#[test]
fn a_change_during_a_pass_starts_it_over_against_the_same_old_set() {
    let (mut w, nodes) = World::new(8, 300);
    let (a, b) = (nodes[1], nodes[6]);
    w.down.insert(a);
    w.plans.remove(&a);
    let first: Vec<[u8; 32]> = nodes.iter().copied().filter(|n| *n != a).collect();
    w.document(&first);
    // Settles, starts, then a second node leaves mid-pass.
    w.run(Instant::ZERO + HEARTBEAT);
    w.down.insert(b);
    w.plans.remove(&b);
    let second: Vec<[u8; 32]> = first.iter().copied().filter(|n| *n != b).collect();
    w.document(&second);
    let outcomes: Vec<PassOutcome> = w
        .plans
        .values_mut()
        .filter_map(RepairPlan::poll_outcome)
        .collect();
    assert!(outcomes.contains(&PassOutcome::Interrupted), "{outcomes:?}");
    w.run(forever());
    for i in 0..300 {
        let (l, _) = record(i);
        let mut want = replicas(&l, &ring(&second), K);
        want.sort_unstable();
        assert_eq!(w.holders(&l, &second), want, "record {i}");
    }
}

#[test]
fn the_first_document_is_the_baseline_and_a_node_outside_the_set_does_nothing() {
    let me = node(1);
    let mut plan = RepairPlan::new(me, RepairConfig::default(), None);
    plan.handle_document(Instant::ZERO, ring(&[node(2), me]), HEARTBEAT);
    assert_eq!(
        plan.poll_action(),
        Some(RepairAction::SaveBaseline(ring(&[me, node(2)])))
    );
    assert_eq!(plan.poll_timeout(), None);
    // A set without this node: no pass.
    plan.handle_document(Instant::ZERO, ring(&[node(2), node(3)]), HEARTBEAT);
    assert_eq!(plan.poll_timeout(), None);
    assert_eq!(plan.poll_action(), None);
    // With it again, and changed: settle, then read from the start.
    plan.handle_document(Instant::ZERO, ring(&[me, node(3)]), HEARTBEAT);
    assert_eq!(plan.poll_timeout(), Some(Instant::ZERO + HEARTBEAT));
    plan.handle_timeout(Instant::ZERO + HEARTBEAT);
    assert_eq!(
        plan.poll_action(),
        Some(RepairAction::ReadPage {
            id: 0,
            after: None,
            limit: 1_024
        })
    );
}

#[test]
fn answers_that_never_come_time_out_and_the_pass_is_run_again() {
    let (mut w, nodes) = World::new(6, 200);
    let joining = node(7);
    w.stores.insert(joining, Store::new());
    // Every answer from the newcomer is lost on the way: no report ever
    // reaches the repairing nodes.
    w.mute.insert(joining);
    let mut new = nodes.clone();
    new.push(joining);
    w.document(&new);
    w.run(Instant::ZERO + Duration::from_secs(300));
    let c = w.counts();
    assert!(c.failed > 0 && c.passes == 0, "{c:?}");
    let outcomes: Vec<PassOutcome> = w
        .plans
        .values_mut()
        .filter_map(RepairPlan::poll_outcome)
        .collect();
    assert!(outcomes.contains(&PassOutcome::Incomplete), "{outcomes:?}");
    // Once its answers arrive, the retried passes complete.
    w.mute.remove(&joining);
    w.run(forever());
    // Each pass and its follow-up.
    assert_eq!(w.counts().passes, 2 * nodes.len() as u64);
    for i in 0..200 {
        let (l, _) = record(i);
        let reps = replicas(&l, &ring(&new), K);
        assert!(
            w.holders(&l, &new)
                .iter()
                .filter(|h| reps.contains(h))
                .count()
                == K
        );
    }
}

#[test]
fn a_page_read_for_an_interrupted_pass_is_not_taken_for_the_next_ones() {
    let me = node(1);
    let config = RepairConfig {
        page: 1,
        ..RepairConfig::default()
    };
    let old = vec![me, node(2), node(3), node(4)];
    let mut plan = RepairPlan::new(me, config, Some(ring(&old)));
    let t = |s: u64| Instant::ZERO + Duration::from_secs(s);
    plan.handle_document(t(0), ring(&[me, node(2), node(3)]), HEARTBEAT);
    plan.handle_timeout(t(2));
    let Some(RepairAction::ReadPage { id: first, .. }) = plan.poll_action() else {
        panic!("the pass reads a page");
    };
    // The storage nodes change again before that read comes back.
    plan.handle_document(t(3), ring(&[me, node(2)]), HEARTBEAT);
    assert_eq!(plan.poll_outcome(), Some(PassOutcome::Interrupted));
    plan.handle_timeout(t(5));
    let Some(RepairAction::ReadPage {
        id: second,
        after: None,
        ..
    }) = plan.poll_action()
    else {
        panic!("the new pass reads from the start");
    };
    assert_ne!(first, second);
    // The late page of the interrupted pass is ignored...
    let (l, _) = record(1);
    plan.handle_page(t(6), first, Some(vec![(Kind::Chunk, l)]));
    assert_eq!(plan.poll_action(), None);
    // ...and the new pass's own page moves it on.
    plan.handle_page(t(6), second, Some(vec![(Kind::Chunk, l)]));
    assert!(matches!(
        plan.poll_action(),
        Some(RepairAction::ReadPage { after: Some(_), .. }) | Some(RepairAction::Have { .. })
    ));
}

/// A record put under the old placement after the sources read past it
/// (a client or service node still a document behind) reaches its new
/// replica through the follow-up pass of the same change.
#[test]
fn a_record_put_under_the_old_view_after_the_pass_still_reaches_its_new_replica() {
    let (mut w, nodes) = World::new(8, 50);
    let gone = nodes[2];
    w.down.insert(gone);
    w.plans.remove(&gone);
    let new: Vec<[u8; 32]> = nodes.iter().copied().filter(|n| *n != gone).collect();
    w.document(&new);
    // The first passes, not their follow-ups.
    w.run(Instant::ZERO + HEARTBEAT * 5);
    assert_eq!(w.counts().passes, new.len() as u64);
    // A late put by a client with the old document: the record's old
    // replicas (the gone node missing) hold it; one new replica lacks it.
    let late = (1000..)
        .map(record)
        .find(|(l, _)| replicas(l, &ring(&nodes), K).contains(&gone))
        .unwrap();
    for r in replicas(&late.0, &ring(&nodes), K) {
        if let Some(store) = w.stores.get_mut(&r) {
            store.insert((Kind::Chunk, late.0), late.1.clone());
        }
    }
    w.run(forever());
    let mut want = replicas(&late.0, &ring(&new), K);
    want.sort_unstable();
    assert_eq!(w.holders(&late.0, &new), want);
}

/// A set that held between two documents (a node left and came back
/// before the passes of its leaving completed): what was put under it
/// reaches the returning node.
#[test]
fn records_put_while_a_node_was_away_reach_it_when_it_returns_mid_pass() {
    let (mut w, nodes) = World::new(8, 0);
    let away = nodes[5];
    let without: Vec<[u8; 32]> = nodes.iter().copied().filter(|n| *n != away).collect();
    w.document(&without);
    // Puts under the set without it, before any pass has run.
    let put: Vec<(Locator, Vec<u8>)> = (0..100).map(record).collect();
    for (l, bytes) in &put {
        for r in replicas(l, &ring(&without), K) {
            w.stores
                .get_mut(&r)
                .unwrap()
                .insert((Kind::Chunk, *l), bytes.clone());
        }
    }
    // It comes back before the document settled: the baseline (every
    // node) is the current set again.
    w.run(Instant::ZERO + HEARTBEAT / 2);
    w.document(&nodes);
    w.run(forever());
    let owed: Vec<&Locator> = put
        .iter()
        .map(|(l, _)| l)
        .filter(|l| replicas(l, &ring(&nodes), K).contains(&away))
        .collect();
    assert!(owed.len() > 10);
    for l in owed {
        assert!(
            w.stores[&away].contains_key(&(Kind::Chunk, *l)),
            "{l} not back on the node that returned"
        );
    }
}
