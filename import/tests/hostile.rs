//! Hostile input: over the size caps, nested as deep as a parser allows,
//! malformed, lying about its charset, carrying terminal escapes and
//! scripts. Each gives a clear error or a clean item; none hangs or
//! panics (the time each takes is printed, not asserted: the fuzz target
//! and its closing-note figures are where time is measured).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use mtos_import::{ImportError, MAX_OEMBED_BYTES, MAX_PAGE_BYTES, Note, Options, import};

fn timed(name: &str, page: &[u8]) -> Result<mtos_import::Imported, ImportError> {
    let t = Instant::now();
    let r = import(page, None, &Options::default());
    eprintln!("{name}: {} bytes in {:?}", page.len(), t.elapsed());
    r
}

/// No control character, no bidirectional override, in any text field.
fn assert_clean(i: &mtos_import::Imported) {
    let f = &i.fields;
    if let Some(t) = &i.schema_type {
        assert!(
            !t.chars()
                .any(|c| c.is_control() || mtos_import::text::is_bidi_control(c))
        );
    }
    let mut all: Vec<&String> = [
        &f.title,
        &f.description,
        &f.author,
        &f.published,
        &f.url,
        &f.site_name,
        &f.license,
        &f.thumbnail,
        &f.artist,
        &f.album,
        &f.language,
        &f.oembed,
    ]
    .into_iter()
    .flatten()
    .collect();
    all.extend(&f.media);
    all.extend(&f.keywords);
    for s in all {
        assert!(
            !s.chars()
                .any(|c| c.is_control() || mtos_import::text::is_bidi_control(c)),
            "{s:?}"
        );
    }
}

#[test]
fn inputs_over_the_caps_are_refused_before_parsing() {
    let page = vec![b'a'; MAX_PAGE_BYTES + 1];
    assert!(matches!(
        timed("page over cap", &page),
        Err(ImportError::TooLarge { limit, .. }) if limit == MAX_PAGE_BYTES
    ));
    let mut oembed = b"{\"type\":\"link\",\"title\":\"".to_vec();
    oembed.resize(MAX_OEMBED_BYTES + 1, b'x');
    assert!(matches!(
        timed("oembed over cap", &oembed),
        Err(ImportError::TooLarge { limit, .. }) if limit == MAX_OEMBED_BYTES
    ));
    let page = b"<title>ok</title>";
    assert!(matches!(
        import(page, Some(&oembed), &Options::default()),
        Err(ImportError::TooLarge { .. })
    ));
}

#[test]
fn empty_and_meaningless_inputs_are_clear_errors() {
    assert!(matches!(
        timed("empty", b"  \n"),
        Err(ImportError::Empty { .. })
    ));
    assert!(matches!(
        timed("no metadata", b"<html><body><p>text only</p></body></html>"),
        Err(ImportError::Nothing)
    ));
    assert!(matches!(
        timed("not oembed", b"{\"title\": \"no type\"}"),
        Err(ImportError::BadOEmbed { .. })
    ));
    assert!(matches!(
        timed("bad oembed json", b"{\"type\": "),
        Err(ImportError::BadOEmbed { .. })
    ));
    assert!(matches!(
        timed("oembed xml with a dtd", b"<?xml version=\"1.0\"?><!DOCTYPE oembed [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\">]><oembed><type>link</type><title>&b;</title></oembed>"),
        Err(ImportError::BadOEmbed { .. })
    ));
    assert!(matches!(
        import(
            b"{\"type\":\"link\",\"title\":\"t\"}",
            Some(b"{}"),
            &Options::default()
        ),
        Err(ImportError::TwoOEmbeds)
    ));
    assert!(matches!(
        import(
            b"<title>t</title>",
            None,
            &Options {
                url: Some("javascript:x".into())
            }
        ),
        Err(ImportError::BadBase { .. })
    ));
}

