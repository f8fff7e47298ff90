//! A gateway's mailboxes (`specs/client.md`): payloads whose final hop is
//! this gateway, filed under the mailbox id in their Sphinx destination,
//! and the fixed-size delivery frames the gateway sends each connected
//! client at a constant rate, real or dummy. Sans-IO.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};

use mtos_crypto::geometry::SPHINX_PAYLOAD_SIZE;
use mtos_crypto::sphinx::SURB_ID_LEN;

/// A delivery frame: kind (0 dummy, 1 real), SURB id, Sphinx payload.
pub const DELIVERY_FRAME_SIZE: usize = 1 + SURB_ID_LEN + SPHINX_PAYLOAD_SIZE;
const DUMMY: u8 = 0;
const REAL: u8 = 1;

/// A payload waiting for its client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The SURB id of the packet's destination (zero for forward
    /// messages).
    pub surb_id: [u8; SURB_ID_LEN],
    /// The Sphinx payload as the final hop got it.
    pub payload: Vec<u8>,
}

/// Why a delivery frame was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// Not one frame long.
    #[error("delivery frame of {0} bytes, expected {DELIVERY_FRAME_SIZE}")]
    WrongSize(usize),
    /// An unknown kind byte.
    #[error("unknown delivery kind {0}")]
    Kind(u8),
}

/// How long a mailbox outlives its last session, so a client that
/// reconnects finds what arrived meanwhile (seconds).
pub const MAILBOX_KEEP_SECS: u64 = 3_600;
/// Mailboxes registered at once (open sessions and recently closed ones).
pub const MAX_REGISTERED: usize = 100_000;

/// What became of a payload offered to [`Mailboxes::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filed {
    /// Stored for its client.
    Stored,
    /// Stored for its client in a full gateway, in the place of the
    /// oldest payload of the mailbox holding the most, which was dropped.
    Displacing,
    /// Dropped: the mailbox or the gateway is full.
    Full,
    /// Dropped: no session opened this mailbox within
    /// [`MAILBOX_KEEP_SECS`] (a sender cannot fill a gateway with
    /// payloads for mailboxes nobody reads).
    NoSession,
}

impl Filed {
    /// Its metric label.
    pub fn name(self) -> &'static str {
        match self {
            Filed::Stored => "stored",
            Filed::Displacing => "displacing",
            Filed::Full => "full",
            Filed::NoSession => "no_session",
        }
    }
}

/// A mailbox a session opened: how many sessions hold it open, and when
/// it lapses once none does (Unix seconds).
#[derive(Debug, Clone, Copy)]
struct Registration {
    open: usize,
    until: u64,
}

/// Every mailbox of a gateway, bounded per mailbox and in total, and
/// fair between mailboxes: when the total is reached, a payload for a
/// mailbox holding fewer than the fullest takes the place of the fullest
/// one's oldest, so one party that fills a mailbox (its own, or one it
/// sends to) cannot keep every other client's deliveries out. Among
/// equally full mailboxes the one displaced is drawn by a key this
/// gateway keeps secret, so nobody can choose mailbox ids that always
/// lose the tie to others'. Only mailboxes a client session opened (and
/// kept for [`MAILBOX_KEEP_SECS`] after it closed) take payloads; when
/// [`MAX_REGISTERED`] are registered, the most recently closed
/// registration makes room for a new session, so a party cycling
/// sessions evicts its own registrations, not those of clients that went
/// offline earlier and will come back for what waits for them.
#[derive(Debug)]
pub struct Mailboxes {
    boxes: HashMap<[u8; 32], VecDeque<Stored>>,
    registered: HashMap<[u8; 32], Registration>,
    /// (payloads held, keyed tie-break, mailbox) of every non-empty
    /// mailbox.
    sizes: BTreeSet<(usize, u64, [u8; 32])>,
    /// The key of the tie-break.
    salt: RandomState,
    /// (lapses at, mailbox) of every registration no session holds open.
    closed: BTreeSet<(u64, [u8; 32])>,
    total: usize,
    per_box: usize,
    max_total: usize,
    max_registered: usize,
}

impl Mailboxes {
    /// Empty mailboxes holding at most `per_box` payloads each and
    /// `max_total` in all, [`MAX_REGISTERED`] registered.
    pub fn new(per_box: usize, max_total: usize) -> Self {
        Self::with_registry(per_box, max_total, MAX_REGISTERED)
    }

    /// [`Mailboxes::new`] with at most `max_registered` registrations.
    pub fn with_registry(per_box: usize, max_total: usize, max_registered: usize) -> Self {
        Self {
            boxes: HashMap::new(),
            registered: HashMap::new(),
            sizes: BTreeSet::new(),
            salt: RandomState::new(),
            closed: BTreeSet::new(),
            total: 0,
            per_box: per_box.max(1),
            max_total: max_total.max(1),
            max_registered: max_registered.max(1),
        }
    }

