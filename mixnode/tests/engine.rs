//! The mix engine driven by a small virtual-time network.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use mtos_crypto::geometry::SPHINX_PACKET_SIZE;
use mtos_crypto::sphinx::{
    self, Destination, Frame, Hop, SphinxSecret, build_forward, build_surb, sample_exponential,
    use_surb,
};
use mtos_mixnode::{DropReason, EngineConfig, EpochKey, Event, Instant, MixingMode};
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn poisson() -> EngineConfig {
    EngineConfig {
        mode: MixingMode::Poisson,
        mean_delay: ms(20),
        max_delay: Duration::from_secs(5),
        queue_limit: 50_000,
        output_limit: 50_000,
    }
}

fn route(net: &Net, idx: &[usize]) -> Vec<Hop> {
    idx.iter().map(|i| net.hop(*i)).collect()
}

const CLIENT: [u8; 32] = [0xc1; 32];

#[test]
fn five_hops_deliver_and_a_surb_reply_comes_back() {
    // gateway 0, layers 1-3, final hop (storage service) 4
    let mut net = Net::new(5, poisson(), 1);
    let mut rng = ChaCha20Rng::from_seed([2; 32]);
    let forward = route(&net, &[0, 1, 2, 3, 4]);
    let back = route(&net, &[4, 3, 2, 1, 0]);

    // The request carries a SURB for the answer.
    let surb_id = [0x5a; 16];
    let delays: Vec<Duration> = (0..5)
        .map(|_| sample_exponential(&mut rng, ms(20)))
        .collect();
    let (surb, recovery) = build_surb(&mut rng, &back, &CLIENT, surb_id, &delays).unwrap();
    let mut request = b"GET chunk".to_vec();
    request.extend_from_slice(&surb);
    let dest = Destination {
        address: [0x5e; 32],
        surb_id: [0; 16],
    };
    let delays: Vec<Duration> = (0..5)
        .map(|_| sample_exponential(&mut rng, ms(20)))
        .collect();
    let packet = build_forward(&mut rng, &forward, &dest, &delays, &request).unwrap();
    net.inject(forward[0].address, &packet);
    net.run(Duration::from_secs(60));

    assert_eq!(net.delivered.len(), 1);
    let (t, at, delivery) = net.delivered.remove(0);
    assert_eq!(at, forward[4].address);
    assert_eq!(delivery.destination, dest);
    // Held at least the four header delays (and the final hop's own wait).
    assert!(t.since_origin() >= delays[..4].iter().sum::<Duration>());
    let message = sphinx::open_forward_payload(&delivery.payload).unwrap();
    assert_eq!(&message[..9], b"GET chunk");

    // The service answers on the SURB, knowing neither who nor where.
    let (reply, first) = use_surb(&message[9..9 + surb.len()], b"the chunk").unwrap();
    assert_eq!(first, back[0].address);
    net.inject(first, &reply);
    net.run(Duration::from_secs(60));
    assert_eq!(net.delivered.len(), 1);
    let (_, at, delivery) = net.delivered.remove(0);
    assert_eq!(at, back[4].address); // the client's gateway
    assert_eq!(delivery.destination.address, CLIENT);
    assert_eq!(delivery.destination.surb_id, surb_id);
    assert_eq!(recovery.recover(&delivery.payload).unwrap(), b"the chunk");
}

