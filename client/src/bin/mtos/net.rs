//! `mtos net`, `mtos publish` and `mtos fetch`: the network this home
//! uses, and items put on it and read from it through the mixnet.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Subcommand;
use mtos_client::feeds::{self, FeedBook, FollowEntry, SeenEntry};
use mtos_client::mixnet::{NetworkConfig, Session};
use mtos_client::pending::{PendingPublish, PendingPublishes};
use mtos_client::screen::api::CardInfo;
use mtos_client::store::{ChunkStore, STORE_DIR};
use mtos_client::transfer::{self, TransferOptions, TransferReport};
use mtos_client::{ClientError, Home, testnet, work};
use mtos_crypto::feed::FollowRef;
use mtos_crypto::item::ItemRef;

use crate::item::{SealOpts, open_cmd, seal_into_store};

#[derive(Debug, Subcommand)]
pub enum NetCommand {
    /// Use the local testnet in DIR (as `mtos testnet up` made it).
    ///
    /// Example: mtos net use --testnet /tmp/tn
    Use {
        /// The testnet directory.
        #[arg(long, value_name = "DIR")]
        testnet: PathBuf,
    },
    /// Use a network: its id, and each directory authority's key and
    /// address.
    ///
    /// Example: mtos net set mtos-main 5f0c…e1 /dns4/dir1.example.org/tcp/9400 9a7b…02 /dns4/dir2.example.org/tcp/9400 …
    Set {
        /// The network id.
        network: String,
        /// Each authority's ed25519 key (64 hex digits) followed by its
        /// libp2p multiaddr.
        #[arg(required = true, num_args = 2.., value_name = "KEY ADDR")]
        authorities: Vec<String>,
        /// Authority signatures a document needs (default: more than half).
        #[arg(long, default_value_t = 0)]
        threshold: usize,
    },
    /// Show the network this home uses.
    Show,
    /// Ask every authority for its document and the votes it was made
    /// from, recompute each document, ask up to 8 gateways for the
    /// document they use, and report any split view (two documents for
    /// one round). Fails when the directory is not sound from here.
    ///
    /// Example: mtos net check
    Check {
        /// Seconds to wait for each authority or gateway.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
}

pub fn run(home: &Home, cmd: NetCommand) -> Result<String, ClientError> {
    let config = match cmd {
        NetCommand::Show => return Ok(describe(&home.network()?)),
        NetCommand::Check { timeout } => {
            let config = home.network()?;
            let report = runtime()?.block_on(mtos_client::netcheck::check(
                &config,
                std::time::Duration::from_secs(timeout.clamp(1, 300)),
            ))?;
            let text = report.text();
            return if report.sound() {
                Ok(text)
            } else {
                Err(ClientError::Refused(text.trim_end().to_owned()))
            };
        }
        NetCommand::Use { testnet } => testnet::load(&testnet)?.network_config()?,
        NetCommand::Set {
            network,
            authorities,
            threshold,
        } => {
            if authorities.len() % 2 != 0 {
                return Err(ClientError::Refused(
                    "give each authority as a key followed by its address".into(),
                ));
            }
            let pairs: Vec<(String, String)> = authorities
                .chunks(2)
                .map(|p| (p[0].clone(), p[1].clone()))
                .collect();
            NetworkConfig::parse(&network, &pairs, threshold, "mtos net set")?
        }
    };
    home.set_network(&config)?;
    let mut out = describe(&config);
    // A running screen moves to the new network at once.
    if mtos_client::screen::ScreenLock::held(home).is_some() {
        let moved = crate::via::runtime()?.block_on(async {
            let client = mtos_client::screen::ScreenClient::find(home)
                .await
                .ok_or_else(|| crate::via::no_screen(home))?;
            client
                .call(mtos_client::screen::api::Request::Reconnect, |_| {})
                .await
        });
        match moved {
            Ok(_) => out.push_str("the running screen reconnected to it\n"),
            Err(e) => out.push_str(&format!(
                "the running screen could not reconnect ({e}): restart it\n"
            )),
        }
    }
    Ok(out)
}

fn describe(c: &NetworkConfig) -> String {
    let mut out = format!(
        "network:   {}\nthreshold: {} of {} authority signatures\n",
        c.network,
        c.threshold,
        c.authorities.len()
    );
    for (key, addr) in c.authority_pairs() {
        out.push_str(&format!("authority: {key} at {addr}\n"));
    }
    out
}

fn runtime() -> Result<tokio::runtime::Runtime, ClientError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(ClientError::Runtime)
}

