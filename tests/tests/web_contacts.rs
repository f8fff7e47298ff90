//! Contacts in the web screen, in a real headless Chromium on a loopback
//! testnet (`specs/identity.md` §9, `specs/transfer.md`): alice adds bob
//! from a photo of his QR code uploaded to the page, compares the safety
//! number and marks him verified; then bob makes a short code in his page
//! and alice enters it in hers: both pages end with each other verified
//! by the code. Screenshots in `target/tmp/web-screenshots/contacts/`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use mtos_tests::browser::{Chromium, click, eval, fill, wait_for};
use mtos_tests::screen::{CliScreen, ok, web_address};
use mtos_tests::{CliTestnet, mtos_at};

const WAIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_the_browser_contacts_come_from_a_qr_photo_and_a_short_code() {
    let root = tempfile::tempdir().unwrap();
    let tn = root.path().join("tn");
    let _net = CliTestnet::up(&tn, &["--per-layer", "1", "--payload-rate", "20"]);
    let homes: Vec<PathBuf> = ["alice", "bob"]
        .iter()
        .map(|n| root.path().join(n))
        .collect();
    for (home, name) in homes.iter().zip(["alice", "bob"]) {
        ok(mtos_at(
            home,
            &["net", "use", "--testnet", tn.to_str().unwrap()],
        ));
        ok(mtos_at(home, &["id", "new", "--label", name]));
    }
    let (alice, bob) = (&homes[0], &homes[1]);
    let png = root.path().join("bob.png");
    ok(mtos_at(
        bob,
        &["id", "show", "bob", "--png", png.to_str().unwrap()],
    ));
    let bob_uri = ok(mtos_at(bob, &["id", "show", "bob"]))
        .lines()
        .find_map(|l| l.strip_prefix("uri:").map(|u| u.trim().to_owned()))
        .unwrap();
    let _screens: Vec<CliScreen> = homes
        .iter()
        .map(|h| CliScreen::start(h, &["--web", "--poll-every", "86400"]))
        .collect();
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("web-screenshots")
        .join("contacts");
    let _ = std::fs::remove_dir_all(&shots);
    let chromium = Chromium::launch(&shots, 1100, 1400, false).await.unwrap();
    let result = flow(&chromium, alice, bob, &png, &bob_uri).await;
    if let Err(e) = &result {
        eprintln!("browser log:\n{}", chromium.logged());
        eprintln!("failed: {e}");
    }
    chromium.close().await;
    result.unwrap();
    // The page's changes are the keychain's: the command line sees them.
    let listed = ok(mtos_at(alice, &["contact", "show", "bob"]));
    assert!(listed.contains(&bob_uri), "{listed}");
    let listed = ok(mtos_at(bob, &["contact", "list"]));
    assert!(
        listed.contains("short code") && listed.contains("alice"),
        "{listed}"
    );
}

