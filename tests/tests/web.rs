//! The web screen in a real headless Chromium (`specs/screen.md` §8,
//! `specs/item.md` §6), on a loopback testnet:
//!
//! * two people, each with a screen: the first creates an identity in
//!   the page, publishes a text and a picture with tags through the
//!   form; the second follows the first's feed URI in the page and sees
//!   both appear in the timeline as its screen polls, and opens the
//!   picture. An item with a display component is drawn by it once its
//!   author is trusted, and by the built-in view before; the same data
//!   without a component gets the built-in view. Screenshots of each
//!   step are kept in `target/tmp/web-screenshots/`.
//! * the lock-down: requests without the token or cookie, with a foreign
//!   Host or Origin, or without the CSRF token are refused; a hostile
//!   component (fetch, XHR, beacons, WebSocket, cookies, the parent's
//!   storage, WebRTC direct, nested and in srcdoc, eval, workers,
//!   popups, forms, top and self navigation, meta refresh) and an SVG
//!   part with script reach neither a listener on another loopback
//!   address (TCP and UDP) nor the screen's access log.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mtos_tests::browser::{Chromium, click, eval, fill, wait_for};
use mtos_tests::screen::{CliScreen, ok, web_address};
use mtos_tests::{CliTestnet, mtos_at};

const PICTURE: &[u8] = include_bytes!("web/picture.png");
const WAIT: Duration = Duration::from_secs(120);

