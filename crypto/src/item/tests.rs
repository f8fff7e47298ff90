use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use zeroize::Zeroizing;

use super::seal::{self, Access};
use super::tree::{ChunkSource, MemoryChunks};
use super::*;
use crate::error::OpenError;
use crate::{Label, Visibility};

fn rng(seed: u8) -> ChaCha20Rng {
    ChaCha20Rng::from_seed([seed; 32])
}

fn author() -> Identity {
    Identity::generate(
        &mut rng(1),
        Label::new("author").unwrap(),
        Visibility::Public,
        0,
    )
}

fn note(text: &str) -> ItemDraft {
    let mut d = ItemDraft::new(ContentType::Note, 1_764_000_000_000, vec![Part::text(text)]);
    d.tags = vec!["hello".into(), "mtos".into()];
    d
}

#[test]
fn sign_and_decode_round_trip() {
    let item = note("first post").sign(&author()).unwrap();
    let bytes = item.encode();
    let back = Item::decode(&bytes).unwrap();
    assert_eq!(back, item);
    assert_eq!(back.encode(), bytes);
    assert_eq!(back.author(), &author().verify_key());
    assert_eq!(back.parts()[0].as_text(), Some("first post"));
}

#[test]
fn every_modified_byte_is_rejected() {
    let mut d = note("a post with a reply and a feed position");
    d.refs.push(TypedRef {
        kind: RefKind::ReplyTo,
        target: ItemRef::new(Audience::Public, Locator::of(b"x"), [9; 32]),
    });
    d.feed = Some(FeedPosition {
        feed: [5; 32],
        seq: 3,
        prev: Some(ItemRef::new(Audience::Private, Locator::of(b"y"), [8; 32])),
    });
    d.parts.push(Part::binary(vec![1, 2, 3, 4, 5], "image/png"));
    let bytes = d.sign(&author()).unwrap().encode();
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut bad = bytes.clone();
            bad[i] ^= 1 << bit;
            assert!(Item::decode(&bad).is_err(), "byte {i} bit {bit} accepted");
        }
    }
    for cut in 0..bytes.len() {
        assert!(Item::decode(&bytes[..cut]).is_err(), "cut {cut}");
    }
}

#[test]
fn validation_rules() {
    let a = author();
    let mut d = note("x");
    d.tags = vec!["has space".into()];
    assert!(matches!(d.sign(&a), Err(ItemError::Invalid(_))));
    let mut d = note("x");
    d.tags = vec!["dup".into(), "dup".into()];
    assert!(matches!(d.sign(&a), Err(ItemError::Invalid(_))));
    let mut d = note("x");
    d.parts = vec![];
    assert!(matches!(d.sign(&a), Err(ItemError::Invalid(_))));
    let mut d = note("x");
    d.parts = vec![Part::binary(vec![0], "not a mime")];
    assert!(matches!(d.sign(&a), Err(ItemError::Invalid(_))));
    let mut d = note("x");
    d.parts = vec![Part {
        kind: PartKind::Text,
        mime: "text/plain".into(),
        data: vec![0xff, 0xfe],
    }];
    assert!(matches!(d.sign(&a), Err(ItemError::Invalid(_))));
    let mut d = note("x");
    d.tags = (0..33).map(|i| format!("t{i}")).collect();
    assert!(matches!(d.sign(&a), Err(ItemError::Invalid(_))));
}

#[test]
fn an_item_names_at_most_one_display_component() {
    let a = author();
    let target = |fill: u8| {
        ItemRef::new(
            Audience::Public,
            Locator::from_bytes([fill; 32]),
            [fill; 32],
        )
    };
    let mut d = note("x");
    d.refs = vec![TypedRef {
        kind: RefKind::Component,
        target: target(1),
    }];
    let one = d.clone().sign(&a).unwrap();
    assert_eq!(
        Item::decode(&one.encode()).unwrap().refs()[0].kind,
        RefKind::Component
    );
    d.refs.push(TypedRef {
        kind: RefKind::Component,
        target: target(2),
    });
    assert!(matches!(d.sign(&a), Err(ItemError::Invalid(_))));
    // Kind 5 is no kind: the byte of kind 4 in `one`'s encoding, raised,
    // fails to decode (before the signature is even looked at).
    let bytes = one.encode();
    let at = bytes
        .windows(67)
        .position(|w| w[0] == 4 && w[1] == 1 && w[3..35] == [1; 32])
        .unwrap();
    let mut bad = bytes.clone();
    bad[at] = 5;
    assert!(Item::decode(&bad).is_err());
}

