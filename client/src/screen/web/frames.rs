//! Items that bring their own display component (`specs/item.md` §6): the
//! component item's HTML, served once from `/frame/ID` with its own
//! policy (a sandbox without same-origin, nothing to fetch, nowhere to
//! navigate or submit), to a frame the page draws it in; the page then
//! hands the displayed item to it over a `MessageChannel`. A component is
//! drawn only when the person trusts its author's components.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mtos_crypto::item::{ItemRef, RefKind};
use serde::Deserialize;
use serde_json::json;

use super::Web;
use super::guard::refuse;
use super::views::{failed, trusted_authors};
use crate::ClientError;

/// A component document is at most this long.
pub const MAX_COMPONENT: usize = 256 * 1024;
/// Frames registered and not yet loaded, at most.
const WAITING: usize = 64;
/// How long a registered frame waits to be loaded.
const TTL: Duration = Duration::from_secs(120);

/// The policy of a component's frame (`specs/item.md` §6): one script
/// only, the prelude followed by the component's code, allowed by its
/// hash (so no other script runs, in the frame or in any frame it makes,
/// which inherit the policy: a fresh realm would hand back what the
/// prelude took away); pictures and sounds from what it was handed;
/// nothing fetched; no frame, worker, form or base; and a sandbox
/// without same-origin (its origin is opaque: no cookie, no storage, no
/// API). `{HASH}` is the script's SHA-256, base64.
const FRAME_POLICY: &str = "sandbox allow-scripts; default-src 'none'; \
    script-src 'sha256-{HASH}'; style-src 'unsafe-inline'; img-src blob: data:; \
    media-src blob: data:; font-src data:; form-action 'none'; base-uri 'none'; \
    frame-src 'none'; child-src 'none'; worker-src 'none'; manifest-src 'none'; \
    object-src 'none'; connect-src 'none'";

/// The policy of anything else under `/frame/` (a frame's second load,
/// an unknown id): nothing runs.
const FRAME_ERROR_POLICY: &str = "sandbox; default-src 'none'";

/// What runs before a component's own code, in the same script
/// (`specs/item.md` §6): it takes WebRTC away (STUN and TURN reach any
/// address whatever the fetch directives say) and gives the component
/// `window.mtos`, the one way to hear about its item and to ask the page
/// for anything.
pub const PRELUDE: &str = include_str!("assets/prelude.js");

/// A component's frame document and its policy.
pub fn document(markup: &str, code: &str) -> (String, String) {
    use sha2::Digest;
    let script = format!("{PRELUDE}\n{code}\n");
    let hash = data_encoding::BASE64.encode(&sha2::Sha256::digest(script.as_bytes()));
    let doc = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"></head><body>{markup}<script>{script}</script></body></html>"
    );
    (doc, FRAME_POLICY.replace("{HASH}", &hash))
}

/// A frame's document and its policy.
type Frame = (String, String);

#[derive(Default)]
pub(in crate::screen) struct Frames {
    waiting: Mutex<HashMap<String, (Frame, Instant)>>,
}

impl Frames {
    fn add(&self, frame: Frame) -> Option<String> {
        let mut w = self.waiting.lock().ok()?;
        w.retain(|_, (_, at)| at.elapsed() < TTL);
        if w.len() >= WAITING {
            return None;
        }
        let id: [u8; 16] = rand::random();
        let id = data_encoding::HEXLOWER.encode(&id);
        w.insert(id.clone(), (frame, Instant::now()));
        Some(id)
    }

    /// A frame's document and policy, once.
    fn take(&self, id: &str) -> Option<Frame> {
        let (frame, at) = self.waiting.lock().ok()?.remove(id)?;
        (at.elapsed() < TTL).then_some(frame)
    }
}

/// A port nothing should ever connect to: the page points a
/// `preconnect` link at it and asks whether the browser connected. A
/// browser that does (network prediction on) would also connect, for a
/// component, to addresses the component names, showing the person's
/// address to whoever holds them (`specs/item.md` §6): the page then
/// draws no component.
pub(in crate::screen) struct Canary {
    port: u16,
    seen: Arc<std::sync::atomic::AtomicU64>,
}

