//! `POST /api`: the page's requests to the screen's API, in the socket's
//! envelope, answered as the socket answers (one JSON line per event and
//! one final line), streamed as `application/x-ndjson`. The page may ask
//! what a person does (publish, fetch, follow, poll, cards, jobs, watch);
//! stopping or reconnecting the screen stays with the terminal, and a
//! publish names uploads, never paths.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use tokio::sync::mpsc;

use super::Web;
use super::guard::refuse;
use crate::screen::api::{self, ApiError, ErrorKind, Event, Line, Request};
use crate::screen::connection::{self, Out};

/// Lines buffered towards a slow page before the request waits.
const BUFFERED: usize = 64;

/// A streamed answer's [`Out`].
struct StreamOut {
    tx: mpsc::Sender<Line>,
}

impl Out for StreamOut {
    async fn event(&mut self, e: Event) -> Result<(), ApiError> {
        self.tx
            .send(Line::Event(e))
            .await
            .map_err(|_| ApiError::new(ErrorKind::Failure, "the page went away"))
    }

    async fn gone(&mut self) {
        self.tx.closed().await;
    }
}

pub(super) async fn api(State(web): State<Arc<Web>>, body: Bytes) -> Response {
    if body.len() >= api::MAX_LINE {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, "a request is at most 64 KiB");
    }
    let Ok(text) = std::str::from_utf8(&body) else {
        return refuse(StatusCode::BAD_REQUEST, "a request is UTF-8 JSON");
    };
    let request = match connection::parse(text.trim_end()) {
        Ok(r) => r,
        Err(e) => return one(&Line::Error(e)),
    };
    let request = match allowed(&web, request) {
        Ok(r) => r,
        Err(e) => return one(&Line::Error(e)),
    };
    // Watches (one per open timeline) have their own, smaller share, so
    // tabs left open never keep a publish out.
    let slots = if request == Request::Watch {
        &web.watches
    } else {
        &web.streams
    };
    let Ok(permit) = slots.clone().try_acquire_owned() else {
        return one(&Line::Error(ApiError::new(
            ErrorKind::Busy,
            "too many requests are open: close a tab, or try again",
        )));
    };
    // A publish's uploads are removed once it is done: the item is sealed
    // in the store by then (a resumed publish needs only its record).
    let uploads = match &request {
        Request::Publish { seal } => seal
            .files
            .iter()
            .chain(&seal.import)
            .chain(&seal.import_oembed)
            .cloned()
            .collect(),
        _ => Vec::new(),
    };
    let (tx, rx) = mpsc::channel::<Line>(BUFFERED);
    let screen = web.screen.clone();
    tokio::spawn(async move {
        let mut out = StreamOut { tx };
        let line = match connection::handle(&screen, request, &mut out).await {
            Ok(Some(reply)) => Line::Ok(reply),
            Ok(None) => return,
            Err(e) => Line::Error(e),
        };
        if matches!(line, Line::Ok(_)) {
            for f in uploads {
                let _ = std::fs::remove_file(f);
            }
        }
        let _ = out.tx.send(line).await;
        drop(permit);
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let line = rx.recv().await?;
        Some((Ok::<_, std::convert::Infallible>(encoded(&line)), rx))
    });
    ndjson(Body::from_stream(stream))
}

/// A line as it goes out: its JSON and a newline.
fn encoded(line: &Line) -> Bytes {
    let mut text = serde_json::to_vec(line).unwrap_or_default();
    text.push(b'\n');
    Bytes::from(text)
}

/// An answer of one line (a request refused before it ran).
fn one(line: &Line) -> Response {
    ndjson(Body::from(encoded(line)))
}

fn ndjson(body: Body) -> Response {
    let mut r = Response::new(body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    r
}

/// What the page may ask: a publish's files become the uploads they
/// name; stop and reconnect are refused.
fn allowed(web: &Web, request: Request) -> Result<Request, ApiError> {
    match request {
        Request::Stop | Request::Reconnect | Request::WebAddress => Err(ApiError::new(
            ErrorKind::BadRequest,
            "the page cannot stop or reconnect the screen, nor mint addresses: use `mtos screen`",
        )),
        // Secret keys leave or arrive from a terminal only (§8).
        Request::SendKeys { .. } | Request::PairKeys { .. } => Err(ApiError::new(
            ErrorKind::BadRequest,
            "the page cannot move secret keys between screens: use `mtos screen pair` and `mtos screen send-keys`",
        )),
        // Every file a publish reads (its parts, and a page and oEmbed
        // response to import) is an upload named by the page, never a
        // path: the page cannot make the screen read other files.
        Request::Publish { mut seal } => {
            let upload = |f: &std::path::Path| {
                super::upload::path(&web.screen.home, f.to_str().unwrap_or(""))
            };
            let mut files = Vec::with_capacity(seal.files.len());
            for f in &seal.files {
                files.push(upload(f)?);
            }
            seal.files = files;
            seal.import = seal.import.as_deref().map(upload).transpose()?;
            seal.import_oembed = seal.import_oembed.as_deref().map(upload).transpose()?;
            Ok(Request::Publish { seal })
        }
        other => Ok(other),
    }
}
