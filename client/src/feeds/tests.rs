//! Poll rounds (`specs/feeds.md` §5).

#![allow(clippy::unwrap_used)]

use super::*;
use mtos_crypto::identity::{Identity, Label, Visibility};
use rand::SeedableRng;

fn followed(seed: u8, next: u64) -> Followed {
    let id = Identity::from_secrets(
        Label::new("f").unwrap(),
        Visibility::Public,
        0,
        &[seed; 32],
        &[seed; 32],
    );
    Followed {
        follow: FeedKeys::of(&id).follow(),
        next,
    }
}

fn decoys(n: usize) -> Vec<[u8; 32]> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    (0..n)
        .map(|_| mtos_crypto::feed::decoy_feed_key(&mut rng))
        .collect()
}

#[test]
fn every_round_is_the_same_number_of_one_window_probes_whatever_is_followed() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let decoys = decoys(POLL_PROBES);
    for count in [0usize, 1, 3, 4, 5, 50] {
        let follows: Vec<Followed> = (0..count).map(|i| followed(i as u8, 5)).collect();
        for round in 0..3 {
            let probes = plan(&follows, &decoys, round, POLL_PROBES, &mut rng);
            assert_eq!(probes.len(), POLL_PROBES, "{count} feeds");
            let real = probes.iter().filter(|p| p.feed.is_some()).count();
            assert_eq!(real, count.min(POLL_PROBES));
            for p in &probes {
                assert_eq!(p.slots.len(), WINDOW);
                let (key, from) = match p.feed {
                    Some(i) => (follows[i].follow.feed, follows[i].next),
                    None => {
                        let d = decoys
                            .iter()
                            .find(|d| {
                                mtos_crypto::feed::feed_slot_locator(d, 0).unwrap() == p.slots[0].0
                            })
                            .expect("a decoy's window starts at its slot 0");
                        (*d, 0)
                    }
                };
                for (k, (l, n)) in p.slots.iter().enumerate() {
                    assert_eq!(*n, from + k as u64);
                    assert_eq!(*l, mtos_crypto::feed::feed_slot_locator(&key, *n).unwrap());
                }
            }
        }
    }
}

#[test]
fn with_more_feeds_than_probes_every_feed_gets_its_turn() {
    let follows: Vec<Followed> = (0..50).map(|i| followed(i as u8, 0)).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let mut seen = std::collections::BTreeSet::new();
    let rounds = follows.len().div_ceil(POLL_PROBES) as u64;
    for round in 0..rounds {
        for p in plan(&follows, &[], round, POLL_PROBES, &mut rng) {
            seen.insert(p.feed.unwrap());
        }
    }
    assert_eq!(seen.len(), 50);
}

#[test]
fn decoys_are_kept_and_topped_up() {
    let mut book = FeedBook::default();
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let first = book.decoys(&mut rng);
    assert_eq!(first.len(), POLL_PROBES);
    assert_eq!(book.decoys(&mut rng), first, "kept");
    book.decoys[1] = "not hex".into();
    let again = book.decoys(&mut rng);
    assert_eq!(again.len(), POLL_PROBES);
    assert!(again.contains(&first[0]));
}

/// What one service node sees of a poll round's probe: whose window it is
/// (the observer is granted every feed key, so it can tell feeds apart
/// and chain a feed's windows as they move), and how many of its slots
/// are held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Window {
    Feed(usize),
    Decoy(usize, usize),
}

/// How a follower spreads a round's probes over service nodes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Spread {
    /// Each probe its own draw ([`crate::mixnet::pick_service`]).
    Independent,
    /// Never two of a round on one node (the anti-correlated control).
    Distinct,
    /// The former design: every window in one padded probe.
    OneProbe,
}

const SERVICES: usize = 5;
const CLIENTS: usize = 30;
const ROUNDS: u64 = 100;

