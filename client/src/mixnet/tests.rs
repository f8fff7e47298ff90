//! What a gateway learns from the bytes of the deliveries it files
//! (`client.md` §2, §4): the attack, written as a classifier.

#![allow(clippy::unwrap_used)]

use mtos_crypto::sphinx::{Processed, SphinxSecret, check_header};
use mtos_crypto::{Identity, Label, Visibility};
use mtos_mixnode::directory::{
    DOCUMENT_VERSION, EpochSchedule, Geometry, Mixing, MixingKind, Rates, Role, SphinxKeyEntry,
    peer_id_text,
};
use rand_chacha::ChaCha20Rng;

use super::*;

const EPOCH_SECS: u64 = 3_600;

/// A network whose nodes' Sphinx secrets the test holds, so it can carry
/// packets hop by hop as the nodes would.
struct Net {
    doc: NetworkDocument,
    secrets: HashMap<[u8; 32], SphinxSecret>,
}

fn net(rng: &mut ChaCha20Rng) -> Net {
    let epoch = u32::try_from(unix_now() / EPOCH_SECS).unwrap();
    let mut secrets = HashMap::new();
    let mut node = |role, layer| {
        let id = Identity::generate(&mut *rng, Label::new("t").unwrap(), Visibility::Public, 0);
        let key = *id.verify_key().as_bytes();
        let secret = SphinxSecret::generate(&mut *rng);
        let public = secret.public();
        secrets.insert(key, secret);
        NodeEntry {
            since: None,
            salt: None,
            family: None,
            key,
            peer_id: peer_id_text(&key),
            addrs: vec!["/ip4/127.0.0.1/tcp/4000".into()],
            role,
            layer,
            storage: false,
            sphinx_keys: vec![SphinxKeyEntry { epoch, public }],
        }
    };
    let mut nodes = vec![
        node(Role::Gateway, None),
        node(Role::Gateway, None),
        node(Role::Service, None),
        node(Role::Service, None),
    ];
    for l in 1..=3u8 {
        for _ in 0..2 {
            nodes.push(node(Role::Mix, Some(l)));
        }
    }
    let start = u64::from(epoch) * EPOCH_SECS;
    let doc = NetworkDocument {
        consensus: Default::default(),
        version: DOCUMENT_VERSION,
        network: "t".into(),
        epoch,
        serial: 1,
        schedule: EpochSchedule {
            genesis: 0,
            epoch_secs: EPOCH_SECS,
            heartbeat_secs: 20,
            round_secs: 2,
        },
        valid_after: start,
        valid_until: start + 2 * EPOCH_SECS,
        geometry: Geometry::compiled(),
        mixing: Mixing {
            mode: MixingKind::Poisson,
            mean_delay_ms: 50,
            max_delay_ms: 10_000,
            pool_interval_ms: 0,
            pool_min: 0,
            pool_fraction: 0.0,
        },
        rates: Rates {
            payload: 2.0,
            loops: 1.0,
            drops: 1.0,
            node_loops: 1.0,
            bulk: None,
        },
        layers: 3,
        storage: mtos_mixnode::directory::StorageRules::default(),
        nodes,
    };
    Net { doc, secrets }
}

fn keyed_client(rng: &mut ChaCha20Rng, gateway: [u8; 32]) -> (ClientAddress, [u8; 32]) {
    let mut mailbox = [0u8; 32];
    rng.fill(&mut mailbox[..]);
    let mut secret = [0u8; 32];
    rng.fill(&mut secret[..]);
    let key = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(secret)).to_bytes();
    let address = ClientAddress {
        gateway,
        mailbox,
        key,
    };
    (address, secret)
}

fn client(rng: &mut ChaCha20Rng, gateway: [u8; 32]) -> ClientAddress {
    keyed_client(rng, gateway).0
}

impl Net {
    /// Carries `packet` from `first` to its final hop, as the nodes
    /// would: what that hop files (the id and the payload).
    fn carry(&self, first: [u8; 32], mut packet: Vec<u8>) -> Filed {
        let mut at = first;
        loop {
            match check_header(&packet, &self.secrets[&at])
                .unwrap()
                .process()
                .unwrap()
            {
                Processed::Forward {
                    next, packet: p, ..
                } => {
                    at = next.0;
                    packet = p;
                }
                Processed::Final {
                    destination,
                    payload,
                } => return (destination.surb_id, payload),
            }
        }
    }

    /// A frame a client hands its gateway, carried.
    fn carry_frame(&self, gateway: [u8; 32], frame: &[u8]) -> Filed {
        self.carry(
            gateway,
            sphinx::Frame::parse(frame).unwrap().packet.to_vec(),
        )
    }

