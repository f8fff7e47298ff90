//! Why talking to the network failed, by what the caller can do about it:
//! retry code matches on these kinds, never on message text.

use mtos_mixnode::directory::DirectoryError;

/// A failure to use the network: a link, a peer's answer, a route, a
/// queue, or the network document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The network document lacks what a route needs (a node at a
    /// position, keys for the epoch); a later document may have it.
    #[error("no route: the network document lacks {0}")]
    NoRoute(String),
    /// No answer in time; worth asking again.
    #[error("{0}: no answer in time")]
    Timeout(String),
    /// A bounded queue is full; worth trying again later.
    #[error("{0} is full")]
    QueueFull(String),
    /// The network document is out of date and no newer one came.
    #[error("{0}")]
    DocumentExpired(String),
    /// A network document that does not verify.
    #[error("network document: {0}")]
    Document(#[from] DirectoryError),
    /// The session or stream is closed for good: asking again through it
    /// cannot work.
    #[error("{0}")]
    Closed(String),
    /// A peer answered with a refusal and its reason: asking again would
    /// not change its mind.
    #[error("{who} refused: {reason}")]
    Refused {
        /// Who refused (the authority, a gateway, a replica).
        who: String,
        /// Its reason.
        reason: String,
    },
    /// A link could not be opened or used.
    #[error("{0}")]
    Link(String),
    /// The peer does not speak the protocol asked for (an older version,
    /// or a peer that does not count the asker among those it serves it
    /// to); another protocol may work.
    #[error("{0}")]
    Unsupported(String),
    /// An answer that does not parse or does not belong to the request.
    #[error("{0}")]
    BadAnswer(String),
    /// The network configuration cannot be used (a key, an address).
    #[error("{0}")]
    Config(String),
    /// Asked as often as allowed, never done.
    #[error("{0}")]
    GaveUp(String),
}
