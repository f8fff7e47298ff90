//! Items as the page sees them, from the screen's store: the timeline
//! (entries of followed feeds with a summary of each item held), an item
//! opened and verified, and its parts by handle, never by reference (a
//! reference carries the item's key, and URLs are kept in history).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mtos_crypto::item::seal::{self, MAX_SEALED_LEN};
use mtos_crypto::item::{Item, ItemRef, PartKind, RefKind};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Web;
use super::guard::refuse;
use super::views::{failed, trusted_authors};
use crate::ClientError;
use crate::screen::state::Screen;

/// Text parts longer than this are not sent whole in an item's view.
const TEXT_INLINE: usize = 256 * 1024;
/// Entries the timeline shows.
const TIMELINE: usize = 200;
/// Part handles kept; the oldest go first.
const HANDLES: usize = 4096;

/// Handles to (item, part), and the order they were given in.
type HandleMap = (HashMap<String, (ItemRef, usize)>, VecDeque<String>);

/// Handles for items' parts: the page asks for `/view/part?h=…`, so no
/// item reference (which carries the item's key) is ever in a URL.
#[derive(Default)]
pub(in crate::screen) struct Handles {
    map: Mutex<HandleMap>,
}

impl Handles {
    fn give(&self, reference: &ItemRef, part: usize) -> String {
        let id: [u8; 16] = rand::random();
        let id = data_encoding::HEXLOWER.encode(&id);
        if let Ok(mut m) = self.map.lock() {
            let (map, order) = &mut *m;
            if order.len() >= HANDLES
                && let Some(old) = order.pop_front()
            {
                map.remove(&old);
            }
            map.insert(id.clone(), (reference.clone(), part));
            order.push_back(id.clone());
        }
        id
    }

    fn get(&self, id: &str) -> Option<(ItemRef, usize)> {
        self.map.lock().ok()?.0.get(id).cloned()
    }
}

/// One line of an item for lists: its type, its first text's beginning,
/// tags, and whether it holds media.
#[derive(Serialize)]
struct Summary {
    content_type: String,
    author: String,
    text: String,
    tags: Vec<String>,
    media: usize,
}

fn summary(item: &Item) -> Summary {
    let text = item
        .parts()
        .iter()
        .find_map(|p| p.as_text())
        .unwrap_or("")
        .chars()
        .take(280)
        .collect();
    Summary {
        content_type: item.content_type().to_string(),
        author: item.author().id().to_string(),
        text,
        tags: item.tags().to_vec(),
        media: item
            .parts()
            .iter()
            .filter(|p| p.kind() == PartKind::Binary)
            .count(),
    }
}

/// Items kept opened, for their parts (a page asks for each picture of an
/// item apart); each at most [`CACHED_ITEM`] bytes of body.
#[derive(Default)]
pub(in crate::screen) struct Opened {
    items: Mutex<VecDeque<(ItemRef, Arc<Item>)>>,
}

/// Items kept opened.
const CACHED: usize = 4;
/// The largest body an item kept opened may have.
const CACHED_ITEM: u64 = 64 << 20;

impl Opened {
    fn get(&self, reference: &ItemRef) -> Option<Arc<Item>> {
        let items = self.items.lock().ok()?;
        items
            .iter()
            .find(|(r, _)| r == reference)
            .map(|(_, i)| i.clone())
    }

    fn keep(&self, reference: &ItemRef, item: &Arc<Item>) {
        if item.body_len() > CACHED_ITEM {
            return;
        }
        if let Ok(mut items) = self.items.lock() {
            items.retain(|(r, _)| r != reference);
            if items.len() >= CACHED {
                items.pop_front();
            }
            items.push_back((reference.clone(), item.clone()));
        }
    }
}

