//! The `mtos:` URI scheme: `mtos:<kind>:<payload>`, the payload being the
//! lowercase, unpadded RFC 4648 base32 of a canonical encoding. Parsing
//! accepts any letter case, so the uppercase form (which QR codes encode in
//! their compact alphanumeric mode) is the same URI.

use crate::error::UriError;

/// The scheme, with its colon.
pub const SCHEME: &str = "mtos:";

/// Formats `mtos:<kind>:<base32 payload>`.
pub fn format(kind: &str, payload: &[u8]) -> String {
    let mut encoded = data_encoding::BASE32_NOPAD.encode(payload);
    encoded.make_ascii_lowercase();
    format!("{SCHEME}{kind}:{encoded}")
}

/// Parses a URI of the expected kind and returns its decoded payload.
/// Surrounding whitespace is ignored.
pub fn parse(expected_kind: &'static str, text: &str) -> Result<Vec<u8>, UriError> {
    let text = text.trim();
    let rest = strip_prefix_ignore_case(text, SCHEME).ok_or(UriError::NotMtos)?;
    let (kind, payload) = rest.split_once(':').unwrap_or((rest, ""));
    if !kind.eq_ignore_ascii_case(expected_kind) {
        return Err(UriError::WrongKind {
            expected: expected_kind,
            found: kind.chars().take(16).collect(),
        });
    }
    let upper = payload.to_ascii_uppercase();
    data_encoding::BASE32_NOPAD
        .decode(upper.as_bytes())
        .map_err(|_| UriError::BadBase32)
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_case_insensitivity() {
        let uri = format("id", b"\x00\x01hello");
        assert_eq!(uri, "mtos:id:aaawqzlmnrxq");
        assert_eq!(parse("id", &uri).unwrap(), b"\x00\x01hello");
        assert_eq!(parse("id", &uri.to_uppercase()).unwrap(), b"\x00\x01hello");
    }

    #[test]
    fn errors() {
        assert_eq!(parse("id", "mtos"), Err(UriError::NotMtos));
        assert_eq!(parse("id", "mtös:id:aa"), Err(UriError::NotMtos));
        assert!(matches!(
            parse("id", "mtos:item:aa"),
            Err(UriError::WrongKind { .. })
        ));
        assert_eq!(parse("id", "mtos:id:a"), Err(UriError::BadBase32));
        assert_eq!(parse("id", "mtos:id:aaaa===="), Err(UriError::BadBase32));
    }
}
