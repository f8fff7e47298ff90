//! `mtos item thread REF`: an item's thread as a tree
//! (`mtos_client::thread`, `specs/item.md` §8).

use std::collections::HashMap;
use std::fmt::Write as _;

use mtos_client::feeds::FeedBook;
use mtos_client::store::{ChunkStore, STORE_DIR};
use mtos_client::thread::{self, Head, ItemSource, Thread};
use mtos_client::{ClientError, Home};
use mtos_crypto::OpenError;
use mtos_crypto::feed::FollowRef;
use mtos_crypto::item::seal::{self, MAX_SEALED_LEN};
use mtos_crypto::item::{Audience, ItemRef};

use crate::common::date;
use crate::item::printable;

/// Opens public items from the local store. A private item's key is the
/// keychain's: `mtos item open` asks for it; a thread shows such an item
/// as not opened.
struct Local<'a>(&'a ChunkStore);

impl ItemSource for Local<'_> {
    fn head(&mut self, reference: &ItemRef) -> Result<Head, String> {
        if reference.audience() == Audience::Private {
            return Err("a private item: `mtos item open` opens it with your keychain".into());
        }
        match seal::open_head(
            &mut &*self.0,
            reference,
            &[],
            MAX_SEALED_LEN,
            thread::TEXT_BYTES,
        ) {
            Ok((item, lengths, data)) => Ok(Head::new(item, &lengths, &data)),
            Err(OpenError::ChunkMissing(_)) => {
                Err("not in the local store (--fetch fetches it)".into())
            }
            Err(e) => Err(e.to_string()),
        }
    }
}

/// The thread of `reference` from what this home holds, and the labels
/// of followed feeds by their owner's key.
pub fn build(
    home: &Home,
    reference: &ItemRef,
) -> Result<(Thread, HashMap<[u8; 32], String>), ClientError> {
    let path = home.dir().join(STORE_DIR);
    home.ensure()?;
    let store = ChunkStore::open_for_reading(&path)?;
    let book = FeedBook::load(home)?;
    let mut known: Vec<ItemRef> = Vec::new();
    let mut labels = HashMap::new();
    for f in &book.follows {
        if let Ok(follow) = FollowRef::from_uri(&f.uri) {
            labels.insert(follow.owner, f.label.clone());
        }
        known.extend(
            f.entries
                .iter()
                .filter_map(|e| ItemRef::from_uri(&e.item).ok()),
        );
    }
    known.extend(store.known().map_err(|e| ClientError::Store {
        path: path.clone(),
        reason: e.to_string(),
    })?);
    Ok((thread::build(reference, &known, &mut Local(&store)), labels))
}

/// The thread as the terminal shows it: one item a line (type, author,
/// date, how it points to its parent, its first line of text), indented
/// by depth, the item asked about marked, missing items with why.
pub fn render(t: &Thread, labels: &HashMap<[u8; 32], String>) -> String {
    let mut out = String::new();
    let missing = t.nodes.iter().filter(|n| n.item.is_err()).count();
    let _ = writeln!(
        out,
        "thread of {} item(s){}{}",
        t.nodes.len(),
        if missing > 0 {
            format!(", {missing} missing")
        } else {
            String::new()
        },
        if t.truncated {
            " (cut at its bounds)"
        } else {
            ""
        }
    );
    for (i, depth) in t.walk() {
        let n = &t.nodes[i];
        let indent = "  ".repeat(depth);
        let mark = if i == t.focus { "*" } else { "-" };
        let how = n.kind.map(|k| format!("{k}: ")).unwrap_or_default();
        match &n.item {
            Ok(head) => {
                let item = &head.item;
                let author = item.author();
                let who = labels.get(author.as_bytes()).map_or_else(
                    || author.id().to_string(),
                    |l| format!("\"{}\"", printable(l)),
                );
                let _ = writeln!(
                    out,
                    "{indent}{mark} {how}{} by {who}, {}",
                    item.content_type(),
                    date(item.created_ms() / 1000)
                );
                if let Some(text) = &head.text {
                    let line: String = text
                        .lines()
                        .next()
                        .unwrap_or("")
                        .chars()
                        .take(100)
                        .collect();
                    let _ = writeln!(out, "{indent}  {}", printable(&line));
                }
            }
            Err(why) => {
                let _ = writeln!(out, "{indent}{mark} {how}(missing: {})", printable(why));
            }
        }
        let _ = writeln!(out, "{indent}  {}", n.reference.to_uri());
    }
    out
}

/// Fetches one item (by its URI) into the store.
pub type Fetch<'a> = &'a dyn Fn(&str) -> Result<(), ClientError>;

/// `mtos item thread REF`, with what `fetch` (the network's, or none)
/// brings: the root of the chain as far as it goes is fetched while it is
/// missing and fetching succeeds.
pub fn run(home: &Home, reference: &str, fetch: Option<Fetch<'_>>) -> Result<String, ClientError> {
    let parsed = ItemRef::from_uri(reference)?;
    let (mut t, mut labels) = build(home, &parsed)?;
    if let Some(fetch) = fetch {
        for _ in 0..thread::MAX_DEPTH {
            let root = &t.nodes[t.root];
            if root.item.is_ok() || root.reference.audience() == Audience::Private {
                break;
            }
            let uri = root.reference.to_uri();
            if let Err(e) = fetch(&uri) {
                eprintln!("could not fetch {uri}: {e}");
                break;
            }
            (t, labels) = build(home, &parsed)?;
        }
    }
    Ok(render(&t, &labels))
}
