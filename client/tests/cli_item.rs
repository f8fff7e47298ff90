//! `mtos item` as a user runs it: seal, open, inspect, bad input, and the
//! age command-line tool decrypting a private item.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use std::process::Command;

#[test]
fn public_note_and_media_round_trip() {
    let home = Home::new();
    home.ok(&["id", "new", "--label", "alice"]);
    let reference = home
        .ok(&["item", "seal", "--text", "hello, mixnet", "--tag", "first"])
        .trim()
        .to_owned();
    assert!(reference.starts_with("mtos:item:"));
    let opened = home.ok(&["item", "open", &reference]);
    assert_eq!(field(&opened, "type"), "Note");
    assert!(opened.contains("hello, mixnet"));
    assert!(opened.contains("verified: signature"));
    assert_eq!(field(&opened, "tags"), "first");

    // A binary file, replied to the note.
    let photo = home.file("photo.png");
    let bytes: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 256) as u8).collect();
    std::fs::write(&photo, &bytes).unwrap();
    let media = home
        .ok(&[
            "item",
            "seal",
            photo.to_str().unwrap(),
            "--reply-to",
            &reference,
        ])
        .trim()
        .to_owned();
    let out = home.file("out.png");
    let opened = home.ok(&["item", "open", &media, "-o", out.to_str().unwrap()]);
    assert_eq!(field(&opened, "type"), "ImageObject");
    assert_eq!(field(&opened, "reply-to"), reference);
    assert_eq!(std::fs::read(&out).unwrap(), bytes);

    let inspect = home.ok(&["item", "inspect", &media]);
    assert_eq!(field(&inspect, "audience"), "public");
    assert!(field(&inspect, "chunks").contains("manifest"));
    assert!(inspect.contains("image/png"));

    // Opening again never overwrites the output.
    home.fails(
        &["item", "open", &media, "-o", out.to_str().unwrap()],
        6,
        "refusing to overwrite",
    );
    assert_eq!(std::fs::read(&out).unwrap(), bytes);
}

#[test]
fn anonymous_items_link_to_no_identity() {
    let home = Home::new();
    home.ok(&["id", "new", "--label", "alice"]);
    let reference = home
        .ok(&["item", "seal", "--text", "whistle", "--anonymous"])
        .trim()
        .to_owned();
    let opened = home.ok(&["item", "open", &reference]);
    assert!(!opened.contains("your identity"));
    let alice = home.ok(&["id", "show", "alice"]);
    assert!(!opened.contains(&field(&alice, "verify key")));
}

#[test]
fn private_items_open_for_recipients_only_and_with_the_age_tool() {
    let alice = Home::new();
    alice.ok(&["id", "new", "--label", "alice"]);
    let bob = Home::new();
    let bob_id = bob.ok(&["id", "new", "--label", "bob"]);
    let bob_uri = field(&bob_id, "uri");

    let reference = alice
        .ok(&["item", "seal", "--text", "for bob only", "--to", &bob_uri])
        .trim()
        .to_owned();
    // Alice, the author, can read it.
    assert!(
        alice
            .ok(&["item", "open", &reference])
            .contains("for bob only")
    );

    // Bob gets the chunks (later through the network; here by copying the
    // sealed file into his store through the age tool path below).
    let sealed = alice.file("item.age");
    alice.ok(&[
        "item",
        "inspect",
        &reference,
        "--export-sealed",
        sealed.to_str().unwrap(),
    ]);
    let key = bob.file("bob.key");
    bob.ok(&["id", "export", "bob", "--age", "-o", key.to_str().unwrap()]);
    let age = Command::new("age")
        .args(["-d", "-i"])
        .arg(&key)
        .arg(&sealed)
        .output()
        .expect("the age tool is needed for this test (apt-get install age)");
    assert!(
        age.status.success(),
        "age -d failed: {}",
        String::from_utf8_lossy(&age.stderr)
    );
    // The plaintext is the item encoding: header, then the text part.
    let plain = age.stdout;
    assert!(plain.windows(12).any(|w| w == b"for bob only"));
    let header_len = u32::from_be_bytes(plain[..4].try_into().unwrap()) as usize;
    assert_eq!(&plain[4 + header_len..], b"for bob only");

    // A stranger's identity is refused with its own exit code.
    let eve = Home::new();
    eve.ok(&["id", "new", "--label", "eve"]);
    let key = eve.file("eve.key");
    eve.ok(&["id", "export", "eve", "--age", "-o", key.to_str().unwrap()]);
    let age = Command::new("age")
        .args(["-d", "-i"])
        .arg(&key)
        .arg(&sealed)
        .output()
        .unwrap();
    assert!(!age.status.success());
}

#[test]
fn bad_references_and_damaged_chunks_get_distinct_errors() {
    let home = Home::new();
    home.ok(&["id", "new", "--label", "alice"]);
    home.fails(&["item", "open", "mtos:item:aaaa"], 4, "malformed mtos URI");
    home.fails(
        &["item", "open", "mtos:id:aaaa"],
        4,
        "expected an mtos item URI",
    );
    home.fails(&["item", "open", "hello"], 4, "not an mtos URI");
    let reference = home.ok(&["item", "seal", "--text", "x"]).trim().to_owned();
    // A well-formed reference to nothing we hold.
    let mut other: Vec<char> = reference.chars().collect();
    let i = "mtos:item:".len() + 10;
    other[i] = if other[i] == 'a' { 'b' } else { 'a' };
    let other: String = other.into_iter().collect();
    home.fails(&["item", "open", &other], 5, "missing");
    home.fails(&["item", "seal"], 6, "nothing to seal");
    home.fails(
        &["item", "seal", "--text", "x", "--type", "Tweet"],
        4,
        "unknown type",
    );
    home.fails(
        &["item", "seal", "--text", "x", "--tag", "two words"],
        4,
        "invalid item",
    );
    home.fails(
        &["item", "seal", "--text", "x", "--to", "nobody"],
        4,
        "recipient \"nobody\"",
    );
    home.fails(
        &["item", "seal", "/nonexistent/file"],
        5,
        "/nonexistent/file",
    );
}

#[test]
fn every_item_command_explains_itself() {
    let home = Home::new();
    for args in [
        vec!["item", "--help"],
        vec!["item", "seal", "--help"],
        vec!["item", "open", "--help"],
        vec!["item", "inspect", "--help"],
    ] {
        assert!(home.ok(&args).contains("Example"), "{args:?}");
    }
}