#[test]
fn content_types_parse() {
    for t in ContentType::ALL {
        assert_eq!(ContentType::parse(t.name()), Some(t));
        assert_eq!(ContentType::parse(&t.name().to_lowercase()), Some(t));
    }
    assert_eq!(ContentType::parse("photo"), Some(ContentType::ImageObject));
    assert_eq!(ContentType::parse("Tweet"), None);
}

#[test]
fn public_seal_open_round_trip_is_one_chunk_for_a_note() {
    let item = note("hello world").sign(&author()).unwrap();
    let mut store = MemoryChunks::new();
    let sealed = seal::seal(&mut rng(2), &item, Access::Public, &mut store).unwrap();
    assert_eq!(sealed.shape.levels, 0);
    assert_eq!(store.len(), 1);
    let back = seal::open(&mut store, &sealed.reference, &[], u64::MAX).unwrap();
    assert_eq!(back, item);
    // The reference survives its URI.
    let r = ItemRef::from_uri(&sealed.reference.to_uri()).unwrap();
    assert_eq!(seal::open(&mut store, &r, &[], u64::MAX).unwrap(), item);
}

#[test]
fn private_items_open_only_for_recipients() {
    let item = note("for bob").sign(&author()).unwrap();
    let bob = Identity::generate(
        &mut rng(3),
        Label::new("bob").unwrap(),
        Visibility::Private,
        0,
    );
    let eve = Identity::generate(
        &mut rng(4),
        Label::new("eve").unwrap(),
        Visibility::Private,
        0,
    );
    let mut store = MemoryChunks::new();
    let sealed = seal::seal(
        &mut rng(5),
        &item,
        Access::Private(&[bob.encryption_key()]),
        &mut store,
    )
    .unwrap();
    assert_eq!(sealed.reference.audience(), Audience::Private);
    let secret = |i: &Identity| Zeroizing::new(i.x25519_secret_bytes());
    assert_eq!(
        seal::open(&mut store, &sealed.reference, &[secret(&bob)], u64::MAX).unwrap(),
        item
    );
    assert!(matches!(
        seal::open(&mut store, &sealed.reference, &[secret(&eve)], u64::MAX),
        Err(OpenError::NotARecipient)
    ));
    assert!(matches!(
        seal::open(&mut store, &sealed.reference, &[], u64::MAX),
        Err(OpenError::NotARecipient)
    ));
}

#[test]
fn stanza_count_is_padded_the_same_for_public_and_private() {
    let item = note("x").sign(&author()).unwrap();
    let count_stanzas = |sealed: &[u8]| {
        String::from_utf8_lossy(sealed)
            .lines()
            .take_while(|l| !l.starts_with("---"))
            .filter(|l| l.starts_with("-> X25519 "))
            .count()
    };
    let keys: Vec<[u8; 32]> = (0..5u8)
        .map(|i| {
            Identity::generate(
                &mut rng(10 + i),
                Label::new("k").unwrap(),
                Visibility::Private,
                0,
            )
            .encryption_key()
        })
        .collect();
    for (access, expected) in [
        (Access::Public, 4),
        (Access::Private(&keys[..1]), 4),
        (Access::Private(&keys[..4]), 4),
        (Access::Private(&keys[..5]), 16),
    ] {
        let mut store = MemoryChunks::new();
        let sealed = seal::seal(&mut rng(6), &item, access, &mut store).unwrap();
        let bytes = seal::fetch_sealed(&mut store, &sealed.reference, u64::MAX).unwrap();
        assert_eq!(count_stanzas(&bytes), expected);
    }
}

#[test]
fn every_flipped_bit_of_a_small_sealed_item_is_rejected() {
    let item = note("small").sign(&author()).unwrap();
    let mut store = MemoryChunks::new();
    let sealed = seal::seal(&mut rng(7), &item, Access::Public, &mut store).unwrap();
    let bytes = seal::fetch_sealed(&mut store, &sealed.reference, u64::MAX).unwrap();
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut bad = bytes.clone();
            bad[i] ^= 1 << bit;
            assert!(
                seal::open_sealed(&bad, &sealed.reference, &[]).is_err(),
                "byte {i} bit {bit}"
            );
        }
    }
    // And in the stored chunk (the inline root): the locator catches it.
    let root = *sealed.reference.root();
    let chunk = store.get(&root).unwrap().unwrap();
    for i in 0..chunk.len() {
        let mut damaged = store.clone();
        damaged.chunk_mut(&root).unwrap()[i] ^= 0x10;
        assert!(matches!(
            seal::open(&mut damaged, &sealed.reference, &[], u64::MAX),
            Err(OpenError::ChunkCorrupt(_))
        ));
    }
}

