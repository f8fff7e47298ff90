//! A mix's loop as a storage request (`specs/mixing.md` §5): the loop
//! goes onward through the layers after its mix to a service node as a
//! poll probe of a decoy window, and the service node's answer comes back
//! through a reply block over the layers before the mix. Every hop sees
//! what client traffic shows it (a packet from the previous layer to the
//! next, a request, a reply from a service node); the service node sees a
//! probe of a window nobody writes, as a follower's decoy or quiet feed
//! looks to it.
//!
//! A loop that crossed a gateway as a middle hop, as loops once did, was
//! the only traffic a gateway ever forwarded to layer 1 from layer 3: the
//! gateway knew each such packet for a node's cover, and with layer 1
//! could set it apart from clients' packets.

use mtos_crypto::feed::{decoy_feed_key, feed_slot_locator};
use mtos_crypto::item::Locator;
use mtos_crypto::sphinx::{Destination, SURB_ID_LEN};
use rand::RngExt;

use super::LoopId;
use crate::directory::{NetworkDocument, NodeEntry};
use crate::engine::Transmit;
use crate::service::{Op, PROBE_WINDOW, ReplyBlock, Request};

/// Decoy feeds a node keeps for its loops' probes. At the default λM of
/// one loop a second, spread over them, each window is asked about once
/// a minute, as a feed polled every minute is.
pub const NODE_DECOYS: usize = 64;

/// The decoy feeds whose windows a node's loops probe: feed keys nobody
/// holds the secret of, drawn as every feed key is
/// ([`decoy_feed_key`]), kept for the node's run, so that each window
/// recurs as a quiet feed's does instead of appearing once.
#[derive(Debug, Clone)]
pub struct LoopDecoys {
    feeds: Vec<[u8; 32]>,
}

impl LoopDecoys {
    /// [`NODE_DECOYS`] new decoy feeds.
    pub fn new<R: rand::CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self {
            feeds: (0..NODE_DECOYS).map(|_| decoy_feed_key(rng)).collect(),
        }
    }

    /// The window (slots 0 to [`PROBE_WINDOW`] − 1) of one of the decoys,
    /// drawn uniformly.
    pub fn window<R: rand::Rng + ?Sized>(&self, rng: &mut R) -> Option<Vec<Locator>> {
        let feed = self
            .feeds
            .get(rng.random_range(0..self.feeds.len().max(1)))?;
        (0..PROBE_WINDOW as u64)
            .map(|n| feed_slot_locator(feed, n).ok())
            .collect()
    }
}

/// The frame of a mix's loop `id` over `route` (from
/// [`NodeLoops::poll_send`](super::NodeLoops::poll_send)) that turns at
/// `route[turn]`, a service node: a probe of `window` with a reply block
/// over `route[turn + 1..]`, which ends at the mix (`me`, its key) with
/// the loop's id as SURB id. `None` when a node lacks a key for the epoch,
/// the window is not [`PROBE_WINDOW`] locators, or the block would expire
/// by `unix_now` (Unix seconds).
#[allow(clippy::too_many_arguments)]
pub fn request_frame<R: rand::Rng + mtos_crypto::CryptoRng + ?Sized>(
    rng: &mut R,
    doc: &NetworkDocument,
    route: &[&NodeEntry],
    turn: usize,
    me: &[u8; 32],
    id: LoopId,
    window: &[Locator],
    unix_now: u64,
) -> Option<Transmit> {
    if window.len() != PROBE_WINDOW {
        return None;
    }
    let (forward, back) = route.split_at_checked(turn.checked_add(1)?)?;
    let service = forward.last()?;
    if back.last().map(|n| n.key) != Some(*me) {
        return None;
    }
    let (surb, _recovery, _delays) = doc.reply_block(rng, back, me, id)?;
    // The expiry a client's block from a service node has (over the
    // layers and its gateway), not one computed from this block's fewer
    // hops, which would tell the service node a mix's loop, and its layer.
    let expires = doc.reply_block_expires(usize::from(doc.layers) + 1);
    if expires <= unix_now {
        return None;
    }
    let (first, more) = window.split_first()?;
    let mut request_id = [0u8; 16];
    rng.fill(&mut request_id[..]);
    let request = Request {
        id: request_id,
        locator: *first,
        op: Op::Probe(more.to_vec()),
        reply: ReplyBlock {
            epoch: doc.epoch,
            expires,
            surb,
        },
    }
    .encode()
    .ok()?;
    let destination = Destination {
        address: service.key,
        surb_id: [0; SURB_ID_LEN],
    };
    let frame = doc.forward_frame(rng, forward, &destination, &request)?;
    Some(Transmit {
        next: forward.first()?.address(),
        frame,
    })
}

#[cfg(test)]
mod tests;
