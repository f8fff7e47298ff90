//! Short-code transfer (`specs/transfer.md`): the code people read aloud,
//! the rendezvous slots it names, the SPAKE2 exchange and the sealed
//! frames each side writes. No I/O here: the client puts and gets the
//! slots through its mixnet session.

mod code;
pub(crate) mod frames;

pub use code::{Code, words};
pub use frames::{Reassembly, frames_for};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use spake2::{Ed25519Group, Identity as PakeIdentity, Password, Spake2};
use zeroize::Zeroizing;

use crate::item::Locator;
use crate::slot::{SlotError, SlotRecord, slot_key, slot_locator};

/// Every transfer slot body is this long (`transfer.md` §2).
pub const BODY_LEN: usize = 1024;
/// A SPAKE2 element as a slot carries it.
pub const ELEMENT_LEN: usize = 32;
/// Poly1305 tag.
const TAG_LEN: usize = 16;
/// The most frames one payload takes.
pub const MAX_FRAMES: usize = 256;
/// The largest channel number.
pub const MAX_CHANNEL: u32 = 999_999;

const CONTEXT: &[u8] = b"mtos-transfer-v1";
const SEED_CONTEXT: &str = "mtos-transfer-v1 slots";
const INVITER_KEY_CONTEXT: &str = "mtos-transfer-v1 inviter";
const ACCEPTER_KEY_CONTEXT: &str = "mtos-transfer-v1 accepter";
/// The side byte of a symmetric SPAKE2 message, not sent.
const SYMMETRIC_SIDE: u8 = 0x53;

/// Why a transfer step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// The code is not a code of this purpose.
    #[error("not a valid code: {0}")]
    BadCode(String),
    /// The other side's element is not a curve point.
    #[error("the other side's message is not a SPAKE2 message")]
    BadElement,
    /// A frame did not open: a wrong code, or someone else in the channel.
    #[error(
        "the exchange failed: the code was wrong, or someone else answered in this channel; nothing was exchanged"
    )]
    WrongCode,
    /// The stream's frames say something impossible.
    #[error("the other side's frames are malformed: {0}")]
    BadStream(&'static str),
    /// A payload larger than [`MAX_FRAMES`] frames.
    #[error("{0} bytes is more than one transfer carries")]
    TooLarge(usize),
    /// A slot could not be derived or signed.
    #[error(transparent)]
    Slot(#[from] SlotError),
}

/// What a transfer is for; bound into the PAKE and the slots, so a code
/// of one purpose never works for the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// Two people exchange identity cards.
    Contact,
    /// One person moves identities to another screen.
    Keys,
}

impl Purpose {
    /// Its byte.
    pub fn to_byte(self) -> u8 {
        match self {
            Purpose::Contact => 1,
            Purpose::Keys => 2,
        }
    }

    /// Words in its codes.
    pub fn words(self) -> usize {
        match self {
            Purpose::Contact => 2,
            Purpose::Keys => 4,
        }
    }
}

/// Which side of the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Made the code.
    Inviter,
    /// Typed it.
    Accepter,
}

impl Role {
    /// Its byte.
    pub fn to_byte(self) -> u8 {
        match self {
            Role::Inviter => 0,
            Role::Accepter => 1,
        }
    }

    /// The other side.
    pub fn peer(self) -> Self {
        match self {
            Role::Inviter => Role::Accepter,
            Role::Accepter => Role::Inviter,
        }
    }

    /// The slot of this role's frame `i`: the accepter's first frame
    /// shares slot 0 with its element; the inviter's slot 0 holds only
    /// its element.
    pub fn frame_slot(self, i: u32) -> u64 {
        match self {
            Role::Inviter => u64::from(i) + 1,
            Role::Accepter => u64::from(i),
        }
    }
}

/// The rendezvous of one exchange: purpose, epoch, channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rendezvous {
    /// What for.
    pub purpose: Purpose,
    /// The network epoch of the invitation.
    pub epoch: u64,
    /// The code's channel.
    pub channel: u32,
}

impl Rendezvous {
    fn context(&self) -> Vec<u8> {
        let mut c = Vec::with_capacity(CONTEXT.len() + 13);
        c.extend_from_slice(CONTEXT);
        c.push(self.purpose.to_byte());
        c.extend_from_slice(&self.epoch.to_be_bytes());
        c.extend_from_slice(&self.channel.to_be_bytes());
        c
    }