    fn gateway(&self, i: usize) -> [u8; 32] {
        self.doc
            .nodes
            .iter()
            .filter(|n| n.role == Role::Gateway)
            .nth(i)
            .unwrap()
            .key
    }
}

/// A delivery as its gateway files it: the id and the payload.
type Filed = ([u8; SURB_ID_LEN], Vec<u8>);

/// The kinds of delivery a client's mailbox takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A message from another client.
    Message,
    /// The client's own loop.
    Loop,
    /// Payload-slot cover, back through the client's own reply block.
    Cover,
    /// A service node's answer through the client's reply block.
    Answer,
}
const KINDS: [Kind; 4] = [Kind::Message, Kind::Loop, Kind::Cover, Kind::Answer];

/// `n` deliveries of `kind` to `bob` as his gateway files them. With
/// `legacy`, messages and loops are built as before this format: id zero
/// and a Sphinx-encoded payload (the control the attack must beat).
fn deliveries(
    rng: &mut ChaCha20Rng,
    net: &Net,
    alice: &ClientAddress,
    bob: &ClientAddress,
    kind: Kind,
    n: usize,
    legacy: bool,
) -> Vec<Filed> {
    let doc = &net.doc;
    let replies = SharedReplies::default();
    let legacy_frame = |rng: &mut ChaCha20Rng, from: &ClientAddress, plain: &[u8]| {
        let route = doc
            .client_route(rng, &from.gateway, doc.node(&bob.gateway).unwrap())
            .unwrap();
        let sealed = envelope::seal(rng, &bob.key, plain).unwrap();
        let destination = Destination {
            address: bob.mailbox,
            surb_id: [0; SURB_ID_LEN],
        };
        doc.forward_frame(rng, &route, &destination, &sealed)
            .unwrap()
    };
    (0..n)
        .map(|i| match kind {
            Kind::Message => {
                let plain = Plain::Message(format!("message {i}").into_bytes())
                    .encode()
                    .unwrap();
                let frame = if legacy {
                    legacy_frame(rng, alice, &plain)
                } else {
                    build(rng, doc, alice, Target::Client(bob, &plain)).unwrap()
                };
                net.carry_frame(alice.gateway, &frame)
            }
            Kind::Loop => {
                let frame = if legacy {
                    legacy_frame(rng, bob, &Plain::Loop.encode().unwrap())
                } else {
                    build(rng, doc, bob, Target::Loop).unwrap()
                };
                net.carry_frame(bob.gateway, &frame)
            }
            Kind::Cover => {
                let frame = cover_reply(rng, doc, bob, &replies).unwrap();
                net.carry_frame(bob.gateway, &frame)
            }
            Kind::Answer => {
                let (block, _, _) = block_to_me(rng, doc, bob, None).unwrap();
                let mut answer = vec![0u8; 1 + (i % 3_000)];
                rng.fill(&mut answer[..]);
                let (packet, first) =
                    sphinx::use_surb(&block.surb, &encode_reply(&answer).unwrap()).unwrap();
                net.carry(first.0, packet)
            }
        })
        .collect()
}

/// What the adversary measures of one delivery: each a test that tells a
/// Sphinx-encoded envelope (or a reply) from random bytes.
fn features(id: &[u8; SURB_ID_LEN], payload: &[u8]) -> [bool; 7] {
    let key = |at: usize| <[u8; 32]>::try_from(&payload[at..at + 32]).unwrap();
    let trimmed = payload.iter().rposition(|b| *b != 0);
    [
        // A zero id (forward packets had one).
        *id == [0; SURB_ID_LEN],
        // Sphinx's 16 zero bytes in front of a forward message.
        payload[..16] == [0; 16],
        // Sphinx's padding marker: the last non-zero byte is 0x01.
        trimmed.is_some_and(|at| payload[at] == 1),
        // An X25519 key in front (every key is a curve point) ...
        elligator2::is_montgomery_u(&key(0)),
        // ... whose top bit is clear.
        payload[31] & 0x80 == 0,
        // The same, where the key sat behind Sphinx's zero bytes.
        elligator2::is_montgomery_u(&key(16)),
        payload[47] & 0x80 == 0,
    ]
}

