//! The screen's local API (`specs/screen.md`): what goes over its socket.
//! One request per connection, as one line of JSON; the screen answers
//! with lines of events (progress, new feed entries) and ends with one
//! final line, a result or an error. Every line is at most
//! [`MAX_LINE`] bytes; a longer one, or one that does not parse, is
//! answered with an error and the connection closed, and the screen goes
//! on serving others.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use crate::ClientError;
use crate::compose::SealRequest;
use crate::error::exit;

/// The version of this API; a request naming another is refused with
/// [`ErrorKind::Version`].
pub const API_VERSION: u32 = 1;
/// The longest request line, newline included.
pub const MAX_LINE: usize = 64 * 1024;
/// The longest line the screen sends (a status or job list at the
/// bounds of the job table fits many times over).
pub const MAX_ANSWER_LINE: usize = 1 << 20;

/// A request: the API version it is written for and what it asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// [`API_VERSION`].
    pub api: u32,
    /// What is asked.
    pub request: Request,
}

/// What a client asks the screen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// The screen's state ([`Status`]).
    Status,
    /// Stop the screen (queued work stays queued for its next start).
    Stop,
    /// Seal an item and publish it (queued work). A request whose
    /// `digest` names a publish queued or unfinished already joins it.
    Publish {
        /// What to seal (boxed: the other requests are small).
        seal: Box<SealRequest>,
    },
    /// Fetch an item into the screen's store (queued work, unless the
    /// store holds it).
    Fetch {
        /// The `mtos:item:` reference.
        reference: String,
    },
    /// Follow a feed.
    Follow {
        /// The `mtos:feed:` URI.
        uri: String,
        /// What to call it; `None`: the author's id.
        label: Option<String>,
    },
    /// Run poll rounds now, beside the schedule's (they show the service
    /// nodes when the person asked: `specs/screen.md` §4).
    Poll {
        /// Rounds, 1 to [`MAX_POLL_ROUNDS`].
        rounds: u32,
    },
    /// Publish the card of one of the keychain's identities.
    PublishCard {
        /// Its label or id prefix.
        id: String,
    },
    /// Look a card up by fingerprint or `mtos:id:` URI.
    LookupCard {
        /// The fingerprint's 30 digits or the URI.
        query: String,
    },
    /// The queued work.
    Jobs,
    /// Follow a job's progress to its end.
    Attach {
        /// The job.
        job: u64,
    },
    /// Cancel a queued job (a publish keeps what was stored).
    Cancel {
        /// The job.
        job: u64,
    },
    /// New feed entries as the screen's polls find them, until the
    /// connection closes.
    Watch,
    /// Connect again to the home's network (after `mtos net use`).
    Reconnect,
    /// A bulk window now (`client.md` §4.1): the session moves to the
    /// cohort whose window is running, which leaks that it has work.
    WindowNow,
    /// A new address of the web screen to open, with a one-time token
    /// (`specs/screen.md` §8).
    WebAddress,
    /// Invite someone to exchange identities by short code
    /// (`specs/transfer.md`): a [`Event::Code`] once the invitation is on
    /// the network, then [`Reply::Exchanged`].
    ContactInvite {
        /// The identity to hand over (label or id prefix); `None`: the
        /// only one.
        id: Option<String>,
        /// Seconds the invitation stays open; `None`: 300.
        wait_secs: Option<u64>,
    },
    /// Accept a short code someone read out.
    ContactAccept {
        /// The code, as typed.
        code: String,
        /// The identity to hand over; `None`: the only one.
        id: Option<String>,
        /// What to call the new contact; `None`: the label they chose.
        label: Option<String>,
    },
    /// Receive identities from another screen (`specs/transfer.md`,
    /// purpose 2): a [`Event::Code`] for the other screen's `send_keys`,
    /// then [`Reply::Paired`].
    PairKeys {
        /// Seconds the invitation stays open; `None`: 300.
        wait_secs: Option<u64>,
        /// The passphrase of the keychain to create, when this home has
        /// none yet (the screen keeps it, as if given at start).
        new_passphrase: Option<SecretText>,
    },
    /// Send identities (secret keys, feed positions) and the contacts to
    /// the screen that showed `code`.
    SendKeys {
        /// The code, as typed.
        code: String,
        /// The identities (labels or id prefixes); empty: all.
        ids: Vec<String>,
    },
}

