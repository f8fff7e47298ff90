//! Reading a session's deliveries (`client.md` §2, §5): each carries a
//! random id, one this session gave a reply block (a service node's
//! answer, its own cover, a correspondent's reply) or else a forward
//! envelope sealed to it (a message, reply blocks, its own loop). A copy
//! (a gateway filing a delivery twice, or a reply block used a second
//! time) is dropped and counted, and whatever arrives that nothing of this
//! session asked for goes to the delivery balance (`cover.rs`).

use super::*;

/// What a delivery's id was waiting for, among this session's blocks.
enum Waiting {
    /// The answer to a service request.
    Request(AnswerTx),
    /// This session's own payload-slot cover.
    Cover,
    /// A reply in the conversation under this tag.
    Conversation(SenderTag),
}

/// What reads deliveries: the session's key for envelopes, its reply
/// tables (through `replenish`), its document and the ids seen.
pub(super) struct Reader {
    pub(super) key: Zeroizing<[u8; 32]>,
    pub(super) replenish: Replenish,
    pub(super) document: watch::Receiver<Arc<NetworkDocument>>,
    pub(super) seen: SeenIds,
}

/// The ids of the last [`SEEN_IDS`] deliveries, to drop copies.
#[derive(Default)]
pub(super) struct SeenIds {
    set: std::collections::HashSet<[u8; SURB_ID_LEN]>,
    order: std::collections::VecDeque<[u8; SURB_ID_LEN]>,
}

/// Forward delivery ids remembered (about 130 kB).
pub(super) const SEEN_IDS: usize = 4_096;

impl SeenIds {
    /// `false` when `id` was seen already; else remembers it (forgetting
    /// the oldest beyond [`SEEN_IDS`]).
    pub(super) fn insert(&mut self, id: [u8; SURB_ID_LEN]) -> bool {
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > SEEN_IDS
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }
}

impl Reader {
    /// Reads one delivery: what it carried for the reader, if anything.
    /// An id seen before is a copy, dropped and counted (`duplicates`): a
    /// forward delivery filed twice, or a reply through a block already
    /// used (the network's replay filters stop copies before a gateway;
    /// the gateway itself can file one twice). Ids are remembered for the
    /// last [`SEEN_IDS`] deliveries.
    pub(super) fn read(&mut self, stored: &Stored) -> Option<Received> {
        if let Some(received) = self.on_reply(stored) {
            self.seen.insert(stored.surb_id);
            return received;
        }
        if !self.seen.insert(stored.surb_id) {
            // A delivery nothing asked for, whatever else it is.
            self.replenish.balance.received_unasked();
            self.replenish.count(|st| st.duplicates += 1);
            return None;
        }
        self.on_forward(stored)
    }

    /// A payload that came through one of this session's reply blocks:
    /// `None` when its id is not one this session holds (a forward
    /// delivery, or a reply on a block used already or forgotten), else
    /// what it carried for the reader.
    pub(super) fn on_reply(&self, stored: &Stored) -> Option<Option<Received>> {
        let r = &self.replenish;
        // Which of this session's blocks the id names, if any: one look
        // at the tables.
        let (waiting, recovery) = {
            let mut t = r.replies.lock().ok()?;
            let id = &stored.surb_id;
            if let Some((recovery, answer)) = t.requests.remove(id) {
                (Waiting::Request(answer), recovery)
            } else if let Some(recovery) = t.cover.take(id) {
                (Waiting::Cover, recovery)
            } else {
                let (tag, recovery) = t.outstanding.take(id)?;
                (Waiting::Conversation(tag), recovery)
            }
        };
        let body = recovery
            .recover(&stored.payload)
            .ok()
            .and_then(|plain| decode_reply(&plain).ok().map(<[u8]>::to_vec));
        match (waiting, body) {
            // A service node's answer to a request of this session.
            (Waiting::Request(answer), Some(body)) => {
                let _ = answer.send(Ok(body));
                Some(None)
            }
            // A bad answer, not the end of the session: the request is
            // asked again on a fresh route.
            (Waiting::Request(answer), None) => {
                r.count(|st| st.undecodable += 1);
                let _ = answer.send(Err(NetError::BadAnswer(
                    "a reply that does not decode".into(),
                )));
                Some(None)
            }
            // This session's own payload-slot cover, back (`client.md` §4).
            (Waiting::Cover, Some(_)) => {
                r.count(|st| st.cover_returned += 1);
                Some(None)
            }
            (Waiting::Cover, None) => {
                r.count(|st| st.undecodable += 1);
                Some(None)
            }
            (Waiting::Conversation(_), None) => {
                r.balance.received_unasked();
                r.count(|st| st.undecodable += 1);
                Some(None)
            }
            (Waiting::Conversation(tag), Some(body)) => {
                r.balance.received_unasked();
                r.count(|st| {
                    st.received += 1;
                    st.replies_received += 1;
                });
                let (now, doc) = (unix_now(), self.document.borrow().clone());
                if let Ok(mut replies) = r.replies.lock() {
                    replies
                        .outstanding
                        .touch(&tag, now + 2 * doc.schedule.epoch_secs);
                }
                // A block was used: send its replacement now.
                r.run(&doc, now, doc.schedule.epoch_secs / 2, Some(tag));
                Some(Some(Received::Reply { tag, body }))
            }
        }
    }

    /// A forward payload: a message, a loop, or reply blocks.
    pub(super) fn on_forward(&self, stored: &Stored) -> Option<Received> {
        let r = &self.replenish;
        let Ok(plain) = envelope::open_delivery(&self.key, &stored.payload) else {
            // Neither under an id this session holds nor sealed to it.
            r.balance.received_unasked();
            r.count(|st| st.unknown_replies += 1);
            return None;
        };
        let plain = Plain::decode(&plain).ok();
        // Everything sealed to this session but its own loops came
        // unasked.
        if !matches!(plain, Some(Plain::Loop)) {
            r.balance.received_unasked();
        }
        let add = |tag, blocks: Vec<ReplyBlock>| {
            let n = blocks.len() as u64;
            let dropped = r
                .replies
                .lock()
                .map_or(n as usize, |mut replies| replies.pool.add(tag, blocks));
            r.count(|st| {
                st.blocks_received += n;
                st.blocks_dropped += dropped as u64;
            });
        };
        match plain {
            None => {
                r.count(|st| st.undecodable += 1);
                None
            }
            Some(Plain::Loop) => {
                r.count(|st| st.loops_returned += 1);
                None
            }
            Some(Plain::Message(body)) => {
                r.count(|st| st.received += 1);
                Some(Received::Message(body))
            }
            Some(Plain::Answerable { tag, blocks, body }) => {
                add(tag, blocks);
                r.count(|st| st.received += 1);
                Some(Received::Answerable { from: tag, body })
            }
            Some(Plain::MoreBlocks { tag, blocks }) => {
                add(tag, blocks);
                None
            }
        }
    }
}
