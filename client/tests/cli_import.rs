//! `mtos import` and `mtos item thread` as a person runs them: a saved
//! page becomes an item of its type with its metadata, tags, embed markup
//! kept as a file and media attached; bad input is refused with a clear
//! error; a thread of replies, remixes and reblogs shows as a tree, a
//! missing middle item as missing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn fixture(name: &str) -> String {
    let p: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "import",
        "tests",
        "fixtures",
        name,
    ]
    .iter()
    .collect();
    p.to_str().unwrap().to_owned()
}

#[test]
fn a_saved_video_page_becomes_a_video_item() {
    let home = Home::new();
    home.ok(&["id", "new", "--label", "alice"]);
    let shown = home.ok(&[
        "import",
        "--dry-run",
        &fixture("site-youtube.html"),
        "--oembed",
        &fixture("site-youtube.oembed.json"),
    ]);
    assert!(
        shown.contains("type: VideoObject [VideoObject] (microdata)"),
        "{shown}"
    );
    assert!(shown.contains("author: ONE Media (microdata)"), "{shown}");
    assert!(shown.contains("duration_s: 142 s (microdata)"), "{shown}");
    assert!(shown.contains("embed_html: "), "{shown}");

    let json = home.ok(&[
        "import",
        "--dry-run",
        "--json",
        &fixture("site-youtube.html"),
        "--oembed",
        &fixture("site-youtube.oembed.json"),
    ]);
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("site-youtube.expected.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&json).unwrap(),
        expected
    );

    let media = home.file("trailer.webm");
    std::fs::write(&media, b"\x1aE\xdf\xa3 not really a video").unwrap();
    let out = home.run(&[
        "import",
        &fixture("site-youtube.html"),
        "--oembed",
        &fixture("site-youtube.oembed.json"),
        "--with-media",
        media.to_str().unwrap(),
        "--tag",
        "film",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let reference = String::from_utf8(out.stdout.clone())
        .unwrap()
        .trim()
        .to_owned();
    assert!(reference.starts_with("mtos:item:"), "{reference}");
    assert!(
        stderr(&out).contains("title: Star Wars 8"),
        "{}",
        stderr(&out)
    );

    let opened = home.ok(&["item", "open", &reference]);
    assert_eq!(field(&opened, "type"), "VideoObject");
    // The person's tag first, then the page's keywords (Open Graph's
    // og:video:tag here), white space made `-`.
    assert_eq!(field(&opened, "tags"), "film Official Trailer Movie");
    let inspect = home.ok(&["item", "inspect", &reference]);
    for mime in [
        "text/plain",
        "application/ld+json",
        "text/html",
        "video/webm",
    ] {
        assert!(inspect.contains(mime), "{mime} missing: {inspect}");
    }
    // The summary is text; the JSON-LD is schema.org's.
    assert!(
        opened.contains("https://www.youtube.com/watch?v=hwMkbaS_M_c"),
        "{opened}"
    );
    assert!(opened.contains("\"@type\": \"VideoObject\""), "{opened}");
    assert!(opened.contains("\"duration\": \"PT142S\""), "{opened}");
}

#[test]
fn a_page_from_standard_input_and_publish_options() {
    let home = Home::new();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mtos"))
        .arg("--home")
        .arg(home.path())
        .args([
            "import",
            "-",
            "--anonymous",
            "--url",
            "https://sailing.example.org/a/",
        ])
        .env_remove("MTOS_HOME")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"<title>Knots</title><meta property=og:image content=img/k.png>")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("thumbnail: https://sailing.example.org/a/img/k.png (open-graph)"),
        "{err}"
    );
    let reference = String::from_utf8(out.stdout.clone())
        .unwrap()
        .trim()
        .to_owned();
    let opened = home.ok(&["item", "open", &reference]);
    assert_eq!(field(&opened, "type"), "WebPage");

    // --import belongs to publish and item seal; mtos import takes the page once.
    home.fails(
        &[
            "import",
            &fixture("title-only.html"),
            "--import",
            &fixture("title-only.html"),
            "--anonymous",
        ],
        6,
        "give the page once",
    );
    // --oembed without a page to describe.
    home.fails(
        &[
            "item",
            "seal",
            "--text",
            "x",
            "--oembed",
            &fixture("oembed-photo.json"),
            "--anonymous",
        ],
        6,
        "describe a page given with --import",
    );
    // item seal --import makes the same item type as mtos import.
    let r = home
        .ok(&[
            "item",
            "seal",
            "--import",
            &fixture("oembed-photo.json"),
            "--anonymous",
        ])
        .trim()
        .to_owned();
    assert_eq!(
        field(&home.ok(&["item", "open", &r]), "type"),
        "ImageObject"
    );
}