    /// The public seed of `role`'s slots.
    pub fn seed(&self, role: Role) -> [u8; 32] {
        let mut h = blake3::Hasher::new_derive_key(SEED_CONTEXT);
        h.update(&[self.purpose.to_byte()]);
        h.update(&self.epoch.to_be_bytes());
        h.update(&self.channel.to_be_bytes());
        h.update(&[role.to_byte()]);
        *h.finalize().as_bytes()
    }

    /// The blinded key of slot `n` of `role` (what its record carries).
    pub fn slot_key(&self, role: Role, n: u64) -> Result<[u8; 32], TransferError> {
        let feed = ed25519_dalek::SigningKey::from_bytes(&self.seed(role))
            .verifying_key()
            .to_bytes();
        Ok(slot_key(&feed, n)?)
    }

    /// Where slot `n` of `role` is.
    pub fn locator(&self, role: Role, n: u64) -> Result<Locator, TransferError> {
        Ok(slot_locator(&self.slot_key(role, n)?))
    }

    /// Slot `n` of `role` holding `body`, signed.
    pub fn record(&self, role: Role, n: u64, body: &[u8]) -> Result<SlotRecord, TransferError> {
        Ok(SlotRecord::sign(&self.seed(role), n, body)?)
    }

    /// What frame `index` of `role` is authenticated with (its AEAD
    /// associated data), so a frame opens only in its own exchange, role
    /// and place.
    fn aad(&self, role: Role, index: u32) -> Vec<u8> {
        let mut a = self.context();
        a.push(role.to_byte());
        a.extend_from_slice(&index.to_be_bytes());
        a
    }
}

/// Feeds SPAKE2 the 64 bytes of entropy its scalar is drawn from (so the
/// caller's RNG, of another `rand` generation, and the test vectors'
/// fixed bytes both reach it).
struct Entropy<'a>(&'a [u8; 64], usize);

