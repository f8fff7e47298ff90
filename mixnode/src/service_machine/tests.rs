#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::{BTreeSet, HashMap};

use mtos_crypto::Identity;
use rand::SeedableRng;

use crate::receipts::{
    Answering, Held, PutOf, View, check_probe, check_put, decode_list, signed_answer,
};
use crate::replica_proto::{kind_and_locator, put_parts, split_nonce};
use crate::service::MAX_PROBE;
use mtos_crypto::stamp::Stamp;

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Behaviour {
    Honest,
    /// Never answers.
    Silent,
    /// Answers gets with a flipped byte.
    Tamper,
    /// Refuses every put.
    Refuse,
    /// Signs with a key that is not its own.
    Forge,
}

/// One replica's records.
type Store = HashMap<(Kind, Locator), Vec<u8>>;

/// Storage nodes answering asks in virtual time, each by its behaviour,
/// signing their answers as a node does.
pub(crate) struct World {
    pub(crate) nodes: Vec<[u8; 32]>,
    /// The nodes as placement sees them (each with a salt).
    pub(crate) ring: Vec<crate::placement::StorageNode>,
    identities: HashMap<[u8; 32], Identity>,
    pub(crate) behaviour: HashMap<[u8; 32], Behaviour>,
    stores: HashMap<[u8; 32], Store>,
    pub(crate) asked: Vec<Ask>,
    /// The epoch the replicas sign under.
    pub(crate) epoch: u32,
}

impl World {
    pub(crate) fn new(n: u8) -> Self {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(u64::from(n));
        let identities: HashMap<[u8; 32], Identity> = (0..n)
            .map(|_| {
                let id = Identity::throwaway(&mut rng, 0);
                (*id.verify_key().as_bytes(), id)
            })
            .collect();
        let mut nodes: Vec<[u8; 32]> = identities.keys().copied().collect();
        nodes.sort_unstable();
        Self {
            behaviour: nodes.iter().map(|n| (*n, Behaviour::Honest)).collect(),
            stores: nodes.iter().map(|n| (*n, HashMap::new())).collect(),
            identities,
            ring: nodes
                .iter()
                .map(|k| crate::placement::StorageNode {
                    key: *k,
                    salt: [k[1]; 32],
                })
                .collect(),
            nodes,
            asked: Vec::new(),
            epoch: 7,
        }
    }

    pub(crate) fn replicas(&self, locator: &Locator) -> Vec<[u8; 32]> {
        replicas(locator, &self.ring, 3)
    }

    pub(crate) fn view(&self) -> View<'_> {
        View {
            storage: &self.ring,
            k: 3,
            epoch: self.epoch,
        }
    }

    fn holds(&self, node: &[u8; 32], kind: Kind, locator: &Locator) -> bool {
        self.stores[node].contains_key(&(kind, *locator))
    }

    pub(crate) fn serve(&mut self, ask: &Ask) -> Option<(ReplicaStatus, Vec<u8>)> {
        self.asked.push(ask.clone());
        let behaviour = self.behaviour[&ask.node];
        if behaviour == Behaviour::Silent {
            return None;
        }
        let (nonce, rest) = split_nonce(&ask.body).unwrap();
        let store = self.stores.get_mut(&ask.node).unwrap();
        let (status, detail) = match ask.op {
            ReplicaOp::Put if behaviour == Behaviour::Refuse => {
                (ReplicaStatus::Refused, b"full".to_vec())
            }
            ReplicaOp::Put => {
                let (kind, locator, _, record) = put_parts(rest).unwrap();
                store.insert((kind, locator), record.to_vec());
                (ReplicaStatus::Ok, Vec::new())
            }
            ReplicaOp::Get => {
                let (kind, locator, _) = kind_and_locator(rest).unwrap();
                match store.get(&(kind, locator)) {
                    Some(r) => {
                        let mut r = r.clone();
                        if behaviour == Behaviour::Tamper {
                            r[0] ^= 1;
                        }
                        (ReplicaStatus::Ok, r)
                    }
                    None => (ReplicaStatus::NotFound, Vec::new()),
                }
            }
            ReplicaOp::Probe => {
                let count = rest.len() / 32;
                assert!((1..=MAX_PROBE).contains(&count) && rest.len().is_multiple_of(32));
                let mut bits = vec![0u8; count.div_ceil(8)];
                for (i, l) in rest.chunks(32).enumerate() {
                    let l = Locator::from_bytes(l.try_into().unwrap());
                    if store.contains_key(&(Kind::Slot, l)) {
                        bits[i / 8] |= 0x80 >> (i % 8);
                    }
                }
                (ReplicaStatus::Ok, bits)
            }
            ReplicaOp::Have | ReplicaOp::Copy => (ReplicaStatus::Error, Vec::new()),
        };
        let signer = if behaviour == Behaviour::Forge {
            self.identities
                .values()
                .find(|i| *i.verify_key().as_bytes() != ask.node)
        } else {
            self.identities.get(&ask.node)
        }
        .unwrap();
        let answering = Answering {
            nonce: &nonce,
            epoch: self.epoch,
            node: &ask.node,
            op: ask.op,
            request: rest,
        };
        Some((
            status,
            signed_answer(|m| signer.sign(m), &answering, status, detail),
        ))
    }
}

