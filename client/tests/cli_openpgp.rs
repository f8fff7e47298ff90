//! mtos identities as OpenPGP keys, against Debian's GnuPG (`gpg`, which
//! `.ci/run` installs): gpg imports the certificate `mtos id export
//! --openpgp` writes (the same bytes every time) and verifies a file
//! signed by `mtos id sign`, and not the file changed; a key gpg made
//! (ed25519 primary, cv25519 subkey) imports into mtos with the same
//! OpenPGP fingerprint on re-export, and an item sealed to it opens; a
//! sign-only key and a passphrase-protected one import as they should.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::*;

/// A throwaway GnuPG home; its agent is stopped when dropped.
struct Gpg {
    dir: tempfile::TempDir,
}

impl Gpg {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        Self { dir }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("gpg")
            .env("GNUPGHOME", self.dir.path())
            .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("GnuPG is needed for this test (apt-get install gnupg)")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "gpg {args:?}: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The fingerprint of the only key whose user id holds `who`.
    fn fingerprint(&self, who: &str) -> String {
        let listed = self.ok(&["--with-colons", "--fingerprint", who]);
        listed
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .map(|l| l.trim_matches(':').to_owned())
            .unwrap_or_else(|| panic!("no fingerprint in {listed}"))
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.dir.path())
            .args(["--kill", "gpg-agent"])
            .output();
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn gnupg_imports_mtos_certificates_and_verifies_mtos_signatures() {
    let home = Home::new();
    let shown = home.ok(&["id", "new", "--label", "Alice Example"]);
    let openpgp = field(&shown, "openpgp");
    let cert = home.file("alice.asc");
    home.ok(&[
        "id",
        "export",
        "Alice Example",
        "--openpgp",
        "-o",
        path(&cert),
    ]);
    // The same bytes again: a stable certificate, a stable fingerprint.
    assert_eq!(
        home.ok(&["id", "export", "Alice Example", "--openpgp"]),
        std::fs::read_to_string(&cert).unwrap()
    );
    let gpg = Gpg::new();
    gpg.ok(&["--import", path(&cert)]);
    assert_eq!(gpg.fingerprint("Alice Example"), openpgp);
    let checked = gpg.run(&["--check-sigs", "Alice Example"]);
    assert!(
        stderr(&checked).contains("2 good signatures")
            || String::from_utf8_lossy(&checked.stdout).contains("sig!"),
        "{}",
        stderr(&checked)
    );

    let data = home.file("report.txt");
    std::fs::write(&data, b"the quarterly numbers\n").unwrap();
    let signed = home.ok(&["id", "sign", "Alice Example", path(&data)]);
    let sig = home.file("report.txt.asc");
    assert!(signed.contains(path(&sig)), "{signed}");
    let verified = gpg.run(&["--verify", path(&sig), path(&data)]);
    assert!(verified.status.success(), "{}", stderr(&verified));
    assert!(
        stderr(&verified).contains("Good signature from \"Alice Example\""),
        "{}",
        stderr(&verified)
    );
    // mtos verifies it too, by the identity and by the certificate.
    assert!(
        home.ok(&["id", "verify", path(&data), "--by", "Alice Example"])
            .contains("Good signature")
    );
    assert!(
        home.ok(&["id", "verify", path(&data), "--cert", path(&cert)])
            .contains("Good signature")
    );
    // Never overwritten.
    home.fails(
        &["id", "sign", "Alice Example", path(&data)],
        6,
        "refusing to overwrite",
    );

    // A changed file: gpg and mtos both say no.
    std::fs::write(&data, b"the quarterly numbers, improved\n").unwrap();
    let bad = gpg.run(&["--verify", path(&sig), path(&data)]);
    assert!(
        !bad.status.success() && stderr(&bad).contains("BAD signature"),
        "{}",
        stderr(&bad)
    );
    home.fails(
        &["id", "verify", path(&data), "--by", "Alice Example"],
        4,
        "BAD signature",
    );

    // A signature gpg made over the file, verified by mtos against gpg's
    // own key exported as a certificate.
    gpg.ok(&[
        "--quick-gen-key",
        "Gina <gina@example.org>",
        "ed25519",
        "default",
        "never",
    ]);
    let gina = home.file("gina.asc");
    std::fs::write(&gina, gpg.ok(&["--armor", "--export", "Gina"])).unwrap();
    gpg.ok(&[
        "--local-user",
        "Gina",
        "--armor",
        "--detach-sign",
        "--output",
        path(&home.file("g.asc")),
        path(&data),
    ]);
    let by_gpg = home.ok(&[
        "id",
        "verify",
        path(&data),
        path(&home.file("g.asc")),
        "--cert",
        path(&gina),
    ]);
    assert!(by_gpg.contains("Gina"), "{by_gpg}");
}

#[test]
fn a_key_gnupg_made_becomes_an_identity_with_the_same_fingerprint() {
    let gpg = Gpg::new();
    gpg.ok(&[
        "--quick-gen-key",
        "Carol <carol@example.org>",
        "ed25519",
        "default",
        "never",
    ]);
    let fpr = gpg.fingerprint("Carol");
    gpg.ok(&["--quick-add-key", &fpr, "cv25519", "encr", "never"]);
    let home = Home::new();
    let key = home.file("carol-secret.asc");
    std::fs::write(&key, gpg.ok(&["--armor", "--export-secret-keys", "Carol"])).unwrap();
    let imported = home.ok(&["id", "import", path(&key)]);
    assert!(
        imported.contains(&format!("imported the OpenPGP key {fpr}")),
        "{imported}"
    );
    assert!(!imported.contains("sign-only"), "{imported}");
    assert_eq!(field(&imported, "label"), "Carol <carol@example.org>");
    assert_eq!(field(&imported, "openpgp"), fpr);
    // Re-exported: gpg sees the same key.
    let cert = home.file("carol.asc");
    home.ok(&[
        "id",
        "export",
        "Carol <carol@example.org>",
        "--openpgp",
        "-o",
        path(&cert),
    ]);
    let other = Gpg::new();
    other.ok(&["--import", path(&cert)]);
    assert_eq!(other.fingerprint("Carol"), fpr);
    // Its cv25519 secret is its X25519 key: an item sealed to the
    // identity alone opens with it.
    let reference = home
        .ok(&[
            "item",
            "seal",
            "--text",
            "for carol",
            "--to",
            "Carol <carol@example.org>",
            "--anonymous",
        ])
        .trim()
        .to_owned();
    assert!(home.ok(&["item", "open", &reference]).contains("for carol"));
    // And gpg encrypts to the re-exported certificate with the same
    // subkey key material it made: mtos's subkey public equals gpg's.
    let mine = other.ok(&["--with-colons", "--list-keys", "Carol"]);
    let theirs = gpg.ok(&["--with-colons", "--list-keys", "Carol"]);
    let grip = |text: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix("grp:"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        grip(&mine),
        grip(&theirs),
        "keygrips (hashes of the public keys) differ"
    );

    // A sign-only key: imported, said in one line.
    gpg.ok(&[
        "--quick-gen-key",
        "Dave <dave@example.org>",
        "ed25519",
        "sign",
        "never",
    ]);
    let dave = home.file("dave-secret.asc");
    std::fs::write(&dave, gpg.ok(&["--armor", "--export-secret-keys", "Dave"])).unwrap();
    let imported = home.ok(&["id", "import", path(&dave), "--label", "dave"]);
    assert_eq!(
        imported.lines().filter(|l| l.contains("sign-only")).count(),
        1,
        "{imported}"
    );
    assert_eq!(field(&imported, "openpgp"), gpg.fingerprint("Dave"));

    // A passphrase-protected key: the wrong passphrase is exit 3, the
    // right one imports.
    let protected = Gpg::new();
    let made = Command::new("gpg")
        .env("GNUPGHOME", protected.dir.path())
        .args([
            "--batch",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "erin's pass",
        ])
        .args([
            "--quick-gen-key",
            "Erin <erin@example.org>",
            "ed25519",
            "default",
            "never",
        ])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", stderr(&made));
    let exported = Command::new("gpg")
        .env("GNUPGHOME", protected.dir.path())
        .args([
            "--batch",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "erin's pass",
        ])
        .args(["--armor", "--export-secret-keys", "Erin"])
        .output()
        .unwrap();
    let erin = home.file("erin-secret.asc");
    std::fs::write(&erin, &exported.stdout).unwrap();
    let run = |pass: &str| {
        Command::new(env!("CARGO_BIN_EXE_mtos"))
            .arg("--home")
            .arg(home.path())
            .args(["id", "import", path(&erin)])
            .env("MTOS_PASSPHRASE", PASSPHRASE)
            .env("MTOS_KDF_LOG_N", "4")
            .env("MTOS_OPENPGP_PASSPHRASE", pass)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let wrong = run("not erin's");
    assert_eq!(code(&wrong), 3, "{}", stderr(&wrong));
    let right = run("erin's pass");
    assert!(right.status.success(), "{}", stderr(&right));
    // Junk is refused as such.
    let junk = home.file("junk.asc");
    std::fs::write(
        &junk,
        "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nnot a key\n-----END PGP PRIVATE KEY BLOCK-----\n",
    )
    .unwrap();
    home.fails(
        &["id", "import", path(&junk)],
        4,
        "not an armored OpenPGP secret key",
    );
}