impl Canary {
    pub(super) async fn listen() -> Result<Self, ClientError> {
        let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(|e| ClientError::Refused(format!("the web screen's canary port: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| ClientError::Refused(format!("the web screen's canary port: {e}")))?
            .port();
        let seen = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = seen.clone();
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    // Counted and closed at once: nothing is read.
                    Ok(_) => {
                        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        Ok(Self { port, seen })
    }
}

/// `GET /view/canary`: the canary's port and the connections it has seen.
pub(super) async fn canary(State(web): State<Arc<Web>>) -> Response {
    Json(json!({
        "port": web.canary.port,
        "seen": web.canary.seen.load(std::sync::atomic::Ordering::Relaxed),
    }))
    .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Register {
    /// The displayed item.
    reference: String,
}

/// Registers the frame for the component of the item `reference`: both
/// items must be in the store, and the component's author trusted.
pub(super) async fn register(State(web): State<Arc<Web>>, Json(r): Json<Register>) -> Response {
    let reference = match super::items::reference(&r.reference) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let found = super::items::with_store(&web, move |screen, secrets| -> Result<_, ClientError> {
        let open = |r: &ItemRef| {
            mtos_crypto::item::seal::open(
                &mut &screen.store,
                r,
                secrets,
                mtos_crypto::item::seal::MAX_SEALED_LEN,
            )
        };
        let item = open(&reference)?;
        let Some(c) = item.refs().iter().find(|r| r.kind == RefKind::Component) else {
            return Err(ClientError::NotFound("this item names no component".into()));
        };
        let component = open(&c.target).map_err(|_| {
            ClientError::NotFound(format!(
                "component not in the store: fetch {}",
                c.target.to_uri()
            ))
        })?;
        let part = |mimes: &[&str]| {
            component
                .parts()
                .iter()
                .find(|p| {
                    p.mime()
                        .split(';')
                        .next()
                        .is_some_and(|m| mimes.contains(&m.trim().to_ascii_lowercase().as_str()))
                })
                .and_then(|p| std::str::from_utf8(p.data()).ok())
        };
        let (markup, code) = (
            part(&["text/html"]),
            part(&["text/javascript", "application/javascript"]),
        );
        if markup.is_none() && code.is_none() {
            return Err(ClientError::Refused(
                "the component item holds neither text/html nor text/javascript".into(),
            ));
        }
        let (markup, code) = (markup.unwrap_or(""), code.unwrap_or(""));
        // The HTML parser would end the script there (and its hash would
        // no longer match): refused, rather than silently not run.
        let lower = code.to_ascii_lowercase();
        if lower.contains("</script") || lower.contains("<!--") {
            return Err(ClientError::Refused(
                "a component's code may not hold `</script` or `<!--` (write them as '<\\/script', '<\\!--')".into(),
            ));
        }
        if markup.len() + code.len() > MAX_COMPONENT {
            return Err(ClientError::Refused(
                "a component is at most 256 KiB".into(),
            ));
        }
        Ok((
            document(markup, code),
            *component.author().as_bytes(),
            component.author().id().to_string(),
        ))
    })
    .await;
    let (frame, author, author_id) = match found {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => return failed(&e),
        Err(r) => return *r,
    };
    let author_hex = data_encoding::HEXLOWER.encode(&author);
    if !trusted_authors(&web.screen.home).contains(&author_hex) {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({ "untrusted": author_hex, "author": author_id })),
        )
            .into_response();
    }
    match web.frames.add(frame) {
        Some(id) => {
            Json(json!({ "frame": format!("/frame/{id}"), "author": author_id, "author_key": author_hex })).into_response()
        }
        None => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many frames are waiting to load",
        ),
    }
}

/// A component's frame, once; anything else under `/frame/` runs
/// nothing.
pub(super) async fn serve(State(web): State<Arc<Web>>, Path(id): Path<String>) -> Response {
    let (doc, policy, status) = match web.frames.take(&id) {
        Some((doc, policy)) => (doc, policy, StatusCode::OK),
        None => (
            "no such frame".to_owned(),
            FRAME_ERROR_POLICY.to_owned(),
            StatusCode::NOT_FOUND,
        ),
    };
    let mut r = Response::new(Body::from(doc));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&policy) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("SAMEORIGIN"),
    );
    r
}
