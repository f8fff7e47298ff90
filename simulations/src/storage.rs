//! The storage placement study (`specs/simulation.md` §3): the scenario's
//! storage nodes get keys from the seed, its records get random locators,
//! and the production placement function (`mtos_mixnode::placement`, the
//! one nodes and clients run) says where each record lives, how even the
//! load is, and what moves when a node leaves or joins. Deterministic in
//! the seed; no virtual time is involved, since placement depends only on
//! the document.

use mtos_crypto::item::Locator;
use mtos_mixnode::placement::{StorageNode, repair, replicas};
use rand::Rng;
use serde_json::{Value, json};

use crate::scenario::{Scenario, Stores};
use crate::sim::component_rng;

/// Node departures examined (each node up to this many).
const MAX_LEAVES: usize = 16;

/// The storage nodes' keys: node `i` of the scenario (mixes first, then
/// providers, as the simulator numbers them) gets 32 bytes from the
/// seed.
pub fn storage_keys(scenario: &Scenario, stores: Stores, seed: u64) -> Vec<[u8; 32]> {
    storage_node_ids(scenario, stores)
        .into_iter()
        .map(|i| {
            let mut key = [0u8; 32];
            component_rng(seed, "storage-node-key", u64::from(i)).fill_bytes(&mut key);
            key
        })
        .collect()
}

/// The storage nodes as signing identities (the churn study's replicas
/// sign their answers, as a node's do, and its service nodes check them):
/// their keys stand where [`storage_keys`] stand elsewhere.
pub fn storage_identities(
    scenario: &Scenario,
    stores: Stores,
    seed: u64,
) -> Vec<mtos_crypto::Identity> {
    storage_node_ids(scenario, stores)
        .into_iter()
        .map(|i| {
            mtos_crypto::Identity::throwaway(
                &mut component_rng(seed, "storage-node-identity", u64::from(i)),
                0,
            )
        })
        .collect()
}

/// The scenario's node numbers of its storage nodes, in order.
pub fn storage_node_ids(scenario: &Scenario, stores: Stores) -> Vec<u32> {
    storage_node_ids_of(
        scenario.layers,
        scenario.nodes_per_layer,
        scenario.providers,
        stores,
    )
}

/// [`storage_node_ids`] from the topology's numbers.
pub fn storage_node_ids_of(
    layers: u32,
    per_layer: u32,
    providers: u32,
    stores: Stores,
) -> Vec<u32> {
    let mixes = layers * per_layer;
    (0..mixes + providers)
        .filter(|&i| match stores {
            Stores::All => true,
            Stores::Mixes => i < mixes,
            Stores::Providers => i >= mixes,
        })
        .collect()
}

/// A storage node's placement salt (`specs/directory.md` §6.4): in a
/// network, the shared random value of the first epoch after it was
/// listed; here 32 bytes from the seed, drawn per node.
fn salt(seed: u64, i: u64) -> [u8; 32] {
    let mut s = [0u8; 32];
    component_rng(seed, "storage-node-salt", i).fill_bytes(&mut s);
    s
}

/// The storage nodes with their salts.
pub fn storage_nodes(scenario: &Scenario, stores: Stores, seed: u64) -> Vec<StorageNode> {
    storage_keys(scenario, stores, seed)
        .into_iter()
        .enumerate()
        .map(|(i, key)| StorageNode {
            key,
            salt: salt(seed, i as u64),
        })
        .collect()
}

