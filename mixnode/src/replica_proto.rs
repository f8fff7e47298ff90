//! The replica protocol's wire forms (`/mtos/store/3`, `specs/storage.md`
//! §4): what a service node, or a storage node repairing, asks a replica,
//! and the status the replica answers with. One request and one response
//! per stream, each framed as `code ‖ 4-byte length ‖ body` (the
//! directory protocol's framing, `mtos-net`). Every request body starts
//! with the nonce of the client request it serves (a random one for
//! repair), and every answer body ends with the replica's signature
//! (`receipts`). Sans-IO: codes and bodies.

use mtos_crypto::geometry::CHUNK_SIZE;
use mtos_crypto::item::Locator;
use mtos_crypto::stamp::{STAMP_LEN, Stamp};

use crate::receipts::NONCE_LEN;
use crate::records::Kind;

/// The largest request body (a put of a whole chunk).
pub const MAX_STORE_REQUEST: usize = NONCE_LEN + 1 + 32 + STAMP_LEN + CHUNK_SIZE;
/// The largest answer body read from a replica (a record, or a bitmap,
/// and the signature trailer).
pub const MAX_STORE_ANSWER: usize = 1 << 16;

/// What a request asks a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplicaOp {
    /// Store a record: body `kind ‖ locator ‖ stamp ‖ record`.
    Put,
    /// Fetch a record: body `kind ‖ locator`.
    Get,
    /// Which slots are written: body slot locators, 32 bytes each.
    Probe,
    /// Which records of a kind are held (repair, `specs/storage.md` §1):
    /// body `kind ‖ locators` (1 to `MAX_PROBE`, 32 bytes each).
    Have,
    /// A repair copy: a put's body, sent by a storing node that holds the
    /// record, whose stamp may be of any earlier epoch (it came with the
    /// record); taken only from nodes the document lists as storing.
    Copy,
}

impl ReplicaOp {
    /// The wire code.
    pub const fn code(self) -> u8 {
        match self {
            ReplicaOp::Put => 1,
            ReplicaOp::Get => 2,
            ReplicaOp::Probe => 3,
            ReplicaOp::Have => 4,
            ReplicaOp::Copy => 5,
        }
    }

    /// The operation with this wire code.
    pub const fn from_u8(code: u8) -> Option<Self> {
        match code {
            1 => Some(ReplicaOp::Put),
            2 => Some(ReplicaOp::Get),
            3 => Some(ReplicaOp::Probe),
            4 => Some(ReplicaOp::Have),
            5 => Some(ReplicaOp::Copy),
            _ => None,
        }
    }

    /// A stable label, for metrics.
    pub const fn name(self) -> &'static str {
        match self {
            ReplicaOp::Put => "put",
            ReplicaOp::Get => "get",
            ReplicaOp::Probe => "probe",
            ReplicaOp::Have => "have",
            ReplicaOp::Copy => "copy",
        }
    }
}

/// How a replica answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplicaStatus {
    /// Done: a get's record, a probe's or have's bitmap, nothing for a put.
    Ok,
    /// No such record.
    NotFound,
    /// Refused: the body is the reason's label (UTF-8).
    Refused,
    /// The request did not parse, or the store failed.
    Error,
}

impl ReplicaStatus {
    /// The wire code.
    pub const fn code(self) -> u8 {
        match self {
            ReplicaStatus::Ok => 0x10,
            ReplicaStatus::NotFound => 0x11,
            ReplicaStatus::Refused => 0x12,
            ReplicaStatus::Error => 0x13,
        }
    }

    /// The status with this wire code.
    pub const fn from_u8(code: u8) -> Option<Self> {
        match code {
            0x10 => Some(ReplicaStatus::Ok),
            0x11 => Some(ReplicaStatus::NotFound),
            0x12 => Some(ReplicaStatus::Refused),
            0x13 => Some(ReplicaStatus::Error),
            _ => None,
        }
    }
}

/// What follows the nonce in a put request: `kind ‖ locator ‖ stamp ‖
/// record`.
pub fn put_rest(kind: Kind, locator: &Locator, stamp: &Stamp, record: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(1 + 32 + STAMP_LEN + record.len());
    body.push(kind.byte());
    body.extend_from_slice(locator.as_bytes());
    body.extend_from_slice(&stamp.encode());
    body.extend_from_slice(record);
    body
}

