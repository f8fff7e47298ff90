#![allow(clippy::unwrap_used)]

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use mtos_crypto::sphinx::sample_exponential;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use super::*;
use crate::admission::accepts;

/// Numbered nodes: gateways, then `per_layer` per layer, then services.
struct Toy {
    gateways: u32,
    layers: u8,
    per_layer: u32,
    services: u32,
}

impl Toy {
    fn position(&self, n: u32) -> Position {
        let mixes = u32::from(self.layers) * self.per_layer;
        if n < self.gateways {
            Position::Gateway
        } else if n < self.gateways + mixes {
            Position::Layer(((n - self.gateways) / self.per_layer + 1) as u8)
        } else {
            Position::Service
        }
    }
}

impl Nodes for Toy {
    type Node = u32;

    fn layers(&self) -> u8 {
        self.layers
    }

    fn pick<R: Rng + ?Sized>(&self, rng: &mut R, position: Position) -> Option<u32> {
        let (first, count) = match position {
            Position::Gateway => (0, self.gateways),
            Position::Layer(l) if (1..=self.layers).contains(&l) => (
                self.gateways + u32::from(l - 1) * self.per_layer,
                self.per_layer,
            ),
            Position::Service => (
                self.gateways + u32::from(self.layers) * self.per_layer,
                self.services,
            ),
            _ => return None,
        };
        (count > 0).then(|| first + rand::RngExt::random_range(rng, 0..count))
    }

    fn key(&self, node: &u32) -> [u8; 32] {
        key_of(*node)
    }
}

fn key_of(node: u32) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[..4].copy_from_slice(&node.to_be_bytes());
    k
}

const RATE: f64 = 1.0;
const TIMEOUT: Duration = Duration::from_secs(10);

/// Runs node `me`'s loops for `hours` of virtual time. A loop crossing
/// `dropper` after `drop_from` is lost; any other comes back after five
/// exponential hop delays (mean 50 ms), or is lost on a link with
/// probability `link_loss`. Returns the alarms and the final counts.
fn run(
    net: &Toy,
    me: u32,
    hours: u64,
    dropper: Option<(u32, Instant)>,
    link_loss: f64,
    seed: u64,
) -> (Vec<LossAlarm>, LoopCounts, NodeLoops) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut loops = NodeLoops::new(LoopConfig::default());
    loops.set_rate(Instant::ZERO, RATE, &mut rng);
    let end = Instant::ZERO + Duration::from_secs(hours * 3600);
    let mut back: BinaryHeap<Reverse<(Instant, LoopId)>> = BinaryHeap::new();
    let mut alarms = Vec::new();
    loop {
        let next = [loops.poll_timeout(), back.peek().map(|r| r.0.0)]
            .into_iter()
            .flatten()
            .min()
            .unwrap();
        if next > end {
            break;
        }
        let now = next;
        while back.peek().is_some_and(|r| r.0.0 <= now) {
            let Reverse((_, id)) = back.pop().unwrap();
            assert!(loops.returned(now, &id), "a loop in flight came back");
        }
        loops.handle_timeout(now);
        while let Some(send) = loops.poll_send(now, net, me, net.position(me), TIMEOUT, &mut rng) {
            assert_eq!(*send.route.last().unwrap(), me);
            let dropped = dropper.is_some_and(|(d, from)| now >= from && send.route.contains(&d));
            let lost = rand::RngExt::random_bool(&mut rng, link_loss);
            if !dropped && !lost {
                let delay: Duration = (0..send.route.len())
                    .map(|_| sample_exponential(&mut rng, Duration::from_millis(50)))
                    .sum();
                back.push(Reverse((now + delay, send.id)));
            }
        }
        if let Some(alarm) = loops.tracker().poll_alarm() {
            alarms.push(alarm);
        }
    }
    let counts = loops.tracker().counts();
    (alarms, counts, loops)
}

#[test]
fn a_healthy_network_raises_no_alarm_over_a_day() {
    let net = Toy {
        gateways: 2,
        layers: 3,
        per_layer: 2,
        services: 2,
    };
    // A layer-2 mix, with one loop in a thousand lost on a link.
    let (alarms, counts, loops) = run(&net, 4, 24, None, 0.001, 1);
    assert!(alarms.is_empty(), "{alarms:?}");
    // About λM × 86,400 loops, all resolved but those still in flight.
    assert!((80_000..92_000).contains(&counts.sent), "{counts:?}");
    assert!(counts.lost < counts.sent / 200, "{counts:?}");
    let in_flight = loops.tracker.in_flight() as u64;
    assert_eq!(counts.sent, counts.returned + counts.lost + in_flight);
}

