//! `POST /view/thread`: an item's thread (`crate::thread`,
//! `specs/item.md` §8) for the page: the nodes in display order, each
//! with its depth, how it points to its parent, and its summary or why it
//! is missing. Built from the store and the followed feeds, private items
//! opened with the keychain's secrets; nothing is fetched (the page
//! fetches a missing item and asks again).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use mtos_crypto::item::ItemRef;
use mtos_crypto::item::seal::{self, MAX_SEALED_LEN};
use serde::Deserialize;
use serde_json::json;

use super::Web;
use super::items::{reference, with_store};
use super::views::failed;
use crate::screen::state::Screen;
use crate::thread::{self, Head, ItemSource};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ThreadQuery {
    reference: String,
}

struct Stored<'a> {
    screen: &'a Screen,
    secrets: &'a [zeroize::Zeroizing<[u8; 32]>],
}

impl ItemSource for Stored<'_> {
    fn head(&mut self, reference: &ItemRef) -> Result<Head, String> {
        match seal::open_head(
            &mut &self.screen.store,
            reference,
            self.secrets,
            MAX_SEALED_LEN,
            thread::TEXT_BYTES,
        ) {
            Ok((item, lengths, data)) => Ok(Head::new(item, &lengths, &data)),
            Err(mtos_crypto::OpenError::ChunkMissing(_)) => Err("not in the store".into()),
            Err(e) => Err(e.to_string()),
        }
    }
}

pub(super) async fn thread(State(web): State<Arc<Web>>, Json(q): Json<ThreadQuery>) -> Response {
    let start = match reference(&q.reference) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let book = match super::views::book(&web).await {
        Ok(b) => b,
        Err(e) => return failed(&e),
    };
    let mut known: Vec<ItemRef> = book
        .follows
        .iter()
        .flat_map(|f| f.entries.iter())
        .filter_map(|e| ItemRef::from_uri(&e.item).ok())
        .collect();
    let built = with_store(&web, move |screen, secrets| {
        known.extend(screen.store.known().unwrap_or_default());
        let t = thread::build(&start, &known, &mut Stored { screen, secrets });
        let nodes: Vec<_> = t
            .walk()
            .into_iter()
            .map(|(i, depth)| {
                let n = &t.nodes[i];
                json!({
                    "reference": n.reference.to_uri(),
                    "depth": depth,
                    "kind": n.kind.map(|k| k.to_string()),
                    "focus": i == t.focus,
                    "created_ms": n.item.as_ref().ok().map(|h| h.item.created_ms()),
                    "summary": n.item.as_ref().ok().map(|h| json!({
                        "content_type": h.item.content_type().to_string(),
                        "author": h.item.author().id().to_string(),
                        "text": h.text.clone().unwrap_or_default(),
                        "tags": h.item.tags(),
                    })),
                    "missing": n.item.as_ref().err(),
                })
            })
            .collect();
        json!({ "nodes": nodes, "truncated": t.truncated })
    })
    .await;
    match built {
        Ok(v) => Json(v).into_response(),
        Err(r) => *r,
    }
}