/// The item `reference` from the store, if it is there whole and opens.
fn open_local(
    screen: &Screen,
    reference: &ItemRef,
    secrets: &[zeroize::Zeroizing<[u8; 32]>],
) -> Result<Option<Item>, ClientError> {
    // One walk of the tree: a chunk the store lacks ends it.
    match seal::open(&mut &screen.store, reference, secrets, MAX_SEALED_LEN) {
        Ok(item) => Ok(Some(item)),
        Err(mtos_crypto::OpenError::ChunkMissing(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// `text` as an item reference, or the page's `400`.
pub(super) fn reference(text: &str) -> Result<ItemRef, Box<Response>> {
    ItemRef::from_uri(text.trim()).map_err(|e| {
        Box::new(refuse(
            StatusCode::BAD_REQUEST,
            &format!("not an mtos:item: reference: {e}"),
        ))
    })
}

/// Runs `f` with the screen and the keychain's item secrets in a
/// blocking task, at most [`super::OPENING`] at once: each opens items
/// whole, in memory.
pub(super) async fn with_store<T: Send + 'static>(
    web: &Web,
    f: impl FnOnce(&Screen, &[zeroize::Zeroizing<[u8; 32]>]) -> T + Send + 'static,
) -> Result<T, Box<Response>> {
    let secrets = web
        .screen
        .item_secrets()
        .await
        .map_err(|e| Box::new(failed(&e)))?;
    let Ok(_opening) = web.opening.clone().acquire_owned().await else {
        return Err(Box::new(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the screen is stopping",
        )));
    };
    let screen = web.screen.clone();
    tokio::task::spawn_blocking(move || f(&screen, &secrets))
        .await
        .map_err(|e| Box::new(refuse(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())))
}

/// The item `reference`, opened from the store (or kept opened): `404`
/// when the store lacks it (the page fetches it and asks again), `403`
/// when it is private and addressed to none of the keychain's identities.
async fn opened(web: &Web, reference: &ItemRef) -> Result<Arc<Item>, Box<Response>> {
    if let Some(i) = web.opened.get(reference) {
        return Ok(i);
    }
    let r = reference.clone();
    match with_store(web, move |screen, secrets| open_local(screen, &r, secrets)).await? {
        Ok(Some(i)) => {
            let i = Arc::new(i);
            web.opened.keep(reference, &i);
            Ok(i)
        }
        Ok(None) => Err(Box::new(refuse(
            StatusCode::NOT_FOUND,
            "not in the store: fetch it",
        ))),
        Err(ClientError::Open(mtos_crypto::OpenError::NotARecipient)) => Err(Box::new(refuse(
            StatusCode::FORBIDDEN,
            "a private item not addressed to any of your identities",
        ))),
        Err(e) => Err(Box::new(failed(&e))),
    }
}

pub(super) async fn timeline(State(web): State<Arc<Web>>) -> Response {
    let book = match super::views::book(&web).await {
        Ok(b) => b,
        Err(e) => return failed(&e),
    };
    let mut entries: Vec<(String, crate::feeds::SeenEntry)> = book
        .follows
        .iter()
        .flat_map(|f| f.entries.iter().map(|e| (f.label.clone(), e.clone())))
        .collect();
    entries.sort_by(|a, b| b.1.time_ms.cmp(&a.1.time_ms).then(b.1.n.cmp(&a.1.n)));
    entries.truncate(TIMELINE);
    let handles = web.clone();
    let list = with_store(&web, move |screen, secrets| {
        entries
            .into_iter()
            .map(|(feed, e)| {
                let opened = ItemRef::from_uri(&e.item)
                    .map_err(ClientError::from)
                    .and_then(|r| open_local(screen, &r, secrets).map(|i| (r, i)));
                let (item, thumb) = match &opened {
                    Ok((r, Some(i))) => {
                        let thumb = i
                            .parts()
                            .iter()
                            .position(|p| {
                                p.kind() == PartKind::Binary && p.mime().starts_with("image/")
                            })
                            .map(|n| handles.handles.give(r, n));
                        (Some(summary(i)), thumb)
                    }
                    _ => (None, None),
                };
                json!({
                    "feed": feed,
                    "n": e.n,
                    "time_ms": e.time_ms,
                    "item": e.item,
                    "fetched": item.is_some(),
                    "summary": item,
                    "image": thumb.map(|h| format!("/view/part?h={h}")),
                    "error": opened.err().map(|e| e.to_string()),
                })
            })
            .collect::<Vec<_>>()
    })
    .await;
    match list {
        Ok(list) => Json(json!({ "entries": list })).into_response(),
        Err(r) => *r,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ItemQuery {
    reference: String,
}

/// An item from the store, opened and verified: its header and its parts
/// (text inline, binary by handle). `404` when the store lacks it (the
/// page asks the API to fetch it, then asks again).
pub(super) async fn item(State(web): State<Arc<Web>>, Json(q): Json<ItemQuery>) -> Response {
    let reference = match reference(&q.reference) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let keychain = web.screen.keychain().await.ok().flatten();
    let item = match opened(&web, &reference).await {
        Ok(i) => i,
        Err(r) => return *r,
    };
    let author = item.author();
    let mine = keychain
        .as_ref()
        .and_then(|k| k.by_key(author))
        .map(|i| i.label().as_str().to_owned());
    let author_hex = data_encoding::HEXLOWER.encode(author.as_bytes());
    let trusted = trusted_authors(&web.screen.home);
    let parts: Vec<_> = item
        .parts()
        .iter()
        .enumerate()
        .map(|(n, p)| {
            let text = p.as_text().filter(|t| t.len() <= TEXT_INLINE);
            json!({
                "kind": match p.kind() { PartKind::Text => "text", PartKind::Binary => "binary" },
                "mime": p.mime(),
                "length": p.data().len(),
                "text": text,
                "media": format!("/view/part?h={}", web.handles.give(&reference, n)),
            })
        })
        .collect();
    let refs: Vec<_> = item
        .refs()
        .iter()
        .map(|r| json!({ "kind": r.kind.to_string(), "reference": r.target.to_uri() }))
        .collect();
    let component = item
        .refs()
        .iter()
        .find(|r| r.kind == RefKind::Component)
        .map(|r| r.target.to_uri());
    Json(json!({
        "reference": reference.to_uri(),
        "private": reference.audience() == mtos_crypto::item::Audience::Private,
        "content_type": item.content_type().to_string(),
        "author": { "id": author.id().to_string(), "key": author_hex, "mine": mine },
        "created_ms": item.created_ms(),
        "tags": item.tags(),
        "refs": refs,
        "component": component,
        "parts": parts,
        "trusted_author": trusted.contains(&author_hex),
    }))
    .into_response()
}

/// Types served as they are; anything else is `application/octet-stream`
/// (an SVG or an HTML part would be script on the page's origin).
fn served_type(mime: &str) -> &'static str {
    let base = mime
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match base.as_str() {
        "image/png" => "image/png",
        "image/jpeg" => "image/jpeg",
        "image/gif" => "image/gif",
        "image/webp" => "image/webp",
        "image/avif" => "image/avif",
        "audio/mpeg" => "audio/mpeg",
        "audio/ogg" => "audio/ogg",
        "audio/wav" | "audio/x-wav" => "audio/wav",
        "audio/flac" => "audio/flac",
        "audio/webm" => "audio/webm",
        "video/mp4" => "video/mp4",
        "video/webm" => "video/webm",
        "video/ogg" => "video/ogg",
        "text/plain" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[derive(Deserialize)]
pub(super) struct PartQuery {
    h: String,
}

/// One part's bytes, by handle: served as an attachment, never sniffed,
/// under a policy that runs nothing even if a browser showed it.
pub(super) async fn part(State(web): State<Arc<Web>>, Query(q): Query<PartQuery>) -> Response {
    let Some((reference, n)) = web.handles.get(&q.h) else {
        return refuse(StatusCode::NOT_FOUND, "no such part (reload the item)");
    };
    let item = match opened(&web, &reference).await {
        Ok(i) => i,
        Err(r) => return *r,
    };
    let Some(p) = item.parts().get(n) else {
        return refuse(StatusCode::NOT_FOUND, "no such part");
    };
    let mut r = Response::new(Body::from(p.data().to_vec()));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(served_type(p.mime())),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"part\""),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    r
}
