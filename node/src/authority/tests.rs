//! The operator's approvals: re-keying at most once per retention.

use super::*;

const DAY: u64 = 86_400;

fn key(seed: u8) -> String {
    let id = Identity::generate(
        &mut <rand_chacha::ChaCha20Rng as rand::SeedableRng>::seed_from_u64(u64::from(seed)),
        Label::new("node").unwrap(),
        Visibility::Public,
        0,
    );
    data_encoding::HEXLOWER.encode(id.verify_key().as_bytes())
}

fn approve_at(
    dir: &Path,
    new: &str,
    replaces: Option<&str>,
    now: u64,
) -> Result<String, NodeError> {
    approve(dir, new, None, None, replaces, 3, now)
}

#[test]
fn a_node_re_keys_at_most_once_per_retention_and_keeps_its_family_and_pin() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c, d) = (key(1), key(2), key(3), key(4));
    let t0 = 1_000 * DAY;
    approve(dir.path(), &a, Some("hosting".into()), Some(2), None, 3, t0).unwrap();
    approve_at(dir.path(), &b, Some(&a), t0 + DAY).unwrap();
    let held = Approvals::load(dir.path()).unwrap();
    let new = &held.nodes[&b];
    assert_eq!(new.family.as_deref(), Some("hosting"));
    assert_eq!(new.layer, Some(2));
    assert_eq!(new.replaces, parse_key(&a));
    // The old key stays approved: it is voted for until the new one is
    // listed (the authority's rule, tested in the core).
    assert!(held.nodes.contains_key(&a));

    // Re-keying again within 30 days, from the new key or the old one
    // again, is refused and writes nothing.
    for (new, old) in [(&c, &b), (&c, &a)] {
        let err = approve_at(dir.path(), new, Some(old), t0 + 29 * DAY)
            .unwrap_err()
            .to_string();
        assert!(err.contains("at most once per 30 days"), "{err}");
        assert!(err.contains("again in 2 day(s)"), "{err}");
    }
    assert_eq!(Approvals::load(dir.path()).unwrap(), held);

    // After the retention it may.
    approve_at(dir.path(), &c, Some(&b), t0 + 31 * DAY + 1).unwrap();
    let held = Approvals::load(dir.path()).unwrap();
    assert_eq!(held.nodes[&c].replaces, parse_key(&b));
    // The record of the first re-keying has expired and is gone.
    assert_eq!(held.rekeys.len(), 1);

    // Only an approved key can be replaced, and not by itself.
    let err = approve_at(dir.path(), &d, Some(&key(9)), t0 + 40 * DAY).unwrap_err();
    assert!(err.to_string().contains("is not approved here"), "{err}");
    let err = approve_at(dir.path(), &c, Some(&c), t0 + 90 * DAY).unwrap_err();
    assert!(err.to_string().contains("cannot replace itself"), "{err}");

    // A replacement must be a fresh key: not another approved node's
    // (whose family and pin it would take over), nor a key of a
    // re-keying.
    approve_at(dir.path(), &d, None, t0 + 90 * DAY).unwrap();
    for taken in [&d, &a] {
        let err = approve_at(dir.path(), taken, Some(&c), t0 + 90 * DAY).unwrap_err();
        assert!(err.to_string().contains("must be a fresh one"), "{err}");
    }

    // Approving the new key again, to change its family, keeps what it
    // replaced retired.
    approve(
        dir.path(),
        &c,
        Some("other".into()),
        None,
        None,
        3,
        t0 + 91 * DAY,
    )
    .unwrap();
    let held = Approvals::load(dir.path()).unwrap();
    assert_eq!(held.nodes[&c].replaces, parse_key(&b));
    assert_eq!(held.nodes[&c].family.as_deref(), Some("other"));
}

#[test]
fn revoking_the_new_key_does_not_reset_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (key(1), key(2), key(3));
    let t0 = 1_000 * DAY;
    approve_at(dir.path(), &a, None, t0).unwrap();
    approve_at(dir.path(), &b, Some(&a), t0).unwrap();
    assert!(revoke(dir.path(), &b).unwrap());
    // A second draw of placement for the same node, through a revoked
    // replacement, is still a re-keying within the period.
    let err = approve_at(dir.path(), &c, Some(&a), t0 + DAY).unwrap_err();
    assert!(
        err.to_string().contains("at most once per 30 days"),
        "{err}"
    );
}