impl rand_core_06::RngCore for Entropy<'_> {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        // SPAKE2 draws one 64-byte scalar; more would repeat, never
        // panic (and the vectors would show it).
        for b in dest {
            *b = self.0[self.1 % 64];
            self.1 += 1;
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core_06::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core_06::CryptoRng for Entropy<'_> {}

/// One side's SPAKE2, started.
pub struct Pake {
    state: Spake2<Ed25519Group>,
    element: [u8; ELEMENT_LEN],
    rendezvous: Rendezvous,
    role: Role,
}

impl std::fmt::Debug for Pake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pake")
            .field("rendezvous", &self.rendezvous)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl Pake {
    /// Starts SPAKE2 for `code` at `rendezvous` as `role`, its scalar
    /// drawn from `entropy` (64 bytes from a CSPRNG).
    pub fn start(code: &Code, rendezvous: Rendezvous, role: Role, entropy: &[u8; 64]) -> Self {
        let password = Password::new(code.to_string().as_bytes());
        let identity = PakeIdentity::new(&rendezvous.context());
        let (state, message) = Spake2::<Ed25519Group>::start_symmetric_with_rng(
            &password,
            &identity,
            Entropy(entropy, 0),
        );
        let mut element = [0u8; ELEMENT_LEN];
        // The message is the side byte and the 32-byte element.
        if let Some(e) = message.get(1..) {
            element.copy_from_slice(&e[..ELEMENT_LEN.min(e.len())]);
        }
        Self {
            state,
            element,
            rendezvous,
            role,
        }
    }

    /// The element this side sends.
    pub fn element(&self) -> [u8; ELEMENT_LEN] {
        self.element
    }

    /// Finishes with the other side's element: the two frame keys.
    pub fn finish(self, theirs: &[u8; ELEMENT_LEN]) -> Result<Keys, TransferError> {
        let mut message = Vec::with_capacity(1 + ELEMENT_LEN);
        message.push(SYMMETRIC_SIDE);
        message.extend_from_slice(theirs);
        let key = Zeroizing::new(
            self.state
                .finish(&message)
                .map_err(|_| TransferError::BadElement)?,
        );
        Ok(Keys {
            inviter: Zeroizing::new(blake3::derive_key(INVITER_KEY_CONTEXT, &key)),
            accepter: Zeroizing::new(blake3::derive_key(ACCEPTER_KEY_CONTEXT, &key)),
            rendezvous: self.rendezvous,
            role: self.role,
            element: self.element,
            theirs: *theirs,
        })
    }
}

/// The two frame keys of a finished exchange, from one side's view.
pub struct Keys {
    inviter: Zeroizing<[u8; 32]>,
    accepter: Zeroizing<[u8; 32]>,
    rendezvous: Rendezvous,
    role: Role,
    element: [u8; ELEMENT_LEN],
    theirs: [u8; ELEMENT_LEN],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("rendezvous", &self.rendezvous)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl Keys {
    /// The side these keys belong to.
    pub fn role(&self) -> Role {
        self.role
    }

    /// What binds a payload to this exchange (`transfer.md` §3): the
    /// rendezvous and both elements, the inviter's first. Each side signs
    /// it with the identity it hands over, so a card is proven to come
    /// from its owner now, not copied from the network.
    pub fn transcript(&self) -> Vec<u8> {
        let (inviter, accepter) = match self.role {
            Role::Inviter => (&self.element, &self.theirs),
            Role::Accepter => (&self.theirs, &self.element),
        };
        let mut t = self.rendezvous.context();
        t.extend_from_slice(inviter);
        t.extend_from_slice(accepter);
        t
    }

    fn key(&self, role: Role) -> &[u8; 32] {
        match role {
            Role::Inviter => &self.inviter,
            Role::Accepter => &self.accepter,
        }
    }

    /// This side's payload as slot bodies: `(slot, body)` for each frame
    /// (the accepter's first beginning with its element).
    pub fn seal(&self, payload: &[u8]) -> Result<Vec<(u64, Vec<u8>)>, TransferError> {
        let role = self.role;
        let stream = frames::stream(role, payload)?;
        let cipher = ChaCha20Poly1305::new(Key::from_slice(self.key(role)));
        let mut out = Vec::with_capacity(stream.len());
        for (i, plain) in (0u32..).zip(&stream) {
            let sealed = cipher
                .encrypt(
                    &nonce(i),
                    Payload {
                        msg: plain,
                        aad: &self.rendezvous.aad(role, i),
                    },
                )
                .map_err(|_| TransferError::TooLarge(payload.len()))?;
            let mut body = Vec::with_capacity(BODY_LEN);
            if role == Role::Accepter && i == 0 {
                body.extend_from_slice(&self.element);
            }
            body.extend_from_slice(&sealed);
            out.push((role.frame_slot(i), body));
        }
        Ok(out)
    }

    /// Opens the other side's frame `i` from its slot body.
    pub fn open(&self, i: u32, body: &[u8]) -> Result<Vec<u8>, TransferError> {
        let peer = self.role.peer();
        if body.len() != BODY_LEN {
            return Err(TransferError::WrongCode);
        }
        let sealed = if peer == Role::Accepter && i == 0 {
            &body[ELEMENT_LEN..]
        } else {
            body
        };
        ChaCha20Poly1305::new(Key::from_slice(self.key(peer)))
            .decrypt(
                &nonce(i),
                Payload {
                    msg: sealed,
                    aad: &self.rendezvous.aad(peer, i),
                },
            )
            .map_err(|_| TransferError::WrongCode)
    }
}

fn nonce(i: u32) -> Nonce {
    let mut n = [0u8; 12];
    n[8..].copy_from_slice(&i.to_be_bytes());
    *Nonce::from_slice(&n)
}

/// The element at the start of a slot 0 body.
pub fn element_of(body: &[u8]) -> Result<[u8; ELEMENT_LEN], TransferError> {
    if body.len() != BODY_LEN {
        return Err(TransferError::BadElement);
    }
    let mut e = [0u8; ELEMENT_LEN];
    e.copy_from_slice(&body[..ELEMENT_LEN]);
    Ok(e)
}

/// The inviter's slot 0: its element, then `fill` (992 random bytes).
pub fn invite_body(element: &[u8; ELEMENT_LEN], fill: &[u8; BODY_LEN - ELEMENT_LEN]) -> Vec<u8> {
    let mut body = Vec::with_capacity(BODY_LEN);
    body.extend_from_slice(element);
    body.extend_from_slice(fill);
    body
}

/// Plaintext bytes frame `i` of `role` carries.
pub fn frame_capacity(role: Role, i: u32) -> usize {
    if role == Role::Accepter && i == 0 {
        BODY_LEN - ELEMENT_LEN - TAG_LEN
    } else {
        BODY_LEN - TAG_LEN
    }
}

#[cfg(test)]
mod tests;
