//! Any byte string handed to `handle_frame` is taken in or dropped with a
//! counted reason, never a panic: random frames and mutations of valid
//! ones.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{EPOCH, Net};
use mtos_crypto::geometry::SPHINX_PACKET_SIZE;
use mtos_crypto::sphinx::{Destination, build_forward};
use mtos_mixnode::{DropReason, EngineConfig};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn valid_frame(seed: u8) -> (Net, Vec<u8>) {
    let net = Net::new(3, EngineConfig::default(), seed);
    let mut rng = ChaCha20Rng::from_seed([seed; 32]);
    let r: Vec<_> = (0..3).map(|i| net.hop(i)).collect();
    let dest = Destination {
        address: [1; 32],
        surb_id: [0; 16],
    };
    let p = build_forward(&mut rng, &r, &dest, &[Duration::from_millis(5); 3], b"m").unwrap();
    (net, Net::frame(&p))
}

fn accounted(net: &mut Net) {
    let c = net.engine(0).counters().clone();
    let dropped: u64 = DropReason::ALL.iter().map(|r| c.drops(*r)).sum();
    let held = net.engine(0).held() as u64;
    assert_eq!(
        c.received,
        dropped + held + c.forwarded + c.delivered,
        "{c:?}"
    );
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Extend(Vec<u8>),
    Tag(u8),
    Overwrite(usize, Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        proptest::collection::vec(any::<u8>(), 1..64).prop_map(Mutation::Extend),
        any::<u8>().prop_map(Mutation::Tag),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..64)
        )
            .prop_map(|(i, v)| Mutation::Overwrite(i, v)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_frames_are_dropped_and_counted(
        bytes in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..9000),
            proptest::collection::vec(any::<u8>(), 1 + SPHINX_PACKET_SIZE..=1 + SPHINX_PACKET_SIZE),
        ],
        tag_current in any::<bool>(),
    ) {
        let (mut net, _) = valid_frame(1);
        let mut bytes = bytes;
        if tag_current && !bytes.is_empty() {
            bytes[0] = (EPOCH % 256) as u8;
        }
        let now = net.now;
        let mut rng = ChaCha20Rng::from_seed([9; 32]);
        net.engine(0).handle_frame(now, &bytes, &mut rng);
        net.engine(0).handle_timeout(now + Duration::from_secs(60), &mut rng);
        accounted(&mut net);
        prop_assert_eq!(net.engine(0).counters().forwarded, 0);
    }

    #[test]
    fn mutated_frames_never_panic(muts in proptest::collection::vec(mutation(), 1..4)) {
        let (mut net, mut frame) = valid_frame(2);
        for m in muts {
            match m {
                Mutation::Flip(i, b) => {
                    let n = frame.len().max(1);
                    if let Some(x) = frame.get_mut(i % n) { *x ^= 1 << b; }
                }
                Mutation::Truncate(i) => frame.truncate(i % (frame.len() + 1)),
                Mutation::Extend(v) => frame.extend(v),
                Mutation::Tag(t) => if let Some(x) = frame.first_mut() { *x = t },
                Mutation::Overwrite(i, v) => {
                    let start = i % (frame.len() + 1);
                    for (j, b) in v.into_iter().enumerate() {
                        if let Some(x) = frame.get_mut(start + j) { *x = b; }
                    }
                }
            }
        }
        let now = net.now;
        let mut rng = ChaCha20Rng::from_seed([9; 32]);
        net.engine(0).handle_frame(now, &frame, &mut rng);
        net.engine(0).handle_timeout(now + Duration::from_secs(60), &mut rng);
        accounted(&mut net);
    }
}
