//! Payload-slot cover that comes back as a reply (`client.md` §4): an
//! empty payload slot sends a packet through one of this session's own
//! reply blocks, from its gateway through every layer back to it. So
//! every payload slot, real or not, brings one delivery back (a request
//! its answer, cover itself), and neither the kind nor the count of a
//! client's deliveries tells its gateway how much it fetches or stores.

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
