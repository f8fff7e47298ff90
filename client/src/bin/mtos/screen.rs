//! `mtos screen`: start, stop and look at the home's screen, the
//! always-on local client that holds the one mixnet session
//! (`specs/screen.md`).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use clap::Subcommand;
use mtos_client::screen::api::{Reply, Request, Status};
use mtos_client::screen::{self, ScreenClient, ScreenLock, ScreenOptions};
use mtos_client::{ClientError, Home, passphrase};
use mtos_crypto::{ExposeSecret, SecretString};

use crate::common::date;
use crate::via::{no_screen, runtime};

/// How long `mtos screen start` waits for the screen to answer.
const START_WAIT: Duration = Duration::from_secs(120);
/// The seed of the cover schedule, for tests only.
pub const SEED_ENV: &str = "MTOS_SCHEDULE_SEED";

#[derive(Debug, Subcommand)]
pub enum ScreenCommand {
    /// Start the screen of this home: it unlocks the keychain once and
    /// keeps one mixnet session, with cover traffic, until stopped.
    ///
    /// In the background (its log in the home's screen.log) unless
    /// --foreground. Refuses (exit 6) while a screen runs for the home.
    Start {
        /// Run in this process until stopped (for systemd and tests).
        #[arg(long)]
        foreground: bool,
        /// Seconds between the scheduled poll rounds of followed feeds.
        #[arg(long, value_name = "SECS", default_value_t = screen::DEFAULT_POLL_EVERY.as_secs())]
        poll_every: u64,
        /// Read the passphrase from this file (a systemd credential).
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
        /// Read the passphrase from standard input (how `start` hands it
        /// to the background process).
        #[arg(long, hide = true)]
        passphrase_stdin: bool,
        /// Also serve the web screen on 127.0.0.1 (`mtos screen web`
        /// prints an address to open, with a one-time token).
        #[arg(long)]
        web: bool,
        /// The web screen's port (0: a free one).
        #[arg(long, value_name = "PORT", default_value_t = 0, requires = "web")]
        web_port: u16,
        /// Never take bulk windows: the screen sends at the idle rates
        /// only, and large transfers take their time (a window is a
        /// stretch of the day, the same each cycle, in which the screen
        /// sends faster, busy or not).
        #[arg(long)]
        no_bulk_windows: bool,
    },
    /// A new address of the web screen to open in a browser on this
    /// machine, good once, for ten minutes (`mtos screen start --web`).
    Web,
    /// Stop the screen (queued work stays queued for its next start).
    Stop,
    /// What the screen is doing: gateway, session, packets, work, feeds, store.
    Status {
        /// As JSON (the API's status object).
        #[arg(long)]
        json: bool,
    },
    /// The queued and recent work.
    Jobs,
    /// Follow a queued job until it ends.
    Attach {
        /// The job's number (`mtos screen jobs`).
        job: u64,
    },
    /// Cancel a queued job (a publish keeps the chunks stored so far).
    Cancel {
        /// The job's number.
        job: u64,
    },
    /// Receive identities from another screen (a new device): prints a code
    /// for the other screen's `mtos screen send-keys`.
    ///
    /// The secret keys, their feeds' positions and the contacts cross the
    /// mixnet sealed under the code (four words: a guess has one chance in
    /// 10^13). A home without a keychain gets one (its passphrase asked, or
    /// MTOS_PASSPHRASE). Both screens may then publish as the same
    /// identity: a feed slot one has written is skipped by the other.
    ///
    /// Example: mtos screen pair
    Pair {
        /// Seconds the code stays open (30 to 3600).
        #[arg(long, default_value_t = 300)]
        wait: u64,
    },
    /// Send identities and contacts to the screen that showed CODE (`mtos
    /// screen pair` there).
    ///
    /// Example: mtos screen send-keys alice 12-abandon-ability-able-zoo
    SendKeys {
        /// The identities to send (labels or id prefixes; none: all), then
        /// the code (none: asked for).
        #[arg(value_name = "ID... CODE")]
        args: Vec<String>,
    },
    /// Start a bulk window now instead of waiting for the screen's next
    /// one: the screen moves to the cohort whose window is running and
    /// sends at the bulk rates for the rest of it, then in that cohort's
    /// windows.
    ///
    /// This leaks: the gateway and anyone watching the link see the
    /// screen change its windows the moment it has work, which scheduled
    /// windows hide (specs/client.md section 4.1).
    WindowNow,
    /// Print a systemd user unit that runs the screen.
    ///
    /// Install: mtos screen unit > ~/.config/systemd/user/mtos-screen.service
    /// && systemctl --user enable --now mtos-screen
    Unit,
}