/// A put's kind, locator, stamp and record from the body after its
/// nonce, or `None` when it is too short or the kind unknown.
pub fn put_parts(body: &[u8]) -> Option<(Kind, Locator, Stamp, &[u8])> {
    let (kind, locator, rest) = kind_and_locator(body)?;
    let (stamp, record) = rest.split_first_chunk::<STAMP_LEN>()?;
    Some((kind, locator, Stamp::decode(stamp), record))
}

/// What follows the nonce in a get request (`record` empty; a put's
/// is [`put_rest`]): `kind ‖ locator ‖ record`.
pub fn request_rest(kind: Kind, locator: &Locator, record: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(1 + 32 + record.len());
    body.push(kind.byte());
    body.extend_from_slice(locator.as_bytes());
    body.extend_from_slice(record);
    body
}

/// The body of a get request under `nonce` (`record` empty).
pub fn request_body(
    nonce: &[u8; NONCE_LEN],
    kind: Kind,
    locator: &Locator,
    record: &[u8],
) -> Vec<u8> {
    with_nonce(nonce, &request_rest(kind, locator, record))
}

/// `nonce ‖ rest`: a request body.
pub fn with_nonce(nonce: &[u8; NONCE_LEN], rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(NONCE_LEN + rest.len());
    body.extend_from_slice(nonce);
    body.extend_from_slice(rest);
    body
}

/// A request body's nonce and the rest; `None` when shorter than a nonce.
pub fn split_nonce(body: &[u8]) -> Option<([u8; NONCE_LEN], &[u8])> {
    let (nonce, rest) = body.split_at_checked(NONCE_LEN)?;
    Some((nonce.try_into().ok()?, rest))
}

/// A get's kind and locator and what follows them (empty for a get; a
/// put's stamp and record) from the body after its nonce, or `None` when it is too short or the kind
/// unknown.
pub fn kind_and_locator(body: &[u8]) -> Option<(Kind, Locator, &[u8])> {
    let (&k, rest) = body.split_first()?;
    let kind = Kind::from_byte(k)?;
    let (l, rest) = rest.split_at_checked(32)?;
    Some((kind, Locator::from_bytes(l.try_into().ok()?), rest))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_codes_are_refused() {
        for op in [
            ReplicaOp::Put,
            ReplicaOp::Get,
            ReplicaOp::Probe,
            ReplicaOp::Have,
            ReplicaOp::Copy,
        ] {
            assert_eq!(ReplicaOp::from_u8(op.code()), Some(op));
            assert_eq!(ReplicaStatus::from_u8(op.code()), None);
        }
        for status in [
            ReplicaStatus::Ok,
            ReplicaStatus::NotFound,
            ReplicaStatus::Refused,
            ReplicaStatus::Error,
        ] {
            assert_eq!(ReplicaStatus::from_u8(status.code()), Some(status));
            assert_eq!(ReplicaOp::from_u8(status.code()), None);
        }
        assert_eq!(ReplicaOp::from_u8(0), None);
        assert_eq!(ReplicaStatus::from_u8(0xff), None);
    }

    #[test]
    fn bodies_parse_back_and_short_ones_are_refused() {
        let l = Locator::of(b"x");
        let body = request_body(&[7; NONCE_LEN], Kind::Slot, &l, b"rec");
        let (nonce, body) = split_nonce(&body).unwrap();
        assert_eq!(nonce, [7; NONCE_LEN]);
        assert!(split_nonce(&[0; NONCE_LEN - 1]).is_none());
        let (kind, locator, rest) = kind_and_locator(body).unwrap();
        assert_eq!((kind, locator, rest), (Kind::Slot, l, &b"rec"[..]));
        assert!(kind_and_locator(&body[..32]).is_none());
        assert!(kind_and_locator(&[]).is_none());
        let mut bad = body.to_vec();
        bad[0] = 0xee;
        assert!(kind_and_locator(&bad).is_none());
    }
}
