//! The network commands as the running screen carries them out: `mtos
//! publish`, `fetch`, `feed`, `follow`, `id publish` and `id lookup` ask
//! it over its socket and show its progress. A publish or fetch
//! interrupted with Ctrl-C stays queued in the screen (the message says
//! how to cancel it); a feed poll or a card lookup stops.

use std::cell::Cell;
use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use mtos_client::feeds::FeedBook;
use mtos_client::screen::ScreenClient;
use mtos_client::screen::api::{CardInfo, Event, ExchangeInfo, Reply, Request, TransferDone};
use mtos_client::store::{ChunkStore, STORE_DIR};
use mtos_client::{ClientError, Home};

use crate::item::{SealOpts, open_cmd};

pub fn runtime() -> Result<tokio::runtime::Runtime, ClientError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ClientError::Runtime)
}

/// The refusal of a network command with no screen running: how to
/// start one, in one line.
pub fn no_screen(home: &Home) -> ClientError {
    ClientError::NoScreen(format!(
        "no screen runs for {}: start it with `mtos screen start` (or pass --no-screen for a one-shot session, which shows when you act)",
        home.dir().display()
    ))
}

/// The running screen; first, that the home has a network at all (no
/// screen could use it otherwise), then one that answers.
async fn find(home: &Home) -> Result<ScreenClient, ClientError> {
    home.network()?;
    ScreenClient::find(home)
        .await
        .ok_or_else(|| no_screen(home))
}

/// A progress bar on stderr (drawn only on a terminal).
pub fn bar(what: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(0);
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} chunks, {elapsed} elapsed")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what);
    bar
}

/// Sends `request` and follows it with a progress bar until its reply,
/// or until Ctrl-C: then the queued job it became goes on in the screen.
async fn follow_job(
    client: &ScreenClient,
    request: Request,
    what: &'static str,
) -> Result<Reply, ClientError> {
    let bar = bar(what);
    let job = Cell::new(None);
    let call = client.call(request, |e| match e {
        Event::Queued { job: j, joined } => {
            job.set(Some(j));
            if joined {
                bar.suspend(|| eprintln!("joined job {j}, queued before"));
            }
        }
        Event::Note { text } => bar.suspend(|| eprintln!("{text}")),
        Event::Progress { done, total, .. } => {
            bar.set_length(total);
            bar.set_position(done);
        }
        Event::Entry(_) | Event::Code { .. } => {}
    });
    let result = tokio::select! {
        r = call => r,
        _ = tokio::signal::ctrl_c() => {
            bar.finish_and_clear();
            return Err(ClientError::Interrupted(match job.get() {
                Some(j) => format!(
                    "interrupted: the {what} stays queued in the screen as job {j}; `mtos screen cancel {j}` cancels it, `mtos screen attach {j}` follows it"
                ),
                None => format!("interrupted before the {what} was queued: nothing was queued"),
            }));
        }
    };
    bar.finish_and_clear();
    result
}

fn summary(verb: &str, done: &TransferDone) -> String {
    format!(
        "{verb} {} chunks ({} over the network, {} requests) in {:.1} s",
        done.chunks, done.transferred, done.requests, done.secs
    )
}

fn transfer(reply: Reply) -> Result<TransferDone, ClientError> {
    match reply {
        Reply::Transfer(done) => Ok(done),
        _ => Err(ClientError::NoScreen(
            "the screen gave an answer of another kind".into(),
        )),
    }
}

/// `mtos publish` through the screen.
pub fn publish(home: &Home, opts: SealOpts) -> Result<String, ClientError> {
    let seal = opts.into_request()?;
    let done = runtime()?.block_on(async {
        let client = find(home).await?;
        transfer(
            follow_job(
                &client,
                Request::Publish {
                    seal: Box::new(seal),
                },
                "publishing",
            )
            .await?,
        )
    })?;
    eprintln!("{}", summary("published", &done));
    if let Some((label, n)) = &done.feed_entry {
        eprintln!("added as entry {n} of the feed of \"{label}\"");
    }
    Ok(format!("{}\n", done.reference))
}

/// `mtos screen attach`.
pub fn attach(home: &Home, job: u64) -> Result<String, ClientError> {
    let done = runtime()?.block_on(async {
        let client = find(home).await?;
        transfer(follow_job(&client, Request::Attach { job }, "job").await?)
    })?;
    eprintln!("{}", summary("moved", &done));
    Ok(format!("{}\n", done.reference))
}

