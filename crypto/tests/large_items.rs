//! Large items: a 5 MiB and a 64 MiB binary survive sealing and opening,
//! and a flipped bit anywhere (proptest-chosen offsets) in a stored chunk
//! or in the sealed bytes is refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Mutex, OnceLock};

use mtos_crypto::OpenError;
use mtos_crypto::item::seal::{self, Access};
use mtos_crypto::item::tree::MemoryChunks;
use mtos_crypto::item::{ContentType, Item, ItemDraft, ItemRef, Locator, Part};
use mtos_crypto::{Identity, Label, Visibility};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use zeroize::Zeroizing;

struct Fixture {
    item: Item,
    reference: ItemRef,
    store: Mutex<MemoryChunks>,
    locators: Vec<Locator>,
    sealed: Vec<u8>,
    secrets: Vec<Zeroizing<[u8; 32]>>,
}

fn build(len: usize, private: bool) -> Fixture {
    let mut rng = ChaCha20Rng::from_seed([len as u8; 32]);
    let author = Identity::generate(&mut rng, Label::new("a").unwrap(), Visibility::Public, 0);
    let reader = Identity::generate(&mut rng, Label::new("r").unwrap(), Visibility::Public, 0);
    let mut data = vec![0u8; len];
    rand::Rng::fill_bytes(&mut rng, &mut data);
    let item = ItemDraft::new(
        ContentType::VideoObject,
        1,
        vec![Part::text("a large one"), Part::binary(data, "video/mp4")],
    )
    .sign(&author)
    .unwrap();
    let mut store = MemoryChunks::new();
    let keys = [reader.encryption_key()];
    let access = if private {
        Access::Private(&keys)
    } else {
        Access::Public
    };
    let sealed = seal::seal(&mut rng, &item, access, &mut store).unwrap();
    assert_eq!(store.len() as u64, sealed.shape.total_chunks());
    let bytes = seal::fetch_sealed(&mut store, &sealed.reference, u64::MAX).unwrap();
    let locators = store.locators().copied().collect();
    Fixture {
        item,
        reference: sealed.reference,
        store: Mutex::new(store),
        locators,
        sealed: bytes,
        secrets: vec![Zeroizing::new(reader.x25519_secret_bytes())],
    }
}

fn five_mib() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| build(5 << 20, false))
}

fn sixty_four_mib() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| build(64 << 20, true))
}

fn round_trip(f: &Fixture) {
    let mut store = f.store.lock().unwrap();
    let opened = seal::open(&mut *store, &f.reference, &f.secrets, u64::MAX).unwrap();
    assert_eq!(opened, f.item);
}

#[test]
fn five_mib_round_trip() {
    let f = five_mib();
    round_trip(f);
    let info = seal::inspect(&mut *f.store.lock().unwrap(), &f.reference, u64::MAX).unwrap();
    assert_eq!(info.shape.levels, 2);
}

#[test]
fn sixty_four_mib_round_trip_with_a_bounded_tree() {
    let f = sixty_four_mib();
    round_trip(f);
    let info = seal::inspect(&mut *f.store.lock().unwrap(), &f.reference, u64::MAX).unwrap();
    assert_eq!(info.shape.levels, 3);
    // No manifest node is larger than a chunk, however large the item.
    assert_eq!(info.nodes.len(), 1 + 2 + 166);
    // A reader with a lower limit refuses it before fetching the rest.
    let mut store = f.store.lock().unwrap();
    assert!(matches!(
        seal::open(&mut *store, &f.reference, &f.secrets, 1 << 20),
        Err(OpenError::TooLarge { .. })
    ));
}

fn flip_chunk(f: &Fixture, which: usize, offset: usize, bit: u8) {
    let locator = f.locators[which % f.locators.len()];
    let mut store = f.store.lock().unwrap();
    let chunk = store.chunk_mut(&locator).unwrap();
    let at = offset % chunk.len();
    chunk[at] ^= 1 << bit;
    let result = seal::open(&mut *store, &f.reference, &f.secrets, u64::MAX);
    // Restore before asserting, so one failure does not poison the others.
    store.chunk_mut(&locator).unwrap()[at] ^= 1 << bit;
    match result {
        Err(OpenError::ChunkCorrupt(l)) => assert_eq!(l, locator.to_string()),
        other => panic!("flipped chunk accepted or misreported: {other:?}"),
    }
}

fn flip_sealed(f: &Fixture, offset: usize, bit: u8) {
    let mut bad = f.sealed.clone();
    let at = offset % bad.len();
    bad[at] ^= 1 << bit;
    assert!(seal::open_sealed(&bad, &f.reference, &f.secrets).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn five_mib_flipped_chunk_bit(which in any::<usize>(), offset in any::<usize>(), bit in 0u8..8) {
        flip_chunk(five_mib(), which, offset, bit);
    }

    #[test]
    fn five_mib_flipped_sealed_bit(offset in any::<usize>(), bit in 0u8..8) {
        flip_sealed(five_mib(), offset, bit);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    #[test]
    fn sixty_four_mib_flipped_chunk_bit(which in any::<usize>(), offset in any::<usize>(), bit in 0u8..8) {
        flip_chunk(sixty_four_mib(), which, offset, bit);
    }

    #[test]
    fn sixty_four_mib_flipped_sealed_bit(offset in any::<usize>(), bit in 0u8..8) {
        flip_sealed(sixty_four_mib(), offset, bit);
    }
}
