//! The replica side of `/mtos/store/1` (`specs/storage.md` §4): a service
//! node asks a storage node to put, get or probe records; one request and
//! one response per stream, in the directory protocol's framing (kind,
//! 4-byte length, body). Only nodes the document lists as service or
//! storage nodes are served: a client never reaches a replica directly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::{AsyncWriteExt, StreamExt};
use libp2p::StreamProtocol;
use mtos_crypto::geometry::CHUNK_SIZE;
use mtos_crypto::item::Locator;

use super::metrics::Metrics;
use super::record_db::{Put, PutError, RecordDb};
use mtos_mixnode::admission::{Position, TokenBucket};
use mtos_mixnode::records::Kind;
use mtos_mixnode::service::MAX_PROBE;
use mtos_net as net;
use mtos_net::{NodeEntryExt, Topology};

/// The replica protocol.
pub const STORE_PROTOCOL: StreamProtocol = StreamProtocol::new("/mtos/store/1");
/// Request: `kind || locator || record`.
pub const STORE_PUT: u8 = 1;
/// Request: `kind || locator`.
pub const STORE_GET: u8 = 2;
/// Request: slot locators, 32 bytes each.
pub const STORE_PROBE: u8 = 3;
/// Request: `kind || locators` (1 to [`MAX_PROBE`], 32 bytes each):
/// which records of that kind are held (repair, `specs/storage.md` §1).
pub const STORE_HAVE: u8 = 4;
/// Response: done (a get's record, a probe's or have's bitmap).
pub const STORE_OK: u8 = 0x10;
/// Response: no such record.
pub const STORE_NOT_FOUND: u8 = 0x11;
/// Response: refused (body: the reason's label, UTF-8).
pub const STORE_REFUSED: u8 = 0x12;
/// Response: the request did not parse, or the store failed.
pub const STORE_ERROR: u8 = 0x13;
/// The largest request body.
pub const MAX_STORE_REQUEST: usize = 1 + 32 + CHUNK_SIZE;

