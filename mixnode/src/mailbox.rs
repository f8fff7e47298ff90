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

/// Every mailbox of a gateway, bounded per mailbox and in total.
#[derive(Debug)]
pub struct Mailboxes {
    boxes: HashMap<[u8; 32], VecDeque<Stored>>,
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
            total: 0,
            per_box: per_box.max(1),
            max_total: max_total.max(1),
        }
    }

    /// Files a payload; `false` if the mailbox or the gateway is full
    /// (the payload is dropped, and the driver counts it).
    pub fn push(&mut self, mailbox: [u8; 32], stored: Stored) -> bool {
        if stored.payload.len() != SPHINX_PAYLOAD_SIZE || self.total >= self.max_total {
            return false;
        }
        let b = self.boxes.entry(mailbox).or_default();
        if b.len() >= self.per_box {
            return false;
        }
        b.push_back(stored);
        self.total += 1;
        true
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
        assert!(m.push([1; 32], stored(1)));
        assert!(m.push([1; 32], stored(2)));
        assert!(!m.push([1; 32], stored(3)), "per-mailbox bound");
        assert!(m.push([2; 32], stored(4)));
        assert!(!m.push([3; 32], stored(5)), "total bound");
        assert!(!m.push(
            [3; 32],
            Stored {
                surb_id: [0; 16],
                payload: vec![0; 10]
            }
        ));
        assert_eq!(m.pop(&[1; 32]), Some(stored(1)));
        assert_eq!(m.pop(&[1; 32]), Some(stored(2)));
        assert_eq!(m.pop(&[1; 32]), None);
        assert_eq!(m.held(), 1);
        assert!(m.push([3; 32], stored(5)));
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
