//! The attacks a lying service node can mount on a client's storage
//! requests, each written as code and shown to fail against the checks.

#![allow(clippy::unwrap_used, clippy::panic)]

use mtos_crypto::Identity;
use mtos_crypto::slot::{SlotRecord, slot_locator};
use rand::SeedableRng;

use super::*;
use crate::replica_proto::request_rest;
use crate::service::Status;

/// Five storage nodes with their identities, K = 3, epoch 9.
struct Net {
    ids: Vec<Identity>,
    nodes: Vec<[u8; 32]>,
}

impl Net {
    fn new() -> Self {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let ids: Vec<Identity> = (0..5).map(|_| Identity::throwaway(&mut rng, 0)).collect();
        let nodes = ids.iter().map(|i| *i.verify_key().as_bytes()).collect();
        Self { ids, nodes }
    }

    fn view(&self) -> View<'_> {
        View {
            storage: &self.nodes,
            k: 3,
            epoch: 9,
        }
    }

    fn id(&self, node: &[u8; 32]) -> &Identity {
        let i = self.nodes.iter().position(|n| n == node).unwrap();
        &self.ids[i]
    }

    /// `node`'s signed answer to `op` with `rest` under `nonce`, signed
    /// by `by` (its own identity unless forging).
    #[allow(clippy::too_many_arguments)]
    fn answer(
        &self,
        node: &[u8; 32],
        by: &Identity,
        nonce: &[u8; 16],
        op: ReplicaOp,
        rest: &[u8],
        status: ReplicaStatus,
        detail: &[u8],
    ) -> Signed {
        let a = Answering {
            nonce,
            epoch: 9,
            node,
            op,
            request: rest,
        };
        let body = signed_answer(|m| by.sign(m), &a, status, detail.to_vec());
        Signed::from_answer(*node, status, &body).unwrap()
    }

    /// Honest receipts of every replica of `locator` for a put.
    fn receipts(&self, nonce: &[u8; 16], kind: Kind, locator: &Locator, record: &[u8]) -> Vec<u8> {
        let rest = request_rest(kind, locator, record);
        let answers: Vec<Signed> = replicas(locator, &self.nodes, 3)
            .iter()
            .map(|n| {
                self.answer(
                    n,
                    self.id(n),
                    nonce,
                    ReplicaOp::Put,
                    &rest,
                    ReplicaStatus::Ok,
                    b"",
                )
            })
            .collect();
        encode_list(&answers)
    }
}

fn slot(n: u64, body: &[u8]) -> (Locator, Vec<u8>) {
    let record = SlotRecord::sign(&[4; 32], n, body).unwrap();
    (slot_locator(&record.key), record.encode())
}

#[test]
fn honest_receipts_prove_a_put() {
    let net = Net::new();
    let (l, record) = slot(0, b"first entry");
    let body = net.receipts(&[1; 16], Kind::Slot, &l, &record);
    let proof = check_put(
        Status::Ok,
        &body,
        &[1; 16],
        Kind::Slot,
        &l,
        &record,
        net.view(),
    )
    .unwrap();
    assert_eq!(
        proof,
        PutProof {
            stored: 3,
            refused: None
        }
    );
}

#[test]
fn a_receipt_replayed_from_an_earlier_write_to_the_same_slot_is_refused() {
    let net = Net::new();
    // An earlier write to this slot, whose receipts the service node kept.
    let (l, first) = slot(0, b"first entry");
    let kept = net.receipts(&[1; 16], Kind::Slot, &l, &first);
    // A new write to the same slot (another record, a new nonce): the
    // service node stores nothing and hands back the old receipts.
    let (l2, second) = slot(0, b"second entry");
    assert_eq!(l, l2, "the same slot");
    let replayed = check_put(
        Status::Ok,
        &kept,
        &[2; 16],
        Kind::Slot,
        &l,
        &second,
        net.view(),
    );
    assert_eq!(replayed, Err(Lie::BadSignature));
    // Even the same record again, under a new nonce: a new request needs
    // new receipts.
    let again = check_put(
        Status::Ok,
        &kept,
        &[2; 16],
        Kind::Slot,
        &l,
        &first,
        net.view(),
    );
    assert_eq!(again, Err(Lie::BadSignature));
}

