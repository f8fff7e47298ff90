//! Sealing and opening a 64 MiB item, next to the raw primitives they are
//! built from, measured in one run so the ratios are meaningful:
//!
//! * `raw/chacha20poly1305`: the AEAD alone over 64 MiB in 64 KiB segments
//!   (what age's STREAM does for the payload);
//! * `raw/blake3`: hashing 64 MiB (part digests and chunk locators);
//! * `item/seal`: sign (BLAKE3 of the part), encrypt as an age file, cut into
//!   3619-byte chunks, hash every chunk, build the manifest tree, store in
//!   memory;
//! * `item/open`: fetch and verify every chunk, decrypt, verify signature and
//!   part digest.
//!
//! `cargo bench -p mtos-benches --bench item`

#![allow(clippy::expect_used)]

use std::time::Duration;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use mtos_crypto::item::seal::{self, Access};
use mtos_crypto::item::tree::MemoryChunks;
use mtos_crypto::item::{ContentType, ItemDraft, Part};
use mtos_crypto::{Identity, Label, Visibility};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

const SIZE: usize = 64 << 20;

fn item_throughput(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::from_seed([1; 32]);
    let mut data = vec![0u8; SIZE];
    rng.fill_bytes(&mut data);
    let author = Identity::generate(
        &mut rng,
        Label::new("bench").expect("label"),
        Visibility::Public,
        0,
    );

    let mut group = c.benchmark_group("64MiB");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Bytes(SIZE as u64));

    let cipher = ChaCha20Poly1305::new(Key::from_slice(&[7; 32]));
    group.bench_function("raw/chacha20poly1305", |b| {
        b.iter_batched_ref(
            || data.clone(),
            |buf| {
                for (i, segment) in buf.chunks_mut(64 << 10).enumerate() {
                    let mut n = [0u8; 12];
                    n[..8].copy_from_slice(&(i as u64).to_be_bytes());
                    let tag = cipher
                        .encrypt_in_place_detached(Nonce::from_slice(&n), b"", segment)
                        .expect("encrypt");
                    std::hint::black_box(tag);
                }
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("raw/blake3", |b| b.iter(|| blake3::hash(&data)));

    let draft = ItemDraft::new(
        ContentType::VideoObject,
        0,
        vec![Part::binary(data.clone(), "video/mp4")],
    );
    group.bench_function("item/seal", |b| {
        b.iter_batched(
            || draft.clone(),
            |draft| {
                let item = draft.sign(&author).expect("sign");
                let mut store = MemoryChunks::new();
                seal::seal(&mut rng, &item, Access::Public, &mut store).expect("seal");
                store
            },
            BatchSize::LargeInput,
        )
    });

    let item = draft.sign(&author).expect("sign");
    let mut store = MemoryChunks::new();
    let sealed = seal::seal(&mut rng, &item, Access::Public, &mut store).expect("seal");
    group.bench_function("item/open", |b| {
        b.iter(|| seal::open(&mut store, &sealed.reference, &[], u64::MAX).expect("open"))
    });
    group.finish();
}

criterion_group!(benches, item_throughput);
criterion_main!(benches);