#[test]
fn deep_nesting_is_read_without_recursion() {
    // Elements nested as deep as a 4 MiB page can.
    let n = (MAX_PAGE_BYTES - 200) / 11;
    let mut page = String::from("<title>deep</title>");
    page.push_str(&"<div itemscope itemprop=x>".repeat(n / 3));
    page.push_str(&"<b>".repeat(n / 3));
    let got = timed("deep elements", page.as_bytes()).unwrap();
    assert_eq!(got.fields.title.as_deref(), Some("deep"));

    // JSON-LD nested past serde_json's limit: that block is skipped.
    let mut page = String::from("<title>json</title><script type=application/ld+json>");
    page.push_str(&"[".repeat(100_000));
    page.push_str("</script>");
    let got = timed("deep json-ld", page.as_bytes()).unwrap();
    assert!(
        matches!(got.notes[0], Note::BadJsonLd { .. }),
        "{:?}",
        got.notes
    );

    // Tables, formatting elements and misnesting, which make HTML parsers
    // work hardest.
    let mut page = String::from("<html><head><title>mess</title></head><body>");
    while page.len() < MAX_PAGE_BYTES - 64 {
        page.push_str("<table><tr><td><a><b><i><p></a></i><em><s>");
    }
    let got = timed("misnested", page.as_bytes()).unwrap();
    assert_eq!(got.fields.title.as_deref(), Some("mess"));
    assert!(
        got.notes
            .iter()
            .any(|n| matches!(n, Note::Limit { what } if what.contains("nested"))),
        "{:?}",
        got.notes
    );
}

#[test]
fn pages_just_within_the_depth_bounds_are_read_in_bounded_time() {
    // Nesting up to the bound and back, again and again: the tree
    // builder's scans stay within the bound each time.
    let mut page = String::from("<title>saw</title>");
    let down = "<div>".repeat(250);
    let up = "</div>".repeat(250);
    while page.len() < MAX_PAGE_BYTES - 6_000 {
        page.push_str(&down);
        page.push_str(&up);
    }
    let got = timed("saw of divs", page.as_bytes()).unwrap();
    assert_eq!(got.fields.title.as_deref(), Some("saw"));
    // Distinct formatting elements left behind by a closed paragraph,
    // which the parser would re-create before every later text: 127 per
    // 8 bytes, 66 million elements in all, were it not cut.
    let mut page = String::from("<title>fmt</title><p>");
    for i in 0..127 {
        page.push_str(&format!("<b id={i}>"));
    }
    page.push_str("</p>");
    while page.len() < MAX_PAGE_BYTES - 64 {
        page.push_str("<p>x</p>");
    }
    let got = timed("re-created formatting", page.as_bytes()).unwrap();
    assert_eq!(got.fields.title.as_deref(), Some("fmt"));
    assert!(
        got.notes.iter().any(|n| matches!(n, Note::Limit { .. })),
        "{:?}",
        got.notes
    );
    // The ways past a naive depth count: self-closing divs, stray end
    // tags, raw text inside foreign content.
    for (name, open) in [
        ("<div/>", "<div/>"),
        ("<div></x>", "<div></x>"),
        ("<b><div></b>", "<b><div></b>"),
    ] {
        let mut page = String::from("<title>deep</title>");
        while page.len() < MAX_PAGE_BYTES - 64 {
            page.push_str(open);
        }
        let got = timed(name, page.as_bytes()).unwrap();
        assert!(
            got.notes.iter().any(|n| matches!(n, Note::Limit { .. })),
            "{name}"
        );
    }
    let mut page = String::from("<title>svg</title><svg><title>");
    while page.len() < MAX_PAGE_BYTES - 64 {
        page.push_str("<div>");
    }
    let got = timed("svg title", page.as_bytes()).unwrap();
    assert!(got.notes.iter().any(|n| matches!(n, Note::Limit { .. })));
}

#[test]
fn one_value_under_many_names_is_not_copied_for_each() {
    let names = "a ".repeat(200_000);
    let value = "x".repeat(3 << 20);
    let page = format!(
        "<title>t</title><div itemscope itemtype=https://schema.org/Article><meta itemprop=\"name {names}\" content=\"{value}\"></div>\
         <div vocab=https://schema.org/ typeof=Article><span property=\"name {names}\" content=v></span></div>"
    );
    let page = &page[..page.len().min(MAX_PAGE_BYTES)];
    let got = timed("many names", page.as_bytes()).unwrap();
    assert!(got.fields.title.as_ref().is_some_and(|t| t.len() <= 4_000));
}

#[test]
fn embed_markup_that_would_grow_is_cut() {
    let mut html = String::from("<p>");
    for i in 0..2_490 {
        html.push_str(&format!("<b class={i}>"));
    }
    html.push_str("</p>");
    while html.len() < 60_000 {
        html.push_str("<p>x</p>");
    }
    let oembed = serde_json::json!({"type": "rich", "version": "1.0", "title": "t", "html": html});
    let got = timed("growing embed", oembed.to_string().as_bytes()).unwrap();
    assert!(
        got.fields
            .embed_html
            .as_ref()
            .is_none_or(|h| h.len() <= 64 * 1024)
    );
    assert!(
        got.notes.iter().any(|n| matches!(n, Note::Limit { .. })),
        "{:?}",
        got.notes
    );
}