    /// A session opened `mailbox` at `now`. When the registry is full,
    /// lapsed registrations go, then the most recently closed one (with
    /// what it held); `false` (nothing registered) only when every
    /// registration has a session open.
    pub fn open(&mut self, mailbox: [u8; 32], now: u64) -> bool {
        if !self.registered.contains_key(&mailbox) && self.registered.len() >= self.max_registered {
            self.expire(now);
            if self.registered.len() >= self.max_registered {
                let Some(&(_, newest)) = self.closed.last() else {
                    return false;
                };
                self.forget(&newest);
            }
        }
        let r = self.registered.entry(mailbox).or_insert(Registration {
            open: 0,
            until: now,
        });
        if r.open == 0 {
            self.closed.remove(&(r.until, mailbox));
        }
        r.open += 1;
        true
    }

    /// A session of `mailbox` closed at `now`: the mailbox lapses
    /// [`MAILBOX_KEEP_SECS`] later unless another session opens it.
    pub fn close(&mut self, mailbox: &[u8; 32], now: u64) {
        if let Some(r) = self.registered.get_mut(mailbox) {
            if r.open == 0 {
                self.closed.remove(&(r.until, *mailbox));
            }
            r.open = r.open.saturating_sub(1);
            r.until = now.saturating_add(MAILBOX_KEEP_SECS);
            if r.open == 0 {
                self.closed.insert((r.until, *mailbox));
            }
        }
    }

    /// Drops lapsed mailboxes and what they held; returns how many
    /// payloads went.
    pub fn expire(&mut self, now: u64) -> usize {
        let mut dropped = 0;
        while let Some(&(until, m)) = self.closed.first() {
            if until > now {
                break;
            }
            dropped += self.forget(&m);
        }
        dropped
    }

    /// Removes a registration and its mailbox; how many payloads went.
    fn forget(&mut self, mailbox: &[u8; 32]) -> usize {
        if let Some(r) = self.registered.remove(mailbox)
            && r.open == 0
        {
            self.closed.remove(&(r.until, *mailbox));
        }
        match self.boxes.remove(mailbox) {
            Some(b) => {
                self.sizes.remove(&self.size_key(b.len(), mailbox));
                self.total -= b.len();
                b.len()
            }
            None => 0,
        }
    }

    /// Files a payload for `mailbox`; [`Filed::Stored`] or
    /// [`Filed::Displacing`] when it was kept, anything else means it was
    /// dropped (the driver counts it).
    pub fn push(&mut self, mailbox: [u8; 32], stored: Stored) -> Filed {
        if !self.registered.contains_key(&mailbox) {
            return Filed::NoSession;
        }
        let own = self.boxes.get(&mailbox).map_or(0, VecDeque::len);
        if stored.payload.len() != SPHINX_PAYLOAD_SIZE || own >= self.per_box {
            return Filed::Full;
        }
        let mut filed = Filed::Stored;
        if self.total >= self.max_total {
            // Room only from a mailbox holding more than this one would.
            let Some(&(most, _, fullest)) = self.sizes.last() else {
                return Filed::Full;
            };
            if own + 1 >= most {
                return Filed::Full;
            }
            self.pop(&fullest);
            filed = Filed::Displacing;
        }
        self.insert(mailbox, stored, false);
        filed
    }

    /// Puts back, as the oldest of its mailbox, a payload taken but not
    /// delivered (the session broke while it was written); never in
    /// another mailbox's place: [`Filed::Full`] when there is no room.
    pub fn put_back(&mut self, mailbox: [u8; 32], stored: Stored) -> Filed {
        if !self.registered.contains_key(&mailbox) {
            return Filed::NoSession;
        }
        let own = self.boxes.get(&mailbox).map_or(0, VecDeque::len);
        if own >= self.per_box || self.total >= self.max_total {
            return Filed::Full;
        }
        self.insert(mailbox, stored, true);
        Filed::Stored
    }

    /// Adds a payload to `mailbox`, as its oldest (`front`) or newest,
    /// keeping the books; the caller checked the room.
    fn insert(&mut self, mailbox: [u8; 32], stored: Stored, front: bool) {
        let tie = self.salt.hash_one(mailbox);
        let b = self.boxes.entry(mailbox).or_default();
        if !b.is_empty() {
            self.sizes.remove(&(b.len(), tie, mailbox));
        }
        if front {
            b.push_front(stored);
        } else {
            b.push_back(stored);
        }
        self.sizes.insert((b.len(), tie, mailbox));
        self.total += 1;
    }