type Machine = ServiceMachine<u32>;

fn at(ms: u64) -> Instant {
    Instant::ZERO + Duration::from_millis(ms)
}

/// Carries every ask to the world (answers 1 ms later), advancing virtual
/// time to the machine's timeouts when nothing else happens, until all
/// is settled. Returns what was answered and when the last one was.
fn settle(m: &mut Machine, world: &mut World, mut now: Instant) -> (Vec<Answered<u32>>, Instant) {
    let mut out = Vec::new();
    loop {
        let mut progressed = false;
        while let Some(ask) = m.poll_ask() {
            progressed = true;
            if let Some(answer) = world.serve(&ask) {
                now = now + Duration::from_millis(1);
                m.handle_answer(now, ask.id, Some(answer));
            }
        }
        while let Some(a) = m.poll_answered() {
            out.push(a);
        }
        if progressed {
            continue;
        }
        match m.poll_timeout() {
            Some(t) => {
                now = now.max(t);
                m.handle_timeout(now);
            }
            None => return (out, now),
        }
    }
}

fn chunk(n: u8) -> (Locator, Vec<u8>) {
    let bytes = vec![n; 100 + usize::from(n)];
    (Locator::of(&bytes), bytes)
}

/// A chunk's put with a stamp the default rule takes (epoch 0, effort 1).
fn put(bytes: Vec<u8>) -> Op {
    Op::Put(Kind::Chunk, bytes.clone(), stamp(&bytes, 0, 1))
}

fn stamp(bytes: &[u8], epoch: u32, effort: u32) -> Stamp {
    crate::records::make_stamp(Kind::Chunk, &Locator::of(bytes), bytes, epoch, effort, 0)
}

fn job(reply: u32, locator: Locator, op: Op) -> Job<u32> {
    Job {
        id: [reply as u8; 16],
        locator,
        op,
        reply,
    }
}

#[test]
fn a_put_without_a_stamp_the_document_asks_for_costs_no_replica_a_request() {
    // The document's floor is 4 at epoch 10: a stamp of effort 1, one
    // made for epoch 7, a forged one and one moved from another record
    // are refused by the service node itself, each by its reason, and
    // no replica is asked; a stamp of effort 4 for epoch 9 goes out.
    let world = World::new(8);
    let (l, bytes) = chunk(3);
    let mut m = Machine::new(ServiceConfig::default());
    m.set_stamp_rule(StampRule {
        epoch: 10,
        need: 4,
        any_past: true,
    });
    let (other_l, other) = chunk(4);
    let mut forged = stamp(&bytes, 10, 4);
    forged.solution[0] ^= 0x40;
    let refused = [
        (stamp(&bytes, 10, 1), "low_effort"),
        (stamp(&bytes, 7, 4), "stale_stamp"),
        (forged, "bad_stamp"),
        (stamp(&other, 10, 4), "bad_stamp"),
    ];
    for (i, (s, reason)) in refused.into_iter().enumerate() {
        let op = Op::Put(Kind::Chunk, bytes.clone(), s);
        m.handle_request(at(0), job(i as u32, l, op), &world.ring)
            .unwrap();
        assert!(m.poll_ask().is_none(), "{reason}: a replica was asked");
        let a = m.poll_answered().unwrap();
        assert_eq!(a.response.status, Status::Refused);
        assert_eq!(a.response.body, reason.as_bytes(), "{reason}");
    }
    assert_ne!(other_l, l);
    let op = Op::Put(Kind::Chunk, bytes.clone(), stamp(&bytes, 9, 4));
    m.handle_request(at(0), job(9, l, op), &world.ring).unwrap();
    assert_eq!(std::iter::from_fn(|| m.poll_ask()).count(), 3);
}

