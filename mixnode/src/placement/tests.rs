use super::*;

/// Nodes with keys [i; 32] and salts [0x80 + i; 32], for i = 1..=n.
fn nodes(n: u8) -> Vec<StorageNode> {
    (0..n)
        .map(|i| StorageNode {
            key: [i + 1; 32],
            salt: [0x81 + i; 32],
        })
        .collect()
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
        let mut by_weight: Vec<_> = all
            .iter()
            .map(|n| (placement_weight(&l, &n.key, &n.salt), n.key))
            .collect();
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
    let dup = [all[0], all[0], all[1]];
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
    let gone = gone.key;
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
    new.push(StorageNode {
        key: [0xee; 32],
        salt: [0xef; 32],
    });
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
                "weights": all.iter().map(|n| hex(&placement_weight(&l, &n.key, &n.salt))).collect::<Vec<_>>(),
                "replicas": replicas(&l, &all, 3).iter().map(|n| hex(n)).collect::<Vec<_>>(),
            })
        })
        .collect();
    let computed = json!({
        "comment": "specs/storage.md section 1. Nodes are the keys [i; 32] with salts [0x80 + i; 32] for i = 1..8; locators are BLAKE3 of the 4-byte big-endian i; K = 3.",
        "context": "mtos-placement-v2",
        "nodes": all.iter().map(|n| hex(&n.key)).collect::<Vec<_>>(),
        "salts": all.iter().map(|n| hex(&n.salt)).collect::<Vec<_>>(),
        "cases": cases,
    });
    mtos_crypto::vectors::check(
        "placement.json",
        &serde_json::to_string_pretty(&computed).unwrap(),
    )
    .unwrap();
}

fn random32(rng: &mut rand_chacha::ChaCha20Rng) -> [u8; 32] {
    use rand::Rng;
    let mut b = [0u8; 32];
    rng.fill_bytes(&mut b);
    b
}

/// Key grinding (`specs/directory.md` §6.4). An attacker who knows every
/// input of the weights in advance makes keys until three of them
/// outweigh every honest node for a locator it chose (a feed's next
/// slot), and then holds all its replicas: it can censor it. With salts
/// drawn after its keys are listed, the same ground keys hold the locator
/// no more often than keys drawn at random.
#[test]
fn ground_keys_win_a_chosen_locator_only_when_the_salt_is_known_in_advance() {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(22);
    // 50 networks of 20 honest storage nodes, each with a locator the
    // attacker chose; 400 draws of the unknown salt for each.
    let (mut tries, mut ground_wins, mut random_wins) = (0u64, 0u32, 0u32);
    for n in 0..50u32 {
        let honest: Vec<StorageNode> = (0..20)
            .map(|_| StorageNode {
                key: random32(&mut rng),
                salt: random32(&mut rng),
            })
            .collect();
        let target = locator(n);
        let with = |keys: &[[u8; 32]], salt: [u8; 32]| -> Vec<StorageNode> {
            let mut all = honest.clone();
            all.extend(keys.iter().map(|k| StorageNode { key: *k, salt }));
            all
        };
        // Grinding against a salt known in advance (as every node's was
        // before salts: none): keys that outweigh every honest node.
        let known = [0x42; 32];
        let best_honest = honest
            .iter()
            .map(|h| placement_weight(&target, &h.key, &h.salt))
            .max()
            .unwrap();
        let mut ground = Vec::new();
        while ground.len() < 3 {
            tries += 1;
            let key = random32(&mut rng);
            if placement_weight(&target, &key, &known) > best_honest {
                ground.push(key);
            }
        }
        let reps = replicas(&target, &with(&ground, known), 3);
        assert!(
            reps.iter().all(|r| ground.contains(r)),
            "the ground keys hold every replica"
        );
        // The salt is the shared value of the epoch after the keys are
        // listed: unknown when they were made.
        let random: Vec<[u8; 32]> = (0..3).map(|_| random32(&mut rng)).collect();
        for _ in 0..400 {
            let salt = random32(&mut rng);
            let owns = |keys: &[[u8; 32]]| {
                replicas(&target, &with(keys, salt), 3)
                    .iter()
                    .all(|r| keys.contains(r))
            };
            ground_wins += u32::from(owns(&ground));
            random_wins += u32::from(owns(&random));
        }
    }
    println!(
        "grinding: {:.0} keys tried per locator won with a known salt; with salts drawn later, \
         ground keys held their locator in {ground_wins} of 20,000 draws, random keys in \
         {random_wins} (1 in C(23, 3) = 1,771 expected: 11.3)",
        tries as f64 / 50.0
    );
    // Any three of 23 nodes hold a locator in 1 draw of 1,771 (11.3 of
    // 20,000): 30 is 5.6 standard deviations above.
    assert!(ground_wins <= 30, "ground keys won {ground_wins} of 20,000");
    assert!(random_wins <= 30, "random keys won {random_wins} of 20,000");
}
