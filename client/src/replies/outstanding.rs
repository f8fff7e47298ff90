//! The sender's side of reply blocks (`specs/client.md` §5): the blocks
//! it handed out, to read replies, and how many each recipient should
//! hold, per key epoch, to replenish them.
//!
//! A block handed to a correspondent lives only in its own key epoch: the
//! recipient uses it while its own packets carry that epoch's key tag
//! (until its document moves on, at most [`BOUNDARY_GRACE_SECS`] past
//! the epoch's end, [`conversation_expires`]), so a reply never travels
//! under another tag than its sender's other packets, which would mark it
//! at every hop. Before an epoch ends the sender hands out blocks for the
//! next one ([`block_epochs`]), which the recipient keeps unused until its
//! document reaches that epoch.

use std::collections::{BTreeMap, HashMap};

use mtos_crypto::envelope::ClientAddress;
use mtos_crypto::sphinx::{SURB_ID_LEN, SurbRecovery};
use mtos_mixnode::directory::EpochSchedule;

use super::{MAX_CREDITS, MAX_OUTSTANDING, MAX_TARGET, RECOVERY_GRACE_SECS, SenderTag, TAG_LEN};

/// How long after its epoch's end a correspondent's block stays usable:
/// while the recipient's own packets still carry that epoch's key tag
/// (its document is refreshed at most 30 s after the boundary, and the
/// fetch takes its time), its replies must too.
pub const BOUNDARY_GRACE_SECS: u64 = 60;

/// When a block handed to a correspondent for key epoch `epoch` must no
/// longer be used: [`BOUNDARY_GRACE_SECS`] after the epoch's end (nodes
/// keep the epoch's key a whole epoch longer).
pub fn conversation_expires(schedule: &EpochSchedule, epoch: u32) -> u64 {
    schedule
        .start(epoch.saturating_add(1))
        .saturating_add(BOUNDARY_GRACE_SECS.min(schedule.epoch_secs / 2))
}

/// How far ahead of its epoch's end, at least, the next epoch's blocks
/// are handed out: a quarter of an epoch, at most a minute.
fn min_lead(schedule: &EpochSchedule) -> u64 {
    (schedule.epoch_secs / 4).min(60)
}

/// The key epochs whose blocks a recipient should hold at `now`, for a
/// sender whose document is for key epoch `epoch`: that one, and the
/// next once it ends within `horizon` (at least [`min_lead`]).
pub fn block_epochs(schedule: &EpochSchedule, epoch: u32, now: u64, horizon: u64) -> Vec<u32> {
    let left = schedule.start(epoch.saturating_add(1)).saturating_sub(now);
    let mut out = vec![epoch];
    if left <= horizon.max(min_lead(schedule)) {
        out.push(epoch.saturating_add(1));
    }
    out
}

struct Pending {
    tag: SenderTag,
    recovery: SurbRecovery,
    expires: u64,
    epoch: u32,
}

pub(super) struct Credit {
    to: ClientAddress,
    /// Blocks to keep at the recipient, per key epoch.
    target: usize,
    /// Unix seconds until which the conversation counts as active and
    /// its blocks are replenished.
    active_until: u64,
    /// For evicting the least recently used conversation.
    touched: u64,
    /// Blocks asked for and not yet built, per key epoch (they count as
    /// held, so a second check before they are built does not ask again).
    planned: BTreeMap<u32, usize>,
}

/// The sender's side: the reply blocks it handed out, to read replies,
/// and how many each recipient should hold, to replenish them.
#[derive(Default)]
pub struct Outstanding {
    pending: HashMap<[u8; SURB_ID_LEN], Pending>,
    pub(super) credits: HashMap<SenderTag, Credit>,
    pub(super) tags: HashMap<[u8; 97], SenderTag>,
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
    /// The key epoch to build them for.
    pub epoch: u32,
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
            planned: BTreeMap::new(),
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

    /// Records a block for key epoch `epoch` handed out under `tag`.
    /// `false` (and nothing recorded) when the table is full or the id is
    /// taken.
    pub fn record(
        &mut self,
        tag: SenderTag,
        id: [u8; SURB_ID_LEN],
        recovery: SurbRecovery,
        expires: u64,
        epoch: u32,
    ) -> bool {
        if self.pending.len() >= MAX_OUTSTANDING || self.pending.contains_key(&id) {
            return false;
        }
        self.unplan(&tag, epoch, 1);
        self.pending.insert(
            id,
            Pending {
                tag,
                recovery,
                expires,
                epoch,
            },
        );
        true
    }

    /// Notes that `n` blocks for `tag` and key epoch `epoch` are on their
    /// way to being built.
    pub fn plan(&mut self, tag: &SenderTag, epoch: u32, n: usize) {
        if let Some(c) = self.credits.get_mut(tag) {
            *c.planned.entry(epoch).or_default() += n;
        }
    }

    /// Notes that `n` planned blocks will not be built after all.
    pub fn unplan(&mut self, tag: &SenderTag, epoch: u32, n: usize) {
        if let Some(c) = self.credits.get_mut(tag)
            && let Some(p) = c.planned.get_mut(&epoch)
        {
            *p = p.saturating_sub(n);
            if *p == 0 {
                c.planned.remove(&epoch);
            }
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

    /// Blocks each active conversation's recipient should be sent, by a
    /// sender whose document is for key epoch `epoch`, so it holds its
    /// target of blocks for each key epoch of [`block_epochs`]
    /// (blocks used but whose replies have not come yet count as held;
    /// so do blocks of an epoch that has begun, while they last).
    pub fn wanted(
        &self,
        schedule: &EpochSchedule,
        epoch: u32,
        now: u64,
        horizon: u64,
    ) -> Vec<Wanted> {
        let epochs = block_epochs(schedule, epoch, now, horizon);
        let mut held: HashMap<(SenderTag, u32), usize> = HashMap::new();
        for p in self.pending.values() {
            if p.expires > now {
                *held.entry((p.tag, p.epoch)).or_default() += 1;
            }
        }
        let mut out: Vec<Wanted> = Vec::new();
        for (tag, c) in self.credits.iter().filter(|(_, c)| c.active_until > now) {
            for &epoch in &epochs {
                let have = held.get(&(*tag, epoch)).copied().unwrap_or(0)
                    + c.planned.get(&epoch).copied().unwrap_or(0);
                if have < c.target {
                    out.push(Wanted {
                        tag: *tag,
                        to: c.to,
                        blocks: c.target - have,
                        epoch,
                    });
                }
            }
        }
        out.sort_by_key(|w| (w.tag, w.epoch));
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
