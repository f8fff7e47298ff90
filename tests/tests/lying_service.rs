//! A lying service node among honest ones (`specs/storage.md` §4): one
//! that acknowledges puts without storing them, one that forges
//! refusals, one that hides written slots from probes. Each attack is
//! mounted by a real node (`[faults] service_lie`), and each fails: the
//! publish still ends with K signed receipts per chunk through the other
//! service node, the liar is caught and avoided, and a follower still
//! sees every new entry.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use mtos_client::feeds::{Followed, poll, write_entry};
use mtos_client::mixnet::Session;
use mtos_client::store::ChunkStore;
use mtos_client::transfer::{TransferOptions, fetch, publish};
use mtos_crypto::feed::FeedKeys;
use mtos_crypto::item::seal::{self, Access, MAX_SEALED_LEN};
use mtos_crypto::item::{ContentType, ItemDraft, ItemRef, Part};
use mtos_mixnode::admission::Position;
use mtos_tests::{AuthoritySettings, FaultsSection, NodeSettings, ServiceLie, Testnet};
use rand::RngExt;

/// Gateway, three layers and two service nodes, every node a storage
/// node (K = 3 of 6).
const NODES: [Position; 6] = [
    Position::Gateway,
    Position::Layer(1),
    Position::Layer(2),
    Position::Layer(3),
    Position::Service,
    Position::Service,
];

/// Seals a random item of `len` bytes into `store`.
fn item(store: &ChunkStore, len: usize) -> ItemRef {
    let mut bytes = vec![0u8; len];
    rand::rng().fill(&mut bytes[..]);
    let author = mtos_crypto::Identity::throwaway(&mut rand::rng(), 0);
    let item = ItemDraft::new(
        ContentType::MediaObject,
        0,
        vec![Part::binary(bytes, "application/octet-stream")],
    )
    .sign(&author)
    .unwrap();
    let mut writer = store.writer();
    let sealed = seal::seal(&mut rand::rng(), &item, Access::Public, &mut writer).unwrap();
    writer.finish().unwrap();
    sealed.reference
}

/// Restarts the first service node lying as `lie`; returns its key.
fn make_liar(net: &mut Testnet, lie: ServiceLie) -> [u8; 32] {
    tokio::task::block_in_place(|| {
        let node = net.node_mut(Position::Service);
        node.restart_with_faults(FaultsSection {
            service_lie: lie,
            ..FaultsSection::default()
        });
        let identity = mtos_node::load_identity(&node.dir.join("keys/identity.key")).unwrap();
        net.wait_until_listed(NODES.len(), Duration::from_secs(60));
        *identity.verify_key().as_bytes()
    })
}

/// Requests the liar answered with a lie so far.
fn lies(net: &Testnet) -> f64 {
    tokio::task::block_in_place(|| {
        net.node(Position::Service)
            .metric("mtos_service_requests_total", "result=\"lie\"")
            .unwrap_or(0.0)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_service_node_is_caught_and_the_work_goes_on_through_the_others() {
    let mut net = tokio::task::block_in_place(|| {
        Testnet::start_custom(
            &NODES,
            600,
            5,
            |_| NodeSettings {
                storage: Some(true),
                ..NodeSettings::default()
            },
            &AuthoritySettings {
                payload: Some(50.0),
                node_loops: Some(0.0),
                ..AuthoritySettings::default()
            },
        )
    });
    let config = net.network_config();
    let dir = tempfile::tempdir().unwrap();
    let options = TransferOptions::default();

    // 1. Puts acknowledged without storing: receipts in the replicas'
    // names, signed with the liar's own key.
    let liar = make_liar(&mut net, ServiceLie::AckPuts);
    let alice_store = ChunkStore::open(&dir.path().join("alice")).unwrap();
    let first = item(&alice_store, 60_000);
    let alice = Session::connect(&config).await.unwrap();
    let published = publish(&alice, &alice_store, &first, options, &|_, _| {})
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", net.report()));
    assert!(published.chunks >= 16, "{} chunks", published.chunks);
    assert_eq!(published.transferred, published.chunks);
    let told = lies(&net);
    assert!(told >= 1.0, "the liar was never asked");
    assert_eq!(alice.avoided(), vec![liar], "caught");
    // For the rest of the session it is never asked again (the lies it
    // told came from requests in flight before its first answer).
    let more = item(&alice_store, 30_000);
    publish(&alice, &alice_store, &more, options, &|_, _| {})
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", net.report()));
    assert_eq!(lies(&net), told, "asked again after it was caught");
    // What was published is really there: a reader fetches all of it.
    let bob_store = ChunkStore::open(&dir.path().join("bob")).unwrap();
    let bob = Session::connect(&config).await.unwrap();
    let fetched = fetch(&bob, &bob_store, &first, options, &|_, _| {})
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", net.report()));
    assert_eq!(fetched.transferred, fetched.chunks);
    seal::open(&mut &bob_store, &first, &[], MAX_SEALED_LEN).unwrap();

    // 2. Forged refusals: "wrong_locator" for valid chunks, in a
    // replica's name.
    let liar = make_liar(&mut net, ServiceLie::ForgeRefusals);
    let before = lies(&net);
    let carol_store = ChunkStore::open(&dir.path().join("carol")).unwrap();
    let second = item(&carol_store, 60_000);
    let carol = Session::connect(&config).await.unwrap();
    let published = publish(&carol, &carol_store, &second, options, &|_, _| {})
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", net.report()));
    assert_eq!(published.transferred, published.chunks);
    assert!(lies(&net) > before, "the liar was never asked");
    assert_eq!(carol.avoided(), vec![liar]);

    // 3. Probes answered "not held": the liar withholds every signed
    // answer that says a slot is written. A follower polling through it
    // and the honest one still sees each new entry.
    let liar = make_liar(&mut net, ServiceLie::HideHeld);
    let writer = Session::connect(&config).await.unwrap();
    let author = mtos_crypto::Identity::throwaway(&mut rand::rng(), 0);
    let keys = FeedKeys::of(&author);
    let follower = Session::connect(&config).await.unwrap();
    let mut follows = vec![Followed {
        follow: keys.follow(),
        next: 0,
    }];
    let decoys = mtos_client::feeds::FeedBook::default().decoys(&mut rand::rng());
    let before = lies(&net);
    // Rounds go on (at least four, at most twelve) until the liar has
    // answered two of them: each probe picks its service node at random.
    for n in 0..12u64 {
        let written = write_entry(&writer, &keys, n, &first, 1_000 + n, options)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", net.report()));
        assert_eq!(written, n);
        let report = poll(
            &follower,
            &mut follows,
            &decoys,
            n,
            &mut rand::rng(),
            options,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", net.report()));
        let seen: Vec<u64> = report.entries.iter().map(|(_, e)| e.time_ms).collect();
        assert_eq!(seen, vec![1_000 + n], "entry {n}");
        assert_eq!(follows[0].next, n + 1);
        if n >= 3 && lies(&net) >= before + 2.0 {
            break;
        }
    }
    // Withholding is not provably a lie (a replica may be down): the liar
    // is not avoided, only outvoted.
    assert!(lies(&net) > before, "the liar was never asked");
    assert!(follower.avoided().is_empty());
    let _ = liar;
}