#[test]
fn floods_of_nodes_stop_at_their_bounds() {
    let mut page = String::from(
        "<title>flood</title><script type=application/ld+json>{\"@type\":\"WebPage\",\"x\":[",
    );
    while page.len() < MAX_PAGE_BYTES - 64 {
        page.push_str("{\"@type\":\"Thing\"},");
    }
    page.push_str("{}]}</script>");
    let got = timed("json-ld nodes", page.as_bytes()).unwrap();
    assert!(
        got.notes
            .iter()
            .any(|n| matches!(n, Note::Limit { what } if what.contains("nodes"))),
        "{:?}",
        got.notes
    );

    let mut page = String::from("<title>metas</title><base href=https://e.example/");
    page.push_str(&"d/".repeat(900));
    page.push('>');
    let mut n = 0;
    while page.len() < MAX_PAGE_BYTES - 64 {
        page.push_str(&format!(
            "<meta property=og:video content={n}><meta name=keywords content=k{n}>"
        ));
        n += 1;
    }
    let got = timed("meta flood", page.as_bytes()).unwrap();
    assert_eq!(got.fields.media.len(), 16);
    assert!(got.fields.keywords.len() <= 32);
}

#[test]
fn terminal_escapes_and_overrides_never_reach_a_field() {
    let page = "<html lang=\"en\u{1b}]52;c;cHduZWQ=\u{7}\"><title>\u{1b}[2J\u{1b}[31mred\u{9b}1m \u{202e}txt.exe</title>\
        <meta name=author content=\"a\u{1}b\r\nc\">\
        <meta name=keywords content=\"x\u{1b}[1m,\u{2066}y\">\
        <meta property=og:image content=\"https://e.org/\u{1b}[31m.png\">";
    let got = timed("escapes", page.as_bytes()).unwrap();
    assert_clean(&got);
    assert_eq!(got.fields.title.as_deref(), Some("[2J [31mred 1m txt.exe"));
    assert_eq!(got.fields.author.as_deref(), Some("a b c"));
    // A type name is cleaned like any text.
    let page = r#"<script type=application/ld+json>{"@type":"Evil\u202e\u001b[2JArticle","name":"t"}</script>"#;
    let got = timed("type name", page.as_bytes()).unwrap();
    assert_clean(&got);
    assert_eq!(got.schema_type.as_deref(), Some("Evil [2JArticle"));
}

#[test]
fn scripts_in_embed_markup_never_survive() {
    let oembed = br#"{"type":"rich","version":"1.0","title":"x","html":"<div onmouseover=\"a()\"><script>b()</script><img src=x onerror=c()><a href=\"javascript:d()\">e</a><iframe src=\"https://ok.example/embed\" srcdoc=\"<script>f()</script>\"></iframe><svg><script>g()</script></svg><style>@import url(https://evil/)</style><object data=\"https://evil/x.swf\"></object></div>"}"#;
    let got = timed("embed", oembed).unwrap();
    let html = got.fields.embed_html.unwrap();
    for bad in [
        "script",
        "onmouseover",
        "onerror",
        "javascript",
        "srcdoc",
        "svg",
        "style",
        "object",
        "evil",
    ] {
        assert!(!html.to_lowercase().contains(bad), "{bad} kept: {html}");
    }
    assert!(html.contains("https://ok.example/embed"), "{html}");
    assert!(got.notes.contains(&Note::EmbedSanitised));
}

#[test]
fn charsets_that_lie_give_clean_text() {
    // Declares UTF-8, is windows-1252: replacement characters, not an error.
    let got = timed("lying utf-8", b"<meta charset=utf-8><title>caf\xe9</title>").unwrap();
    assert_eq!(got.fields.title.as_deref(), Some("caf\u{fffd}"));
    // Declares an unknown charset: UTF-8.
    let got = timed(
        "unknown charset",
        "<meta charset=x-nonsense><title>café</title>".as_bytes(),
    )
    .unwrap();
    assert_eq!(got.fields.title.as_deref(), Some("café"));
    // Declares UTF-16 in a meta, bytes are ASCII: read as UTF-8.
    let got = timed("utf-16 meta", b"<meta charset=utf-16le><title>t</title>").unwrap();
    assert_eq!(got.fields.title.as_deref(), Some("t"));
}
