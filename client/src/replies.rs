//! Replies through single-use reply blocks (SURBs), `specs/client.md` §5.
//!
//! A sender who wants answers puts reply blocks in its message; the
//! recipient answers through them without learning who or where the sender
//! is. This module is sans-IO: the wire form of what travels inside an
//! envelope, the sender's table of blocks it handed out ([`Outstanding`]),
//! and the recipient's pool of blocks it may answer with ([`ReplyPool`]).
//! The session drives both.

use std::collections::{HashMap, VecDeque};

use mtos_crypto::envelope::{ClientAddress, MAX_CLIENT_MESSAGE};
use mtos_crypto::sphinx::{SURB_ID_LEN, SurbRecovery};

/// Bytes of a [`SenderTag`].
pub const TAG_LEN: usize = 16;
pub use mtos_mixnode::service::{BLOCK_SIZE, ReplyBlock};
/// Reply blocks one message carries at most.
pub const MAX_BLOCKS_PER_MESSAGE: usize = 8;
/// The longest reply: the SURB payload, less the kind byte.
pub const MAX_REPLY: usize = mtos_crypto::sphinx::MAX_MESSAGE - 1;

/// Reply blocks a sender keeps ready at one recipient at most.
pub const MAX_TARGET: usize = 32;
/// Blocks the sender's table holds (recovery keys: about 200 bytes each).
pub const MAX_OUTSTANDING: usize = 4_096;
/// Conversations a sender keeps credit at.
pub const MAX_CREDITS: usize = 256;
/// Blocks a recipient holds in all (about 1.7 MB).
pub const MAX_POOL_BLOCKS: usize = 4_096;
/// Blocks a recipient holds for one sender.
pub const MAX_POOL_PER_TAG: usize = 64;
/// Senders a recipient holds blocks for.
pub const MAX_POOL_TAGS: usize = 1_024;
/// How long after its expiry a block's recovery keys are kept, for a
/// reply that was sent in time but waits in the gateway's mailbox.
pub const RECOVERY_GRACE_SECS: u64 = 600;

/// Envelope plaintext kinds.
const KIND_MESSAGE: u8 = 0x00;
const KIND_LOOP: u8 = 0x01;
const KIND_ANSWERABLE: u8 = 0x02;
const KIND_MORE_BLOCKS: u8 = 0x03;
/// Length of a loop's nonce.
const LOOP_NONCE: usize = 16;

/// Why something about replies was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// The bytes are not a message of a known kind.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// No reply block is held for this sender.
    #[error("no reply block for this sender (none was received, or all were used)")]
    NoBlock,
    /// Every block held for this sender has expired.
    #[error("every reply block of this sender has expired (they live two key epochs)")]
    Expired,
    /// The message does not fit.
    #[error("{got} bytes do not fit in a message carrying {blocks} reply blocks (at most {max})")]
    TooLong {
        /// The message's length.
        got: usize,
        /// Reply blocks asked for.
        blocks: usize,
        /// The longest that fits.
        max: usize,
    },
}

/// Names a conversation to its recipient without naming the sender: the
/// recipient answers "the sender of tag T" with T's reply blocks. A
/// session uses one random tag per recipient address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SenderTag(pub [u8; TAG_LEN]);

/// What an envelope carries (`client.md` §2, §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plain {
    /// A message.
    Message(Vec<u8>),
    /// One of the recipient's own loops.
    Loop,
    /// A message the recipient can answer through `blocks`.
    Answerable {
        /// Who to answer, as the recipient knows them.
        tag: SenderTag,
        /// Reply blocks (at least one).
        blocks: Vec<ReplyBlock>,
        /// The message.
        body: Vec<u8>,
    },
    /// More reply blocks for an earlier sender, no message.
    MoreBlocks {
        /// The sender.
        tag: SenderTag,
        /// Reply blocks (at least one).
        blocks: Vec<ReplyBlock>,
    },
}

/// The longest message that fits beside `blocks` reply blocks.
pub fn max_answerable(blocks: usize) -> usize {
    MAX_CLIENT_MESSAGE.saturating_sub(1 + TAG_LEN + 1 + blocks * BLOCK_SIZE)
}

