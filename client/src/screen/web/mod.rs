//! The web screen (`specs/screen.md` §7): a page on 127.0.0.1 that speaks
//! the screen's API for a person in a browser, locked down like a local
//! wallet. A random token per start, in the address the screen prints,
//! is traded once for an HttpOnly, SameSite=Strict cookie; every request
//! must carry that cookie and name the bound address as its Host (DNS
//! rebinding), and every request that changes anything must also come
//! from the page's own Origin and carry the page's CSRF token. The page
//! and its assets are embedded in the binary; its Content-Security-Policy
//! allows nothing from anywhere else. Items that bring their own display
//! component are drawn in sandboxed frames served from their own path
//! with their own policy ([`frames`]).

mod access;
mod assets;
mod bridge;
mod frames;
mod guard;
mod upload;
mod views;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use tokio::net::TcpListener;

use super::state::Screen;
use crate::{ClientError, Home};

/// The file in the home that holds the running web screen's address
/// (with its token), owner-only, for `mtos screen web`.
pub const ADDRESS_FILE: &str = "screen-web.url";
/// The web screen's access log in the home: method, path (never the
/// query), status.
pub const ACCESS_LOG: &str = "screen-web.log";

/// What one start of the web screen holds: its secrets (drawn per start)
/// and the frames it serves.
pub(super) struct Web {
    pub(super) screen: Arc<Screen>,
    /// The bound port.
    pub(super) port: u16,
    /// Traded once for the cookie (the address's `?token=`).
    token: String,
    /// The cookie's value.
    session: String,
    /// Sent in the page; asked of every state-changing request.
    pub(super) csrf: String,
    pub(super) frames: frames::Frames,
    pub(super) handles: views::Handles,
    pub(super) log: access::AccessLog,
    /// Streams of the API open at once (watchers hold one each).
    pub(super) streams: Arc<tokio::sync::Semaphore>,
}

/// API streams the page may hold open at once.
const STREAMS: usize = 32;

impl Web {
    /// The cookie's name: per port, since browsers keep cookies per host,
    /// not per port, and two screens may run on one machine.
    pub(super) fn cookie_name(&self) -> String {
        format!("mtos-screen-{}", self.port)
    }

    /// The address to open: the token, once.
    pub(super) fn address(&self) -> String {
        format!("http://127.0.0.1:{}/?token={}", self.port, self.token)
    }
}

/// 32 random bytes, as lowercase base32 without padding.
fn secret() -> String {
    let bytes: [u8; 32] = rand::random();
    data_encoding::BASE32_NOPAD
        .encode(&bytes)
        .to_ascii_lowercase()
}

/// Starts the web screen on 127.0.0.1:`port` (0: a free port) beside the
/// socket; returns the address to open (with its token). The address is
/// written to [`ADDRESS_FILE`] (owner-only) until the screen stops.
pub(super) async fn start(
    screen: Arc<Screen>,
    port: u16,
) -> Result<(String, tokio::task::JoinHandle<()>), ClientError> {
    let bind = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listener = TcpListener::bind(bind).await.map_err(|e| {
        ClientError::Refused(format!("the web screen cannot listen on {bind}: {e}"))
    })?;
    let port = listener
        .local_addr()
        .map_err(|e| ClientError::Refused(format!("the web screen's address: {e}")))?
        .port();
    upload::clean(&screen.home);
    let web = Arc::new(Web {
        log: access::AccessLog::open(&screen.home),
        screen,
        port,
        token: secret(),
        session: secret(),
        csrf: secret(),
        frames: frames::Frames::default(),
        handles: views::Handles::default(),
        streams: Arc::new(tokio::sync::Semaphore::new(STREAMS)),
    });
    let address = web.address();
    write_address(&web.screen.home, &address)?;
    let app = router(web.clone());
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("screen: the web screen stopped: {e}");
        }
    });
    Ok((address, task))
}

/// Removes the address file (the screen is stopping).
pub(super) fn forget(home: &Home) {
    let _ = std::fs::remove_file(home.dir().join(ADDRESS_FILE));
}

fn write_address(home: &Home, address: &str) -> Result<(), ClientError> {
    let path = home.dir().join(ADDRESS_FILE);
    let _ = std::fs::remove_file(&path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let io = |source| ClientError::Io {
        path: path.clone(),
        source,
    };
    let mut f = options.open(&path).map_err(io)?;
    std::io::Write::write_all(&mut f, format!("{address}\n").as_bytes()).map_err(io)
}

fn router(web: Arc<Web>) -> Router {
    Router::new()
        .route("/", get(assets::index))
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
        .route("/view/timeline", get(views::timeline))
        .route("/view/item", post(views::item))
        .route("/view/part", get(views::part))
        .route("/view/trust", get(views::trusted).post(views::trust))
        .route("/view/frame", post(frames::register))
        .route("/frame/{id}", get(frames::serve))
        .fallback(guard::not_found)
        .layer(axum::middleware::from_fn_with_state(
            web.clone(),
            guard::check,
        ))
        .with_state(web)
}
