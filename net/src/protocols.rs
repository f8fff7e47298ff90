//! The stream protocols: `/mtos/mix/1` (fixed-size mix frames, back to
//! back), `/mtos/client/3` (a client's session with its gateway) and
//! `/mtos/dir/1` (one request and one response per stream, to the
//! authority; `/mtos/dir-authority/1` the same between authorities), with
//! their framing.

use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::StreamProtocol;
use mtos_mixnode::directory::{NetworkDocument, Trust};

use crate::NetError;

/// Mix frames.
pub const MIX_PROTOCOL: StreamProtocol = StreamProtocol::new("/mtos/mix/1");
/// A client's session with its gateway: the client writes its mailbox
/// secret, the gateway writes delivery frames at a constant rate.
pub const CLIENT_PROTOCOL: StreamProtocol = StreamProtocol::new("/mtos/client/3");
/// Directory requests.
pub const DIR_PROTOCOL: StreamProtocol = StreamProtocol::new("/mtos/dir/1");
/// Directory requests between authorities: the same framing as
/// [`DIR_PROTOCOL`], on [`crate::gated::PeerGated`] streams that exist only
/// on connections between the configured authorities, so a flood of
/// directory streams from anyone else cannot crowd them out.
pub const AUTHORITY_PROTOCOL: StreamProtocol = StreamProtocol::new("/mtos/dir-authority/1");
/// The byte a node writes on a mix stream it accepted, before any frame
/// flows. libp2p-stream drops an inbound stream when its accept queue is
/// momentarily full, so a sender only trusts a stream once it has read
/// this byte (and otherwise reopens it).
pub const MIX_READY: u8 = 0x01;
/// How long a sender waits for [`MIX_READY`].
pub const MIX_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a mix stream to `peer` and waits for the receiver's
/// [`MIX_READY`].
pub async fn open_mix_stream(
    control: &mut libp2p_stream::Control,
    peer: libp2p::PeerId,
) -> Result<libp2p::Stream, NetError> {
    // libp2p-stream asks for a dial through a queue that holds one
    // request at a time and waits for a connection without a deadline:
    // callers dial themselves as well, and the wait is bounded here.
    let mut stream =
        tokio::time::timeout(MIX_READY_TIMEOUT, control.open_stream(peer, MIX_PROTOCOL))
            .await
            .map_err(|_| NetError::Timeout("a connection to the peer".into()))?
            .map_err(|e| NetError::Link(e.to_string()))?;
    let mut ready = [0u8; 1];
    match tokio::time::timeout(MIX_READY_TIMEOUT, stream.read_exact(&mut ready)).await {
        Ok(Ok(())) if ready[0] == MIX_READY => Ok(stream),
        Ok(Ok(())) => Err(NetError::BadAnswer(
            "the peer answered with an unknown byte".into(),
        )),
        Ok(Err(e)) => Err(NetError::Link(format!(
            "the peer did not accept the stream: {e}"
        ))),
        Err(_) => Err(NetError::Timeout("the peer's stream acceptance".into())),
    }
}

/// Directory request: upload a signed descriptor.
pub const DIR_PUT_DESCRIPTOR: u8 = 1;
/// Directory request: fetch the current signed document.
pub const DIR_GET_DOCUMENT: u8 = 2;
/// Directory request: the votes an authority holds for the running round
/// (`specs/directory.md` §4, §6).
pub const DIR_GET_VOTES: u8 = 3;
/// Directory request: an authority's signed consensus for the running
/// round, with the signatures it has gathered.
pub const DIR_GET_PROPOSAL: u8 = 4;
/// Directory request: the signed votes the authority's current document
/// was computed from (for auditors).
pub const DIR_GET_DOCUMENT_VOTES: u8 = 5;

pub use mtos_mixnode::directory::{decode_votes, encode_votes};

/// Largest directory response body (a signed document).
pub const MAX_DIR_MESSAGE: usize = mtos_mixnode::directory::MAX_DOCUMENT_BODY + 4096;
/// Largest directory request body (a signed descriptor).
pub const MAX_DIR_REQUEST: usize = mtos_mixnode::directory::MAX_DESCRIPTOR_BODY + 2048;

/// Reads one length-prefixed directory message (`kind`, then a 4-byte
/// big-endian length, then the body), refusing bodies over `max` before
/// allocating them.
pub async fn read_message<S: futures::AsyncRead + Unpin>(
    stream: &mut S,
    max: usize,
) -> std::io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).await?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > max.min(MAX_DIR_MESSAGE) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "directory message too large",
        ));
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await?;
    Ok((head[0], body))
}

/// Writes one directory message.
pub async fn write_message<S: futures::AsyncWrite + Unpin>(
    stream: &mut S,
    kind: u8,
    body: &[u8],
) -> std::io::Result<()> {
    let len = u32::try_from(body.len())
        .ok()
        .filter(|l| *l as usize <= MAX_DIR_MESSAGE)
        .ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "message too large")
        })?;
    let mut head = [0u8; 5];
    head[0] = kind;
    head[1..].copy_from_slice(&len.to_be_bytes());
    stream.write_all(&head).await?;
    stream.write_all(body).await?;
    stream.flush().await
}

