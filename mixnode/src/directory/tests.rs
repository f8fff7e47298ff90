use super::*;
use mtos_crypto::{Identity, Label, Visibility};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

pub(super) fn identity(seed: u64) -> Identity {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    Identity::generate(&mut rng, Label::new("t").unwrap(), Visibility::Public, 0)
}

/// The core's tests take any absolute path as an address; the drivers
/// check multiaddrs (`mtos_net::check_multiaddr`).
pub(super) fn test_addresses(addr: &str) -> Result<(), String> {
    if addr.starts_with('/') {
        Ok(())
    } else {
        Err("not an address".into())
    }
}

pub(super) fn params() -> NetworkParams {
    NetworkParams {
        network: "mtos-test".into(),
        schedule: EpochSchedule {
            genesis: 1_000,
            epoch_secs: 100,
            heartbeat_secs: 100,
            round_secs: 2,
        },
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
        storage: crate::directory::StorageRules::default(),
        family_cap_percent: 100,
        addresses: test_addresses,
    }
}

pub(super) fn descriptor(
    id: &Identity,
    role: Role,
    layer: Option<u8>,
    epochs: &[u32],
) -> Descriptor {
    let key = *id.verify_key().as_bytes();
    Descriptor {
        version: VERSION,
        network: "mtos-test".into(),
        published: 1_000,
        node: NodeEntry {
            since: None,
            salt: None,
            family: None,
            key,
            peer_id: peer_id_text(&key),
            addrs: vec!["/ip4/127.0.0.1/tcp/4000".into()],
            role,
            layer,
            storage: false,
            sphinx_keys: epochs
                .iter()
                .map(|&epoch| SphinxKeyEntry {
                    epoch,
                    public: [epoch as u8; 32],
                })
                .collect(),
        },
    }
}

fn trust(authorities: &[&Identity], threshold: usize) -> Trust {
    Trust {
        network: "mtos-test".into(),
        authorities: authorities.iter().map(|a| a.verify_key()).collect(),
        threshold,
        addresses: test_addresses,
    }
}

#[test]
fn descriptors_verify_and_refuse_forgeries() {
    let id = identity(1);
    let d = descriptor(&id, Role::Mix, Some(2), &[0, 1]);
    let bytes = d.sign(&id);
    assert_eq!(
        Descriptor::verify(&bytes, "mtos-test", 3, test_addresses).unwrap(),
        d
    );
    assert!(matches!(
        Descriptor::verify(&bytes, "other", 3, test_addresses),
        Err(DirectoryError::WrongNetwork { .. })
    ));
    // Signed by someone else than the node it describes.
    let bytes = d.sign(&identity(2));
    assert!(matches!(
        Descriptor::verify(&bytes, "mtos-test", 3, test_addresses),
        Err(DirectoryError::Signature(_))
    ));
    // A layer the network does not have, a peer id of another key.
    let mut bad = descriptor(&id, Role::Mix, Some(4), &[0]);
    assert!(Descriptor::verify(&bad.sign(&id), "mtos-test", 3, test_addresses).is_err());
    bad = descriptor(&id, Role::Mix, Some(1), &[0]);
    bad.node.peer_id = peer_id_text(identity(2).verify_key().as_bytes());
    assert!(Descriptor::verify(&bad.sign(&id), "mtos-test", 3, test_addresses).is_err());
    bad = descriptor(&id, Role::Gateway, Some(1), &[0]);
    assert!(Descriptor::verify(&bad.sign(&id), "mtos-test", 3, test_addresses).is_err());
    // An address the transport's syntax refuses.
    bad = descriptor(&id, Role::Gateway, None, &[0]);
    bad.node.addrs = vec!["127.0.0.1:4000".into()];
    let e = Descriptor::verify(&bad.sign(&id), "mtos-test", 3, test_addresses).unwrap_err();
    assert!(e.to_string().contains("127.0.0.1:4000"), "{e}");
}

#[test]
fn every_flipped_byte_of_a_document_is_refused() {
    let auth = identity(9);
    let mut a = Authority::new(params());
    let node = identity(1);
    a.accept_descriptor(
        &descriptor(&node, Role::Gateway, None, &[0, 1]).sign(&node),
        1_000,
    )
    .unwrap();
    let bytes = a.document(1_010, &auth);
    let t = trust(&[&auth], 1);
    let doc = NetworkDocument::verify(&bytes, &t, 1_010).unwrap();
    assert_eq!(doc.nodes.len(), 1);
    for i in 0..bytes.len() {
        let mut m = bytes.clone();
        m[i] ^= 0x01;
        assert!(
            NetworkDocument::verify(&m, &t, 1_010).is_err(),
            "flip at byte {i} accepted"
        );
    }
    assert!(NetworkDocument::verify(&bytes[..bytes.len() - 1], &t, 1_010).is_err());
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(NetworkDocument::verify(&longer, &t, 1_010).is_err());
}

