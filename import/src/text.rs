//! Cleaning untrusted text and URLs before they reach an item: no
//! control characters (a terminal would obey them), no bidirectional
//! overrides (which reorder what the person reads), whitespace collapsed,
//! lengths capped; URLs absolute, http or https only.

use url::Url;

/// Longest title kept, in characters.
pub const MAX_TITLE: usize = 1_000;
/// Longest description kept, in characters.
pub const MAX_DESCRIPTION: usize = 10_000;
/// Longest other text field kept, in characters.
pub const MAX_FIELD: usize = 1_000;
/// Longest URL kept, in bytes.
pub const MAX_URL: usize = 2_048;

/// Bidirectional formatting characters (Unicode's Bidi_Control):
/// removed, so a field cannot reorder the text around it.
pub fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// `text` on one line: control characters and runs of white space become
/// one space, bidirectional controls and byte order marks go, the ends
/// are trimmed, and at most `max` characters are kept (the last of them
/// `…` when cut). `None` when nothing is left.
pub fn clean(text: &str, max: usize) -> Option<String> {
    let mut out = String::new();
    let mut count = 0usize;
    let mut gap = false;
    for c in text.chars() {
        if is_bidi_control(c) || c == '\u{FEFF}' {
            continue;
        }
        if c.is_whitespace() || c.is_control() {
            gap = !out.is_empty();
            continue;
        }
        if gap {
            out.push(' ');
            count += 1;
            gap = false;
        }
        if count + 1 >= max {
            out.push('…');
            break;
        }
        out.push(c);
        count += 1;
    }
    (!out.is_empty()).then_some(out)
}

/// What became of a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlOutcome {
    /// Absolute, http or https.
    Kept(String),
    /// Empty after trimming.
    Empty,
    /// Relative, and no base to resolve it against.
    NoBase,
    /// Another scheme (`javascript:`, `data:`, ...), unparseable, or too
    /// long.
    Refused,
}

/// `raw` as an absolute http(s) URL, resolved against `base` when
/// relative. The importer never dereferences it: URLs are data.
pub fn clean_url(raw: &str, base: Option<&Url>) -> UrlOutcome {
    let raw = raw.trim_matches(|c: char| c.is_whitespace() || c.is_control());
    if raw.is_empty() {
        return UrlOutcome::Empty;
    }
    let parsed = match Url::parse(raw) {
        Ok(u) => u,
        Err(url::ParseError::RelativeUrlWithoutBase) => match base {
            Some(b) => match b.join(raw) {
                Ok(u) => u,
                Err(_) => return UrlOutcome::Refused,
            },
            None => return UrlOutcome::NoBase,
        },
        Err(_) => return UrlOutcome::Refused,
    };
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return UrlOutcome::Refused;
    }
    // Credentials in an address are never kept (nor published).
    let mut parsed = parsed;
    let _ = parsed.set_username("");
    let _ = parsed.set_password(None);
    let s = String::from(parsed);
    if s.len() > MAX_URL {
        return UrlOutcome::Refused;
    }
    UrlOutcome::Kept(s)
}

/// Whether `text` looks like a URL rather than a name (a license is
/// either).
pub fn looks_like_url(text: &str) -> bool {
    let t = text.trim();
    t.starts_with("http://") || t.starts_with("https://") || t.starts_with("//")
}

