//! Client addresses and the end-to-end envelope of client messages
//! (`specs/client.md`). A message to a client ends at the client's
//! gateway (the packet's final hop), which must not read it or tell it
//! from the client's own loop cover, so every message is sealed to the
//! client's X25519 key and padded to one size, and its ephemeral key is
//! sent as an Elligator2 representative, which looks like 32 random bytes
//! (a raw X25519 key always passes a one-Legendre-symbol test).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::CryptoRng;
use zeroize::Zeroizing;

use crate::geometry::SPHINX_PAYLOAD_SIZE;
use crate::sphinx::MAX_MESSAGE;

/// Every envelope's size: it fills a forward packet.
pub const ENVELOPE_SIZE: usize = MAX_MESSAGE;
/// Ephemeral key, length prefix and AEAD tag.
pub const ENVELOPE_OVERHEAD: usize = 32 + 2 + 16;
/// The longest message one envelope carries.
pub const MAX_CLIENT_MESSAGE: usize = ENVELOPE_SIZE - ENVELOPE_OVERHEAD;
const ENVELOPE_CONTEXT: &str = "mtos-client-envelope-v2";
const MAILBOX_CONTEXT: &str = "mtos-mailbox-v1";
/// Bytes of an encoded client address.
pub const ADDRESS_SIZE: usize = 1 + 3 * 32;
const ADDRESS_VERSION: u8 = 1;

/// Why an envelope or address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Not exactly one envelope (or address) long.
    #[error("wrong size: {got} bytes, expected {expected}")]
    WrongSize {
        /// Bytes given.
        got: usize,
        /// Bytes required.
        expected: usize,
    },
    /// The message does not fit.
    #[error("message of {got} bytes exceeds the {max}-byte envelope capacity")]
    TooLong {
        /// Its length.
        got: usize,
        /// The capacity.
        max: usize,
    },
    /// Not sealed to this key, tampered with, or malformed.
    #[error("envelope does not open with this key")]
    Invalid,
    /// An unknown address version.
    #[error("unknown client address version {0}")]
    Version(u8),
}

/// The mailbox id a gateway files a client's messages under: derived from
/// a secret only the client knows, so a sender who knows the id cannot
/// claim the mailbox.
pub fn mailbox_id(secret: &[u8; 32]) -> [u8; 32] {
    blake3::derive_key(MAILBOX_CONTEXT, secret)
}

/// Where a client receives: its gateway, its mailbox id, and the key its
/// messages are sealed to. Nothing in it relates to the client's libp2p
/// identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddress {
    /// The gateway's node key.
    pub gateway: [u8; 32],
    /// The mailbox id.
    pub mailbox: [u8; 32],
    /// The client's X25519 public key.
    pub key: [u8; 32],
}

impl ClientAddress {
    /// `version (1) ‖ gateway ‖ mailbox ‖ key`.
    pub fn to_bytes(&self) -> [u8; ADDRESS_SIZE] {
        let mut out = [0u8; ADDRESS_SIZE];
        out[0] = ADDRESS_VERSION;
        out[1..33].copy_from_slice(&self.gateway);
        out[33..65].copy_from_slice(&self.mailbox);
        out[65..].copy_from_slice(&self.key);
        out
    }

    /// Parses [`ClientAddress::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        if bytes.len() != ADDRESS_SIZE {
            return Err(EnvelopeError::WrongSize {
                got: bytes.len(),
                expected: ADDRESS_SIZE,
            });
        }
        if bytes[0] != ADDRESS_VERSION {
            return Err(EnvelopeError::Version(bytes[0]));
        }
        let part = |i: usize| {
            let mut a = [0u8; 32];
            a.copy_from_slice(&bytes[1 + 32 * i..33 + 32 * i]);
            a
        };
        Ok(Self {
            gateway: part(0),
            mailbox: part(1),
            key: part(2),
        })
    }
}

fn envelope_key(
    shared: &[u8; 32],
    ephemeral: &[u8; 32],
    recipient: &[u8; 32],
) -> Zeroizing<[u8; 32]> {
    let mut material = Zeroizing::new([0u8; 96]);
    material[..32].copy_from_slice(shared);
    material[32..64].copy_from_slice(ephemeral);
    material[64..].copy_from_slice(recipient);
    Zeroizing::new(blake3::derive_key(ENVELOPE_CONTEXT, material.as_slice()))
}