#[test]
fn anonymous_items_verify_but_name_no_keychain_identity() {
    let anon = Identity::throwaway(&mut rng(8), 0);
    let item = note("whistle").sign(&anon).unwrap();
    let mut store = MemoryChunks::new();
    let sealed = seal::seal(&mut rng(9), &item, Access::Public, &mut store).unwrap();
    let back = seal::open(&mut store, &sealed.reference, &[], u64::MAX).unwrap();
    assert_eq!(back.author(), &anon.verify_key());
    let mut keychain = crate::Keychain::new();
    keychain.add(author()).unwrap();
    assert!(keychain.by_key(back.author()).is_none());
}

fn arb_item() -> impl Strategy<Value = ItemDraft> {
    let part = prop_oneof![
        "[a-zA-Z0-9 éü\n]{0,200}".prop_map(Part::text),
        (
            proptest::collection::vec(any::<u8>(), 0..300),
            prop_oneof![Just("image/png"), Just("application/octet-stream")]
        )
            .prop_map(|(d, m)| Part::binary(d, m)),
    ];
    let reference = (any::<bool>(), any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(p, l, k)| {
        let audience = if p {
            Audience::Private
        } else {
            Audience::Public
        };
        ItemRef::new(audience, Locator::from_bytes(l), k)
    });
    // Kind 4 (a component) at most once per item: left to the test above.
    let typed = (0u8..3, reference.clone()).prop_map(|(k, target)| TypedRef {
        kind: [RefKind::ReplyTo, RefKind::RemixOf, RefKind::ReblogOf][usize::from(k)],
        target,
    });
    let feed = proptest::option::of(
        (
            any::<[u8; 32]>(),
            any::<u64>(),
            proptest::option::of(reference),
        )
            .prop_map(|(feed, seq, prev)| FeedPosition { feed, seq, prev }),
    );
    (
        any::<u64>(),
        0usize..ContentType::ALL.len(),
        feed,
        proptest::collection::btree_set("[a-z0-9#_-]{1,20}", 0..5),
        proptest::collection::vec(typed, 0..4),
        proptest::collection::vec(part, 1..5),
    )
        .prop_map(|(created_ms, t, feed, tags, refs, parts)| ItemDraft {
            created_ms,
            content_type: ContentType::ALL[t],
            feed,
            tags: tags.into_iter().collect(),
            refs,
            parts,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn encoding_round_trip_is_byte_identical(draft in arb_item()) {
        let item = draft.sign(&author()).unwrap();
        let bytes = item.encode();
        let back = Item::decode(&bytes).unwrap();
        prop_assert_eq!(back.encode(), bytes);
        prop_assert_eq!(back, item);
    }
}

/// Counts the chunks read.
struct Counting<'a>(&'a mut MemoryChunks, usize);

impl ChunkSource for Counting<'_> {
    fn get(&mut self, locator: &Locator) -> std::io::Result<Option<Vec<u8>>> {
        self.1 += 1;
        self.0.get(locator)
    }
}

#[test]
fn an_items_head_is_read_from_its_first_chunks_whatever_its_size() {
    let mut draft = ItemDraft::new(
        ContentType::VideoObject,
        1_764_000_000_000,
        vec![
            Part::text("a caption"),
            Part::binary(vec![7u8; 4 << 20], "video/webm"),
        ],
    );
    let target = seal::seal(
        &mut rng(8),
        &note("the parent").sign(&author()).unwrap(),
        Access::Public,
        &mut MemoryChunks::new(),
    )
    .unwrap()
    .reference;
    draft.refs = vec![TypedRef {
        kind: RefKind::ReplyTo,
        target: target.clone(),
    }];
    let item = draft.sign(&author()).unwrap();
    let mut store = MemoryChunks::new();
    let sealed = seal::seal(&mut rng(9), &item, Access::Public, &mut store).unwrap();
    let total = store.len();
    let mut counting = Counting(&mut store, 0);
    let (head, lengths, data) =
        seal::open_head(&mut counting, &sealed.reference, &[], u64::MAX, 1024).unwrap();
    assert_eq!(lengths, vec![9, 4 << 20]);
    assert_eq!(head.refs()[0].target, target);
    assert_eq!(head.author(), item.author());
    assert_eq!(head.part_digests(), item.part_digests());
    assert!(data.starts_with(b"a caption"), "{:?}", &data[..16]);
    assert_eq!(data.len(), 1024);
    // About 160 KiB of a 4 MiB item: 45 data chunks and their nodes.
    assert!(counting.1 < 60 && total > 1000, "{} of {total}", counting.1);
    // A small item is read whole, and its head is the same.
    let small = note("short").sign(&author()).unwrap();
    let s = seal::seal(&mut rng(10), &small, Access::Public, &mut store).unwrap();
    let (head, _, data) = seal::open_head(&mut store, &s.reference, &[], u64::MAX, 1024).unwrap();
    assert_eq!(head.tags(), small.tags());
    assert_eq!(data, b"short");
}