    fn size_key(&self, len: usize, mailbox: &[u8; 32]) -> (usize, u64, [u8; 32]) {
        (len, self.salt.hash_one(mailbox), *mailbox)
    }

    /// The oldest payload of a mailbox.
    pub fn pop(&mut self, mailbox: &[u8; 32]) -> Option<Stored> {
        let b = self.boxes.get_mut(mailbox)?;
        let before = b.len();
        let out = b.pop_front();
        let after = b.len();
        if after == 0 {
            self.boxes.remove(mailbox);
        }
        self.sizes.remove(&self.size_key(before, mailbox));
        if after > 0 {
            self.sizes.insert(self.size_key(after, mailbox));
        }
        if out.is_some() {
            self.total -= 1;
        }
        out
    }

    /// Payloads held in all.
    pub fn held(&self) -> usize {
        self.total
    }

    /// Mailboxes registered.
    pub fn registered(&self) -> usize {
        self.registered.len()
    }
}

/// The frame for one delivery slot: the payload, or a dummy.
pub fn encode_delivery(stored: Option<&Stored>) -> Vec<u8> {
    let mut frame = vec![0u8; DELIVERY_FRAME_SIZE];
    if let Some(s) = stored {
        frame[0] = REAL;
        frame[1..1 + SURB_ID_LEN].copy_from_slice(&s.surb_id);
        frame[1 + SURB_ID_LEN..].copy_from_slice(&s.payload);
    } else {
        frame[0] = DUMMY;
    }
    frame
}