#[test]
fn receipts_the_service_node_signs_itself_or_alters_are_lies() {
    let net = Net::new();
    let (l, record) = slot(1, b"entry");
    let rest = request_rest(Kind::Slot, &l, &record);
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(2);
    let service = Identity::throwaway(&mut rng, 0);
    // Acknowledged without storing: receipts in the replicas' names,
    // signed with the service node's key.
    let forged: Vec<Signed> = replicas(&l, &net.nodes, 3)
        .iter()
        .map(|n| {
            net.answer(
                n,
                &service,
                &[3; 16],
                ReplicaOp::Put,
                &rest,
                ReplicaStatus::Ok,
                b"",
            )
        })
        .collect();
    let r = check_put(
        Status::Ok,
        &encode_list(&forged),
        &[3; 16],
        Kind::Slot,
        &l,
        &record,
        net.view(),
    );
    assert_eq!(r, Err(Lie::BadSignature));
    // A real refusal turned into a different reason.
    let reps = replicas(&l, &net.nodes, 3);
    let mut refusal = net.answer(
        &reps[0],
        net.id(&reps[0]),
        &[3; 16],
        ReplicaOp::Put,
        &rest,
        ReplicaStatus::Refused,
        b"full",
    );
    refusal.detail = b"wrong_locator".to_vec();
    let r = check_put(
        Status::Refused,
        &encode_list(&[refusal]),
        &[3; 16],
        Kind::Slot,
        &l,
        &record,
        net.view(),
    );
    assert_eq!(r, Err(Lie::BadSignature));
    // A refusal no replica signed: the status is unsupported.
    let r = check_put(
        Status::Refused,
        &encode_list(&[]),
        &[3; 16],
        Kind::Slot,
        &l,
        &record,
        net.view(),
    );
    assert_eq!(r, Err(Lie::Unsupported));
    // "Stored" with no receipt at all.
    let r = check_put(
        Status::Ok,
        &encode_list(&[]),
        &[3; 16],
        Kind::Slot,
        &l,
        &record,
        net.view(),
    );
    assert_eq!(r, Err(Lie::Unsupported));
    // One receipt three times.
    let one = decode_list(&net.receipts(&[3; 16], Kind::Slot, &l, &record)).unwrap();
    let r = check_put(
        Status::Ok,
        &encode_list(&[one[0].clone(), one[0].clone(), one[0].clone()]),
        &[3; 16],
        Kind::Slot,
        &l,
        &record,
        net.view(),
    );
    assert_eq!(r, Err(Lie::Duplicate));
    // Garbage.
    let r = check_put(
        Status::Ok,
        &[7, 1, 2],
        &[3; 16],
        Kind::Slot,
        &l,
        &record,
        net.view(),
    );
    assert_eq!(r, Err(Lie::Malformed));
}

#[test]
fn receipts_from_nodes_that_are_not_replicas_do_not_count() {
    let net = Net::new();
    let (l, record) = slot(2, b"entry");
    let rest = request_rest(Kind::Slot, &l, &record);
    let reps = replicas(&l, &net.nodes, 3);
    // Genuine signatures, but from the two storage nodes that are not
    // this slot's replicas (a colluding pair, say): no proof of storage.
    let others: Vec<Signed> = net
        .nodes
        .iter()
        .filter(|n| !reps.contains(n))
        .map(|n| {
            net.answer(
                n,
                net.id(n),
                &[5; 16],
                ReplicaOp::Put,
                &rest,
                ReplicaStatus::Ok,
                b"",
            )
        })
        .collect();
    assert_eq!(others.len(), 2);
    let proof = check_put(
        Status::Ok,
        &encode_list(&others),
        &[5; 16],
        Kind::Slot,
        &l,
        &record,
        net.view(),
    )
    .unwrap();
    assert_eq!(proof.stored, 0);
    // Nor one signed for an epoch far from the client's.
    let mut old = Net::new().answer(
        &reps[0],
        net.id(&reps[0]),
        &[5; 16],
        ReplicaOp::Put,
        &rest,
        ReplicaStatus::Ok,
        b"",
    );
    old.epoch = 1;
    assert!(
        !old.verify(&[5; 16], ReplicaOp::Put, &rest),
        "epoch is signed"
    );
}

#[test]
fn a_probe_answer_withheld_or_altered_never_makes_a_written_slot_look_empty() {
    let net = Net::new();
    let locators: Vec<Locator> = (0..20u8).map(|i| Locator::of(&[i])).collect();
    let written = 4usize;
    let view = net.view();
    // Each replica's honest, signed bitmap.
    let honest: Vec<Signed> = net
        .nodes
        .iter()
        .filter_map(|n| {
            let mine = asked_of(n, &locators, &net.nodes, 3);
            if mine.is_empty() {
                return None;
            }
            let rest: Vec<u8> = mine.iter().flat_map(|l| *l.as_bytes()).collect();
            let mut bits = vec![0u8; mine.len().div_ceil(8)];
            for (j, l) in mine.iter().enumerate() {
                if *l == locators[written] {
                    bits[j / 8] |= 0x80 >> (j % 8);
                }
            }
            Some(net.answer(
                n,
                net.id(n),
                &[6; 16],
                ReplicaOp::Probe,
                &rest,
                ReplicaStatus::Ok,
                &bits,
            ))
        })
        .collect();
    let held = check_probe(&encode_list(&honest), &[6; 16], &locators, view).unwrap();
    assert_eq!(held[written], Held::Held);
    assert_eq!(held.iter().filter(|h| **h == Held::Empty).count(), 19);

    // The service node withholds every answer that says "held".
    let reps = replicas(&locators[written], &net.nodes, 3);
    let withheld: Vec<Signed> = honest
        .iter()
        .filter(|a| !reps.contains(&a.node))
        .cloned()
        .collect();
    let held = check_probe(&encode_list(&withheld), &[6; 16], &locators, view).unwrap();
    assert_eq!(held[written], Held::Unknown, "not proven empty");

    // Or clears the bits in them.
    let cleared: Vec<Signed> = honest
        .iter()
        .cloned()
        .map(|mut a| {
            a.detail.iter_mut().for_each(|b| *b = 0);
            a
        })
        .collect();
    let r = check_probe(&encode_list(&cleared), &[6; 16], &locators, view);
    assert_eq!(r, Err(Lie::BadSignature));

    // Or replays the answers of an earlier probe (another nonce).
    let r = check_probe(&encode_list(&honest), &[7; 16], &locators, view);
    assert_eq!(r, Err(Lie::BadSignature));
}

