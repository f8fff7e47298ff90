//! Packet and reply-block building for a session: routes through the
//! layers, forward frames, reply blocks back to this client.

use super::*;

pub(super) fn core_now(started: tokio::time::Instant) -> mtos_mixnode::Instant {
    mtos_mixnode::Instant::ZERO + started.elapsed()
}

/// What a frame carries.
pub(super) enum Target<'a> {
    /// Envelope plaintext for a client.
    Client(&'a ClientAddress, &'a [u8]),
    /// A loop back to this session.
    Loop,
    /// A drop: to a random address at a service node, which discards it.
    Drop,
}

/// A fresh SURB id: random and never zero. Forward deliveries carry one
/// as replies do, so a gateway cannot sort its deliveries by id
/// (`client.md` §2).
pub(super) fn random_id<R: rand::Rng + ?Sized>(rng: &mut R) -> [u8; SURB_ID_LEN] {
    let mut id = [0u8; SURB_ID_LEN];
    while id == [0; SURB_ID_LEN] {
        rng.fill(&mut id[..]);
    }
    id
}

/// A frame from this session's gateway through one node per layer to
/// `target`, or `None` when the document lacks the nodes for it.
/// Deliveries to a mailbox (a message, a loop) carry a random id and a
/// raw payload that is an envelope and random padding, so they reach the
/// gateway looking like a reply (`client.md` §2).
pub(super) fn build<R: rand::Rng + CryptoRng + ?Sized>(
    rng: &mut R,
    doc: &NetworkDocument,
    me: &ClientAddress,
    target: Target<'_>,
) -> Option<Vec<u8>> {
    let (last, address, message, seal_to) = match target {
        Target::Client(to, plain) => (doc.node(&to.gateway)?, to.mailbox, plain.to_vec(), to.key),
        Target::Loop => (
            doc.node(&me.gateway)?,
            me.mailbox,
            Plain::Loop.encode().ok()?,
            me.key,
        ),
        Target::Drop => {
            // A drop ends at a service node, which discards it: no
            // gateway sees it, and its format is a request's.
            let last = doc.pick(rng, Position::Service)?;
            let route = doc.client_route(rng, &me.gateway, last)?;
            let mut key = [0u8; 32];
            rng.fill(&mut key[..]);
            let public =
                x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(key)).to_bytes();
            let mut address = [0u8; 32];
            rng.fill(&mut address[..]);
            let plain = Plain::Message(Vec::new()).encode().ok()?;
            let sealed = envelope::seal(rng, &public, &plain).ok()?;
            let destination = Destination {
                address,
                surb_id: [0; SURB_ID_LEN],
            };
            return doc.forward_frame(rng, &route, &destination, &sealed);
        }
    };
    let route = doc.client_route(rng, &me.gateway, last)?;
    let payload = envelope::seal_delivery(rng, &seal_to, &message).ok()?;
    let destination = Destination {
        address,
        surb_id: random_id(rng),
    };
    doc.delivery_frame(rng, &route, &destination, &payload)
}

/// A reply block to this session: from `first` (a recipient's gateway, or
/// nothing for a service node, which hands replies to layer 1 itself)
/// through one node per layer to this session's gateway and mailbox,
/// with a fresh non-zero SURB id. `None` when the document lacks a node
/// or its epoch ends too soon for the block to be usable.
pub(super) fn block_to_me<R: rand::Rng + CryptoRng + ?Sized>(
    rng: &mut R,
    doc: &NetworkDocument,
    me: &ClientAddress,
    first: Option<&NodeEntry>,
) -> Option<(ReplyBlock, [u8; SURB_ID_LEN], sphinx::SurbRecovery)> {
    let route = doc.reply_route(rng, first, &me.gateway)?;
    let id = random_id(rng);
    let (surb, recovery, _delays) = doc.reply_block(rng, &route, &me.mailbox, id)?;
    let expires = doc.reply_block_expires(route.len());
    (expires > unix_now()).then_some((
        ReplyBlock {
            epoch: doc.epoch,
            expires,
            surb,
        },
        id,
        recovery,
    ))
}

/// A reply block handed to a correspondent: from `first` (its gateway)
/// through one node per layer to this session, under the keys of key
/// epoch `epoch` (this document's, or the next, which nodes list ahead),
/// usable until that epoch ends (`client.md` §5). `None` when the
/// document lacks a node or key for it, or the epoch is over.
pub(super) fn conversation_block<R: rand::Rng + CryptoRng + ?Sized>(
    rng: &mut R,
    doc: &NetworkDocument,
    me: &ClientAddress,
    first: &NodeEntry,
    epoch: u32,
) -> Option<(ReplyBlock, [u8; SURB_ID_LEN], sphinx::SurbRecovery)> {
    if epoch != doc.epoch && epoch != doc.epoch.saturating_add(1) {
        return None;
    }
    let expires = conversation_expires(&doc.schedule, epoch);
    if expires <= unix_now() {
        return None;
    }
    // A node listing no key for the next epoch yet: another route.
    for _ in 0..4 {
        let route = doc.reply_route(rng, Some(first), &me.gateway)?;
        let id = random_id(rng);
        if let Some((surb, recovery, _)) = doc.reply_block_for(rng, &route, &me.mailbox, id, epoch)
        {
            return Some((
                ReplyBlock {
                    epoch,
                    expires,
                    surb,
                },
                id,
                recovery,
            ));
        }
    }
    None
}