impl Plain {
    /// The envelope plaintext.
    pub fn encode(&self) -> Result<Vec<u8>, ReplyError> {
        let with_blocks = |kind, tag: &SenderTag, blocks: &[ReplyBlock], body: &[u8]| {
            if blocks.is_empty() || blocks.len() > MAX_BLOCKS_PER_MESSAGE {
                return Err(ReplyError::Malformed("1 to 8 reply blocks per message"));
            }
            if body.len() > max_answerable(blocks.len()) {
                return Err(ReplyError::TooLong {
                    got: body.len(),
                    blocks: blocks.len(),
                    max: max_answerable(blocks.len()),
                });
            }
            let mut out = Vec::with_capacity(MAX_CLIENT_MESSAGE);
            out.push(kind);
            out.extend_from_slice(&tag.0);
            out.push(blocks.len() as u8);
            for b in blocks {
                b.encode(&mut out);
            }
            out.extend_from_slice(body);
            Ok(out)
        };
        match self {
            Plain::Message(body) => {
                if body.len() >= MAX_CLIENT_MESSAGE {
                    return Err(ReplyError::TooLong {
                        got: body.len(),
                        blocks: 0,
                        max: MAX_CLIENT_MESSAGE - 1,
                    });
                }
                let mut out = Vec::with_capacity(1 + body.len());
                out.push(KIND_MESSAGE);
                out.extend_from_slice(body);
                Ok(out)
            }
            Plain::Loop => Ok(vec![KIND_LOOP; 1 + LOOP_NONCE]),
            Plain::Answerable { tag, blocks, body } => {
                with_blocks(KIND_ANSWERABLE, tag, blocks, body)
            }
            Plain::MoreBlocks { tag, blocks } => with_blocks(KIND_MORE_BLOCKS, tag, blocks, &[]),
        }
    }

    /// Parses an envelope plaintext.
    pub fn decode(bytes: &[u8]) -> Result<Self, ReplyError> {
        let (&kind, rest) = bytes.split_first().ok_or(ReplyError::Malformed("empty"))?;
        match kind {
            KIND_MESSAGE => Ok(Plain::Message(rest.to_vec())),
            KIND_LOOP if rest.len() == LOOP_NONCE => Ok(Plain::Loop),
            KIND_LOOP => Err(ReplyError::Malformed("loop length")),
            KIND_ANSWERABLE | KIND_MORE_BLOCKS => {
                if rest.len() < TAG_LEN + 1 {
                    return Err(ReplyError::Malformed("truncated reply blocks"));
                }
                let (tag, rest) = rest.split_at(TAG_LEN);
                let tag = SenderTag(
                    tag.try_into()
                        .map_err(|_| ReplyError::Malformed("sender tag"))?,
                );
                let (&n, rest) = rest
                    .split_first()
                    .ok_or(ReplyError::Malformed("truncated reply blocks"))?;
                let n = usize::from(n);
                if n == 0 || n > MAX_BLOCKS_PER_MESSAGE || rest.len() < n * BLOCK_SIZE {
                    return Err(ReplyError::Malformed("reply block count"));
                }
                let (blocks, body) = rest.split_at(n * BLOCK_SIZE);
                let blocks = blocks
                    .chunks_exact(BLOCK_SIZE)
                    .map(|b| ReplyBlock::decode(b).ok_or(ReplyError::Malformed("reply block")))
                    .collect::<Result<Vec<_>, _>>()?;
                if kind == KIND_ANSWERABLE {
                    Ok(Plain::Answerable {
                        tag,
                        blocks,
                        body: body.to_vec(),
                    })
                } else if body.is_empty() {
                    Ok(Plain::MoreBlocks { tag, blocks })
                } else {
                    Err(ReplyError::Malformed("trailing bytes after reply blocks"))
                }
            }
            _ => Err(ReplyError::Malformed("unknown kind")),
        }
    }
}

/// A reply's plaintext: the kind byte of a message, then the body.
pub fn encode_reply(body: &[u8]) -> Result<Vec<u8>, ReplyError> {
    if body.len() > MAX_REPLY {
        return Err(ReplyError::TooLong {
            got: body.len(),
            blocks: 0,
            max: MAX_REPLY,
        });
    }
    let mut out = Vec::with_capacity(1 + body.len());
    out.push(KIND_MESSAGE);
    out.extend_from_slice(body);
    Ok(out)
}

/// The body of a reply's plaintext.
pub fn decode_reply(plain: &[u8]) -> Result<&[u8], ReplyError> {
    match plain.split_first() {
        Some((&KIND_MESSAGE, body)) => Ok(body),
        _ => Err(ReplyError::Malformed("a reply is a message")),
    }
}

struct Pending {
    tag: SenderTag,
    recovery: SurbRecovery,
    expires: u64,
}

struct Credit {
    to: ClientAddress,
    /// Blocks to keep at the recipient.
    target: usize,
    /// Unix seconds until which the conversation counts as active and
    /// its blocks are replenished.
    active_until: u64,
    /// For evicting the least recently used conversation.
    touched: u64,
    /// Blocks asked for and not yet built (they count as held, so a
    /// second check before they are built does not ask again).
    planned: usize,
}