#[test]
fn lists_round_trip_and_malformed_ones_are_refused() {
    let net = Net::new();
    let (l, record) = slot(3, b"x");
    let body = net.receipts(&[1; 16], Kind::Slot, &l, &record);
    let list = decode_list(&body).unwrap();
    assert_eq!(encode_list(&list), body);
    assert_eq!(body.len(), 1 + 3 * SIGNED_OVERHEAD);
    assert!(decode_list(&body[..body.len() - 1]).is_err());
    let mut longer = body.clone();
    longer.push(0);
    assert!(decode_list(&longer).is_err());
    assert!(decode_list(&[]).is_err());
    assert!(decode_list(&[MAX_SIGNED_ANSWERS as u8 + 1]).is_err());
    // The bound fits a reply: the largest probe answer list.
    let big = Signed {
        node: [0; 32],
        status: ReplicaStatus::Ok,
        epoch: 0,
        detail: vec![0; crate::service::MAX_PROBE.div_ceil(8)],
        signature: [0; 64],
    };
    let all = encode_list(&vec![big; MAX_SIGNED_ANSWERS]);
    assert!(
        all.len() <= crate::service::MAX_RESPONSE_BODY,
        "{}",
        all.len()
    );
}

/// `specs/vectors/receipts.json`, derived by
/// `specs/vectors/check_receipts.py` from the spec: the statement, the
/// signature, the answer body and the signed-answer list come out the
/// same here.
#[test]
fn receipt_vectors_match_the_spec() {
    use serde_json::Value;
    let hex = |v: &Value| {
        data_encoding::HEXLOWER
            .decode(v.as_str().unwrap().as_bytes())
            .unwrap()
    };
    let file: Value =
        serde_json::from_str(include_str!("../../../specs/vectors/receipts.json")).unwrap();
    assert_eq!(file["domain"].as_str().unwrap().as_bytes(), DOMAIN);
    let mut signed = Vec::new();
    for case in file["cases"].as_array().unwrap() {
        let seed: [u8; 32] = hex(&case["node_seed"]).try_into().unwrap();
        let id = Identity::from_secrets(
            mtos_crypto::Label::new("node").unwrap(),
            mtos_crypto::Visibility::Private,
            0,
            &seed,
            &[1; 32],
        );
        let node = *id.verify_key().as_bytes();
        assert_eq!(node.to_vec(), hex(&case["node"]));
        let nonce: [u8; 16] = hex(&case["nonce"]).try_into().unwrap();
        let op = match case["op"].as_str().unwrap() {
            "put" => ReplicaOp::Put,
            "probe" => ReplicaOp::Probe,
            other => panic!("{other}"),
        };
        let status = match case["status"].as_str().unwrap() {
            "ok" => ReplicaStatus::Ok,
            "refused" => ReplicaStatus::Refused,
            other => panic!("{other}"),
        };
        let rest = hex(&case["request_rest"]);
        let detail = hex(&case["detail"]);
        let epoch = case["epoch"].as_u64().unwrap() as u32;
        let a = Answering {
            nonce: &nonce,
            epoch,
            node: &node,
            op,
            request: &rest,
        };
        assert_eq!(
            crate::replica_proto::with_nonce(&nonce, &rest),
            hex(&case["request_body"])
        );
        assert_eq!(statement(&a, status, &detail), hex(&case["statement"]));
        let body = signed_answer(|m| id.sign(m), &a, status, detail.clone());
        assert_eq!(body, hex(&case["answer_body"]), "{}", case["name"]);
        let s = Signed::from_answer(node, status, &body).unwrap();
        assert!(s.verify(&nonce, op, &rest));
        assert_eq!(
            encode_list(std::slice::from_ref(&s))[1..],
            hex(&case["signed_answer"])[..]
        );
        signed.push(s);
    }
    assert_eq!(encode_list(&signed[..2]), hex(&file["list_of_first_two"]));
}
