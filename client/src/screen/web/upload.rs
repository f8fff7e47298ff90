//! `POST /upload`: a file the page sends for a publish, written to the
//! home's `uploads/` folder (owner-only) under a random name that keeps
//! the original's extension (the part's type is guessed from it). A
//! publish from the page names uploads by that name, never a path.
//! Bounded: one upload is at most an item's size, and the folder holds at
//! most [`MAX_WAITING`] files and [`MAX_BYTES`]; uploads older than a day
//! are removed when the screen starts.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::Web;
use super::guard::refuse;
use crate::Home;
use crate::screen::api::{ApiError, ErrorKind};

/// The folder, in the home.
pub const UPLOADS_DIR: &str = "uploads";
/// Files waiting at once.
const MAX_WAITING: usize = 64;
/// Bytes waiting at once (two items at their largest).
const MAX_BYTES: u64 = 2 << 30;
/// One upload (an item's parts sum to at most 2^30 bytes).
const MAX_UPLOAD: u64 = 1 << 30;

fn dir(home: &Home) -> PathBuf {
    home.dir().join(UPLOADS_DIR)
}

/// Removes uploads older than a day.
pub(super) fn clean(home: &Home) {
    let Ok(entries) = std::fs::read_dir(dir(home)) else {
        return;
    };
    for e in entries.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(86_400));
        if old {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// The path of upload `name` (`u-` and 32 hex digits, then an optional
/// extension of up to 10 letters and digits); anything else is refused.
pub(super) fn path(home: &Home, name: &str) -> Result<PathBuf, ApiError> {
    let bad = || {
        ApiError::new(
            ErrorKind::BadInput,
            "the page publishes uploads only (`u-…` names from /upload)",
        )
    };
    let (stem, ext) = match name.split_once('.') {
        Some((s, e)) => (s, Some(e)),
        None => (name, None),
    };
    let hex = stem.strip_prefix("u-").ok_or_else(bad)?;
    if hex.len() != 32
        || !hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return Err(bad());
    }
    if let Some(e) = ext
        && (e.is_empty() || e.len() > 10 || !e.bytes().all(|b| b.is_ascii_alphanumeric()))
    {
        return Err(bad());
    }
    let p = dir(home).join(name);
    if !p.is_file() {
        return Err(ApiError::new(
            ErrorKind::NotFound,
            format!("no upload {name} (uploads are kept a day)"),
        ));
    }
    Ok(p)
}

/// The extension kept from the name the page gives, if it is a plain one.
fn extension(headers: &HeaderMap) -> Option<String> {
    let name = headers.get("x-file-name")?.to_str().ok()?;
    let (_, ext) = name.rsplit_once('.')?;
    (!ext.is_empty() && ext.len() <= 10 && ext.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then(|| ext.to_ascii_lowercase())
}

fn waiting(home: &Home) -> (usize, u64) {
    let Ok(entries) = std::fs::read_dir(dir(home)) else {
        return (0, 0);
    };
    entries
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .fold((0, 0), |(n, b), m| (n + 1, b + m.len()))
}

/// Removes a partial upload unless it was finished (the request may be
/// dropped mid-body).
struct Partial(Option<PathBuf>);

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

pub(super) async fn upload(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let home = &web.screen.home;
    let _one = web.uploading.lock().await;
    let (files, bytes) = waiting(home);
    if files >= MAX_WAITING || bytes >= MAX_BYTES {
        return refuse(
            StatusCode::INSUFFICIENT_STORAGE,
            "too many uploads are waiting: publish or wait a day",
        );
    }
    let folder = dir(home);
    if let Err(e) = std::fs::create_dir_all(&folder) {
        return refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("uploads folder: {e}"),
        );
    }
    let id: [u8; 16] = rand::random();
    let name = match extension(&headers) {
        Some(ext) => format!("u-{}.{ext}", data_encoding::HEXLOWER.encode(&id)),
        None => format!("u-{}", data_encoding::HEXLOWER.encode(&id)),
    };
    let path = folder.join(&name);
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create_new(true).mode(0o600);
    let mut file = match options.open(&path).await {
        Ok(f) => f,
        Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, &format!("upload: {e}")),
    };
    let mut partial = Partial(Some(path.clone()));
    let mut stream = body.into_data_stream();
    let mut size = 0u64;
    let failed: Option<(StatusCode, String)> = loop {
        match stream.next().await {
            None => break None,
            Some(Err(e)) => {
                break Some((
                    StatusCode::BAD_REQUEST,
                    format!("the upload broke off: {e}"),
                ));
            }
            Some(Ok(chunk)) => {
                size += chunk.len() as u64;
                if size > MAX_UPLOAD || bytes + size > MAX_BYTES {
                    break Some((
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "an upload is at most 1 GiB".into(),
                    ));
                }
                if let Err(e) = file.write_all(&chunk).await {
                    break Some((StatusCode::INTERNAL_SERVER_ERROR, format!("upload: {e}")));
                }
            }
        }
    };
    let failed: Option<(StatusCode, String)> = match failed {
        None => file
            .sync_all()
            .await
            .err()
            .map(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("upload: {e}"))),
        some => some,
    };
    if let Some((status, text)) = failed {
        return refuse(status, &text);
    }
    partial.0 = None;
    axum::Json(serde_json::json!({ "upload": name, "size": size })).into_response()
}
