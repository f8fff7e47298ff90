//! Embed markup from oEmbed's `html`, kept as data: the importer never
//! runs it and the terminal never prints it as markup, and what is kept
//! is sanitised by ammonia (html5ever's parser) to frames, links,
//! pictures, media and text, with http(s) addresses only: no script, no
//! event handler, no style, no plug-in, no form.

use std::collections::HashSet;

use scraper::{Html, Node};

use crate::ctx::Ctx;
use crate::fields::Note;

/// Longest embed markup kept, in bytes (before sanitising).
pub const MAX_EMBED: usize = 64 * 1024;

/// The sanitised markup, or `None` when nothing is left.
pub fn sanitise(html: &str, ctx: &mut Ctx) -> Option<String> {
    if html.len() > MAX_EMBED {
        ctx.note(Note::Limit {
            what: format!("embed markup over {MAX_EMBED} bytes"),
        });
        return None;
    }
    if !ctx.step(html.len() as u64 / 16 + 1) {
        return None;
    }
    // The same bounds as a page's: markup that would nest too deep or
    // re-create formatting elements without end is cut first.
    let (html, cut) = crate::depth::bounded(html);
    if cut {
        ctx.note(Note::Limit {
            what: "embed markup nested too deep or re-creating too many elements".into(),
        });
    }
    if active(html) {
        ctx.note(Note::EmbedSanitised);
    }
    let clean = builder().clean(html).to_string();
    let clean = clean.trim();
    if clean.len() > MAX_EMBED {
        ctx.note(Note::Limit {
            what: format!("embed markup over {MAX_EMBED} bytes once sanitised"),
        });
        return None;
    }
    (!clean.is_empty()).then(|| clean.to_owned())
}

fn builder() -> ammonia::Builder<'static> {
    let mut b = ammonia::Builder::default();
    b.add_tags(["iframe", "video", "audio", "source", "picture"])
        .add_tag_attributes(
            "iframe",
            [
                "src",
                "width",
                "height",
                "title",
                "allow",
                "allowfullscreen",
                "frameborder",
                "loading",
                "referrerpolicy",
                "scrolling",
            ],
        )
        .add_tag_attributes("video", ["src", "poster", "width", "height", "controls"])
        .add_tag_attributes("audio", ["src", "controls"])
        .add_tag_attributes("source", ["src", "srcset", "type"])
        .add_tag_attributes("img", ["width", "height", "srcset"])
        .add_tag_attributes("blockquote", ["cite"])
        .add_generic_attributes(["class", "lang", "dir"])
        .add_generic_attribute_prefixes(["data-"])
        .url_schemes(HashSet::from(["http", "https"]))
        .url_relative(ammonia::UrlRelative::Deny)
        .link_rel(Some("noopener noreferrer"));
    b
}

/// Whether the markup holds anything the sanitiser takes out for safety:
/// a script, style, plug-in or form element, an event handler or style
/// attribute, or an address of another scheme.
fn active(html: &str) -> bool {
    let frag = Html::parse_fragment(html);
    frag.tree.root().descendants().any(|n| {
        let Node::Element(el) = n.value() else {
            return false;
        };
        matches!(
            el.name(),
            "script"
                | "style"
                | "object"
                | "embed"
                | "applet"
                | "form"
                | "link"
                | "meta"
                | "base"
                | "svg"
                | "math"
        ) || el.attrs().any(|(name, value)| {
            let name = name.to_ascii_lowercase();
            name.starts_with("on")
                || name == "style"
                || name == "srcdoc"
                || (matches!(
                    name.as_str(),
                    "src" | "href" | "action" | "formaction" | "poster"
                ) && {
                    let v = value.trim_start().to_ascii_lowercase();
                    !(v.starts_with("http://") || v.starts_with("https://"))
                })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn players_stay_and_scripts_go() {
        let mut ctx = Ctx::new(None);
        let html = r#"<iframe width="200" height="113" src="https://www.youtube.com/embed/abc?feature=oembed" frameborder="0" allow="autoplay; encrypted-media" allowfullscreen title="T"></iframe>"#;
        let out = sanitise(html, &mut ctx).unwrap();
        assert!(out.contains(r#"src="https://www.youtube.com/embed/abc?feature=oembed""#));
        assert!(out.contains("allowfullscreen"));
        assert!(ctx.notes.is_empty(), "{:?}", ctx.notes);

        let mut ctx = Ctx::new(None);
        let html = r#"<blockquote class="twitter-tweet" onmouseover="x()"><a href="javascript:alert(1)">t</a><img src=x onerror=alert(1)></blockquote><script async src="https://platform.twitter.com/widgets.js"></script><iframe srcdoc="<script>x</script>"></iframe>"#;
        let out = sanitise(html, &mut ctx).unwrap();
        for bad in ["script", "onmouseover", "onerror", "javascript:", "srcdoc"] {
            assert!(!out.contains(bad), "{bad} in {out}");
        }
        assert!(out.contains(r#"class="twitter-tweet""#));
        assert_eq!(ctx.notes, vec![Note::EmbedSanitised]);
    }
}
