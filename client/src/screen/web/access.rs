//! The web screen's access log ([`super::ACCESS_LOG`]): one line per
//! request, its time, method, path and status. Never the query, a
//! header or a body: the address's token, item references and uploads
//! stay out of it. The file is capped; past the cap it starts again.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use axum::http::{Method, StatusCode};

use crate::Home;

/// Bytes the log may reach before it is started again.
const CAP: u64 = 4 << 20;

pub(in crate::screen) struct AccessLog {
    path: PathBuf,
    file: Mutex<Option<std::fs::File>>,
}

impl AccessLog {
    pub(super) fn open(home: &Home) -> Self {
        let path = home.dir().join(super::ACCESS_LOG);
        let file = Self::create(&path, true);
        Self {
            path,
            file: Mutex::new(file),
        }
    }

    fn create(path: &std::path::Path, append: bool) -> Option<std::fs::File> {
        let mut o = std::fs::OpenOptions::new();
        o.create(true);
        if append {
            o.append(true);
        } else {
            o.write(true).truncate(true);
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(0o600);
        }
        o.open(path).ok()
    }

    /// Records one request. Paths are printable ASCII by the time the
    /// router sees them (percent-encoded otherwise); anything else is
    /// escaped all the same.
    pub(super) fn record(&self, method: &Method, path: &str, status: StatusCode) {
        let Ok(mut file) = self.file.lock() else {
            return;
        };
        if file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .is_some_and(|m| m.len() > CAP)
        {
            *file = Self::create(&self.path, false);
        }
        if let Some(f) = file.as_mut() {
            let path: String = path
                .chars()
                .take(200)
                .flat_map(char::escape_default)
                .collect();
            let _ = writeln!(
                f,
                "{} {} {} {}",
                mtos_net::unix_now(),
                method,
                path,
                status.as_u16()
            );
        }
    }
}