/// Parses a delivery frame: `None` for a dummy.
pub fn decode_delivery(frame: &[u8]) -> Result<Option<Stored>, DeliveryError> {
    if frame.len() != DELIVERY_FRAME_SIZE {
        return Err(DeliveryError::WrongSize(frame.len()));
    }
    match frame[0] {
        DUMMY => Ok(None),
        REAL => {
            let mut surb_id = [0u8; SURB_ID_LEN];
            surb_id.copy_from_slice(&frame[1..1 + SURB_ID_LEN]);
            Ok(Some(Stored {
                surb_id,
                payload: frame[1 + SURB_ID_LEN..].to_vec(),
            }))
        }
        k => Err(DeliveryError::Kind(k)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(b: u8) -> Stored {
        Stored {
            surb_id: [b; SURB_ID_LEN],
            payload: vec![b; SPHINX_PAYLOAD_SIZE],
        }
    }

    #[test]
    fn mailboxes_are_fifo_and_bounded() {
        let mut m = Mailboxes::new(2, 3);
        for b in 1..=3 {
            assert!(m.open([b; 32], 0));
        }
        assert_eq!(m.push([1; 32], stored(1)), Filed::Stored);
        assert_eq!(m.push([1; 32], stored(2)), Filed::Stored);
        assert_eq!(m.push([1; 32], stored(3)), Filed::Full, "per mailbox");
        assert_eq!(m.push([2; 32], stored(4)), Filed::Stored);
        // Full in total: mailbox 3 (empty) takes the place of mailbox 1's
        // oldest; mailbox 2 (one, as many as it would hold) may not.
        assert_eq!(m.push([2; 32], stored(6)), Filed::Full, "in total");
        assert_eq!(m.push([3; 32], stored(5)), Filed::Displacing);
        assert_eq!(m.pop(&[3; 32]), Some(stored(5)));
        assert_eq!(
            m.push(
                [3; 32],
                Stored {
                    surb_id: [0; 16],
                    payload: vec![0; 10]
                }
            ),
            Filed::Full
        );
        assert_eq!(m.pop(&[1; 32]), Some(stored(2)));
        assert_eq!(m.pop(&[1; 32]), None);
        assert_eq!(m.held(), 1);
        assert_eq!(m.push([3; 32], stored(5)), Filed::Stored);
    }

    #[test]
    fn one_party_filling_the_gateway_does_not_keep_others_deliveries_out() {
        // 100 payloads in all, 80 a mailbox: a flood into mailbox 0 (one
        // party's, at its per-mailbox bound), then a trickle to ten
        // others, each of which still gets all of its own.
        let mut m = Mailboxes::new(80, 100);
        for b in 0..=10 {
            assert!(m.open([b; 32], 0));
        }
        let mut full_flood = 0;
        for i in 0..1_000u32 {
            let filed = m.push([0; 32], stored(i as u8));
            full_flood += u32::from(filed == Filed::Full);
        }
        assert_eq!(full_flood, 920);
        for round in 0..3u8 {
            for b in 1..=10u8 {
                let filed = m.push([b; 32], stored(round));
                assert!(
                    matches!(filed, Filed::Stored | Filed::Displacing),
                    "{filed:?}"
                );
                // The flood goes on; it never takes their places back.
                assert_eq!(m.push([0; 32], stored(0)), Filed::Full);
            }
        }
        assert_eq!(m.held(), 100);
        for b in 1..=10u8 {
            for round in 0..3 {
                assert_eq!(m.pop(&[b; 32]), Some(stored(round)));
            }
        }
        assert_eq!(m.held(), 70);
    }

    #[test]
    fn cycling_sessions_cannot_lock_new_clients_out_of_the_registry() {
        let mut m = Mailboxes::with_registry(10, 100, 50);
        // An honest client's session stays open throughout; another's
        // closed at the start, with a payload waiting for its return.
        assert!(m.open([200; 32], 0));
        assert_eq!(m.push([200; 32], stored(1)), Filed::Stored);
        assert!(m.open([199; 32], 0));
        assert_eq!(m.push([199; 32], stored(3)), Filed::Stored);
        m.close(&[199; 32], 0);
        // A party opens and closes sessions for fresh mailboxes as fast as
        // it can, for most of an hour.
        for i in 1..3_000u32 {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&i.to_be_bytes());
            id[31] = 1;
            assert!(m.open(id, u64::from(i)));
            m.close(&id, u64::from(i));
            assert!(m.registered() <= 50);
        }
        // A new client still gets in, the open one keeps its mailbox, and
        // the registrations that went were the party's own, the latest
        // closed: the client that went offline before it all comes back
        // within the keep time and finds what waited for it.
        assert!(m.open([201; 32], 3_000));
        assert_eq!(m.push([201; 32], stored(2)), Filed::Stored);
        assert_eq!(m.pop(&[200; 32]), Some(stored(1)));
        assert!(m.open([199; 32], 3_000));
        assert_eq!(m.pop(&[199; 32]), Some(stored(3)));
        // A payload put back goes first, and never displaces another.
        assert_eq!(m.push([201; 32], stored(4)), Filed::Stored);
        assert_eq!(m.put_back([201; 32], stored(5)), Filed::Stored);
        assert_eq!(m.pop(&[201; 32]), Some(stored(5)));
        let mut full = Mailboxes::new(10, 1);
        assert!(full.open([1; 32], 0) && full.open([2; 32], 0));
        assert_eq!(full.push([1; 32], stored(1)), Filed::Stored);
        assert_eq!(full.put_back([2; 32], stored(2)), Filed::Full);
        assert_eq!(full.held(), 1);
        // With every registration held open, a new one is refused.
        let mut all_open = Mailboxes::with_registry(10, 100, 2);
        assert!(all_open.open([1; 32], 0) && all_open.open([2; 32], 0));
        assert!(!all_open.open([3; 32], 0));
    }

    #[test]
    fn only_mailboxes_with_a_recent_session_take_payloads() {
        let mut m = Mailboxes::new(10, 100);
        // Nobody opened this one: a sender cannot fill the gateway with
        // payloads for mailboxes nobody reads.
        assert_eq!(m.push([7; 32], stored(1)), Filed::NoSession);
        assert_eq!(m.held(), 0);

        assert!(m.open([7; 32], 100));
        assert_eq!(m.push([7; 32], stored(1)), Filed::Stored);
        // Two sessions hold it; one closes, it stays open.
        assert!(m.open([7; 32], 100));
        m.close(&[7; 32], 200);
        assert_eq!(m.expire(200 + MAILBOX_KEEP_SECS), 0);
        // The last closes: payloads wait for a reconnect for the keep
        // time, then go with the mailbox.
        m.close(&[7; 32], 300);
        assert_eq!(m.push([7; 32], stored(2)), Filed::Stored);
        assert_eq!(m.expire(300 + MAILBOX_KEEP_SECS - 1), 0);
        assert_eq!(m.held(), 2);
        assert_eq!(m.expire(300 + MAILBOX_KEEP_SECS), 2);
        assert_eq!(m.held(), 0);
        assert_eq!(m.push([7; 32], stored(3)), Filed::NoSession);
    }

    #[test]
    fn real_and_dummy_frames_have_one_size() {
        let real = encode_delivery(Some(&stored(9)));
        let dummy = encode_delivery(None);
        assert_eq!(real.len(), DELIVERY_FRAME_SIZE);
        assert_eq!(dummy.len(), DELIVERY_FRAME_SIZE);
        assert_eq!(decode_delivery(&real).unwrap(), Some(stored(9)));
        assert_eq!(decode_delivery(&dummy).unwrap(), None);
        let mut bad = dummy.clone();
        bad[0] = 7;
        assert_eq!(decode_delivery(&bad), Err(DeliveryError::Kind(7)));
        assert!(decode_delivery(&dummy[1..]).is_err());
    }
}