#[test]
fn a_mix_dropping_everything_raises_the_alarm_within_the_window() {
    // One mix per layer: the dropper is on every loop, as in an n−1
    // attack on a small network.
    let net = Toy {
        gateways: 1,
        layers: 3,
        per_layer: 1,
        services: 1,
    };
    let from = Instant::ZERO + Duration::from_secs(600);
    for me in [0, 1, 3, 4] {
        let (alarms, counts, _) = run(&net, me, 1, Some((2, from)), 0.0, 2 + u64::from(me));
        let first = alarms
            .first()
            .unwrap_or_else(|| panic!("no alarm: {counts:?}"));
        assert!(first.at > from && first.loss > 0.5, "{first:?}");
        // The window holds 100 loops: the alarm needs 51 of them lost,
        // sent over about 51 s at λM = 1 and each judged after TIMEOUT.
        let after = first.at.saturating_since(from);
        assert!(after <= TIMEOUT + Duration::from_secs(90), "{after:?}");
        // One alarm per quiet minute while the losses go on, not one per
        // lost loop.
        assert!(alarms.len() <= 50, "{}", alarms.len());
        for pair in alarms.windows(2) {
            assert!(pair[1].at.saturating_since(pair[0].at) >= Duration::from_secs(60));
        }
    }
}

#[test]
fn loops_visit_every_other_position_in_order_and_end_at_their_node() {
    let net = Toy {
        gateways: 2,
        layers: 3,
        per_layer: 3,
        services: 2,
    };
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    for me in 0..13 {
        let position = net.position(me);
        let route = route::loop_route(&net, &mut rng, me, position).unwrap();
        let positions: Vec<Position> = route.iter().map(|n| net.position(*n)).collect();
        assert_eq!(positions, route::loop_positions(position, 3));
        assert_eq!(*route.last().unwrap(), me);
        let mut from = position;
        for p in positions {
            assert!(accepts(p, from, 3), "{from:?} -> {p:?}");
            from = p;
        }
    }
    // A network missing a position has no loops.
    let thin = Toy {
        gateways: 1,
        layers: 3,
        per_layer: 0,
        services: 1,
    };
    assert!(route::loop_route(&thin, &mut rng, 0, Position::Gateway).is_none());
}

#[test]
fn a_mix_without_a_service_node_to_ask_sends_no_loop_and_counts_each_due() {
    let net = Toy {
        gateways: 1,
        layers: 3,
        per_layer: 1,
        services: 0,
    };
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    // A gateway still loops; a mix's loop needs a service node.
    assert!(route::loop_route(&net, &mut rng, 0, Position::Gateway).is_some());
    let mut loops = NodeLoops::new(LoopConfig::default());
    loops.set_rate(Instant::ZERO, RATE, &mut rng);
    let mut now = Instant::ZERO;
    for _ in 0..100 {
        now = loops.poll_timeout().unwrap();
        assert!(
            loops
                .poll_send(now, &net, 2, Position::Layer(2), TIMEOUT, &mut rng)
                .is_none()
        );
    }
    // About one a second was due, and none is in flight or lost.
    assert!(loops.unroutable() >= 90, "{}", loops.unroutable());
    let secs = now.since_origin().as_secs_f64();
    assert!((loops.unroutable() as f64 - secs).abs() < 5.0 * secs.sqrt());
    assert_eq!(loops.tracker().counts(), LoopCounts::default());
}

#[test]
fn the_tracker_counts_each_loop_once_and_only_its_own() {
    let mut t = LoopTracker::new(LoopConfig {
        max_pending: 2,
        ..LoopConfig::default()
    });
    let at = |s: u64| Instant::ZERO + Duration::from_secs(s);
    assert!(t.track(at(0), [1; 16], TIMEOUT));
    assert!(!t.track(at(0), [1; 16], TIMEOUT), "an id in flight twice");
    assert!(t.track(at(1), [2; 16], TIMEOUT));
    assert!(!t.track(at(1), [3; 16], TIMEOUT), "beyond max_pending");
    assert_eq!(t.poll_timeout(), Some(at(10)));
    assert!(!t.returned(at(2), &[9; 16]), "a forgery");
    assert!(t.returned(at(2), &[1; 16]));
    assert!(!t.returned(at(2), &[1; 16]), "a replayed return");
    t.handle_timeout(at(10));
    assert_eq!(t.in_flight(), 1);
    t.handle_timeout(at(11));
    assert!(
        !t.returned(at(12), &[2; 16]),
        "back after it was counted lost"
    );
    assert_eq!(
        t.counts(),
        LoopCounts {
            sent: 2,
            returned: 1,
            lost: 1
        }
    );
    assert_eq!(t.poll_timeout(), None);
    // Two resolved: not enough for a share.
    assert_eq!(t.loss_ratio(), None);
}

