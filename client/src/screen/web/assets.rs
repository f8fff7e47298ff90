//! The page and its assets, embedded in the binary: no build step, no
//! third-party file, nothing fetched from anywhere but the screen.

use axum::body::Body;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

use super::guard::refuse;

const INDEX: &str = include_str!("assets/index.html");

/// The embedded files: name, type, contents.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/api.js"),
    ),
    (
        "item.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/item.js"),
    ),
    (
        "forms.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/forms.js"),
    ),
    (
        "contacts.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/contacts.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("assets/style.css"),
    ),
];

/// The page: nothing secret in it (the session comes from the address's
/// fragment, [`super::access`]).
pub(super) async fn index() -> Response {
    let mut r = Response::new(Body::from(INDEX));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

pub(super) async fn asset(Path(name): Path<String>) -> Response {
    let Some((_, mime, text)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        return refuse(StatusCode::NOT_FOUND, "no such asset");
    };
    let mut r = Response::new(Body::from(*text));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    r
}