#[test]
fn a_replayed_frame_is_dropped_at_the_first_hop_that_saw_it() {
    let mut net = Net::new(4, poisson(), 3);
    let mut rng = ChaCha20Rng::from_seed([4; 32]);
    let r = route(&net, &[0, 1, 2, 3]);
    let dest = Destination {
        address: [1; 32],
        surb_id: [0; 16],
    };
    let packet = build_forward(&mut rng, &r, &dest, &[ms(1); 4], b"once").unwrap();
    net.record_to = Some(r[1].address);
    net.inject(r[0].address, &packet);
    net.run(Duration::from_secs(10));
    assert_eq!(net.delivered.len(), 1);
    // The adversary replays the frame it saw on the first link.
    net.inject(r[0].address, &packet);
    net.run(Duration::from_secs(10));
    assert_eq!(net.engine(0).counters().drops(DropReason::Replay), 1);
    for i in 1..4 {
        assert_eq!(
            net.engine(i).counters().received,
            1,
            "hop {i} saw the replay"
        );
    }
    assert_eq!(net.delivered.len(), 1);

    // A frame captured on the link into the second hop and replayed there
    // is caught by the second hop.
    let (_, captured) = net.recorded[0].clone();
    net.inject_frame(r[1].address, &captured);
    net.run(Duration::from_secs(10));
    assert_eq!(net.engine(1).counters().drops(DropReason::Replay), 1);
    assert_eq!(net.engine(2).counters().received, 1);
    assert_eq!(net.delivered.len(), 1);
}

/// A ring made `unfiltered` (the simulator's, when its scenario asks)
/// lets a replayed frame through, as a node's ring never does: the
/// switch is the ring's, not the engine's or the sizing's.
#[test]
fn only_an_unfiltered_ring_lets_a_replay_through() {
    let mut rng = ChaCha20Rng::from_seed([6; 32]);
    let secret = SphinxSecret::generate(&mut rng);
    let hop = Hop {
        address: mtos_crypto::sphinx::NodeAddress([7; 32]),
        sphinx_key: secret.public(),
    };
    let dest = Destination {
        address: [1; 32],
        surb_id: [0; 16],
    };
    let packet = build_forward(&mut rng, &[hop], &dest, &[ms(1)], b"twice").unwrap();
    let frame = Net::frame(&packet);
    let key = || EpochKey {
        epoch: EPOCH,
        secret: secret.clone(),
    };
    let rings = [
        (mtos_mixnode::KeyRing::new(key(), sizing()), 1),
        (mtos_mixnode::KeyRing::unfiltered(key(), sizing()), 0),
    ];
    for (keys, replays) in rings {
        let filtered = keys.slots().all(|s| s.filter.is_on());
        let mut engine = mtos_mixnode::MixEngine::<mtos_mixnode::Sphinx>::new(poisson(), keys);
        engine.handle_frame(Instant::ZERO, &frame, &mut rng);
        engine.handle_frame(Instant::ZERO, &frame, &mut rng);
        let c = engine.counters();
        assert_eq!(c.drops(DropReason::Replay), replays, "filtered: {filtered}");
        assert_eq!(engine.held(), 2 - replays as usize);
        assert_eq!(filtered, replays == 1);
    }
}

#[test]
fn garbage_does_not_fill_the_replay_filter() {
    let mut net = Net::new(2, poisson(), 5);
    let mut rng = ChaCha20Rng::from_seed([6; 32]);
    let tag = (EPOCH % 256) as u8;
    for _ in 0..20_000 {
        let mut frame = vec![0u8; 1 + SPHINX_PACKET_SIZE];
        rng.fill_bytes(&mut frame);
        frame[0] = tag;
        net.inject_frame(net.hop(0).address, &frame);
    }
    let engine = net.engine(0);
    assert_eq!(engine.counters().drops(DropReason::HeaderMac), 20_000);
    let filters: Vec<u64> = engine.keys().slots().map(|s| s.filter.inserted()).collect();
    assert_eq!(filters, vec![0], "garbage reached the replay filter");
    // Honest packets still pass: no false positives from the flood.
    let r = route(&net, &[0, 1]);
    let dest = Destination {
        address: [1; 32],
        surb_id: [0; 16],
    };
    for _ in 0..200 {
        let p = build_forward(&mut rng, &r, &dest, &[ms(0); 2], b"x").unwrap();
        net.inject(r[0].address, &p);
    }
    net.run(Duration::from_secs(10));
    assert_eq!(net.delivered.len(), 200);
    assert_eq!(net.engine(0).counters().drops(DropReason::Replay), 0);
}

