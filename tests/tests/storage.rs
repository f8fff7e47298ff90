//! Storage nodes on a loopback network: a service node's identity puts
//! and gets records on `/mtos/store/3`, every answer signed by the
//! replica for the request's nonce, invalid records are refused and
//! leave the stored ones intact, and a client identity is never served.

use mtos_crypto::item::Locator;
use mtos_crypto::slot::{SlotRecord, slot_locator};
use mtos_mixnode::admission::Position;
use mtos_mixnode::directory::DEFAULT_STAMP_FLOOR;
use mtos_mixnode::records::Kind;
use mtos_mixnode::records::make_stamp;
use mtos_mixnode::replica_proto::{ReplicaOp, ReplicaStatus, put_rest};
use mtos_net::NodeEntryExt;
use mtos_node::replica::STORE_PROTOCOL;
use mtos_tests::{AuthoritySettings, CHAIN, NodeSettings, TestClient, Testnet};

use mtos_mixnode::receipts::Signed;

/// The nonce of every request here.
const NONCE: [u8; 16] = [9; 16];

/// A get's request body: the nonce and `rest`.
fn body(kind: Kind, locator: &Locator, record: &[u8]) -> Vec<u8> {
    mtos_node::replica::request_body(&NONCE, kind, locator, record)
}

/// A put's request body, with a stamp of the document's floor (the
/// default) made for epoch 0: a replica takes stamps of any earlier epoch
/// (repair moves records with theirs).
fn put(kind: Kind, locator: &Locator, record: &[u8]) -> Vec<u8> {
    let stamp = make_stamp(kind, locator, record, 0, DEFAULT_STAMP_FLOOR, 0);
    mtos_node::replica::with_nonce(&NONCE, &put_rest(kind, locator, &stamp, record))
}

/// A replica's answer `(code, body)` to `op` with `body`, checked to be
/// signed by `replica` for this request, as its detail.
#[allow(clippy::unwrap_used)]
fn signed(replica: &[u8; 32], op: u8, body: &[u8], answer: (u8, Vec<u8>)) -> (u8, Vec<u8>) {
    let (code, bytes) = answer;
    let status = ReplicaStatus::from_u8(code).unwrap();
    let signed = Signed::from_answer(*replica, status, &bytes).unwrap();
    let op = ReplicaOp::from_u8(op).unwrap();
    assert!(
        signed.verify(&NONCE, op, &body[NONCE.len()..]),
        "an answer the replica did not sign for this request"
    );
    (code, signed.detail)
}