/// `CLIENTS` followers of two feeds each (feed `2c` and `2c + 1`), every
/// even feed written to now and then, polling `ROUNDS` rounds; what
/// service node 0 sees, round by round.
fn observe(spread: Spread, seed: u64) -> Vec<Vec<(Window, usize)>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let nodes: Vec<[u8; 32]> = (0..SERVICES as u8).map(|i| [i; 32]).collect();
    let feeds = 2 * CLIENTS;
    let mut written: Vec<u64> = (0..feeds).map(|_| rng.random_range(0..5)).collect();
    let mut clients: Vec<(Vec<Followed>, Vec<[u8; 32]>)> = (0..CLIENTS)
        .map(|c| {
            let follows = (0..2)
                .map(|k| followed((2 * c + k) as u8, written[2 * c + k]))
                .collect();
            let decoys = (0..POLL_PROBES)
                .map(|_| mtos_crypto::feed::decoy_feed_key(&mut rng))
                .collect();
            (follows, decoys)
        })
        .collect();
    let mut seen = Vec::new();
    for round in 0..ROUNDS {
        let mut this = Vec::new();
        for (c, (follows, decoys)) in clients.iter_mut().enumerate() {
            let probes = plan(follows, decoys, round, POLL_PROBES, &mut rng);
            let mut free = nodes.clone();
            free.shuffle(&mut rng);
            let one = crate::mixnet::pick_service(&mut rng, &nodes, &[]).unwrap();
            for probe in &probes {
                let node = match spread {
                    Spread::Independent => {
                        crate::mixnet::pick_service(&mut rng, &nodes, &[]).unwrap()
                    }
                    Spread::Distinct => free.pop().unwrap(),
                    Spread::OneProbe => one,
                };
                let (window, hits) = match probe.feed {
                    Some(i) => {
                        let g = 2 * c + i;
                        let hits = probe.slots.iter().filter(|(_, n)| *n < written[g]).count();
                        (Window::Feed(g), hits)
                    }
                    None => {
                        let d = decoys
                            .iter()
                            .position(|d| {
                                mtos_crypto::feed::feed_slot_locator(d, 0).unwrap()
                                    == probe.slots[0].0
                            })
                            .unwrap();
                        (Window::Decoy(c, d), 0)
                    }
                };
                if node == nodes[0] {
                    this.push((window, hits));
                }
            }
            // The entries found are read: the windows move on.
            for (i, f) in follows.iter_mut().enumerate() {
                f.next = written[2 * c + i];
            }
        }
        for (g, w) in written.iter_mut().enumerate() {
            if g % 2 == 0 && rng.random_bool(0.1) {
                *w += 1;
            }
        }
        seen.push(this);
    }
    seen
}

/// The linking attack: for each feed, the feed it was seen with most
/// often in one round (or least often, for `least`), taken as the one its
/// follower also follows. The share it gets right.
fn link(seen: &[Vec<(Window, usize)>], least: bool, seed: u64) -> f64 {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let feeds = 2 * CLIENTS;
    let mut together = vec![vec![0usize; feeds]; feeds];
    for round in seen {
        for (a, _) in round {
            for (b, _) in round {
                if let (Window::Feed(a), Window::Feed(b)) = (a, b)
                    && a != b
                {
                    together[*a][*b] += 1;
                }
            }
        }
    }
    let mut right = 0;
    for (a, with) in together.iter().enumerate() {
        let mut others: Vec<usize> = (0..feeds).filter(|b| *b != a).collect();
        others.shuffle(&mut rng);
        let key = |b: &usize| with[*b];
        let guess = if least {
            others.iter().min_by_key(|b| key(b))
        } else {
            others.iter().max_by_key(|b| key(b))
        };
        right += usize::from(guess == Some(&(a ^ 1)));
    }
    right as f64 / feeds as f64
}

/// The ranking attack on windows that found nothing new: the area under
/// the curve of "seen more often" as a test of real against decoy (0.5 is
/// chance).
fn rank_quiet(seen: &[Vec<(Window, usize)>]) -> f64 {
    let mut count: std::collections::BTreeMap<Window, (usize, usize)> = Default::default();
    for round in seen {
        for (w, hits) in round {
            let e = count.entry(*w).or_default();
            e.0 += 1;
            e.1 += hits;
        }
    }
    let real: Vec<usize> = count
        .iter()
        .filter(|(w, (_, hits))| matches!(w, Window::Feed(_)) && *hits == 0)
        .map(|(_, (n, _))| *n)
        .collect();
    let decoy: Vec<usize> = count
        .iter()
        .filter(|(w, _)| matches!(w, Window::Decoy(..)))
        .map(|(_, (n, _))| *n)
        .collect();
    let mut wins = 0.0;
    for r in &real {
        for d in &decoy {
            wins += match r.cmp(d) {
                std::cmp::Ordering::Greater => 1.0,
                std::cmp::Ordering::Equal => 0.5,
                std::cmp::Ordering::Less => 0.0,
            };
        }
    }
    wins / (real.len() * decoy.len()) as f64
}

#[test]
fn a_service_node_cannot_link_two_feeds_of_one_follower_or_tell_decoys() {
    let feeds = (2 * CLIENTS) as f64;
    let chance = 1.0 / (feeds - 1.0);
    let bound = chance + 3.0 * (chance * (1.0 - chance) / feeds).sqrt();

    let seen = observe(Spread::Independent, 7);
    let most = link(&seen, false, 8);
    let least = link(&seen, true, 9);
    let auc = rank_quiet(&seen);
    eprintln!(
        "independent probes: linked {most:.3} (most together), {least:.3} (least); chance {chance:.3}, bound {bound:.3}; quiet real vs decoy AUC {auc:.3}"
    );
    assert!(most < bound && least < bound, "{most} {least} >= {bound}");
    // Real windows with nothing new and decoys: seen alike (3 sigma of
    // the AUC over these counts is about 0.2).
    assert!((auc - 0.5).abs() < 0.2, "AUC {auc}");

    // The controls, to show the attacks bite: every window in one probe
    // (the former design) links every pair the node saw; probes spread
    // over distinct nodes never meet there, which links them too.
    let one = link(&observe(Spread::OneProbe, 7), false, 8);
    let distinct = link(&observe(Spread::Distinct, 7), true, 9);
    eprintln!("one probe: linked {one:.3}; distinct nodes: linked {distinct:.3}");
    assert!(one > 0.9, "{one}");
    assert!(distinct > bound, "{distinct}");
}