fn shots(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("web-screenshots")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A testnet and homes on it, their screens serving the web screen.
fn testnet(root: &Path, names: &[&str]) -> (CliTestnet, Vec<PathBuf>) {
    let tn = root.join("tn");
    let net = CliTestnet::up(
        &tn,
        &[
            "--per-layer",
            "1",
            "--payload-rate",
            "50",
            "--node-loop-rate",
            "0",
        ],
    );
    let homes: Vec<PathBuf> = names.iter().map(|n| root.join(n)).collect();
    for home in &homes {
        ok(mtos_at(
            home,
            &["net", "use", "--testnet", tn.to_str().unwrap()],
        ));
    }
    (net, homes)
}

/// Publishes `files` as `alice` through her screen; returns the reference.
fn publish(home: &Path, args: &[&str]) -> String {
    let out = ok(mtos_at(
        home,
        &[&["publish", "--as", "alice"], args].concat(),
    ));
    out.lines()
        .find(|l| l.starts_with("mtos:item:"))
        .unwrap_or_else(|| panic!("no reference in {out}"))
        .to_owned()
}

/// Publishes `NAME.html` and `NAME.js` in `dir` as a display component
/// (`specs/item.md` §6); returns its reference.
fn publish_component(home: &Path, dir: &Path, name: &str) -> String {
    let markup = dir.join(format!("{name}.html"));
    let code = dir.join(format!("{name}.js"));
    publish(
        home,
        &[
            markup.to_str().unwrap(),
            code.to_str().unwrap(),
            "--type",
            "WebPage",
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_the_browser_one_person_publishes_and_another_follows_and_sees_it() {
    let root = tempfile::tempdir().unwrap();
    let (_net, homes) = testnet(root.path(), &["alice", "bob"]);
    let (alice, bob) = (&homes[0], &homes[1]);
    // Alice has no keychain yet: she makes one in the page. Bob's screen
    // polls every 2 s, so entries come as a person would see them.
    let _alice_screen = CliScreen::start(alice, &["--web", "--poll-every", "86400"]);
    let _bob_screen = CliScreen::start(bob, &["--web", "--poll-every", "2"]);
    let chromium = Chromium::launch(&shots("follow"), 1100, 900, false)
        .await
        .unwrap();
    let result = follow_flow(&chromium, alice, bob).await;
    if let Err(e) = &result {
        eprintln!("browser log:\n{}", chromium.logged());
        eprintln!("failed: {e}");
    }
    chromium.close().await;
    result.unwrap();
}

async fn follow_flow(
    chromium: &Chromium,
    alice: &Path,
    bob: &Path,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let a = chromium.page().await?;
    a.goto(web_address(alice)).await?;
    // The token was traded for the cookie: the address bar holds none.
    let url = eval(&a, "location.href").await?;
    assert!(!url.as_str().unwrap_or("").contains("token"), "{url}");
    // The status bar says when the screen's next bulk window comes (the
    // testnet's classes have windows; `client.md` §4.1).
    wait_for(
        &a,
        r"/^(next bulk window in|bulk window now, ends in) [0-9]+ (s|min|h)$/.test(document.querySelector('#windows')?.textContent ?? '')",
        WAIT,
    )
    .await?;
    click(&a, "#nav-identities").await?;
    wait_for(&a, "document.querySelector('#new-pass') !== null", WAIT).await?;
    fill(&a, "#new-label", "alice").await?;
    fill(&a, "#new-pass", "alice's long passphrase").await?;
    fill(&a, "#new-pass2", "alice's long passphrase").await?;
    click(&a, "#new-identity").await?;
    wait_for(
        &a,
        "document.querySelector('section.identity h3')?.textContent.startsWith('alice')",
        WAIT,
    )
    .await?;
    wait_for(
        &a,
        "document.querySelector('img.qr')?.naturalWidth > 0",
        WAIT,
    )
    .await?;
    chromium.screenshot(&a, "alice-identity").await?;
    let feed = eval(
        &a,
        "document.querySelector('input[aria-label^=\"feed URI\"]').value",
    )
    .await?;
    let feed = feed.as_str().unwrap_or("").to_owned();
    assert!(feed.starts_with("mtos:feed:"), "{feed}");
    // The keychain the page made opens with the passphrase typed there.
    let listed = std::process::Command::new(mtos_tests::mtos_binary())
        .arg("--home")
        .arg(alice)
        .args(["id", "list"])
        .env("MTOS_PASSPHRASE", "alice's long passphrase")
        .output()?;
    assert!(
        listed.status.success() && String::from_utf8_lossy(&listed.stdout).contains("alice"),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );

    // A text, with tags.
    click(&a, "#nav-publish").await?;
    wait_for(
        &a,
        "document.querySelector('#pub-as option')?.value.length > 0",
        WAIT,
    )
    .await?;
    fill(&a, "#pub-text", "hello from the browser").await?;
    fill(&a, "#pub-tags", "hello, web").await?;
    click(&a, "mtos-publish form button[type=submit]").await?;
    wait_for(
        &a,
        "document.querySelector('#published-ref')?.value.startsWith('mtos:item:')",
        WAIT,
    )
    .await?;
    chromium.screenshot(&a, "alice-published-text").await?;
    // A picture, with a tag: the file set as a person's file picker would.
    let b64 = data_encoding::BASE64.encode(PICTURE);
    eval(
        &a,
        &format!(
            "(() => {{ const bytes = Uint8Array.from(atob('{b64}'), c => c.charCodeAt(0)); \
             const dt = new DataTransfer(); dt.items.add(new File([bytes], 'picture.png', {{ type: 'image/png' }})); \
             const input = document.querySelector('#pub-files'); input.files = dt.files; return input.files.length; }})()"
        ),
    )
    .await?;
    fill(&a, "#pub-tags", "picture").await?;
    eval(
        &a,
        "document.querySelector('#published-ref').id = 'first-ref'",
    )
    .await?;
    click(&a, "mtos-publish form button[type=submit]").await?;
    wait_for(
        &a,
        "document.querySelector('#published-ref')?.value.startsWith('mtos:item:')",
        WAIT,
    )
    .await?;
    chromium.screenshot(&a, "alice-published-picture").await?;

    // Bob follows her feed in his page; both entries come as his screen
    // polls, the picture's item fetched.
    let b = chromium.page().await?;
    b.goto(web_address(bob)).await?;
    click(&b, "#nav-feeds").await?;
    fill(&b, "#follow-uri", &feed).await?;
    fill(&b, "#follow-label", "alice").await?;
    click(&b, "#follow").await?;
    wait_for(
        &b,
        "document.querySelector('mtos-feeds .note')?.textContent.startsWith('following \"')",
        WAIT,
    )
    .await?;
    click(&b, "#nav-timeline").await?;
    wait_for(
        &b,
        "document.querySelectorAll('mtos-timeline li.entry').length >= 2 && \
         [...document.querySelectorAll('mtos-timeline img.thumb')].some(i => i.naturalWidth > 0) && \
         document.querySelector('mtos-timeline').textContent.includes('hello from the browser')",
        WAIT,
    )
    .await?;
    let text = eval(&b, "document.querySelector('mtos-timeline').textContent").await?;
    let text = text.as_str().unwrap_or("");
    for needle in [
        "hello from the browser",
        "hello",
        "web",
        "picture",
        "ImageObject",
    ] {
        assert!(
            text.contains(needle),
            "{needle} missing from the timeline: {text}"
        );
    }
    chromium.screenshot(&b, "bob-timeline").await?;
    eval(
        &b,
        "[...document.querySelectorAll('mtos-timeline li.entry')].find(li => li.querySelector('img.thumb')).querySelector('button.open').click()",
    )
    .await?;
    wait_for(
        &b,
        "document.querySelector('mtos-item-view img.media')?.naturalWidth === 48",
        WAIT,
    )
    .await?;
    let view = eval(&b, "document.querySelector('mtos-item-view').textContent").await?;
    assert!(view.as_str().unwrap_or("").contains("verified"), "{view}");
    chromium.screenshot(&b, "bob-picture").await?;

    // A display component and data drawn by it, published by alice as
    // feed entries; and the same data without a component.
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/web");
    let component = publish_component(alice, &here, "bars");
    let with = publish(alice, &["--text", "3 9 4 12 7", "--component", &component]);
    let without = publish(alice, &["--text", "3 9 4 12 7"]);
    for (reference, shot) in [(&with, "bob-component-untrusted")] {
        open_item(&b, reference).await?;
        wait_for(
            &b,
            "document.querySelector('mtos-item-view .trust button') !== null",
            WAIT,
        )
        .await?;
        // Not trusted yet: the built-in view, and the choice.
        let shown = eval(
            &b,
            "document.querySelector('mtos-item-view .text')?.textContent",
        )
        .await?;
        assert_eq!(shown.as_str(), Some("3 9 4 12 7"));
        chromium.screenshot(&b, shot).await?;
    }
    click(&b, "mtos-item-view .trust button").await?;
    // Bob's screen fetches alice's entries, the display among them, as
    // it polls; if it has not got the display yet (a loaded machine),
    // the page offers to fetch it, and bob clicks as a person would.
    const DRAWN: &str =
        "document.querySelector('mtos-item-view iframe.component')?.style.height === '220px'";
    const OFFERED: &str = "[...document.querySelectorAll('mtos-item-view .trust button')]\
         .find((b) => b.textContent === 'Fetch its display')";
    wait_for(&b, &format!("({DRAWN}) || !!({OFFERED})"), WAIT).await?;
    if eval(&b, &format!("!!({OFFERED})")).await?.as_bool() == Some(true) {
        eval(&b, &format!("({OFFERED}).click()")).await?;
    }
    // Drawn by the component: it set its frame's height over its channel.
    if let Err(e) = wait_for(&b, DRAWN, WAIT).await {
        // What bob sees, for the next one who reads a failure here.
        let seen = eval(&b, "document.querySelector('mtos-item-view')?.innerText").await?;
        let frame = eval(
            &b,
            "document.querySelector('mtos-item-view iframe.component')?.outerHTML",
        )
        .await?;
        return Err(format!("{e}; the item view shows {seen}; its frame: {frame}").into());
    }
    let sandbox = eval(
        &b,
        "document.querySelector('iframe.component').getAttribute('sandbox')",
    )
    .await?;
    assert_eq!(sandbox.as_str(), Some("allow-scripts"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    chromium.screenshot(&b, "bob-component").await?;
    open_item(&b, &without).await?;
    wait_for(
        &b,
        "document.querySelector('mtos-item-view .text')?.textContent === '3 9 4 12 7'",
        WAIT,
    )
    .await?;
    let frames = eval(
        &b,
        "document.querySelectorAll('mtos-item-view iframe').length",
    )
    .await?;
    assert_eq!(frames.as_u64(), Some(0), "no component: no frame");
    chromium.screenshot(&b, "bob-builtin").await?;

    // Every field of every section is labelled, and the page holds at a
    // phone's width in the dark.
    for section in ["timeline", "publish", "identities", "feeds", "open"] {
        click(&b, &format!("#nav-{section}")).await?;
        wait_for(
            &b,
            &format!("document.querySelector('mtos-{section}') !== null"),
            WAIT,
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let unlabelled = eval(
            &b,
            "[...document.querySelectorAll('main input, main select, main textarea')]\
             .filter(e => e.type !== 'hidden' && !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))\
             .map(e => e.outerHTML)",
        )
        .await?;
        assert_eq!(
            unlabelled,
            serde_json::json!([]),
            "unlabelled fields in {section}"
        );
    }
    b.execute(
        chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams::builder()
            .width(390)
            .height(844)
            .device_scale_factor(1.0)
            .mobile(true)
            .build()?,
    )
    .await?;
    b.emulate_media_features(vec![
        chromiumoxide::cdp::browser_protocol::emulation::MediaFeature {
            name: "prefers-color-scheme".into(),
            value: "dark".into(),
        },
    ])
    .await?;
    click(&b, "#nav-timeline").await?;
    wait_for(
        &b,
        "document.querySelectorAll('mtos-timeline li.entry').length >= 4",
        WAIT,
    )
    .await?;
    let fits = eval(
        &b,
        "document.documentElement.scrollWidth <= window.innerWidth",
    )
    .await?;
    assert_eq!(
        fits,
        serde_json::json!(true),
        "the timeline scrolls sideways at a phone's width"
    );
    let dark = eval(&b, "getComputedStyle(document.body).backgroundColor").await?;
    assert_eq!(dark.as_str(), Some("rgb(22, 22, 22)"), "dark scheme");
    chromium.screenshot(&b, "bob-phone-dark").await?;
    Ok(())
}

async fn open_item(
    page: &chromiumoxide::Page,
    reference: &str,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    click(page, "#nav-open").await?;
    fill(page, "#open-ref", reference).await?;
    click(page, "mtos-open button[type=submit]").await?;
    Ok(())
}

/// One raw HTTP/1.1 request; returns the status, the headers (lowercase
/// names) and the body.
fn http(port: u16, head: &str, body: &[u8]) -> (u16, Vec<(String, String)>, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let request = format!(
        "{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(request.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// What reached 127.0.0.2: every TCP connection (with the first line it
/// sent, if any) and every UDP datagram.
#[derive(Clone, Default)]
struct Witness {
    seen: Arc<Mutex<Vec<String>>>,
}

impl Witness {
    fn listen() -> (Self, u16, u16) {
        let w = Self::default();
        let tcp = TcpListener::bind("127.0.0.2:0").unwrap();
        let udp = UdpSocket::bind("127.0.0.2:0").unwrap();
        let (tp, up) = (
            tcp.local_addr().unwrap().port(),
            udp.local_addr().unwrap().port(),
        );
        let seen = w.seen.clone();
        std::thread::spawn(move || {
            for s in tcp.incoming().flatten() {
                let seen = seen.clone();
                std::thread::spawn(move || {
                    let mut s = s;
                    s.set_read_timeout(Some(Duration::from_secs(2))).ok();
                    let mut buf = [0u8; 512];
                    let n = s.read(&mut buf).unwrap_or(0);
                    let first = String::from_utf8_lossy(&buf[..n])
                        .lines()
                        .next()
                        .unwrap_or("")
                        .to_owned();
                    seen.lock().unwrap().push(format!("tcp: {first}"));
                    let _ = s.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
                });
            }
        });
        let seen = w.seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while let Ok((n, _)) = udp.recv_from(&mut buf) {
                seen.lock().unwrap().push(format!("udp: {n} bytes"));
            }
        });
        (w, tp, up)
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_screen_admits_only_its_page_and_a_hostile_component_reaches_nothing() {
    let root = tempfile::tempdir().unwrap();
    let (_net, homes) = testnet(root.path(), &["alice"]);
    let alice = &homes[0];
    ok(mtos_at(alice, &["id", "new", "--label", "alice"]));
    let _screen = CliScreen::start(alice, &["--web", "--poll-every", "86400"]);
    let address = web_address(alice);
    let (base, token) = address.split_once("/#token=").unwrap();
    let port: u16 = base.rsplit(':').next().unwrap().parse().unwrap();
    let host = format!("Host: 127.0.0.1:{port}");
    let origin = format!("Origin: http://127.0.0.1:{port}");

    // The page and its code hold no secret and open to anyone; nothing
    // else does without a session.
    let (s, headers, page) = http(port, &format!("GET / HTTP/1.1\r\n{host}"), b"");
    assert_eq!(s, 200);
    assert!(!page.contains(token), "the page holds the token");
    let csp = header(&headers, "content-security-policy")
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(
        csp.contains(&format!("frame-src http://127.0.0.1:{port}/frame/")),
        "{csp}"
    );
    let (s, _, _) = http(
        port,
        &format!("GET /view/identities HTTP/1.1\r\n{host}"),
        b"",
    );
    assert_eq!(s, 403, "no session");
    // Another name for 127.0.0.1 (DNS rebinding): refused, token or not.
    let session_with = |host: &str, extra: &str, token: &str| {
        http(
            port,
            &format!("POST /session HTTP/1.1\r\n{host}\r\nX-Mtos-Token: {token}{extra}"),
            b"",
        )
    };
    assert_eq!(
        session_with(
            &format!("Host: attacker.example:{port}"),
            &format!("\r\n{origin}"),
            token
        )
        .0,
        421,
        "foreign Host"
    );
    assert_eq!(session_with(&host, "", token).0, 403, "no Origin");
    assert_eq!(
        session_with(&host, "\r\nOrigin: http://attacker.example", token).0,
        403,
        "foreign Origin"
    );
    assert_eq!(
        session_with(&host, &format!("\r\n{origin}"), "wrong").0,
        403,
        "wrong token"
    );
    // The token buys a session, once.
    let (s, headers, body) = session_with(&host, &format!("\r\n{origin}"), token);
    assert_eq!(s, 200, "{body}");
    assert!(
        header(&headers, "set-cookie").is_none(),
        "no cookie: a host's cookies go to all its ports"
    );
    let session: serde_json::Value = serde_json::from_str(&body).unwrap();
    let session = session["session"].as_str().unwrap().to_owned();
    assert_eq!(
        session_with(&host, &format!("\r\n{origin}"), token).0,
        403,
        "a token is good once"
    );
    let with_session = format!("X-Mtos-Session: {session}");
    let (s, _, _) = http(
        port,
        &format!(
            "GET /view/identities HTTP/1.1\r\nHost: attacker.example:{port}\r\n{with_session}"
        ),
        b"",
    );
    assert_eq!(s, 421, "foreign Host with the session");
    let (s, _, _) = http(
        port,
        &format!(
            "GET /view/identities HTTP/1.1\r\n{host}\r\n{with_session}\r\nSec-Fetch-Site: cross-site"
        ),
        b"",
    );
    assert_eq!(s, 403, "a cross-site read");
    let (s, _, body) = http(
        port,
        &format!("GET /view/identities HTTP/1.1\r\n{host}\r\n{with_session}"),
        b"",
    );
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("\"alice\""), "{body}");
    let status = br#"{"api":1,"request":{"op":"status"}}"#;
    let post = |extra: &str| {
        http(
            port,
            &format!("POST /api HTTP/1.1\r\n{host}\r\nContent-Type: application/json{extra}"),
            status,
        )
    };
    assert_eq!(post(&format!("\r\n{origin}")).0, 403, "no session");
    assert_eq!(
        post(&format!("\r\n{origin}\r\nX-Mtos-Session: wrong")).0,
        403,
        "a wrong session"
    );
    assert_eq!(
        post(&format!(
            "\r\nOrigin: http://attacker.example\r\n{with_session}"
        ))
        .0,
        403,
        "foreign Origin"
    );
    assert_eq!(post(&format!("\r\n{with_session}")).0, 403, "no Origin");
    let (s, _, body) = post(&format!("\r\n{origin}\r\n{with_session}"));
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("\"reply\":\"status\""), "{body}");
    // The page cannot stop the screen, mint addresses, nor publish a file
    // by path.
    let api = |request: &[u8]| {
        http(
            port,
            &format!("POST /api HTTP/1.1\r\n{host}\r\n{origin}\r\n{with_session}"),
            request,
        )
        .2
    };
    for op in ["stop", "web_address"] {
        let body = api(format!(r#"{{"api":1,"request":{{"op":"{op}"}}}}"#).as_bytes());
        assert!(body.contains("bad_request"), "{op}: {body}");
    }
    let body = api(br#"{"api":1,"request":{"op":"publish","seal":{"files":["/etc/passwd"],"anonymous":true}}}"#);
    assert!(
        body.contains("bad_input") && body.contains("uploads"),
        "{body}"
    );
    // Nor a page to import, or its oEmbed response, by path: the import
    // would publish what it read of any file the screen can.
    for field in ["import", "import_oembed"] {
        let body = api(
            format!(
                r#"{{"api":1,"request":{{"op":"publish","seal":{{"{field}":"/etc/hostname","anonymous":true}}}}}}"#
            )
            .as_bytes(),
        );
        assert!(
            body.contains("bad_input") && body.contains("uploads"),
            "{field}: {body}"
        );
    }
    let log = std::fs::read_to_string(alice.join("screen-web.log")).unwrap();
    assert!(
        !log.contains(token) && !log.contains(&session),
        "secrets in the access log:\n{log}"
    );

    // A hostile component, by an author the person trusts (herself), and
    // an SVG part with script.
    let (witness, tcp, udp) = Witness::listen();
    let dir = root.path().join("hostile");
    std::fs::create_dir_all(&dir).unwrap();
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/web");
    for name in ["hostile.html", "hostile.js"] {
        let text = std::fs::read_to_string(here.join(name))
            .unwrap()
            .replace("LISTEN", &tcp.to_string())
            .replace("UDP", &udp.to_string());
        std::fs::write(dir.join(name), text).unwrap();
    }
    let svg = dir.join("picture.svg");
    std::fs::write(
        &svg,
        format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"100\" height=\"100\"><script>fetch('http://127.0.0.2:{tcp}/svg')</script><rect width=\"100\" height=\"100\" fill=\"red\"/></svg>"),
    )
    .unwrap();
    let component = publish_component(alice, &dir, "hostile");
    let item = publish(alice, &["--text", "1 2 3", "--component", &component]);
    let with_svg = publish(alice, &["--text", "an SVG", svg.to_str().unwrap()]);

    // A browser with network prediction on (Chromium's default) is told
    // why, and draws no component.
    let predicting = Chromium::launch(&shots("predicting"), 1000, 800, true)
        .await
        .unwrap();
    let refused = refused_where_the_browser_predicts(&predicting, &web_address(alice), &item).await;
    let logged = predicting.logged();
    predicting.close().await;
    if let Err(e) = refused {
        panic!("{e}\nbrowser log:\n{logged}");
    }
    let chromium = Chromium::launch(&shots("hostile"), 1000, 800, false)
        .await
        .unwrap();
    let result = hostile_flow(
        &chromium,
        &web_address(alice),
        &item,
        &with_svg,
        (tcp, udp),
        &witness,
    )
    .await;
    let logged = chromium.logged();
    chromium.close().await;
    // The component and the SVG reached nothing (the controls, after
    // them, did).
    let escaped = match result {
        Ok(seen) => seen,
        Err(e) => panic!("{e}\nbrowser log:\n{logged}"),
    };
    assert!(
        escaped.is_empty(),
        "reached the listener: {escaped:?}\nbrowser log:\n{logged}"
    );
    let log = std::fs::read_to_string(alice.join("screen-web.log")).unwrap();
    assert!(
        !log.contains("hostile"),
        "the component reached the screen:\n{log}"
    );
}

/// Opens the hostile component's item in a browser that predicts: the
/// built-in view and the reason, no frame, before trust is even asked.
async fn refused_where_the_browser_predicts(
    chromium: &Chromium,
    address: &str,
    item: &str,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let page = chromium.page().await?;
    page.goto(address).await?;
    open_item(&page, item).await?;
    wait_for(
        &page,
        "document.querySelector('mtos-item-view .prediction') !== null",
        WAIT,
    )
    .await?;
    let frames = eval(&page, "document.querySelectorAll('iframe').length").await?;
    assert_eq!(frames.as_u64(), Some(0), "a frame was drawn");
    chromium.screenshot(&page, "display-refused").await?;
    Ok(())
}

/// Runs the hostile component and the SVG in the browser; returns what
/// the witness saw from them, then checks that a tab of the person's own
/// does reach it over TCP and UDP (so a silent witness means something).
async fn hostile_flow(
    chromium: &Chromium,
    address: &str,
    item: &str,
    with_svg: &str,
    (tcp, udp): (u16, u16),
    witness: &Witness,
) -> Result<Vec<String>, Box<dyn std::error::Error + Send + Sync>> {
    let page = chromium.page().await?;
    page.goto(address).await?;
    open_item(&page, item).await?;
    wait_for(
        &page,
        "document.querySelector('mtos-item-view .trust button') !== null",
        WAIT,
    )
    .await?;
    click(&page, "mtos-item-view .trust button").await?;
    // It ran to its end (its height came over the channel), then tried
    // to navigate away.
    wait_for(
        &page,
        "document.querySelector('iframe.component')?.style.height === '777px'",
        WAIT,
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    chromium.screenshot(&page, "hostile-component").await?;
    // The SVG part: offered as a file, and opened in a tab of its own it
    // is downloaded, not run.
    open_item(&page, with_svg).await?;
    let href = wait_for(
        &page,
        "document.querySelector('mtos-item-view a[download]')?.href",
        WAIT,
    )
    .await?;
    let svg_page = chromium.page().await?;
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        svg_page.goto(href.as_str().unwrap_or("")),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen = witness.seen();
    // The controls: a page of the person's own reaches the listener, and
    // its WebRTC reaches the UDP port.
    let control = chromium.page().await?;
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        control.goto(format!("http://127.0.0.2:{tcp}/control")),
    )
    .await;
    eval(
        &control,
        &format!(
            "(() => {{ const pc = new RTCPeerConnection({{ iceServers: [{{ urls: 'stun:127.0.0.2:{udp}' }}] }}); \
             pc.createDataChannel('x'); pc.createOffer().then(o => pc.setLocalDescription(o)); return true; }})()"
        ),
    )
    .await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let now = witness.seen();
        if now.iter().any(|s| s.contains("GET /control "))
            && now.iter().any(|s| s.starts_with("udp:"))
        {
            break;
        }
        if std::time::Instant::now() >= deadline {
            return Err(format!("the controls never reached the witness: {now:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(seen)
}
