//! A real headless Chromium (Debian's `chromium`, which `.ci/run`
//! installs) driven over the DevTools protocol, for the web screen's
//! tests: pages, clicks, typed text, waits on a condition, screenshots
//! kept as test artifacts, and what the browser logged (console,
//! exceptions, refused loads).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chromiumoxide::cdp::browser_protocol::log::EventEntryAdded;
use chromiumoxide::cdp::browser_protocol::page::CaptureScreenshotFormat;
use chromiumoxide::cdp::js_protocol::runtime::{EventConsoleApiCalled, EventExceptionThrown};
use chromiumoxide::handler::viewport::Viewport;
use chromiumoxide::page::ScreenshotParams;
use chromiumoxide::{Browser, BrowserConfig, Page};
use futures::StreamExt;

/// Where Debian puts it.
pub const CHROMIUM: &str = "/usr/bin/chromium";

type Error = Box<dyn std::error::Error + Send + Sync>;

/// One browser with its own fresh profile.
#[derive(Debug)]
pub struct Chromium {
    browser: Browser,
    handler: tokio::task::JoinHandle<()>,
    _profile: tempfile::TempDir,
    /// What the pages logged, in order.
    pub log: Arc<Mutex<Vec<String>>>,
    shots: PathBuf,
    shot: Mutex<u32>,
}

impl Chromium {
    /// Starts Chromium headless with a `width` x `height` viewport;
    /// screenshots go to `shots`. With `prediction` false, network
    /// prediction is off (Chromium's "Preload pages"), as the web screen
    /// asks of a browser that draws display components.
    pub async fn launch(
        shots: &Path,
        width: u32,
        height: u32,
        prediction: bool,
    ) -> Result<Self, Error> {
        if !Path::new(CHROMIUM).exists() {
            return Err(format!("{CHROMIUM} is missing: apt-get install chromium").into());
        }
        std::fs::create_dir_all(shots)?;
        let profile = tempfile::tempdir()?;
        // Network prediction on (Chromium's default) opens a connection
        // to where a refused navigation or a `preconnect` link points,
        // whatever the page's policy (`specs/item.md` §6).
        if !prediction {
            std::fs::create_dir_all(profile.path().join("Default"))?;
            std::fs::write(
                profile.path().join("Default/Preferences"),
                r#"{"net":{"network_prediction_options":2}}"#,
            )?;
        }
        let config = BrowserConfig::builder()
            .chrome_executable(CHROMIUM)
            .new_headless_mode()
            .no_sandbox()
            .user_data_dir(profile.path())
            .viewport(Viewport {
                width,
                height,
                ..Default::default()
            })
            .launch_timeout(Duration::from_secs(60))
            .request_timeout(Duration::from_secs(60))
            .args([
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
            ])
            .build()?;
        let (browser, mut handler) = Browser::launch(config).await?;
        let handler = tokio::spawn(async move {
            while let Some(event) = handler.next().await {
                if event.is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            browser,
            handler,
            _profile: profile,
            log: Arc::default(),
            shots: shots.to_owned(),
            shot: Mutex::new(0),
        })
    }

    /// A new tab, its console, exceptions and refused loads logged.
    pub async fn page(&self) -> Result<Page, Error> {
        let page = self.browser.new_page("about:blank").await?;
        let mut console = page.event_listener::<EventConsoleApiCalled>().await?;
        let mut exceptions = page.event_listener::<EventExceptionThrown>().await?;
        let mut entries = page.event_listener::<EventEntryAdded>().await?;
        let log = self.log.clone();
        tokio::spawn(async move {
            loop {
                let line = tokio::select! {
                    Some(e) = console.next() => format!(
                        "console.{:?}: {}",
                        e.r#type,
                        e.args
                            .iter()
                            .map(|a| a.value.as_ref().map(ToString::to_string).unwrap_or_else(|| format!("{:?}", a.description)))
                            .collect::<Vec<_>>()
                            .join(" ")
                    ),
                    Some(e) = exceptions.next() => format!(
                        "exception: {}",
                        e.exception_details
                            .exception
                            .as_ref()
                            .and_then(|o| o.description.clone())
                            .unwrap_or_else(|| e.exception_details.text.clone())
                    ),
                    Some(e) = entries.next() => format!("log.{:?}: {}", e.entry.source, e.entry.text),
                    else => break,
                };
                if let Ok(mut l) = log.lock() {
                    l.push(line);
                }
            }
        });
        Ok(page)
    }

    /// Saves a screenshot of `page` as `NN-name.png`; returns its path.
    pub async fn screenshot(&self, page: &Page, name: &str) -> Result<PathBuf, Error> {
        let n = {
            let mut n = self.shot.lock().map_err(|_| "poisoned")?;
            *n += 1;
            *n
        };
        let path = self.shots.join(format!("{n:02}-{name}.png"));
        page.save_screenshot(
            ScreenshotParams::builder()
                .format(CaptureScreenshotFormat::Png)
                .full_page(true)
                .build(),
            &path,
        )
        .await?;
        Ok(path)
    }

    /// What the pages logged so far, one line each.
    pub fn logged(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// Closes the browser and waits for its process.
    pub async fn close(mut self) {
        let _ = self.browser.close().await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.browser.wait()).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.handler).await;
    }
}

/// Evaluates `js` in `page` (an expression, or a function body when it
/// starts with `() =>`) and returns its JSON value.
pub async fn eval(page: &Page, js: &str) -> Result<serde_json::Value, Error> {
    let r = page.evaluate(js).await?;
    Ok(r.value().cloned().unwrap_or(serde_json::Value::Null))
}

/// Waits until `js` is truthy in `page`, for at most `within`; the error
/// names the condition.
pub async fn wait_for(page: &Page, js: &str, within: Duration) -> Result<serde_json::Value, Error> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(v) = eval(page, js).await {
            let truthy = match &v {
                serde_json::Value::Null => false,
                serde_json::Value::Bool(b) => *b,
                serde_json::Value::String(s) => !s.is_empty(),
                serde_json::Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
                _ => true,
            };
            if truthy {
                return Ok(v);
            }
        }
        if Instant::now() >= deadline {
            return Err(format!("waited {within:?} for {js}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Puts `text` in the field `selector` as typing would leave it (focus,
/// value, an `input` event), once the field is there (within 60 s). Done
/// in the page in one step: a node id taken first may name a node that a
/// re-render has replaced by the time it is used.
pub async fn fill(page: &Page, selector: &str, text: &str) -> Result<(), Error> {
    let js = format!(
        "(() => {{ const el = document.querySelector({sel}); if (!el) return false; el.focus(); \
         el.value = {text}; el.dispatchEvent(new Event('input', {{ bubbles: true }})); \
         el.dispatchEvent(new Event('change', {{ bubbles: true }})); return true; }})()",
        sel = serde_json::Value::from(selector),
        text = serde_json::Value::from(text),
    );
    wait_for(page, &js, Duration::from_secs(60)).await?;
    Ok(())
}

/// Clicks `selector` once it is there (within 60 s).
pub async fn click(page: &Page, selector: &str) -> Result<(), Error> {
    let js = format!(
        "(() => {{ const el = document.querySelector({sel}); if (!el) return false; el.focus(); el.click(); return true; }})()",
        sel = serde_json::Value::from(selector),
    );
    wait_for(page, &js, Duration::from_secs(60)).await?;
    Ok(())
}
