//! Identity costs a person notices: generating an identity, computing a
//! fingerprint (5200 SHA-512 rounds, shown on every `mtos id show`) and
//! sealing/opening a keychain at a fixed scrypt cost.
//!
//! `cargo bench -p mtos-benches --bench identity`

#![allow(clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use mtos_crypto::{Identity, KdfCost, Keychain, Label, SecretString, Visibility};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn identities(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::from_seed([7; 32]);
    let label = Label::new("bench").expect("valid label");
    c.bench_function("identity/generate", |b| {
        b.iter(|| Identity::generate(&mut rng, label.clone(), Visibility::Public, 0))
    });
    let id = Identity::generate(&mut rng, label.clone(), Visibility::Public, 0);
    c.bench_function("identity/fingerprint", |b| b.iter(|| id.fingerprint()));
    let public = id.public();
    c.bench_function("identity/public_from_uri", |b| {
        let uri = public.to_uri();
        b.iter(|| mtos_crypto::PublicIdentity::from_uri(&uri))
    });

    let mut keychain = Keychain::new();
    for n in 0..10 {
        let label = Label::new(format!("id {n}")).expect("valid label");
        let _ = keychain.add(Identity::generate(&mut rng, label, Visibility::Public, 0));
    }
    let pass = SecretString::from("bench".to_owned());
    let mut group = c.benchmark_group("keychain_10_identities_scrypt_2^14");
    group.sample_size(10);
    group.bench_function("seal", |b| {
        b.iter(|| keychain.seal(&pass, KdfCost::LogN(14)))
    });
    if let Ok(sealed) = keychain.seal(&pass, KdfCost::LogN(14)) {
        group.bench_function("open", |b| b.iter(|| Keychain::open(&sealed, &pass)));
    }
    group.finish();
}

criterion_group!(benches, identities);
criterion_main!(benches);