#[test]
fn documents_are_refused_for_the_wrong_authority_network_or_time() {
    let auth = identity(9);
    let mut a = Authority::new(params());
    let bytes = a.document(1_150, &auth);
    let ok = NetworkDocument::verify(&bytes, &trust(&[&auth], 1), 1_150).unwrap();
    assert_eq!(ok.epoch, 1);
    assert_eq!((ok.valid_after, ok.valid_until), (1_100, 1_250));
    let e = NetworkDocument::verify(&bytes, &trust(&[&identity(8)], 1), 1_150).unwrap_err();
    assert!(matches!(e, DirectoryError::Signature(_)), "{e}");
    let mut other = trust(&[&auth], 1);
    other.network = "elsewhere".into();
    let e = NetworkDocument::verify(&bytes, &other, 1_150).unwrap_err();
    assert!(e.to_string().contains("wrong network id"), "{e}");
    let e = NetworkDocument::verify(&bytes, &trust(&[&auth], 1), 1_250).unwrap_err();
    assert!(matches!(e, DirectoryError::Expired { epoch: 1, .. }), "{e}");
    let e = NetworkDocument::verify(&bytes, &trust(&[&auth], 1), 700).unwrap_err();
    assert!(matches!(e, DirectoryError::NotYetValid { .. }), "{e}");
}

#[test]
fn several_authorities_can_sign_one_document() {
    let (a1, a2, a3) = (identity(11), identity(12), identity(13));
    let mut a = Authority::new(params());
    let one = a.document(1_010, &a1);
    let t = trust(&[&a1, &a2, &a3], 2);
    assert!(NetworkDocument::verify(&one, &t, 1_010).is_err());
    // The same authority twice still counts once.
    let twice = add_signature(&one, &a1).unwrap();
    assert!(NetworkDocument::verify(&twice, &t, 1_010).is_err());
    let two = add_signature(&one, &a2).unwrap();
    assert!(NetworkDocument::verify(&two, &t, 1_010).is_ok());
    // An untrusted extra signature neither helps nor hurts.
    let extra = add_signature(&two, &identity(14)).unwrap();
    assert!(NetworkDocument::verify(&extra, &t, 1_010).is_ok());
}

#[test]
fn the_authority_lists_nodes_with_keys_for_the_epoch() {
    let auth = identity(9);
    let mut a = Authority::new(params());
    let t = trust(&[&auth], 1);
    let (n1, n2) = (identity(1), identity(2));
    a.accept_descriptor(
        &descriptor(&n1, Role::Mix, Some(1), &[0, 1]).sign(&n1),
        1_000,
    )
    .unwrap();
    a.accept_descriptor(
        &descriptor(&n2, Role::Mix, Some(2), &[1, 2]).sign(&n2),
        1_000,
    )
    .unwrap();
    let d0 = NetworkDocument::verify(&a.document(1_000, &auth), &t, 1_000).unwrap();
    assert_eq!(d0.nodes.len(), 1);
    // Same epoch, nothing new: the same signed bytes.
    assert_eq!(a.document(1_050, &auth), a.document(1_060, &auth));
    let d1 = NetworkDocument::verify(&a.document(1_100, &auth), &t, 1_100).unwrap();
    assert_eq!(d1.nodes.len(), 2);
    assert!(d1.serial > d0.serial);
    let listed_n1 = d1
        .nodes
        .iter()
        .find(|n| n.key == *n1.verify_key().as_bytes());
    assert_eq!(listed_n1.map(NodeEntry::position), Some(Position::Layer(1)));
    // Epoch 2: n1 published no key for it and is gone.
    let d2 = NetworkDocument::verify(&a.document(1_200, &auth), &t, 1_200).unwrap();
    assert_eq!(d2.nodes.len(), 1);
    assert_eq!(d2.nodes[0].sphinx_key(2), Some([2; 32]));
    assert_eq!(a.known(), 1);
    // An older descriptor does not replace a newer one; one from the
    // future is refused.
    let mut newer = descriptor(&n2, Role::Mix, Some(3), &[2, 3]);
    newer.published = 1_200;
    a.accept_descriptor(&newer.sign(&n2), 1_200).unwrap();
    let e = a
        .accept_descriptor(&descriptor(&n2, Role::Mix, Some(2), &[2]).sign(&n2), 1_200)
        .unwrap_err();
    assert!(e.to_string().contains("older"), "{e}");
    newer.published = 5_000;
    let e = a.accept_descriptor(&newer.sign(&n2), 1_200).unwrap_err();
    assert!(e.to_string().contains("future"), "{e}");
    let d = NetworkDocument::verify(&a.document(1_210, &auth), &t, 1_210).unwrap();
    assert_eq!(d.nodes[0].layer, Some(3));
}