async fn flow(
    chromium: &Chromium,
    alice: &Path,
    bob: &Path,
    png: &Path,
    bob_uri: &str,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let a = chromium.page().await?;
    a.goto(web_address(alice)).await?;
    click(&a, "#nav-contacts").await?;
    wait_for(
        &a,
        "document.querySelector('#contact-list')?.textContent.includes('No contact')",
        WAIT,
    )
    .await?;

    // A photo of bob's QR code, chosen as a person's file picker would.
    let b64 = data_encoding::BASE64.encode(&std::fs::read(png)?);
    eval(
        &a,
        &format!(
            "(() => {{ const bytes = Uint8Array.from(atob('{b64}'), c => c.charCodeAt(0)); \
             const dt = new DataTransfer(); dt.items.add(new File([bytes], 'bob.png', {{ type: 'image/png' }})); \
             const input = document.querySelector('#qr-image'); input.files = dt.files; return input.files.length; }})()"
        ),
    )
    .await?;
    click(&a, "#qr-add").await?;
    wait_for(
        &a,
        "document.querySelector('section.contact h3')?.textContent.includes('not verified')",
        WAIT,
    )
    .await?;
    let uri = eval(&a, "document.querySelector('section.contact input').value").await?;
    assert_eq!(uri.as_str(), Some(bob_uri));
    let source = eval(
        &a,
        "document.querySelector('section.contact dl').textContent",
    )
    .await?;
    assert!(
        source.as_str().unwrap_or("").contains("QR code"),
        "{source}"
    );
    chromium.screenshot(&a, "alice-added-bob-from-qr").await?;
    // The safety number shown is the one bob's command line prints.
    let alice_uri = ok(mtos_at(alice, &["id", "show", "alice"]))
        .lines()
        .find_map(|l| l.strip_prefix("uri:").map(|u| u.trim().to_owned()))
        .unwrap_or_default();
    let bobs = ok(mtos_at(bob, &["id", "compare", "bob", &alice_uri]));
    let first_line = bobs.lines().nth(1).unwrap_or("").trim().to_owned();
    let shown = eval(
        &a,
        "document.querySelector('section.contact ul.safety').textContent",
    )
    .await?;
    assert!(
        shown.as_str().unwrap_or("").contains(&first_line),
        "{shown} vs {bobs}"
    );
    // Verifying names the fingerprint the page showed: another one (keys
    // that changed since), or none, is refused and changes nothing.
    for body in ["{ contact: id, fingerprint: '12345' }", "{ contact: id }"] {
        let status = eval(
            &a,
            &format!(
                "(() => {{ const id = document.querySelector('section.contact').dataset.id; \
                 return fetch('/view/contacts/change', {{ method: 'POST', headers: {{ 'Content-Type': 'application/json', \
                 'X-Mtos-Session': sessionStorage.getItem('mtos-session') }}, body: JSON.stringify({body}) }}).then(r => r.status); }})()"
            ),
        )
        .await?;
        assert_eq!(status.as_u64(), Some(409), "{body}");
    }
    assert!(
        ok(mtos_at(alice, &["contact", "list"]))
            .lines()
            .any(|l| l.ends_with("bob") && l.contains(" no ")),
        "still unverified"
    );
    click(&a, "section.contact button").await?;
    wait_for(&a, "document.querySelector('section.contact h3')?.textContent.includes(' verified') && !document.querySelector('section.contact h3').textContent.includes('not verified')", WAIT).await?;
    chromium.screenshot(&a, "alice-verified-bob").await?;

    // Bob makes a code in his page; alice enters it in hers.
    let b = chromium.page().await?;
    b.goto(web_address(bob)).await?;
    click(&b, "#nav-contacts").await?;
    wait_for(&b, "document.querySelector('#invite') !== null", WAIT).await?;
    click(&b, "#invite").await?;
    let code = wait_for(
        &b,
        "(document.querySelector('#invite-code')?.textContent || '').match(/^\\d+-[a-z]+-[a-z]+$/) ? document.querySelector('#invite-code').textContent : false",
        WAIT,
    )
    .await?;
    let code = code.as_str().unwrap_or("").to_owned();
    chromium.screenshot(&b, "bob-shows-a-code").await?;
    fill(&a, "#accept-code", &code).await?;
    click(&a, "#accept").await?;
    wait_for(
        &a,
        "document.querySelector('#exchange-note')?.dataset.kind === 'ok'",
        WAIT,
    )
    .await?;
    wait_for(
        &b,
        "document.querySelector('#exchange-note')?.dataset.kind === 'ok'",
        WAIT,
    )
    .await?;
    wait_for(&b, "[...document.querySelectorAll('section.contact')].some(s => s.textContent.includes('alice') && s.textContent.includes('short code'))", WAIT).await?;
    chromium.screenshot(&a, "alice-after-the-code").await?;
    // The page cannot move secret keys: pairing is refused over /api.
    for op in [
        "{\"op\":\"send_keys\",\"code\":\"1-a-b-c-d\",\"ids\":[]}",
        "{\"op\":\"pair_keys\",\"wait_secs\":null,\"new_passphrase\":null}",
    ] {
        let answer = eval(
            &a,
            &format!(
                "fetch('/api', {{ method: 'POST', headers: {{ 'Content-Type': 'application/json', 'X-Mtos-Session': sessionStorage.getItem('mtos-session') }}, \
                 body: JSON.stringify({{ api: 1, request: {op} }}) }}).then(r => r.text())"
            ),
        )
        .await?;
        let answer = answer.as_str().unwrap_or("").to_owned();
        assert!(
            answer.contains("bad_request") && answer.contains("secret keys"),
            "{answer}"
        );
    }
    chromium.screenshot(&b, "bob-after-the-code").await?;
    Ok(())
}