/// Balanced accuracy of a lookup-table classifier (the majority kind of
/// each feature combination, learned on one half, judged on the other).
fn classify(sets: &[(Kind, Vec<Filed>)]) -> f64 {
    let cell = |(id, p): &Filed| {
        features(id, p)
            .iter()
            .enumerate()
            .fold(0usize, |c, (i, f)| c | (usize::from(*f) << i))
    };
    let mut seen: HashMap<usize, [usize; 4]> = HashMap::new();
    for (k, (_, set)) in sets.iter().enumerate() {
        for d in &set[..set.len() / 2] {
            seen.entry(cell(d)).or_default()[k] += 1;
        }
    }
    let (mut right, mut total) = (0usize, 0usize);
    for (k, (_, set)) in sets.iter().enumerate() {
        for d in &set[set.len() / 2..] {
            let guess = seen.get(&cell(d)).map_or(0, |counts| {
                (0..4).max_by_key(|&j| (counts[j], usize::MAX - j)).unwrap()
            });
            right += usize::from(guess == k);
            total += 1;
        }
    }
    right as f64 / total as f64
}

#[test]
fn a_gateway_cannot_sort_its_deliveries_by_their_bytes() {
    let mut rng = ChaCha20Rng::seed_from_u64(17);
    let net = net(&mut rng);
    let alice = client(&mut rng, net.gateway(0));
    let bob = client(&mut rng, net.gateway(1));
    const N: usize = 300;
    let run = |rng: &mut ChaCha20Rng, legacy: bool| {
        KINDS
            .iter()
            .map(|&k| (k, deliveries(rng, &net, &alice, &bob, k, N, legacy)))
            .collect::<Vec<_>>()
    };

    // Each feature is as frequent in every kind as in random bytes
    // (4 sigma of a binomial over N; the first three almost never hold).
    let now = run(&mut rng, false);
    let expected = [0.0, 0.0, 1.0 / 256.0, 0.5, 0.5, 0.5, 0.5];
    for (kind, set) in &now {
        for (f, p) in expected.iter().enumerate() {
            let hits = set.iter().filter(|(id, pl)| features(id, pl)[f]).count() as f64;
            let sigma = (N as f64 * p * (1.0 - p)).sqrt().max(1.0);
            assert!(
                (hits - N as f64 * p).abs() <= 4.0 * sigma,
                "{kind:?}: feature {f} in {hits} of {N}"
            );
        }
    }
    // Bytes as evenly spread as random bytes: a chi-square test of each
    // kind's byte counts over its N payloads (255 degrees of freedom;
    // 330 is beyond the 0.1% point).
    for (kind, set) in &now {
        let mut counts = [0f64; 256];
        for (_, payload) in set {
            for b in payload {
                counts[usize::from(*b)] += 1.0;
            }
        }
        let expect = counts.iter().sum::<f64>() / 256.0;
        let chi2: f64 = counts.iter().map(|c| (c - expect).powi(2) / expect).sum();
        assert!(chi2 < 330.0, "{kind:?}: chi-square {chi2:.0}");
    }
    // And a classifier over all of them does no better than chance (a
    // quarter, 3 sigma over 600 judged deliveries).
    let chance = 0.25;
    let sigma = (chance * (1.0 - chance) / (2.0 * N as f64)).sqrt();
    let accuracy = classify(&now);
    eprintln!(
        "classifier accuracy: {accuracy:.3} (chance {chance}, bound {:.3})",
        chance + 3.0 * sigma
    );
    assert!(
        accuracy < chance + 3.0 * sigma,
        "the gateway sorts deliveries with accuracy {accuracy:.3}"
    );

    // The control: with forward deliveries built as before (id zero, a
    // Sphinx-encoded envelope), the same classifier tells them from
    // replies every time (half of four kinds: messages and loops look
    // alike to it, as do the two kinds of reply).
    let before = run(&mut rng, true);
    let accuracy = classify(&before);
    eprintln!("control accuracy on the former format: {accuracy:.3}");
    assert!(
        accuracy > 0.45,
        "the control classifier failed: {accuracy:.3}"
    );
}

#[test]
fn deliveries_open_for_their_recipient_and_cover_reads_once() {
    let mut rng = ChaCha20Rng::seed_from_u64(18);
    let net = net(&mut rng);
    let alice = client(&mut rng, net.gateway(0));
    let (bob, bob_secret) = keyed_client(&mut rng, net.gateway(1));
    let plain = Plain::Message(b"hello bob".to_vec()).encode().unwrap();
    let frame = build(&mut rng, &net.doc, &alice, Target::Client(&bob, &plain)).unwrap();
    let (id, payload) = net.carry_frame(alice.gateway, &frame);
    assert_ne!(id, [0; SURB_ID_LEN]);
    assert_eq!(payload.len(), mtos_crypto::geometry::SPHINX_PAYLOAD_SIZE);
    assert_eq!(
        envelope::open_delivery(&bob_secret, &payload).unwrap(),
        plain
    );
    assert!(envelope::open_delivery(&[7; 32], &payload).is_err());

    let replies = SharedReplies::default();
    let frame = cover_reply(&mut rng, &net.doc, &bob, &replies).unwrap();
    let (id, payload) = net.carry_frame(bob.gateway, &frame);
    let recovery = replies.lock().unwrap().cover.take(&id).unwrap();
    assert!(decode_reply(&recovery.recover(&payload).unwrap()).is_ok());
    assert!(
        replies.lock().unwrap().cover.take(&id).is_none(),
        "read once"
    );
}