#[test]
fn hold_times_through_three_layers_are_erlang() {
    // 3 mix layers and a final hop; senders draw each hop's delay from
    // Exp(mean 20 ms). What the engines actually apply, from entering
    // layer 1 to leaving layer 3, must be Erlang(3, 1/20 ms).
    let mut net = Net::new(4, poisson(), 7);
    let mut rng = ChaCha20Rng::from_seed([8; 32]);
    let r = route(&net, &[0, 1, 2, 3]);
    net.record_to = Some(r[3].address);
    let dest = Destination {
        address: [1; 32],
        surb_id: [0; 16],
    };
    let n = 10_000;
    let mut injected = Vec::with_capacity(n);
    for i in 0..n {
        let delays: Vec<Duration> = (0..4)
            .map(|_| sample_exponential(&mut rng, ms(20)))
            .collect();
        let p = build_forward(&mut rng, &r, &dest, &delays, &(i as u32).to_be_bytes()).unwrap();
        // One arrival per millisecond: packets overlap in every queue.
        net.run(ms(1));
        net.now = Instant::from_duration(ms(i as u64));
        injected.push(net.now);
        net.inject(r[0].address, &p);
    }
    net.run(Duration::from_secs(60));
    assert_eq!(net.recorded.len(), n);
    // Which packet left layer 3 when: the final hop's key reveals it.
    let final_secret = net.secret(3).clone();
    let mut holds_ms: Vec<f64> = net
        .recorded
        .iter()
        .map(|(t, frame)| {
            let frame = Frame::parse(frame).unwrap();
            let processed = sphinx::check_header(frame.packet, &final_secret)
                .unwrap()
                .process()
                .unwrap();
            let sphinx::Processed::Final { payload, .. } = processed else {
                panic!("not a final hop packet")
            };
            let msg = sphinx::open_forward_payload(&payload).unwrap();
            let i = u32::from_be_bytes(msg[..4].try_into().unwrap()) as usize;
            (*t - injected[i]).as_secs_f64() * 1000.0
        })
        .collect();
    let d = ks_statistic(&mut holds_ms, erlang_cdf(3, 1.0 / 20.0));
    assert!(
        d < ks_critical_1pct(n),
        "KS statistic {d} >= {} (n = {n})",
        ks_critical_1pct(n)
    );
    // The same test rejects a wrong distribution (it has power).
    let d_wrong = ks_statistic(&mut holds_ms, erlang_cdf(2, 1.0 / 20.0));
    assert!(d_wrong > ks_critical_1pct(n));
}

#[test]
fn pool_mode_never_flushes_below_its_minimum() {
    let min_pool = 20;
    let config = EngineConfig {
        mode: MixingMode::Pool {
            interval: ms(100),
            min_pool,
            fraction: 0.6,
        },
        ..poisson()
    };
    let mut net = Net::new(2, config, 9);
    let mut rng = ChaCha20Rng::from_seed([10; 32]);
    let r = route(&net, &[0, 1]);
    let dest = Destination {
        address: [1; 32],
        surb_id: [0; 16],
    };
    let mut injected = 0;
    let mut max_held = 0;
    for step in 0..400u64 {
        // Bursty arrivals: 0 to 5 packets per 25 ms.
        for _ in 0..rng.random_range(0..6) {
            let p = build_forward(&mut rng, &r, &dest, &[ms(0); 2], b"p").unwrap();
            net.inject(r[0].address, &p);
            injected += 1;
        }
        let before = net.engine(0).held();
        net.run(ms(25));
        let after = net.engine(0).held();
        max_held = max_held.max(before);
        if before >= min_pool {
            assert!(after >= min_pool, "step {step}: {before} -> {after}");
        } else {
            assert_eq!(after, before, "flushed below the minimum");
        }
        net.now = Instant::from_duration(ms(25 * (step + 1)));
    }
    assert!(injected > 500 && max_held > min_pool);
    assert_eq!(
        net.engine(0).counters().forwarded as usize + net.engine(0).held(),
        injected
    );
}

