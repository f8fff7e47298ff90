//! A linear pre-pass that bounds what html5ever's tree builder is given.
//! The tree builder scans its stack of open elements for each new element
//! (a `<div>` checks for a `<p>` in button scope), so a page nesting
//! 100,000 elements costs 10^10 steps; and before text or an inline
//! element it re-creates every active formatting element that a closed
//! block left behind, so 127 distinct `<b id=N>` inside a closed `<p>`,
//! then `<p>x</p>` again and again, build 127 elements per 8 bytes.
//! Browsers bound depth (Blink at 512); html5ever bounds neither. So the
//! page is first run through html5ever's tokenizer alone (linear), with a
//! model of the tree builder's stack that never counts less than the
//! parser builds, and is read only up to the point where the depth, the
//! active formatting elements or the elements they could re-create pass
//! their bounds (the metadata sits in the head and near the top; a note
//! says the rest was not read).
//!
//! The model, against the parser's rules (HTML §13.2.6):
//! * every start tag of a non-void element opens an element (a
//!   self-closing flag is ignored on HTML elements, as the parser does),
//!   except those whose end tag may be left out and that a sibling closes
//!   (`p`, `li`, `td`, ...): they are counted in a factor of the bound,
//!   which the parser's implied `tbody`/`tr` and list items stay within;
//! * an end tag closes the nearest open element of its name when no
//!   element that would stop the parser (a scope boundary for a special
//!   element's end tag, any special element for another's) lies above
//!   it; otherwise it is ignored (so the model keeps more open than the
//!   parser, never fewer); a formatting element's end tag with a special
//!   element above it (the adoption agency's furthest block, which stays
//!   open) is ignored;
//! * inside `svg` or `math` the tokenizer is never switched to raw text
//!   (there `title`, `style` and `script` are ordinary elements);
//! * formatting elements stay active from their start tag to their
//!   end tag whatever closes them, and each start tag or run of text
//!   while some are active is charged as if all of them were re-created.

use std::cell::{Cell, RefCell};

use html5ever::tendril::StrTendril;
use html5ever::tokenizer::states::RawKind;
use html5ever::tokenizer::{
    BufferQueue, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer, TokenizerOpts,
};

/// Deepest nesting read: half Blink's 512, which no page's metadata
/// needs, and which bounds the tree builder's scans of a page nesting to
/// the bound and back again and again to about half a second.
pub const MAX_DEPTH: usize = 256;
/// Most formatting elements active at once.
pub const MAX_FORMATTING: usize = 128;
/// Most elements the active formatting elements may be re-created as.
pub const MAX_RECREATED: u64 = 500_000;
/// The pre-pass feeds the tokenizer this much at a time; a page is cut
/// at such a boundary.
const CHUNK: usize = 512;

const VOID: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track",
    "wbr", "param", "keygen", "basefont", "bgsound", "frame", "image",
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
/// The parser's special elements (HTML §13.2.4.2), those of the model's
/// stack.
const SPECIAL: &[&str] = &[
    "address",
    "applet",
    "article",
    "aside",
    "blockquote",
    "center",
    "details",
    "dialog",
    "dir",
    "div",
    "dl",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "frameset",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hgroup",
    "iframe",
    "listing",
    "main",
    "marquee",
    "menu",
    "nav",
    "noembed",
    "noframes",
    "noscript",
    "object",
    "ol",
    "plaintext",
    "pre",
    "script",
    "search",
    "section",
    "select",
    "style",
    "summary",
    "table",
    "template",
    "textarea",
    "title",
    "ul",
    "xmp",
    "svg",
    "math",
    "foreignobject",
    "desc",
    "mi",
    "mo",
    "mn",
    "ms",
    "mtext",
    "annotation-xml",
];
/// Elements that bound an element's scope.
const SCOPE: &[&str] = &[
    "applet",
    "caption",
    "html",
    "table",
    "td",
    "th",
    "marquee",
    "object",
    "template",
    "svg",
    "math",
    "foreignobject",
    "desc",
    "mi",
    "mo",
    "mn",
    "ms",
    "mtext",
    "annotation-xml",
];

#[derive(Default)]
struct Estimate {
    stack: RefCell<Vec<String>>,
    /// Active formatting elements by name (start tags not yet ended).
    active: RefCell<Vec<String>>,
    recreated: Cell<u64>,
    over: Cell<bool>,
}

impl Estimate {
    fn foreign(&self) -> bool {
        self.stack
            .borrow()
            .iter()
            .any(|n| n == "svg" || n == "math")
    }

    fn charge(&self) {
        let active = self.active.borrow().len() as u64;
        if active > 0 {
            self.recreated
                .set(self.recreated.get().saturating_add(active));
            if self.recreated.get() > MAX_RECREATED {
                self.over.set(true);
            }
        }
    }