/// Seals `message` to `recipient` (an X25519 public key): a fresh
/// ephemeral key from `rng`, drawn among the points Elligator2 can hide
/// (and torsion-dirty, so the decoded point is not in the prime-order
/// subgroup any more often than a random string's), then
/// ChaCha20-Poly1305 under a key derived from the shared secret, over the
/// length-prefixed message padded to [`ENVELOPE_SIZE`]. The envelope
/// starts with the key's representative; every envelope has the same
/// size.
pub fn seal<R: CryptoRng + ?Sized>(
    rng: &mut R,
    recipient: &[u8; 32],
    message: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    if message.len() > MAX_CLIENT_MESSAGE {
        return Err(EnvelopeError::TooLong {
            got: message.len(),
            max: MAX_CLIENT_MESSAGE,
        });
    }
    // `None` only if 64 draws in a row had no representative (each does
    // with probability 1/2): a broken RNG.
    let ephemeral = elligator2::generate(rng).ok_or(EnvelopeError::Invalid)?;
    let point = *ephemeral.point();
    let shared = ephemeral.diffie_hellman(&x25519_dalek::PublicKey::from(*recipient));
    if !shared.was_contributory() {
        return Err(EnvelopeError::Invalid);
    }
    let key = envelope_key(shared.as_bytes(), &point, recipient);
    let mut plain = Zeroizing::new(vec![0u8; ENVELOPE_SIZE - 32 - 16]);
    plain[..2].copy_from_slice(&(message.len() as u16).to_be_bytes());
    plain[2..2 + message.len()].copy_from_slice(message);
    // The representative as sent is the associated data: its two high
    // bits, which decoding ignores, cannot be flipped unnoticed.
    let sealed = ChaCha20Poly1305::new(Key::from_slice(key.as_slice()))
        .encrypt(
            &Nonce::default(),
            Payload {
                msg: &plain,
                aad: ephemeral.representative(),
            },
        )
        .map_err(|_| EnvelopeError::Invalid)?;
    let mut out = Vec::with_capacity(ENVELOPE_SIZE);
    out.extend_from_slice(ephemeral.representative());
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Random bytes after the envelope in a delivery payload: the envelope
/// is sized for a Sphinx-encoded message, a delivery fills the whole
/// payload.
pub const DELIVERY_PADDING: usize = SPHINX_PAYLOAD_SIZE - ENVELOPE_SIZE;

/// A whole Sphinx payload for a client's mailbox (`specs/client.md` §2):
/// the envelope of `message` sealed to `recipient`, then
/// [`DELIVERY_PADDING`] random bytes. Sent raw
/// ([`crate::sphinx::build_forward_raw`]), it reaches the gateway as
/// bytes that look random, as a reply does.
pub fn seal_delivery<R: CryptoRng + ?Sized>(
    rng: &mut R,
    recipient: &[u8; 32],
    message: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    let mut out = seal(rng, recipient, message)?;
    let mut padding = [0u8; DELIVERY_PADDING];
    rng.fill_bytes(&mut padding);
    out.extend_from_slice(&padding);
    Ok(out)
}

/// Opens a delivery payload made by [`seal_delivery`] (its padding is not
/// read).
pub fn open_delivery(secret: &[u8; 32], payload: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    if payload.len() != SPHINX_PAYLOAD_SIZE {
        return Err(EnvelopeError::WrongSize {
            got: payload.len(),
            expected: SPHINX_PAYLOAD_SIZE,
        });
    }
    open(secret, &payload[..ENVELOPE_SIZE])
}

/// Opens an envelope with the recipient's X25519 secret.
pub fn open(secret: &[u8; 32], envelope: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    if envelope.len() != ENVELOPE_SIZE {
        return Err(EnvelopeError::WrongSize {
            got: envelope.len(),
            expected: ENVELOPE_SIZE,
        });
    }
    let (representative, sealed) = envelope.split_at(32);
    let mut r = [0u8; 32];
    r.copy_from_slice(representative);
    // Every 32 bytes decode to some point: nothing to refuse here.
    let point = elligator2::from_representative(&r);
    let secret = x25519_dalek::StaticSecret::from(*secret);
    let recipient = x25519_dalek::PublicKey::from(&secret).to_bytes();
    let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(point));
    if !shared.was_contributory() {
        return Err(EnvelopeError::Invalid);
    }
    let key = envelope_key(shared.as_bytes(), &point, &recipient);
    let plain = Zeroizing::new(
        ChaCha20Poly1305::new(Key::from_slice(key.as_slice()))
            .decrypt(
                &Nonce::default(),
                Payload {
                    msg: sealed,
                    aad: &r,
                },
            )
            .map_err(|_| EnvelopeError::Invalid)?,
    );
    let len = u16::from_be_bytes([plain[0], plain[1]]) as usize;
    if len > MAX_CLIENT_MESSAGE || plain[2 + len..].iter().any(|b| *b != 0) {
        return Err(EnvelopeError::Invalid);
    }
    Ok(plain[2..2 + len].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn envelopes_open_only_with_the_right_key_and_all_have_one_size() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let secret = [7u8; 32];
        let public =
            x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(secret)).to_bytes();
        for message in [&b""[..], b"hello", &[0xab; MAX_CLIENT_MESSAGE]] {
            let e = seal(&mut rng, &public, message).unwrap();
            assert_eq!(e.len(), ENVELOPE_SIZE);
            assert_eq!(open(&secret, &e).unwrap(), message);
            assert_eq!(open(&[8u8; 32], &e), Err(EnvelopeError::Invalid));
            for (i, bit) in [(0, 1), (31, 1), (31, 0x80), (31, 0x40), (32, 1), (40, 1)]
                .into_iter()
                .chain([(ENVELOPE_SIZE - 1, 1)])
            {
                let mut t = e.clone();
                t[i] ^= bit;
                assert_eq!(open(&secret, &t), Err(EnvelopeError::Invalid), "byte {i}");
            }
        }
        assert!(matches!(
            seal(&mut rng, &public, &[0; MAX_CLIENT_MESSAGE + 1]),
            Err(EnvelopeError::TooLong { .. })
        ));
        // A low-order recipient key would give an all-zero shared secret.
        assert_eq!(
            seal(&mut rng, &[0u8; 32], b"x"),
            Err(EnvelopeError::Invalid)
        );
    }

    /// The attack on the old envelope: its first 32 bytes were a raw
    /// X25519 key, which always decodes as a curve point (one Legendre
    /// symbol) and always has its top bit clear, so a gateway told
    /// envelopes from random bytes (a reply's payload) every time. Now
    /// both tests pass as often on envelopes as on random strings.
    #[test]
    fn an_envelope_key_looks_like_random_bytes() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(2);
        let public =
            x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from([9u8; 32])).to_bytes();
        let n = 2_000usize;
        let (mut on_curve, mut high) = (0usize, [0usize; 4]);
        for _ in 0..n {
            let e = seal(&mut rng, &public, b"x").unwrap();
            let mut r = [0u8; 32];
            r.copy_from_slice(&e[..32]);
            on_curve += usize::from(elligator2::is_montgomery_u(&r));
            high[usize::from(r[31] >> 6)] += 1;
        }
        // Binomial: half the strings pass; 4 sigma = 89 of 2,000.
        assert!(
            on_curve.abs_diff(n / 2) < 90,
            "{on_curve} of {n} on the curve"
        );
        // The two high bits: a quarter each; 4 sigma = 77 of 2,000.
        for h in high {
            assert!(h.abs_diff(n / 4) < 78, "{high:?}");
        }
        // The raw key the old envelope sent fails both, every time.
        let raw = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from([3u8; 32]));
        assert!(elligator2::is_montgomery_u(raw.as_bytes()) && raw.as_bytes()[31] < 0x80);
    }

    #[test]
    fn addresses_round_trip_and_refuse_other_versions() {
        let a = ClientAddress {
            gateway: [1; 32],
            mailbox: mailbox_id(&[2; 32]),
            key: [3; 32],
        };
        assert_eq!(ClientAddress::from_bytes(&a.to_bytes()).unwrap(), a);
        let mut b = a.to_bytes();
        b[0] = 2;
        assert_eq!(
            ClientAddress::from_bytes(&b),
            Err(EnvelopeError::Version(2))
        );
        assert!(ClientAddress::from_bytes(&b[1..]).is_err());
    }
}
