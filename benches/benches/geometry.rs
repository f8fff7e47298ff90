//! Packet geometry: how the Sphinx payload size drives per-packet cost.
//!
//! For payload sizes of 1, 2, 4, 8 and 16 KiB (the size given to
//! `SphinxPacketBuilder::with_payload_size`, which includes the 17-byte
//! payload overhead) it measures processing one hop of a 3-hop packet (what
//! every mix node pays per packet) and building a 3-hop forward packet (what
//! a sender pays). Before measuring it prints, once, the wire length of a
//! packet at each size, the header size, the payload overhead and the length
//! of a version-260 recoverable SURB for a 3-hop route.
//!
//! All key material comes from a seeded ChaCha20 RNG; the crate's own RNG is
//! never used where an argument exists.
//!
//! `cargo bench -p mtos-benches --bench geometry`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use sphinx_packet::constants::{
    DESTINATION_ADDRESS_LENGTH, IDENTIFIER_LENGTH, NODE_ADDRESS_LENGTH,
};
use sphinx_packet::header::HEADER_SIZE;
use sphinx_packet::header::delays::Delay;
use sphinx_packet::payload::PAYLOAD_OVERHEAD_SIZE;
use sphinx_packet::route::{Destination, DestinationAddressBytes, Node, NodeAddressBytes};
use sphinx_packet::version::SINGLE_SEED_SURB_VERSION;
use sphinx_packet::{ProcessedPacketData, SURB, SURBMaterial, SphinxPacket, SphinxPacketBuilder};
use x25519_dalek::{PublicKey, StaticSecret};

/// Payload sizes as passed to `with_payload_size` (overhead included).
const PAYLOAD_SIZES: [usize; 5] = [1024, 2048, 4096, 8192, 16384];

const HOPS: usize = 3;

/// A fresh X25519 secret drawn from the seeded RNG.
fn secret(rng: &mut ChaCha20Rng) -> StaticSecret {
    let mut bytes = [0u8; 32];
    rng.fill_bytes(&mut bytes);
    StaticSecret::from(bytes)
}

/// A 3-hop route of fresh node keys, its delays and a destination.
struct Fixture {
    node_secrets: Vec<StaticSecret>,
    route: Vec<Node>,
    delays: Vec<Delay>,
    destination: Destination,
    initial_secret: StaticSecret,
}

impl Fixture {
    fn new(rng: &mut ChaCha20Rng) -> Self {
        let node_secrets: Vec<StaticSecret> = (0..HOPS).map(|_| secret(rng)).collect();
        let route = node_secrets
            .iter()
            .zip(1u8..)
            .map(|(sk, n)| {
                Node::new(
                    NodeAddressBytes::from_bytes([n; NODE_ADDRESS_LENGTH]),
                    PublicKey::from(sk),
                )
            })
            .collect();
        Self {
            node_secrets,
            route,
            delays: vec![Delay::new_from_millis(10); HOPS],
            destination: Destination::new(
                DestinationAddressBytes::from_bytes([9; DESTINATION_ADDRESS_LENGTH]),
                [7; IDENTIFIER_LENGTH],
            ),
            initial_secret: secret(rng),
        }
    }

    fn builder(&self, payload_size: usize) -> SphinxPacketBuilder<'_> {
        SphinxPacketBuilder::new()
            .with_payload_size(payload_size)
            .with_initial_secret(&self.initial_secret)
    }

    /// A full plaintext for the given payload size.
    fn message(payload_size: usize) -> Vec<u8> {
        vec![0x5a; payload_size - PAYLOAD_OVERHEAD_SIZE]
    }

    fn packet(&self, payload_size: usize) -> SphinxPacket {
        self.builder(payload_size)
            .build_packet(
                Self::message(payload_size),
                &self.route,
                &self.destination,
                &self.delays,
            )
            .expect("valid 3-hop packet")
    }
}

/// Prints the figures the geometry is justified with; not measured.
fn print_sizes(fixture: &Fixture, rng: &mut ChaCha20Rng) {
    eprintln!("sphinx geometry ({HOPS}-hop route, default version):");
    eprintln!("  header size (HEADER_SIZE)       = {HEADER_SIZE} bytes");
    eprintln!("  payload overhead                = {PAYLOAD_OVERHEAD_SIZE} bytes");
    for payload_size in PAYLOAD_SIZES {
        let packet = fixture.packet(payload_size);
        eprintln!(
            "  payload {payload_size:>5}: header {} + payload {} = wire {} bytes \
             (max plaintext {})",
            packet.header.to_bytes().len(),
            packet.payload.len(),
            packet.to_bytes().len(),
            payload_size - PAYLOAD_OVERHEAD_SIZE,
        );
    }
    let material = SURBMaterial::new(
        fixture.route.clone(),
        fixture.delays.clone(),
        fixture.destination.clone(),
        SINGLE_SEED_SURB_VERSION,
    );
    let (surb, recovery) =
        SURB::new_recoverable(secret(rng), material).expect("valid recoverable SURB");
    eprintln!(
        "  SURB v{} ({HOPS} hops, {} seed(s) carried, {} kept for recovery) = {} bytes",
        SINGLE_SEED_SURB_VERSION.value(),
        surb.materials_count(),
        recovery.num_hops(),
        surb.to_bytes().len(),
    );
}

fn geometry(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::from_seed([42; 32]);
    let fixture = Fixture::new(&mut rng);
    print_sizes(&fixture, &mut rng);

    let mut group = c.benchmark_group("sphinx_process_one_hop");
    group.sample_size(20);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    for payload_size in PAYLOAD_SIZES {
        let wire = fixture.packet(payload_size).to_bytes();
        // the first hop must forward to the second one, or we are timing an error path
        let first = SphinxPacket::from_bytes(&wire)
            .expect("packet round-trips")
            .process(&fixture.node_secrets[0])
            .expect("first hop processes");
        assert!(
            matches!(
                first.data,
                ProcessedPacketData::ForwardHop { next_hop_address, .. }
                    if next_hop_address == fixture.route[1].address
            ),
            "first hop must forward to the second node"
        );
        group.throughput(Throughput::Bytes(payload_size as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(payload_size),
            &wire,
            |b, wire| {
                b.iter_batched(
                    || SphinxPacket::from_bytes(wire).expect("packet round-trips"),
                    |packet| {
                        packet
                            .process(black_box(&fixture.node_secrets[0]))
                            .expect("first hop processes")
                    },
                    BatchSize::SmallInput,
                );
            },
        );
    }
    group.finish();

    let mut group = c.benchmark_group("sphinx_build_3_hops");
    group.sample_size(20);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    for payload_size in PAYLOAD_SIZES {
        let message = Fixture::message(payload_size);
        let builder = fixture.builder(payload_size);
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(
            BenchmarkId::from_parameter(payload_size),
            &message,
            |b, message| {
                b.iter(|| {
                    builder
                        .build_packet(
                            black_box(message),
                            &fixture.route,
                            &fixture.destination,
                            &fixture.delays,
                        )
                        .expect("valid 3-hop packet")
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, geometry);
criterion_main!(benches);