#[test]
fn every_drop_reason_is_counted() {
    let config = EngineConfig {
        queue_limit: 3,
        output_limit: 2,
        max_delay: ms(100),
        ..poisson()
    };
    let mut net = Net::new(3, config, 11);
    let mut rng = ChaCha20Rng::from_seed([12; 32]);
    let r = route(&net, &[0, 1, 2]);
    let dest = Destination {
        address: [1; 32],
        surb_id: [0; 16],
    };
    let packet =
        |rng: &mut ChaCha20Rng, d: Duration| build_forward(rng, &r, &dest, &[d; 3], b"x").unwrap();
    let engine_drops = |net: &mut Net, frame: &[u8]| {
        let now = net.now;
        let mut rng = ChaCha20Rng::from_seed([13; 32]);
        net.engine(0).handle_frame(now, frame, &mut rng);
    };
    // Wrong size.
    engine_drops(&mut net, &[0u8; 100]);
    // Unknown key tag.
    let p = packet(&mut rng, ms(1));
    let mut f = Net::frame(&p);
    f[0] = f[0].wrapping_add(1);
    engine_drops(&mut net, &f);
    // Header MAC (a packet for another node).
    let other = build_forward(&mut rng, &r[1..], &dest, &[ms(1); 2], b"x").unwrap();
    engine_drops(&mut net, &Net::frame(&other));
    // Delay above the cap.
    engine_drops(&mut net, &Net::frame(&packet(&mut rng, ms(500))));
    // Replay.
    let p = packet(&mut rng, ms(50));
    engine_drops(&mut net, &Net::frame(&p));
    engine_drops(&mut net, &Net::frame(&p));
    // Queue full: the limit is 3 held packets.
    for _ in 0..3 {
        engine_drops(&mut net, &Net::frame(&packet(&mut rng, ms(50))));
    }
    // Output full: release 3 packets into an output queue of 2, unpolled.
    let now = net.now + Duration::from_secs(1);
    let mut r2 = ChaCha20Rng::from_seed([14; 32]);
    net.engine(0).handle_timeout(now, &mut r2);
    let c = net.engine(0).counters().clone();
    for reason in [
        DropReason::WrongSize,
        DropReason::UnknownKey,
        DropReason::HeaderMac,
        DropReason::DelayTooLong,
        DropReason::Replay,
        DropReason::QueueFull,
        DropReason::OutputFull,
    ] {
        assert!(c.drops(reason) >= 1, "{reason:?} never counted: {c:?}");
    }
    // Malformed: a header whose MAC verifies but whose routing data does
    // not parse. Any sender can make one (the sender knows the packet's
    // shared secret); honest software never does. Forged here from
    // Sphinx's own key schedule.
    let forged = forge_unparsable_header(net.secret(0));
    engine_drops(&mut net, &Net::frame(&forged));
    let c = net.engine(0).counters().clone();
    assert_eq!(c.drops(DropReason::Malformed), 1, "{c:?}");
    let drop_events = std::iter::from_fn(|| net.engine(0).poll_event())
        .filter(|e| matches!(e, Event::Dropped(_)))
        .count();
    assert!(drop_events <= 2, "events exceed the output limit");
}