    fn end(&self, name: &str) {
        if FORMATTING.contains(&name) {
            let mut active = self.active.borrow_mut();
            if let Some(at) = active.iter().rposition(|n| n == name) {
                active.remove(at);
            }
        }
        if IMPLIED.contains(&name) || VOID.contains(&name) {
            return;
        }
        let mut stack = self.stack.borrow_mut();
        let stops: &[&str] = if SPECIAL.contains(&name) {
            SCOPE
        } else {
            SPECIAL
        };
        let formatting = FORMATTING.contains(&name);
        for i in (0..stack.len()).rev() {
            if stack[i] == name {
                // A formatting element with a special element above it:
                // the parser's furthest block stays open.
                if formatting && stack[i + 1..].iter().any(|n| SPECIAL.contains(&n.as_str())) {
                    return;
                }
                stack.truncate(i);
                return;
            }
            if stops.contains(&stack[i].as_str()) {
                return;
            }
        }
    }
}

impl TokenSink for Estimate {
    type Handle = ();

    fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
        let tag = match token {
            Token::TagToken(tag) => tag,
            Token::CharacterTokens(_) => {
                self.charge();
                return TokenSinkResult::Continue;
            }
            _ => return TokenSinkResult::Continue,
        };
        let name: &str = &tag.name;
        match tag.kind {
            TagKind::StartTag => {
                self.charge();
                let foreign = self.foreign();
                if !VOID.contains(&name) && !IMPLIED.contains(&name) {
                    self.stack.borrow_mut().push(name.to_owned());
                }
                if FORMATTING.contains(&name) {
                    self.active.borrow_mut().push(name.to_owned());
                }
                if self.stack.borrow().len() > MAX_DEPTH
                    || self.active.borrow().len() > MAX_FORMATTING
                {
                    self.over.set(true);
                }
                // The states the tree builder would switch the tokenizer
                // to for HTML elements, so the text of scripts and styles
                // is not read as markup.
                if !foreign {
                    match name {
                        "script" => return TokenSinkResult::RawData(RawKind::ScriptData),
                        "style" | "xmp" | "iframe" | "noembed" | "noframes" => {
                            return TokenSinkResult::RawData(RawKind::Rawtext);
                        }
                        "title" | "textarea" => {
                            return TokenSinkResult::RawData(RawKind::Rcdata);
                        }
                        "plaintext" => return TokenSinkResult::Plaintext,
                        _ => {}
                    }
                }
            }
            TagKind::EndTag => self.end(name),
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

/// `text` within the bounds: itself, or its part before the cut.
pub fn bounded(text: &str) -> (&str, bool) {
    match cut(text) {
        None => (text, false),
        Some(at) => (&text[..at], true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_pages_are_not_cut() {
        let mut page = String::from("<html><head><title>t</title></head><body>");
        for _ in 0..20_000 {
            page.push_str(
                "<p>para<li>item<div><span>x</span></div><br><img src=a><b>bold</b> <a href=x>link</a>",
            );
        }
        page.push_str("<svg><title>icon</title><path d=x/></svg>");
        page.push_str(
            "<div><section></div><script>for(;;){'<div><div><div>'}</script><style>b{}</style>",
        );
        assert_eq!(cut(&page), None);
    }

    #[test]
    fn deep_pages_are_cut_near_the_bound_however_they_nest() {
        for (open, size) in [
            ("<div>", 5),
            ("<div/>", 6),
            ("<div></x>", 9),
            ("<div></b>", 9),
            ("<b><div></b>", 12),
            ("<table><td>", 11),
        ] {
            let page = open.repeat(10_000);
            let at = cut(&page).unwrap_or_else(|| panic!("{open} not cut"));
            assert!(at <= MAX_DEPTH * size + CHUNK, "{open}: {at}");
        }
        // Raw text inside foreign content is not raw: the divs count.
        let page = format!("<svg><title>{}", "<div>".repeat(10_000));
        assert!(cut(&page).is_some());
    }

    #[test]
    fn formatting_that_would_be_recreated_again_and_again_is_cut() {
        let mut page = String::from("<p>");
        for i in 0..127 {
            page.push_str(&format!("<b id={i}>"));
        }
        page.push_str("</p>");
        let head = page.len();
        while page.len() < 4 << 20 {
            page.push_str("<p>x</p>");
        }
        let at = cut(&page).unwrap();
        // About MAX_RECREATED / 127 / 2 repetitions of 8 bytes.
        assert!(at > head && at < 50_000, "{at}");
        let page = "<b><i><u>".repeat(1_000);
        assert!(cut(&page).is_some());
    }
}
