//! The checks every request to the web screen passes before any handler
//! sees it, and the headers every answer carries (`specs/screen.md` §7).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Web;

/// The page's policy: its own scripts, styles and API only; frames only
/// from the component path; no plugin, no base, no form to elsewhere, and
/// never framed itself.
pub(super) fn page_policy(port: u16) -> String {
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; \
         media-src 'self' blob:; connect-src 'self'; frame-src http://127.0.0.1:{port}/frame/; \
         form-action 'none'; base-uri 'none'; frame-ancestors 'none'; object-src 'none'"
    )
}

/// A refusal: a status and one plain line for the person.
pub(super) fn refuse(status: StatusCode, text: &str) -> Response {
    let mut r = (status, format!("{text}\n")).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

pub(super) async fn not_found() -> Response {
    refuse(StatusCode::NOT_FOUND, "nothing here")
}

/// Answers `POST /session`: the token of an address (`X-Mtos-Token`),
/// good once, for a session secret.
pub(super) async fn session(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let token = headers
        .get("x-mtos-token")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    match web.access.open_session(token) {
        Some(session) => axum::Json(serde_json::json!({ "session": session })).into_response(),
        None => refuse(
            StatusCode::FORBIDDEN,
            "this address was used already or is too old: `mtos screen web` prints a new one",
        ),
    }
}

/// Checks a request, runs it, logs it, and adds the headers every answer
/// carries.
pub(super) async fn check(State(web): State<Arc<Web>>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = match admit(&web, &request) {
        Ok(()) => next.run(request).await,
        Err(r) => *r,
    };
    let mut response = response;
    // Under /frame/ nothing but a registered component's own document
    // may run, whatever refused the request.
    if path.starts_with("/frame/")
        && !response
            .headers()
            .contains_key(header::CONTENT_SECURITY_POLICY)
    {
        response.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("sandbox; default-src 'none'"),
        );
    }
    secure(&web, response.headers_mut());
    web.log.record(&method, &path, response.status());
    response
}

fn admit(web: &Web, request: &Request<Body>) -> Result<(), Box<Response>> {
    let headers = request.headers();
    // DNS rebinding: a page of another name resolved to 127.0.0.1 sends
    // its own name as Host.
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let expected = format!("127.0.0.1:{}", web.port);
    if host != expected {
        return Err(Box::new(refuse(
            StatusCode::MISDIRECTED_REQUEST,
            &format!("this screen answers as {expected} only"),
        )));
    }
    // A browser says where a request comes from; the page's own requests
    // are same-origin, a typed address or a bookmark is `none`.
    let site = headers.get("sec-fetch-site").and_then(|h| h.to_str().ok());
    if matches!(site, Some(s) if s != "same-origin" && s != "none") {
        return Err(Box::new(refuse(
            StatusCode::FORBIDDEN,
            "requests from other sites are refused",
        )));
    }
    let method = request.method();
    let reading = method == Method::GET || method == Method::HEAD;
    if !reading {
        let origin = headers
            .get(header::ORIGIN)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if origin != format!("http://{expected}") {
            return Err(Box::new(refuse(
                StatusCode::FORBIDDEN,
                "requests from other origins are refused",
            )));
        }
    }
    let path = request.uri().path();
    // The page and its code hold no secret; a part and a frame are asked
    // by a random handle the page was given (an element's `src` carries
    // no header), checked by their handlers; the session is opened with
    // a token.
    let open = (reading
        && (path == "/"
            || path.starts_with("/assets/")
            || path == "/view/part"
            || path.starts_with("/frame/")))
        || (method == Method::POST && path == "/session");
    if open {
        return Ok(());
    }
    let session = headers
        .get("x-mtos-session")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !web.access.valid(session) {
        return Err(Box::new(refuse(
            StatusCode::FORBIDDEN,
            "no session: open the address `mtos screen web` prints",
        )));
    }
    Ok(())
}

/// Headers on every answer; an answer that set its own policy (a frame,
/// an item's part) keeps it.
fn secure(web: &Web, h: &mut HeaderMap) {
    if !h.contains_key(header::CONTENT_SECURITY_POLICY)
        && let Ok(v) = HeaderValue::from_str(&page_policy(web.port))
    {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.entry("cross-origin-opener-policy")
        .or_insert(HeaderValue::from_static("same-origin"));
    h.entry(header::X_FRAME_OPTIONS)
        .or_insert(HeaderValue::from_static("DENY"));
    h.insert(
        "permissions-policy",
        HeaderValue::from_static(
            "camera=(), microphone=(), geolocation=(), usb=(), serial=(), payment=(), display-capture=()",
        ),
    );
}