#[test]
fn key_rotation_accepts_next_and_previous_and_drops_absent_keys() {
    let mut net = Net::new(2, poisson(), 15);
    let mut rng = ChaCha20Rng::from_seed([16; 32]);
    let next_secret = SphinxSecret::generate(&mut rng);
    let mut r = route(&net, &[0, 1]);
    net.engine(0).keys_mut().install_next(EpochKey {
        epoch: EPOCH + 1,
        secret: next_secret.clone(),
    });
    let dest = Destination {
        address: [1; 32],
        surb_id: [0; 16],
    };
    // A packet for the next epoch, tagged as such (hop 1 only knows the
    // current epoch: route the next-epoch packet to hop 0 only).
    r[0].sphinx_key = next_secret.public();
    let p = build_forward(&mut rng, &r[..1], &dest, &[ms(0)], b"next").unwrap();
    let f = Frame::encode(((EPOCH + 1) % 256) as u8, &p).unwrap();
    net.inject_frame(r[0].address, &f);
    net.run(Duration::from_secs(1));
    assert_eq!(net.delivered.len(), 1);
    // Rotate: the old current key becomes previous and still works.
    assert!(net.engine(0).keys_mut().rotate());
    let old = route(&net, &[0]);
    let p = build_forward(&mut rng, &old, &dest, &[ms(0)], b"prev").unwrap();
    net.inject(old[0].address, &p);
    net.run(Duration::from_secs(1));
    assert_eq!(net.delivered.len(), 2);
    // After the grace period it is gone: dropped with a reason.
    net.engine(0).keys_mut().retire_previous();
    let p = build_forward(&mut rng, &old, &dest, &[ms(0)], b"late").unwrap();
    net.inject(old[0].address, &p);
    assert_eq!(net.engine(0).counters().drops(DropReason::UnknownKey), 1);
}

/// A packet to `node` whose header MAC verifies but
/// whose routing flag is unknown, built with `sphinx-packet`'s public key
/// schedule: alpha = g^a, keys = HKDF-SHA256(salt, g^(a·x), info), the
/// routing block encrypted with AES-128-CTR under the first 16 key bytes
/// and authenticated with HMAC-SHA256 (truncated to 16) under the next 16.
fn forge_unparsable_header(node: &SphinxSecret) -> Vec<u8> {
    use sphinx_packet::constants::{
        EXPANDED_SHARED_SECRET_HKDF_INFO, EXPANDED_SHARED_SECRET_HKDF_SALT,
        EXPANDED_SHARED_SECRET_LENGTH, HEADER_INTEGRITY_MAC_SIZE,
    };
    use sphinx_packet::crypto::{
        STREAM_CIPHER_INIT_VECTOR, compute_keyed_hmac, generate_pseudorandom_bytes,
    };
    let a = x25519_dalek::StaticSecret::from([0x33; 32]);
    let alpha = x25519_dalek::PublicKey::from(&a);
    let dh = a.diffie_hellman(&x25519_dalek::PublicKey::from(node.public()));
    let hkdf =
        hkdf::Hkdf::<sha2::Sha256>::new(Some(EXPANDED_SHARED_SECRET_HKDF_SALT), dh.as_bytes());
    let mut expanded = [0u8; EXPANDED_SHARED_SECRET_LENGTH];
    hkdf.expand(EXPANDED_SHARED_SECRET_HKDF_INFO, &mut expanded)
        .unwrap();
    let stream_key: [u8; 16] = expanded[..16].try_into().unwrap();
    let mac_key = &expanded[16..32];
    let routing_len = mtos_crypto::geometry::SPHINX_HEADER_SIZE - 32 - HEADER_INTEGRITY_MAC_SIZE;
    let keystream =
        generate_pseudorandom_bytes(&stream_key, &STREAM_CIPHER_INIT_VECTOR, routing_len);
    let mut enc = vec![0x5a; routing_len];
    enc[0] = keystream[0] ^ 0xee; // decrypts to routing flag 0xee: unknown
    let mac = compute_keyed_hmac::<sha2::Sha256>(mac_key, &enc)
        .unwrap()
        .into_bytes();
    let mut packet = alpha.as_bytes().to_vec();
    packet.extend_from_slice(&mac[..HEADER_INTEGRITY_MAC_SIZE]);
    packet.extend_from_slice(&enc);
    packet.resize(SPHINX_PACKET_SIZE, 0x77);
    // Our own header check accepts it: the MAC is right.
    sphinx::check_header(&packet, node).unwrap();
    packet
}