/// The sender's side: the reply blocks it handed out, to read replies,
/// and how many each recipient should hold, to replenish them.
#[derive(Default)]
pub struct Outstanding {
    pending: HashMap<[u8; SURB_ID_LEN], Pending>,
    credits: HashMap<SenderTag, Credit>,
    tags: HashMap<[u8; 97], SenderTag>,
    clock: u64,
}

impl std::fmt::Debug for Outstanding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outstanding")
            .field("pending", &self.pending.len())
            .field("credits", &self.credits.len())
            .finish()
    }
}

/// Reply blocks a recipient should get, for [`Outstanding::wanted`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    /// The conversation.
    pub tag: SenderTag,
    /// Where its recipient is.
    pub to: ClientAddress,
    /// How many blocks to send.
    pub blocks: usize,
}

impl Outstanding {
    /// The tag this session uses toward `to`, drawn with `fresh` the
    /// first time; asks for `blocks` to be kept there while the
    /// conversation stays active (until `active_until`).
    pub fn tag_for(
        &mut self,
        to: &ClientAddress,
        blocks: usize,
        active_until: u64,
        fresh: impl FnOnce() -> [u8; TAG_LEN],
    ) -> SenderTag {
        self.clock += 1;
        let key = to.to_bytes();
        let tag = match self.tags.get(&key) {
            Some(t) => *t,
            None => {
                if self.credits.len() >= MAX_CREDITS {
                    self.evict_credit();
                }
                let t = SenderTag(fresh());
                self.tags.insert(key, t);
                t
            }
        };
        let clock = self.clock;
        let credit = self.credits.entry(tag).or_insert(Credit {
            to: *to,
            target: 0,
            active_until,
            touched: clock,
            planned: 0,
        });
        credit.target = credit.target.max(blocks).min(MAX_TARGET);
        credit.active_until = credit.active_until.max(active_until);
        credit.touched = clock;
        tag
    }

    fn evict_credit(&mut self) {
        if let Some(oldest) = self
            .credits
            .iter()
            .min_by_key(|(_, c)| c.touched)
            .map(|(t, _)| *t)
        {
            if let Some(c) = self.credits.remove(&oldest) {
                self.tags.remove(&c.to.to_bytes());
            }
            self.pending.retain(|_, p| p.tag != oldest);
        }
    }

    /// Forgets blocks whose replies can no longer come.
    pub fn purge(&mut self, now: u64) {
        self.pending
            .retain(|_, p| p.expires.saturating_add(RECOVERY_GRACE_SECS) > now);
    }

    /// Room for `n` more blocks (after forgetting dead ones)?
    pub fn has_room(&mut self, n: usize, now: u64) -> bool {
        if self.pending.len() + n > MAX_OUTSTANDING {
            self.purge(now);
        }
        self.pending.len() + n <= MAX_OUTSTANDING
    }

    /// Records a block handed out under `tag`. `false` (and nothing
    /// recorded) when the table is full or the id is taken.
    pub fn record(
        &mut self,
        tag: SenderTag,
        id: [u8; SURB_ID_LEN],
        recovery: SurbRecovery,
        expires: u64,
    ) -> bool {
        if self.pending.len() >= MAX_OUTSTANDING || self.pending.contains_key(&id) {
            return false;
        }
        self.unplan(&tag, 1);
        self.pending.insert(
            id,
            Pending {
                tag,
                recovery,
                expires,
            },
        );
        true
    }

    /// Notes that `n` blocks for `tag` are on their way to being built.
    pub fn plan(&mut self, tag: &SenderTag, n: usize) {
        if let Some(c) = self.credits.get_mut(tag) {
            c.planned += n;
        }
    }

    /// Notes that `n` planned blocks will not be built after all.
    pub fn unplan(&mut self, tag: &SenderTag, n: usize) {
        if let Some(c) = self.credits.get_mut(tag) {
            c.planned = c.planned.saturating_sub(n);
        }
    }

    /// The block a reply came on, removed: a second reply on it (a replay
    /// that got through, or a forgery) finds nothing.
    pub fn take(&mut self, id: &[u8; SURB_ID_LEN]) -> Option<(SenderTag, SurbRecovery)> {
        self.pending.remove(id).map(|p| (p.tag, p.recovery))
    }

    /// Marks the conversation active until `until`.
    pub fn touch(&mut self, tag: &SenderTag, until: u64) {
        self.clock += 1;
        let clock = self.clock;
        if let Some(c) = self.credits.get_mut(tag) {
            c.active_until = c.active_until.max(until);
            c.touched = clock;
        }
    }

