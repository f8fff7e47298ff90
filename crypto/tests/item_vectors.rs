//! Checks the item encodings against `specs/vectors/item.json` and opens
//! the fixed sealed items stored there.
//!
//! `MTOS_WRITE_VECTORS=1` regenerates the deterministic part after a
//! deliberate, specified format change; the sealed items (age draws from
//! the OS RNG) are only written when missing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::PathBuf;

use mtos_crypto::item::seal::{self, Access};
use mtos_crypto::item::tree::{ChunkSink, MemoryChunks, TreeWriter};
use mtos_crypto::item::{
    ContentType, FeedPosition, Item, ItemDraft, ItemRef, Locator, Part, RefKind, TypedRef,
};
use mtos_crypto::{Identity, Label, Visibility};
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

fn path() -> PathBuf {
    mtos_crypto::vectors::path("item.json")
}

fn hex(b: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(b)
}

fn unhex(s: &Value) -> Vec<u8> {
    data_encoding::HEXLOWER
        .decode(s.as_str().unwrap().as_bytes())
        .unwrap()
}

/// The identities of `identity.json` (same fixed secrets).
fn identity(fill: u8, label: &str, visibility: Visibility, created: u64) -> Identity {
    let seed: [u8; 32] = std::array::from_fn(|i| fill.wrapping_mul(i as u8 + 1));
    let x: [u8; 32] = std::array::from_fn(|i| fill ^ (i as u8).wrapping_mul(7));
    Identity::from_secrets(Label::new(label).unwrap(), visibility, created, &seed, &x)
}

fn alice() -> Identity {
    identity(1, "alice", Visibility::Public, 1_700_000_000)
}

fn bob() -> Identity {
    identity(2, "bob", Visibility::Private, 1_700_000_100)
}

fn fixed_ref(fill: u8, private: bool) -> ItemRef {
    // A reference as a decoder sees it: built from its encoding.
    let mut bytes = vec![1u8, u8::from(private)];
    bytes.extend_from_slice(&[fill; 32]);
    bytes.extend_from_slice(&[fill.wrapping_add(1); 32]);
    ItemRef::decode(&bytes).unwrap()
}

fn items() -> Vec<(&'static str, Item)> {
    let note = ItemDraft::new(
        ContentType::Note,
        1_764_000_000_123,
        vec![Part::text("hello, mixnet")],
    )
    .sign(&alice())
    .unwrap();
    let mut full = ItemDraft::new(
        ContentType::ImageObject,
        1_764_000_100_000,
        vec![
            Part::text("a remix of a sunset"),
            Part::binary((0u8..=255).collect(), "image/png"),
        ],
    );
    full.tags = vec!["sunset".into(), "remix".into()];
    full.refs = vec![
        TypedRef {
            kind: RefKind::RemixOf,
            target: fixed_ref(0x11, false),
        },
        TypedRef {
            kind: RefKind::ReplyTo,
            target: fixed_ref(0x22, true),
        },
    ];
    full.feed = Some(FeedPosition {
        feed: [0x33; 32],
        seq: 7,
        prev: Some(fixed_ref(0x44, false)),
    });
    let full = full.sign(&alice()).unwrap();
    // A display component (`item.md` §6) and an item drawn by it.
    let component = ItemDraft::new(
        ContentType::WebPage,
        1_764_000_200_000,
        vec![
            Part::text_with_mime("<p id=\"v\"></p>", "text/html"),
            Part::text_with_mime(
                "mtos.onitem(i => { document.getElementById('v').textContent = i.parts[0].text; });",
                "text/javascript",
            ),
        ],
    )
    .sign(&alice())
    .unwrap();
    let mut displayed = ItemDraft::new(
        ContentType::Note,
        1_764_000_300_000,
        vec![Part::text("42 17 99")],
    );
    displayed.refs = vec![TypedRef {
        kind: RefKind::Component,
        target: fixed_ref(0x66, false),
    }];
    let displayed = displayed.sign(&alice()).unwrap();
    vec![
        ("note", note),
        ("remix", full),
        ("component", component),
        ("displayed", displayed),
    ]
}

fn tree_vector(len: usize) -> Value {
    let blob: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let mut store = MemoryChunks::new();
    let mut w = TreeWriter::new(&mut store, [7; 32], u64::MAX);
    w.write_all(&blob).unwrap();
    let (root, shape) = w.finish().unwrap();
    json!({
        "tree_key": hex(&[7; 32]),
        "sealed_len": len,
        "sealed_bytes": "(i mod 251) for i in 0..sealed_len",
        "levels": shape.levels,
        "root": hex(root.as_bytes()),
        "root_chunk": hex(&mtos_crypto::item::tree::ChunkSource::get(&mut store, &root).unwrap().unwrap()),
        "locators": store.locators().map(|l| hex(l.as_bytes())).collect::<Vec<_>>(),
    })
}

