//! The attacks a lying service node can mount on a client's storage
//! requests, each written as code and shown to fail against the checks.

#![allow(clippy::unwrap_used, clippy::panic)]

use mtos_crypto::Identity;
use mtos_crypto::slot::{SlotRecord, slot_locator};
use rand::SeedableRng;

use super::*;
use crate::placement::StorageNode;
use crate::replica_proto::put_rest;

/// The stamp of every put here (opaque to the receipts: the replica
/// checks it, the receipt covers its bytes).
const STAMP: mtos_crypto::stamp::Stamp = mtos_crypto::stamp::Stamp {
    effort: 1,
    epoch: 9,
    nonce: [1; 8],
    solution: [2; 16],
};
use crate::service::Status;

/// Five storage nodes with their identities, K = 3, epoch 9.
struct Net {
    ids: Vec<Identity>,
    nodes: Vec<StorageNode>,
}

impl Net {
    fn new() -> Self {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let ids: Vec<Identity> = (0..5).map(|_| Identity::throwaway(&mut rng, 0)).collect();
        let nodes = ids
            .iter()
            .map(|i| StorageNode {
                key: *i.verify_key().as_bytes(),
                salt: [7; 32],
            })
            .collect();
        Self { ids, nodes }
    }

    fn view(&self) -> View<'_> {
        View {
            storage: &self.nodes,
            k: 3,
            epoch: 9,
        }
    }

    /// [`check_put`] of a slot record, in this network's view.
    fn check_slot_put(
        &self,
        status: Status,
        body: &[u8],
        id: &[u8; 16],
        locator: &Locator,
        record: &[u8],
    ) -> Result<PutProof, Lie> {
        check_put(
            status,
            body,
            id,
            PutOf {
                kind: Kind::Slot,
                locator,
                record,
                stamp: &STAMP,
            },
            self.view(),
        )
    }

    fn id(&self, node: &[u8; 32]) -> &Identity {
        let i = self.nodes.iter().position(|n| n.key == *node).unwrap();
        &self.ids[i]
    }

    /// `node`'s signed answer to `op` with `rest` for the request `id`
    /// (under its own nonce), signed by `by` (its own identity unless
    /// forging).
    #[allow(clippy::too_many_arguments)]
    fn answer(
        &self,
        node: &[u8; 32],
        by: &Identity,
        id: &[u8; 16],
        op: ReplicaOp,
        rest: &[u8],
        status: ReplicaStatus,
        detail: &[u8],
    ) -> Signed {
        let nonce = replica_nonce(id, node);
        let a = Answering {
            nonce: &nonce,
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
        let rest = put_rest(kind, locator, &STAMP, record);
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
    let proof = net
        .check_slot_put(Status::Ok, &body, &[1; 16], &l, &record)
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
    let replayed = net.check_slot_put(Status::Ok, &kept, &[2; 16], &l, &second);
    assert_eq!(replayed, Err(Lie::BadSignature));
    // Even the same record again, under a new nonce: a new request needs
    // new receipts.
    let again = net.check_slot_put(Status::Ok, &kept, &[2; 16], &l, &first);
    assert_eq!(again, Err(Lie::BadSignature));
}

#[test]
fn receipts_the_service_node_signs_itself_or_alters_are_lies() {
    let net = Net::new();
    let (l, record) = slot(1, b"entry");
    let rest = put_rest(Kind::Slot, &l, &STAMP, &record);
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
    let r = net.check_slot_put(Status::Ok, &encode_list(&forged), &[3; 16], &l, &record);
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
    let r = net.check_slot_put(
        Status::Refused,
        &encode_list(&[refusal]),
        &[3; 16],
        &l,
        &record,
    );
    assert_eq!(r, Err(Lie::BadSignature));
    // A refusal no replica signed: the status is unsupported.
    let r = net.check_slot_put(Status::Refused, &encode_list(&[]), &[3; 16], &l, &record);
    assert_eq!(r, Err(Lie::Unsupported));
    // "Stored" with no receipt at all.
    let r = net.check_slot_put(Status::Ok, &encode_list(&[]), &[3; 16], &l, &record);
    assert_eq!(r, Err(Lie::Unsupported));
    // One receipt three times.
    let one = decode_list(&net.receipts(&[3; 16], Kind::Slot, &l, &record)).unwrap();
    let r = net.check_slot_put(
        Status::Ok,
        &encode_list(&[one[0].clone(), one[0].clone(), one[0].clone()]),
        &[3; 16],
        &l,
        &record,
    );
    assert_eq!(r, Err(Lie::Duplicate));
    // Garbage.
    let r = net.check_slot_put(Status::Ok, &[7, 1, 2], &[3; 16], &l, &record);
    assert_eq!(r, Err(Lie::Malformed));
}

#[test]
fn receipts_from_nodes_that_are_not_replicas_do_not_count() {
    let net = Net::new();
    let (l, record) = slot(2, b"entry");
    let rest = put_rest(Kind::Slot, &l, &STAMP, &record);
    let reps = replicas(&l, &net.nodes, 3);
    // Genuine signatures, but from the two storage nodes that are not
    // this slot's replicas (a colluding pair, say): no proof of storage.
    let others: Vec<Signed> = net
        .nodes
        .iter()
        .map(|n| &n.key)
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
    let proof = net
        .check_slot_put(Status::Ok, &encode_list(&others), &[5; 16], &l, &record)
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

/// Every replica's honest, signed answer to a probe of `locators` with
/// request id `id`, `written` held, each with its scope as a service node
/// sets it.
fn probe_answers(net: &Net, id: &[u8; 16], locators: &[Locator], written: usize) -> Vec<Signed> {
    probe_plan(locators, &net.nodes, 3)
        .into_iter()
        .map(|(n, asked)| {
            let rest: Vec<u8> = asked
                .iter()
                .flat_map(|&i| *locators[i].as_bytes())
                .collect();
            let held: Vec<usize> = (0..asked.len()).filter(|&j| asked[j] == written).collect();
            let mut a = net.answer(
                &n,
                net.id(&n),
                id,
                ReplicaOp::Probe,
                &rest,
                ReplicaStatus::Ok,
                &bitmap(asked.len(), &held),
            );
            a.scope = bitmap(locators.len(), &asked);
            a
        })
        .collect()
}

#[test]
fn a_probe_answer_withheld_or_altered_never_makes_a_written_slot_look_empty() {
    let net = Net::new();
    let locators: Vec<Locator> = (0..20u8).map(|i| Locator::of(&[i])).collect();
    let written = 4usize;
    let view = net.view();
    let honest = probe_answers(&net, &[6; 16], &locators, written);
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

    // Or narrows a replica's scope to leave the written slot out.
    let narrowed: Vec<Signed> = honest
        .iter()
        .cloned()
        .map(|mut a| {
            if reps.contains(&a.node) {
                let mut asked = bits_set(&a.scope, locators.len()).unwrap();
                asked.retain(|&i| i != written);
                a.scope = bitmap(locators.len(), &asked);
            }
            a
        })
        .collect();
    let r = check_probe(&encode_list(&narrowed), &[6; 16], &locators, view);
    assert!(r.is_err(), "{r:?}");

    // Or replays the answers of an earlier probe (another request id).
    let r = check_probe(&encode_list(&honest), &[7; 16], &locators, view);
    assert_eq!(r, Err(Lie::BadSignature));
}

#[test]
fn a_service_node_whose_document_differs_is_not_taken_for_a_liar() {
    // The service node saw one more storage node than the client (it
    // joined, and the client's document is older): its answers name
    // other replicas for some locators, and their scopes differ from what
    // the client would compute. Nothing is a lie; what the client cannot
    // count stays unknown.
    let net = Net::new();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(9);
    let newcomer = Identity::throwaway(&mut rng, 0);
    let mut bigger = Net::new();
    bigger.ids.push(newcomer);
    bigger.nodes = bigger
        .ids
        .iter()
        .map(|i| StorageNode {
            key: *i.verify_key().as_bytes(),
            salt: [7; 32],
        })
        .collect();
    let locators: Vec<Locator> = (0..30u8).map(|i| Locator::of(&[i, 1])).collect();
    let answers = probe_answers(&bigger, &[8; 16], &locators, 0);
    let held = check_probe(&encode_list(&answers), &[8; 16], &locators, net.view()).unwrap();
    assert_eq!(held[0], Held::Held);
    // The moved ones (but the written one, held either way) are unknown.
    let moved = (1..30)
        .filter(|&i| {
            replicas(&locators[i], &bigger.nodes, 3) != replicas(&locators[i], &net.nodes, 3)
        })
        .count();
    assert!(moved > 0, "the newcomer takes some locators");
    assert_eq!(held.iter().filter(|h| **h == Held::Unknown).count(), moved);
    // A put: the newcomer's receipt does not count, but is no lie.
    let (l, record) = (0..)
        .map(|n| slot(n, b"x"))
        .find(|(l, _)| replicas(l, &bigger.nodes, 3) != replicas(l, &net.nodes, 3))
        .unwrap();
    let body = bigger.receipts(&[8; 16], Kind::Slot, &l, &record);
    let proof = net
        .check_slot_put(Status::Ok, &body, &[8; 16], &l, &record)
        .unwrap();
    assert_eq!(proof.stored, 2);
}

#[test]
fn answers_of_a_shape_their_operation_does_not_allow_are_lies() {
    let net = Net::new();
    let (l, record) = slot(5, b"entry");
    let rest = put_rest(Kind::Slot, &l, &STAMP, &record);
    let reps = replicas(&l, &net.nodes, 3);
    // A replica signs a stored put with 4 KB of detail, which would not
    // fit a reply with the others; a service node passes on no such
    // answer, so one in a response is its own doing.
    let fat = net.answer(
        &reps[0],
        net.id(&reps[0]),
        &[4; 16],
        ReplicaOp::Put,
        &rest,
        ReplicaStatus::Ok,
        &[0; 4000],
    );
    assert!(!well_formed(
        ReplicaOp::Put,
        ReplicaStatus::Ok,
        &fat.detail,
        0
    ));
    let r = net.check_slot_put(Status::Ok, &encode_list(&[fat]), &[4; 16], &l, &record);
    assert_eq!(r, Err(Lie::Malformed));
    // A service node's own refusal (not a list) proves and claims
    // nothing: the client checks the record itself.
    let own = net.check_slot_put(Status::Refused, b"bad_slot", &[4; 16], &l, &record);
    assert_eq!(own, Ok(PutProof::default()));
    // Each replica of one request gets its own nonce.
    assert_ne!(
        replica_nonce(&[4; 16], &reps[0]),
        replica_nonce(&[4; 16], &reps[1])
    );
}

#[test]
fn lists_round_trip_and_malformed_ones_are_refused() {
    let net = Net::new();
    let (l, record) = slot(3, b"x");
    let body = net.receipts(&[1; 16], Kind::Slot, &l, &record);
    let list = decode_list(&body).unwrap();
    assert_eq!(encode_list(&list), body);
    assert_eq!(body.len(), 1 + 3 * SIGNED_OVERHEAD);
    // The largest probe answer list fits a reply.
    assert!(decode_list(&body[..body.len() - 1]).is_err());
    let mut longer = body.clone();
    longer.push(0);
    assert!(decode_list(&longer).is_err());
    assert!(decode_list(&[]).is_err());
    assert!(decode_list(&[MAX_SIGNED_ANSWERS as u8 + 1]).is_err());
    let big = Signed {
        node: [0; 32],
        status: ReplicaStatus::Ok,
        epoch: 0,
        scope: vec![0; crate::service::MAX_PROBE.div_ceil(8)],
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
        let request_id: [u8; 16] = hex(&case["request_id"]).try_into().unwrap();
        let nonce = replica_nonce(&request_id, &node);
        assert_eq!(nonce.to_vec(), hex(&case["nonce"]));
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
        let mut s = Signed::from_answer(node, status, &body).unwrap();
        assert!(s.verify(&nonce, op, &rest));
        s.scope = hex(&case["scope"]);
        assert_eq!(
            encode_list(std::slice::from_ref(&s))[1..],
            hex(&case["signed_answer"])[..]
        );
        signed.push(s);
    }
    assert_eq!(encode_list(&signed[..2]), hex(&file["list_of_first_two"]));
}
