#![allow(clippy::unwrap_used)]

use std::collections::{BTreeSet, HashSet};

use mtos_crypto::sphinx::{
    self, NodeAddress, Processed, SphinxSecret, check_header, open_forward_payload,
};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use super::*;
use crate::admission::Position::{self, *};
use crate::route::test_network::keyed_document;
use crate::route::{loop_positions, loop_turn};

/// What a node sees of a packet it handles: the position it came from,
/// its own, and where it sends it on (`None`: it is the final hop).
type Sight = (Position, Position, Option<Position>);

/// Unix time inside the test document's epoch 7 (700..800).
const NOW: u64 = 720;

struct Net {
    doc: NetworkDocument,
    secrets: Vec<(NodeAddress, SphinxSecret)>,
}

impl Net {
    fn new() -> Self {
        let (doc, secrets) = keyed_document();
        Self { doc, secrets }
    }

    fn position(&self, a: &NodeAddress) -> Position {
        self.doc
            .nodes
            .iter()
            .find(|n| n.address() == *a)
            .unwrap()
            .position()
    }

    /// Carries `frame`, sent by a node at `from` to `next`, hop by hop
    /// through the nodes' secrets; returns what each hop saw and the
    /// final hop's destination and payload.
    fn carry(
        &self,
        from: Position,
        mut next: NodeAddress,
        frame: &[u8],
    ) -> (Vec<Sight>, sphinx::Destination, Vec<u8>) {
        let mut packet = sphinx::Frame::parse(frame).unwrap().packet.to_vec();
        let (mut prev, mut sights) = (from, Vec::new());
        loop {
            let here = self.position(&next);
            let secret = &self.secrets.iter().find(|(a, _)| *a == next).unwrap().1;
            match check_header(&packet, secret).unwrap().process().unwrap() {
                Processed::Forward {
                    next: n, packet: p, ..
                } => {
                    sights.push((prev, here, Some(self.position(&n))));
                    (prev, next, packet) = (here, n, p);
                }
                Processed::Final {
                    destination,
                    payload,
                } => {
                    sights.push((prev, here, None));
                    return (sights, destination, payload);
                }
            }
        }
    }

    /// A service node's handling of a request delivered to it: the
    /// request, and what each hop of its answer saw on the way back.
    fn answer(&self, payload: &[u8]) -> (Request, Vec<Sight>, sphinx::Destination) {
        let request = Request::decode(&open_forward_payload(payload).unwrap()).unwrap();
        let (first, frame) = request.reply.reply_frame(b"answer").unwrap();
        let (sights, destination, _) = self.carry(Service, first, &frame);
        (request, sights, destination)
    }
}

/// What hops see of clients' traffic: a client's packet from its gateway
/// through the layers to a gateway or a service node, and a service
/// node's answer from layer 1 through the layers to a gateway.
fn client_sights(layers: u8) -> HashSet<Sight> {
    let mut out = HashSet::new();
    let mut walk = |from: Position, path: &[Position]| {
        let mut prev = from;
        for (i, p) in path.iter().enumerate() {
            out.insert((prev, *p, path.get(i + 1).copied()));
            prev = *p;
        }
    };
    let mixes: Vec<Position> = (1..=layers).map(Layer).collect();
    for last in [Gateway, Service] {
        let path: Vec<Position> = std::iter::once(Gateway)
            .chain(mixes.iter().copied())
            .chain(std::iter::once(last))
            .collect();
        walk(Client, &path);
    }
    let answer: Vec<Position> = mixes
        .iter()
        .copied()
        .chain(std::iter::once(Gateway))
        .collect();
    walk(Service, &answer);
    out
}

/// A follower's poll probe, built as a client builds it: through its
/// gateway and the layers to a service node, with a reply block from
/// layer 1 to its gateway. Returns layer 1's address and the frame the
/// gateway sends it.
fn client_probe(net: &Net, rng: &mut ChaCha20Rng, window: &[Locator]) -> (NodeAddress, Vec<u8>) {
    let doc = &net.doc;
    let gateway = doc.nodes[0].key;
    let service = &doc.nodes[2];
    let back = doc.reply_route(rng, None, &gateway).unwrap();
    let (surb, _, _) = doc.reply_block(rng, &back, &[9; 32], [3; 16]).unwrap();
    let request = Request {
        id: [4; 16],
        locator: window[0],
        op: Op::Probe(window[1..].to_vec()),
        reply: ReplyBlock {
            epoch: doc.epoch,
            expires: doc.reply_block_expires(back.len()),
            surb,
        },
    }
    .encode()
    .unwrap();
    let route = doc.client_route(rng, &gateway, service).unwrap();
    let destination = Destination {
        address: service.key,
        surb_id: [0; SURB_ID_LEN],
    };
    let frame = doc
        .forward_frame(rng, &route[1..], &destination, &request)
        .unwrap();
    (route[1].address(), frame)
}