    /// Blocks each active conversation's recipient should be sent so it
    /// holds its target of blocks usable beyond `now + horizon` (blocks
    /// used but whose replies have not come yet count as held).
    pub fn wanted(&self, now: u64, horizon: u64) -> Vec<Wanted> {
        let mut held: HashMap<SenderTag, usize> = HashMap::new();
        for p in self.pending.values() {
            if p.expires > now.saturating_add(horizon) {
                *held.entry(p.tag).or_default() += 1;
            }
        }
        let mut out: Vec<Wanted> = self
            .credits
            .iter()
            .filter(|(_, c)| c.active_until > now)
            .filter_map(|(tag, c)| {
                let have = held.get(tag).copied().unwrap_or(0) + c.planned;
                (have < c.target).then(|| Wanted {
                    tag: *tag,
                    to: c.to,
                    blocks: c.target - have,
                })
            })
            .collect();
        out.sort_by_key(|w| w.tag);
        out
    }

    /// Blocks handed out and not yet answered.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// No blocks outstanding?
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// The recipient's side: reply blocks received, per sender, oldest
/// (soonest to expire) used first.
#[derive(Debug, Default)]
pub struct ReplyPool {
    tags: HashMap<SenderTag, (VecDeque<ReplyBlock>, u64)>,
    total: usize,
    clock: u64,
}

impl ReplyPool {
    /// Adds `blocks` for `tag`. Returns how many blocks were dropped to
    /// stay within the bounds (this sender's oldest first, then the least
    /// recently used sender's).
    pub fn add(&mut self, tag: SenderTag, blocks: Vec<ReplyBlock>) -> usize {
        self.clock += 1;
        let mut dropped = 0;
        if !self.tags.contains_key(&tag) && self.tags.len() >= MAX_POOL_TAGS {
            dropped += self.evict_tag(&tag);
        }
        for b in blocks {
            if self.total >= MAX_POOL_BLOCKS {
                let evicted = self.evict_tag(&tag);
                if evicted == 0 {
                    // Only this sender holds blocks: drop its oldest.
                    if let Some((q, _)) = self.tags.get_mut(&tag)
                        && q.pop_front().is_some()
                    {
                        self.total -= 1;
                        dropped += 1;
                    }
                }
                dropped += evicted;
            }
            let (q, touched) = self.tags.entry(tag).or_default();
            *touched = self.clock;
            if q.len() >= MAX_POOL_PER_TAG && q.pop_front().is_some() {
                self.total -= 1;
                dropped += 1;
            }
            // Kept in expiry order, so the soonest to expire goes first.
            let at = q.partition_point(|x| x.expires <= b.expires);
            q.insert(at, b);
            self.total += 1;
        }
        dropped
    }

    /// Drops the least recently used sender other than `keep`; returns
    /// how many blocks went.
    fn evict_tag(&mut self, keep: &SenderTag) -> usize {
        let victim = self
            .tags
            .iter()
            .filter(|(t, _)| *t != keep)
            .min_by_key(|(_, (_, touched))| *touched)
            .map(|(t, _)| *t);
        match victim.and_then(|t| self.tags.remove(&t)) {
            Some((q, _)) => {
                self.total -= q.len();
                q.len()
            }
            None => 0,
        }
    }

    /// Takes a block to answer `tag` at `now`, dropping expired ones.
    pub fn take(&mut self, tag: &SenderTag, now: u64) -> Result<ReplyBlock, ReplyError> {
        self.clock += 1;
        let Some((q, touched)) = self.tags.get_mut(tag) else {
            return Err(ReplyError::NoBlock);
        };
        *touched = self.clock;
        let mut expired = false;
        while let Some(b) = q.pop_front() {
            self.total -= 1;
            if b.expires > now {
                if q.is_empty() {
                    self.tags.remove(tag);
                }
                return Ok(b);
            }
            expired = true;
        }
        self.tags.remove(tag);
        Err(if expired {
            ReplyError::Expired
        } else {
            ReplyError::NoBlock
        })
    }

    /// Usable blocks held for `tag` at `now`.
    pub fn available(&self, tag: &SenderTag, now: u64) -> usize {
        self.tags
            .get(tag)
            .map_or(0, |(q, _)| q.iter().filter(|b| b.expires > now).count())
    }

    /// Blocks held in all.
    pub fn len(&self) -> usize {
        self.total
    }

    /// No blocks held?
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

#[cfg(test)]
mod tests;
