//! What a person's network commands do over a session, whoever holds it:
//! the screen (`crate::screen`), or a one-shot session of `mtos
//! --no-screen`. Publishing (chunks, then the feed entry of a public
//! signed item), following, poll rounds over the home's feed book, and
//! card lookups.

use mtos_crypto::Identity;
use mtos_crypto::feed::{FeedKeys, FollowRef};
use mtos_crypto::item::ItemRef;

use crate::feeds::{self, FeedBook, FollowEntry, Followed, SeenEntry};
use crate::mixnet::Session;
use crate::store::ChunkStore;
use crate::transfer::{self, TransferOptions, TransferReport};
use crate::{ClientError, Home};

/// Puts every chunk of the sealed item at `reference` on the network,
/// then, for a public item signed by `author`, writes it as the next
/// entry of the author's feed (the book reloaded around the write, so
/// that what was saved meanwhile is kept). Returns the transfer and the
/// feed entry written (the author's label, the slot).
pub async fn publish_item(
    home: &Home,
    session: &Session,
    store: &ChunkStore,
    reference: &ItemRef,
    author: Option<&Identity>,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<(TransferReport, Option<(String, u64)>), ClientError> {
    let report = transfer::publish(
        session,
        store,
        reference,
        TransferOptions::default(),
        progress,
    )
    .await?;
    let entry = feed_entry(home, session, reference, author).await?;
    Ok((report, entry))
}

/// For a public item signed by `author`, writes it as the next entry of
/// the author's feed (the book reloaded around the write, so that what
/// was saved meanwhile is kept); returns the author's label and the slot.
/// `None` for a private or anonymous item.
pub async fn feed_entry(
    home: &Home,
    session: &Session,
    reference: &ItemRef,
    author: Option<&Identity>,
) -> Result<Option<(String, u64)>, ClientError> {
    let Some(author) =
        author.filter(|_| reference.audience() == mtos_crypto::item::Audience::Public)
    else {
        return Ok(None);
    };
    let id = author.id().to_string();
    let first_free = FeedBook::load(home)?.own.get(&id).copied().unwrap_or(0);
    let n = feeds::write_entry(
        session,
        &FeedKeys::of(author),
        first_free,
        reference,
        unix_ms(),
        TransferOptions::default(),
    )
    .await?;
    let mut book = FeedBook::load(home)?;
    let next = book.own.entry(id).or_insert(0);
    *next = (*next).max(n + 1);
    book.save(home)?;
    Ok(Some((author.label().to_string(), n)))
}

/// Adds a feed to those `home` follows; returns the label it got and the
/// owner's id.
pub fn follow(
    home: &Home,
    uri: &str,
    label: Option<String>,
) -> Result<(String, String), ClientError> {
    let parsed = FollowRef::from_uri(uri)?;
    let mut book = FeedBook::load(home)?;
    let known = book
        .follows
        .iter()
        .any(|f| FollowRef::from_uri(&f.uri).is_ok_and(|g| g.feed == parsed.feed));
    if known {
        return Err(ClientError::Conflict(
            "this feed is followed already".into(),
        ));
    }
    let owner =
        mtos_crypto::VerifyKey::from_bytes(parsed.owner).map_err(|e| ClientError::Uri(e.into()))?;
    let label = label.unwrap_or_else(|| owner.id().to_string());
    book.follows.push(FollowEntry {
        uri: parsed.to_uri(),
        label: label.clone(),
        next: 0,
        entries: Vec::new(),
    });
    book.save(home)?;
    Ok((label, owner.id().to_string()))
}

/// A new entry a poll round found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    /// The feed's label.
    pub feed: String,
    /// The entry.
    pub entry: SeenEntry,
    /// Why its item could not be fetched, if it could not (the entry is
    /// kept; a later fetch may get it).
    pub not_fetched: Option<String>,
}

/// What a poll round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoundReport {
    /// New entries, their items fetched into the store.
    pub new: Vec<NewEntry>,
    /// Slots not signed by their feed's key: ignored.
    pub refused: u64,
    /// Probes asked again.
    pub asked_again: u64,
    /// Feeds followed.
    pub follows: u64,
}