/// `n` reply blocks for key epoch `epoch` through which `to` can answer
/// this session, each starting at `to`'s gateway (`client.md` §5).
pub(super) fn make_blocks<R: rand::Rng + CryptoRng + ?Sized>(
    rng: &mut R,
    doc: &NetworkDocument,
    me: &ClientAddress,
    to: &ClientAddress,
    n: usize,
    epoch: u32,
) -> Option<Vec<(ReplyBlock, [u8; SURB_ID_LEN], sphinx::SurbRecovery)>> {
    let first = doc.node(&to.gateway)?;
    (0..n)
        .map(|_| conversation_block(rng, doc, me, first, epoch))
        .collect()
}

pub(super) struct Builder {
    pub(super) messages: mpsc::Receiver<Outgoing>,
    pub(super) frames: mpsc::Sender<Real>,
    pub(super) document: watch::Receiver<Arc<NetworkDocument>>,
    pub(super) me: ClientAddress,
    pub(super) replies: SharedReplies,
    pub(super) stats: Arc<Mutex<SessionStats>>,
    pub(super) rng: StdRng,
}

impl Builder {
    /// A frame to `to` carrying `n` new reply blocks for key epoch
    /// `epoch` under `tag` (and `body`, or nothing for a top-up). The
    /// blocks are recorded before the frame exists, so a reply cannot
    /// outrun its block's record.
    pub(super) fn with_blocks(
        &mut self,
        doc: &NetworkDocument,
        to: &ClientAddress,
        tag: SenderTag,
        (n, epoch): (usize, u32),
        body: Option<Vec<u8>>,
    ) -> Option<Vec<u8>> {
        let made = make_blocks(&mut self.rng, doc, &self.me, to, n, epoch);
        let blocks = {
            let mut r = self.replies.lock().ok()?;
            let room = r.outstanding.has_room(n, unix_now());
            match made.filter(|_| room) {
                None => {
                    r.outstanding.unplan(&tag, epoch, n);
                    return None;
                }
                Some(made) => made
                    .into_iter()
                    .filter_map(|(block, id, recovery)| {
                        r.outstanding
                            .record(tag, id, recovery, block.expires, epoch)
                            .then_some(block)
                    })
                    .collect::<Vec<_>>(),
            }
        };
        if blocks.is_empty() {
            return None;
        }
        if let Ok(mut st) = self.stats.lock() {
            st.blocks_sent += blocks.len() as u64;
            st.top_ups_sent += u64::from(body.is_none());
        }
        let plain = match body {
            Some(body) => Plain::Answerable { tag, blocks, body },
            None => Plain::MoreBlocks { tag, blocks },
        }
        .encode()
        .ok()?;
        build(&mut self.rng, doc, &self.me, Target::Client(to, &plain))
    }
}

/// Builds real messages' frames as they are queued, beside the send loop,
/// so a burst of messages does not hold up the schedule.
pub(super) async fn build_loop(mut b: Builder) {
    while let Some(item) = b.messages.recv().await {
        let doc = b.document.borrow().clone();
        // Only a request's answer comes back for a real frame.
        let returns = matches!(item, Outgoing::Frame { returns: true, .. });
        let frame = match item {
            Outgoing::Frame { frame, .. } => Some(frame),
            Outgoing::Message(to, body) => Plain::Message(body)
                .encode()
                .ok()
                .and_then(|p| build(&mut b.rng, &doc, &b.me, Target::Client(&to, &p))),
            Outgoing::Answerable {
                to,
                tag,
                body,
                blocks,
                epoch,
            } => b.with_blocks(&doc, &to, tag, (blocks, epoch), Some(body)),
            Outgoing::MoreBlocks {
                to,
                tag,
                blocks,
                epoch,
            } => b.with_blocks(&doc, &to, tag, (blocks, epoch), None),
        };
        match frame {
            Some(frame) => {
                if b.frames.send(Real { frame, returns }).await.is_err() {
                    return;
                }
            }
            None => {
                if let Ok(mut st) = b.stats.lock() {
                    st.unsendable += 1;
                }
            }
        }
    }
}
