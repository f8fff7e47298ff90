//! A payload as a stream of frames (`specs/transfer.md` §4):
//! `len:u32 || payload || zeros`, cut to each frame's capacity.

use zeroize::Zeroizing;

use super::{MAX_FRAMES, Role, TransferError, frame_capacity};

/// Frames a payload of `len` bytes takes when `role` sends it.
pub fn frames_for(role: Role, len: usize) -> usize {
    let total = len.saturating_add(4);
    let first = frame_capacity(role, 0);
    if total <= first {
        return 1;
    }
    let rest = frame_capacity(role, 1);
    (total - first).div_ceil(rest).saturating_add(1)
}

/// The plaintext frames of `payload` sent by `role`.
pub(crate) fn stream(role: Role, payload: &[u8]) -> Result<Vec<Vec<u8>>, TransferError> {
    let len = u32::try_from(payload.len()).map_err(|_| TransferError::TooLarge(payload.len()))?;
    if frames_for(role, payload.len()) > MAX_FRAMES {
        return Err(TransferError::TooLarge(payload.len()));
    }
    let mut bytes = Vec::with_capacity(4 + payload.len());
    bytes.extend_from_slice(&len.to_be_bytes());
    bytes.extend_from_slice(payload);
    let mut frames = Vec::new();
    let mut rest = &bytes[..];
    let mut i = 0u32;
    while frames.is_empty() || !rest.is_empty() {
        let cap = frame_capacity(role, i);
        let (take, more) = rest.split_at(cap.min(rest.len()));
        let mut frame = take.to_vec();
        frame.resize(cap, 0);
        frames.push(frame);
        rest = more;
        i += 1;
    }
    Ok(frames)
}

/// Puts the other side's opened frames back together (the bytes are
/// kept out of `Debug` and wiped when dropped: a keychain move carries
/// secret keys).
pub struct Reassembly {
    role: Role,
    next: u32,
    len: Option<usize>,
    bytes: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Reassembly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reassembly")
            .field("role", &self.role)
            .field("next", &self.next)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Reassembly {
    /// For the frames `role` sends.
    pub fn new(role: Role) -> Self {
        Self {
            role,
            next: 0,
            len: None,
            bytes: Zeroizing::new(Vec::new()),
        }
    }

    /// The index of the frame wanted next.
    pub fn next(&self) -> u32 {
        self.next
    }

    /// Frames the payload takes, once the first is in.
    pub fn total(&self) -> Option<usize> {
        self.len.map(|l| frames_for(self.role, l))
    }

    /// Adds the next frame's plaintext; the payload once it is complete.
    pub fn push(&mut self, plain: &[u8]) -> Result<Option<Zeroizing<Vec<u8>>>, TransferError> {
        if plain.len() != frame_capacity(self.role, self.next) {
            return Err(TransferError::BadStream("a frame of the wrong length"));
        }
        if self.len.is_none() {
            let mut l = [0u8; 4];
            l.copy_from_slice(&plain[..4]);
            let len = u32::from_be_bytes(l) as usize;
            if frames_for(self.role, len) > super::MAX_FRAMES {
                return Err(TransferError::BadStream(
                    "more frames than a transfer carries",
                ));
            }
            self.len = Some(len);
            self.bytes.reserve(len);
            self.bytes.extend_from_slice(&plain[4..]);
        } else {
            self.bytes.extend_from_slice(plain);
        }
        self.next += 1;
        let len = self.len.unwrap_or(0);
        if self.bytes.len() < len {
            return Ok(None);
        }
        if self.bytes[len..].iter().any(|&b| b != 0) {
            return Err(TransferError::BadStream("padding that is not zeros"));
        }
        self.bytes.truncate(len);
        Ok(Some(std::mem::take(&mut self.bytes)))
    }
}
