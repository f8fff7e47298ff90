//! Human-comparable fingerprints, after Signal's safety numbers: an
//! iterated SHA-512 of an identity's public keys rendered as 30 decimal
//! digits; a pair of people compares the two fingerprints sorted and
//! joined, a 60-digit number that reads the same on both screens.
//! Normative description: `specs/identity.md`.

use std::fmt;

use sha2::{Digest, Sha512};

use crate::identity::VerifyKey;

/// Domain separation of the fingerprint hash.
const FINGERPRINT_CONTEXT: &[u8] = b"mtos-fingerprint-v1";
/// Hash iterations: as Signal, to make a targeted second preimage of the
/// displayed digits expensive.
pub const FINGERPRINT_ITERATIONS: usize = 5200;
/// Digits in one fingerprint.
pub const FINGERPRINT_DIGITS: usize = 30;

/// The 30-digit fingerprint of one identity's public keys.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// Computes the fingerprint of a verify key and X25519 encryption key.
    pub fn of(verify_key: &VerifyKey, encryption_key: &[u8; 32]) -> Self {
        let mut digest = Sha512::new()
            .chain_update(FINGERPRINT_CONTEXT)
            .chain_update(verify_key.as_bytes())
            .chain_update(encryption_key)
            .finalize();
        for _ in 0..FINGERPRINT_ITERATIONS {
            digest = Sha512::new()
                .chain_update(digest)
                .chain_update(verify_key.as_bytes())
                .chain_update(encryption_key)
                .finalize();
        }
        let mut digits = String::with_capacity(FINGERPRINT_DIGITS);
        for chunk in digest[..30].chunks_exact(5) {
            let value = chunk.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            digits.push_str(&format!("{:05}", value % 100_000));
        }
        Self(digits)
    }

    /// Parses 30 digits, ignoring spaces (as a person would type them).
    pub fn parse(text: &str) -> Option<Self> {
        let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        (digits.len() == FINGERPRINT_DIGITS && digits.bytes().all(|b| b.is_ascii_digit()))
            .then_some(Self(digits))
    }

    /// The 30 digits without spaces.
    pub fn digits(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    /// Six groups of five digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&group(&self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.0)
    }
}

/// The number two people compare to authenticate each other: both
/// fingerprints, the smaller first, 60 digits.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SafetyNumber(String);

impl SafetyNumber {
    /// Combines two fingerprints; the order of the arguments does not matter.
    pub fn between(a: &Fingerprint, b: &Fingerprint) -> Self {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        Self(format!("{}{}", lo.0, hi.0))
    }

    /// The 60 digits without spaces.
    pub fn digits(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SafetyNumber {
    /// Twelve groups of five digits, four groups per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self
            .0
            .as_bytes()
            .chunks(20)
            .map(|line| group(std::str::from_utf8(line).unwrap_or_default()))
            .collect();
        f.write_str(&lines.join("\n"))
    }
}

impl fmt::Debug for SafetyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SafetyNumber({})", self.0)
    }
}

fn group(digits: &str) -> String {
    digits
        .as_bytes()
        .chunks(5)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Identity, Label, Visibility};
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn id(seed: u8) -> Identity {
        let mut rng = ChaCha20Rng::from_seed([seed; 32]);
        Identity::generate(&mut rng, Label::new("x").unwrap(), Visibility::Public, 0)
    }

    #[test]
    fn fingerprint_shape_and_stability() {
        let a = id(1);
        let fp = a.fingerprint();
        assert_eq!(fp.digits().len(), 30);
        assert!(fp.digits().bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(fp.to_string().len(), 35);
        assert_eq!(fp, id(1).fingerprint());
        assert_ne!(fp, id(2).fingerprint());
        assert_eq!(Fingerprint::parse(&fp.to_string()), Some(fp.clone()));
        assert_eq!(Fingerprint::parse("123"), None);
        // Depends on both keys, not the label.
        let public = a.public();
        let mut other_key = *public.encryption_key();
        other_key[0] ^= 1;
        assert_ne!(Fingerprint::of(public.verify_key(), &other_key), fp);
    }

    #[test]
    fn safety_number_is_symmetric() {
        let (a, b) = (id(1).fingerprint(), id(2).fingerprint());
        let ab = SafetyNumber::between(&a, &b);
        assert_eq!(ab, SafetyNumber::between(&b, &a));
        assert_eq!(ab.digits().len(), 60);
        assert!(ab.digits().contains(a.digits()));
        assert!(ab.digits().contains(b.digits()));
        assert_eq!(ab.to_string().lines().count(), 3);
    }
}
