//! The replica side of `/mtos/store/3` (`specs/storage.md` §4): a service
//! node asks a storage node to put, get or probe records; one request and
//! one response per stream, in the directory protocol's framing (kind,
//! 4-byte length, body). Every answer is signed with the node's identity
//! key over the request's nonce and bytes (`mtos_mixnode::receipts`), so
//! the client behind the service node can check it. Only nodes the
//! document lists as service or storage nodes are served: a client never
//! reaches a replica directly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::{AsyncWriteExt, StreamExt};
use libp2p::StreamProtocol;
use mtos_crypto::Identity;
use mtos_crypto::item::Locator;

use super::metrics::Metrics;
use super::record_db::{Put, PutError, RecordDb};
use mtos_mixnode::admission::{Position, TokenBucket};
use mtos_mixnode::receipts::{Answering, TRAILER_LEN, signed_answer, split_answer};
use mtos_mixnode::records::{Kind, StampRule, validate};
pub use mtos_mixnode::replica_proto::{
    MAX_STORE_ANSWER, MAX_STORE_REQUEST, ReplicaOp, ReplicaStatus, kind_and_locator, put_parts,
    put_rest, request_body, request_rest, split_nonce, with_nonce,
};
use mtos_mixnode::service::MAX_PROBE;
use mtos_net as net;
use mtos_net::{NodeEntryExt, Topology};

/// The replica protocol.
pub const STORE_PROTOCOL: StreamProtocol = StreamProtocol::new("/mtos/store/3");

/// Signs this node's replica answers: its identity key, under the epoch
/// of the document it holds.
#[derive(Clone)]
pub struct Signer {
    /// The node's identity.
    pub identity: Arc<Identity>,
    /// The document, for its epoch.
    pub topology: tokio::sync::watch::Receiver<Option<Arc<Topology>>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("key", &self.identity.verify_key())
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// `detail ‖ epoch ‖ signature` for the answer `status, detail` to
    /// `op` with `nonce` and `rest` (the body after the nonce).
    pub fn sign(
        &self,
        nonce: &[u8; 16],
        op: ReplicaOp,
        rest: &[u8],
        status: ReplicaStatus,
        detail: Vec<u8>,
    ) -> Vec<u8> {
        let epoch = self
            .topology
            .borrow()
            .as_ref()
            .map_or(0, |t| t.document.epoch);
        let node = *self.identity.verify_key().as_bytes();
        let answering = Answering {
            nonce,
            epoch,
            node: &node,
            op,
            request: rest,
        };
        signed_answer(|m| self.identity.sign(m), &answering, status, detail)
    }
}
/// Puts one service node may make on this replica: `rate` per second,
/// `burst` at once (node config `[storage]`).
#[derive(Debug, Clone, Copy)]
pub struct PutQuota {
    /// Puts per second.
    pub rate: f64,
    /// Puts at once above the rate.
    pub burst: f64,
}

/// What a replica answers and the labels to count it under (`op`,
/// `result`).
pub type Answer = (ReplicaStatus, Vec<u8>, &'static str, &'static str);

/// What the replica's document says of stamps (its epoch and floor),
/// and whether the asking peer is listed as storing (may send copies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StampFloor {
    /// The document's epoch.
    pub epoch: u32,
    /// The document's stamp floor.
    pub floor: u32,
    /// The peer is listed as storing: its repair copies are taken.
    pub copies: bool,
}

