//! Feeds arbitrary frames to a mix engine. The first input byte picks how:
//!
//! * 0: a valid frame whose payload region is overwritten with the input
//!   (the header MAC still verifies, so replay filter, unwrapping and
//!   queueing are reached with attacker-chosen payloads);
//! * 1: a valid frame XORed with the input (header damage);
//! * otherwise: the raw input as a frame.

#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mtos_crypto::geometry::SPHINX_HEADER_SIZE;
use mtos_crypto::sphinx::{Destination, Frame, Hop, NodeAddress, SphinxSecret, build_forward};
use mtos_mixnode::{EngineConfig, EpochKey, Instant, KeyRing, MixEngine, ReplaySizing};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

const EPOCH: u32 = 3;

fn secret() -> SphinxSecret {
    SphinxSecret::from_bytes([0x42; 32])
}

fn valid_frame() -> &'static Vec<u8> {
    static FRAME: OnceLock<Vec<u8>> = OnceLock::new();
    FRAME.get_or_init(|| {
        let mut rng = ChaCha20Rng::from_seed([2; 32]);
        let second = SphinxSecret::generate(&mut rng);
        let route = [
            Hop {
                address: NodeAddress([1; 32]),
                sphinx_key: secret().public(),
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
        let p = build_forward(&mut rng, &route, &dest, &[Duration::from_millis(1); 2], b"x")
            .unwrap_or_default();
        Frame::encode((EPOCH % 256) as u8, &p).unwrap_or_default()
    })
}

fuzz_target!(|data: &[u8]| {
    let mut rng = ChaCha20Rng::from_seed([1; 32]);
    let keys = KeyRing::new(
        EpochKey {
            epoch: EPOCH,
            secret: secret(),
        },
        ReplaySizing {
            expected_per_key: 1000,
            fp_rate: 1e-6,
            per_second: Some(100.0),
        },
    );
    let mut engine: MixEngine = MixEngine::new(EngineConfig::default(), keys);
    let frame: Vec<u8> = match data.split_first() {
        Some((0, rest)) => {
            let mut f = valid_frame().clone();
            let payload_start = 1 + SPHINX_HEADER_SIZE;
            for (dst, src) in f[payload_start..].iter_mut().zip(rest) {
                *dst = *src;
            }
            f
        }
        Some((1, rest)) => {
            let mut f = valid_frame().clone();
            for (dst, src) in f.iter_mut().zip(rest) {
                *dst ^= *src;
            }
            f
        }
        _ => data.to_vec(),
    };
    engine.handle_frame(Instant::ZERO, &frame, &mut rng);
    engine.handle_timeout(Instant::from_duration(Duration::from_secs(100)), &mut rng);
    while engine.poll_transmit().is_some() {}
    while engine.poll_event().is_some() {}
});
