//! JSON-LD blocks, read as JSON (serde_json, whose nesting limit of 128
//! bounds hostile depth). A block that is not valid JSON is skipped with
//! a note; HTML comment and CDATA wrappers that some sites put around a
//! block are taken off first.

use serde_json::Value;

use crate::ctx::Ctx;
use crate::fields::Note;

/// The blocks' values, in document order.
pub fn parse(blocks: &[String], ctx: &mut Ctx) -> Vec<Value> {
    let mut out = Vec::new();
    for (i, raw) in blocks.iter().enumerate() {
        if !ctx.step(raw.len() as u64 / 64 + 1) {
            break;
        }
        let mut t = raw.trim();
        for (open, close) in [
            ("<!--", "-->"),
            ("<![CDATA[", "]]>"),
            ("//<![CDATA[", "//]]>"),
        ] {
            if let Some(inner) = t.strip_prefix(open).and_then(|r| r.strip_suffix(close)) {
                t = inner.trim();
            }
        }
        let t = t.strip_suffix(';').unwrap_or(t).trim_end();
        if t.is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(t) {
            Ok(v) => out.push(v),
            Err(e) => ctx.note(Note::BadJsonLd {
                block: i + 1,
                error: crate::text::clean(&e.to_string(), 200).unwrap_or_default(),
            }),
        }
    }
    out
}