/// `mtos fetch` through the screen, then the item opened from its store.
pub fn fetch(home: &Home, reference: &str, output: Option<&Path>) -> Result<String, ClientError> {
    mtos_crypto::item::ItemRef::from_uri(reference)?;
    let done = runtime()?.block_on(async {
        let client = find(home).await?;
        transfer(
            follow_job(
                &client,
                Request::Fetch {
                    reference: reference.to_owned(),
                },
                "fetching",
            )
            .await?,
        )
    })?;
    if done.job == 0 {
        eprintln!("the item is in the local store: nothing to fetch");
    } else {
        eprintln!("{}", summary("fetched", &done));
    }
    open_cmd(home, reference, output)
}

/// `mtos follow` through the screen.
pub fn follow(home: &Home, uri: &str, label: Option<String>) -> Result<String, ClientError> {
    let reply = runtime()?.block_on(async {
        let client = find(home).await?;
        client
            .call(
                Request::Follow {
                    uri: uri.to_owned(),
                    label,
                },
                |_| {},
            )
            .await
    })?;
    match reply {
        Reply::Followed { label, owner } => Ok(crate::net::followed(&label, &owner)),
        _ => Err(ClientError::NoScreen(
            "the screen gave an answer of another kind".into(),
        )),
    }
}

/// `mtos feed` through the screen: `rounds` poll rounds now (beside the
/// screen's schedule), then the timeline; with `every`, the entries the
/// screen's own schedule finds, as they come.
pub fn feed(home: &Home, rounds: u32, every: Option<u64>) -> Result<String, ClientError> {
    if FeedBook::load(home)?.follows.is_empty() {
        return Err(crate::net::no_follows());
    }
    let rt = runtime()?;
    let reply = rt.block_on(async {
        let client = find(home).await?;
        let call = client.call(
            Request::Poll {
                rounds: rounds.max(1),
            },
            |e| {
                if let Event::Note { text } = e {
                    eprintln!("{text}");
                }
            },
        );
        tokio::select! {
            r = call => r,
            _ = tokio::signal::ctrl_c() => Err(ClientError::Interrupted(
                "interrupted: the rounds asked for finish in the screen unseen (its scheduled polls go on)".into(),
            )),
        }
    })?;
    let Reply::Polled {
        new,
        refused,
        asked_again,
        follows,
    } = reply
    else {
        return Err(ClientError::NoScreen(
            "the screen gave an answer of another kind".into(),
        ));
    };
    eprintln!(
        "{}",
        crate::net::polled_summary(new, follows, refused, asked_again)
    );
    let store = || ChunkStore::open_for_reading(&home.dir().join(STORE_DIR));
    let Some(secs) = every else {
        return crate::net::timeline(&FeedBook::load(home)?, &store()?, None);
    };
    eprintln!(
        "the screen polls on its own schedule (`mtos screen start --poll-every`), not every {secs} s; new entries appear as it finds them"
    );
    print!(
        "{}",
        crate::net::timeline(&FeedBook::load(home)?, &store()?, None)?
    );
    rt.block_on(async {
        let client = find(home).await?;
        let watch = client.call(Request::Watch, |e| {
            if let Event::Entry(entry) = e {
                let shown = FeedBook::load(home).and_then(|book| {
                    crate::net::timeline(&book, &store()?, Some(std::slice::from_ref(&entry.item)))
                });
                match shown {
                    Ok(text) => print!("{text}"),
                    Err(e) => eprintln!("a new entry of \"{}\": {e}", entry.feed),
                }
                use std::io::Write as _;
                let _ = std::io::stdout().flush();
            }
        });
        tokio::select! {
            r = watch => r.map(|_| ()),
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })?;
    Ok(String::new())
}

/// `mtos id publish` through the screen.
pub fn publish_card(home: &Home, id: &str) -> Result<String, ClientError> {
    let reply = runtime()?.block_on(async {
        let client = find(home).await?;
        client
            .call(Request::PublishCard { id: id.to_owned() }, |_| {})
            .await
    })?;
    match reply {
        Reply::CardPublished {
            label,
            fingerprint,
            digits,
            by_key,
            by_fingerprint,
        } => Ok(crate::net::card_published(
            &label,
            &fingerprint,
            &digits,
            by_key,
            by_fingerprint,
        )),
        _ => Err(ClientError::NoScreen(
            "the screen gave an answer of another kind".into(),
        )),
    }
}

/// `mtos id lookup` through the screen.
pub fn lookup_card(home: &Home, query: &str) -> Result<String, ClientError> {
    Ok(crate::net::card_found(&card_info(home, query)?))
}

/// The card the screen finds for `query` (a fingerprint or a URI).
pub fn card_info(home: &Home, query: &str) -> Result<CardInfo, ClientError> {
    let reply = runtime()?.block_on(async {
        let client = find(home).await?;
        client
            .call(
                Request::LookupCard {
                    query: query.to_owned(),
                },
                |e| {
                    if let Event::Note { text } = e {
                        eprintln!("{text}");
                    }
                },
            )
            .await
    })?;
    match reply {
        Reply::Card(card) => Ok(card),
        _ => Err(ClientError::NoScreen(
            "the screen gave an answer of another kind".into(),
        )),
    }
}

/// `mtos contact invite`: prints the code as soon as the invitation is
/// on the network, then waits for the other side.
pub fn contact_invite(
    home: &Home,
    id: Option<String>,
    wait_secs: Option<u64>,
) -> Result<ExchangeInfo, ClientError> {
    exchange(home, Request::ContactInvite { id, wait_secs })
}

/// `mtos contact accept`.
pub fn contact_accept(
    home: &Home,
    code: String,
    id: Option<String>,
    label: Option<String>,
) -> Result<ExchangeInfo, ClientError> {
    exchange(home, Request::ContactAccept { code, id, label })
}

fn exchange(home: &Home, request: Request) -> Result<ExchangeInfo, ClientError> {
    match exchange_reply(home, request)? {
        Reply::Exchanged(info) => Ok(info),
        _ => Err(ClientError::NoScreen(
            "the screen gave an answer of another kind".into(),
        )),
    }
}

/// `mtos screen pair`.
pub fn pair(
    home: &Home,
    wait: u64,
    new_passphrase: Option<mtos_crypto::SecretString>,
) -> Result<String, ClientError> {
    use mtos_crypto::ExposeSecret as _;
    let request = Request::PairKeys {
        wait_secs: Some(wait),
        new_passphrase: new_passphrase
            .map(|p| mtos_client::screen::api::SecretText::new(p.expose_secret().to_owned())),
    };
    match exchange_reply(home, request)? {
        Reply::Paired {
            identities,
            contacts,
            skipped,
        } => {
            let mut out = format!(
                "received and saved {} identit{} and {contacts} contact(s); compare the fingerprints with the ones the other screen printed:\n",
                identities.len(),
                if identities.len() == 1 { "y" } else { "ies" },
            );
            for i in identities {
                out.push_str(&format!("  {i}\n"));
            }
            for s in skipped {
                out.push_str(&format!("not imported: {s}\n"));
            }
            Ok(out)
        }
        _ => Err(ClientError::NoScreen(
            "the screen gave an answer of another kind".into(),
        )),
    }
}

/// `mtos screen send-keys`.
pub fn send_keys(home: &Home, code: String, ids: Vec<String>) -> Result<String, ClientError> {
    match exchange_reply(home, Request::SendKeys { code, ids })? {
        Reply::KeysSent {
            identities,
            contacts,
        } => {
            let mut out = format!(
                "sent {} identit{} and {contacts} contact(s); the other screen saved them:\n",
                identities.len(),
                if identities.len() == 1 { "y" } else { "ies" },
            );
            for i in identities {
                out.push_str(&format!("  {i}\n"));
            }
            Ok(out)
        }
        _ => Err(ClientError::NoScreen(
            "the screen gave an answer of another kind".into(),
        )),
    }
}

/// Sends an exchange's request; prints its code as soon as it comes.
fn exchange_reply(home: &Home, request: Request) -> Result<Reply, ClientError> {
    let reply = runtime()?.block_on(async {
        let client = find(home).await?;
        let call = client.call(request, |e| match e {
            Event::Code { code, expires_secs } => {
                use std::io::Write as _;
                let mut stdout = std::io::stdout().lock();
                let _ = writeln!(stdout, "code: {code}");
                let _ = stdout.flush();
                eprintln!(
                    "read this code to the other side within {} minutes ({})",
                    expires_secs.div_ceil(60),
                    if code.split('-').count() > 3 {
                        "`mtos screen send-keys [ID...] CODE` on the screen that has the keys"
                    } else {
                        "`mtos contact accept CODE`"
                    }
                );
            }
            Event::Note { text } => eprintln!("{text}"),
            _ => {}
        });
        tokio::select! {
            r = call => r,
            _ = tokio::signal::ctrl_c() => Err(ClientError::Interrupted(
                "interrupted: the exchange was stopped".into(),
            )),
        }
    })?;
    Ok(reply)
}

/// The warning of `--no-screen`.
pub fn warn_one_shot() {
    eprintln!(
        "warning: --no-screen opens a session for this command alone: the gateway and the authority see when you act, and how long it takes"
    );
}
