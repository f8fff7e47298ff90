//! The test-only `[faults] watch_clients`: a gateway that writes down
//! when each client's mix frames arrive, on which stream, and each
//! client connection, as a gateway watching its clients' timing would.
//! Tests read it to check what the gateway sees of a client's cover
//! schedule (`specs/screen.md` §3). Lines of `client_frames.log` in the
//! data directory: `frame PEER STREAM MICROS`, `stream PEER STREAM
//! MICROS` (a mix stream opened), `connect PEER ADDR MICROS`, with
//! microseconds since the Unix epoch.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use libp2p::{Multiaddr, PeerId};

/// The log's file name in the data directory.
pub(crate) const LOG_FILE: &str = "client_frames.log";

/// Where a watching gateway writes.
#[derive(Debug)]
pub(crate) struct ClientWatch {
    file: Mutex<BufWriter<File>>,
    streams: AtomicU64,
}

fn micros() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros())
}

impl ClientWatch {
    /// Creates (truncates) the log in `dir`.
    pub(crate) fn create(dir: &Path) -> std::io::Result<Self> {
        Ok(Self {
            file: Mutex::new(BufWriter::new(File::create(dir.join(LOG_FILE))?)),
            streams: AtomicU64::new(0),
        })
    }

    fn line(&self, text: std::fmt::Arguments<'_>) {
        if let Ok(mut f) = self.file.lock() {
            let _ = f.write_fmt(text);
            let _ = f.flush();
        }
    }

    /// A client's mix stream opened: its number.
    pub(crate) fn stream(&self, peer: &PeerId) -> u64 {
        let n = self.streams.fetch_add(1, Ordering::Relaxed);
        self.line(format_args!("stream {peer} {n} {}\n", micros()));
        n
    }

    /// A client's frame arrived on stream `stream`.
    pub(crate) fn frame(&self, peer: &PeerId, stream: u64) {
        self.line(format_args!("frame {peer} {stream} {}\n", micros()));
    }

    /// A client connected from `addr`.
    pub(crate) fn connected(&self, peer: &PeerId, addr: &Multiaddr) {
        self.line(format_args!("connect {peer} {addr} {}\n", micros()));
    }
}
