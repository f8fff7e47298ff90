//! The web screen (`specs/screen.md` §8): a page on 127.0.0.1 that speaks
//! the screen's API for a person in a browser, locked down like a local
//! wallet. A one-time token, in the fragment of the address `mtos screen
//! web` prints, is traded for a session secret the page sends as a header
//! ([`access`]); every request must name the bound address as its Host
//! (DNS rebinding), and every request that changes anything must also
//! come from the page's own Origin. The page and its assets are embedded
//! in the binary; its Content-Security-Policy allows nothing from
//! anywhere else. Items that bring their own display component are drawn
//! in sandboxed frames served from their own path with their own policy
//! ([`frames`]).

pub mod access;
mod assets;
mod bridge;
mod contacts;
mod frames;
mod guard;
mod items;
mod threads;
mod upload;
mod views;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use tokio::net::TcpListener;

use super::state::Screen;
use crate::ClientError;

/// The web screen's access log in the home: method, path (never the
/// query), status.
pub const ACCESS_LOG: &str = "screen-web.log";

/// What one start of the web screen holds: its secrets (drawn per start)
/// and the frames it serves.
pub(super) struct Web {
    pub(super) screen: Arc<Screen>,
    /// The bound port.
    pub(super) port: u16,
    pub(super) access: Arc<access::Access>,
    pub(super) frames: frames::Frames,
    pub(super) handles: items::Handles,
    pub(super) opened: items::Opened,
    pub(super) log: access::AccessLog,
    /// Streams of the API open at once, watches apart.
    pub(super) streams: Arc<tokio::sync::Semaphore>,
    /// Watches open at once (one per open timeline).
    pub(super) watches: Arc<tokio::sync::Semaphore>,
    /// One upload at a time: the uploads folder's bounds are checked
    /// and kept by one writer.
    pub(super) uploading: tokio::sync::Mutex<()>,
    /// Items opened at once (each decrypted whole, in memory).
    pub(super) opening: Arc<tokio::sync::Semaphore>,
    /// Where the page checks whether the browser connects on its own.
    pub(super) canary: frames::Canary,
}

/// API streams the page may hold open at once, watches apart.
const STREAMS: usize = 32;
/// Watches the page may hold open at once.
const WATCHES: usize = 8;
/// Items opened at once.
pub(super) const OPENING: usize = 2;

/// Starts the web screen on 127.0.0.1:`port` (0: a free port) beside the
/// socket; returns what mints its addresses.
pub(super) async fn start(
    screen: Arc<Screen>,
    port: u16,
) -> Result<(Arc<access::Access>, tokio::task::JoinHandle<()>), ClientError> {
    let bind = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listener = TcpListener::bind(bind).await.map_err(|e| {
        ClientError::Refused(format!("the web screen cannot listen on {bind}: {e}"))
    })?;
    let port = listener
        .local_addr()
        .map_err(|e| ClientError::Refused(format!("the web screen's address: {e}")))?
        .port();
    upload::clean(&screen.home);
    let canary = frames::Canary::listen().await?;
    let web = Arc::new(Web {
        canary,
        log: access::AccessLog::open(&screen.home),
        screen,
        port,
        access: Arc::new(access::Access::new(port)),
        frames: frames::Frames::default(),
        handles: items::Handles::default(),
        opened: items::Opened::default(),
        streams: Arc::new(tokio::sync::Semaphore::new(STREAMS)),
        watches: Arc::new(tokio::sync::Semaphore::new(WATCHES)),
        uploading: tokio::sync::Mutex::new(()),
        opening: Arc::new(tokio::sync::Semaphore::new(OPENING)),
    });
    let access = web.access.clone();
    let app = router(web.clone());
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("screen: the web screen stopped: {e}");
        }
    });
    Ok((access, task))
}

fn router(web: Arc<Web>) -> Router {
    Router::new()
        .route("/", get(assets::index))
        .route("/session", post(guard::session))
        .route("/assets/{name}", get(assets::asset))
        .route("/api", post(bridge::api))
        .route("/upload", post(upload::upload))
        .route(
            "/view/identities",
            get(views::identities).post(views::new_identity),
        )
        .route("/view/identity.svg", get(views::qr))
        .route("/view/identity.txt", get(views::export))
        .route("/view/compare", post(views::compare))
        .route("/view/feeds", get(views::feeds))
        .route("/view/contacts", get(contacts::list).post(contacts::add))
        .route(
            "/view/contacts/qr",
            post(contacts::add_qr)
                .layer(axum::extract::DefaultBodyLimit::max(contacts::MAX_QR_IMAGE)),
        )
        .route("/view/contacts/change", post(contacts::change))
        .route("/view/timeline", get(items::timeline))
        .route("/view/item", post(items::item))
        .route("/view/thread", post(threads::thread))
        .route("/view/part", get(items::part))
        .route("/view/trust", get(views::trusted).post(views::trust))
        .route("/view/frame", post(frames::register))
        .route("/view/canary", get(frames::canary))
        .route("/frame/{id}", get(frames::serve))
        .fallback(guard::not_found)
        .layer(axum::middleware::from_fn_with_state(
            web.clone(),
            guard::check,
        ))
        .with_state(web)
}
