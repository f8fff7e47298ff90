#![allow(clippy::unwrap_used)]

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use super::*;

#[test]
fn peers_are_served_in_turn_and_each_in_order() {
    let mut q: FairQueue<&str, u32> = FairQueue::new(100);
    for i in 0..5 {
        assert_eq!(q.push("a", i), Pushed::Queued);
    }
    assert_eq!(q.push("b", 100), Pushed::Queued);
    assert_eq!(q.push("b", 101), Pushed::Queued);
    assert_eq!(q.push("c", 200), Pushed::Queued);
    let order: Vec<(&str, u32)> = std::iter::from_fn(|| q.pop()).collect();
    assert_eq!(
        order,
        [
            ("a", 0),
            ("b", 100),
            ("c", 200),
            ("a", 1),
            ("b", 101),
            ("a", 2),
            ("a", 3),
            ("a", 4)
        ]
    );
    assert!(q.is_empty());
    assert_eq!(q.peers(), 0);
}

#[test]
fn a_full_queue_drops_from_the_longest_and_never_grows() {
    let mut q: FairQueue<&str, u32> = FairQueue::new(10);
    for i in 0..10 {
        q.push("flood", i);
    }
    // Full of the flooder's frames: another peer's frame takes the place
    // of the flooder's newest, and the flooder's own are dropped.
    assert_eq!(q.push("honest", 0), Pushed::QueuedDropping("flood"));
    assert_eq!(q.push("flood", 99), Pushed::Dropped);
    assert_eq!(q.len(), 10);
    // Between equals the frame already queued stays.
    let mut even: FairQueue<u32, u32> = FairQueue::new(4);
    for p in 0..4 {
        even.push(p, 0);
    }
    assert_eq!(even.push(9, 0), Pushed::Dropped);
    assert_eq!(even.len(), 4);
    // A dropped last frame takes its peer out of the service order.
    let mut q: FairQueue<u32, u32> = FairQueue::new(3);
    q.push(1, 10);
    q.push(1, 11);
    q.push(2, 20);
    assert_eq!(q.push(3, 30), Pushed::QueuedDropping(1));
    let order: Vec<(u32, u32)> = std::iter::from_fn(|| q.pop()).collect();
    assert_eq!(order, [(1, 10), (2, 20), (3, 30)]);
}

/// Ticks of `pushes` (peer, frames per tick) into a queue of `capacity`
/// from which the engine takes `served` a tick; returns each peer's
/// frames taken and dropped. `fair`: this queue; else one shared FIFO of
/// the same capacity (the former inbound queue).
fn run(fair: bool, pushes: &[(u32, usize)], served: usize, capacity: usize) -> Vec<(u64, u64)> {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let mut q: FairQueue<u32, ()> = FairQueue::new(capacity);
    let mut fifo: VecDeque<u32> = VecDeque::new();
    let mut counts = vec![(0u64, 0u64); pushes.len()];
    for _ in 0..1_000 {
        // Arrivals interleave as links read them.
        let mut arrivals: Vec<u32> = pushes
            .iter()
            .flat_map(|&(p, n)| std::iter::repeat_n(p, n))
            .collect();
        rand::seq::SliceRandom::shuffle(&mut arrivals[..], &mut rng);
        for p in arrivals {
            if fair {
                match q.push(p, ()) {
                    Pushed::Queued => {}
                    Pushed::QueuedDropping(v) => counts[v as usize].1 += 1,
                    Pushed::Dropped => counts[p as usize].1 += 1,
                }
            } else if fifo.len() < capacity {
                fifo.push_back(p);
            } else {
                counts[p as usize].1 += 1;
            }
        }
        for _ in 0..served {
            let taken = if fair {
                q.pop().map(|(p, ())| p)
            } else {
                fifo.pop_front()
            };
            match taken {
                Some(p) => counts[p as usize].0 += 1,
                None => break,
            }
        }
        assert!(q.len() <= capacity && q.peers() <= capacity);
    }
    counts
}

#[test]
fn one_upstream_flooding_does_not_starve_the_others() {
    // Peer 0 sends 200 frames a tick, peers 1 to 3 send 10 each; the
    // engine takes 100 a tick: the honest peers' 30 fit with room to
    // spare, the flooder gets the rest.
    let pushes = [(0, 200), (1, 10), (2, 10), (3, 10)];
    let fair = run(true, &pushes, 100, 256);
    for (taken, dropped) in &fair[1..] {
        assert_eq!((*taken, *dropped), (10_000, 0), "{fair:?}");
    }
    assert!(fair[0].0 >= 69_000, "the engine kept busy: {fair:?}");
    // The former shared queue: the flood fills it and every peer loses
    // alike.
    let fifo = run(false, &pushes, 100, 256);
    for (taken, dropped) in &fifo[1..] {
        assert!(*dropped > 4_000 && *taken < 6_000, "{fifo:?}");
    }
}