/// A secret a request carries (a new keychain's passphrase): the same
/// JSON string on the socket, kept out of `Debug` and wiped when dropped.
#[derive(
    Clone, PartialEq, Eq, Serialize, Deserialize, zeroize::Zeroize, zeroize::ZeroizeOnDrop,
)]
#[serde(transparent)]
pub struct SecretText(String);

impl SecretText {
    /// Wraps a secret.
    pub fn new(text: String) -> Self {
        Self(text)
    }

    /// The secret.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretText(..)")
    }
}

/// The longest an invitation may be asked to stay open.
pub const MAX_WAIT_SECS: u64 = crate::shortcode::MAX_WAIT.as_secs();

/// Poll rounds one request may ask for.
pub const MAX_POLL_ROUNDS: u32 = 100;

/// A line the screen sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Line {
    /// Something happened; more lines follow.
    Event(Event),
    /// The request is done.
    Ok(Reply),
    /// The request failed.
    Error(ApiError),
}

/// Progress and news.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The request became queued work.
    Queued {
        /// The job, for `attach` and `cancel`.
        job: u64,
        /// Whether it joined work queued before (the same publish).
        joined: bool,
    },
    /// A line for the person (what was sealed, a retry).
    Note {
        /// The text.
        text: String,
    },
    /// Chunks done of those known so far.
    Progress {
        /// The job.
        job: u64,
        /// Done.
        done: u64,
        /// Known so far.
        total: u64,
    },
    /// A new entry of a followed feed, its item fetched when it could be.
    Entry(FeedEntryInfo),
    /// A short code to read to the other side: its invitation is on the
    /// network.
    Code {
        /// The code, e.g. `7-guitar-orbit`.
        code: String,
        /// Seconds it stays open.
        expires_secs: u64,
    },
}

/// A final answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// Done, nothing to say.
    Done,
    /// [`Request::Status`].
    Status(Box<Status>),
    /// A publish or fetch finished.
    Transfer(TransferDone),
    /// [`Request::Follow`].
    Followed {
        /// The label it got.
        label: String,
        /// The owner's id.
        owner: String,
    },
    /// [`Request::Poll`].
    Polled {
        /// New entries found.
        new: u64,
        /// Slots ignored: not signed by their feed's key.
        refused: u64,
        /// Probes asked again.
        asked_again: u64,
        /// Feeds followed.
        follows: u64,
    },
    /// [`Request::PublishCard`].
    CardPublished {
        /// The identity's label.
        label: String,
        /// Its fingerprint, grouped.
        fingerprint: String,
        /// Its fingerprint's digits.
        digits: String,
        /// The card slot by key.
        by_key: u64,
        /// The card slot by fingerprint.
        by_fingerprint: u64,
    },
    /// [`Request::LookupCard`].
    Card(CardInfo),
    /// [`Request::WebAddress`].
    WebAddress {
        /// `http://127.0.0.1:PORT/#token=…`, good once, for ten minutes.
        address: String,
    },
    /// [`Request::ContactInvite`], [`Request::ContactAccept`]: the
    /// other side's card and what it did to the keychain.
    Exchanged(ExchangeInfo),
    /// [`Request::PairKeys`]: what was imported.
    Paired {
        /// Labels of the identities added.
        identities: Vec<String>,
        /// Contacts added.
        contacts: u64,
        /// What was not imported, and why (one line each).
        skipped: Vec<String>,
    },
    /// [`Request::SendKeys`]: what the other screen received.
    KeysSent {
        /// Labels of the identities sent.
        identities: Vec<String>,
        /// Contacts sent.
        contacts: u64,
    },
    /// [`Request::Jobs`].
    Jobs {
        /// Queued and running work.
        jobs: Vec<JobInfo>,
    },
}

/// A finished publish or fetch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferDone {
    /// The job (0: nothing was queued, the store held it all).
    pub job: u64,
    /// The item's reference.
    pub reference: String,
    /// Chunks of the item.
    pub chunks: u64,
    /// Chunks moved over the network by this run.
    pub transferred: u64,
    /// Requests sent.
    pub requests: u64,
    /// Seconds the work took, queueing included.
    pub secs: f64,
    /// The feed entry written for a public signed item: its feed's
    /// identity label and slot.
    pub feed_entry: Option<(String, u64)>,
}

/// A card found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardInfo {
    /// Its label.
    pub label: String,
    /// Its id.
    pub id: String,
    /// Its fingerprint, grouped.
    pub fingerprint: String,
    /// Its `mtos:id:` URI.
    pub uri: String,
    /// Its feed's follow URI.
    pub feed: String,
    /// When it was published (Unix ms).
    pub time_ms: u64,
}

