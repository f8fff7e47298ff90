//! The storage study against an adversary (`specs/simulation.md` §3,
//! Adversaries holding storage nodes): with `[adversary]` and `[storage]`
//! the study reports what the nodes the adversary holds (the set the
//! packet simulation uses) hold of the records, and what a targeting
//! adversary pays to hold every replica of one chosen record by adding
//! nodes of its own.
//!
//! A service node asks all K replicas of a record (`storage.md` §5), so a
//! held replica sees every get and put of its records (their locators
//! and times, not who asks); an adversary holding all K of a record's
//! replicas can withhold it (the answers are signed, so it cannot forge
//! one). Placement is rendezvous hashing over keys and salts, and a
//! node's salt is the shared random value of the epoch after it was
//! listed (`directory.md` §6.4), unknown when it chose its key: a record's
//! replicas are a uniformly random K-set, and the shares have closed
//! forms the report gives beside the measures.

use mtos_crypto::item::{Locator, placement_weight};
use mtos_mixnode::placement::StorageNode;
use rand::Rng;
use serde_json::{Value, json};

use crate::scenario::Scenario;
use crate::sim::component_rng;

/// Records the targeting adversary is measured on.
const TARGETS: usize = 200;
/// Nodes it may add, as a multiple of the storage nodes, before a target
/// counts as not reached.
const SYBIL_CAP: usize = 32;

/// C(a, k) / C(b, k): the chance that a uniformly random k-set of b
/// things falls within a given a of them.
fn all_within(a: usize, b: usize, k: usize) -> f64 {
    (0..k)
        .map(|i| a.saturating_sub(i) as f64 / b.saturating_sub(i).max(1) as f64)
        .product()
}

/// The report, or `None` without `[adversary]`. `ids` are the storage
/// nodes' numbers in the scenario, `placed` each record's replicas (as
/// indices into `nodes`).
pub(crate) fn report(
    scenario: &Scenario,
    seed: u64,
    ids: &[u32],
    nodes: &[StorageNode],
    locators: &[Locator],
    placed: &[Vec<usize>],
    k: usize,
) -> Option<Value> {
    scenario.adversary.as_ref()?;
    let held_node = crate::adversary::held_nodes(scenario, seed);
    let held: Vec<bool> = ids
        .iter()
        .map(|id| held_node.get(*id as usize).copied().unwrap_or(false))
        .collect();
    let (n, h) = (nodes.len(), held.iter().filter(|x| **x).count());
    let k = k.min(n);
    let records = placed.len().max(1) as f64;
    let count = |test: &dyn Fn(&Vec<usize>) -> bool| placed.iter().filter(|p| test(p)).count();
    let every = count(&|p| !p.is_empty() && p.iter().all(|i| held[*i]));
    let some = count(&|p| p.iter().any(|i| held[*i]));
    let copies: usize = placed.iter().map(Vec::len).sum();
    let copies_held: usize = placed
        .iter()
        .map(|p| p.iter().filter(|i| held[**i]).count())
        .sum();
    Some(json!({
        "storage_nodes_held": h,
        "records_with_every_replica_held": every,
        "share_with_every_replica_held": every as f64 / records,
        "expected_share_with_every_replica_held": all_within(h, n, k),
        "records_with_a_replica_held": some,
        "share_with_a_replica_held": some as f64 / records,
        "expected_share_with_a_replica_held": 1.0 - all_within(n - h, n, k),
        "share_of_copies_held": copies_held as f64 / copies.max(1) as f64,
        "sybils_to_hold_one_record": sybils(seed, nodes, &held, locators, k),
    }))
}

/// How many nodes this adversary adds (fresh keys; salts it cannot
/// choose) to the `held` ones before every replica of a record it
/// targets is one of its nodes, over the first records: quantiles, the
/// share reached within the cap, and the median the closed form gives
/// (the s at which C(h + s, K) / C(n + s, K) reaches 1/2).
fn sybils(
    seed: u64,
    nodes: &[StorageNode],
    held: &[bool],
    locators: &[Locator],
    k: usize,
) -> Value {
    let n = nodes.len();
    let h = held.iter().filter(|x| **x).count();
    let cap = SYBIL_CAP * n.max(1);
    let mut rng = component_rng(seed, "storage-sybils", 0);
    let added: Vec<StorageNode> = (0..cap)
        .map(|_| {
            let (mut key, mut salt) = ([0u8; 32], [0u8; 32]);
            rng.fill_bytes(&mut key);
            rng.fill_bytes(&mut salt);
            StorageNode { key, salt }
        })
        .collect();
    let targets = &locators[..locators.len().min(TARGETS)];
    let mut needed: Vec<Option<usize>> = targets
        .iter()
        .map(|l| {
            // Every replica is the adversary's once K of its nodes (those
            // it holds, then those it adds) outweigh the heaviest of the
            // others (placement orders by weight, a tie by key: strictly
            // heavier is enough).
            let weight = |s: &StorageNode| placement_weight(l, &s.key, &s.salt);
            let Some(honest) = nodes
                .iter()
                .zip(held)
                .filter(|(_, h)| !**h)
                .map(|(s, _)| weight(s))
                .max()
            else {
                return Some(0); // it holds every node
            };
            let mut over = nodes
                .iter()
                .zip(held)
                .filter(|(s, h)| **h && weight(s) > honest)
                .count();
            if over >= k.max(1) {
                return Some(0);
            }
            added
                .iter()
                .position(|s| {
                    over += usize::from(weight(s) > honest);
                    over >= k.max(1)
                })
                .map(|i| i + 1)
        })
        .collect();
    // Not reached within the cap sorts last.
    needed.sort_by_key(|x| x.unwrap_or(usize::MAX));
    let quantile = |q: f64| -> Value {
        let i = ((needed.len() as f64 - 1.0) * q).round() as usize;
        needed
            .get(i)
            .copied()
            .flatten()
            .map_or(Value::Null, |s| json!(s))
    };
    let expected = (0..=cap).find(|s| all_within(h + s, n + s, k) >= 0.5);
    json!({
        "records": needed.len(),
        "cap": cap,
        "reached_within_cap": needed.iter().filter(|x| x.is_some()).count() as f64 / needed.len().max(1) as f64,
        "p10": quantile(0.1),
        "median": quantile(0.5),
        "p90": quantile(0.9),
        "expected_median": expected,
    })
}
