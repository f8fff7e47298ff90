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

/// Equal in constant time (both hashed first, so lengths leak nothing).
pub(super) fn same_secret(a: &str, b: &str) -> bool {
    blake3::hash(a.as_bytes()) == blake3::hash(b.as_bytes())
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

/// The cookie `name` among the request's cookies.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The one query parameter `token`, if the query is exactly that.
fn token_in(query: Option<&str>) -> Option<&str> {
    query?.strip_prefix("token=")
}

/// Checks a request, runs it, logs it, and adds the headers every answer
/// carries.
pub(super) async fn check(State(web): State<Arc<Web>>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = match admit(&web, &request) {
        Ok(Admitted::Run) => next.run(request).await,
        Ok(Admitted::Answer(r)) => r,
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

enum Admitted {
    Run,
    Answer(Response),
}

fn admit(web: &Web, request: &Request<Body>) -> Result<Admitted, Box<Response>> {
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
    // The token, traded for the cookie once; the address bar then holds
    // no secret.
    if request.uri().path() == "/"
        && let Some(token) = token_in(request.uri().query())
    {
        if !same_secret(token, &web.token) {
            return Err(Box::new(refuse(
                StatusCode::FORBIDDEN,
                "this token is not the screen's: open the address `mtos screen web` prints",
            )));
        }
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::SEE_OTHER;
        r.headers_mut()
            .insert(header::LOCATION, HeaderValue::from_static("/"));
        let cookie = format!(
            "{}={}; Path=/; HttpOnly; SameSite=Strict",
            web.cookie_name(),
            web.session
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        return Ok(Admitted::Answer(r));
    }
    let signed_in =
        cookie(headers, &web.cookie_name()).is_some_and(|c| same_secret(c, &web.session));
    if !signed_in {
        return Err(Box::new(refuse(
            StatusCode::FORBIDDEN,
            "not signed in: open the address `mtos screen web` prints",
        )));
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
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
        let csrf = headers
            .get("x-mtos-csrf")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !same_secret(csrf, &web.csrf) {
            return Err(Box::new(refuse(
                StatusCode::FORBIDDEN,
                "the page's CSRF token is missing or stale: reload the page",
            )));
        }
    }
    Ok(Admitted::Run)
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