#[test]
fn a_node_silent_for_three_heartbeats_leaves_the_document() {
    let auth = identity(9);
    let mut a = Authority::new(params());
    let t = trust(&[&auth], 1);
    let (n1, n2) = (identity(1), identity(2));
    let d1 = descriptor(&n1, Role::Mix, Some(1), &[0, 1, 2, 3]).sign(&n1);
    let d2 = descriptor(&n2, Role::Mix, Some(2), &[0, 1, 2, 3]).sign(&n2);
    a.accept_descriptor(&d1, 1_000).unwrap();
    a.accept_descriptor(&d2, 1_000).unwrap();
    let listed = |a: &mut Authority, now| {
        NetworkDocument::verify(&a.document(now, &auth), &t, now)
            .unwrap()
            .nodes
            .len()
    };
    // Heartbeat 100 s: listed through 299 s of silence.
    assert_eq!(listed(&mut a, 1_299), 2);
    // n1 repeats its descriptor (the heartbeat); n2 stays silent.
    a.accept_descriptor(&d1, 1_250).unwrap();
    assert_eq!(listed(&mut a, 1_300), 1);
    assert_eq!(a.known(), 1);
    // 399 s after its first upload, 149 s after its heartbeat.
    assert_eq!(listed(&mut a, 1_399), 1);
    // A node that comes back is listed again at once.
    a.accept_descriptor(&d2, 1_390).unwrap();
    assert_eq!(listed(&mut a, 1_390), 2);
}

#[test]
fn the_allowlist_and_the_size_budget_bound_the_document() {
    let mut a = Authority::new(params());
    let (n1, n2) = (identity(1), identity(2));
    a.set_allowlist(Some([*n1.verify_key().as_bytes()].into_iter().collect()));
    a.accept_descriptor(
        &descriptor(&n1, Role::Gateway, None, &[0, 1]).sign(&n1),
        1_000,
    )
    .unwrap();
    let e = a
        .accept_descriptor(
            &descriptor(&n2, Role::Gateway, None, &[0, 1]).sign(&n2),
            1_000,
        )
        .unwrap_err();
    assert!(e.to_string().contains("allowlist"), "{e}");
    // Open registration: bulky descriptors stop before the document
    // outgrows what nodes accept.
    a.set_allowlist(None);
    let mut listed = 0;
    for seed in 100..2_000u64 {
        let id = identity(seed);
        let mut d = descriptor(&id, Role::Gateway, None, &[0, 1]);
        d.node.addrs = (0..8)
            .map(|i| format!("/dns4/{}.example/tcp/{i}", "a".repeat(1_500)))
            .collect();
        match a.accept_descriptor(&d.sign(&id), 1_000) {
            Ok(()) => listed += 1,
            Err(e) => {
                assert!(e.to_string().contains("size limit"), "{e}");
                break;
            }
        }
    }
    assert!(listed > 100, "{listed}");
    let auth = identity(9);
    let bytes = a.document(1_010, &auth);
    assert!(bytes.len() < MAX_DOCUMENT_BODY);
    assert!(NetworkDocument::verify(&bytes, &trust(&[&auth], 1), 1_010).is_ok());
}

#[test]
fn a_gateway_delivers_faster_than_its_client_is_sent_to() {
    let rates = |payload, loops, drops| Rates {
        payload,
        loops,
        drops,
        node_loops: 0.0,
        bulk: None,
    };
    // The defaults: the client's whole send rate, 4 a second, for the
    // 3 a second that come back.
    assert_eq!(rates(2.0, 1.0, 1.0).delivery(), 4.0);
    // Without drops, still a margin over what comes back.
    assert_eq!(rates(2.0, 2.0, 0.0).delivery(), 5.0);
    for (p, l, d) in [(0.5, 0.1, 0.0), (50.0, 5.0, 1.0), (2.0, 0.0, 0.0)] {
        let r = rates(p, l, d);
        assert!(r.delivery() >= 1.25 * (p + l), "{r:?}");
    }
}