/// Directory response status: success.
pub const DIR_OK: u8 = 0;
/// Directory response status: refused (the body is a UTF-8 reason).
pub const DIR_ERROR: u8 = 1;

/// One directory request to `authority` over a fresh stream, with a
/// deadline. Returns the response body, or the authority's reason.
pub async fn directory_request(
    control: &mut libp2p_stream::Control,
    authority: libp2p::PeerId,
    kind: u8,
    body: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, NetError> {
    directory_request_on(control, DIR_PROTOCOL, authority, kind, body, timeout).await
}

/// [`directory_request`] over `protocol` ([`AUTHORITY_PROTOCOL`] between
/// authorities, on their gated control).
pub async fn directory_request_on(
    control: &mut libp2p_stream::Control,
    protocol: StreamProtocol,
    authority: libp2p::PeerId,
    kind: u8,
    body: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, NetError> {
    let link = |e: &dyn std::fmt::Display| NetError::Link(format!("authority: {e}"));
    let exchange = async {
        let mut stream = control
            .open_stream(authority, protocol.clone())
            .await
            .map_err(|e| match e {
                libp2p_stream::OpenStreamError::UnsupportedProtocol(p) => {
                    NetError::Unsupported(format!("the authority does not support {p}"))
                }
                e => link(&e),
            })?;
        write_message(&mut stream, kind, body)
            .await
            .map_err(|e| link(&e))?;
        let (status, reply) = read_message(&mut stream, MAX_DIR_MESSAGE)
            .await
            .map_err(|e| link(&e))?;
        let _ = stream.close().await;
        match status {
            DIR_OK => Ok(reply),
            _ => Err(NetError::Refused {
                who: "the authority".into(),
                reason: String::from_utf8_lossy(&reply).into_owned(),
            }),
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| NetError::Timeout("a directory request".into()))?
}

/// [`directory_request`], tried up to three times: an authority under
/// load may drop a stream it cannot queue.
pub async fn directory_request_retrying(
    control: &mut libp2p_stream::Control,
    authority: libp2p::PeerId,
    kind: u8,
    body: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, NetError> {
    let mut last = NetError::Timeout("a directory request".into());
    for attempt in 0..3u64 {
        match directory_request(control, authority, kind, body, timeout).await {
            Ok(reply) => return Ok(reply),
            // The authority answered: retrying would not change its mind.
            Err(e @ NetError::Refused { .. }) => return Err(e),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(100 + 150 * attempt)).await;
    }
    Err(last)
}

/// Fetches the current document from `peer` (an authority, or a node
/// serving the one it installed) and verifies it (signatures, validity,
/// and every node's PeerId and addresses). Returns it with its signed
/// bytes.
pub async fn fetch_document(
    control: &mut libp2p_stream::Control,
    peer: libp2p::PeerId,
    trust: &Trust,
) -> Result<(NetworkDocument, Vec<u8>), NetError> {
    let bytes = directory_request_retrying(
        control,
        peer,
        DIR_GET_DOCUMENT,
        &[],
        Duration::from_secs(10),
    )
    .await?;
    let document = NetworkDocument::verify(&bytes, trust, crate::unix_now())?;
    Ok((document, bytes))
}

/// A directory authority as nodes and clients are configured with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorityAddr {
    /// Its ed25519 key.
    pub key: [u8; 32],
    /// Its PeerId (from the key).
    pub peer: libp2p::PeerId,
    /// Where it listens.
    pub addr: libp2p::Multiaddr,
}

impl AuthorityAddr {
    /// From a key (64 hex digits) and a multiaddr, as configs hold them;
    /// the error says which is wrong.
    pub fn parse(key: &str, addr: &str) -> Result<Self, String> {
        let key: [u8; 32] = data_encoding::HEXLOWER_PERMISSIVE
            .decode(key.trim().as_bytes())
            .ok()
            .and_then(|k| k.try_into().ok())
            .filter(|k| mtos_crypto::VerifyKey::from_bytes(*k).is_ok())
            .ok_or("key: must be an authority's ed25519 key, 64 hex digits")?;
        let peer = crate::peer_id_of(&key).map_err(|e| format!("key: {e}"))?;
        let addr = addr
            .trim()
            .parse()
            .map_err(|e| format!("addr: not a multiaddr: {e}"))?;
        Ok(Self { key, peer, addr })
    }
}

/// Fetches the document from the authorities in turn, starting with the
/// one at `start`, until one answers with a document that verifies.
/// Returns it, its signed bytes and the index of the authority that gave
/// it; the error is the last authority's.
pub async fn fetch_document_any(
    control: &mut libp2p_stream::Control,
    authorities: &[AuthorityAddr],
    trust: &Trust,
    start: usize,
) -> Result<(NetworkDocument, Vec<u8>, usize), NetError> {
    if authorities.is_empty() {
        return Err(NetError::Config("no authority configured".into()));
    }
    let mut why = Vec::new();
    for i in 0..authorities.len() {
        let at = (start + i) % authorities.len();
        match fetch_document(control, authorities[at].peer, trust).await {
            Ok((doc, signed)) => return Ok((doc, signed, at)),
            Err(e) => why.push(format!("{}: {e}", authorities[at].peer)),
        }
    }
    Err(NetError::Refused {
        who: "every authority".into(),
        reason: format!("no valid network document ({})", why.join("; ")),
    })
}
