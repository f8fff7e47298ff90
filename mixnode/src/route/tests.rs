#![allow(clippy::unwrap_used)]

use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use super::test_network::document;
use super::*;
use crate::admission::accepts;
use Position::*;

fn positions(route: &[&NodeEntry]) -> Vec<Position> {
    route.iter().map(|n| n.position()).collect()
}

/// Every step of `route`, entered from `from`, is one the stratified
/// topology admits.
fn admitted(from: Position, route: &[&NodeEntry]) -> bool {
    let mut prev = from;
    route.iter().all(|n| {
        let ok = accepts(n.position(), prev, 3);
        prev = n.position();
        ok
    })
}

#[test]
fn loops_visit_every_position_in_an_allowed_order() {
    for me in [Gateway, Layer(1), Layer(2), Layer(3), Service] {
        let path = loop_positions(me, 3);
        assert_eq!(path.last(), Some(&me), "{me:?}");
        assert_eq!(path.len(), 4, "{me:?}: {path:?}");
        // Each link is one the admission table allows.
        let mut from = me;
        for p in &path {
            assert!(accepts(*p, from, 3), "{from:?} -> {p:?}");
            from = *p;
        }
    }
    assert!(loop_positions(Client, 3).is_empty());
    assert!(loop_positions(Layer(4), 3).is_empty());
    assert!(loop_positions(Layer(0), 3).is_empty());
}

#[test]
fn client_routes_leave_through_the_clients_gateway_and_cross_every_layer() {
    let doc = document();
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let gateway = doc.nodes[0].key;
    let service = &doc.nodes[3];
    for _ in 0..20 {
        let route = doc.client_route(&mut rng, &gateway, service).unwrap();
        assert_eq!(
            positions(&route),
            [Gateway, Layer(1), Layer(2), Layer(3), Service]
        );
        assert_eq!(route[0].key, gateway);
        assert_eq!(route[4].key, service.key);
        assert!(admitted(Client, &route));
    }
    // A gateway the document does not list gives no route.
    assert!(doc.client_route(&mut rng, &[9; 32], service).is_none());
}

#[test]
fn reply_routes_end_at_the_clients_gateway() {
    let doc = document();
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let mine = doc.nodes[1].key;
    let theirs = &doc.nodes[0];
    let via_correspondent = doc.reply_route(&mut rng, Some(theirs), &mine).unwrap();
    assert_eq!(
        positions(&via_correspondent),
        [Gateway, Layer(1), Layer(2), Layer(3), Gateway]
    );
    assert_eq!(via_correspondent[0].key, theirs.key);
    assert_eq!(via_correspondent[4].key, mine);
    assert!(admitted(Client, &via_correspondent));
    // From a service node, which hands the reply to layer 1 itself.
    let from_service = doc.reply_route(&mut rng, None, &mine).unwrap();
    assert_eq!(
        positions(&from_service),
        [Layer(1), Layer(2), Layer(3), Gateway]
    );
    assert!(admitted(Service, &from_service));
}

#[test]
fn node_loops_come_back_to_their_node_through_every_other_position() {
    let doc = document();
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    for me in &doc.nodes {
        let route = doc.node_loop_route(&mut rng, me).unwrap();
        assert_eq!(route.last().unwrap().key, me.key);
        assert_eq!(route.len(), 4, "{:?}", positions(&route));
        assert!(admitted(me.position(), &route), "{:?}", positions(&route));
    }
    // A layer with no node: no loop (and no client route either).
    let mut thin = document();
    thin.nodes.retain(|n| n.position() != Layer(2));
    let me = thin.nodes[0].clone();
    assert!(thin.node_loop_route(&mut rng, &me).is_none());
    assert!(thin.pick_layers(&mut rng).is_none());
}

#[test]
fn frames_and_reply_blocks_are_built_under_the_documents_epoch() {
    let doc = document();
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let route = doc
        .client_route(&mut rng, &doc.nodes[0].key, &doc.nodes[2])
        .unwrap();
    let destination = Destination {
        address: [5; 32],
        surb_id: [0; sphinx::SURB_ID_LEN],
    };
    let frame = doc
        .forward_frame(&mut rng, &route, &destination, b"hello")
        .unwrap();
    assert_eq!(frame.len(), sphinx::FRAME_SIZE);
    // The key tag is the epoch mod 256.
    assert_eq!(frame[0], 7);
    let back = doc.reply_route(&mut rng, None, &doc.nodes[0].key).unwrap();
    let (surb, _, total) = doc.reply_block(&mut rng, &back, &[6; 32], [1; 16]).unwrap();
    assert!(!surb.is_empty());
    assert!(total > std::time::Duration::ZERO);
    // A node without a key for the epoch: nothing is built.
    let mut stale = document();
    for n in &mut stale.nodes {
        n.sphinx_keys[0].epoch = 6;
    }
    let route = stale
        .client_route(&mut rng, &stale.nodes[0].key, &stale.nodes[2])
        .unwrap();
    assert!(
        stale
            .forward_frame(&mut rng, &route, &destination, b"hello")
            .is_none()
    );
}

#[test]
fn hop_delays_never_exceed_the_networks_maximum() {
    let mut rng = ChaCha20Rng::seed_from_u64(8);
    let (mean, max) = (Duration::from_secs(2), Duration::from_secs(3));
    let delays: Vec<Duration> = (0..5_000)
        .map(|_| capped_delay(&mut rng, mean, max))
        .collect();
    assert!(delays.iter().all(|d| *d <= max));
    // Truncated, not clamped: no pile-up at the maximum.
    assert!(delays.iter().filter(|d| **d == max).count() < 5);
    // Below the cap the draw is the exponential's: P(d > 1 s | d ≤ 3 s).
    let above = delays
        .iter()
        .filter(|d| **d > Duration::from_secs(1))
        .count() as f64
        / 5_000.0;
    let want = ((-0.5f64).exp() - (-1.5f64).exp()) / (1.0 - (-1.5f64).exp());
    assert!((above - want).abs() < 0.03, "{above} vs {want}");
}
