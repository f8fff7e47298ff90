//! A linear pre-pass that bounds what html5ever's tree builder is given.
//! The tree builder scans its stack of open elements for each new element
//! (a `<div>` checks for a `<p>` in button scope), so a page nesting
//! 100,000 elements costs 10^10 steps; and it walks its list of active
//! formatting elements for each one reconstructed. Browsers bound depth
//! (Blink at 512); html5ever does not. So the page is first run through
//! html5ever's tokenizer alone (linear), estimating the depth and the
//! open formatting elements, and read only up to the point where either
//! passes its bound (the metadata sits in the head and near the top; a
//! note says the rest was not read).

use std::cell::Cell;

use html5ever::tendril::StrTendril;
use html5ever::tokenizer::states::RawKind;
use html5ever::tokenizer::{
    BufferQueue, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer, TokenizerOpts,
};

/// Deepest nesting read: half Blink's 512, which no page's metadata
/// needs, and which bounds the tree builder's scans of a page nesting to
/// the bound and back again and again to about half a second.
pub const MAX_DEPTH: usize = 256;
/// Most formatting elements open at once.
pub const MAX_FORMATTING: usize = 128;
/// The pre-pass feeds the tokenizer this much at a time; a page is cut
/// at such a boundary.
const CHUNK: usize = 512;

const VOID: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track",
    "wbr", "param", "keygen", "basefont", "bgsound", "frame",
];
/// Elements whose end tags may be left out (a sibling closes them), and
/// those the parser makes once: not counted, so pages of unclosed `<p>`
/// and `<li>` are not taken for deep ones.
const IMPLIED: &[&str] = &[
    "p", "li", "dt", "dd", "option", "optgroup", "tr", "td", "th", "thead", "tbody", "tfoot",
    "colgroup", "caption", "rb", "rt", "rtc", "rp", "html", "head", "body",
];
const FORMATTING: &[&str] = &[
    "a", "b", "big", "code", "em", "font", "i", "nobr", "s", "small", "strike", "strong", "tt", "u",
];

#[derive(Default)]
struct Estimate {
    depth: Cell<usize>,
    formatting: Cell<usize>,
    over: Cell<bool>,
}

impl TokenSink for Estimate {
    type Handle = ();

    fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
        let Token::TagToken(tag) = token else {
            return TokenSinkResult::Continue;
        };
        let name: &str = &tag.name;
        let counted = !VOID.contains(&name) && !IMPLIED.contains(&name);
        let formatting = FORMATTING.contains(&name);
        match tag.kind {
            TagKind::StartTag => {
                if counted && !tag.self_closing {
                    self.depth.set(self.depth.get() + 1);
                }
                if formatting {
                    self.formatting.set(self.formatting.get() + 1);
                }
                if self.depth.get() > MAX_DEPTH || self.formatting.get() > MAX_FORMATTING {
                    self.over.set(true);
                }
                // The states the tree builder would switch the tokenizer
                // to, so the text of scripts and styles is not read as
                // markup.
                match name {
                    "script" => return TokenSinkResult::RawData(RawKind::ScriptData),
                    "style" | "xmp" | "iframe" | "noembed" | "noframes" => {
                        return TokenSinkResult::RawData(RawKind::Rawtext);
                    }
                    "title" | "textarea" => return TokenSinkResult::RawData(RawKind::Rcdata),
                    "plaintext" => return TokenSinkResult::Plaintext,
                    _ => {}
                }
            }
            TagKind::EndTag => {
                if counted {
                    self.depth.set(self.depth.get().saturating_sub(1));
                }
                if formatting {
                    self.formatting.set(self.formatting.get().saturating_sub(1));
                }
            }
        }
        TokenSinkResult::Continue
    }
}

/// Where to cut `text` so that the tree builder stays within the bounds:
/// `None` when the whole page is within them.
pub fn cut(text: &str) -> Option<usize> {
    let tokenizer = Tokenizer::new(Estimate::default(), TokenizerOpts::default());
    let queue = BufferQueue::default();
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + CHUNK).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        queue.push_back(StrTendril::from_slice(&text[start..end]));
        let _ = tokenizer.feed(&queue);
        if tokenizer.sink.over.get() {
            return Some(start);
        }
        start = end;
    }
    tokenizer.end();
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_pages_are_not_cut() {
        let mut page = String::from("<html><head><title>t</title></head><body>");
        for _ in 0..20_000 {
            page.push_str("<p>para<li>item<div><span>x</span></div><br><img src=a>");
        }
        page.push_str("<script>for(;;){'<div><div><div>'}</script><style>b{}</style>");
        assert_eq!(cut(&page), None);
    }

    #[test]
    fn deep_pages_are_cut_near_the_bound() {
        let page = "<div>".repeat(10_000);
        let at = cut(&page).unwrap();
        assert!(at <= MAX_DEPTH * 5 && at + CHUNK > MAX_DEPTH * 5, "{at}");
        let page = "<b><i><u>".repeat(1_000);
        assert!(cut(&page).is_some());
    }
}