#[test]
fn a_frame_arriving_at_a_due_flush_does_not_postpone_it() {
    let config = EngineConfig {
        mode: MixingMode::Pool {
            interval: ms(100),
            min_pool: 0,
            fraction: 1.0,
        },
        ..poisson()
    };
    let mut net = Net::new(2, config, 17);
    let mut rng = ChaCha20Rng::from_seed([18; 32]);
    let r = route(&net, &[0, 1]);
    let dest = Destination {
        address: [1; 32],
        surb_id: [0; 16],
    };
    let p = build_forward(&mut rng, &r, &dest, &[ms(0); 2], b"a").unwrap();
    net.inject(r[0].address, &p); // t = 0: the first flush is due at 100 ms
    // The next frame arrives exactly when the flush is due, before the
    // driver has run the timer.
    net.now = Instant::from_duration(ms(100));
    let p = build_forward(&mut rng, &r, &dest, &[ms(0); 2], b"b").unwrap();
    net.inject(r[0].address, &p);
    assert_eq!(
        net.engine(0).poll_timeout(),
        Some(Instant::from_duration(ms(100)))
    );
    net.run(Duration::ZERO);
    assert_eq!(
        net.engine(0).counters().forwarded,
        2,
        "the due flush was skipped"
    );

    // After an idle stretch the schedule resumes at its next tick, in phase.
    net.now = Instant::from_duration(ms(1_050));
    let p = build_forward(&mut rng, &r, &dest, &[ms(0); 2], b"c").unwrap();
    net.inject(r[0].address, &p);
    assert_eq!(
        net.engine(0).poll_timeout(),
        Some(Instant::from_duration(ms(1_100)))
    );
}

#[test]
fn a_zero_pool_interval_does_not_hang() {
    let config = EngineConfig {
        mode: MixingMode::Pool {
            interval: Duration::ZERO,
            min_pool: 0,
            fraction: 1.0,
        },
        ..poisson()
    };
    let mut net = Net::new(2, config, 19);
    let mut rng = ChaCha20Rng::from_seed([20; 32]);
    let r = route(&net, &[0, 1]);
    let dest = Destination {
        address: [1; 32],
        surb_id: [0; 16],
    };
    let p = build_forward(&mut rng, &r, &dest, &[ms(0); 2], b"a").unwrap();
    net.inject(r[0].address, &p);
    net.now = Instant::from_duration(Duration::from_secs(10));
    net.run(Duration::from_secs(1));
    assert_eq!(net.delivered.len(), 1);
}

#[test]
fn records_list_every_accepted_tag_and_every_hold() {
    let mut net = Net::new(2, poisson(), 9);
    let mut rng = ChaCha20Rng::from_seed([9; 32]);
    let r = route(&net, &[0, 1]);
    let dest = Destination {
        address: [1; 32],
        surb_id: [0; 16],
    };
    let secret = net.secret(0).clone();
    let engine = net.engine(0);
    engine.enable_journal();
    let t0 = Instant::ZERO;
    let packets: Vec<Vec<u8>> = (0..5)
        .map(|_| build_forward(&mut rng, &r, &dest, &[ms(30), ms(1)], b"x").unwrap())
        .collect();
    for p in &packets {
        engine.handle_frame(t0, &Net::frame(p), &mut rng);
    }
    // A replay and garbage are not recorded: only tags that entered the
    // filter, so the driver persists exactly what the filter holds.
    engine.handle_frame(t0, &Net::frame(&packets[0]), &mut rng);
    engine.handle_frame(t0, &[0u8; SPHINX_PACKET_SIZE + 1], &mut rng);
    let records = engine.take_journal();
    let expected: Vec<[u8; 32]> = packets
        .iter()
        .map(|p| sphinx::check_header(p, &secret).unwrap().replay_tag())
        .collect();
    assert_eq!(
        records.tags.iter().map(|(_, t)| *t).collect::<Vec<_>>(),
        expected
    );
    assert!(records.tags.iter().all(|(epoch, _)| *epoch == EPOCH));
    assert!(records.holds.is_empty());
    engine.handle_timeout(t0 + ms(30), &mut rng);
    let records = engine.take_journal();
    assert!(records.tags.is_empty());
    assert_eq!(records.holds, vec![ms(30); 5]);
    assert!(engine.take_journal().holds.is_empty());
}