#[test]
fn a_put_reaches_all_k_replicas_at_once_and_a_silent_one_makes_it_short() {
    let mut world = World::new(8);
    let (l, bytes) = chunk(1);
    let reps = world.replicas(&l);
    world.behaviour.insert(reps[1], Behaviour::Silent);
    let mut m = Machine::new(ServiceConfig::default());
    m.handle_request(at(0), job(7, l, put(bytes)), &world.ring)
        .unwrap();
    // All three asks go out before any answer.
    let asks: Vec<Ask> = std::iter::from_fn(|| m.poll_ask()).collect();
    let nodes: Vec<[u8; 32]> = asks.iter().map(|a| a.node).collect();
    assert_eq!(nodes, reps);
    for ask in &asks {
        if let Some(a) = world.serve(ask) {
            m.handle_answer(at(5), ask.id, Some(a));
        }
    }
    assert!(m.poll_answered().is_none(), "waits for the silent replica");
    assert_eq!(m.poll_timeout(), Some(at(10_000)));
    m.handle_timeout(at(9_999));
    assert!(m.poll_answered().is_none());
    m.handle_timeout(at(10_000));
    let a = m.poll_answered().unwrap();
    assert_eq!(a.reply, 7);
    assert_eq!(a.op, "put_chunk");
    assert_eq!((a.response.id, a.response.status), ([7; 16], Status::Ok));
    // Two receipts, which the client counts itself: a short put.
    let answers = decode_list(&a.response.body).unwrap();
    assert_eq!(answers.len(), 2);
    let proof = check_put(
        a.response.status,
        &a.response.body,
        &[7; 16],
        PutOf {
            kind: Kind::Chunk,
            locator: &l,
            record: &chunk(1).1,
            stamp: &stamp(&chunk(1).1, 0, 1),
        },
        world.view(),
    )
    .unwrap();
    assert_eq!((proof.stored, proof.refused), (2, None));
    assert!(world.holds(&reps[0], Kind::Chunk, &l) && world.holds(&reps[2], Kind::Chunk, &l));
    assert_eq!(m.counts().ask_timeouts, 1);
    assert_eq!(m.counts().answered[&("put_chunk", "ok")], 1);
    // A late answer from the silent replica changes nothing.
    m.handle_answer(
        at(11_000),
        asks[1].id,
        Some((ReplicaStatus::Ok, vec![0; 68])),
    );
    assert!(m.poll_answered().is_none());
    assert_eq!(m.in_work(), 0);
}

#[test]
fn a_put_no_replica_answers_is_unavailable_and_a_refusal_is_passed_on() {
    let mut world = World::new(5);
    let (l, bytes) = chunk(2);
    for n in world.nodes.clone() {
        world.behaviour.insert(n, Behaviour::Silent);
    }
    let mut m = Machine::new(ServiceConfig::default());
    m.handle_request(at(0), job(1, l, put(bytes.clone())), &world.ring)
        .unwrap();
    let (answered, end) = settle(&mut m, &mut world, at(0));
    assert_eq!(answered[0].response.status, Status::Unavailable);
    assert_eq!(
        end,
        at(10_000),
        "one timeout for the three asks in parallel"
    );

    let mut world = World::new(5);
    let reps = world.replicas(&l);
    world.behaviour.insert(reps[2], Behaviour::Refuse);
    m.handle_request(at(0), job(2, l, put(bytes)), &world.ring)
        .unwrap();
    let (answered, _) = settle(&mut m, &mut world, at(0));
    let r = &answered[0].response;
    assert_eq!(r.status, Status::Refused);
    let proof = check_put(
        r.status,
        &r.body,
        &r.id,
        PutOf {
            kind: Kind::Chunk,
            locator: &l,
            record: &chunk(2).1,
            stamp: &stamp(&chunk(2).1, 0, 1),
        },
        world.view(),
    )
    .unwrap();
    assert_eq!((proof.stored, proof.refused.as_deref()), (2, Some("full")));
}

