//! Requests to service nodes and their responses (`specs/storage.md` §4).
//! A request is the message of a forward packet whose final hop is a
//! service node; it carries one reply block, through which the service
//! answers. Sans-IO: the wire forms only.
//!
//! A put-chunk request with a full chunk fills the packet exactly:
//! 52 bytes of header, a 408-byte reply block and a 3,619-byte chunk make
//! the 4,079 bytes a forward packet carries (`geometry.md`). A put's
//! locator follows from its record (`storage.md` §2), so in a put the
//! header's 32 locator bytes carry the put's storage stamp instead.

use mtos_crypto::geometry::{CHUNK_SIZE, SURB_SIZE};
use mtos_crypto::item::Locator;
use mtos_crypto::sphinx::{self, MAX_MESSAGE, NodeAddress, SphinxError};
use mtos_crypto::stamp::{STAMP_LEN, Stamp};

use crate::records::{Kind, locator_of};

/// Bytes of an encoded [`ReplyBlock`]: epoch, expiry, Sphinx SURB.
pub const BLOCK_SIZE: usize = 4 + 8 + SURB_SIZE;
/// Request wire version.
pub const REQUEST_VERSION: u8 = 3;
/// Bytes of a request before its reply block: version, op, id, locator
/// (a put's stamp), body length.
pub const REQUEST_HEADER: usize = 1 + 1 + 16 + 32 + 2;
/// Bytes of a response before its body: version, id, status.
pub const RESPONSE_HEADER: usize = 1 + 16 + 1;
/// Slot locators one probe asks about at most.
pub const MAX_PROBE: usize = CHUNK_SIZE / 32;
/// Slot locators in a follower's poll probe: one feed's window of this
/// many slots (`specs/feeds.md` §5). A mix's loop asks a probe of this
/// size too, so that its service node cannot tell it from a poll
/// (`specs/mixing.md` §5).
pub const PROBE_WINDOW: usize = 8;

const _: () = assert!(REQUEST_HEADER + BLOCK_SIZE + CHUNK_SIZE == MAX_MESSAGE);
const _: () = assert!(STAMP_LEN == 32);

/// One single-use reply block as it travels (`client.md` §5): the key
/// epoch it was built for (its frames carry that key tag), the Unix time
/// after which it must not be used, and the Sphinx SURB.
#[derive(Clone, PartialEq, Eq)]
pub struct ReplyBlock {
    /// Key epoch of the SURB's hops.
    pub epoch: u32,
    /// Unix seconds: not to be used at or after this time.
    pub expires: u64,
    /// The Sphinx SURB ([`SURB_SIZE`] bytes).
    pub surb: Vec<u8>,
}

impl std::fmt::Debug for ReplyBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyBlock")
            .field("epoch", &self.epoch)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

impl ReplyBlock {
    /// Appends `epoch (4, BE) || expires (8, BE) || surb`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.extend_from_slice(&self.expires.to_be_bytes());
        out.extend_from_slice(&self.surb);
    }

    /// The packet carrying `message` back through this block, framed for
    /// the block's first hop under the key tag of the block's epoch:
    /// `(first hop, frame)`.
    pub fn reply_frame(&self, message: &[u8]) -> Result<(NodeAddress, Vec<u8>), SphinxError> {
        let (packet, first) = sphinx::use_surb(&self.surb, message)?;
        Ok((
            first,
            sphinx::Frame::encode((self.epoch % 256) as u8, &packet)?,
        ))
    }

    /// Parses exactly [`BLOCK_SIZE`] bytes.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != BLOCK_SIZE {
            return None;
        }
        let (epoch, rest) = bytes.split_at(4);
        let (expires, surb) = rest.split_at(8);
        Some(Self {
            epoch: u32::from_be_bytes(epoch.try_into().ok()?),
            expires: u64::from_be_bytes(expires.try_into().ok()?),
            surb: surb.to_vec(),
        })
    }
}

/// What a request asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Store a record (chunk or slot) at the locator its bytes name, with
    /// its storage stamp.
    Put(Kind, Vec<u8>, Stamp),
    /// Fetch the record at the locator.
    Get(Kind),
    /// Which of these slot locators hold a record (the request's own
    /// locator is the first).
    Probe(Vec<Locator>),
}

impl Op {
    fn byte(&self) -> u8 {
        match self {
            Op::Put(Kind::Chunk, ..) => 1,
            Op::Get(Kind::Chunk) => 2,
            Op::Put(Kind::Slot, ..) => 3,
            Op::Get(Kind::Slot) => 4,
            Op::Probe(_) => 5,
        }
    }
}

/// A request to a service node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Chosen by the client to match the response.
    pub id: [u8; 16],
    /// The record's locator (a probe's first; a put's, the one its
    /// record names).
    pub locator: Locator,
    /// What to do.
    pub op: Op,
    /// Where the answer goes.
    pub reply: ReplyBlock,
}

/// Why a request or response did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// Not the expected layout.
    #[error("malformed service message: {0}")]
    Malformed(&'static str),
    /// A version this node does not speak.
    #[error("service message version {0} is not supported")]
    Version(u8),
}