#[test]
fn the_rate_follows_the_document() {
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let net = Toy {
        gateways: 1,
        layers: 3,
        per_layer: 1,
        services: 1,
    };
    let mut loops = NodeLoops::new(LoopConfig::default());
    assert_eq!(loops.poll_timeout(), None);
    loops.set_rate(Instant::ZERO, f64::NAN, &mut rng);
    assert_eq!(loops.poll_timeout(), None);
    loops.set_rate(Instant::ZERO, 2.0, &mut rng);
    let due = loops.poll_timeout().unwrap();
    // The same rate again keeps the schedule.
    loops.set_rate(Instant::ZERO, 2.0, &mut rng);
    assert_eq!(loops.poll_timeout(), Some(due));
    let send = loops
        .poll_send(due, &net, 0, Position::Gateway, TIMEOUT, &mut rng)
        .unwrap();
    assert_eq!(send.route, vec![1, 2, 3, 0]);
    // Off: nothing more is sent, but the loop in flight is still judged.
    loops.set_rate(due, 0.0, &mut rng);
    assert_eq!(loops.poll_timeout(), Some(due + TIMEOUT));
    assert!(
        loops
            .poll_send(due + TIMEOUT, &net, 0, Position::Gateway, TIMEOUT, &mut rng)
            .is_none()
    );
}

#[test]
fn a_stalled_driver_gets_no_burst_of_loops_and_an_unsent_loop_is_not_lost() {
    let net = Toy {
        gateways: 1,
        layers: 3,
        per_layer: 1,
        services: 1,
    };
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let mut loops = NodeLoops::new(LoopConfig::default());
    loops.set_rate(Instant::ZERO, 1.0, &mut rng);
    // The driver wakes an hour late: the ~3,600 sends it missed are not
    // made up.
    let late = Instant::ZERO + Duration::from_secs(3600);
    let mut burst = Vec::new();
    while let Some(s) = loops.poll_send(late, &net, 0, Position::Gateway, TIMEOUT, &mut rng) {
        burst.push(s);
    }
    assert!(burst.len() <= 3, "{} loops at once", burst.len());
    assert!(loops.poll_timeout().unwrap() > late);
    // A loop whose frame could not be built is forgotten, not lost.
    let sent = loops.tracker().counts().sent;
    for s in &burst {
        loops.cancel(&s.id);
    }
    assert_eq!(loops.tracker().counts().sent, sent - burst.len() as u64);
    loops.handle_timeout(late + TIMEOUT * 2);
    assert_eq!(loops.tracker().counts().lost, 0);
}

#[test]
fn one_dropping_mix_among_three_per_layer_is_named() {
    // The others lose only about a third of their loops, below the
    // overall threshold; the loops through the dropper all die.
    let net = Toy {
        gateways: 2,
        layers: 3,
        per_layer: 3,
        services: 2,
    };
    let from = Instant::ZERO + Duration::from_secs(600);
    let dropper = 5; // layer 2
    for me in [0, 2, 9, 12] {
        let (alarms, counts, _) = run(&net, me, 1, Some((dropper, from)), 0.0, 20 + u64::from(me));
        let named: Vec<&LossAlarm> = alarms
            .iter()
            .filter(|a| a.suspect == Some(key_of(dropper)))
            .collect();
        let first = named
            .first()
            .unwrap_or_else(|| panic!("node {me}: not named: {alarms:?} {counts:?}"));
        assert!(first.at > from && first.loss < 0.5, "{first:?}");
        assert!(
            first.at.saturating_since(from) < Duration::from_secs(300),
            "{first:?}"
        );
        // Nobody else is ever named.
        assert!(
            alarms
                .iter()
                .all(|a| a.suspect.is_none() || a.suspect == Some(key_of(dropper)))
        );
    }
}