#[test]
fn a_raised_delay_cap_takes_effect_without_a_restart() {
    // A node started under a 100 ms cap, then the document raises it to
    // 1 s: a packet asking 500 ms is refused before and taken after, as
    // senders following the new document expect.
    let config = EngineConfig {
        max_delay: ms(100),
        ..poisson()
    };
    let mut net = Net::new(3, config, 21);
    let mut rng = ChaCha20Rng::from_seed([22; 32]);
    let r = route(&net, &[0, 1, 2]);
    let dest = Destination {
        address: [1; 32],
        surb_id: [0; 16],
    };
    let take = |net: &mut Net, rng: &mut ChaCha20Rng| {
        let p = build_forward(rng, &r, &dest, &[ms(500); 3], b"x").unwrap();
        let now = net.now;
        let mut r2 = ChaCha20Rng::from_seed([23; 32]);
        net.engine(0).handle_frame(now, &Net::frame(&p), &mut r2);
        net.engine(0).counters().drops(DropReason::DelayTooLong)
    };
    assert_eq!(take(&mut net, &mut rng), 1);
    net.engine(0).set_delays(ms(20), ms(1000));
    assert_eq!(net.engine(0).config().max_delay, ms(1000));
    assert_eq!(take(&mut net, &mut rng), 1, "taken under the new cap");
    assert_eq!(net.engine(0).held(), 1);
}

#[test]
fn a_changed_mixing_mode_takes_effect_and_loses_no_held_packet() {
    // A network document switches from a pool to Poisson mixing and
    // back: packets pooled under the old mode leave within the new
    // mode's maximum delay, packets under a delay keep their release
    // time, and new ones are held as the new mode says.
    let pool = MixingMode::Pool {
        interval: ms(10_000),
        min_pool: 50,
        fraction: 0.5,
    };
    let mut net = Net::new(
        2,
        EngineConfig {
            mode: pool,
            ..poisson()
        },
        31,
    );
    let mut rng = ChaCha20Rng::from_seed([32; 32]);
    let r = route(&net, &[0, 1]);
    let dest = Destination {
        address: [1; 32],
        surb_id: [0; 16],
    };
    let send = |net: &mut Net, rng: &mut ChaCha20Rng, n: usize, delay: Duration| {
        for _ in 0..n {
            let p = build_forward(rng, &r, &dest, &[delay; 2], b"m").unwrap();
            net.inject(r[0].address, &p);
        }
    };
    // 30 packets, fewer than the pool's minimum: under the pool they
    // would wait for more.
    send(&mut net, &mut rng, 30, ms(0));
    net.run(ms(60_000));
    assert_eq!(net.engine(0).held(), 30);
    assert_eq!(net.engine(0).counters().forwarded, 0);
    let now = net.now;
    net.engine(0).set_mode(now, MixingMode::Poisson, &mut rng);
    assert_eq!(net.engine(0).config().mode, MixingMode::Poisson);
    assert_eq!(net.engine(0).held(), 30);
    net.run(poisson().max_delay + ms(1));
    assert_eq!(net.engine(0).held(), 0);
    assert_eq!(net.engine(0).counters().forwarded, 30);
    // Back to the pool: a packet already under a 500 ms delay leaves at
    // its time; packets arriving after are pooled.
    send(&mut net, &mut rng, 1, ms(500));
    let now = net.now;
    net.engine(0).set_mode(now, pool, &mut rng);
    send(&mut net, &mut rng, 10, ms(0));
    net.run(ms(600));
    assert_eq!(net.engine(0).counters().forwarded, 31);
    assert_eq!(net.engine(0).held(), 10);
    // The same mode again changes nothing.
    let now = net.now;
    net.engine(0).set_mode(now, pool, &mut rng);
    assert_eq!(net.engine(0).held(), 10);
}

