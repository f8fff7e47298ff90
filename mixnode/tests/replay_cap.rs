//! A flood of packets with valid MACs cannot saturate a key's replay
//! filter (`specs/mixing.md` §2): each key admits at most its filter's
//! capacity, at most at its rate, so the false-positive rate stays under
//! its bound and no honest packet is dropped as a replay; what is over
//! the cap is refused as `key_cap`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use mtos_crypto::sphinx::{NodeAddress, Processed};
use mtos_mixnode::Instant;
use mtos_mixnode::engine::{DropReason, EngineConfig, MixEngine, MixingMode};
use mtos_mixnode::format::{CheckError, PacketFormat};
use mtos_mixnode::keys::{EpochKey, KeyPhase, KeyRing, ReplaySizing, SIDE_SHARE};
use mtos_mixnode::replay::ReplayFilter;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// A packet format without public-key work: the first byte is the key
/// it is "authentic" under, bytes 1..33 its replay tag. What the engine
/// does with an authentic packet is the same as with Sphinx.
struct Cheap;

impl PacketFormat for Cheap {
    type Key = u8;
    type Checked = Vec<u8>;
    const PACKET_SIZE: usize = 48;

    fn check(packet: &[u8], key: &u8) -> Result<Vec<u8>, CheckError> {
        if packet[0] == *key {
            Ok(packet.to_vec())
        } else {
            Err(CheckError::Mac)
        }
    }

    fn replay_tag(checked: &Vec<u8>) -> [u8; 32] {
        checked[1..33].try_into().unwrap()
    }

    fn process(checked: Vec<u8>) -> Result<Processed, CheckError> {
        Ok(Processed::Forward {
            next: NodeAddress([1; 32]),
            delay: Duration::ZERO,
            packet: checked,
        })
    }
}

const CAPACITY: u64 = 20_000;
const FP_RATE: f64 = 1e-6;
/// The key's rate cap reaches its capacity as an epoch of this length
/// ends (about 95 a second); the flood is ten times that.
const EPOCH: Duration = Duration::from_secs(200);
const FLOOD: usize = 1_000;
/// What a key's filter is sized for: its capacity while current and an
/// eighth each while next and previous.
const SIZED_FOR: u64 = CAPACITY + 2 * CAPACITY / SIDE_SHARE;
const HONEST: usize = 20;

/// A fresh authentic frame under epoch `epoch`'s key.
fn frame(rng: &mut ChaCha20Rng, epoch: u32) -> Vec<u8> {
    let mut f = vec![0u8; 1 + Cheap::PACKET_SIZE];
    f[0] = (epoch % 256) as u8;
    f[1] = epoch as u8;
    rng.fill(&mut f[2..]);
    f
}

fn key(epoch: u32) -> EpochKey<u8> {
    EpochKey {
        epoch,
        secret: epoch as u8,
    }
}

