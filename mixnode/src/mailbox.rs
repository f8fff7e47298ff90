//! A gateway's mailboxes (`specs/client.md`): payloads whose final hop is
//! this gateway, filed under the mailbox id in their Sphinx destination,
//! and the fixed-size delivery frames the gateway sends each connected
//! client at a constant rate, real or dummy. Sans-IO.

use std::collections::{HashMap, VecDeque};

use mtos_crypto::geometry::SPHINX_PAYLOAD_SIZE;
use mtos_crypto::sphinx::SURB_ID_LEN;

/// A delivery frame: kind (0 dummy, 1 real), SURB id, Sphinx payload.
pub const DELIVERY_FRAME_SIZE: usize = 1 + SURB_ID_LEN + SPHINX_PAYLOAD_SIZE;
const DUMMY: u8 = 0;
const REAL: u8 = 1;

/// A payload waiting for its client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The SURB id of the packet's destination (zero for forward
    /// messages).
    pub surb_id: [u8; SURB_ID_LEN],
    /// The Sphinx payload as the final hop got it.
    pub payload: Vec<u8>,
}

/// Why a delivery frame was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// Not one frame long.
    #[error("delivery frame of {0} bytes, expected {DELIVERY_FRAME_SIZE}")]
    WrongSize(usize),
    /// An unknown kind byte.
    #[error("unknown delivery kind {0}")]
    Kind(u8),
}

/// How long a mailbox outlives its last session, so a client that
/// reconnects finds what arrived meanwhile (seconds).
pub const MAILBOX_KEEP_SECS: u64 = 3_600;
/// Mailboxes registered at once (open sessions and recently closed ones).
pub const MAX_REGISTERED: usize = 100_000;

/// What became of a payload offered to [`Mailboxes::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filed {
    /// Stored for its client.
    Stored,
    /// Dropped: the mailbox or the gateway is full.
    Full,
    /// Dropped: no session opened this mailbox within
    /// [`MAILBOX_KEEP_SECS`] (a sender cannot fill a gateway with
    /// payloads for mailboxes nobody reads).
    NoSession,
}

impl Filed {
    /// Its metric label.
    pub fn name(self) -> &'static str {
        match self {
            Filed::Stored => "stored",
            Filed::Full => "full",
            Filed::NoSession => "no_session",
        }
    }
}

/// A mailbox a session opened: how many sessions hold it open, and when
/// it lapses once none does (Unix seconds).
#[derive(Debug, Clone, Copy)]
struct Registration {
    open: usize,
    until: u64,
}

/// Every mailbox of a gateway, bounded per mailbox and in total. Only
/// mailboxes a client session opened (and kept for [`MAILBOX_KEEP_SECS`]
/// after it closed) take payloads.
#[derive(Debug)]
pub struct Mailboxes {
    boxes: HashMap<[u8; 32], VecDeque<Stored>>,
    registered: HashMap<[u8; 32], Registration>,
    total: usize,
    per_box: usize,
    max_total: usize,
}

impl Mailboxes {
    /// Empty mailboxes holding at most `per_box` payloads each and
    /// `max_total` in all.
    pub fn new(per_box: usize, max_total: usize) -> Self {
        Self {
            boxes: HashMap::new(),
            registered: HashMap::new(),
            total: 0,
            per_box: per_box.max(1),
            max_total: max_total.max(1),
        }
    }

    /// A session opened `mailbox` at `now`. `false` (nothing registered)
    /// when [`MAX_REGISTERED`] mailboxes are registered even after the
    /// lapsed ones went.
    pub fn open(&mut self, mailbox: [u8; 32], now: u64) -> bool {
        if !self.registered.contains_key(&mailbox) && self.registered.len() >= MAX_REGISTERED {
            self.expire(now);
            if self.registered.len() >= MAX_REGISTERED {
                return false;
            }
        }
        let r = self.registered.entry(mailbox).or_insert(Registration {
            open: 0,
            until: now,
        });
        r.open += 1;
        true
    }

    /// A session of `mailbox` closed at `now`: the mailbox lapses
    /// [`MAILBOX_KEEP_SECS`] later unless another session opens it.
    pub fn close(&mut self, mailbox: &[u8; 32], now: u64) {
        if let Some(r) = self.registered.get_mut(mailbox) {
            r.open = r.open.saturating_sub(1);
            r.until = now.saturating_add(MAILBOX_KEEP_SECS);
        }
    }

    /// Drops lapsed mailboxes and what they held; returns how many
    /// payloads went.
    pub fn expire(&mut self, now: u64) -> usize {
        let lapsed: Vec<[u8; 32]> = self
            .registered
            .iter()
            .filter(|(_, r)| r.open == 0 && r.until <= now)
            .map(|(m, _)| *m)
            .collect();
        let mut dropped = 0;
        for m in lapsed {
            self.registered.remove(&m);
            if let Some(b) = self.boxes.remove(&m) {
                dropped += b.len();
                self.total -= b.len();
            }
        }
        dropped
    }

    /// Files a payload for `mailbox`; anything but [`Filed::Stored`]
    /// means it was dropped (the driver counts it).
    pub fn push(&mut self, mailbox: [u8; 32], stored: Stored) -> Filed {
        if !self.registered.contains_key(&mailbox) {
            return Filed::NoSession;
        }
        if stored.payload.len() != SPHINX_PAYLOAD_SIZE || self.total >= self.max_total {
            return Filed::Full;
        }
        let b = self.boxes.entry(mailbox).or_default();
        if b.len() >= self.per_box {
            return Filed::Full;
        }
        b.push_back(stored);
        self.total += 1;
        Filed::Stored
    }