// The wire codes this test speaks as a peer of the replicas would.
const STORE_PUT: u8 = ReplicaOp::Put.code();
const STORE_GET: u8 = ReplicaOp::Get.code();
const STORE_OK: u8 = ReplicaStatus::Ok.code();
const STORE_NOT_FOUND: u8 = ReplicaStatus::NotFound.code();
const STORE_REFUSED: u8 = ReplicaStatus::Refused.code();

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_serve_service_nodes_only_and_keep_valid_records() {
    // Every node stores (the template's flag switched on); a service
    // node may make 6 puts at once and 1 a second on each replica.
    let net = tokio::task::block_in_place(|| {
        Testnet::start_with(&CHAIN, 600, 5, |_| NodeSettings {
            storage: Some(true),
            puts_per_service: Some(1),
            put_burst: Some(6),
            ..NodeSettings::default()
        })
    });
    let service = net.node(Position::Service);
    let identity = mtos_node::load_identity(&service.dir.join("keys/identity.key")).unwrap();
    let mut as_service = TestClient::connect_as(&net, mtos_net::libp2p_keypair(&identity)).await;
    assert!(as_service.document.nodes.iter().all(|n| n.storage));
    let replica = as_service.at(Position::Layer(2))[0].clone();

    let chunk = vec![0x42u8; 3000];
    let at = Locator::of(&chunk);
    let key = replica.key;
    let mut ask = async |op: u8, b: Vec<u8>| {
        let answer = as_service
            .request(&replica, STORE_PROTOCOL, op, &b)
            .await
            .unwrap();
        signed(&key, op, &b, answer)
    };
    let put_chunk = put(Kind::Chunk, &at, &chunk);
    assert_eq!(ask(STORE_PUT, put_chunk).await.0, STORE_OK);
    let got = ask(STORE_GET, body(Kind::Chunk, &at, &[])).await;
    assert_eq!(got, (STORE_OK, chunk.clone()));

    // A tampered chunk and a forged slot are refused, counted, and what
    // is stored stays.
    let mut tampered = chunk.clone();
    tampered[0] ^= 1;
    let refused = ask(STORE_PUT, put(Kind::Chunk, &at, &tampered)).await;
    assert_eq!(refused, (STORE_REFUSED, b"wrong_locator".to_vec()));
    let owner = SlotRecord::sign(&[1; 32], 0, b"entry").unwrap();
    let slot = slot_locator(&owner.key);
    let put_slot = |r: &SlotRecord| put(Kind::Slot, &slot, &r.encode());
    assert_eq!(ask(STORE_PUT, put_slot(&owner)).await.0, STORE_OK);
    let forged = SlotRecord::sign(&[2; 32], 0, b"forged").unwrap();
    assert_eq!(
        ask(STORE_PUT, put_slot(&forged)).await,
        (STORE_REFUSED, b"bad_slot".to_vec())
    );
    let second = SlotRecord::sign(&[1; 32], 0, b"second").unwrap();
    assert_eq!(
        ask(STORE_PUT, put_slot(&second)).await,
        (STORE_REFUSED, b"slot_taken".to_vec())
    );
    assert_eq!(
        ask(STORE_GET, body(Kind::Slot, &slot, &[])).await,
        (STORE_OK, owner.encode())
    );
    let missing = body(Kind::Chunk, &Locator::from_bytes([7; 32]), &[]);
    assert_eq!(ask(STORE_GET, missing).await.0, STORE_NOT_FOUND);

    // Beyond its quota a service node's puts are refused, whatever they
    // carry; the records already stored stay.
    let mut over = 0;
    for i in 0..10u8 {
        let c = vec![i; 100];
        let (status, reason) = ask(STORE_PUT, put(Kind::Chunk, &Locator::of(&c), &c)).await;
        if (status, reason.as_slice()) == (STORE_REFUSED, &b"quota"[..]) {
            over += 1;
        }
    }
    assert!(over >= 5, "only {over} of 10 puts over the quota refused");

    // A client identity gets no answer at all, and the refusal is counted.
    let mut client = TestClient::connect(&net).await;
    let refused = client
        .request(
            &replica,
            STORE_PROTOCOL,
            STORE_GET,
            &body(Kind::Chunk, &at, &[]),
        )
        .await;
    assert!(refused.is_err(), "{refused:?}");
    tokio::task::block_in_place(|| {
        let node = net
            .nodes
            .iter()
            .find(|n| n.position == Position::Layer(2))
            .unwrap();
        let m = |labels: &str| {
            node.metric("mtos_record_requests_total", labels)
                .unwrap_or(0.0)
        };
        assert_eq!(m("op=\"other\",result=\"not_allowed\""), 1.0);
        assert_eq!(
            m("op=\"put\",result=\"stored\""),
            2.0 + 10.0 - f64::from(over)
        );
        assert_eq!(m("op=\"put\",result=\"wrong_locator\""), 1.0);
        assert_eq!(m("op=\"put\",result=\"quota\""), f64::from(over));
        assert_eq!(
            node.metric("mtos_records_held", ""),
            Some(2.0 + 10.0 - f64::from(over))
        );
    });
}