#[test]
fn a_copied_delivery_is_dropped_and_the_memory_of_ids_is_bounded() {
    let mut seen = SeenIds::default();
    assert!(seen.insert([1; SURB_ID_LEN]));
    assert!(!seen.insert([1; SURB_ID_LEN]), "a copy");
    for i in 0..SEEN_IDS as u32 {
        let mut id = [0xee; SURB_ID_LEN];
        id[..4].copy_from_slice(&i.to_be_bytes());
        assert!(seen.insert(id));
    }
    // The oldest is forgotten once SEEN_IDS newer ones came.
    assert!(seen.insert([1; SURB_ID_LEN]));
}

#[test]
fn cover_records_are_bounded_and_lost_cover_is_forgotten() {
    let recovery = |i: u32| {
        let mut material = vec![2u8];
        material.extend_from_slice(&[0; SURB_ID_LEN]);
        material.extend_from_slice(&[i as u8; 16 * 4]);
        sphinx::SurbRecovery::from_bytes(&material).unwrap()
    };
    let id = |i: u32| {
        let mut id = [0u8; SURB_ID_LEN];
        id[..4].copy_from_slice(&i.to_be_bytes());
        id
    };
    let mut cover = CoverReplies::default();
    let now = 1_000;
    for i in 0..MAX_COVER_REPLIES as u32 {
        assert!(cover.record(id(i), recovery(i), now + 7_200, now));
    }
    // Full of cover still waited for: the slot sends a drop instead.
    assert!(!cover.record(id(u32::MAX), recovery(0), now + 7_200, now));
    // Lost cover is waited for COVER_WAIT_SECS, not the block's life.
    let later = now + COVER_WAIT_SECS;
    assert!(cover.record(id(u32::MAX), recovery(0), later + 7_200, later));
    assert_eq!(cover.len(), 1);
    assert!(cover.take(&id(u32::MAX)).is_some());
}

#[test]
fn a_delivery_filed_twice_or_a_reply_block_used_twice_is_read_once_and_counted() {
    let mut rng = ChaCha20Rng::seed_from_u64(19);
    let net = net(&mut rng);
    let alice = client(&mut rng, net.gateway(0));
    let (bob, bob_secret) = keyed_client(&mut rng, net.gateway(1));
    let replies = SharedReplies::default();
    let stats = Arc::new(Mutex::new(SessionStats::default()));
    let balance = Arc::new(DeliveryBalance::default());
    let (outgoing, _queued) = mpsc::channel(8);
    let (_doc_tx, document) = watch::channel(Arc::new(net.doc.clone()));
    let mut reader = Reader {
        key: Zeroizing::new(bob_secret),
        replenish: Replenish {
            replies: replies.clone(),
            outgoing,
            stats: stats.clone(),
            balance: balance.clone(),
        },
        document,
        seen: SeenIds::default(),
    };
    let stored = |(surb_id, payload): ([u8; SURB_ID_LEN], Vec<u8>)| Stored { surb_id, payload };
    // A message, filed twice by its gateway: read once.
    let plain = Plain::Message(b"once".to_vec()).encode().unwrap();
    let frame = build(&mut rng, &net.doc, &alice, Target::Client(&bob, &plain)).unwrap();
    let message = stored(net.carry_frame(alice.gateway, &frame));
    assert!(matches!(reader.read(&message), Some(Received::Message(m)) if m == b"once"));
    assert!(reader.read(&message).is_none());
    // A reply through one of bob's blocks (his own cover), used twice.
    let frame = cover_reply(&mut rng, &net.doc, &bob, &replies).unwrap();
    let reply = stored(net.carry_frame(bob.gateway, &frame));
    assert!(reader.read(&reply).is_none());
    assert!(reader.read(&reply).is_none());
    let st = stats.lock().unwrap().clone();
    assert_eq!((st.received, st.cover_returned, st.duplicates), (1, 1, 2));
    assert_eq!(st.unknown_replies, 0);
    // The message and the two copies came unasked; bob's cover did not.
    assert_eq!(balance.get(), -3);
}
