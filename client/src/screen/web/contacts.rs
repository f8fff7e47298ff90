//! What the page does with contacts (`specs/identity.md` §9): the list,
//! one added from a URI or from a photo of its QR code, verified after
//! the safety numbers were compared, removed. Short-code exchanges go
//! through `/api` (`contact_invite`, `contact_accept`).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mtos_crypto::keychain::Source;
use mtos_crypto::{Label, PublicIdentity, SafetyNumber};
use serde::Deserialize;
use serde_json::json;

use super::Web;
use super::guard::refuse;
use super::views::failed;
use crate::ClientError;
use crate::contacts::{self, Added};

/// The largest image the page may send for a QR code.
pub const MAX_QR_IMAGE: usize = crate::qr::MAX_IMAGE_FILE as usize;

pub(super) async fn list(State(web): State<Arc<Web>>) -> Response {
    let keychain = match web.screen.keychain().await {
        Ok(k) => k,
        Err(e) => return failed(&e),
    };
    // Safety numbers with each of the person's identities: the one they
    // gave this contact is among them.
    let mine: Vec<_> = keychain.iter().flat_map(|k| k.identities()).collect();
    let list: Vec<_> = keychain
        .iter()
        .flat_map(|k| k.contacts())
        .map(|c| {
            let id = c.identity();
            let numbers = |p: &PublicIdentity| {
                mine.iter()
                    .map(|m| {
                        json!({
                            "as": m.label().as_str(),
                            "number": SafetyNumber::between(&m.fingerprint(), &p.fingerprint()).to_string(),
                        })
                    })
                    .collect::<Vec<_>>()
            };
            json!({
                "label": c.label().as_str(),
                "their_label": id.label().as_str(),
                "id": id.id().to_string(),
                "fingerprint": id.fingerprint().to_string(),
                "uri": id.to_uri(),
                "source": c.source().to_string(),
                "added": c.added(),
                "verified": c.verified(),
                "safety_numbers": numbers(id),
                "changed": c.changed().map(|n| json!({
                    "fingerprint": n.fingerprint().to_string(),
                    "safety_numbers": numbers(n),
                })),
            })
        })
        .collect();
    Json(json!({ "contacts": list })).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Add {
    uri: String,
    label: Option<String>,
}

fn label(text: Option<String>) -> Result<Option<Label>, mtos_crypto::LabelError> {
    text.filter(|l| !l.trim().is_empty())
        .map(|l| Label::new(l.trim()))
        .transpose()
}

async fn add_record(
    web: &Web,
    record: PublicIdentity,
    source: Source,
    label: Option<Label>,
) -> Response {
    let now = mtos_net::unix_now();
    let done = web
        .screen
        .edit_keychain(move |k| contacts::add(k, &record, source, label, now))
        .await;
    match done {
        Ok((label, Added::New)) => {
            Json(json!({ "label": label.as_str(), "added": true })).into_response()
        }
        Ok((label, Added::Known)) => {
            Json(json!({ "label": label.as_str(), "added": false })).into_response()
        }
        Ok((label, Added::Changed)) => failed(&ClientError::ContactChanged(label.to_string())),
        Err(e) => failed(&e),
    }
}

/// A contact from its `mtos:id:` URI.
pub(super) async fn add(State(web): State<Arc<Web>>, Json(req): Json<Add>) -> Response {
    let record = match PublicIdentity::from_uri(req.uri.trim()) {
        Ok(r) => r,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                &format!("not an mtos:id: URI: {e}"),
            );
        }
    };
    match label(req.label) {
        Ok(l) => add_record(&web, record, Source::Uri, l).await,
        Err(e) => refuse(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

#[derive(Deserialize)]
pub(super) struct QrQuery {
    label: Option<String>,
}

/// A contact from a photo or screenshot of its QR code (the body).
pub(super) async fn add_qr(
    State(web): State<Arc<Web>>,
    Query(q): Query<QrQuery>,
    body: Bytes,
) -> Response {
    let label = match label(q.label) {
        Ok(l) => l,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let texts = match tokio::task::spawn_blocking(move || crate::qr::decode(&body)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return failed(&e),
        Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let uri = match crate::qr::identity_uri(&texts) {
        Ok(u) => u,
        Err(e) => return failed(&e),
    };
    match PublicIdentity::from_uri(uri.trim()) {
        Ok(record) => add_record(&web, record, Source::QrCode, label).await,
        Err(e) => refuse(StatusCode::BAD_REQUEST, &format!("the QR code's URI: {e}")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Change {
    contact: String,
    #[serde(default)]
    accept_change: bool,
    #[serde(default)]
    remove: bool,
    /// The fingerprint the page showed beside the numbers the person
    /// compared: the keys verified or taken must still be those.
    fingerprint: Option<String>,
}

/// Marks a contact verified (the person compared the safety number the
/// list shows), takes a flagged contact's new keys, or removes it.
pub(super) async fn change(State(web): State<Arc<Web>>, Json(req): Json<Change>) -> Response {
    let now = mtos_net::unix_now();
    let done = web
        .screen
        .edit_keychain(move |k| {
            if req.remove {
                // Removing needs no comparison.
                k.remove_contact(&req.contact)?;
                return Ok(());
            }
            let c = k.find_contact_mut(&req.contact)?;
            let keys = contacts::keys_to_verify(c, req.accept_change)?;
            let digits = |t: &str| t.chars().filter(char::is_ascii_digit).collect::<String>();
            if req
                .fingerprint
                .as_deref()
                .is_none_or(|f| digits(f) != keys.fingerprint().digits())
            {
                return Err(ClientError::Conflict(format!(
                    "the keys of \"{}\" are not the ones the page showed: reload the page and compare again",
                    c.label()
                )));
            }
            contacts::mark_verified(c, req.accept_change, now);
            Ok(())
        })
        .await;
    match done {
        Ok(()) => Json(json!({ "done": true })).into_response(),
        Err(e) => failed(&e),
    }
}