fn summary(verb: &str, report: &TransferReport, started: Instant) -> String {
    format!(
        "{verb} {} chunks ({} over the network, {} requests) in {:.1} s",
        report.chunks,
        report.transferred,
        report.requests,
        started.elapsed().as_secs_f64()
    )
}

/// `mtos publish`: seal, put every chunk through the mixnet, add a public
/// item to its author's feed, and print the reference only once all of it
/// is stored. The reference of an unfinished publish (and its author's
/// id) waits in the home's `pending` directory (owner-only, like the rest
/// of the home), so running the same command again resumes the same item
/// instead of sealing a new one.
pub fn publish(home: &Home, opts: SealOpts) -> Result<String, ClientError> {
    let config = home.network()?;
    let digest = opts.clone().into_request()?.digest()?;
    let pending = PendingPublishes::of(home);
    home.ensure()?;
    // Finished by a screen while its command was interrupted: collected.
    if let Some(done) = pending.published(&digest) {
        eprintln!("this publish finished before: its reference");
        pending.done(&digest);
        return Ok(format!("{}\n", done.reference.to_uri()));
    }
    let resumed = ChunkStore::open(&home.dir().join(STORE_DIR))
        .ok()
        .and_then(|store| pending.resumable(&digest, &store));
    let (reference, author) = match resumed {
        Some(p) => {
            eprintln!("resuming the unfinished publish of this item");
            let author = match p.author {
                Some(id) => Some(crate::common::open(home)?.find(&id)?.clone()),
                None => None,
            };
            (p.reference, author)
        }
        None => {
            let (reference, author) = seal_into_store(home, opts)?;
            pending.record(
                &digest,
                &PendingPublish {
                    reference: reference.clone(),
                    author: author.as_ref().map(|a| a.id().to_string()),
                },
            )?;
            (reference, author)
        }
    };
    let store = ChunkStore::open(&home.dir().join(STORE_DIR))?;
    // Public items signed by an identity go into its feed; private ones
    // (--to) and anonymous ones do not.
    let feed = author.filter(|_| reference.audience() == mtos_crypto::item::Audience::Public);
    put(home, &config, &store, &reference, feed.as_ref())?;
    pending.done(&digest);
    Ok(format!("{}\n", reference.to_uri()))
}

fn put(
    home: &Home,
    config: &NetworkConfig,
    store: &ChunkStore,
    reference: &ItemRef,
    feed: Option<&mtos_crypto::Identity>,
) -> Result<TransferReport, ClientError> {
    runtime()?.block_on(async {
        let started = Instant::now();
        let session = Session::connect(config).await?;
        let bar = crate::via::bar("publishing");
        let published =
            work::publish_item(home, &session, store, reference, feed, &|done, total| {
                bar.set_length(total);
                bar.set_position(done);
            })
            .await;
        bar.finish_and_clear();
        let (report, entry) = published?;
        eprintln!("{}", summary("published", &report, started));
        if let Some((label, n)) = entry {
            eprintln!("added as entry {n} of the feed of \"{label}\"");
        }
        Ok(report)
    })
}

/// `mtos fetch`: fetch what the local store lacks of the item through
/// the mixnet, then open it as `mtos item open` does.
pub fn fetch(home: &Home, reference: &str, output: Option<&Path>) -> Result<String, ClientError> {
    let parsed = ItemRef::from_uri(reference)?;
    let config = home.network()?;
    home.ensure()?;
    let store = ChunkStore::open(&home.dir().join(STORE_DIR))?;
    // Held already: open it without touching the network.
    let held = mtos_crypto::item::seal::missing(
        &mut &store,
        &parsed,
        mtos_crypto::item::seal::MAX_SEALED_LEN,
    )?
    .is_empty();
    if held {
        eprintln!("the item is in the local store: nothing to fetch");
        drop(store);
        return open_cmd(home, reference, output);
    }
    runtime()?.block_on(async {
        let started = Instant::now();
        let session = Session::connect(&config).await?;
        let bar = crate::via::bar("fetching");
        let report = transfer::fetch(
            &session,
            &store,
            &parsed,
            TransferOptions::default(),
            &|done, known| {
                bar.set_length(known);
                bar.set_position(done);
            },
        )
        .await;
        bar.finish_and_clear();
        let report = report?;
        eprintln!("{}", summary("fetched", &report, started));
        Ok::<_, ClientError>(())
    })?;
    drop(store);
    open_cmd(home, reference, output)
}

