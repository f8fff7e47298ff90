//! Raw X25519 keys <-> age's key types. age 0.12 sits on x25519-dalek 2
//! while the rest of mtos uses x25519-dalek 3, so keys cross as bytes, in
//! age's standard Bech32 encodings (age has no constructor from bytes).

use zeroize::Zeroizing;

/// Bech32 (BIP 173) in upper case, as age writes secret keys.
fn bech32_upper(hrp: &str, data: &[u8]) -> String {
    // The HRPs used here are constants known to be valid and the data is
    // 32 bytes, far below Bech32's length limit; an empty string (which
    // age then refuses) rather than a panic if that ever changes.
    let Ok(hrp) = bech32::Hrp::parse(hrp) else {
        return String::new();
    };
    bech32::encode_upper::<bech32::Bech32>(hrp, data).unwrap_or_default()
}

/// `AGE-SECRET-KEY-1...` for a raw X25519 secret.
pub(crate) fn secret_key_string(secret: &[u8; 32]) -> Zeroizing<String> {
    Zeroizing::new(bech32_upper("AGE-SECRET-KEY-", secret))
}

/// `age1...` for a raw X25519 public key.
pub fn recipient_string(public: &[u8; 32]) -> String {
    bech32_upper("age", public).to_ascii_lowercase()
}

/// An age identity from a raw X25519 secret.
pub(crate) fn identity(secret: &[u8; 32]) -> Option<age::x25519::Identity> {
    secret_key_string(secret).parse().ok()
}

/// An age recipient from a raw X25519 public key.
pub(crate) fn recipient(public: &[u8; 32]) -> Option<age::x25519::Recipient> {
    recipient_string(public).parse().ok()
}

/// Parses an `age1...` recipient into raw bytes.
pub fn parse_recipient(text: &str) -> Option<[u8; 32]> {
    let (hrp, data) = bech32::decode(text.trim()).ok()?;
    if hrp.as_str() != "age" {
        return None;
    }
    data.try_into().ok()
}
