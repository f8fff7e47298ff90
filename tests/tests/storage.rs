//! Storage nodes on a loopback network: a service node's identity puts
//! and gets records on `/mtos/store/1`, invalid records are refused and
//! leave the stored ones intact, and a client identity is never served.

use mtos_crypto::item::Locator;
use mtos_crypto::slot::{SlotRecord, slot_locator};
use mtos_mixnode::admission::Position;
use mtos_mixnode::driver::store::{
    STORE_GET, STORE_NOT_FOUND, STORE_OK, STORE_PROTOCOL, STORE_PUT, STORE_REFUSED,
};
use mtos_mixnode::records::Kind;
use mtos_tests::{CHAIN, TestClient, Testnet};

use mtos_mixnode::driver::store::request_body as body;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_serve_service_nodes_only_and_keep_valid_records() {
    // Every node stores (the template's flag switched on); a service
    // node may make 6 puts at once and 1 a second on each replica.
    let net = tokio::task::block_in_place(|| {
        Testnet::start_with(&CHAIN, 600, 5, |c| {
            c.replace("storage = false", "storage = true")
                .replace("puts_per_service = 200", "puts_per_service = 1")
                .replace("put_burst = 2000", "put_burst = 6")
        })
    });
    let service = net.node(Position::Service);
    let identity =
        mtos_mixnode::driver::load_identity(&service.dir.join("keys/identity.key")).unwrap();
    let mut as_service =
        TestClient::connect_as(&net, mtos_mixnode::directory::libp2p_keypair(&identity)).await;
    assert!(as_service.document.nodes.iter().all(|n| n.storage));
    let replica = as_service.at(Position::Layer(2))[0].clone();

    let chunk = vec![0x42u8; 3000];
    let at = Locator::of(&chunk);
    let put = body(Kind::Chunk, &at, &chunk);
    let answer = as_service
        .request(&replica, STORE_PROTOCOL, STORE_PUT, &put)
        .await;
    assert_eq!(answer.unwrap().0, STORE_OK);
    let got = as_service
        .request(
            &replica,
            STORE_PROTOCOL,
            STORE_GET,
            &body(Kind::Chunk, &at, &[]),
        )
        .await
        .unwrap();
    assert_eq!(got, (STORE_OK, chunk.clone()));

    // A tampered chunk and a forged slot are refused, counted, and what
    // is stored stays.
    let mut tampered = chunk.clone();
    tampered[0] ^= 1;
    let refused = as_service
        .request(
            &replica,
            STORE_PROTOCOL,
            STORE_PUT,
            &body(Kind::Chunk, &at, &tampered),
        )
        .await
        .unwrap();
    assert_eq!(refused, (STORE_REFUSED, b"wrong_locator".to_vec()));
    let owner = SlotRecord::sign(&[1; 32], 0, b"entry").unwrap();
    let slot = slot_locator(&owner.key);
    let put_slot = |r: &SlotRecord| body(Kind::Slot, &slot, &r.encode());
    assert_eq!(
        as_service
            .request(&replica, STORE_PROTOCOL, STORE_PUT, &put_slot(&owner))
            .await
            .unwrap()
            .0,
        STORE_OK
    );
    let forged = SlotRecord::sign(&[2; 32], 0, b"forged").unwrap();
    assert_eq!(
        as_service
            .request(&replica, STORE_PROTOCOL, STORE_PUT, &put_slot(&forged))
            .await
            .unwrap(),
        (STORE_REFUSED, b"bad_slot".to_vec())
    );
    let second = SlotRecord::sign(&[1; 32], 0, b"second").unwrap();
    assert_eq!(
        as_service
            .request(&replica, STORE_PROTOCOL, STORE_PUT, &put_slot(&second))
            .await
            .unwrap(),
        (STORE_REFUSED, b"slot_taken".to_vec())
    );
    assert_eq!(
        as_service
            .request(
                &replica,
                STORE_PROTOCOL,
                STORE_GET,
                &body(Kind::Slot, &slot, &[])
            )
            .await
            .unwrap(),
        (STORE_OK, owner.encode())
    );
    assert_eq!(
        as_service
            .request(
                &replica,
                STORE_PROTOCOL,
                STORE_GET,
                &body(Kind::Chunk, &Locator::from_bytes([7; 32]), &[])
            )
            .await
            .unwrap()
            .0,
        STORE_NOT_FOUND
    );

    // Beyond its quota a service node's puts are refused, whatever they
    // carry; the records already stored stay.
    let mut over = 0;
    for i in 0..10u8 {
        let c = vec![i; 100];
        let (status, reason) = as_service
            .request(
                &replica,
                STORE_PROTOCOL,
                STORE_PUT,
                &body(Kind::Chunk, &Locator::of(&c), &c),
            )
            .await
            .unwrap();
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
    use mtos_client::mixnet::{NetworkConfig, Session};
    use mtos_mixnode::placement::{DEFAULT_REPLICAS, replicas, storage_nodes};
    use mtos_mixnode::service::{Op, Status};
    use std::time::Duration;

    let mut net = tokio::task::block_in_place(|| {
        Testnet::start_custom(
            &CHAIN,
            600,
            5,
            |c| c.replace("storage = false", "storage = true"),
            |a| {
                a.replace("payload = 2.0", "payload = 20.0")
                    .replace("node_loops = 1.0", "node_loops = 0.0")
            },
        )
    });
    let config = NetworkConfig {
        network: net.network.clone(),
        authority_key: net.authority_key,
        authority_addr: net.authority_addr.clone(),
    };
    let alice = Session::connect(&config).await.unwrap();
    let bob = Session::connect(&config).await.unwrap();
    let chunks: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 1000 + usize::from(i)]).collect();
    let wait = Duration::from_secs(30);
    for c in &chunks {
        let r = alice
            .request(Op::Put(Kind::Chunk, c.clone()), Locator::of(c), wait)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", net.report()));
        assert_eq!(r.status, Status::Ok, "{r:?}");
        assert_eq!(
            r.body,
            vec![DEFAULT_REPLICAS as u8],
            "stored on every replica"
        );
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
    // A tampered chunk is refused by the service before any replica.
    let mut bad = chunks[0].clone();
    bad[0] ^= 1;
    let refused = alice
        .request(Op::Put(Kind::Chunk, bad), Locator::of(&chunks[0]), wait)
        .await
        .unwrap();
    assert_eq!(
        (refused.status, refused.body.as_slice()),
        (Status::Refused, &b"wrong_locator"[..])
    );

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
                .filter(|c| replicas(&Locator::of(c), &storage, DEFAULT_REPLICAS).contains(&key))
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
        let r = alice
            .request(Op::Put(Kind::Chunk, chunk), *l, wait)
            .await
            .unwrap();
        assert_eq!(r.status, Status::Ok);
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
            let db = mtos_mixnode::driver::records::RecordDb::open(
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
    // K copies of the 10 chunks and of every chunk of the item.
    assert_eq!(records, DEFAULT_REPLICAS * (10 + locators.len()));
}