/// A duration in whole seconds from ISO 8601 (`PT4M13S`, `P1DT2H`,
/// Bandcamp's `P00H03M21S` without the `T`, fractions of a second cut)
/// or a plain number of seconds (Open Graph's `video:duration`). Years,
/// months and weeks have no fixed length in seconds: refused.
pub fn parse_duration(text: &str) -> Option<u64> {
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse().ok();
    }
    if let Ok(f) = t.parse::<f64>()
        && f.is_finite()
        && (0.0..1e12).contains(&f)
    {
        // Whole seconds: the fraction is cut.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        return Some(f as u64);
    }
    let rest = t.strip_prefix('P').or_else(|| t.strip_prefix('p'))?;
    let mut total: u64 = 0;
    let mut number = String::new();
    let mut in_time = false;
    let mut any = false;
    let mut fraction = false;
    for c in rest.chars() {
        match c {
            '0'..='9' => number.push(c),
            '.' | ',' if !number.is_empty() && !fraction => {
                fraction = true;
                number.push('.');
            }
            'T' | 't' if number.is_empty() && !in_time => in_time = true,
            _ => {
                if number.is_empty() {
                    return None;
                }
                let whole: u64 = number.split('.').next()?.parse().ok()?;
                let unit = match c.to_ascii_uppercase() {
                    'D' if !in_time => 86_400,
                    'H' => 3_600,
                    // Without a `T` (Bandcamp's `P00H03M21S`), an M after
                    // hours is minutes; `P3M` alone (months) is refused.
                    'M' if in_time || any => 60,
                    'S' => 1,
                    _ => return None,
                };
                if fraction && unit != 1 {
                    return None;
                }
                total = total.checked_add(whole.checked_mul(unit)?)?;
                number.clear();
                fraction = false;
                any = true;
            }
        }
    }
    (any && number.is_empty()).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_loses_controls_and_overrides_and_keeps_words() {
        assert_eq!(
            clean("  a\u{1b}[31mred\u{7}\n\t b\u{202E}c\u{feff} ", 100).as_deref(),
            Some("a [31mred bc")
        );
        assert_eq!(clean(" \u{200f}\n ", 100), None);
        assert_eq!(clean("abcdef", 4).as_deref(), Some("abc…"));
        assert_eq!(clean("\u{85}x\u{9b}y", 10).as_deref(), Some("x y"));
    }

    #[test]
    fn urls_are_absolute_http_or_refused() {
        let base = Url::parse("https://example.org/a/b.html").ok();
        assert_eq!(
            clean_url("../c.png", base.as_ref()),
            UrlOutcome::Kept("https://example.org/c.png".into())
        );
        assert_eq!(
            clean_url("//creativecommons.org/licenses/by-sa/4.0/", base.as_ref()),
            UrlOutcome::Kept("https://creativecommons.org/licenses/by-sa/4.0/".into())
        );
        assert_eq!(clean_url("/x", None), UrlOutcome::NoBase);
        assert_eq!(
            clean_url("https://user:secret@example.org/p", None),
            UrlOutcome::Kept("https://example.org/p".into())
        );
        assert_eq!(
            clean_url("javascript:alert(1)", base.as_ref()),
            UrlOutcome::Refused
        );
        assert_eq!(
            clean_url(" data:text/html,x", base.as_ref()),
            UrlOutcome::Refused
        );
        assert_eq!(clean_url("  ", base.as_ref()), UrlOutcome::Empty);
        let long = format!("https://e.org/{}", "a".repeat(3000));
        assert_eq!(clean_url(&long, None), UrlOutcome::Refused);
    }

    #[test]
    fn durations_in_every_form_sites_serve() {
        assert_eq!(parse_duration("PT4M13S"), Some(253));
        assert_eq!(parse_duration("P00H03M21S"), Some(201));
        assert_eq!(parse_duration("PT1H0M2.5S"), Some(3602));
        assert_eq!(parse_duration("P1DT1S"), Some(86_401));
        assert_eq!(parse_duration("213"), Some(213));
        assert_eq!(parse_duration("213.9"), Some(213));
        assert_eq!(parse_duration("P3M"), None);
        assert_eq!(parse_duration("P1Y"), None);
        assert_eq!(parse_duration("PT"), None);
        assert_eq!(parse_duration("PT5"), None);
        assert_eq!(parse_duration("P99999999999999999999D"), None);
        assert_eq!(parse_duration("-5"), None);
    }
}