/// `mtos follow URI`: adds a feed to those this home follows.
pub fn follow(home: &Home, uri: &str, label: Option<String>) -> Result<String, ClientError> {
    let (label, owner) = work::follow(home, uri, label)?;
    Ok(followed(&label, &owner))
}

/// What `mtos follow` prints.
pub(crate) fn followed(label: &str, owner: &str) -> String {
    format!("following \"{label}\" (items by {owner}); `mtos feed` reads it\n")
}

/// `mtos feed`: poll rounds over every followed feed (the same number of
/// one-window probes each, whatever the number of feeds), the new items
/// fetched, then the timeline of everything read, newest first. With
/// `every`, it then keeps polling at that fixed interval, printing new
/// entries as they come, until interrupted.
pub fn feed(home: &Home, rounds: u32, every: Option<u64>) -> Result<String, ClientError> {
    if FeedBook::load(home)?.follows.is_empty() {
        return Err(no_follows());
    }
    let config = home.network()?;
    home.ensure()?;
    let store = ChunkStore::open(&home.dir().join(STORE_DIR))?;
    runtime()?.block_on(async {
        let session = Session::connect(&config).await?;
        let mut total = work::RoundReport::default();
        // A random first round, so that with more feeds than a round's
        // probes every run starts its rotation somewhere else
        // (`specs/feeds.md` §5).
        let start: u64 = rand::RngExt::random_range(&mut rand::rng(), 0..1 << 32);
        for round in start..start + u64::from(rounds.max(1)) {
            let r = work::poll_round(home, &session, &store, round, None).await?;
            warn_unfetched(&r);
            total.new.extend(r.new);
            total.refused += r.refused;
            total.asked_again += r.asked_again;
            total.follows = r.follows;
        }
        eprintln!(
            "{}",
            polled_summary(
                total.new.len() as u64,
                total.follows,
                total.refused,
                total.asked_again
            )
        );
        let Some(secs) = every else {
            return Ok(());
        };
        // The fixed schedule: one round every `secs`, whatever happens.
        print!("{}", timeline(&FeedBook::load(home)?, &store, None)?);
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(secs.max(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        for round in start + u64::from(rounds.max(1)).. {
            tick.tick().await;
            // A lost probe or answer costs one round, not the watch.
            let r = match work::poll_round(home, &session, &store, round, None).await {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("poll round failed: {e}");
                    continue;
                }
            };
            warn_unfetched(&r);
            if r.refused > 0 {
                eprintln!(
                    "{} slot(s) not signed by their feed's key ignored",
                    r.refused
                );
            }
            if !r.new.is_empty() {
                let items: Vec<String> = r.new.into_iter().map(|e| e.entry.item).collect();
                print!(
                    "{}",
                    timeline(&FeedBook::load(home)?, &store, Some(&items))?
                );
                use std::io::Write as _;
                let _ = std::io::stdout().flush();
            }
        }
        Ok::<_, ClientError>(())
    })?;
    timeline(&FeedBook::load(home)?, &store, None)
}

/// The refusal of `mtos feed` with nothing followed.
pub(crate) fn no_follows() -> ClientError {
    ClientError::NotFound("no feed is followed: `mtos follow mtos:feed:...` first".into())
}

fn warn_unfetched(r: &work::RoundReport) {
    for e in &r.new {
        if let Some(why) = &e.not_fetched {
            eprintln!("entry {} of a followed feed: its item: {why}", e.entry.n);
        }
    }
}

/// The line `mtos feed` ends its rounds with.
pub(crate) fn polled_summary(found: u64, follows: u64, refused: u64, again: u64) -> String {
    format!(
        "{found} new entr{} in {follows} followed feed{}{}{}",
        if found == 1 { "y" } else { "ies" },
        if follows == 1 { "" } else { "s" },
        if refused > 0 {
            format!("; {refused} slot(s) not signed by their feed's key ignored")
        } else {
            String::new()
        },
        if again > 0 {
            format!("; {again} probe(s) asked again (a replica did not answer)")
        } else {
            String::new()
        }
    )
}

/// Every entry read (or only those of the items in `only`), newest
/// first: when, whose, type, tags, references, the first text, and the
/// item's reference.
pub(crate) fn timeline(
    book: &FeedBook,
    store: &ChunkStore,
    only: Option<&[String]>,
) -> Result<String, ClientError> {
    use std::fmt::Write as _;
    let mut all: Vec<(&SeenEntry, &FollowEntry)> = book
        .follows
        .iter()
        .flat_map(|f| f.entries.iter().map(move |e| (e, f)))
        .filter(|(e, _)| only.is_none_or(|o| o.contains(&e.item)))
        .collect();
    all.sort_by_key(|(e, f)| std::cmp::Reverse((e.time_ms, e.n, f.label.clone())));
    let mut out = String::new();
    for (entry, f) in all {
        let reference = ItemRef::from_uri(&entry.item)?;
        let item = match mtos_crypto::item::seal::open(
            &mut &*store,
            &reference,
            &[],
            mtos_crypto::item::seal::MAX_SEALED_LEN,
        ) {
            Ok(item) => item,
            Err(e) => {
                let _ = writeln!(
                    out,
                    "{}  {}  #{}  (item not available: {e})\n  {}",
                    crate::common::date(entry.time_ms / 1000),
                    f.label,
                    entry.n,
                    entry.item
                );
                continue;
            }
        };
        let follow = FollowRef::from_uri(&f.uri)?;
        let mine = item.author().as_bytes() == &follow.owner;
        let _ = writeln!(
            out,
            "{}  {}  #{}  {}{}",
            crate::common::date(entry.time_ms / 1000),
            f.label,
            entry.n,
            item.content_type(),
            if mine {
                ""
            } else {
                "  (NOT signed by the feed's owner)"
            }
        );
        if !item.tags().is_empty() {
            let _ = writeln!(
                out,
                "  tags: {}",
                crate::item::printable(&item.tags().join(", "))
            );
        }
        for r in item.refs() {
            let _ = writeln!(out, "  {:?}: {}", r.kind, r.target.to_uri());
        }
        if let Some(text) = item
            .parts()
            .iter()
            .find(|p| p.kind() == mtos_crypto::item::PartKind::Text)
        {
            let text = String::from_utf8_lossy(text.data());
            let _ = writeln!(
                out,
                "  {}",
                crate::item::printable(&text.chars().take(200).collect::<String>())
            );
        }
        let _ = writeln!(out, "  {}", entry.item);
    }
    Ok(out)
}

/// `mtos id publish`: the card of a public identity, by key and by
/// fingerprint.
pub fn publish_card(home: &Home, identity: &mtos_crypto::Identity) -> Result<String, ClientError> {
    let config = home.network()?;
    let (by_key, by_fingerprint) = runtime()?.block_on(async {
        let session = Session::connect(&config).await?;
        feeds::publish_card(
            &session,
            identity,
            work::unix_ms(),
            TransferOptions::default(),
        )
        .await
    })?;
    Ok(card_published(
        &identity.label().to_string(),
        &identity.fingerprint().to_string(),
        identity.fingerprint().digits(),
        by_key,
        by_fingerprint,
    ))
}

/// What `mtos id publish` prints.
pub(crate) fn card_published(
    label: &str,
    fingerprint: &str,
    digits: &str,
    by_key: u64,
    by_fingerprint: u64,
) -> String {
    format!(
        "published the card of \"{label}\" (card slot {by_key} by key, {by_fingerprint} by fingerprint)\nfingerprint: {fingerprint}\nanyone can find it with: mtos id lookup {digits}\n"
    )
}

/// `mtos id lookup`: a card found through the mixnet.
pub fn lookup_card(home: &Home, query: &str) -> Result<String, ClientError> {
    Ok(card_found(&card_info(home, query)?))
}

/// The card a session of this command's own finds for `query`.
pub fn card_info(home: &Home, query: &str) -> Result<CardInfo, ClientError> {
    let q = work::card_query(query)?;
    let config = home.network()?;
    let card = runtime()?.block_on(async {
        let session = Session::connect(&config).await?;
        feeds::lookup_card(&session, &q, TransferOptions::default()).await
    })?;
    let card = card
        .ok_or_else(|| ClientError::NotFound("no card for this identity on the network".into()))?;
    Ok(CardInfo::of(&card))
}

/// What `mtos id lookup` prints.
pub(crate) fn card_found(card: &CardInfo) -> String {
    format!(
        "label:       {}\nid:          {}\nfingerprint: {}\nuri:         {}\nfeed:        {}\npublished:   {}\nfollow it with: mtos follow {}\n",
        card.label,
        card.id,
        card.fingerprint,
        card.uri,
        card.feed,
        crate::common::date(card.time_ms / 1000),
        card.feed,
    )
}