impl CardInfo {
    /// What a card says.
    pub fn of(card: &mtos_crypto::card::Card) -> Self {
        Self {
            label: card.identity.label().to_string(),
            id: card.identity.id().to_string(),
            fingerprint: card.identity.fingerprint().to_string(),
            uri: card.identity.to_uri(),
            feed: card.follow.to_uri(),
            time_ms: card.time_ms,
        }
    }
}

/// The contact a short-code exchange produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExchangeInfo {
    /// Its label in the keychain.
    pub label: String,
    /// What its card says.
    pub card: CardInfo,
    /// `added` (a new contact, verified), `verified` (known with these
    /// keys, now verified) or `changed` (known with other keys: flagged,
    /// the old keys kept).
    pub outcome: String,
}

/// A new feed entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedEntryInfo {
    /// The feed's label.
    pub feed: String,
    /// The entry's slot.
    pub n: u64,
    /// When it was written (Unix ms, as its author says).
    pub time_ms: u64,
    /// The item's reference.
    pub item: String,
    /// Whether the item is in the store (fetched).
    pub fetched: bool,
}

/// Queued work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobInfo {
    /// Its number (this run of the screen).
    pub job: u64,
    /// `publish` or `fetch`.
    pub kind: String,
    /// The item.
    pub reference: String,
    /// `queued`, `running`, `waiting` (to try again), `done`, `failed`.
    pub state: String,
    /// Chunks done.
    pub done: u64,
    /// Chunks known.
    pub total: u64,
}

/// What [`Request::Status`] shows the person (`specs/screen.md` §5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The screen's process.
    pub pid: u32,
    /// The network's id.
    pub network: String,
    /// The gateway's node key (hex) and its addresses.
    pub gateway: String,
    /// The gateway's addresses as the document lists them.
    pub gateway_addrs: Vec<String>,
    /// The session's libp2p identity (what the gateway sees).
    pub peer_id: String,
    /// Seconds since the screen started.
    pub up_secs: u64,
    /// Seconds the current session has been connected.
    pub connected_secs: u64,
    /// Sessions opened by this screen (more than one: its guard left
    /// the document, or the network changed).
    pub sessions: u64,
    /// Packets sent carrying something real.
    pub sent_real: u64,
    /// Packets sent as cover.
    pub sent_cover: u64,
    /// Loops that came back.
    pub loops_returned: u64,
    /// Times the link to the gateway broke and was mended.
    pub link_breaks: u64,
    /// Slots that fell due while the link was broken, skipped.
    pub slots_skipped: u64,
    /// The network document's epoch.
    pub epoch: u32,
    /// Queued and running work.
    pub jobs: Vec<JobInfo>,
    /// Feeds followed.
    pub follows: u64,
    /// Seconds between scheduled poll rounds.
    pub poll_every_secs: u64,
    /// When the last poll round ran (Unix seconds).
    pub last_poll: Option<u64>,
    /// Chunks in the store (RocksDB's estimate).
    pub store_chunks: u64,
    /// Bytes the store takes on disk.
    pub store_bytes: u64,
    /// The session's bulk windows (`client.md` §4.1).
    #[serde(default)]
    pub windows: WindowsInfo,
}

/// A screen's bulk windows, as [`Status`] shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowsInfo {
    /// The ticket asked for (`None`: windows off).
    pub ticket: Option<u16>,
    /// Whether the gateway granted it.
    pub granted: bool,
    /// Whether the session is in a window now.
    pub in_window: bool,
    /// When it next enters or leaves one, Unix ms.
    pub next_change_ms: Option<u64>,
    /// The session's start (its schedule's zero), Unix ms.
    pub origin_ms: u64,
}

/// Why a request failed: a kind a program can act on, the exit code the
/// `mtos` command uses for it, and a message for the person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// For the person.
    pub message: String,
}

/// Kinds of [`ApiError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request did not parse, or was too long.
    BadRequest,
    /// The request is for another API version.
    Version,
    /// Malformed input (a reference, a URI, a file).
    BadInput,
    /// Something named does not exist.
    NotFound,
    /// It would duplicate or overwrite something.
    Conflict,
    /// A private item not for this keychain.
    NotRecipient,
    /// The network failed it (asking again may help).
    Network,
    /// Too much work queued: try later.
    Busy,
    /// The job was cancelled.
    Cancelled,
    /// Anything else.
    Failure,
}