/// Serves one request (its wire code and its body after the nonce)
/// against `db` at `now`. A put's stamp must be for `stamps.epoch` or
/// one either side, a repair copy's for any epoch up to one past it
/// (repair moves records with the stamps they came with; copies are
/// taken only from storing peers), and either must reach the effort the
/// store asks now (`storage.md` §2); a record held already is a
/// duplicate whatever its stamp.
pub fn handle(db: &mut RecordDb, request: u8, body: &[u8], now: u64, stamps: StampFloor) -> Answer {
    use ReplicaStatus::{Error, NotFound, Ok as Done, Refused};
    match ReplicaOp::from_u8(request) {
        Some(op @ (ReplicaOp::Put | ReplicaOp::Copy)) => {
            let name = op.name();
            if op == ReplicaOp::Copy && !stamps.copies {
                return (
                    Error,
                    b"copies only from storing nodes".to_vec(),
                    name,
                    "not_allowed",
                );
            }
            let Some((kind, locator, stamp, record)) = put_parts(body) else {
                return (Error, b"malformed put".to_vec(), name, "bad_request");
            };
            let held = matches!(db.get(kind, &locator), Ok(Some(h)) if h == record);
            if !held {
                let need = match db.stamp_need(stamps.floor, now) {
                    Ok(need) => need,
                    Err(_) => return (Error, b"store failed".to_vec(), name, "error"),
                };
                let rule = StampRule {
                    epoch: stamps.epoch,
                    need,
                    any_past: op == ReplicaOp::Copy,
                };
                if let Err(r) = validate(kind, &locator, record)
                    .and_then(|()| rule.check(kind, &locator, record, &stamp))
                {
                    // A refusal for effort names the effort needed, signed,
                    // so a client pays it at once and no more.
                    let detail = match &r {
                        mtos_mixnode::records::Refused::LowEffort { need, .. } => {
                            format!("low_effort {need}").into_bytes()
                        }
                        other => other.name().as_bytes().to_vec(),
                    };
                    return (Refused, detail, name, r.name());
                }
            }
            match db.put(kind, &locator, record, &stamp, now) {
                Ok(Put::Stored { .. }) => (Done, Vec::new(), name, "stored"),
                Ok(Put::Duplicate) => (Done, Vec::new(), name, "duplicate"),
                Err(PutError::Refused(r)) => {
                    (Refused, r.name().as_bytes().to_vec(), name, r.name())
                }
                Err(PutError::Database(_)) => (Error, b"store failed".to_vec(), name, "error"),
            }
        }
        Some(ReplicaOp::Get) => match kind_and_locator(body) {
            Some((kind, locator, [])) => match db.get(kind, &locator) {
                Ok(Some(record)) => (Done, record, "get", "found"),
                Ok(None) => (NotFound, Vec::new(), "get", "not_found"),
                Err(_) => (Error, b"store failed".to_vec(), "get", "error"),
            },
            _ => (Error, b"malformed get".to_vec(), "get", "bad_request"),
        },
        Some(ReplicaOp::Probe) => held(db, Some(Kind::Slot), body, "probe"),
        Some(ReplicaOp::Have) => {
            let (kind, locators) = match body.split_first() {
                Some((&k, rest)) => (Kind::from_byte(k), rest),
                None => (None, body),
            };
            held(db, kind, locators, "have")
        }
        None => (Error, b"unknown request".to_vec(), "other", "bad_request"),
    }
}

/// Which of `locators` (32 bytes each, 1 to [`MAX_PROBE`]) hold a `kind`
/// record, as a bitmap (first locator in the high bit of the first byte).
fn held(db: &RecordDb, kind: Option<Kind>, locators: &[u8], op: &'static str) -> Answer {
    let count = locators.len() / 32;
    let (Some(kind), true) = (
        kind,
        (1..=MAX_PROBE).contains(&count) && locators.len().is_multiple_of(32),
    ) else {
        return (
            ReplicaStatus::Error,
            b"malformed probe".to_vec(),
            op,
            "bad_request",
        );
    };
    let mut bitmap = vec![0u8; count.div_ceil(8)];
    for (i, l) in locators.chunks_exact(32).enumerate() {
        let Ok(l) = <[u8; 32]>::try_from(l) else {
            continue;
        };
        match db.get(kind, &Locator::from_bytes(l)) {
            Ok(Some(_)) => bitmap[i / 8] |= 0x80 >> (i % 8),
            Ok(None) => {}
            Err(_) => return (ReplicaStatus::Error, b"store failed".to_vec(), op, "error"),
        }
    }
    (ReplicaStatus::Ok, bitmap, op, "found")
}

