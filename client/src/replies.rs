//! Replies through single-use reply blocks (SURBs), `specs/client.md` §5.
//!
//! A sender who wants answers puts reply blocks in its message; the
//! recipient answers through them without learning who or where the sender
//! is. This module is sans-IO: the wire form of what travels inside an
//! envelope, the sender's table of blocks it handed out ([`Outstanding`]),
//! and the recipient's pool of blocks it may answer with ([`ReplyPool`]).
//! The session drives both.

use std::collections::{HashMap, VecDeque};

use mtos_crypto::envelope::MAX_CLIENT_MESSAGE;

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
    #[error("every reply block of this sender has expired (each lives in its own key epoch)")]
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

    /// Takes a block to answer `tag` at `now`, when this session's own
    /// packets are built under key epoch `epoch` (its document's),
    /// dropping expired ones and those of earlier epochs. A block for a
    /// later epoch is kept for it: its reply must carry the key tag this
    /// session's other packets carry (`client.md` §5).
    pub fn take(
        &mut self,
        tag: &SenderTag,
        now: u64,
        epoch: u32,
    ) -> Result<ReplyBlock, ReplyError> {
        self.clock += 1;
        let Some((q, touched)) = self.tags.get_mut(tag) else {
            return Err(ReplyError::NoBlock);
        };
        *touched = self.clock;
        let mut expired = false;
        let before = q.len();
        q.retain(|b| {
            let keep = b.expires > now && b.epoch >= epoch;
            expired |= !keep;
            keep
        });
        self.total -= before - q.len();
        // In expiry order, a block for this epoch comes before any for a
        // later one.
        let usable = q.iter().position(|b| b.epoch == epoch);
        let block = usable.and_then(|i| q.remove(i));
        if block.is_some() {
            self.total -= 1;
        }
        if q.is_empty() {
            self.tags.remove(tag);
        }
        block.ok_or(if expired {
            ReplyError::Expired
        } else {
            ReplyError::NoBlock
        })
    }

    /// Blocks held for `tag` usable at `now` under key epoch `epoch`.
    pub fn available(&self, tag: &SenderTag, now: u64, epoch: u32) -> usize {
        self.tags.get(tag).map_or(0, |(q, _)| {
            q.iter()
                .filter(|b| b.expires > now && b.epoch == epoch)
                .count()
        })
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

mod outstanding;
pub use outstanding::{
    BOUNDARY_GRACE_SECS, Outstanding, Wanted, block_epochs, conversation_expires,
};

#[cfg(test)]
mod tests;