    /// The oldest payload of a mailbox.
    pub fn pop(&mut self, mailbox: &[u8; 32]) -> Option<Stored> {
        let b = self.boxes.get_mut(mailbox)?;
        let out = b.pop_front();
        if b.is_empty() {
            self.boxes.remove(mailbox);
        }
        if out.is_some() {
            self.total -= 1;
        }
        out
    }

    /// Payloads held in all.
    pub fn held(&self) -> usize {
        self.total
    }
}

/// The frame for one delivery slot: the payload, or a dummy.
pub fn encode_delivery(stored: Option<&Stored>) -> Vec<u8> {
    let mut frame = vec![0u8; DELIVERY_FRAME_SIZE];
    if let Some(s) = stored {
        frame[0] = REAL;
        frame[1..1 + SURB_ID_LEN].copy_from_slice(&s.surb_id);
        frame[1 + SURB_ID_LEN..].copy_from_slice(&s.payload);
    } else {
        frame[0] = DUMMY;
    }
    frame
}

/// Parses a delivery frame: `None` for a dummy.
pub fn decode_delivery(frame: &[u8]) -> Result<Option<Stored>, DeliveryError> {
    if frame.len() != DELIVERY_FRAME_SIZE {
        return Err(DeliveryError::WrongSize(frame.len()));
    }
    match frame[0] {
        DUMMY => Ok(None),
        REAL => {
            let mut surb_id = [0u8; SURB_ID_LEN];
            surb_id.copy_from_slice(&frame[1..1 + SURB_ID_LEN]);
            Ok(Some(Stored {
                surb_id,
                payload: frame[1 + SURB_ID_LEN..].to_vec(),
            }))
        }
        k => Err(DeliveryError::Kind(k)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(b: u8) -> Stored {
        Stored {
            surb_id: [b; SURB_ID_LEN],
            payload: vec![b; SPHINX_PAYLOAD_SIZE],
        }
    }

    #[test]
    fn mailboxes_are_fifo_and_bounded() {
        let mut m = Mailboxes::new(2, 3);
        for b in 1..=3 {
            assert!(m.open([b; 32], 0));
        }
        assert_eq!(m.push([1; 32], stored(1)), Filed::Stored);
        assert_eq!(m.push([1; 32], stored(2)), Filed::Stored);
        assert_eq!(m.push([1; 32], stored(3)), Filed::Full, "per mailbox");
        assert_eq!(m.push([2; 32], stored(4)), Filed::Stored);
        assert_eq!(m.push([3; 32], stored(5)), Filed::Full, "in total");
        assert_eq!(
            m.push(
                [3; 32],
                Stored {
                    surb_id: [0; 16],
                    payload: vec![0; 10]
                }
            ),
            Filed::Full
        );
        assert_eq!(m.pop(&[1; 32]), Some(stored(1)));
        assert_eq!(m.pop(&[1; 32]), Some(stored(2)));
        assert_eq!(m.pop(&[1; 32]), None);
        assert_eq!(m.held(), 1);
        assert_eq!(m.push([3; 32], stored(5)), Filed::Stored);
    }

    #[test]
    fn only_mailboxes_with_a_recent_session_take_payloads() {
        let mut m = Mailboxes::new(10, 100);
        // Nobody opened this one: a sender cannot fill the gateway with
        // payloads for mailboxes nobody reads.
        assert_eq!(m.push([7; 32], stored(1)), Filed::NoSession);
        assert_eq!(m.held(), 0);

        assert!(m.open([7; 32], 100));
        assert_eq!(m.push([7; 32], stored(1)), Filed::Stored);
        // Two sessions hold it; one closes, it stays open.
        assert!(m.open([7; 32], 100));
        m.close(&[7; 32], 200);
        assert_eq!(m.expire(200 + MAILBOX_KEEP_SECS), 0);
        // The last closes: payloads wait for a reconnect for the keep
        // time, then go with the mailbox.
        m.close(&[7; 32], 300);
        assert_eq!(m.push([7; 32], stored(2)), Filed::Stored);
        assert_eq!(m.expire(300 + MAILBOX_KEEP_SECS - 1), 0);
        assert_eq!(m.held(), 2);
        assert_eq!(m.expire(300 + MAILBOX_KEEP_SECS), 2);
        assert_eq!(m.held(), 0);
        assert_eq!(m.push([7; 32], stored(3)), Filed::NoSession);
    }

    #[test]
    fn real_and_dummy_frames_have_one_size() {
        let real = encode_delivery(Some(&stored(9)));
        let dummy = encode_delivery(None);
        assert_eq!(real.len(), DELIVERY_FRAME_SIZE);
        assert_eq!(dummy.len(), DELIVERY_FRAME_SIZE);
        assert_eq!(decode_delivery(&real).unwrap(), Some(stored(9)));
        assert_eq!(decode_delivery(&dummy).unwrap(), None);
        let mut bad = dummy.clone();
        bad[0] = 7;
        assert_eq!(decode_delivery(&bad), Err(DeliveryError::Kind(7)));
        assert!(decode_delivery(&dummy[1..]).is_err());
    }
}