/// Clients store and fetch chunks through the mixnet: each request goes
/// through every layer to a service node, which performs it against the
/// chunk's ring replicas and answers through the request's reply block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_put_and_get_chunks_through_service_nodes_onto_the_ring_replicas() {
    use mtos_client::mixnet::{PutOutcome, Session};
    use mtos_mixnode::placement::{DEFAULT_REPLICAS, replicas, storage_nodes};
    use mtos_mixnode::receipts::Held;
    use mtos_mixnode::service::{Op, Status};
    use std::time::Duration;

    let mut net = tokio::task::block_in_place(|| {
        Testnet::start_custom(
            &CHAIN,
            600,
            5,
            |_| NodeSettings {
                storage: Some(true),
                ..NodeSettings::default()
            },
            &AuthoritySettings {
                payload: Some(20.0),
                node_loops: Some(0.0),
                ..AuthoritySettings::default()
            },
        )
    });
    let config = net.network_config();
    let alice = Session::connect(&config).await.unwrap();
    let bob = Session::connect(&config).await.unwrap();
    let chunks: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 1000 + usize::from(i)]).collect();
    let wait = Duration::from_secs(30);
    // Every put proven by the signed receipts of all K replicas.
    let stored = PutOutcome::Stored {
        receipts: DEFAULT_REPLICAS,
        expected: DEFAULT_REPLICAS,
    };
    // A put short of a receipt (a replica slow to answer on a loaded
    // machine) is asked again, as `mtos publish` does.
    let put_fully = |kind: Kind, at: Locator, record: Vec<u8>| {
        let alice = &alice;
        async move {
            let mut last = None;
            for _ in 0..3 {
                let got = alice.put(kind, at, record.clone(), wait).await.unwrap();
                if matches!(got, PutOutcome::Stored { .. }) {
                    return got;
                }
                last = Some(got);
            }
            panic!("not stored on every replica: {last:?}")
        }
    };
    for c in &chunks {
        let r = put_fully(Kind::Chunk, Locator::of(c), c.clone()).await;
        assert_eq!(r, stored, "stored on every replica");
    }
    for c in &chunks {
        let r = bob
            .request(Op::Get(Kind::Chunk), Locator::of(c), wait)
            .await
            .unwrap();
        assert_eq!((r.status, &r.body), (Status::Ok, c));
    }
    // A second read of each chunk is served from the service node's
    // cache, without asking any replica.
    let service_node = net.node(Position::Service);
    let cache = |r: &str| {
        service_node
            .metric("mtos_service_cache_total", &format!("result=\"{r}\""))
            .unwrap_or(0.0)
    };
    let gets_before = tokio::task::block_in_place(|| {
        net.nodes
            .iter()
            .map(|n| {
                n.metric("mtos_record_requests_total", "op=\"get\"")
                    .unwrap_or(0.0)
            })
            .sum::<f64>()
    });
    assert_eq!(tokio::task::block_in_place(|| cache("miss")), 10.0);
    for c in &chunks {
        let r = bob
            .request(Op::Get(Kind::Chunk), Locator::of(c), wait)
            .await
            .unwrap();
        assert_eq!((r.status, &r.body), (Status::Ok, c));
    }
    tokio::task::block_in_place(|| {
        assert_eq!(cache("hit"), 10.0);
        let gets_after: f64 = net
            .nodes
            .iter()
            .map(|n| {
                n.metric("mtos_record_requests_total", "op=\"get\"")
                    .unwrap_or(0.0)
            })
            .sum();
        assert_eq!(gets_after, gets_before, "no replica was asked again");
    });
    let absent = bob
        .request(Op::Get(Kind::Chunk), Locator::from_bytes([3; 32]), wait)
        .await
        .unwrap();
    assert_eq!(absent.status, Status::NotFound);
    // A tampered chunk is refused by the client's own check, sending
    // nothing.
    let mut bad = chunks[0].clone();
    bad[0] ^= 1;
    let refused = alice
        .put(Kind::Chunk, Locator::of(&chunks[0]), bad.clone(), wait)
        .await
        .unwrap();
    assert_eq!(refused, PutOutcome::Refused("wrong_locator".into()));
    // A put whose stamp is for another record, or below the document's
    // floor, is refused by the service node itself (storage.md §2).
    let epoch = alice.document().epoch;
    let at = Locator::of(&chunks[0]);
    for (stamp, reason) in [
        (
            make_stamp(Kind::Chunk, &Locator::of(&bad), &bad, epoch, 16, 0),
            "bad_stamp",
        ),
        (
            make_stamp(Kind::Chunk, &at, &chunks[0], epoch, 1, 0),
            "low_effort",
        ),
    ] {
        let r = alice
            .request(Op::Put(Kind::Chunk, chunks[0].clone(), stamp), at, wait)
            .await
            .unwrap();
        assert_eq!(
            (r.status, r.body),
            (Status::Refused, reason.as_bytes().to_vec())
        );
    }

    // Feed slots through the mixnet: three slots of one feed written by
    // alice, read and probed by bob; a forged record at a slot and a
    // second, different record at a written slot are refused, and the
    // first record stays.
    let feed = [0x5au8; 32];
    let slots: Vec<SlotRecord> = (0..3u64)
        .map(|n| SlotRecord::sign(&feed, n, format!("entry {n}").as_bytes()).unwrap())
        .collect();
    for slot in &slots {
        let r = put_fully(Kind::Slot, slot_locator(&slot.key), slot.encode()).await;
        assert_eq!(r, stored);
    }
    for slot in &slots {
        let r = bob
            .request(Op::Get(Kind::Slot), slot_locator(&slot.key), wait)
            .await
            .unwrap();
        assert_eq!((r.status, r.body), (Status::Ok, slot.encode()));
    }
    // Probe slots 0 to 5: the first three are written.
    let polled: Vec<Locator> = (0..6u64)
        .map(|n| slot_locator(&SlotRecord::sign(&feed, n, b"").unwrap().key))
        .collect();
    // Each answer signed by every replica of each slot.
    let held = bob.probe(&polled, wait, &mut Vec::new()).await.unwrap();
    assert_eq!(held, [[Held::Held; 3], [Held::Empty; 3]].concat());
    let first = slot_locator(&slots[0].key);
    let forged = SlotRecord::sign(&[0x66; 32], 0, b"forged").unwrap();
    let second = SlotRecord::sign(&feed, 0, b"a second entry 0").unwrap();
    for (record, reason) in [
        (forged.encode(), "bad_slot"),
        (second.encode(), "slot_taken"),
    ] {
        let r = alice.put(Kind::Slot, first, record, wait).await.unwrap();
        assert_eq!(r, PutOutcome::Refused(reason.into()));
    }
    let r = bob.request(Op::Get(Kind::Slot), first, wait).await.unwrap();
    assert_eq!((r.status, r.body), (Status::Ok, slots[0].encode()));
    tokio::task::block_in_place(|| {
        let at_replicas: f64 = net
            .nodes
            .iter()
            .map(|n| {
                n.metric("mtos_record_requests_total", "result=\"slot_taken\"")
                    .unwrap_or(0.0)
            })
            .sum();
        assert_eq!(
            at_replicas, DEFAULT_REPLICAS as f64,
            "each replica refused it"
        );
        // The second record only: the forged one never left its
        // writer, whose own check refused it (and a put carries no
        // locator but its record's, so a record signed by another key
        // could only ever be stored at that key's own slot).
        assert_eq!(
            net.node(Position::Service).metric(
                "mtos_service_requests_total",
                "op=\"put_slot\",result=\"refused\""
            ),
            Some(1.0)
        );
    });

    // Every chunk is on exactly its K ring replicas, and no replica was
    // ever contacted by anything but a service or storage node.
    let doc = alice.document();
    let storage = storage_nodes(&doc);
    tokio::task::block_in_place(|| {
        for node in &net.nodes {
            let key = doc
                .nodes
                .iter()
                .find(|n| n.position() == node.position)
                .unwrap()
                .key;
            let expected = chunks
                .iter()
                .map(|c| Locator::of(c))
                .chain(slots.iter().map(|s| slot_locator(&s.key)))
                .filter(|l| replicas(l, &storage, DEFAULT_REPLICAS).contains(&key))
                .count();
            assert_eq!(
                node.metric("mtos_records_held", ""),
                Some(expected as f64),
                "{:?}",
                node.position
            );
            assert_eq!(
                node.metric("mtos_record_requests_total", "result=\"not_allowed\""),
                Some(0.0)
            );
        }
    });

    // A sealed item stored through the mixnet leaves no plaintext on any
    // node: every value of every store, read back through RocksDB once the
    // nodes are killed, lacks every 24-byte piece of the text.
    use mtos_crypto::item::seal::{self, Access};
    use mtos_crypto::item::tree::{ChunkSource, MemoryChunks};
    use mtos_crypto::item::{ContentType, ItemDraft, Part};
    let text = (0..300)
        .map(|i| format!("line {i} of a note nobody who stores it may read; "))
        .collect::<String>();
    let author = mtos_crypto::Identity::throwaway(&mut rand::rng(), 0);
    let item = ItemDraft::new(ContentType::Note, 0, vec![Part::text(text.clone())])
        .sign(&author)
        .unwrap();
    let mut sealed = MemoryChunks::new();
    seal::seal(&mut rand::rng(), &item, Access::Public, &mut sealed).unwrap();
    let locators: Vec<Locator> = sealed.locators().copied().collect();
    assert!(locators.len() >= 4, "{} chunks", locators.len());
    for l in &locators {
        let chunk = sealed.get(l).unwrap().unwrap();
        let r = alice.put(Kind::Chunk, *l, chunk, wait).await.unwrap();
        assert!(matches!(r, PutOutcome::Stored { .. }), "{r:?}");
    }
    let pieces: Vec<&[u8]> = text
        .as_bytes()
        .chunks(24)
        .filter(|p| p.len() == 24)
        .collect();
    let mut records = 0;
    tokio::task::block_in_place(|| {
        for node in &mut net.nodes {
            node.proc.kill();
            let db = mtos_node::record_db::RecordDb::open(
                &node.dir.join("data/records"),
                mtos_mixnode::records::Retention {
                    min_age_secs: 1,
                    max_bytes: u64::MAX,
                },
            )
            .unwrap();
            db.for_each(|_, _, bytes| {
                records += 1;
                for p in &pieces {
                    assert!(
                        !bytes.windows(24).any(|w| w == *p),
                        "plaintext on {:?}",
                        node.position
                    );
                }
            })
            .unwrap();
        }
    });
    // K copies of the 10 chunks, the 3 slots and every chunk of the item.
    assert_eq!(records, DEFAULT_REPLICAS * (10 + 3 + locators.len()));
}