/// The study's JSON report, or `None` when the scenario has no
/// `[storage]` section: load, and the share of records that move when a
/// node leaves, joins or changes its key, against K/n; and, for contrast,
/// the share one epoch would move if every node's salt were drawn afresh
/// each epoch (what the fixed salts avoid).
pub fn study(scenario: &Scenario, seed: u64) -> Option<Value> {
    let s = scenario.storage?;
    let nodes = storage_nodes(scenario, s.stores, seed);
    let k = s.replicas;
    let mut rng = component_rng(seed, "storage-records", 0);
    let locators: Vec<Locator> = (0..s.records)
        .map(|_| {
            let mut l = [0u8; 32];
            rng.fill_bytes(&mut l);
            Locator::from_bytes(l)
        })
        .collect();
    // Where every record lives.
    let placed: Vec<Vec<usize>> = locators
        .iter()
        .map(|l| {
            replicas(l, &nodes, k)
                .iter()
                .filter_map(|r| nodes.iter().position(|n| n.key == *r))
                .collect()
        })
        .collect();
    let mut load = vec![0u64; nodes.len()];
    for p in &placed {
        for &i in p {
            load[i] += 1;
        }
    }
    let copies = load.iter().sum::<u64>() as f64;
    let mean = copies / nodes.len() as f64;
    let stddev =
        (load.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / nodes.len() as f64).sqrt();
    let max = load.iter().copied().max().unwrap_or(0);
    let min = load.iter().copied().min().unwrap_or(0);

    // Departures: the first MAX_LEAVES nodes leave one at a time; every
    // record they held needs one new replica, and nothing else moves.
    let leaves = nodes.len().min(MAX_LEAVES);
    let (mut moved, mut new_copies, mut untouched_changed) = (0u64, 0u64, 0u64);
    for gone in 0..leaves {
        let after: Vec<StorageNode> = nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != gone)
            .map(|(_, n)| *n)
            .collect();
        for (i, (l, p)) in locators.iter().zip(&placed).enumerate() {
            if p.contains(&gone) {
                moved += 1;
                new_copies += repair(l, &nodes, &after, k).targets.len() as u64;
            } else if i % 64 == 0 && !repair(l, &nodes, &after, k).targets.is_empty() {
                // Spot check, every 64th record: one the leaving node did
                // not hold keeps its replicas.
                untouched_changed += 1;
            }
        }
    }
    // A join: one new node takes the records it now outranks.
    let mut newcomer = [0u8; 32];
    component_rng(seed, "storage-node-key", u64::MAX).fill_bytes(&mut newcomer);
    let mut joined = nodes.clone();
    joined.push(StorageNode {
        key: newcomer,
        salt: salt(seed, u64::MAX),
    });
    let taken = locators
        .iter()
        .filter(|l| replicas(l, &joined, k).contains(&newcomer))
        .count();
    // A re-key: node 0 leaves and comes back under a new key (a new node,
    // with a new salt): the records it held move, and it takes others.
    let mut rekeyed = nodes.clone();
    if let Some(first) = rekeyed.first_mut() {
        let mut key = [0u8; 32];
        component_rng(seed, "storage-node-key", u64::MAX - 1).fill_bytes(&mut key);
        *first = StorageNode {
            key,
            salt: salt(seed, u64::MAX - 1),
        };
    }
    let moved_by = |after: &[StorageNode]| -> u64 {
        locators
            .iter()
            .map(|l| repair(l, &nodes, after, k).targets.len() as u64)
            .sum()
    };
    let rekey_copies = moved_by(&rekeyed);
    // For contrast: every salt drawn afresh for the next epoch.
    let reshuffled: Vec<StorageNode> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| StorageNode {
            key: n.key,
            salt: salt(seed ^ 0x5eed, i as u64),
        })
        .collect();
    let reshuffle_copies = moved_by(&reshuffled);
    let adversary = crate::storage_adversary::report(
        scenario,
        seed,
        &storage_node_ids(scenario, s.stores),
        &nodes,
        &locators,
        &placed,
        k,
    );
    let all_copies = f64::from(s.records) * k.min(nodes.len()) as f64;
    let records = f64::from(s.records);
    let per_leave = |x: u64| x as f64 / leaves.max(1) as f64;
    Some(json!({
        "storage_nodes": nodes.len(),
        "replicas": k,
        "records": s.records,
        "load": {
            "mean": mean,
            "min": min,
            "max": max,
            "stddev": stddev,
            "max_over_mean": if mean > 0.0 { max as f64 / mean } else { 0.0 },
        },
        "node_leaves": {
            "nodes": leaves,
            "records_to_repair_per_leave": per_leave(moved),
            "share_of_records_per_leave": per_leave(moved) / records.max(1.0),
            "new_copies_per_record_moved": if moved == 0 { 0.0 } else { new_copies as f64 / moved as f64 },
            "other_records_moved": untouched_changed,
        },
        "node_join": {
            "records_taken": taken,
            "share_of_records": taken as f64 / records.max(1.0),
            "expected_share": (k.min(joined.len()) as f64) / joined.len() as f64,
        },
        "node_rekey": {
            "copies_made": rekey_copies,
            "share_of_copies": rekey_copies as f64 / all_copies.max(1.0),
            "expected_share": 2.0 / nodes.len().max(1) as f64,
        },
        "epoch_with_fresh_salts": {
            "copies_made": reshuffle_copies,
            "share_of_copies": reshuffle_copies as f64 / all_copies.max(1.0),
            "expected_share": 1.0 - (k.min(nodes.len()) as f64) / nodes.len().max(1) as f64,
            "with_fixed_salts": 0,
        },
        "adversary": adversary,
    }))
}
