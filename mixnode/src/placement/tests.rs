use super::*;

fn nodes(n: u8) -> Vec<[u8; 32]> {
    (0..n).map(|i| [i + 1; 32]).collect()
}

fn locator(i: u32) -> Locator {
    Locator::of(&i.to_be_bytes())
}

#[test]
fn replicas_are_the_k_highest_weights_and_deterministic() {
    let all = nodes(8);
    for i in 0..200 {
        let l = locator(i);
        let r = replicas(&l, &all, 3);
        assert_eq!(r.len(), 3);
        // Exactly the three highest weights, in order.
        let mut by_weight: Vec<_> = all.iter().map(|n| (placement_weight(&l, n), *n)).collect();
        by_weight.sort_by(|a, b| b.cmp(a));
        let top: Vec<_> = by_weight.iter().take(3).map(|(_, n)| *n).collect();
        assert_eq!(r, top);
        // Independent of the order the document lists the nodes in.
        let mut shuffled = all.clone();
        shuffled.reverse();
        shuffled.rotate_left(i as usize % 8);
        assert_eq!(replicas(&l, &shuffled, 3), r);
    }
    // Duplicates count once; fewer nodes than K give them all.
    let dup = [[1; 32], [1; 32], [2; 32]];
    assert_eq!(replicas(&locator(0), &dup, 3).len(), 2);
    assert!(replicas(&locator(0), &[], 3).is_empty());
}

#[test]
fn the_load_is_even_over_the_nodes() {
    let all = nodes(8);
    let records = 8_000u32;
    let mut load = [0u32; 8];
    for i in 0..records {
        for r in replicas(&locator(i), &all, 3) {
            load[usize::from(r[0] - 1)] += 1;
        }
    }
    // Each node holds 3/8 of the records: 3,000 expected, binomial
    // standard deviation about 43; 5 sigma either way.
    for (i, l) in load.iter().enumerate() {
        assert!((2_780..=3_220).contains(l), "node {i} holds {l}");
    }
}

#[test]
fn a_leaving_node_moves_only_its_records_each_to_one_new_replica() {
    let old = nodes(8);
    let gone = old[3];
    let new: Vec<_> = old.iter().copied().filter(|n| *n != gone).collect();
    let mut moved = 0;
    for i in 0..2_000 {
        let l = locator(i);
        let before = replicas(&l, &old, 3);
        let plan = repair(&l, &old, &new, 3);
        assert_eq!(plan.replicas, replicas(&l, &new, 3));
        if before.contains(&gone) {
            moved += 1;
            // The two survivors keep it and copy it to exactly one node.
            assert_eq!(plan.sources.len(), 2, "{i}");
            assert_eq!(plan.targets.len(), 1, "{i}");
            assert!(!before.contains(&plan.targets[0]));
        } else {
            assert_eq!(plan.replicas, before, "{i}: a record that did not move");
            assert!(plan.targets.is_empty());
        }
        assert!(plan.released.is_empty(), "a removal releases nobody");
    }
    // About 3/8 of the records had the node.
    assert!((650..=850).contains(&moved), "{moved} moved");
}

#[test]
fn a_joining_node_takes_about_k_over_n_and_the_displaced_are_released() {
    let old = nodes(8);
    let mut new = old.clone();
    new.push([0xee; 32]);
    let mut taken = 0;
    for i in 0..2_000 {
        let plan = repair(&locator(i), &old, &new, 3);
        match plan.targets.as_slice() {
            [] => assert!(plan.released.is_empty()),
            [t] => {
                assert_eq!(*t, [0xee; 32]);
                assert_eq!(plan.released.len(), 1, "the fourth-heaviest old replica");
                taken += 1;
            }
            more => panic!("{} targets", more.len()),
        }
    }
    // 3/9 of the records: 667 expected.
    assert!((560..=780).contains(&taken), "{taken} taken");
}

/// `specs/vectors/placement.json`: replicas of fixed locators over fixed
/// nodes. `MTOS_WRITE_VECTORS=1` rewrites the file.
#[test]
fn placement_vectors_match_the_spec() {
    use serde_json::{Value, json};
    let hex = |b: &[u8]| data_encoding::HEXLOWER.encode(b);
    let all = nodes(8);
    let cases: Vec<Value> = (0..4u32)
        .map(|i| {
            let l = locator(i);
            json!({
                "locator": hex(l.as_bytes()),
                "weights": all.iter().map(|n| hex(&placement_weight(&l, n))).collect::<Vec<_>>(),
                "replicas": replicas(&l, &all, 3).iter().map(|n| hex(n)).collect::<Vec<_>>(),
            })
        })
        .collect();
    let computed = json!({
        "comment": "specs/storage.md section 1. Nodes are the keys [i; 32] for i = 1..8; locators are BLAKE3 of the 4-byte big-endian i; K = 3.",
        "context": "mtos-placement-v1",
        "nodes": all.iter().map(|n| hex(n)).collect::<Vec<_>>(),
        "cases": cases,
    });
    mtos_crypto::vectors::check(
        "placement.json",
        &serde_json::to_string_pretty(&computed).unwrap(),
    )
    .unwrap();
}