pub fn run(home: &Home, cmd: ScreenCommand) -> Result<String, ClientError> {
    match cmd {
        ScreenCommand::Start {
            foreground,
            poll_every,
            passphrase_file,
            passphrase_stdin,
            web,
            web_port,
            no_bulk_windows,
        } => {
            let options = ScreenOptions {
                poll_every: Duration::from_secs(poll_every.max(1)),
                schedule_seed: seed_from_env()?,
                web: web.then_some(web_port),
                bulk_windows: !no_bulk_windows,
            };
            if foreground {
                let source = match (passphrase_stdin, passphrase_file) {
                    (true, _) => Source::Stdin,
                    (false, Some(f)) => Source::File(f),
                    (false, None) => Source::Ask,
                };
                foreground_run(home, options, source)
            } else {
                let started = start(home, poll_every, options.web, options.bulk_windows)?;
                if options.web.is_some() {
                    Ok(format!("{started}web screen: {}\n", web_address(home)?))
                } else {
                    Ok(started)
                }
            }
        }
        ScreenCommand::Web => Ok(format!("{}\n", web_address(home)?)),
        ScreenCommand::Stop => stop(home),
        ScreenCommand::WindowNow => match call(home, Request::WindowNow)? {
            Reply::Done => Ok(
                "a bulk window starts now (this showed your gateway and anyone watching the link that you have work now)\n"
                    .into(),
            ),
            _ => Err(unexpected()),
        },
        ScreenCommand::Status { json } => {
            let status = status(home)?;
            if json {
                serde_json::to_string_pretty(&status)
                    .map(|s| s + "\n")
                    .map_err(|e| ClientError::Invalid(e.to_string()))
            } else {
                Ok(describe(home, &status))
            }
        }
        ScreenCommand::Jobs => {
            let reply = call(home, Request::Jobs)?;
            let Reply::Jobs { jobs } = reply else {
                return Err(unexpected());
            };
            Ok(jobs_table(&jobs))
        }
        ScreenCommand::Attach { job } => crate::via::attach(home, job),
        ScreenCommand::Cancel { job } => {
            call(home, Request::Cancel { job })?;
            Ok(format!("job {job} cancelled\n"))
        }
        ScreenCommand::Unit => Ok(unit(home)),
        ScreenCommand::Pair { wait } => {
            let new = if home.keychain().exists() {
                None
            } else {
                eprintln!(
                    "this home has no keychain: choose the passphrase that will lock the keys received"
                );
                Some(mtos_client::passphrase::new_keychain()?)
            };
            crate::via::pair(home, wait, new)
        }
        ScreenCommand::SendKeys { args } => {
            // The code starts at the first argument that starts with its
            // channel number.
            let at = args
                .iter()
                .position(|a| a.starts_with(|c: char| c.is_ascii_digit()))
                .unwrap_or(args.len());
            let (ids, code) = args.split_at(at);
            let code = if code.is_empty() {
                crate::contact::ask_code()?
            } else {
                code.join(" ")
            };
            crate::via::send_keys(home, code, ids.to_vec())
        }
    }
}