/// The worker pool's split: frames unwrapped on other threads (in any
/// order, replays among them) and accepted in arrival order do what one
/// thread handling them would: the same transmits, the same drops, the
/// replay caught after the MAC and before anything leaves.
#[test]
fn frames_unwrapped_on_worker_threads_and_accepted_in_order_match_one_thread() {
    use mtos_mixnode::engine::{Unwrapped, unwrap_frame};
    let mut one = Net::new(2, poisson(), 9);
    let mut split = Net::new(2, poisson(), 9);
    let mut rng = ChaCha20Rng::from_seed([7; 32]);
    let r = route(&one, &[0, 1]);
    let dest = Destination {
        address: [1; 32],
        surb_id: [0; 16],
    };
    let mut frames: Vec<Vec<u8>> = (0..200u32)
        .map(|i| {
            let p = build_forward(&mut rng, &r, &dest, &[ms(3); 2], &i.to_be_bytes()).unwrap();
            Net::frame(&p)
        })
        .collect();
    // Replays, garbage and a frame of the wrong size among them.
    frames.push(frames[3].clone());
    frames.push(frames[150].clone());
    let mut bad = frames[10].clone();
    bad[40] ^= 1;
    frames.push(bad);
    frames.push(vec![0u8; 17]);
    frames.push(frames[3].clone());

    let first = r[0].address;
    for f in &frames {
        one.inject_frame(first, f);
    }
    // Four workers each unwrap every fourth frame, in reverse; the engine
    // takes the results back in arrival order.
    let keys = split.engine(0).worker_keys();
    let mut results: Vec<Option<Unwrapped>> = (0..frames.len()).map(|_| None).collect();
    let done: Vec<Vec<(usize, Unwrapped)>> = std::thread::scope(|s| {
        (0..4)
            .map(|w| {
                let (keys, frames) = (&keys, &frames);
                s.spawn(move || {
                    (0..frames.len())
                        .rev()
                        .filter(|i| i % 4 == w)
                        .map(|i| {
                            (
                                i,
                                unwrap_frame::<mtos_mixnode::format::Sphinx>(keys, &frames[i]),
                            )
                        })
                        .collect()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect()
    });
    for (i, u) in done.into_iter().flatten() {
        results[i] = Some(u);
    }
    let now = split.now;
    let mut engine_rng = ChaCha20Rng::from_seed([1; 32]);
    for u in results {
        split.engine(0).accept(now, u.unwrap(), &mut engine_rng);
    }
    let (a, b) = (
        one.engine(0).counters().clone(),
        split.engine(0).counters().clone(),
    );
    assert_eq!(a, b);
    assert_eq!(b.drops(DropReason::Replay), 3);
    assert_eq!(b.drops(DropReason::HeaderMac), 1);
    assert_eq!(b.drops(DropReason::WrongSize), 1);
    assert_eq!(split.engine(0).held(), 200);
    one.run(Duration::from_secs(10));
    split.run(Duration::from_secs(10));
    assert_eq!(one.delivered.len(), 200);
    assert_eq!(split.delivered.len(), 200);

    // A key rotated out between the worker's unwrap and the engine's
    // accept: the frame is dropped as under an unknown key.
    let p = build_forward(&mut rng, &r, &dest, &[ms(3); 2], b"late").unwrap();
    let u = unwrap_frame::<mtos_mixnode::format::Sphinx>(&keys, &Net::frame(&p));
    let fresh = SphinxSecret::generate(&mut rng);
    let engine = split.engine(0);
    engine.keys_mut().advance_to(EpochKey {
        epoch: EPOCH + 6,
        secret: fresh,
    });
    engine.accept(now, u, &mut engine_rng);
    assert_eq!(engine.counters().drops(DropReason::UnknownKey), 1);
}
