use super::*;

fn feed_key(seed: &[u8; 32]) -> [u8; 32] {
    ed25519_dalek::SigningKey::from_bytes(seed)
        .verifying_key()
        .to_bytes()
}

#[test]
fn the_owner_signs_any_slot_and_a_storer_verifies_it_at_its_locator() {
    let seed = [7; 32];
    let feed = feed_key(&seed);
    for slot in [0, 1, 2, 1_000, u64::MAX] {
        let record = SlotRecord::sign(&seed, slot, b"entry").unwrap();
        assert_eq!(record.key, slot_key(&feed, slot).unwrap());
        let locator = slot_locator(&record.key);
        record.verify(&locator).unwrap();
        assert_eq!(SlotRecord::decode(&record.encode()).unwrap(), record);
    }
}

#[test]
fn slots_of_one_feed_do_not_look_related() {
    let feed = feed_key(&[7; 32]);
    let keys: Vec<[u8; 32]> = (0..50).map(|n| slot_key(&feed, n).unwrap()).collect();
    let mut unique = keys.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), keys.len());
    assert!(!keys.contains(&feed), "the feed key itself never appears");
    // Another feed's slot n is another key.
    assert_ne!(slot_key(&feed_key(&[8; 32]), 3).unwrap(), keys[3]);
}

#[test]
fn forged_moved_and_tampered_slots_are_refused() {
    let owner = SlotRecord::sign(&[7; 32], 5, b"the real entry").unwrap();
    let locator = slot_locator(&owner.key);

    // Someone else signs "slot 5" of their own feed: another locator.
    let forger = SlotRecord::sign(&[9; 32], 5, b"a forged entry").unwrap();
    assert_eq!(forger.verify(&locator), Err(SlotError::WrongLocator));
    // ... or claims the owner's slot key with their own signature.
    let claimed = SlotRecord {
        key: owner.key,
        ..forger.clone()
    };
    assert_eq!(claimed.verify(&locator), Err(SlotError::BadSignature));
    // The owner's record replayed at another slot's locator.
    let other = slot_locator(&slot_key(&owner_feed(), 6).unwrap());
    assert_eq!(owner.verify(&other), Err(SlotError::WrongLocator));
    // Any flipped bit of the body or signature.
    for i in 0..owner.body.len() * 8 {
        let mut t = owner.clone();
        t.body[i / 8] ^= 1 << (i % 8);
        assert_eq!(t.verify(&locator), Err(SlotError::BadSignature));
    }
    for i in 0..512 {
        let mut t = owner.clone();
        t.signature[i / 8] ^= 1 << (i % 8);
        assert_eq!(t.verify(&locator), Err(SlotError::BadSignature), "bit {i}");
    }
    assert_eq!(SlotRecord::decode(&[0; 95]), Err(SlotError::Truncated(95)));
}

fn owner_feed() -> [u8; 32] {
    feed_key(&[7; 32])
}

#[test]
fn small_order_and_invalid_feed_keys_are_refused() {
    // Every point of small order (the identity among them) would make
    // every slot key the same few points.
    for p in curve25519_dalek::constants::EIGHT_TORSION {
        assert_eq!(
            slot_key(&p.compress().to_bytes(), 0),
            Err(SlotError::BadFeedKey)
        );
    }
    // Bytes that are no point at all.
    let not_a_point = (2u8..=255)
        .map(|y| {
            let mut b = [0u8; 32];
            b[0] = y;
            b
        })
        .find(|b| CompressedEdwardsY(*b).decompress().is_none())
        .expect("some y has no x");
    assert_eq!(slot_key(&not_a_point, 0), Err(SlotError::BadFeedKey));
}

/// `specs/vectors/slots.json`. `MTOS_WRITE_VECTORS=1` rewrites the file.
#[test]
fn slot_vectors_match_the_spec() {
    use serde_json::{Value, json};
    let hex = |b: &[u8]| data_encoding::HEXLOWER.encode(b);
    let seed = [0x53; 32];
    let feed = feed_key(&seed);
    let cases: Vec<Value> = [0u64, 1, 42]
        .iter()
        .map(|&n| {
            let r = SlotRecord::sign(&seed, n, b"slot body").unwrap();
            json!({
                "slot": n,
                "blinding_scalar": hex(blinding(&feed, n).as_bytes()),
                "slot_key": hex(&r.key),
                "locator": hex(slot_locator(&r.key).as_bytes()),
                "record": hex(&r.encode()),
            })
        })
        .collect();
    let computed = json!({
        "comment": "specs/storage.md section 3. The feed's ed25519 seed is 32 bytes 0x53; the body is \"slot body\". Signatures are deterministic (Ed25519 with the blinded prefix).",
        "feed_seed": hex(&seed),
        "feed_key": hex(&feed),
        "cases": cases,
    });
    crate::vectors::check(
        "slots.json",
        &serde_json::to_string_pretty(&computed).unwrap(),
    )
    .unwrap();
}
