//! The metric on hand-built topologies whose entropies are known exactly.

use super::*;

const P: u32 = 100;

fn at(recipient: u32) -> ExitPoint {
    ExitPoint {
        recipient: Some(recipient),
        node: P,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn a_node_holding_n_splits_evenly_over_its_departures() {
    let mut e = EntropyTracker::new();
    let m = e.tag(1);
    e.arrive(7, Role::Deliver, &m);
    // The node holds 4 packets; all 4 leave and exit, to 4 recipients.
    for n in (1..=4).rev() {
        let out = e.depart(7, Role::Deliver, n);
        e.exit(&out, at(n as u32));
    }
    let r = e.finish();
    assert_eq!(r.tags.len(), 1);
    let t = r.tags[0];
    assert!(close(t.entropy_bits, 2.0), "{t:?}");
    assert!(close(t.receiver_bits, 2.0), "{t:?}");
    assert!(close(t.exit_node_bits, 0.0), "{t:?}");
    assert!(close(t.exited_mass, 1.0));
}

/// Gateway G forwards its 2 packets, one to mix A (4 held, all
/// delivered) and one to mix B (2 held): exits of 1/8 four times and 1/4
/// twice, H = 4·(3/8) + 2·(2/4) = 2.5 bits.
#[test]
fn two_parallel_mixes() {
    let (g, a, b) = (1, 2, 3);
    let mut e = EntropyTracker::new();
    let m = e.tag(0);
    e.arrive(g, Role::Forward, &m);
    let to_a = e.depart(g, Role::Forward, 2);
    let to_b = e.depart(g, Role::Forward, 1);
    e.arrive(a, Role::Deliver, &to_a);
    e.arrive(b, Role::Deliver, &to_b);
    for n in (1..=4).rev() {
        let out = e.depart(a, Role::Deliver, n);
        e.exit(
            &out,
            ExitPoint {
                recipient: Some(10 + n as u32),
                node: a,
            },
        );
    }
    for n in (1..=2).rev() {
        let out = e.depart(b, Role::Deliver, n);
        e.exit(
            &out,
            ExitPoint {
                recipient: Some(20 + n as u32),
                node: b,
            },
        );
    }
    let t = e.finish().tags[0];
    assert!(close(t.entropy_bits, 2.5), "{t:?}");
    assert!(close(t.receiver_bits, 2.5), "{t:?}");
    // Half the mass at each exit node.
    assert!(close(t.exit_node_bits, 1.0), "{t:?}");
}

/// A provider that is both a gateway and an exit keeps its two pools
/// apart: a packet leaving it towards layer 1 is one of the 3 it holds to
/// forward, never one of the 5 it holds to deliver. With one shared pool
/// the tag would have put 5/8 of its mass on this provider's own
/// deliveries.
#[test]
fn a_provider_carrying_both_roles_keeps_them_apart() {
    let (provider, mix, exit) = (1, 2, 3);
    let mut e = EntropyTracker::new();
    let m = e.tag(0);
    e.arrive(provider, Role::Forward, &m);
    // Five packets to deliver here, none with the tag's mass.
    for n in (1..=3).rev() {
        let out = e.depart(provider, Role::Forward, n);
        e.arrive(mix, Role::Forward, &out);
        let on = e.depart(mix, Role::Forward, 1);
        e.arrive(exit, Role::Deliver, &on);
        let d = e.depart(exit, Role::Deliver, 1);
        e.exit(
            &d,
            ExitPoint {
                recipient: Some(n as u32),
                node: exit,
            },
        );
    }
    for n in (1..=5).rev() {
        let d = e.depart(provider, Role::Deliver, n);
        assert!(d.is_empty(), "the deliver pool holds none of the tag");
        e.exit(
            &d,
            ExitPoint {
                recipient: Some(50),
                node: provider,
            },
        );
    }
    let t = e.finish().tags[0];
    assert!(close(t.entropy_bits, 3f64.log2()), "{t:?}");
    assert!(close(t.exit_node_bits, 0.0), "{t:?}");
}

/// A quarter of the mass lost on a link: the rest is measured given
/// delivery (three equal exits, log2 3 bits), and the loss reported; a
/// tag whose whole mass is lost is counted apart, never averaged in.
#[test]
fn lost_mass_is_accounted_for() {
    let mut e = EntropyTracker::new();
    let m = e.tag(0);
    e.arrive(1, Role::Deliver, &m);
    let lost = e.depart(1, Role::Deliver, 4);
    e.lose(&lost);
    for n in (1..=3).rev() {
        let out = e.depart(1, Role::Deliver, n);
        e.exit(&out, at(n as u32));
    }
    let m = e.tag(1);
    e.lose(&m);
    let r = e.finish();
    assert_eq!(r.tags.len(), 1);
    assert_eq!(r.wholly_lost, 1);
    let t = r.tags[0];
    assert!(close(t.entropy_bits, 3f64.log2()), "{t:?}");
    assert!(close(t.lost_mass, 0.25), "{t:?}");
    assert!(close(t.exited_mass, 0.75), "{t:?}");
}

/// Four exits, two to each of two recipients: 2 bits over exit events,
/// 1 bit over recipients.
#[test]
fn receiver_entropy_groups_by_recipient() {
    let mut e = EntropyTracker::new();
    let m = e.tag(0);
    e.arrive(1, Role::Deliver, &m);
    for n in (1..=4).rev() {
        let out = e.depart(1, Role::Deliver, n);
        e.exit(&out, at(n as u32 % 2));
    }
    let t = e.finish().tags[0];
    assert!(close(t.entropy_bits, 2.0), "{t:?}");
    assert!(close(t.receiver_bits, 1.0), "{t:?}");
}

/// A tag with under 99% of its mass out at the end is unfinished, not
/// measured.
#[test]
fn unfinished_tags_are_counted_not_measured() {
    let mut e = EntropyTracker::new();
    let m = e.tag(0);
    e.arrive(1, Role::Deliver, &m);
    let out = e.depart(1, Role::Deliver, 2);
    e.exit(&out, at(1));
    let r = e.finish();
    assert!(r.tags.is_empty());
    assert_eq!(r.unfinished, 1);
}

/// A tag all of whose mass exits where nothing reaches a mailbox (drop
/// cover discarded at a provider) has an exit entropy but no receiver
/// entropy: NaN, not 0 bits, so that means over tags leave it out.
#[test]
fn a_tag_with_no_mailbox_mass_has_no_receiver_entropy() {
    let mut e = EntropyTracker::new();
    let m = e.tag(1);
    e.arrive(7, Role::Deliver, &m);
    for n in (1..=2).rev() {
        let out = e.depart(7, Role::Deliver, n);
        e.exit(
            &out,
            ExitPoint {
                recipient: None,
                node: P,
            },
        );
    }
    let t = e.finish().tags[0];
    assert!(close(t.entropy_bits, 1.0), "{t:?}");
    assert!(t.receiver_bits.is_nan(), "{t:?}");
}

/// A node that leaves loses both its pools and the packets it knew
/// exactly: half a tag's mass went through node 2's pool and half is a
/// packet node 3 (held by the adversary) knows; both are lost when the
/// nodes leave, and the tag settles with its lost mass counted, as its
/// half that exited counts.
#[test]
fn a_departed_node_loses_its_pools_and_its_exact_packets() {
    let mut e = EntropyTracker::new();
    let m = e.tag(0);
    e.arrive(1, Role::Forward, &m);
    let first = e.depart(1, Role::Forward, 2);
    let second = e.depart(1, Role::Forward, 1);
    e.arrive(2, Role::Forward, &first);
    e.arrive_exact(3, 77, second.clone());
    // Another packet at node 2's pool carries the tag's quarter away
    // before it leaves.
    let out = e.depart(2, Role::Forward, 2);
    e.exit(&out, at(5));
    assert_eq!(e.active(), 1);
    e.lose_node(2);
    assert_eq!(e.active(), 1, "node 3 still holds half");
    e.lose_node(3);
    assert!(e.depart_exact(3, 77).is_empty());
    let r = e.finish();
    assert_eq!(r.tags.len(), 1, "{r:?}");
    let t = r.tags[0];
    assert!(close(t.lost_mass, 0.75), "{t:?}");
    assert!(close(t.exited_mass, 0.25), "{t:?}");
}