#[test]
fn a_mixs_loop_shows_every_hop_only_what_client_traffic_shows_it_and_comes_back() {
    let net = Net::new();
    let doc = &net.doc;
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let decoys = LoopDecoys::new(&mut rng);
    let allowed = client_sights(doc.layers);
    // The observer's rule holds for client traffic: a follower's probe,
    // from layer 1 on (the gateway's hop is the client's), and its answer
    // up to the gateway.
    let window = decoys.window(&mut rng).unwrap();
    let (first, frame) = client_probe(&net, &mut rng, &window);
    let (sights, _, payload) = net.carry(Gateway, first, &frame);
    let (client_request, back, _) = net.answer(&payload);
    for s in sights.iter().chain(&back) {
        assert!(allowed.contains(s), "{s:?}");
    }
    for k in 1..=doc.layers {
        let me_entry = doc.nodes.iter().find(|n| n.position() == Layer(k)).unwrap();
        let me = me_entry.key;
        for _ in 0..10 {
            let route = doc.node_loop_route(&mut rng, me_entry).unwrap();
            let turn = loop_turn(Layer(k), doc.layers).unwrap();
            assert_eq!(route[turn].position(), Service);
            let mut id = [0u8; SURB_ID_LEN];
            rng.fill(&mut id[..]);
            let window = decoys.window(&mut rng).unwrap();
            let t = request_frame(&mut rng, doc, &route, turn, &me, id, &window, NOW).unwrap();
            assert_eq!(t.next, route[0].address());
            let (there, _, payload) = net.carry(Layer(k), t.next, &t.frame);
            let (request, back, destination) = net.answer(&payload);
            // It comes back to the mix as its own loop.
            assert_eq!(destination.address, me);
            assert_eq!(destination.surb_id, id);
            // Every hop but the mix itself saw what it sees of clients'
            // packets: nothing crossed a gateway, and no service node
            // forwarded a packet.
            let seen: Vec<&Sight> = there.iter().chain(&back[..back.len() - 1]).collect();
            for s in &seen {
                assert!(allowed.contains(s), "layer {k}: {s:?}");
            }
            assert_eq!(seen.len() + 1, route.len());
            // The service node got a probe it cannot tell from a
            // follower's: same operation and size, a window's worth of
            // slot locators, a block of the document's epoch with the
            // expiry a client's block has, answered through layer 1.
            assert_eq!(
                request.encode().unwrap().len(),
                client_request.encode().unwrap().len()
            );
            let Op::Probe(more) = &request.op else {
                panic!("not a probe: {request:?}");
            };
            assert_eq!(more.len() + 1, PROBE_WINDOW);
            assert_eq!(request.locator, window[0]);
            assert_eq!(request.reply.epoch, client_request.reply.epoch);
            assert_eq!(request.reply.expires, client_request.reply.expires);
            assert_eq!(back[0].1, Layer(1));
        }
    }
}

#[test]
fn the_former_loops_through_a_gateway_are_what_the_observer_catches() {
    // The same observer on the former route of a mix's loop (onward,
    // through a gateway as a middle hop, back through the layers): the
    // gateway's sight is one no client packet gives it.
    let allowed = client_sights(3);
    for k in 1..=3u8 {
        let mut ring: Vec<Position> = std::iter::once(Gateway).chain((1..=3).map(Layer)).collect();
        ring.rotate_left(usize::from(k) + 1);
        let mut prev = Layer(k);
        let mut caught = false;
        for (i, p) in ring[..ring.len() - 1].iter().enumerate() {
            caught |= !allowed.contains(&(prev, *p, ring.get(i + 1).copied()));
            prev = *p;
        }
        assert!(caught, "layer {k}: {ring:?}");
        // The rule now: no middle hop at a gateway.
        assert!(!loop_positions(Layer(k), 3).contains(&Gateway));
    }
}

#[test]
fn a_nodes_decoy_windows_recur_and_each_is_one_feeds_first_slots() {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let decoys = LoopDecoys::new(&mut rng);
    let mut seen = BTreeSet::new();
    for _ in 0..2_000 {
        let w = decoys.window(&mut rng).unwrap();
        assert_eq!(w.len(), PROBE_WINDOW);
        seen.insert(w.iter().map(|l| *l.as_bytes()).collect::<Vec<_>>());
    }
    // 2,000 draws over 64 windows: every one of them, and no other.
    assert_eq!(seen.len(), NODE_DECOYS);
    let feed = decoys.feeds[0];
    let first: Vec<[u8; 32]> = (0..PROBE_WINDOW as u64)
        .map(|n| *feed_slot_locator(&feed, n).unwrap().as_bytes())
        .collect();
    assert!(seen.contains(&first));
}

#[test]
fn a_loop_is_not_built_on_a_wrong_turn_or_window_or_after_its_block_expires() {
    let net = Net::new();
    let doc = &net.doc;
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let decoys = LoopDecoys::new(&mut rng);
    let me_entry = doc.nodes.iter().find(|n| n.position() == Layer(2)).unwrap();
    let route = doc.node_loop_route(&mut rng, me_entry).unwrap();
    let turn = loop_turn(Layer(2), 3).unwrap();
    let window = decoys.window(&mut rng).unwrap();
    let me = me_entry.key;
    let build = |rng: &mut ChaCha20Rng, route: &[&NodeEntry], turn, window: &[Locator], now| {
        request_frame(rng, doc, route, turn, &me, [1; 16], window, now)
    };
    assert!(build(&mut rng, &route, turn, &window, NOW).is_some());
    assert!(build(&mut rng, &route, route.len(), &window, NOW).is_none());
    // A route whose rest does not end at the mix.
    assert!(build(&mut rng, &route[..route.len() - 1], turn, &window, NOW).is_none());
    assert!(build(&mut rng, &route, turn, &window[1..], NOW).is_none());
    let expires = doc.reply_block_expires(4);
    assert!(build(&mut rng, &route, turn, &window, expires).is_none());
    // Gateways and service nodes loop as one forward packet.
    assert_eq!(loop_turn(Gateway, 3), None);
    assert_eq!(loop_turn(Service, 3), None);
    assert_eq!(loop_turn(Layer(3), 3), Some(0));
    assert_eq!(loop_turn(Layer(1), 3), Some(2));
}
