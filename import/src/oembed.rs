//! oEmbed responses (oembed.com §2.3), JSON or XML: the response a
//! person saved for a page (`--oembed FILE`), or the input itself.

use serde_json::{Map, Value};

use crate::ctx::Ctx;
use crate::embed;
use crate::error::ImportError;
use crate::fields::{Candidate, Fields, TypeName};
use crate::text::{self, MAX_DESCRIPTION, MAX_FIELD, MAX_TITLE};

/// Largest oEmbed response read.
pub const MAX_OEMBED_BYTES: usize = 256 * 1024;
/// Most XML nodes read from an XML response.
const MAX_XML_NODES: u32 = 10_000;

/// Whether `bytes` look like an oEmbed response rather than a page: a
/// JSON object, or XML whose root is `<oembed>`.
pub fn sniff(bytes: &[u8]) -> bool {
    let t = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let t = t.trim_ascii_start();
    if t.starts_with(b"{") {
        return true;
    }
    let head: Vec<u8> = t.iter().take(512).map(u8::to_ascii_lowercase).collect();
    let head = head.as_slice();
    head.starts_with(b"<oembed")
        || (head.starts_with(b"<?xml")
            && head.windows(7).any(|w| w == b"<oembed")
            && !head.windows(5).any(|w| w == b"<html"))
}

fn parse(bytes: &[u8]) -> Result<Map<String, Value>, ImportError> {
    let bad = |reason: String| ImportError::BadOEmbed { reason };
    if bytes.len() > MAX_OEMBED_BYTES {
        return Err(ImportError::TooLarge {
            what: "the oEmbed response",
            len: bytes.len(),
            limit: MAX_OEMBED_BYTES,
        });
    }
    let t = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let text = std::str::from_utf8(t).map_err(|_| bad("not UTF-8".into()))?;
    let trimmed = text.trim_start();
    let map = if trimmed.starts_with('{') {
        match serde_json::from_str::<Value>(trimmed) {
            Ok(Value::Object(m)) => m,
            Ok(_) => return Err(bad("not a JSON object".into())),
            Err(e) => {
                return Err(bad(format!(
                    "JSON: {}",
                    text::clean(&e.to_string(), 200).unwrap_or_default()
                )));
            }
        }
    } else {
        let options = roxmltree::ParsingOptions {
            allow_dtd: false,
            nodes_limit: MAX_XML_NODES,
            ..roxmltree::ParsingOptions::default()
        };
        let doc = roxmltree::Document::parse_with_options(trimmed, options).map_err(|e| {
            bad(format!(
                "XML: {}",
                text::clean(&e.to_string(), 200).unwrap_or_default()
            ))
        })?;
        let root = doc.root_element();
        if !root.has_tag_name("oembed") {
            return Err(bad(format!(
                "XML root is <{}>, not <oembed>",
                text::clean(root.tag_name().name(), 40).unwrap_or_default()
            )));
        }
        let mut m = Map::new();
        for child in root.children().filter(roxmltree::Node::is_element) {
            let value: String = child
                .descendants()
                .filter(roxmltree::Node::is_text)
                .filter_map(|n| n.text())
                .collect();
            m.entry(child.tag_name().name().to_owned())
                .or_insert(Value::String(value));
        }
        m
    };
    match map.get("type").and_then(Value::as_str) {
        Some(_) => Ok(map),
        None => Err(bad("no \"type\"".into())),
    }
}

/// The item type of an oEmbed `type` (`specs/item.md` §1).
pub fn content_type(t: &str) -> Option<&'static str> {
    Some(match t.trim().to_ascii_lowercase().as_str() {
        "photo" => "ImageObject",
        "video" => "VideoObject",
        "link" => "WebPage",
        "rich" => "MediaObject",
        _ => return None,
    })
}

/// What an oEmbed response says.
pub fn candidate(bytes: &[u8], ctx: &mut Ctx) -> Result<Candidate, ImportError> {
    let m = parse(bytes)?;
    let s = |k: &str| -> Option<String> {
        match m.get(k)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    let f = Fields {
        title: s("title").and_then(|t| text::clean(&t, MAX_TITLE)),
        // Not in oEmbed 1.0, but Vimeo and others send it.
        description: s("description").and_then(|t| text::clean(&t, MAX_DESCRIPTION)),
        author: s("author_name").and_then(|t| text::clean(&t, MAX_FIELD)),
        site_name: s("provider_name").and_then(|t| text::clean(&t, MAX_FIELD)),
        thumbnail: s("thumbnail_url").and_then(|u| ctx.url(&u)),
        // A photo's `url` is the picture itself.
        media: s("url").and_then(|u| ctx.url(&u)).into_iter().collect(),
        duration_s: s("duration").and_then(|d| text::parse_duration(&d)),
        embed_html: s("html").and_then(|html| embed::sanitise(&html, ctx)),
        ..Fields::default()
    };
    let kind = s("type").and_then(|t| {
        text::clean(&t, MAX_FIELD).map(|name| TypeName {
            content_type: content_type(&name),
            name,
        })
    });
    Ok(Candidate {
        fields: f,
        kind,
        node: None,
    })
}
