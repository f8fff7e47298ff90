use super::*;
use crate::identity::{Identity, Label, Visibility};

fn identity(seed: u8) -> Identity {
    Identity::from_secrets(
        Label::new("writer").unwrap(),
        Visibility::Public,
        0,
        &[seed; 32],
        &[seed.wrapping_add(1); 32],
    )
}

fn item(byte: u8) -> ItemRef {
    let mut bytes = vec![1u8, 0];
    bytes.extend_from_slice(&[byte; 32]);
    bytes.extend_from_slice(&[byte.wrapping_add(1); 32]);
    ItemRef::decode(&bytes).unwrap()
}

#[test]
fn a_follower_reads_what_the_owner_writes_and_nothing_else() {
    let owner = identity(7);
    let keys = FeedKeys::of(&owner);
    let follow = FollowRef::from_uri(&keys.follow().to_uri()).unwrap();
    assert_eq!(follow, keys.follow());
    assert_eq!(&follow.owner, owner.verify_key().as_bytes());
    // The same identity always has the same feed.
    assert_eq!(FeedKeys::of(&owner).follow(), follow);
    for n in [0u64, 1, 2, 500] {
        let record = keys.entry(n, &item(n as u8), 1_000 + n).unwrap();
        assert_eq!(record.body.len(), SEALED_ENTRY_LEN);
        record.verify(&follow.slot_locator(n).unwrap()).unwrap();
        let entry = follow.open(n, &record).unwrap();
        assert_eq!(
            entry,
            FeedEntry {
                n,
                time_ms: 1_000 + n,
                item: item(n as u8)
            }
        );
        // Read as another slot: refused.
        assert_eq!(
            follow.open(n + 1, &record),
            Err(FeedError::NotThisFeed { slot: n + 1 })
        );
    }
    // Another identity's feed is another key, and its entries are not
    // this feed's.
    let other = FeedKeys::of(&identity(9));
    assert_ne!(other.follow().feed, follow.feed);
    let foreign = other.entry(0, &item(1), 5).unwrap();
    assert_eq!(
        follow.open(0, &foreign),
        Err(FeedError::NotThisFeed { slot: 0 })
    );
    // The right key but the wrong read key: the body does not decrypt.
    let mut wrong_read = follow.clone();
    wrong_read.read = Zeroizing::new([0; 32]);
    let record = keys.entry(3, &item(3), 5).unwrap();
    assert_eq!(
        wrong_read.open(3, &record),
        Err(FeedError::Undecryptable { slot: 3 })
    );
    // A flipped byte of the body breaks the signature first.
    let mut tampered = record.clone();
    tampered.body[0] ^= 1;
    assert!(matches!(follow.open(3, &tampered), Err(FeedError::Slot(_))));
}

#[test]
fn the_storer_sees_neither_the_item_nor_the_feed() {
    let keys = FeedKeys::of(&identity(7));
    let follow = keys.follow();
    let entry = item(0x42);
    let record = keys.entry(0, &entry, 0).unwrap();
    let encoded = record.encode();
    for needle in [&entry.encode()[2..34], &follow.feed[..], &follow.owner[..]] {
        assert!(!encoded.windows(needle.len()).any(|w| w == needle));
    }
}

#[test]
fn bad_follow_uris_are_refused() {
    let good = FeedKeys::of(&identity(7)).follow().encode();
    let mut wrong_version = good.clone();
    wrong_version[0] = 2;
    let mut bad_feed = good.clone();
    bad_feed[33..65].copy_from_slice(&[0; 32]);
    for bytes in [
        &good[..96],
        &[good.as_slice(), &[0]].concat()[..],
        &wrong_version[..],
        &bad_feed[..],
    ] {
        assert!(FollowRef::decode(bytes).is_err());
    }
    assert!(FollowRef::from_uri("mtos:item:aaaa").is_err());
}

#[test]
fn feed_vectors_match_the_spec() {
    let owner = identity(7);
    let keys = FeedKeys::of(&owner);
    let follow = keys.follow();
    let hex = |b: &[u8]| data_encoding::HEXLOWER.encode(b);
    let mut entries = String::new();
    for n in 0..2u64 {
        let record = keys
            .entry(n, &item(n as u8 + 1), 1_700_000_000_000 + n)
            .unwrap();
        entries.push_str(&format!(
            "    {{\n      \"n\": {n},\n      \"time_ms\": {},\n      \"item\": \"{}\",\n      \"locator\": \"{}\",\n      \"record\": \"{}\"\n    }}{}\n",
            1_700_000_000_000 + n,
            item(n as u8 + 1).to_uri(),
            hex(follow.slot_locator(n).unwrap().as_bytes()),
            hex(&record.encode()),
            if n == 0 { "," } else { "" }
        ));
    }
    let card = crate::card::Card {
        identity: owner.public(),
        follow: follow.clone(),
        time_ms: 1_700_000_000_000,
    }
    .sign(&owner);
    let card_json = format!(
        "{{\n    \"time_ms\": 1700000000000,\n    \"fingerprint\": \"{}\",\n    \"card\": \"{}\",\n    \"slot0_by_key_locator\": \"{}\",\n    \"slot0_by_fingerprint_locator\": \"{}\"\n  }}",
        owner.fingerprint().digits(),
        hex(&card),
        hex(crate::card::locator_by_key(&follow.owner, 0)
            .unwrap()
            .as_bytes()),
        hex(crate::card::locator_by_fingerprint(&owner.fingerprint(), 0)
            .unwrap()
            .as_bytes()),
    );
    let computed = format!(
        "{{\n  \"comment\": \"specs/feeds.md. The identity is Identity::from_secrets(ed25519 seed [7; 32], x25519 [8; 32]); entries are deterministic (the slot signature is Ed25519, the nonce is the slot number).\",\n  \"identity_key\": \"{}\",\n  \"feed_key\": \"{}\",\n  \"read_key\": \"{}\",\n  \"follow_uri\": \"{}\",\n  \"entries\": [\n{entries}  ],\n  \"card\": {card_json}\n}}",
        hex(&follow.owner),
        hex(&follow.feed),
        hex(follow.read.as_slice()),
        follow.to_uri(),
    );
    crate::vectors::check("feeds.json", &computed).unwrap();
}