/// Authority 9, a trust in it alone, and the document it signs at 1,010
/// listing `gateways`, verified.
pub(super) fn signed_document(gateways: &[Identity]) -> (Identity, Trust, NetworkDocument) {
    let auth = identity(9);
    let t = trust(&[&auth], 1);
    let mut a = Authority::new(params());
    for node in gateways {
        a.accept_descriptor(
            &descriptor(node, Role::Gateway, None, &[0, 1]).sign(node),
            1_000,
        )
        .unwrap();
    }
    let good = NetworkDocument::verify(&a.document(1_010, &auth), &t, 1_010).unwrap();
    (auth, t, good)
}

#[test]
fn a_document_with_a_rate_no_timer_can_hold_is_refused_naming_the_field() {
    let (auth, t, good) = signed_document(&[]);
    type Field = fn(&mut Rates) -> &mut f64;
    let fields: [(&str, Field); 4] = [
        ("rates.payload", |r| &mut r.payload),
        ("rates.loops", |r| &mut r.loops),
        ("rates.drops", |r| &mut r.drops),
        ("rates.node_loops", |r| &mut r.node_loops),
    ];
    for (name, field) in fields {
        for bad in [
            -1.0,
            -0.5e-3,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e-320,
            1e-300,
            0.000_999,
            10_000.5,
        ] {
            let mut doc = good.clone();
            *field(&mut doc.rates) = bad;
            let e = NetworkDocument::verify(&doc.sign(&auth), &t, 1_010).unwrap_err();
            assert!(
                matches!(&e, DirectoryError::Field { field, .. } if field == name),
                "{name} = {bad}: {e}"
            );
            assert!(e.to_string().contains(name), "{e}");
        }
        // Off is fine for every stream but the payload stream.
        let mut doc = good.clone();
        *field(&mut doc.rates) = 0.0;
        let zero = NetworkDocument::verify(&doc.sign(&auth), &t, 1_010);
        assert_eq!(
            zero.is_ok(),
            name != "rates.payload",
            "{name} = 0: {zero:?}"
        );
        for fine in [MIN_RATE, 0.5, MAX_RATE] {
            let mut doc = good.clone();
            *field(&mut doc.rates) = fine;
            assert!(NetworkDocument::verify(&doc.sign(&auth), &t, 1_010).is_ok());
        }
    }
}

#[test]
fn a_stamp_floor_out_of_range_is_refused_and_a_document_without_one_has_the_default() {
    let (auth, t, good) = signed_document(&[]);
    for bad in [0, MAX_STAMP_FLOOR + 1, u32::MAX] {
        let mut doc = good.clone();
        doc.storage.stamp_floor = bad;
        let e = NetworkDocument::verify(&doc.sign(&auth), &t, 1_010).unwrap_err();
        assert!(
            matches!(&e, DirectoryError::Field { field, .. } if field == "storage.stamp_floor"),
            "{bad}: {e}"
        );
    }
    for fine in [1, MAX_STAMP_FLOOR] {
        let mut doc = good.clone();
        doc.storage.stamp_floor = fine;
        let back = NetworkDocument::verify(&doc.sign(&auth), &t, 1_010).unwrap();
        assert_eq!(back.storage.stamp_floor, fine);
    }
    // A document from before the field: the default floor.
    let mut body = serde_json::to_value(&good).unwrap();
    body.as_object_mut().unwrap().remove("storage");
    let bytes = signed::sign_document_body(serde_json::to_vec(&body).unwrap(), &auth);
    let old = NetworkDocument::verify(&bytes, &t, 1_010).unwrap();
    assert_eq!(old.storage, StorageRules::default());
    assert_eq!(old.storage.stamp_floor, DEFAULT_STAMP_FLOOR);
    // The object is closed: a field unknown there is refused, named.
    let mut body = serde_json::to_value(&good).unwrap();
    body["storage"]["stamp_ceiling"] = 5.into();
    let bytes = signed::sign_document_body(serde_json::to_vec(&body).unwrap(), &auth);
    let e = NetworkDocument::verify(&bytes, &t, 1_010).unwrap_err();
    assert!(e.to_string().contains("storage"), "{e}");
}