/// [`handle`] on a blocking thread, counted in the metrics (requests by
/// operation and result, evictions, records and bytes held), and signed
/// by `signer`: the one way a request reaches a store, whether from a
/// peer or from the node's own service side. A body without a nonce, or
/// an unknown operation, is answered with an error under an empty
/// trailer. `None` if the store's lock is poisoned.
pub(super) async fn serve_counted(
    db: Arc<Mutex<RecordDb>>,
    metrics: Metrics,
    signer: Signer,
    kind: u8,
    body: Vec<u8>,
    copies: bool,
) -> Option<(ReplicaStatus, Vec<u8>)> {
    tokio::task::spawn_blocking(move || {
        let Some((nonce, rest)) = split_nonce(&body) else {
            metrics
                .record_requests
                .with_label_values(&["other", "bad_request"])
                .inc();
            return Some(unsigned_error(b"no nonce"));
        };
        let mut db = db.lock().ok()?;
        let before = db.records();
        let stamps = signer.topology.borrow().as_ref().map_or(
            StampFloor {
                epoch: 0,
                floor: mtos_mixnode::directory::DEFAULT_STAMP_FLOOR,
                copies,
            },
            |t| StampFloor {
                epoch: t.document.epoch,
                floor: t.document.storage.stamp_floor,
                copies,
            },
        );
        let (status, reply, op, result) = handle(&mut db, kind, rest, mtos_net::unix_now(), stamps);
        metrics
            .record_requests
            .with_label_values(&[op, result])
            .inc();
        if result == "stored" {
            // One record in, the rest of the difference evicted.
            metrics
                .records_evicted
                .inc_by((before + 1).saturating_sub(db.records()));
        }
        metrics.records_held.set(db.records() as i64);
        metrics.record_bytes.set(db.bytes() as i64);
        drop(db);
        Some(match ReplicaOp::from_u8(kind) {
            Some(op) => (status, signer.sign(&nonce, op, rest, status, reply)),
            None => unsigned_error(&reply),
        })
    })
    .await
    .ok()
    .flatten()
}

/// An error answer no one can check (the request named no operation or
/// nonce to sign for): the detail and an all-zero trailer.
fn unsigned_error(detail: &[u8]) -> (ReplicaStatus, Vec<u8>) {
    let mut body = detail.to_vec();
    body.extend_from_slice(&[0; TRAILER_LEN]);
    (ReplicaStatus::Error, body)
}

/// One request to the replica `peer`: its status (one this node does not
/// know counts as an error) and body, or `None` when it cannot be reached
/// or does not answer within `timeout`.
pub(super) async fn ask(
    control: &mut libp2p_stream::Control,
    peer: libp2p::PeerId,
    op: ReplicaOp,
    body: &[u8],
    timeout: std::time::Duration,
) -> Option<(ReplicaStatus, Vec<u8>)> {
    let exchange = async {
        let mut stream = control.open_stream(peer, STORE_PROTOCOL).await.ok()?;
        net::write_message(&mut stream, op.code(), body)
            .await
            .ok()?;
        let (status, answer) = net::read_message(&mut stream, MAX_STORE_ANSWER)
            .await
            .ok()?;
        let _ = stream.close().await;
        let status = ReplicaStatus::from_u8(status).unwrap_or(ReplicaStatus::Error);
        Some((status, answer))
    };
    tokio::time::timeout(timeout, exchange).await.ok().flatten()
}