#[test]
fn a_flood_at_ten_times_the_cap_for_a_keys_life_drops_no_honest_packet_as_a_replay() {
    let sizing = ReplaySizing::for_epochs(CAPACITY, FP_RATE, EPOCH);
    let config = EngineConfig {
        mode: MixingMode::Poisson,
        mean_delay: Duration::ZERO,
        max_delay: Duration::from_secs(10),
        queue_limit: 1_000_000,
        output_limit: 1_000_000,
    };
    let mut engine: MixEngine<Cheap> = MixEngine::new(config, KeyRing::new(key(1), sizing));
    engine.keys_mut().install_next(key(2));
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let mut honest_sent: Vec<Vec<u8>> = Vec::new();
    let mut flooded = 0u64;
    let mut honest_replays = 0u64;
    // Epoch 2's key through its whole life: announced (epoch 1), current
    // (epoch 2), previous (epoch 3); the flood is under it throughout,
    // honest packets under the key of the epoch.
    for second in 0..3 * EPOCH.as_secs() {
        let now = Instant::ZERO + Duration::from_secs(second);
        let epoch = 1 + (second / EPOCH.as_secs()) as u32;
        if second > 0 && second % EPOCH.as_secs() == 0 {
            engine.keys_mut().advance_to(key(epoch)).unwrap();
            engine.keys_mut().install_next(key(epoch + 1));
        }
        let mut arrivals: Vec<(bool, Vec<u8>)> = Vec::with_capacity(FLOOD + HONEST);
        for _ in 0..FLOOD {
            arrivals.push((false, frame(&mut rng, 2)));
        }
        for _ in 0..HONEST {
            arrivals.push((true, frame(&mut rng, epoch)));
        }
        rand::seq::SliceRandom::shuffle(&mut arrivals[..], &mut rng);
        for (i, (honest, f)) in arrivals.into_iter().enumerate() {
            let at = now + Duration::from_micros(i as u64 * 900);
            let replays = engine.counters().drops(DropReason::Replay);
            engine.handle_frame(at, &f, &mut rng);
            if honest {
                honest_replays += engine.counters().drops(DropReason::Replay) - replays;
                honest_sent.push(f);
            } else {
                flooded += 1;
            }
        }
        engine.handle_timeout(now + Duration::from_secs(1), &mut rng);
        let mut sent = 0u64;
        while engine.poll_transmit().is_some() {
            sent += 1;
        }
        // The flood never spends the key before its epoch ends: in the
        // last seconds of epoch 2, key 2 still admits.
        if (2 * EPOCH.as_secs() - 5..2 * EPOCH.as_secs()).contains(&second) {
            assert!(sent > 0, "key 2 spent at second {second}");
        }
        // No honest packet was dropped as a replay (none was sent twice).
        assert_eq!(honest_replays, 0, "second {second}");
    }
    let c = engine.counters().clone();
    // Every packet was new, so a replay drop is a false positive: with
    // every filter within its size, about one in a million of the
    // 612,000 checks (0.6 expected), never the flood's thousands.
    assert!(c.drops(DropReason::Replay) <= 5, "{c:?}");
    let key2 = engine.keys_mut().by_tag(2).unwrap();
    let held = key2.filter.inserted();
    // The flooded key never held more than its capacity; its announced
    // share went in before its epoch, the rest at the cap a second.
    eprintln!(
        "flooded {flooded}, honest {}: key 2 holds {held} of {SIZED_FOR} (predicted false positives {:.2e}), key_cap refused {}, forwarded {}, false replays {} (honest {honest_replays})",
        honest_sent.len(),
        key2.filter.current_fp_rate(),
        c.drops(DropReason::KeyCap),
        c.forwarded,
        c.drops(DropReason::Replay)
    );
    assert!(held <= SIZED_FOR, "{held}");
    assert!(held >= CAPACITY, "the cap admitted too little: {held}");
    assert!(
        key2.filter.current_fp_rate() <= FP_RATE,
        "{}",
        key2.filter.current_fp_rate()
    );
    // What was over the cap is refused and counted, not dropped as a
    // replay; the honest packets of epochs 1 and 3 (other keys) all went
    // through, those of epoch 2 shared its cap with the flood.
    assert!(c.drops(DropReason::KeyCap) >= flooded - SIZED_FOR);
    let honest_total = honest_sent.len() as u64;
    assert_eq!(c.received, flooded + honest_total);
    assert_eq!(
        c.forwarded + c.drops(DropReason::KeyCap) + c.drops(DropReason::Replay),
        flooded + honest_total
    );
    // Replays are still caught: every honest packet of epoch 3 (its key
    // current, all admitted) sent again is dropped as a replay.
    let again: Vec<&Vec<u8>> = honest_sent.iter().filter(|f| f[0] == 3).collect();
    assert_eq!(again.len() as u64, HONEST as u64 * EPOCH.as_secs());
    for f in &again {
        engine.handle_frame(Instant::ZERO + 3 * EPOCH, f, &mut rng);
    }
    assert_eq!(
        engine.counters().drops(DropReason::Replay) - c.drops(DropReason::Replay),
        again.len() as u64
    );

    // The control: the same flood into a filter without the cap (as
    // before) fills it 30 times over, and then calls fresh packets
    // replays.
    let mut uncapped = ReplayFilter::new(CAPACITY, FP_RATE);
    for _ in 0..flooded {
        let mut tag = [0u8; 32];
        rng.fill(&mut tag[..]);
        let _ = uncapped.check_and_insert(&tag);
    }
    let false_replays = (0..10_000)
        .filter(|_| {
            let mut tag = [0u8; 32];
            rng.fill(&mut tag[..]);
            uncapped.contains(&tag)
        })
        .count();
    eprintln!(
        "without the cap: predicted false positives {:.3}, {false_replays} of 10,000 fresh packets called replays",
        uncapped.current_fp_rate()
    );
    assert!(
        uncapped.current_fp_rate() > 0.5,
        "{}",
        uncapped.current_fp_rate()
    );
    assert!(false_replays > 5_000, "{false_replays}");
}

#[test]
fn a_next_and_a_previous_key_admit_their_shares_apart_from_the_current_ones() {
    let sizing = ReplaySizing {
        expected_per_key: 8_000,
        fp_rate: FP_RATE,
        per_second: None,
    };
    let mut ring: KeyRing<u8> = KeyRing::new(key(1), sizing);
    ring.install_next(key(2));
    let mut rng = ChaCha20Rng::seed_from_u64(8);
    let mut fill = |ring: &mut KeyRing<u8>| {
        let slot = ring.by_tag(2).unwrap();
        let mut admitted = 0u64;
        while slot.admit(Instant::ZERO) {
            let mut tag = [0u8; 32];
            rng.fill(&mut tag[..]);
            assert!(slot.filter.check_and_insert(&tag).is_ok());
            admitted += 1;
        }
        (admitted, slot.phase(), slot.fill())
    };
    // Announced: an eighth. Current: its whole capacity all the same (a
    // flood under the next key took nothing of it). Previous: an eighth.
    assert_eq!(fill(&mut ring), (1_000, KeyPhase::Next, 0.1));
    ring.advance_to(key(2)).unwrap();
    assert_eq!(fill(&mut ring), (8_000, KeyPhase::Current, 0.9));
    ring.advance_to(key(3)).unwrap();
    assert_eq!(
        fill(&mut ring),
        (8_000 / SIDE_SHARE, KeyPhase::Previous, 1.0)
    );
}