#[test]
fn unknown_fields_are_ignored_where_the_format_allows_them_and_a_new_version_is_refused() {
    let (auth, t, good) = signed_document(&[identity(1)]);
    let json = |doc: &NetworkDocument| serde_json::to_value(doc).unwrap();
    let verify = |body: serde_json::Value| {
        let bytes = signed::sign_document_body(serde_json::to_vec(&body).unwrap(), &auth);
        NetworkDocument::verify(&bytes, &t, 1_010)
    };
    // A field added at the top, in a node entry and in a Sphinx key entry
    // (a later minor addition): read as the document without them.
    let mut later = json(&good);
    later["classes"] = serde_json::json!({"bulk": {"payload": 50.0}});
    later["nodes"][0]["bandwidth"] = serde_json::json!(1000);
    later["nodes"][0]["sphinx_keys"][0]["pq"] = serde_json::json!("00");
    assert_eq!(verify(later).unwrap(), good);
    // A new setting inside the settings every node must obey alike is a
    // new format, not an addition: refused, naming where.
    for (object, field) in [("rates", "rates.surge"), ("mixing", "mixing.jitter")] {
        let mut body = json(&good);
        body[object]["surge"] = serde_json::json!(1);
        body[object]["jitter"] = serde_json::json!(1);
        let e = verify(body).unwrap_err();
        assert!(
            matches!(&e, DirectoryError::Field { field: f, .. } if f.starts_with(object)),
            "{field}: {e}"
        );
    }
    // A version this build does not speak is refused whole.
    let mut v2 = json(&good);
    v2["version"] = serde_json::json!(DOCUMENT_VERSION + 1);
    let e = verify(v2).unwrap_err();
    assert!(e.to_string().contains("version"), "{e}");
    // A field a reader needs, missing or of the wrong type, is named.
    let mut missing = json(&good);
    missing["mixing"]
        .as_object_mut()
        .unwrap()
        .remove("max_delay_ms");
    let e = verify(missing).unwrap_err();
    assert!(e.to_string().contains("mixing"), "{e}");
    let mut wrong = json(&good);
    wrong["layers"] = serde_json::json!("three");
    let e = verify(wrong).unwrap_err();
    assert!(
        matches!(&e, DirectoryError::Field { field, .. } if field == "layers"),
        "{e}"
    );
}

#[test]
fn mixing_settings_a_node_would_follow_into_a_black_hole_are_refused_by_name() {
    let (auth, t, good) = signed_document(&[]);
    let pool = |edit: fn(&mut Mixing)| {
        let mut doc = good.clone();
        doc.mixing.mode = MixingKind::Pool;
        doc.mixing.pool_interval_ms = 100;
        doc.mixing.pool_fraction = 0.5;
        edit(&mut doc.mixing);
        NetworkDocument::verify(&doc.sign(&auth), &t, 1_010)
    };
    assert!(pool(|_| {}).is_ok());
    for (edit, name) in [
        (
            (|m| m.pool_min = 1_000_000) as fn(&mut Mixing),
            "mixing.pool_min",
        ),
        (|m| m.pool_interval_ms = 0, "mixing.pool_interval_ms"),
        (
            |m| m.pool_interval_ms = 86_400_000,
            "mixing.pool_interval_ms",
        ),
        (|m| m.pool_fraction = 0.0, "mixing.pool_fraction"),
        (|m| m.max_delay_ms = 0, "mixing.max_delay_ms"),
        (|m| m.mean_delay_ms = 20_000, "mixing.mean_delay_ms"),
    ] {
        let e = pool(edit).unwrap_err();
        assert!(
            matches!(&e, DirectoryError::Field { field, .. } if field == name),
            "{name}: {e}"
        );
    }
    // A body of another version is refused for its version, even when
    // its fields would not parse as this version's.
    let mut v2 = serde_json::to_value(&good).unwrap();
    v2["version"] = serde_json::json!(DOCUMENT_VERSION + 1);
    v2["layers"] = serde_json::json!({"count": 3});
    let bytes = signed::sign_document_body(serde_json::to_vec(&v2).unwrap(), &auth);
    let e = NetworkDocument::verify(&bytes, &t, 1_010).unwrap_err();
    assert!(e.to_string().contains("version"), "{e}");
}