#[test]
fn a_bad_record_is_refused_before_any_replica_is_asked() {
    let mut world = World::new(5);
    let (l, mut bytes) = chunk(3);
    bytes[0] ^= 1;
    let mut m = Machine::new(ServiceConfig::default());
    m.handle_request(at(0), job(1, l, put(bytes)), &world.ring)
        .unwrap();
    let (answered, _) = settle(&mut m, &mut world, at(0));
    assert_eq!(answered[0].response.status, Status::Refused);
    assert_eq!(answered[0].response.body, b"wrong_locator");
    assert!(world.asked.is_empty());
}

#[test]
fn a_get_skips_a_replica_answering_a_tampered_record_and_caches_the_good_one() {
    let mut world = World::new(8);
    let (l, bytes) = chunk(4);
    let mut m = Machine::new(ServiceConfig::default());
    m.handle_request(at(0), job(1, l, put(bytes.clone())), &world.ring)
        .unwrap();
    settle(&mut m, &mut world, at(0));
    let reps = world.replicas(&l);
    world.behaviour.insert(reps[0], Behaviour::Tamper);
    world.asked.clear();
    m.handle_request(at(100), job(2, l, Op::Get(Kind::Chunk)), &world.ring)
        .unwrap();
    let (answered, _) = settle(&mut m, &mut world, at(100));
    assert_eq!(answered[0].response.status, Status::Ok);
    assert_eq!(answered[0].response.body, bytes);
    // Asked in rank order, one at a time, stopping at the first good one.
    let asked: Vec<[u8; 32]> = world.asked.iter().map(|a| a.node).collect();
    assert_eq!(asked, reps[..2]);
    assert_eq!(m.counts().bad_records, 1);
    // Again: from the cache, no replica asked.
    world.asked.clear();
    m.handle_request(at(200), job(3, l, Op::Get(Kind::Chunk)), &world.ring)
        .unwrap();
    let (answered, _) = settle(&mut m, &mut world, at(200));
    assert_eq!(answered[0].response.body, bytes);
    assert!(world.asked.is_empty());
    assert_eq!((m.counts().cache_hits, m.counts().cache_misses), (1, 1));
    assert_eq!(m.cached_chunks(), 1);
}

#[test]
fn a_get_says_not_found_only_when_a_replica_said_so() {
    let mut world = World::new(6);
    let (l, _) = chunk(5);
    let reps = world.replicas(&l);
    world.behaviour.insert(reps[0], Behaviour::Silent);
    world.behaviour.insert(reps[1], Behaviour::Tamper);
    let mut m = Machine::new(ServiceConfig::default());
    m.handle_request(at(0), job(1, l, Op::Get(Kind::Chunk)), &world.ring)
        .unwrap();
    let (answered, end) = settle(&mut m, &mut world, at(0));
    assert_eq!(answered[0].response.status, Status::NotFound);
    assert!(end >= at(10_000), "the silent replica was waited for");
    for n in world.nodes.clone() {
        world.behaviour.insert(n, Behaviour::Silent);
    }
    m.handle_request(at(0), job(2, l, Op::Get(Kind::Slot)), &world.ring)
        .unwrap();
    let (answered, end) = settle(&mut m, &mut world, at(0));
    assert_eq!(answered[0].response.status, Status::Unavailable);
    assert_eq!(end, at(30_000), "three replicas asked in turn");
    // No storage nodes at all: unavailable at once.
    m.handle_request(at(0), job(3, l, Op::Get(Kind::Chunk)), &[])
        .unwrap();
    assert_eq!(
        m.poll_answered().unwrap().response.status,
        Status::Unavailable
    );
}