#[test]
fn bad_pages_are_clear_errors() {
    let home = Home::new();
    let big = home.file("big.html");
    std::fs::write(&big, vec![b' '; (4 << 20) + 1]).unwrap();
    home.fails(
        &["import", "--dry-run", big.to_str().unwrap()],
        4,
        "over the limit",
    );
    let empty = home.file("empty.html");
    std::fs::write(&empty, b"<p>no metadata here</p>").unwrap();
    home.fails(
        &["import", "--dry-run", empty.to_str().unwrap()],
        4,
        "nothing to import",
    );
    let bad = home.file("bad.json");
    std::fs::write(&bad, b"{\"version\": \"1.0\"}").unwrap();
    home.fails(
        &["import", "--dry-run", bad.to_str().unwrap()],
        4,
        "not an oEmbed response",
    );
    home.fails(
        &[
            "import",
            "--dry-run",
            &fixture("title-only.html"),
            "--url",
            "ftp://x/",
        ],
        4,
        "absolute http or https",
    );
    // Terminal escapes in a page never reach the terminal.
    let shown = home.ok(&["import", "--dry-run", &fixture("hostile-urls.html")]);
    assert!(!shown.contains('\u{1b}'), "{shown:?}");
    assert!(!shown.contains('\u{202e}'), "{shown:?}");
}

#[test]
fn a_thread_shows_as_a_tree_with_a_missing_middle_item() {
    let alice = Home::new();
    alice.ok(&["id", "new", "--label", "alice"]);
    let seal = |home: &Home, args: &[&str]| -> String {
        let mut all = vec!["item", "seal"];
        all.extend_from_slice(args);
        home.ok(&all).trim().to_owned()
    };
    let one = seal(&alice, &["--text", "one: the root"]);
    let two = seal(&alice, &["--text", "two", "--reply-to", &one]);
    // Three is sealed elsewhere: this home never holds it.
    let other = Home::new();
    let three = seal(
        &other,
        &["--text", "three", "--reply-to", &two, "--anonymous"],
    );
    let four = seal(&alice, &["--text", "four", "--reply-to", &three]);
    let five = seal(&alice, &["--text", "five", "--remix-of", &four]);
    let six = seal(&alice, &["--text", "six \u{1b}[31m", "--reblog", &two]);

    let from_root = alice.ok(&["item", "thread", &one]);
    let lines: Vec<&str> = from_root
        .lines()
        .filter(|l| l.trim_start().starts_with(['*', '-']))
        .collect();
    assert_eq!(lines.len(), 3, "{from_root}");
    assert!(lines[0].starts_with("* Note by "), "{from_root}");
    assert!(lines[1].starts_with("  - reply-to: Note"), "{from_root}");
    assert!(lines[2].starts_with("    - reblog-of: Note"), "{from_root}");
    assert!(from_root.contains("six \\u{1b}[31m"), "{from_root}");

    let from_five = alice.ok(&["item", "thread", &five]);
    let lines: Vec<&str> = from_five
        .lines()
        .filter(|l| l.trim_start().starts_with(['*', '-']))
        .collect();
    assert!(
        from_five.starts_with("thread of 3 item(s), 1 missing"),
        "{from_five}"
    );
    assert!(
        lines[0].starts_with("- (missing: not in the local store"),
        "{from_five}"
    );
    assert!(lines[1].starts_with("  - reply-to: Note"), "{from_five}");
    assert!(lines[2].starts_with("    * remix-of: Note"), "{from_five}");
    assert!(
        from_five.contains(&three) && from_five.contains(&four),
        "{from_five}"
    );
    let _ = six;
}