/// A new address of the running web screen, with a one-time token.
fn web_address(home: &Home) -> Result<String, ClientError> {
    match call(home, Request::WebAddress)? {
        Reply::WebAddress { address } => Ok(address),
        _ => Err(unexpected()),
    }
}

fn unexpected() -> ClientError {
    ClientError::NoScreen("the screen gave an answer of another kind".into())
}

/// One request to the running screen, its events ignored.
fn call(home: &Home, request: Request) -> Result<Reply, ClientError> {
    runtime()?.block_on(async {
        let client = ScreenClient::find(home)
            .await
            .ok_or_else(|| no_screen(home))?;
        client.call(request, |_| {}).await
    })
}

fn status(home: &Home) -> Result<Status, ClientError> {
    match call(home, Request::Status)? {
        Reply::Status(s) => Ok(*s),
        _ => Err(unexpected()),
    }
}

/// Where the background screen's passphrase comes from.
enum Source {
    Ask,
    Stdin,
    File(PathBuf),
}

fn read_passphrase(source: Source) -> Result<SecretString, ClientError> {
    let text = match source {
        Source::Ask => return passphrase::existing(),
        Source::Stdin => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| ClientError::Passphrase(format!("standard input: {e}")))?;
            line
        }
        Source::File(path) => {
            std::fs::read_to_string(&path).map_err(|source| ClientError::Io { path, source })?
        }
    };
    let pass = text.trim_end_matches(['\n', '\r']).to_owned();
    if pass.is_empty() {
        return Err(ClientError::Passphrase("an empty passphrase".into()));
    }
    Ok(SecretString::from(pass))
}

/// The schedule's seed from [`SEED_ENV`]: honoured by debug builds (the
/// tests') only; a release build warns and draws its own, so a stray
/// export can never make two sessions repeat one schedule.
fn seed_from_env() -> Result<Option<[u8; 32]>, ClientError> {
    let Ok(hex) = std::env::var(SEED_ENV) else {
        return Ok(None);
    };
    if !cfg!(debug_assertions) {
        eprintln!("screen: {SEED_ENV} is ignored by this build (tests only)");
        return Ok(None);
    }
    let seed = data_encoding::HEXLOWER_PERMISSIVE
        .decode(hex.trim().as_bytes())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| ClientError::Invalid(format!("{SEED_ENV}: 64 hex digits")))?;
    eprintln!(
        "screen: {SEED_ENV} is set: the cover schedule follows a given seed (for tests only: a seed used twice links two sessions)"
    );
    Ok(Some(seed))
}

