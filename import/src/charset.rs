//! A page's bytes as text: the encoding its byte order mark or its
//! `<meta charset>` declares (the HTML standard's prescan, over the first
//! 1024 bytes), UTF-8 when it declares none. A page that declares a
//! legacy single-byte charset but whose bytes are UTF-8 with non-ASCII
//! characters is read as UTF-8 and says so: browsers saving a page keep
//! its original declaration, and windows-1252 text is almost never valid
//! UTF-8 by chance.

use encoding_rs::{Encoding, UTF_8, WINDOWS_1252};

use crate::fields::Note;

/// The text of `bytes`, and a note when the declared charset was not
/// believed. Malformed sequences become U+FFFD.
pub fn decode(bytes: &[u8]) -> (String, Option<Note>) {
    if let Some((enc, bom)) = Encoding::for_bom(bytes) {
        let (text, _) = enc.decode_without_bom_handling(&bytes[bom..]);
        return (text.into_owned(), None);
    }
    let declared = prescan(&bytes[..bytes.len().min(1024)]);
    let enc = match declared {
        // The standard: a meta declaring UTF-16 means UTF-8 (the bytes
        // would not have reached a meta tag otherwise), and
        // x-user-defined means windows-1252.
        Some(e) if e.name().starts_with("UTF-16") => UTF_8,
        Some(e) if e.name() == "x-user-defined" => WINDOWS_1252,
        Some(e) => e,
        None => UTF_8,
    };
    if enc != UTF_8
        && enc.is_single_byte()
        && !bytes.is_ascii()
        && std::str::from_utf8(bytes).is_ok()
    {
        let text = String::from_utf8_lossy(bytes).into_owned();
        return (
            text,
            Some(Note::CharsetIgnored {
                declared: enc.name().to_owned(),
            }),
        );
    }
    let (text, _) = enc.decode_without_bom_handling(bytes);
    (text.into_owned(), None)
}

/// The encoding a `<meta charset=...>` or `<meta http-equiv=content-type
/// content="...; charset=...">` in `head` names (a simplified form of the
/// standard's prescan: comments are skipped, attribute values read with
/// or without quotes).
fn prescan(head: &[u8]) -> Option<&'static Encoding> {
    let lower: Vec<u8> = head.iter().map(u8::to_ascii_lowercase).collect();
    let mut i = 0;
    while i < lower.len() {
        if lower[i..].starts_with(b"<!--") {
            i = find(&lower, i + 4, b"-->").map_or(lower.len(), |e| e + 3);
            continue;
        }
        if lower[i..].starts_with(b"<meta")
            && lower
                .get(i + 5)
                .is_some_and(|c| c.is_ascii_whitespace() || *c == b'/')
        {
            let end = find(&lower, i, b">").unwrap_or(lower.len());
            let tag = &lower[i + 5..end];
            if let Some(e) = charset_in(tag).and_then(Encoding::for_label) {
                return Some(e);
            }
            i = end;
            continue;
        }
        i += 1;
    }
    None
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// The label after `charset=` in a meta tag's attributes.
fn charset_in(tag: &[u8]) -> Option<&[u8]> {
    let at = find(tag, 0, b"charset")?;
    let mut j = at + 7;
    while tag.get(j).is_some_and(u8::is_ascii_whitespace) {
        j += 1;
    }
    if tag.get(j) != Some(&b'=') {
        return None;
    }
    j += 1;
    while tag.get(j).is_some_and(u8::is_ascii_whitespace) {
        j += 1;
    }
    let quote = tag.get(j).copied().filter(|c| *c == b'"' || *c == b'\'');
    if quote.is_some() {
        j += 1;
    }
    let start = j;
    while let Some(c) = tag.get(j) {
        if Some(*c) == quote
            || (quote.is_none() && (c.is_ascii_whitespace() || *c == b';'))
            || *c == b'"'
            || *c == b'\''
            || *c == b'/'
        {
            break;
        }
        j += 1;
    }
    (j > start).then(|| &tag[start..j])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_charsets_are_obeyed() {
        let page =
            b"<html><head><meta charset=\"windows-1251\"><title>\xcf\xf0\xe8\xe2\xe5\xf2</title>";
        let (text, note) = decode(page);
        assert!(text.contains("Привет"), "{text}");
        assert_eq!(note, None);
        let page = b"<meta http-equiv=\"Content-Type\" content=\"text/html; charset=ISO-8859-1\"><p>caf\xe9";
        assert!(decode(page).0.ends_with("café"));
    }

    #[test]
    fn a_lying_charset_is_caught_when_the_bytes_are_utf8() {
        let page = "<meta charset=iso-8859-1><title>Café</title>".as_bytes();
        let (text, note) = decode(page);
        assert!(text.contains("Café"));
        assert_eq!(
            note,
            Some(Note::CharsetIgnored {
                declared: "windows-1252".into()
            })
        );
    }

    #[test]
    fn utf16_declared_in_a_meta_is_read_as_utf8_and_bad_bytes_are_replaced() {
        let page = b"<meta charset=utf-16><title>ok \xff</title>";
        let (text, note) = decode(page);
        assert!(text.contains("ok \u{fffd}"));
        assert_eq!(note, None);
        // A byte order mark wins over any declaration.
        let mut page = vec![0xff, 0xfe];
        for c in "<title>x</title>".encode_utf16() {
            page.extend(c.to_le_bytes());
        }
        assert_eq!(decode(&page).0, "<title>x</title>");
    }

    #[test]
    fn no_declaration_means_utf8() {
        let (text, _) = decode("<!-- <meta charset=koi8-r> --><p>ü".as_bytes());
        assert!(text.ends_with("ü"));
    }
}