impl ErrorKind {
    /// The `mtos` command's exit code for it.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::BadRequest | ErrorKind::Version | ErrorKind::BadInput => exit::BAD_INPUT,
            ErrorKind::NotFound => exit::NOT_FOUND,
            ErrorKind::Conflict => exit::CONFLICT,
            ErrorKind::NotRecipient => exit::NOT_RECIPIENT,
            ErrorKind::Network | ErrorKind::Busy | ErrorKind::Cancelled | ErrorKind::Failure => {
                exit::FAILURE
            }
        }
    }
}

impl ApiError {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl From<&ClientError> for ApiError {
    fn from(e: &ClientError) -> Self {
        let kind = match e {
            ClientError::Network(_) => ErrorKind::Network,
            ClientError::Remote(r) => r.kind,
            _ => match e.exit_code() {
                exit::BAD_INPUT => ErrorKind::BadInput,
                exit::NOT_FOUND => ErrorKind::NotFound,
                exit::CONFLICT => ErrorKind::Conflict,
                exit::NOT_RECIPIENT => ErrorKind::NotRecipient,
                _ => ErrorKind::Failure,
            },
        };
        ApiError::new(kind, e.to_string())
    }
}

/// Reads one line of at most `limit` bytes ([`MAX_LINE`] for requests,
/// [`MAX_ANSWER_LINE`] for answers); `Ok(None)` at the end of the
/// stream.
pub async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    limit: usize,
) -> std::io::Result<Option<String>> {
    let mut line = Vec::new();
    let mut limited = tokio::io::AsyncReadExt::take(&mut *reader, limit as u64);
    let n = limited.read_until(b'\n', &mut line).await?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            if n >= limit {
                format!("a line longer than {limit} bytes")
            } else {
                "a line cut short".into()
            },
        ));
    }
    line.pop();
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "a line not in UTF-8"))
}

/// Writes `value` as one line of JSON.
pub async fn write_line<W: tokio::io::AsyncWrite + Unpin, T: Serialize>(
    writer: &mut W,
    value: &T,
) -> std::io::Result<()> {
    let mut text = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    text.push(b'\n');
    writer.write_all(&text).await?;
    writer.flush().await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn vectors() -> serde_json::Value {
        let text = include_str!("../../../specs/vectors/screen.json");
        serde_json::from_str(text).unwrap()
    }

    /// Every line of `specs/vectors/screen.json` (derived from the spec by
    /// `check_screen.py`) parses into the API's types and serializes back
    /// to the same JSON value.
    #[test]
    fn vectors_round_trip() {
        let v = vectors();
        assert_eq!(v["api"], API_VERSION);
        assert_eq!(v["max_line"], MAX_LINE);
        assert_eq!(v["max_answer_line"], MAX_ANSWER_LINE);
        for case in v["requests"].as_array().unwrap() {
            let line = case["line"].as_str().unwrap();
            let parsed: Envelope =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{}: {e}", case["name"]));
            let back = serde_json::to_value(&parsed).unwrap();
            let want: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(back, want, "{}", case["name"]);
        }
        for case in v["answers"].as_array().unwrap() {
            let line = case["line"].as_str().unwrap();
            let parsed: Line =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{}: {e}", case["name"]));
            let back = serde_json::to_value(&parsed).unwrap();
            let want: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(back, want, "{}", case["name"]);
        }
        for (kind, code) in v["exit_codes"].as_object().unwrap() {
            let kind: ErrorKind = serde_json::from_value(serde_json::json!(kind)).unwrap();
            assert_eq!(u64::from(kind.exit_code()), code.as_u64().unwrap());
        }
    }

    #[tokio::test]
    async fn lines_are_bounded_and_must_end() {
        let mut ok: &[u8] = b"{\"a\":1}\nrest";
        assert_eq!(
            read_line(&mut ok, MAX_LINE).await.unwrap().as_deref(),
            Some("{\"a\":1}")
        );
        let long = vec![b'x'; MAX_LINE + 10];
        let err = read_line(&mut long.as_slice(), MAX_LINE).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        let cut: &[u8] = b"no newline";
        assert!(read_line(&mut &cut[..], MAX_LINE).await.is_err());
        let bad: &[u8] = b"\xff\xfe\n";
        assert!(read_line(&mut &bad[..], MAX_LINE).await.is_err());
        let empty: &[u8] = b"";
        assert_eq!(read_line(&mut &empty[..], MAX_LINE).await.unwrap(), None);
    }
}