fn compute() -> Value {
    let items: Map<String, Value> = items()
        .into_iter()
        .map(|(name, item)| {
            (
                name.to_owned(),
                json!({
                    "author_seed_fill": 1,
                    "header": hex(&item.encode_header()),
                    "item": hex(&item.encode()),
                }),
            )
        })
        .collect();
    let r = fixed_ref(0x55, true);
    json!({
        "items": items,
        "item_ref": {"encoding": hex(&r.encode()), "uri": r.to_uri()},
        "trees": [tree_vector(100), tree_vector(9000)],
    })
}

struct Recorder(MemoryChunks, Map<String, Value>);

impl ChunkSink for Recorder {
    fn put(&mut self, locator: &Locator, chunk: &[u8]) -> std::io::Result<()> {
        self.1.insert(hex(locator.as_bytes()), json!(hex(chunk)));
        self.0.put(locator, chunk)
    }
}

fn sealed_vectors() -> Value {
    let mut out = Vec::new();
    for (name, item) in items() {
        for private in [false, true] {
            let mut rec = Recorder(MemoryChunks::new(), Map::new());
            let bob_key = [bob().encryption_key()];
            let access = if private {
                Access::Private(&bob_key)
            } else {
                Access::Public
            };
            let sealed = seal::seal(&mut rand::rng(), &item, access, &mut rec).unwrap();
            out.push(json!({
                "item": name,
                "uri": sealed.reference.to_uri(),
                "recipient": if private { "bob" } else { "" },
                "chunks": rec.1,
            }));
        }
    }
    json!(out)
}

#[test]
fn item_vectors_match_the_spec() {
    let mut computed = compute();
    let existing: Option<Value> = std::fs::read_to_string(path())
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    if std::env::var_os("MTOS_WRITE_VECTORS").is_some() {
        let sealed = existing
            .as_ref()
            .and_then(|e| e.get("sealed").cloned())
            .unwrap_or_else(sealed_vectors);
        computed["sealed"] = sealed;
        let text = serde_json::to_string_pretty(&computed).unwrap() + "\n";
        std::fs::write(path(), text).unwrap();
        return;
    }
    let expected = existing.expect("specs/vectors/item.json");
    for key in ["items", "item_ref", "trees"] {
        assert_eq!(computed[key], expected[key], "vector section {key}");
    }
}

#[test]
fn vectors_decode() {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path()).unwrap()).unwrap();
    for (name, item) in items() {
        let bytes = unhex(&v["items"][name]["item"]);
        assert_eq!(Item::decode(&bytes).unwrap(), item, "{name}");
    }
    let r = ItemRef::from_uri(v["item_ref"]["uri"].as_str().unwrap()).unwrap();
    assert_eq!(hex(&r.encode()), v["item_ref"]["encoding"]);
}

#[test]
fn fixed_sealed_items_open() {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path()).unwrap()).unwrap();
    let items: Vec<(&str, Item)> = items();
    let sealed = v["sealed"].as_array().expect("sealed vectors");
    assert_eq!(sealed.len(), 4);
    for s in sealed {
        let mut store = MemoryChunks::new();
        for (locator, chunk) in s["chunks"].as_object().unwrap() {
            let l: [u8; 32] = unhex(&json!(locator)).try_into().unwrap();
            store.put(&Locator::from_bytes(l), &unhex(chunk)).unwrap();
        }
        let reference = ItemRef::from_uri(s["uri"].as_str().unwrap()).unwrap();
        let secrets = if s["recipient"] == "bob" {
            vec![Zeroizing::new(bob().x25519_secret_bytes())]
        } else {
            vec![]
        };
        let opened = seal::open(&mut store, &reference, &secrets, u64::MAX).unwrap();
        let expected = &items.iter().find(|(n, _)| *n == s["item"]).unwrap().1;
        assert_eq!(&opened, expected);
        if s["recipient"] == "bob" {
            // Alice is not a recipient.
            let alice_secret = vec![Zeroizing::new(alice().x25519_secret_bytes())];
            assert!(seal::open(&mut store, &reference, &alice_secret, u64::MAX).is_err());
        }
    }
}
