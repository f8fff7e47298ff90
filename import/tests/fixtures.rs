//! Every fixture page in `tests/fixtures/` imports to the item its
//! `.expected.json` describes, field by field, with each field's source.
//! The expectations are cross-checked by an independent extractor
//! (`check_fixtures.py`, on Python's extruct), so a fixture and this
//! parser cannot share a misreading.
//!
//! A fixture `NAME.html` (or `NAME.json` / `NAME.xml`, an oEmbed
//! response) may have beside it `NAME.oembed.json` or `NAME.oembed.xml`
//! (the page's oEmbed response, as `--oembed` gives it) and `NAME.url`
//! (the address it was saved from, as `--url` gives it).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};

use mtos_import::{Field, Imported, Options, import, profiles::PROFILES};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn inputs() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            !name.contains(".expected.")
                && !name.contains(".oembed.")
                && !name.ends_with(".url")
                && (name.ends_with(".html") || name.ends_with(".json") || name.ends_with(".xml"))
        })
        .collect();
    out.sort();
    out
}

fn sibling(input: &Path, suffix: &str) -> PathBuf {
    let stem = input.file_stem().unwrap().to_string_lossy().into_owned();
    input.with_file_name(format!("{stem}{suffix}"))
}

fn run(input: &Path) -> Imported {
    let page = fs::read(input).unwrap();
    let oembed = [".oembed.json", ".oembed.xml"]
        .iter()
        .map(|s| sibling(input, s))
        .find(|p| p.exists())
        .map(|p| fs::read(p).unwrap());
    let url = fs::read_to_string(sibling(input, ".url"))
        .ok()
        .map(|u| u.trim().to_owned());
    import(&page, oembed.as_deref(), &Options { url })
        .unwrap_or_else(|e| panic!("{}: {e}", input.display()))
}

#[test]
fn every_fixture_imports_to_its_expected_item() {
    let update = std::env::var_os("MTOS_UPDATE_FIXTURES").is_some();
    let mut failures = Vec::new();
    let all = inputs();
    assert!(update || all.len() >= 20, "fixtures missing: {}", all.len());
    for input in all {
        let got = run(&input);
        let expected_path = sibling(&input, ".expected.json");
        if update {
            let mut text = serde_json::to_string_pretty(&got).unwrap();
            text.push('\n');
            fs::write(&expected_path, text).unwrap();
            continue;
        }
        let expected: Imported = serde_json::from_str(
            &fs::read_to_string(&expected_path)
                .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display())),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
        if got != expected {
            failures.push(format!(
                "{}:\n got {}\nwant {}",
                input.display(),
                serde_json::to_string_pretty(&got).unwrap(),
                serde_json::to_string_pretty(&expected).unwrap()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_field_every_source_and_every_profile_is_exercised() {
    let all: Vec<Imported> = inputs().iter().map(|p| run(p)).collect();
    for field in Field::ALL {
        assert!(
            all.iter().any(|i| i.sources.contains_key(field.name())),
            "no fixture gives {}",
            field.name()
        );
    }
    for source in mtos_import::Source::ALL {
        assert!(
            all.iter().any(|i| i.sources.values().any(|s| *s == source)),
            "no fixture takes a field from {}",
            source.name()
        );
    }
    // The sites the issue names: one fixture page each, reproducing the
    // metadata the site serves.
    for site in [
        "youtube",
        "vimeo",
        "soundcloud",
        "bandcamp",
        "instagram",
        "tumblr",
        "wordpress",
        "medium",
        "wikipedia",
        "archive-org",
        "reddit",
        "mastodon",
        "diaspora",
    ] {
        assert!(
            inputs().iter().any(|p| p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("site-{site}")))),
            "no fixture for {site}"
        );
    }
    for p in PROFILES {
        assert!(
            all.iter().any(|i| i.profile.as_deref() == Some(p.name)),
            "no fixture for the {} profile",
            p.name
        );
    }
}
