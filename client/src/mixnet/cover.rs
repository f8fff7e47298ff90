//! Payload-slot cover that comes back as a reply (`client.md` §4): an
//! empty payload slot sends a packet through one of this session's own
//! reply blocks, from its gateway through every layer back to it. So
//! every payload slot, real or not, brings one delivery back (a request
//! its answer, cover itself), and neither the kind nor the count of a
//! client's deliveries tells its gateway how much it fetches or stores.

use std::sync::atomic::{AtomicI64, Ordering};

use super::*;

/// Cover replies in flight that a session keeps a record of; beyond it an
/// empty slot sends a drop instead (counted).
pub(super) const MAX_COVER_REPLIES: usize = 4_096;
/// How long a cover reply is waited for: far longer than any round trip
/// (five hops of at most the network's `max_delay_ms` each, and the
/// mailbox), far shorter than a block's life, so cover lost in the
/// network does not fill the record.
pub(super) const COVER_WAIT_SECS: u64 = 300;

/// The reply blocks this session used for its own cover, by id: what reads
/// the cover when it comes back, until the block expires.
#[derive(Default)]
pub(super) struct CoverReplies {
    by_id: HashMap<[u8; SURB_ID_LEN], (sphinx::SurbRecovery, u64)>,
}

impl CoverReplies {
    /// Records a block's recovery until `expires` (or [`COVER_WAIT_SECS`]
    /// from `now`, if sooner); refuses when full of records still waited
    /// for.
    pub(super) fn record(
        &mut self,
        id: [u8; SURB_ID_LEN],
        recovery: sphinx::SurbRecovery,
        expires: u64,
        now: u64,
    ) -> bool {
        if self.by_id.len() >= MAX_COVER_REPLIES {
            self.by_id.retain(|_, (_, until)| *until > now);
        }
        if self.by_id.len() >= MAX_COVER_REPLIES {
            return false;
        }
        let until = expires.min(now.saturating_add(COVER_WAIT_SECS));
        self.by_id.insert(id, (recovery, until));
        true
    }

    /// The recovery of the block `id`, once.
    pub(super) fn take(&mut self, id: &[u8; SURB_ID_LEN]) -> Option<sphinx::SurbRecovery> {
        self.by_id.remove(id).map(|(recovery, _)| recovery)
    }

    /// Cover replies recorded and not yet back.
    pub(super) fn len(&self) -> usize {
        self.by_id.len()
    }
}

/// A payload slot's cover: a packet through a fresh reply block to this
/// session whose first hop is its own gateway, recorded in `replies`
/// before the frame exists (so it cannot come back unrecognised). `None`
/// when the document lacks the nodes or the record is full.
pub(super) fn cover_reply<R: rand::Rng + CryptoRng + ?Sized>(
    rng: &mut R,
    doc: &NetworkDocument,
    me: &ClientAddress,
    replies: &SharedReplies,
) -> Option<Vec<u8>> {
    let gateway = doc.node(&me.gateway)?;
    let (block, id, recovery) = block_to_me(rng, doc, me, Some(gateway))?;
    let mut nonce = [0u8; 16];
    rng.fill(&mut nonce[..]);
    let body = encode_reply(&nonce).ok()?;
    let (packet, first) = sphinx::use_surb(&block.surb, &body).ok()?;
    if first != gateway.address() {
        return None;
    }
    let frame = sphinx::Frame::encode((block.epoch % 256) as u8, &packet).ok()?;
    let recorded = replies
        .lock()
        .ok()?
        .cover
        .record(id, recovery, block.expires, unix_now());
    recorded.then_some(frame)
}

/// Deliveries owed or held in surplus beyond which the balance stops
/// counting (a burst longer than this shows in the count while it lasts).
pub(super) const MAX_BALANCE: i64 = 1_000;

/// What this session's own traffic has done to the count of its
/// deliveries, against the cover schedule's `λP + λL` a second
/// (`client.md` §4), and the slots that even it out. A payload slot that
/// carries a message, a top-up or a reply through someone's block brings
/// nothing back (one delivery owed); a message received is a delivery
/// beyond the schedule (one in surplus). An owed delivery turns the next
/// drop slot into payload-slot cover, which comes back; a surplus one
/// turns the next payload-slot cover into a drop, which does not. A drop
/// and cover leave the client alike (a packet to its gateway, onward to
/// layer 1), so the sending pattern is unchanged, and a gateway, or two
/// that compare their clients' counts, no longer see a sender's deficit
/// or a recipient's surplus once the slots have paid it.
#[derive(Debug, Default)]
pub(super) struct DeliveryBalance(AtomicI64);

impl DeliveryBalance {
    fn add(&self, delta: i64) {
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| {
                Some((b + delta).clamp(-MAX_BALANCE, MAX_BALANCE))
            });
    }

    /// A payload slot carried a packet that brings nothing back.
    pub(super) fn sent_one_way(&self) {
        self.add(1);
    }

    /// A delivery came that nothing of this session's asked for (a
    /// message, reply blocks, a reply through a block it handed out, or
    /// anything it cannot read).
    pub(super) fn received_unasked(&self) {
        self.add(-1);
    }

    /// A drop slot is due: `true` when it is to send cover that comes
    /// back instead, paying one owed delivery.
    pub(super) fn drop_slot_pays(&self) -> bool {
        self.0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| {
                (b > 0).then(|| b - 1)
            })
            .is_ok()
    }

    /// A payload slot with nothing real is due: `true` when it is to send
    /// a drop instead of cover, paying one surplus delivery.
    pub(super) fn cover_slot_pays(&self) -> bool {
        self.0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| {
                (b < 0).then(|| b + 1)
            })
            .is_ok()
    }

    /// Deliveries owed (positive) or in surplus (negative) now.
    #[cfg(test)]
    pub(super) fn get(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// What a slot sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sends {
    /// A real frame.
    Real,
    /// Payload-slot cover, which comes back.
    Cover,
    /// A loop, which comes back.
    Loop,
    /// A drop, which does not.
    Drop,
}

/// The slot `send` of the schedule: its kind (what the schedule drew),
/// what it sends and the real frame if any. A real frame that brings
/// nothing back is owed to the balance; a drop slot pays an owed delivery
/// with cover, a cover slot a surplus one with a drop
/// ([`DeliveryBalance`]).
pub(super) fn plan_slot(
    send: Send<Real>,
    balance: &DeliveryBalance,
) -> (SentKind, Sends, Option<Vec<u8>>) {
    match send {
        Send::Real(real) => {
            if !real.returns {
                balance.sent_one_way();
            }
            (SentKind::Real, Sends::Real, Some(real.frame))
        }
        Send::PayloadCover if balance.cover_slot_pays() => {
            (SentKind::PayloadCover, Sends::Drop, None)
        }
        Send::PayloadCover => (SentKind::PayloadCover, Sends::Cover, None),
        Send::Loop => (SentKind::Loop, Sends::Loop, None),
        Send::Drop | Send::NodeLoop if balance.drop_slot_pays() => {
            (SentKind::Drop, Sends::Cover, None)
        }
        Send::Drop | Send::NodeLoop => (SentKind::Drop, Sends::Drop, None),
    }
}

#[cfg(test)]
mod tests;
