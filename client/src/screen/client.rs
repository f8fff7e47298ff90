//! A client of the screen's API: what the `mtos` command (and any other
//! program of the person's) uses to ask the running screen.

use std::path::{Path, PathBuf};

use tokio::io::BufReader;
use tokio::net::UnixStream;

use super::api::{
    self, API_VERSION, ApiError, Envelope, ErrorKind, Event, Line, MAX_ANSWER_LINE, Reply, Request,
};

/// How long connecting to the screen may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
use crate::{ClientError, Home};

/// A connection to the screen of one home.
#[derive(Debug, Clone)]
pub struct ScreenClient {
    socket: PathBuf,
}

impl ScreenClient {
    /// The screen of `home`, if one answers on its socket (`None`: none
    /// runs, or a stale socket was left by one that died).
    pub async fn find(home: &Home) -> Option<Self> {
        let socket = super::socket_path(home);
        match tokio::time::timeout(CONNECT_TIMEOUT, UnixStream::connect(&socket)).await {
            Ok(Ok(_)) => Some(Self { socket }),
            _ => None,
        }
    }

    /// The screen listening on `socket`.
    pub fn at(socket: &Path) -> Self {
        Self {
            socket: socket.to_owned(),
        }
    }

    /// Sends `request`; passes every event to `on_event`, and returns the
    /// final reply (a screen's error as [`ClientError::Remote`]).
    pub async fn call(
        &self,
        request: Request,
        mut on_event: impl FnMut(Event),
    ) -> Result<Reply, ClientError> {
        let lost = |e: std::io::Error| {
            ClientError::NoScreen(format!(
                "the screen at {} stopped answering: {e}",
                self.socket.display()
            ))
        };
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, UnixStream::connect(&self.socket))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))
            .and_then(|r| r)
            .map_err(|e| {
                ClientError::NoScreen(format!(
                    "no screen answers at {}: {e}",
                    self.socket.display()
                ))
            })?;
        let (read, mut write) = stream.into_split();
        let mut read = BufReader::new(read);
        api::write_line(
            &mut write,
            &Envelope {
                api: API_VERSION,
                request,
            },
        )
        .await
        .map_err(lost)?;
        loop {
            let Some(line) = api::read_line(&mut read, MAX_ANSWER_LINE)
                .await
                .map_err(lost)?
            else {
                return Err(lost(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "it closed the connection before its answer",
                )));
            };
            let line: Line = serde_json::from_str(&line).map_err(|e| {
                ClientError::Remote(ApiError::new(
                    ErrorKind::BadRequest,
                    format!("an answer that does not parse: {e}"),
                ))
            })?;
            match line {
                Line::Event(e) => on_event(e),
                Line::Ok(reply) => return Ok(reply),
                Line::Error(e) => return Err(ClientError::Remote(e)),
            }
        }
    }
}