/// One poll round (`specs/feeds.md` §5) over the feeds `home` follows,
/// as its book is on disk now (its decoys drawn and kept on the first):
/// the new entries' items fetched into `store`, and the entries merged
/// into the book as it is on disk after the round, so a follow or a
/// publish saved meanwhile is kept.
///
/// `book_lock`, when given, is held while the book is loaded, changed and
/// saved, never while the round is on the network.
pub async fn poll_round(
    home: &Home,
    session: &Session,
    store: &ChunkStore,
    round: u64,
    book_lock: Option<&tokio::sync::Mutex<()>>,
) -> Result<RoundReport, ClientError> {
    let locked = match book_lock {
        Some(l) => Some(l.lock().await),
        None => None,
    };
    let mut book = FeedBook::load(home)?;
    let mut follows: Vec<Followed> = book
        .follows
        .iter()
        .map(|f| {
            Ok(Followed {
                follow: FollowRef::from_uri(&f.uri)?,
                next: f.next,
            })
        })
        .collect::<Result<_, ClientError>>()?;
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_rng(&mut rand::rng());
    let had_decoys = book.decoys.len();
    let decoys = book.decoys(&mut rng);
    if book.decoys.len() != had_decoys {
        book.save(home)?;
    }
    drop(locked);
    let report = feeds::poll(
        session,
        &mut follows,
        &decoys,
        round,
        &mut rng,
        TransferOptions::default(),
    )
    .await?;
    let mut new = Vec::new();
    for (i, entry) in &report.entries {
        // An item that cannot be fetched now (lost, or for other readers)
        // does not stop the feed: the entry is kept.
        let not_fetched = transfer::fetch(
            session,
            store,
            &entry.item,
            TransferOptions::default(),
            &|_, _| {},
        )
        .await
        .err()
        .map(|e| e.to_string());
        new.push(NewEntry {
            feed: book.follows[*i].label.clone(),
            entry: SeenEntry {
                n: entry.n,
                time_ms: entry.time_ms,
                item: entry.item.to_uri(),
            },
            not_fetched,
        });
    }
    let uris: Vec<String> = report
        .entries
        .iter()
        .map(|(i, _)| book.follows[*i].uri.clone())
        .collect();
    let _locked = match book_lock {
        Some(l) => Some(l.lock().await),
        None => None,
    };
    let mut fresh = FeedBook::load(home)?;
    for (uri, seen) in uris.iter().zip(&new) {
        if let Some(f) = fresh.follows.iter_mut().find(|f| &f.uri == uri) {
            f.next = f.next.max(seen.entry.n + 1);
            if !f.entries.iter().any(|e| e.n == seen.entry.n) {
                f.entries.push(seen.entry.clone());
            }
        }
    }
    fresh.save(home)?;
    Ok(RoundReport {
        new,
        refused: report.refused.len() as u64,
        asked_again: report.asked_again,
        follows: fresh.follows.len() as u64,
    })
}

/// A card query from what a person typed: an `mtos:id:` URI or a
/// 30-digit fingerprint.
pub fn card_query(query: &str) -> Result<feeds::CardQuery, ClientError> {
    if query.trim().to_ascii_lowercase().starts_with("mtos:") {
        return Ok(feeds::CardQuery::Identity(
            mtos_crypto::PublicIdentity::from_uri(query)?,
        ));
    }
    Ok(feeds::CardQuery::Fingerprint(
        mtos_crypto::Fingerprint::parse(query).ok_or(ClientError::Uri(
            mtos_crypto::UriError::Payload(mtos_crypto::DecodeError::Invalid {
                what: "lookup",
                reason: "give a 30-digit fingerprint or an mtos:id: URI",
            }),
        ))?,
    ))
}

/// Unix milliseconds now.
pub fn unix_ms() -> u64 {
    mtos_net::unix_now_ms()
}