/// [`ask`] for a storage node's own work (repair), which no client
/// checks: `rest` under a fresh random nonce, and the answer's detail
/// without its trailer (an answer too short for one counts as an error).
pub(super) async fn ask_detail(
    control: &mut libp2p_stream::Control,
    peer: libp2p::PeerId,
    op: ReplicaOp,
    rest: &[u8],
    timeout: std::time::Duration,
) -> Option<(ReplicaStatus, Vec<u8>)> {
    let nonce: [u8; 16] = rand::random();
    let (status, body) = ask(control, peer, op, &with_nonce(&nonce, rest), timeout).await?;
    Some(match split_answer(&body) {
        Some((detail, _, _)) => (status, detail.to_vec()),
        None => (ReplicaStatus::Error, Vec::new()),
    })
}

/// Serves `/mtos/store/3` on a storage node until the swarm ends. With
/// `tamper` (the test-only `[faults] tamper_records`) every get is
/// answered with the record's first byte flipped, as a bad or broken
/// replica would; tests use it to check that readers skip such a replica.
pub(super) async fn serve(
    mut incoming: libp2p_stream::IncomingStreams,
    db: Arc<Mutex<RecordDb>>,
    signer: Signer,
    metrics: Metrics,
    quota: PutQuota,
    tamper: bool,
) {
    let topology = signer.topology.clone();
    // Requests in flight at once; beyond it streams are dropped (reset).
    let permits = Arc::new(tokio::sync::Semaphore::new(64));
    // Puts per service node: one peer cannot flush the store alone.
    let buckets: Arc<Mutex<HashMap<libp2p::PeerId, TokenBucket>>> = Arc::default();
    let origin = tokio::time::Instant::now();
    while let Some((peer, mut stream)) = incoming.next().await {
        let (service, storing) = topology.borrow().as_ref().map_or((false, false), |t| {
            (
                t.position_of(&peer) == Position::Service,
                t.document
                    .nodes
                    .iter()
                    .any(|n| n.storage && n.peer().is_ok_and(|p| p == peer)),
            )
        });
        let allowed = service || storing;
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            continue;
        };
        if !allowed {
            metrics
                .record_requests
                .with_label_values(&["other", "not_allowed"])
                .inc();
            continue;
        }
        let (db, metrics, buckets, signer) =
            (db.clone(), metrics.clone(), buckets.clone(), signer.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let exchange = async {
                let (kind, body) = net::read_message(&mut stream, MAX_STORE_REQUEST).await?;
                if kind == ReplicaOp::Put.code() || kind == ReplicaOp::Copy.code() {
                    let at = mtos_mixnode::time::Instant::ZERO + origin.elapsed();
                    let admitted = buckets.lock().is_ok_and(|mut b| {
                        b.entry(peer)
                            .or_insert_with(|| TokenBucket::new(at, quota.rate, quota.burst))
                            .try_take(at)
                    });
                    if !admitted {
                        metrics
                            .record_requests
                            .with_label_values(&["put", "quota"])
                            .inc();
                        let refusal = match split_nonce(&body) {
                            Some((nonce, rest)) => signer.sign(
                                &nonce,
                                ReplicaOp::Put,
                                rest,
                                ReplicaStatus::Refused,
                                b"quota".to_vec(),
                            ),
                            None => unsigned_error(b"no nonce").1,
                        };
                        net::write_message(&mut stream, ReplicaStatus::Refused.code(), &refusal)
                            .await?;
                        return stream.close().await;
                    }
                }
                let (status, mut reply) = serve_counted(db, metrics, signer, kind, body, storing)
                    .await
                    .ok_or_else(|| std::io::Error::other("the record store is unusable"))?;
                if tamper
                    && (ReplicaOp::from_u8(kind), status)
                        == (Some(ReplicaOp::Get), ReplicaStatus::Ok)
                    && let Some(b) = reply.first_mut()
                {
                    *b ^= 1;
                }
                net::write_message(&mut stream, status.code(), &reply).await?;
                stream.close().await
            };
            let _ = tokio::time::timeout(std::time::Duration::from_secs(30), exchange).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use mtos_crypto::slot::{SlotRecord, slot_locator};

    use super::*;
    use mtos_mixnode::records::{Retention, make_stamp};

    use super::request_rest as request;

    /// The document: epoch 5, floor 1; the peer stores.
    const DOC: StampFloor = StampFloor {
        epoch: 5,
        floor: 1,
        copies: true,
    };

    fn serve(db: &mut RecordDb, op: u8, body: &[u8], now: u64) -> Answer {
        handle(db, op, body, now, DOC)
    }

    /// A put's body after the nonce, with a stamp of `effort` for `epoch`.
    fn put(kind: Kind, at: &Locator, record: &[u8], epoch: u32, effort: u32) -> Vec<u8> {
        put_rest(
            kind,
            at,
            &make_stamp(kind, at, record, epoch, effort, 0),
            record,
        )
    }

    fn open(dir: &std::path::Path, max_bytes: u64) -> RecordDb {
        RecordDb::open(
            &dir.join("r"),
            Retention {
                min_age_secs: 10,
                max_bytes,
            },
        )
        .unwrap()
    }

    #[test]
    fn puts_gets_and_probes_are_served_and_bad_requests_answered() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = open(dir.path(), 1 << 20);
        let chunk = vec![4u8; 100];
        let at = Locator::of(&chunk);
        let put_chunk = put(Kind::Chunk, &at, &chunk, 5, 1);
        assert_eq!(
            serve(&mut db, ReplicaOp::Put.code(), &put_chunk, 0).3,
            "stored"
        );
        assert_eq!(
            serve(&mut db, ReplicaOp::Put.code(), &put_chunk, 1).3,
            "duplicate"
        );
        let (status, body, _, _) = serve(
            &mut db,
            ReplicaOp::Get.code(),
            &request(Kind::Chunk, &at, &[]),
            2,
        );
        assert_eq!((status, body), (ReplicaStatus::Ok, chunk.clone()));
        let missing = Locator::from_bytes([9; 32]);
        assert_eq!(
            serve(
                &mut db,
                ReplicaOp::Get.code(),
                &request(Kind::Chunk, &missing, &[]),
                2
            )
            .0,
            ReplicaStatus::NotFound
        );
        // A tampered chunk is refused with its reason; the record stays.
        let mut bad = chunk.clone();
        bad[0] = 5;
        let (status, reason, _, result) = serve(
            &mut db,
            ReplicaOp::Put.code(),
            &put(Kind::Chunk, &at, &bad, 5, 1),
            3,
        );
        assert_eq!(
            (status, reason.as_slice(), result),
            (
                ReplicaStatus::Refused,
                &b"wrong_locator"[..],
                "wrong_locator"
            )
        );
        assert_eq!(db.get(Kind::Chunk, &at).unwrap(), Some(chunk));

        // Probes: which slot locators hold a record.
        let slot = SlotRecord::sign(&[1; 32], 0, b"entry").unwrap();
        let sl = slot_locator(&slot.key);
        serve(
            &mut db,
            ReplicaOp::Put.code(),
            &put(Kind::Slot, &sl, &slot.encode(), 5, 1),
            4,
        );
        let mut probe = Vec::new();
        for l in [missing, sl, missing] {
            probe.extend_from_slice(l.as_bytes());
        }
        let (status, bitmap, _, _) = serve(&mut db, ReplicaOp::Probe.code(), &probe, 5);
        assert_eq!((status, bitmap), (ReplicaStatus::Ok, vec![0b0100_0000]));

        // Have: the same question for any kind, as repair asks it.
        let mut have = vec![Kind::Chunk.byte()];
        for l in [missing, at, sl] {
            have.extend_from_slice(l.as_bytes());
        }
        let (status, bitmap, _, _) = serve(&mut db, ReplicaOp::Have.code(), &have, 5);
        assert_eq!((status, bitmap), (ReplicaStatus::Ok, vec![0b0100_0000]));

        for (kind, body) in [
            (ReplicaOp::Have.code(), vec![9u8; 33]),
            (ReplicaOp::Have.code(), vec![1u8]),
            (ReplicaOp::Have.code(), vec![1u8; 1 + 32 * (MAX_PROBE + 1)]),
            (ReplicaOp::Put.code(), vec![7u8; 10]),
            (ReplicaOp::Put.code(), request(Kind::Chunk, &at, &[1; 20])),
            (ReplicaOp::Get.code(), vec![1u8; 40]),
            (ReplicaOp::Probe.code(), vec![0u8; 33]),
            (ReplicaOp::Probe.code(), vec![]),
            (99, vec![]),
        ] {
            assert_eq!(
                serve(&mut db, kind, &body, 6).0,
                ReplicaStatus::Error,
                "{kind}"
            );
        }
    }

    #[test]
    fn a_replica_takes_only_stamps_that_hold_and_asks_more_as_it_fills() {
        // Room for ten 1,000-byte chunks; the document's floor is 1.
        let dir = tempfile::tempdir().unwrap();
        let mut db = open(dir.path(), 10_000);
        let chunks: Vec<(Locator, Vec<u8>)> = (0..12u8)
            .map(|i| {
                let c = vec![i; 1_000];
                (Locator::of(&c), c)
            })
            .collect();
        let reason = |a: Answer| (a.0, a.3);
        let refused = |r: &'static str| (ReplicaStatus::Refused, r);
        let (at, c) = &chunks[0];
        // A forged solution, another record's stamp, a stamp from the
        // future epoch 7: refused, nothing stored.
        let mut forged = make_stamp(Kind::Chunk, at, c, 5, 1, 0);
        forged.solution[2] ^= 8;
        let (other_at, other) = &chunks[1];
        let moved = make_stamp(Kind::Chunk, other_at, other, 5, 1, 0);
        for (stamp, why) in [
            (forged, "bad_stamp"),
            (moved, "bad_stamp"),
            (make_stamp(Kind::Chunk, at, c, 7, 1, 0), "stale_stamp"),
        ] {
            let body = put_rest(Kind::Chunk, at, &stamp, c);
            assert_eq!(
                reason(serve(&mut db, ReplicaOp::Put.code(), &body, 0)),
                refused(why)
            );
        }
        assert_eq!(db.records(), 0);
        // A stamp of epoch 1 at epoch 5: stale for a put (stamps cannot
        // be banked), taken in a repair copy (records move with the
        // stamps they came with), but only from a node that stores.
        let old = put(Kind::Chunk, at, c, 1, 1);
        assert_eq!(
            reason(serve(&mut db, ReplicaOp::Put.code(), &old, 0)),
            refused("stale_stamp")
        );
        let not_storing = StampFloor {
            copies: false,
            ..DOC
        };
        assert_eq!(
            handle(&mut db, ReplicaOp::Copy.code(), &old, 0, not_storing).0,
            ReplicaStatus::Error
        );
        assert_eq!(db.records(), 0);
        assert_eq!(serve(&mut db, ReplicaOp::Copy.code(), &old, 0).3, "stored");
        // Four more at the floor: half the store is young, and the next
        // put must carry twice the floor.
        for (at, c) in &chunks[1..5] {
            let body = put(Kind::Chunk, at, c, 5, 1);
            assert_eq!(serve(&mut db, ReplicaOp::Put.code(), &body, 1).3, "stored");
        }
        let (at, c) = &chunks[5];
        assert_eq!(
            reason(serve(
                &mut db,
                ReplicaOp::Put.code(),
                &put(Kind::Chunk, at, c, 5, 1),
                2
            )),
            refused("low_effort")
        );
        assert_eq!(
            serve(
                &mut db,
                ReplicaOp::Put.code(),
                &put(Kind::Chunk, at, c, 5, 2),
                2
            )
            .3,
            "stored"
        );
        // A record held already is a duplicate, whatever its stamp asks.
        let again = put(Kind::Chunk, &chunks[0].0, &chunks[0].1, 5, 1);
        assert_eq!(
            serve(&mut db, ReplicaOp::Put.code(), &again, 3).3,
            "duplicate"
        );
    }
}