impl Request {
    /// The request's bytes (at most [`MAX_MESSAGE`]).
    pub fn encode(&self) -> Result<Vec<u8>, ServiceError> {
        let body: Vec<u8> = match &self.op {
            Op::Put(kind, record, _) if record.len() <= kind.max_len() => record.clone(),
            Op::Put(..) => return Err(ServiceError::Malformed("record too large")),
            Op::Get(_) => Vec::new(),
            Op::Probe(more) if more.len() < MAX_PROBE => {
                more.iter().flat_map(|l| *l.as_bytes()).collect()
            }
            Op::Probe(_) => return Err(ServiceError::Malformed("too many probes")),
        };
        if self.reply.surb.len() != SURB_SIZE {
            return Err(ServiceError::Malformed("reply block size"));
        }
        let mut out = Vec::with_capacity(REQUEST_HEADER + BLOCK_SIZE + body.len());
        out.push(REQUEST_VERSION);
        out.push(self.op.byte());
        out.extend_from_slice(&self.id);
        match &self.op {
            Op::Put(_, _, stamp) => out.extend_from_slice(&stamp.encode()),
            _ => out.extend_from_slice(self.locator.as_bytes()),
        }
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        self.reply.encode(&mut out);
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Parses a request (as the service node's final hop delivered it:
    /// trailing padding is not allowed). A put's locator is the one its
    /// record names; a slot record too short to name one is malformed.
    pub fn decode(bytes: &[u8]) -> Result<Self, ServiceError> {
        let malformed = ServiceError::Malformed;
        if bytes.len() < REQUEST_HEADER + BLOCK_SIZE {
            return Err(malformed("truncated request"));
        }
        if bytes[0] != REQUEST_VERSION {
            return Err(ServiceError::Version(bytes[0]));
        }
        let op = bytes[1];
        let id: [u8; 16] = bytes[2..18].try_into().map_err(|_| malformed("id"))?;
        let field: [u8; 32] = bytes[18..50].try_into().map_err(|_| malformed("locator"))?;
        let mut locator = Locator::from_bytes(field);
        let len = usize::from(u16::from_be_bytes([bytes[50], bytes[51]]));
        let reply = ReplyBlock::decode(&bytes[REQUEST_HEADER..REQUEST_HEADER + BLOCK_SIZE])
            .ok_or(malformed("reply block"))?;
        let body = &bytes[REQUEST_HEADER + BLOCK_SIZE..];
        if body.len() != len {
            return Err(malformed("body length"));
        }
        let op = match op {
            1 | 3 => {
                let kind = if op == 1 { Kind::Chunk } else { Kind::Slot };
                if body.len() > kind.max_len() {
                    return Err(malformed("record too large"));
                }
                locator = locator_of(kind, body).ok_or(malformed("slot record"))?;
                Op::Put(kind, body.to_vec(), Stamp::decode(&field))
            }
            2 | 4 if body.is_empty() => Op::Get(if op == 2 { Kind::Chunk } else { Kind::Slot }),
            5 if body.len().is_multiple_of(32) && body.len() / 32 < MAX_PROBE => Op::Probe(
                body.chunks_exact(32)
                    .filter_map(|c| c.try_into().ok().map(Locator::from_bytes))
                    .collect(),
            ),
            _ => return Err(malformed("unknown operation or body")),
        };
        Ok(Self {
            id,
            locator,
            op,
            reply,
        })
    }
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Done: a put stored (or held already), a get or probe answered.
    Ok,
    /// No replica holds the record.
    NotFound,
    /// The replicas refused the record (reason in `Response::body[0]`:
    /// the `Refused` order of `storage.md` §2).
    Refused,
    /// No replica could be reached.
    Unavailable,
    /// The request did not parse.
    BadRequest,
}

impl Status {
    fn byte(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::NotFound => 1,
            Status::Refused => 2,
            Status::Unavailable => 3,
            Status::BadRequest => 4,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            0 => Status::Ok,
            1 => Status::NotFound,
            2 => Status::Refused,
            3 => Status::Unavailable,
            4 => Status::BadRequest,
            _ => return None,
        })
    }
}

/// A service node's answer, sent through the request's reply block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The request's id.
    pub id: [u8; 16],
    /// How it ended.
    pub status: Status,
    /// A get's record, a probe's bitmap (bit i of byte i/8, most
    /// significant first, for the i-th locator asked), a refusal's reason.
    pub body: Vec<u8>,
}

/// The longest response body: what a reply carries after its kind byte
/// (`client.md` §5) and the response header.
pub const MAX_RESPONSE_BODY: usize = MAX_MESSAGE - 1 - RESPONSE_HEADER;

impl Response {
    /// The response's bytes.
    pub fn encode(&self) -> Result<Vec<u8>, ServiceError> {
        if self.body.len() > MAX_RESPONSE_BODY {
            return Err(ServiceError::Malformed("response too large"));
        }
        let mut out = Vec::with_capacity(RESPONSE_HEADER + self.body.len());
        out.push(REQUEST_VERSION);
        out.extend_from_slice(&self.id);
        out.push(self.status.byte());
        out.extend_from_slice(&self.body);
        Ok(out)
    }

    /// Parses a response.
    pub fn decode(bytes: &[u8]) -> Result<Self, ServiceError> {
        if bytes.len() < RESPONSE_HEADER {
            return Err(ServiceError::Malformed("truncated response"));
        }
        if bytes[0] != REQUEST_VERSION {
            return Err(ServiceError::Version(bytes[0]));
        }
        Ok(Self {
            id: bytes[1..17]
                .try_into()
                .map_err(|_| ServiceError::Malformed("id"))?,
            status: Status::from_byte(bytes[17]).ok_or(ServiceError::Malformed("status"))?,
            body: bytes[RESPONSE_HEADER..].to_vec(),
        })
    }
}

#[cfg(test)]
mod tests;
