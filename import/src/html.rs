//! One pass over a parsed page for what the meta-tag sources and the
//! page's own HTML say: `<title>`, meta tags, links, `<html lang>`,
//! `<base href>` and the JSON-LD blocks. Microdata and RDFa need the
//! tree's nesting and have passes of their own.

use scraper::{Html, Node};

use crate::ctx::Ctx;

/// Longest text read from one element (a title, a JSON-LD block): the
/// page's own bound.
pub const MAX_ELEMENT_TEXT: usize = crate::MAX_PAGE_BYTES;
/// Most JSON-LD blocks read.
pub const MAX_JSONLD_BLOCKS: usize = 64;

/// A `<link>` or `<a>` with a `rel`.
#[derive(Debug, Clone)]
pub struct Link {
    /// Its element's name.
    pub element: String,
    /// Its `rel` tokens, lower case.
    pub rel: Vec<String>,
    /// Its `href`.
    pub href: String,
    /// Its `type`, lower case.
    pub kind: String,
}

/// What one pass over the page found.
#[derive(Debug, Default)]
pub struct Scan {
    /// The first `<title>`'s text.
    pub title: Option<String>,
    /// Each meta tag's key (its `property`, and its `name`, lower case)
    /// and `content`, in document order.
    pub metas: Vec<(String, String)>,
    /// Links with a `rel`.
    pub links: Vec<Link>,
    /// `<html lang>`.
    pub lang: Option<String>,
    /// The first `<base href>`.
    pub base: Option<String>,
    /// The text of each `<script type="application/ld+json">`.
    pub jsonld: Vec<String>,
    /// Whether there were more JSON-LD blocks than were read.
    pub jsonld_cut: bool,
}

impl Scan {
    /// The first content of a meta tag with this key.
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metas
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every content of meta tags with this key.
    pub fn metas_of<'s>(&'s self, key: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.metas
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Elements that break a line where they start and end: their text is
/// kept apart from the text around them (as a browser lays it out).
const BLOCK: &[&str] = &[
    "address",
    "article",
    "aside",
    "blockquote",
    "br",
    "dd",
    "details",
    "div",
    "dl",
    "dt",
    "figcaption",
    "figure",
    "footer",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hr",
    "li",
    "main",
    "nav",
    "ol",
    "p",
    "pre",
    "section",
    "summary",
    "table",
    "td",
    "th",
    "tr",
    "ul",
];

/// The text under an element, at most `max` bytes, spending the
/// budget; block elements separate what they hold by a space.
pub fn text_of(node: ego_tree::NodeRef<'_, Node>, max: usize, ctx: &mut Ctx) -> String {
    use ego_tree::iter::Edge;
    let mut out = String::new();
    for edge in node.traverse() {
        if !ctx.step(1) {
            break;
        }
        let (n, open) = match edge {
            Edge::Open(n) => (n, true),
            Edge::Close(n) => (n, false),
        };
        match n.value() {
            Node::Text(t) if open => {
                let room = max.saturating_sub(out.len());
                if room == 0 {
                    break;
                }
                let s: &str = t;
                let mut cut = s.len().min(room);
                while !s.is_char_boundary(cut) {
                    cut -= 1;
                }
                out.push_str(&s[..cut]);
            }
            Node::Element(el)
                if n.id() != node.id()
                    && BLOCK.contains(&el.name())
                    && !out.ends_with(' ')
                    && out.len() < max =>
            {
                out.push(' ');
            }
            _ => {}
        }
    }
    out
}

/// Scans `doc`.
pub fn scan(doc: &Html, ctx: &mut Ctx) -> Scan {
    let mut s = Scan::default();
    for node in doc.tree.root().descendants() {
        if !ctx.step(1) {
            break;
        }
        let Node::Element(el) = node.value() else {
            continue;
        };
        match el.name() {
            "html" if s.lang.is_none() => s.lang = el.attr("lang").map(str::to_owned),
            "title" if s.title.is_none() => {
                s.title = Some(text_of(node, MAX_ELEMENT_TEXT, ctx));
            }
            "base" if s.base.is_none() => s.base = el.attr("href").map(str::to_owned),
            "meta" => {
                let Some(content) = el.attr("content") else {
                    continue;
                };
                let mut keys: Vec<String> = Vec::new();
                for attr in ["property", "name"] {
                    if let Some(k) = el.attr(attr) {
                        let k = k.trim().to_ascii_lowercase();
                        if !k.is_empty() && !keys.contains(&k) {
                            keys.push(k);
                        }
                    }
                }
                for k in keys {
                    s.metas.push((k, content.to_owned()));
                }
            }
            "link" | "a" | "area" => {
                if let (Some(rel), Some(href)) = (el.attr("rel"), el.attr("href")) {
                    s.links.push(Link {
                        element: el.name().to_owned(),
                        rel: rel
                            .split_ascii_whitespace()
                            .map(str::to_ascii_lowercase)
                            .collect(),
                        href: href.to_owned(),
                        kind: el.attr("type").unwrap_or("").trim().to_ascii_lowercase(),
                    });
                }
            }
            "script" => {
                let is_jsonld = el.attr("type").is_some_and(|t| {
                    t.split(';')
                        .next()
                        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/ld+json"))
                });
                if is_jsonld {
                    if s.jsonld.len() >= MAX_JSONLD_BLOCKS {
                        s.jsonld_cut = true;
                    } else {
                        s.jsonld.push(text_of(node, MAX_ELEMENT_TEXT, ctx));
                    }
                }
            }
            _ => {}
        }
    }
    s
}