fn kind_and_locator(body: &[u8]) -> Option<(Kind, Locator, &[u8])> {
    let (&k, rest) = body.split_first()?;
    let kind = Kind::from_byte(k)?;
    let (l, rest) = rest.split_at_checked(32)?;
    Some((kind, Locator::from_bytes(l.try_into().ok()?), rest))
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

/// Serves one request against `db` at `now`: returns the response kind,
/// its body, and the labels to count it under (`op`, `result`).
pub fn handle(
    db: &mut RecordDb,
    request: u8,
    body: &[u8],
    now: u64,
) -> (u8, Vec<u8>, &'static str, &'static str) {
    match request {
        STORE_PUT => {
            let Some((kind, locator, record)) = kind_and_locator(body) else {
                return (STORE_ERROR, b"malformed put".to_vec(), "put", "bad_request");
            };
            match db.put(kind, &locator, record, now) {
                Ok(Put::Stored { .. }) => (STORE_OK, Vec::new(), "put", "stored"),
                Ok(Put::Duplicate) => (STORE_OK, Vec::new(), "put", "duplicate"),
                Err(PutError::Refused(r)) => {
                    (STORE_REFUSED, r.name().as_bytes().to_vec(), "put", r.name())
                }
                Err(PutError::Database(_)) => {
                    (STORE_ERROR, b"store failed".to_vec(), "put", "error")
                }
            }
        }
        STORE_GET => match kind_and_locator(body) {
            Some((kind, locator, [])) => match db.get(kind, &locator) {
                Ok(Some(record)) => (STORE_OK, record, "get", "found"),
                Ok(None) => (STORE_NOT_FOUND, Vec::new(), "get", "not_found"),
                Err(_) => (STORE_ERROR, b"store failed".to_vec(), "get", "error"),
            },
            _ => (STORE_ERROR, b"malformed get".to_vec(), "get", "bad_request"),
        },
        STORE_PROBE => held(db, Some(Kind::Slot), body, "probe"),
        STORE_HAVE => {
            let (kind, locators) = match body.split_first() {
                Some((&k, rest)) => (Kind::from_byte(k), rest),
                None => (None, body),
            };
            held(db, kind, locators, "have")
        }
        _ => (
            STORE_ERROR,
            b"unknown request".to_vec(),
            "other",
            "bad_request",
        ),
    }
}

/// Which of `locators` (32 bytes each, 1 to [`MAX_PROBE`]) hold a `kind`
/// record, as a bitmap (first locator in the high bit of the first byte).
fn held(
    db: &RecordDb,
    kind: Option<Kind>,
    locators: &[u8],
    op: &'static str,
) -> (u8, Vec<u8>, &'static str, &'static str) {
    let count = locators.len() / 32;
    let (Some(kind), true) = (
        kind,
        (1..=MAX_PROBE).contains(&count) && locators.len().is_multiple_of(32),
    ) else {
        return (STORE_ERROR, b"malformed probe".to_vec(), op, "bad_request");
    };
    let mut bitmap = vec![0u8; count.div_ceil(8)];
    for (i, l) in locators.chunks_exact(32).enumerate() {
        let Ok(l) = <[u8; 32]>::try_from(l) else {
            continue;
        };
        match db.get(kind, &Locator::from_bytes(l)) {
            Ok(Some(_)) => bitmap[i / 8] |= 0x80 >> (i % 8),
            Ok(None) => {}
            Err(_) => return (STORE_ERROR, b"store failed".to_vec(), op, "error"),
        }
    }
    (STORE_OK, bitmap, op, "found")
}

/// The body of a put (`record` given) or get (`record` empty) request.
pub fn request_body(kind: Kind, locator: &Locator, record: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(1 + 32 + record.len());
    body.push(kind.byte());
    body.extend_from_slice(locator.as_bytes());
    body.extend_from_slice(record);
    body
}

/// [`handle`] on a blocking thread, counted in the metrics (requests by
/// operation and result, evictions, records and bytes held): the one way
/// a request reaches a store, whether from a peer or from the node's own
/// service side. `None` if the store's lock is poisoned.
pub(super) async fn serve_counted(
    db: Arc<Mutex<RecordDb>>,
    metrics: Metrics,
    kind: u8,
    body: Vec<u8>,
) -> Option<(u8, Vec<u8>)> {
    tokio::task::spawn_blocking(move || {
        let mut db = db.lock().ok()?;
        let before = db.records();
        let (status, reply, op, result) = handle(&mut db, kind, &body, mtos_net::unix_now());
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
        Some((status, reply))
    })
    .await
    .ok()
    .flatten()
}

/// One request to the replica `peer`: `(answer kind, body)`, or `None`
/// when it cannot be reached or does not answer within `timeout`.
pub(super) async fn ask(
    control: &mut libp2p_stream::Control,
    peer: libp2p::PeerId,
    kind: u8,
    body: &[u8],
    timeout: std::time::Duration,
) -> Option<(u8, Vec<u8>)> {
    let exchange = async {
        let mut stream = control.open_stream(peer, STORE_PROTOCOL).await.ok()?;
        net::write_message(&mut stream, kind, body).await.ok()?;
        let answer = net::read_message(&mut stream, MAX_STORE_ANSWER)
            .await
            .ok()?;
        let _ = stream.close().await;
        Some(answer)
    };
    tokio::time::timeout(timeout, exchange).await.ok().flatten()
}

/// The largest answer body read from a replica (a record, or a bitmap).
pub const MAX_STORE_ANSWER: usize = 1 << 16;

/// Serves `/mtos/store/1` on a storage node until the swarm ends. With
/// `tamper` (the test-only `[faults] tamper_records`) every get is
/// answered with the record's first byte flipped, as a bad or broken
/// replica would; tests use it to check that readers skip such a replica.
pub(super) async fn serve(
    mut incoming: libp2p_stream::IncomingStreams,
    db: Arc<Mutex<RecordDb>>,
    topology: tokio::sync::watch::Receiver<Option<Arc<Topology>>>,
    metrics: Metrics,
    quota: PutQuota,
    tamper: bool,
) {
    // Requests in flight at once; beyond it streams are dropped (reset).
    let permits = Arc::new(tokio::sync::Semaphore::new(64));
    // Puts per service node: one peer cannot flush the store alone.
    let buckets: Arc<Mutex<HashMap<libp2p::PeerId, TokenBucket>>> = Arc::default();
    let origin = tokio::time::Instant::now();
    while let Some((peer, mut stream)) = incoming.next().await {
        let allowed = topology.borrow().as_ref().is_some_and(|t| {
            t.position_of(&peer) == Position::Service
                || t.document
                    .nodes
                    .iter()
                    .any(|n| n.storage && n.peer().is_ok_and(|p| p == peer))
        });
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
        let (db, metrics, buckets) = (db.clone(), metrics.clone(), buckets.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let exchange = async {
                let (kind, body) = net::read_message(&mut stream, MAX_STORE_REQUEST).await?;
                if kind == STORE_PUT {
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
                        net::write_message(&mut stream, STORE_REFUSED, b"quota").await?;
                        return stream.close().await;
                    }
                }
                let (status, mut reply) = serve_counted(db, metrics, kind, body)
                    .await
                    .ok_or_else(|| std::io::Error::other("the record store is unusable"))?;
                if tamper
                    && (kind, status) == (STORE_GET, STORE_OK)
                    && let Some(b) = reply.first_mut()
                {
                    *b ^= 1;
                }
                net::write_message(&mut stream, status, &reply).await?;
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
    use mtos_mixnode::records::Retention;

    use super::request_body as request;

    #[test]
    fn puts_gets_and_probes_are_served_and_bad_requests_answered() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = RecordDb::open(
            &dir.path().join("r"),
            Retention {
                min_age_secs: 10,
                max_bytes: 1 << 20,
            },
        )
        .unwrap();
        let chunk = vec![4u8; 100];
        let at = Locator::of(&chunk);
        let put = request(Kind::Chunk, &at, &chunk);
        assert_eq!(handle(&mut db, STORE_PUT, &put, 0).3, "stored");
        assert_eq!(handle(&mut db, STORE_PUT, &put, 1).3, "duplicate");
        let (status, body, _, _) = handle(&mut db, STORE_GET, &request(Kind::Chunk, &at, &[]), 2);
        assert_eq!((status, body), (STORE_OK, chunk.clone()));
        let missing = Locator::from_bytes([9; 32]);
        assert_eq!(
            handle(&mut db, STORE_GET, &request(Kind::Chunk, &missing, &[]), 2).0,
            STORE_NOT_FOUND
        );
        // A tampered chunk is refused with its reason; the record stays.
        let mut bad = chunk.clone();
        bad[0] = 5;
        let (status, reason, _, result) =
            handle(&mut db, STORE_PUT, &request(Kind::Chunk, &at, &bad), 3);
        assert_eq!(
            (status, reason.as_slice(), result),
            (STORE_REFUSED, &b"wrong_locator"[..], "wrong_locator")
        );
        assert_eq!(db.get(Kind::Chunk, &at).unwrap(), Some(chunk));

        // Probes: which slot locators hold a record.
        let slot = SlotRecord::sign(&[1; 32], 0, b"entry").unwrap();
        let sl = slot_locator(&slot.key);
        handle(
            &mut db,
            STORE_PUT,
            &request(Kind::Slot, &sl, &slot.encode()),
            4,
        );
        let mut probe = Vec::new();
        for l in [missing, sl, missing] {
            probe.extend_from_slice(l.as_bytes());
        }
        let (status, bitmap, _, _) = handle(&mut db, STORE_PROBE, &probe, 5);
        assert_eq!((status, bitmap), (STORE_OK, vec![0b0100_0000]));

        // Have: the same question for any kind, as repair asks it.
        let mut have = vec![Kind::Chunk.byte()];
        for l in [missing, at, sl] {
            have.extend_from_slice(l.as_bytes());
        }
        let (status, bitmap, _, _) = handle(&mut db, STORE_HAVE, &have, 5);
        assert_eq!((status, bitmap), (STORE_OK, vec![0b0100_0000]));

        for (kind, body) in [
            (STORE_HAVE, vec![9u8; 33]),
            (STORE_HAVE, vec![1u8]),
            (STORE_HAVE, vec![1u8; 1 + 32 * (MAX_PROBE + 1)]),
            (STORE_PUT, vec![7u8; 10]),
            (STORE_GET, vec![1u8; 40]),
            (STORE_PROBE, vec![0u8; 33]),
            (STORE_PROBE, vec![]),
            (99, vec![]),
        ] {
            assert_eq!(handle(&mut db, kind, &body, 6).0, STORE_ERROR, "{kind}");
        }
    }
}