/// Eight storage nodes, K = 3: one client puts 100 chunks and another
/// gets them; a storage node is `kill -9`ed and every chunk is still
/// served; once the authority stops listing it, every chunk has K copies
/// again on exactly its new ring replicas. Throughout, the peers that
/// contact service nodes and replicas are nodes of the document, never
/// a client identity (read from the nodes' connection logs, with client
/// logging switched on so that a client's connection would show).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_chunks_survive_a_kill_9_and_are_repaired_to_k_copies() {
    use Position::{Gateway, Layer, Service};
    use futures::StreamExt;
    use mtos_client::mixnet::{PutOutcome, Session};
    use mtos_mixnode::placement::{DEFAULT_REPLICAS, StorageNode, replicas, storage_nodes};
    use mtos_mixnode::service::{Op, Status};
    use std::collections::BTreeSet;
    use std::time::Duration;

    const NODES: [Position; 9] = [
        Gateway,
        Layer(1),
        Layer(1),
        Layer(2),
        Layer(2),
        Layer(3),
        Layer(3),
        Service,
        Service,
    ];
    // Every node but the gateway stores; no service node caches, so every
    // read asks the replicas; the authority drops a node silent for three
    // 3-second heartbeats.
    let mut net = tokio::task::block_in_place(|| {
        Testnet::start_custom(
            &NODES,
            120,
            5,
            |position| NodeSettings {
                storage: Some(position != Gateway),
                cache_chunks: Some(0),
                client_addresses: Some(true),
                ..NodeSettings::default()
            },
            &AuthoritySettings {
                payload: Some(20.0),
                node_loops: Some(0.0),
                heartbeat_secs: Some(3),
                ..AuthoritySettings::default()
            },
        )
    });
    let config = net.network_config();
    let alice = Session::connect(&config).await.unwrap();
    let bob = Session::connect(&config).await.unwrap();
    // Storage nodes take records once listed with a salt: a document
    // fetched the moment the nodes were first listed may have none yet,
    // and a client then waits for the next (on a loaded machine it comes
    // a round or two later).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while storage_nodes(&alice.document()).len() < 8 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let before = alice.document();
    let storage = storage_nodes(&before);
    assert_eq!(storage.len(), 8, "{}", net.report());

    // 100 distinct chunks of 1,000 to 3,000 bytes.
    let chunks: Vec<Vec<u8>> = (0..100u32)
        .map(|i| {
            let len = 1000 + (i as usize * 20);
            (0..len).map(|j| (i as usize * 31 + j * 7) as u8).collect()
        })
        .collect();
    let wait = Duration::from_secs(20);
    // A request, asked again (fresh route, fresh service node) when its
    // packet or its answer is lost, or, for a put, when not all K
    // replicas answered (a replica busy past the service's 10 s on a
    // loaded machine), as `mtos publish` does.
    let ask = |who: &'static str, op: Op, at: Locator| {
        let session = if who == "alice" { &alice } else { &bob };
        async move {
            let mut last = None;
            for _ in 0..6 {
                match session.request(op.clone(), at, wait).await {
                    Ok(r) if r.status != Status::Unavailable => return r,
                    other => last = Some(format!("{other:?}")),
                }
            }
            panic!("{who}: {op:?} at {at:?} failed six times: {last:?}")
        }
    };
    // A put counts with K receipts, asked again until it has them.
    let put = |c: &Vec<u8>| {
        let alice = &alice;
        let c = c.clone();
        async move {
            let mut last = None;
            for _ in 0..6 {
                match alice
                    .put(Kind::Chunk, Locator::of(&c), c.clone(), wait)
                    .await
                {
                    Ok(r @ PutOutcome::Stored { .. }) => return r,
                    other => last = Some(format!("{other:?}")),
                }
            }
            panic!("a put failed six times: {last:?}")
        }
    };
    let puts: Vec<_> = futures::stream::iter(&chunks)
        .map(put)
        .buffer_unordered(20)
        .collect()
        .await;
    for r in &puts {
        assert!(matches!(r, PutOutcome::Stored { receipts: 3, .. }), "{r:?}");
    }
    let read_all = |round: &'static str| {
        let chunks = &chunks;
        let ask = &ask;
        async move {
            let got: Vec<_> = futures::stream::iter(chunks)
                .map(|c| async move { (c, ask("bob", Op::Get(Kind::Chunk), Locator::of(c)).await) })
                .buffer_unordered(20)
                .collect()
                .await;
            for (c, r) in got {
                assert_eq!((r.status, &r.body), (Status::Ok, c), "{round}");
            }
        }
    };
    read_all("before the kill").await;

    // Records sit on exactly their K ring replicas.
    let keys: Vec<[u8; 32]> = net
        .nodes
        .iter()
        .map(|n| {
            *mtos_node::load_identity(&n.dir.join("keys/identity.key"))
                .unwrap()
                .verify_key()
                .as_bytes()
        })
        .collect();
    let expected = |storage: &[StorageNode], key: &[u8; 32]| {
        chunks
            .iter()
            .filter(|c| replicas(&Locator::of(c), storage, DEFAULT_REPLICAS).contains(key))
            .count() as f64
    };
    // (node, records it holds, records it should hold) for live nodes.
    let holdings = |net: &Testnet, storage: &[StorageNode]| -> Vec<(String, f64, f64)> {
        net.nodes
            .iter()
            .zip(&keys)
            .filter(|(n, _)| n.position != Gateway && n.proc.pid().is_some())
            .map(|(n, k)| {
                (
                    n.proc.name.clone(),
                    n.metric("mtos_records_held", "").unwrap_or(-1.0),
                    expected(storage, k),
                )
            })
            .collect()
    };
    tokio::task::block_in_place(|| {
        for (name, held, want) in holdings(&net, &storage) {
            assert_eq!(held, want, "{name}");
        }
    });

    // kill -9 the storage node holding the most records (not a service
    // node: they are the final hop of every request).
    let victim = (0..net.nodes.len())
        .filter(|&i| !matches!(net.nodes[i].position, Gateway | Service))
        .max_by_key(|&i| expected(&storage, &keys[i]) as u64)
        .unwrap();
    let lost = expected(&storage, &keys[victim]);
    assert!(lost > 0.0);
    tokio::task::block_in_place(|| net.nodes[victim].proc.kill());
    let killed = std::time::Instant::now();
    // Every chunk is still served, from the two replicas left.
    read_all("after the kill").await;

    // The authority stops listing the dead node; the sources copy its
    // records to the new K-th replicas.
    let after: Vec<StorageNode> = storage
        .iter()
        .filter(|k| k.key != keys[victim])
        .copied()
        .collect();
    tokio::task::block_in_place(|| {
        mtos_tests::wait_for(
            "the dead node to leave the document",
            Duration::from_secs(60),
            || storage_nodes(&alice.document()).len() == 7,
        );
        mtos_tests::wait_for(
            "K copies of every chunk again",
            Duration::from_secs(60),
            || {
                holdings(&net, &after)
                    .iter()
                    .all(|(_, held, want)| held == want)
            },
        );
        let copies: f64 = holdings(&net, &after).iter().map(|(_, h, _)| h).sum();
        assert_eq!(copies, (DEFAULT_REPLICAS * chunks.len()) as f64);
        let sent: f64 = net
            .nodes
            .iter()
            .filter(|n| n.proc.pid().is_some())
            .map(|n| {
                n.metric("mtos_repair_records_total", "result=\"sent\"")
                    .unwrap_or(0.0)
            })
            .sum();
        eprintln!(
            "{lost} records lost with {}; {sent} sent; K copies again {:?} after the kill",
            net.nodes[victim].proc.name,
            killed.elapsed()
        );
        assert!(sent >= lost, "{sent} records sent to replace {lost}");
        assert!(sent <= 2.0 * lost, "{sent} records sent to replace {lost}");
    });
    read_all("after the repair").await;

    // Who contacted the service nodes and replicas: only nodes of the
    // document (and the authority), in every log, the dead node's too;
    // the clients' identities only ever reached the gateway.
    let node_peers: BTreeSet<String> = before
        .nodes
        .iter()
        .map(|n| n.peer().unwrap().to_string())
        .chain(net.authority_peers().iter().map(|p| p.to_string()))
        .collect();
    let clients = [alice.peer_id().to_string(), bob.peer_id().to_string()];
    let mut links = 0;
    for node in &net.nodes {
        let log = node.log();
        if node.position == Gateway {
            for c in &clients {
                assert!(log.contains(c.as_str()), "the gateway logs its clients");
            }
            continue;
        }
        for c in &clients {
            assert!(!log.contains(c.as_str()), "{} saw a client", node.proc.name);
        }
        for line in log.lines().filter(|l| l.contains(" connected ")) {
            let peer = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("peer="))
                .unwrap_or_else(|| panic!("no peer in {line}"));
            assert!(node_peers.contains(peer), "{}: {line}", node.proc.name);
            links += 1;
        }
        if node.proc.pid().is_some() {
            assert_eq!(
                tokio::task::block_in_place(
                    || node.metric("mtos_record_requests_total", "result=\"not_allowed\"")
                ),
                Some(0.0),
                "{}",
                node.proc.name
            );
        }
    }
    eprintln!("{links} node links logged, none from a client");
    assert!(links >= NODES.len(), "only {links} node links logged");
}