/// `mtos screen start --foreground`: runs until stopped.
fn foreground_run(
    home: &Home,
    options: ScreenOptions,
    source: Source,
) -> Result<String, ClientError> {
    let lock = ScreenLock::acquire(home)?;
    home.network()?;
    let pass = if home.keychain().exists() {
        let pass = read_passphrase(source)?;
        // Checked before anything starts: a wrong one exits 3.
        home.keychain().load(&pass)?;
        Some(pass)
    } else {
        None
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(ClientError::Runtime)?;
    let ran = rt.block_on(screen::run(
        home.clone(),
        &lock,
        pass,
        options,
        |status, web| {
            eprintln!(
                "screen: ready (pid {}) on {}; gateway {}",
                status.pid,
                screen::socket_path(home).display(),
                &status.gateway[..16]
            );
            // No token in the log: `mtos screen web` mints addresses.
            if let Some(port) = web {
                eprintln!(
                    "screen: web screen on http://127.0.0.1:{port}/ (`mtos screen web` prints an address to open)"
                );
            }
        },
    ));
    // The lock is released last, once the runtime's tasks (a file being
    // sealed, the store) are done with: the next screen must find the
    // store free when it finds the lock free.
    rt.shutdown_timeout(Duration::from_secs(10));
    drop(lock);
    ran?;
    Ok(String::new())
}

/// `mtos screen start`: checks what can be checked here (no screen runs,
/// the network is set, the passphrase opens the keychain), then starts
/// the screen in the background and waits until it answers.
fn start(
    home: &Home,
    poll_every: u64,
    web: Option<u16>,
    bulk_windows: bool,
) -> Result<String, ClientError> {
    if let Some(pid) = ScreenLock::held(home) {
        return Err(ClientError::Conflict(format!(
            "a screen runs for {} already (pid {pid}); `mtos screen status` shows it",
            home.dir().display()
        )));
    }
    home.network()?;
    home.ensure()?;
    let pass = if home.keychain().exists() {
        let pass = passphrase::existing()?;
        home.keychain().load(&pass)?;
        Some(pass)
    } else {
        None
    };
    let log_path = home.dir().join(screen::LOG_FILE);
    let log = {
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(&log_path).map_err(|source| ClientError::Io {
            path: log_path.clone(),
            source,
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = file.set_permissions(std::fs::Permissions::from_mode(0o600));
        }
        file
    };
    let exe = std::env::current_exe().map_err(|source| ClientError::Io {
        path: PathBuf::from("mtos"),
        source,
    })?;
    let mut command = std::process::Command::new(exe);
    command
        .arg("--home")
        .arg(home.dir())
        .args(["screen", "start", "--foreground", "--passphrase-stdin"])
        .arg("--poll-every")
        .arg(poll_every.to_string())
        .args(
            web.map(|p| ["--web".to_owned(), "--web-port".to_owned(), p.to_string()])
                .into_iter()
                .flatten(),
        )
        .args((!bulk_windows).then_some("--no-bulk-windows"))
        .env_remove(passphrase::PASSPHRASE_ENV)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(log);
    #[cfg(unix)]
    {
        // Its own process group: a Ctrl-C in this terminal does not
        // reach it.
        use std::os::unix::process::CommandExt;
        command.process_group(0);
    }
    let mut child = command.spawn().map_err(|source| ClientError::Io {
        path: PathBuf::from("mtos screen start --foreground"),
        source,
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        let line = pass
            .as_ref()
            .map(|p| format!("{}\n", p.expose_secret()))
            .unwrap_or_else(|| "\n".into());
        let _ = stdin.write_all(line.as_bytes());
    }
    let began = Instant::now();
    loop {
        if let Ok(Some(code)) = child.try_wait() {
            return Err(ClientError::NoScreen(format!(
                "the screen stopped as it started ({code}); its log, {}:\n{}",
                log_path.display(),
                tail(&log_path)
            )));
        }
        if let Ok(s) = status(home) {
            return Ok(format!(
                "screen started (pid {}) for {}\n{}",
                s.pid,
                home.dir().display(),
                describe(home, &s)
            ));
        }
        if began.elapsed() > START_WAIT {
            return Err(ClientError::NoScreen(format!(
                "the screen did not answer within {} s; its log, {}:\n{}",
                START_WAIT.as_secs(),
                log_path.display(),
                tail(&log_path)
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The last lines of a log.
fn tail(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

/// `mtos screen stop`: asks the screen to stop and waits until it has.
fn stop(home: &Home) -> Result<String, ClientError> {
    let pid = ScreenLock::held(home).ok_or_else(|| no_screen(home))?;
    call(home, Request::Stop)?;
    let began = Instant::now();
    while ScreenLock::held(home).is_some() {
        if began.elapsed() > Duration::from_secs(30) {
            return Err(ClientError::NoScreen(format!(
                "the screen (pid {pid}) was asked to stop and still runs after 30 s"
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(format!("screen stopped (pid {pid})\n"))
}

fn ago(secs: u64) -> String {
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

/// The status, for the person.
fn describe(home: &Home, s: &Status) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "home:      {}", home.dir().display());
    let _ = writeln!(out, "network:   {} (epoch {})", s.network, s.epoch);
    let _ = writeln!(
        out,
        "gateway:   {} {}",
        s.gateway,
        s.gateway_addrs.first().map(String::as_str).unwrap_or("")
    );
    let _ = writeln!(
        out,
        "session:   {} connected {} ({} session{} since start {} ago; link mended {} time{})",
        s.peer_id,
        ago(s.connected_secs),
        s.sessions,
        if s.sessions == 1 { "" } else { "s" },
        ago(s.up_secs),
        s.link_breaks,
        if s.link_breaks == 1 { "" } else { "s" },
    );
    let _ = writeln!(
        out,
        "sent:      {} packets: {} real, {} cover; {} loops came back",
        s.sent_real + s.sent_cover,
        s.sent_real,
        s.sent_cover,
        s.loops_returned
    );
    let w = &s.windows;
    let next = |ms: Option<u64>| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        ms.map_or("never".to_owned(), |ms| {
            format!("in {}", ago((ms / 1000).saturating_sub(now)))
        })
    };
    let _ = writeln!(
        out,
        "windows:   {}",
        match (w.ticket, w.granted, w.in_window) {
            (None, _, _) => "off (--no-bulk-windows): idle rates only".to_owned(),
            (Some(_), false, _) =>
                "not granted by the gateway this session: idle rates only".to_owned(),
            (Some(t), true, true) => format!(
                "in a bulk window now (ticket {t}), ends {}",
                next(w.next_change_ms)
            ),
            (Some(t), true, false) => format!(
                "idle (ticket {t}); next bulk window {}",
                next(w.next_change_ms)
            ),
        }
    );
    let queued = s
        .jobs
        .iter()
        .filter(|j| !matches!(j.state.as_str(), "done" | "failed" | "cancelled"))
        .count();
    let _ = writeln!(out, "work:      {queued} queued or running");
    for j in s.jobs.iter().filter(|j| j.state != "done") {
        let _ = writeln!(
            out,
            "  job {} {} {} {}/{} chunks",
            j.job, j.kind, j.state, j.done, j.total
        );
    }
    let _ = writeln!(
        out,
        "feeds:     {} followed, polled every {}; last poll {}",
        s.follows,
        ago(s.poll_every_secs),
        s.last_poll.map_or("not yet".into(), date)
    );
    let _ = writeln!(
        out,
        "store:     about {} chunks, {:.1} MiB",
        s.store_chunks,
        s.store_bytes as f64 / (1 << 20) as f64
    );
    out
}

fn jobs_table(jobs: &[mtos_client::screen::api::JobInfo]) -> String {
    use std::fmt::Write as _;
    if jobs.is_empty() {
        return "no work queued\n".into();
    }
    let mut out = String::new();
    for j in jobs {
        let _ = writeln!(
            out,
            "job {:<4} {:<8} {:<9} {}/{} chunks",
            j.job, j.kind, j.state, j.done, j.total
        );
    }
    out
}

/// A systemd user unit for the screen of `home`.
fn unit(home: &Home) -> String {
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "mtos".into());
    format!(
        "# The mtos screen of {home}, as a systemd user service.\n\
         # Install:  mtos screen unit > ~/.config/systemd/user/mtos-screen.service\n\
         #           systemctl --user daemon-reload && systemctl --user enable --now mtos-screen\n\
         # The keychain's passphrase comes from a file only you can read\n\
         # (chmod 600): a passphrase on disk is only as safe as that file and\n\
         # this account. Without one, start the screen by hand instead\n\
         # (`mtos screen start` asks for it).\n\
         [Unit]\n\
         Description=mtos screen (always-on mixnet client) for {home}\n\
         After=network-online.target\n\
         \n\
         [Service]\n\
         Type=simple\n\
         LoadCredential=passphrase:%h/.config/mtos/passphrase\n\
         ExecStart={exe} --home {home} screen start --foreground --passphrase-file ${{CREDENTIALS_DIRECTORY}}/passphrase\n\
         ExecStop={exe} --home {home} screen stop\n\
         Restart=on-failure\n\
         RestartSec=30\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n",
        home = home.dir().display(),
    )
}
