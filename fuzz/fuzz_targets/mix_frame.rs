//! Feeds arbitrary bytes to a mix engine as frames. Half the inputs get a
//! valid frame's key tag and size, so the fuzzer reaches the Sphinx code
//! rather than stopping at the size check.

#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mtos_crypto::geometry::SPHINX_PACKET_SIZE;
use mtos_crypto::sphinx::SphinxSecret;
use mtos_mixnode::{EngineConfig, EpochKey, Instant, KeyRing, Link, MixEngine, ReplaySizing};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

fuzz_target!(|data: &[u8]| {
    let mut rng = ChaCha20Rng::from_seed([1; 32]);
    let keys = KeyRing::new(
        EpochKey {
            epoch: 3,
            secret: SphinxSecret::generate(&mut rng),
        },
        ReplaySizing {
            expected_per_key: 1000,
            fp_rate: 1e-6,
        },
    );
    let mut engine = MixEngine::new(EngineConfig::default(), keys);
    let frame: Vec<u8> = match data.split_first() {
        Some((0, rest)) => {
            let mut f = vec![3u8];
            f.extend(rest.iter().copied().cycle().take(SPHINX_PACKET_SIZE));
            f.resize(1 + SPHINX_PACKET_SIZE, 0);
            f
        }
        _ => data.to_vec(),
    };
    engine.handle_frame(Instant::ZERO, Link(0), &frame, &mut rng);
    engine.handle_timeout(Instant::from_duration(Duration::from_secs(100)), &mut rng);
    while engine.poll_transmit().is_some() {}
    while engine.poll_event().is_some() {}
});
