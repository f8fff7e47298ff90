//! Node throughput against its raw costs, in one run:
//!
//! * `x25519`: one `diffie_hellman` (x25519-dalek 3, as `sphinx-packet`
//!   uses);
//! * `sphinx_raw`: `sphinx-packet` alone processing one hop of a
//!   4096-byte-payload packet (parse, process, serialise the next packet);
//! * `engine`: the mix engine taking a frame, checking size, key tag, MAC
//!   and replay filter, unwrapping, queueing with zero delay, releasing and
//!   handing out the next frame (`handle_frame` -> `handle_timeout` ->
//!   `poll_transmit`).
//!
//! The ratio engine / sphinx_raw is the engine's overhead; the goal is
//! >= 0.9. `cargo bench -p mtos-benches --bench mix`

#![allow(clippy::expect_used)]

use std::time::{Duration, Instant as WallClock};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mtos_crypto::geometry::SPHINX_PAYLOAD_SIZE;
use mtos_crypto::sphinx::{Destination, Frame, Hop, NodeAddress, SphinxSecret, build_forward};
use mtos_mixnode::{EngineConfig, EpochKey, Instant, KeyRing, MixEngine, MixingMode, ReplaySizing};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

const FRAMES: usize = 2_000;
const EPOCH: u32 = 1;

fn frames(first: &SphinxSecret, rng: &mut ChaCha20Rng) -> Vec<Vec<u8>> {
    let second = SphinxSecret::generate(rng);
    let route = [
        Hop {
            address: NodeAddress([1; 32]),
            sphinx_key: first.public(),
        },
        Hop {
            address: NodeAddress([2; 32]),
            sphinx_key: second.public(),
        },
    ];
    let dest = Destination {
        address: [3; 32],
        surb_id: [0; 16],
    };
    let mut message = vec![0u8; 1000];
    (0..FRAMES)
        .map(|_| {
            rng.fill_bytes(&mut message);
            let p =
                build_forward(rng, &route, &dest, &[Duration::ZERO; 2], &message).expect("packet");
            Frame::encode((EPOCH % 256) as u8, &p).expect("frame")
        })
        .collect()
}

fn engine(secret: &SphinxSecret) -> MixEngine {
    MixEngine::new(
        EngineConfig {
            mode: MixingMode::Poisson,
            ..EngineConfig::default()
        },
        KeyRing::new(
            EpochKey {
                epoch: EPOCH,
                secret: secret.clone(),
            },
            ReplaySizing {
                expected_per_key: 10_000_000,
                per_second: None,
                fp_rate: 1e-6,
            },
        ),
    )
}

fn mix(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::from_seed([1; 32]);
    let secret = SphinxSecret::generate(&mut rng);
    let frames = frames(&secret, &mut rng);
    let mut group = c.benchmark_group("per_packet");
    group.throughput(Throughput::Elements(1));
    group.sample_size(30);

    let a = x25519_dalek::StaticSecret::from([7u8; 32]);
    let b = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from([9u8; 32]));
    group.bench_function("x25519", |bench| {
        bench.iter(|| std::hint::black_box(a.diffie_hellman(&b)))
    });

    let raw_key = x25519_dalek::StaticSecret::from(*secret.to_bytes());
    group.bench_function("sphinx_raw", |bench| {
        bench.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for i in 0..iters {
                let frame = &frames[(i % FRAMES as u64) as usize][1..];
                let start = WallClock::now();
                let packet = sphinx_packet::SphinxPacket::from_bytes(frame).expect("parse");
                let processed = packet.process(&raw_key).expect("process");
                if let sphinx_packet::ProcessedPacketData::ForwardHop {
                    next_hop_packet, ..
                } = processed.data
                {
                    std::hint::black_box(next_hop_packet.to_bytes());
                }
                total += start.elapsed();
            }
            total
        })
    });

    group.bench_function("engine", |bench| {
        bench.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut e = engine(&secret);
            let mut i = 0usize;
            let now = Instant::ZERO;
            for _ in 0..iters {
                if i == FRAMES {
                    // Same frames again would be replays: a fresh engine
                    // (untimed) starts a new pass.
                    e = engine(&secret);
                    i = 0;
                }
                let frame = &frames[i];
                i += 1;
                let start = WallClock::now();
                e.handle_frame(now, frame, &mut rng);
                e.handle_timeout(now, &mut rng);
                let t = e.poll_transmit();
                total += start.elapsed();
                assert!(t.is_some(), "engine dropped a bench frame");
            }
            total
        })
    });
    group.finish();
    eprintln!("payload size {SPHINX_PAYLOAD_SIZE} bytes");
}

criterion_group!(benches, mix);
criterion_main!(benches);