#[test]
fn a_probe_asks_every_replica_once_and_a_slot_is_empty_only_when_all_sign_so() {
    let mut world = World::new(8);
    let locators: Vec<Locator> = (0..113u8).map(|i| Locator::of(&[i, 0xaa])).collect();
    for (i, l) in locators.iter().enumerate() {
        if i % 3 == 0 {
            for n in world.replicas(l) {
                world
                    .stores
                    .get_mut(&n)
                    .unwrap()
                    .insert((Kind::Slot, *l), vec![1]);
            }
        }
    }
    // One storage node is down: its locators cannot be proven empty.
    let down = world.nodes[0];
    world.behaviour.insert(down, Behaviour::Silent);
    let mut m = Machine::new(ServiceConfig::default());
    m.handle_request(
        at(0),
        job(1, locators[0], Op::Probe(locators[1..].to_vec())),
        &world.ring,
    )
    .unwrap();
    let first: Vec<Ask> = std::iter::from_fn(|| m.poll_ask()).collect();
    let nodes: BTreeSet<[u8; 32]> = first.iter().map(|a| a.node).collect();
    assert_eq!(nodes.len(), first.len(), "one ask per replica");
    assert_eq!(first.len(), 8, "every storage node holds some of them");
    let asked: usize = first.iter().map(|a| (a.body.len() - 16) / 32).sum();
    assert_eq!(asked, 113 * 3, "every locator asked of all its replicas");
    for ask in &first {
        let answer = world.serve(ask);
        m.handle_answer(at(1), ask.id, answer);
    }
    let (answered, _) = settle(&mut m, &mut world, at(1));
    assert_eq!(world.asked.len(), 8, "no ask repeated");
    let r = &answered[0].response;
    assert_eq!(r.status, Status::Ok);
    let held = check_probe(&r.body, &r.id, &locators, world.view()).unwrap();
    for (i, l) in locators.iter().enumerate() {
        let want = if i % 3 == 0 {
            Held::Held
        } else if world.replicas(l).contains(&down) {
            Held::Unknown
        } else {
            Held::Empty
        };
        assert_eq!(held[i], want, "locator {i}");
    }
    assert!(held.contains(&Held::Unknown) && held.contains(&Held::Empty));
}

#[test]
fn a_replica_answer_that_does_not_verify_is_dropped_and_counted() {
    let mut world = World::new(5);
    let (l, bytes) = chunk(8);
    let reps = world.replicas(&l);
    world.behaviour.insert(reps[0], Behaviour::Forge);
    let mut m = Machine::new(ServiceConfig::default());
    m.handle_request(at(0), job(3, l, put(bytes.clone())), &world.ring)
        .unwrap();
    let (answered, _) = settle(&mut m, &mut world, at(0));
    let r = &answered[0].response;
    assert_eq!(decode_list(&r.body).unwrap().len(), 2);
    assert_eq!(m.counts().bad_signatures, 1);
    // What the service node passes on verifies: it is no liar.
    let proof = check_put(
        r.status,
        &r.body,
        &r.id,
        PutOf {
            kind: Kind::Chunk,
            locator: &l,
            record: &bytes,
            stamp: &stamp(&bytes, 0, 1),
        },
        world.view(),
    );
    assert_eq!(proof.unwrap().stored, 2);
}

#[test]
fn a_probe_needing_more_signed_answers_than_a_reply_holds_is_a_bad_request() {
    let world = World::new(40);
    let locators: Vec<Locator> = (0..40u8).map(|i| Locator::of(&[i])).collect();
    let mut m = Machine::new(ServiceConfig::default());
    m.handle_request(
        at(0),
        job(1, locators[0], Op::Probe(locators[1..].to_vec())),
        &world.ring,
    )
    .unwrap();
    assert!(m.poll_ask().is_none());
    assert_eq!(
        m.poll_answered().unwrap().response.status,
        Status::BadRequest
    );
}

#[test]
fn a_full_machine_refuses_more_requests_until_its_answers_are_taken() {
    let mut world = World::new(4);
    let (l, _) = chunk(6);
    let mut m = Machine::new(ServiceConfig {
        max_requests: 2,
        ..ServiceConfig::default()
    });
    for r in 0..2 {
        m.handle_request(at(0), job(r, l, Op::Get(Kind::Chunk)), &world.ring)
            .unwrap();
    }
    let Busy(back) = m
        .handle_request(at(0), job(9, l, Op::Get(Kind::Chunk)), &world.ring)
        .unwrap_err();
    assert_eq!(back.reply, 9);
    assert_eq!(m.counts().busy, 1);
    // Settled but not taken: still counted against the bound.
    while let Some(ask) = m.poll_ask() {
        let a = world.serve(&ask);
        m.handle_answer(at(1), ask.id, a);
    }
    assert_eq!(m.in_work(), 0);
    assert!(
        m.handle_request(at(2), job(9, l, Op::Get(Kind::Chunk)), &world.ring)
            .is_err()
    );
    assert_eq!(m.poll_answered().unwrap().response.status, Status::NotFound);
    m.handle_request(at(3), job(10, l, Op::Get(Kind::Chunk)), &world.ring)
        .unwrap();
}
