//! What the page shows of the person's keychain and feed book:
//! identities, safety numbers, followed feeds, and the authors whose
//! display components they trust ([`super::items`] shows items). Nothing
//! secret goes out: no passphrase, no secret key, no feed's read key
//! beyond the person's own follow URIs.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mtos_crypto::{PublicIdentity, Visibility};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Web;
use super::guard::refuse;
use crate::ClientError;
use crate::feeds::FeedBook;

/// The file that lists the authors whose display components the person
/// trusts.
pub const TRUST_FILE: &str = "web-trust.json";

/// An error as the page sees it.
pub(super) fn failed(e: &ClientError) -> Response {
    let status = match e {
        ClientError::NotFound(_) => StatusCode::NOT_FOUND,
        ClientError::Conflict(_) | ClientError::ContactChanged(_) => StatusCode::CONFLICT,
        ClientError::Refused(_)
        | ClientError::Label(_)
        | ClientError::Uri(_)
        | ClientError::BadImage(_)
        | ClientError::Keychain(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    refuse(status, &e.to_string())
}

pub(super) async fn identities(State(web): State<Arc<Web>>) -> Response {
    let keychain = match web.screen.keychain().await {
        Ok(k) => k,
        Err(e) => return failed(&e),
    };
    let list: Vec<_> = keychain
        .iter()
        .flat_map(|k| k.identities())
        .map(|i| {
            json!({
                "id": i.id().to_string(),
                "label": i.label().as_str(),
                "visibility": i.visibility().to_string(),
                "created": i.created(),
                "fingerprint": i.fingerprint().to_string(),
                "digits": i.fingerprint().digits(),
                "uri": i.public().to_uri(),
                "feed": mtos_crypto::feed::FeedKeys::of(i).follow().to_uri(),
            })
        })
        .collect();
    // A keychain on disk that the screen did not unlock (made after it
    // started) counts: creating one would be refused.
    let exists = keychain.is_some() || web.screen.home.keychain().exists();
    Json(json!({ "identities": list, "keychain": exists })).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewIdentity {
    label: Option<String>,
    #[serde(default)]
    private: bool,
    /// Only when the home has no keychain yet.
    passphrase: Option<String>,
}

pub(super) async fn new_identity(
    State(web): State<Arc<Web>>,
    Json(req): Json<NewIdentity>,
) -> Response {
    let label = match req
        .label
        .filter(|l| !l.trim().is_empty())
        .map(|l| mtos_crypto::Label::new(l.trim()))
    {
        None => None,
        Some(Ok(l)) => Some(l),
        Some(Err(e)) => return refuse(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    if let Some(p) = &req.passphrase
        && p.chars().count() < 8
    {
        return refuse(
            StatusCode::BAD_REQUEST,
            "a passphrase of at least 8 characters",
        );
    }
    let visibility = if req.private {
        Visibility::Private
    } else {
        Visibility::Public
    };
    let pass = req.passphrase.map(mtos_crypto::SecretString::from);
    match web.screen.add_identity(label, visibility, pass).await {
        Ok(i) => {
            Json(json!({ "id": i.id().to_string(), "label": i.label().as_str() })).into_response()
        }
        Err(e) => failed(&e),
    }
}

#[derive(Deserialize)]
pub(super) struct Which {
    id: String,
}

async fn public(web: &Web, id: &str) -> Result<(PublicIdentity, Visibility), ClientError> {
    let i = web.screen.identity(Some(id)).await?;
    Ok((i.public(), i.visibility()))
}

/// The identity's URI as a QR code (SVG drawn here, from our own code:
/// nothing of an item's).
pub(super) async fn qr(State(web): State<Arc<Web>>, Query(q): Query<Which>) -> Response {
    let (identity, _) = match public(&web, &q.id).await {
        Ok(i) => i,
        Err(e) => return failed(&e),
    };
    let uri = identity.to_uri().to_ascii_uppercase();
    let code = match qrcode::QrCode::with_error_correction_level(uri.as_bytes(), qrcode::EcLevel::M)
    {
        Ok(c) => c,
        Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, &format!("QR code: {e}")),
    };
    let svg = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(256, 256)
        .quiet_zone(true)
        .build();
    let mut r = Response::new(Body::from(svg));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("image/svg+xml"),
    );
    r
}

/// The identity's public card, as a file to give out of band: its URI
/// and fingerprint (secret keys stay with `mtos id export` in a
/// terminal).
pub(super) async fn export(State(web): State<Arc<Web>>, Query(q): Query<Which>) -> Response {
    let (identity, visibility) = match public(&web, &q.id).await {
        Ok(i) => i,
        Err(e) => return failed(&e),
    };
    let text = format!(
        "# mtos identity \"{}\" ({visibility})\n# fingerprint {}\n{}\n",
        identity.label(),
        identity.fingerprint(),
        identity.to_uri()
    );
    let mut r = Response::new(Body::from(text));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"mtos-{}.txt\"",
        identity.id()
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Compare {
    id: String,
    uri: String,
}

/// The safety number between one of the person's identities and a
/// contact's `mtos:id:` URI.
pub(super) async fn compare(State(web): State<Arc<Web>>, Json(req): Json<Compare>) -> Response {
    let contact = match PublicIdentity::from_uri(req.uri.trim()) {
        Ok(c) => c,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                &format!("not an mtos:id: URI: {e}"),
            );
        }
    };
    let me = match web.screen.identity(Some(&req.id)).await {
        Ok(i) => i,
        Err(e) => return failed(&e),
    };
    let number =
        mtos_crypto::fingerprint::SafetyNumber::between(&me.fingerprint(), &contact.fingerprint());
    Json(json!({
        "me": me.label().as_str(),
        "contact": contact.label().as_str(),
        "contact_id": contact.id().to_string(),
        "contact_fingerprint": contact.fingerprint().to_string(),
        "safety_number": number.to_string(),
    }))
    .into_response()
}

/// The feed book as it is on disk, read under the screen's book lock (a
/// poll round may be saving it).
pub(super) async fn book(web: &Web) -> Result<FeedBook, ClientError> {
    let _held = web.screen.book.lock().await;
    FeedBook::load(&web.screen.home)
}

pub(super) async fn feeds(State(web): State<Arc<Web>>) -> Response {
    let book = match book(&web).await {
        Ok(b) => b,
        Err(e) => return failed(&e),
    };
    let list: Vec<_> = book
        .follows
        .iter()
        .map(|f| {
            let owner = mtos_crypto::feed::FollowRef::from_uri(&f.uri)
                .ok()
                .and_then(|r| mtos_crypto::VerifyKey::from_bytes(r.owner).ok())
                .map(|k| k.id().to_string());
            json!({
                "label": f.label,
                "owner": owner,
                "next": f.next,
                "entries": f.entries.len(),
            })
        })
        .collect();
    Json(json!({ "feeds": list })).into_response()
}

/// The authors whose components the person trusts (hex verify keys).
pub(super) fn trusted_authors(home: &crate::Home) -> Vec<String> {
    std::fs::read_to_string(home.dir().join(TRUST_FILE))
        .ok()
        .and_then(|t| serde_json::from_str::<TrustFile>(&t).ok())
        .map(|t| t.component_authors)
        .unwrap_or_default()
}

#[derive(Serialize, Deserialize, Default)]
struct TrustFile {
    component_authors: Vec<String>,
}

pub(super) async fn trusted(State(web): State<Arc<Web>>) -> Response {
    Json(json!({ "component_authors": trusted_authors(&web.screen.home) })).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Trust {
    /// The author's verify key (hex).
    author: String,
    trusted: bool,
}

/// Trusts (or stops trusting) an author's display components.
pub(super) async fn trust(State(web): State<Arc<Web>>, Json(t): Json<Trust>) -> Response {
    let key = t.author.trim().to_ascii_lowercase();
    let valid = data_encoding::HEXLOWER
        .decode(key.as_bytes())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .is_some_and(|b| mtos_crypto::VerifyKey::from_bytes(b).is_ok());
    if !valid {
        return refuse(
            StatusCode::BAD_REQUEST,
            "an author is named by its verify key (64 hex digits)",
        );
    }
    let home = &web.screen.home;
    let _held = web.screen.book.lock().await;
    let mut list = trusted_authors(home);
    list.retain(|k| k != &key);
    if t.trusted {
        list.push(key);
    }
    let text = serde_json::to_string_pretty(&TrustFile {
        component_authors: list.clone(),
    })
    .unwrap_or_default();
    let path = home.dir().join(TRUST_FILE);
    let tmp = home.dir().join(format!("{TRUST_FILE}.tmp"));
    let written = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        return refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("{}: {e}", path.display()),
        );
    }
    Json(json!({ "component_authors": list })).into_response()
}
