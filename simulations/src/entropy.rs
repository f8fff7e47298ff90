//! Anonymity of tagged messages: how uncertain a global passive adversary
//! (it sees every link) is about where a tagged message leaves the
//! network, and to whom.
//!
//! Mass tracking, after the Loopix simulations: a tagged message starts
//! with probability mass 1 on the packet its sender hands to its gateway
//! (the adversary sees that link). A node keeps one pool per role: the
//! packets it will forward and the packets it will deliver (a provider is
//! an ingress towards layer 1 and an egress to its mailboxes; the
//! adversary sees which link a packet came in on and which way one
//! leaves, so it never mixes the two). Departures from a pool are
//! memoryless under Poisson mixing (and uniformly random in a pool
//! flush), so each packet leaving a pool of `n` packets carries `M/n` of
//! the pool's mass `M` for the tag, and the pool keeps `M − M/n`. The
//! mass that reaches the network's exits (deliveries at exit providers)
//! is the adversary's distribution over exit events for the tagged
//! message; mass on a packet a link loses or a node drops is lost, and
//! the exit distribution is taken given delivery (divided by the mass
//! that exited). Its Shannon entropy is the message's entropy and `2^H`
//! its effective anonymity set size; grouped by recipient and by exit
//! node it gives the receiver entropies. Formulas:
//! `specs/simulation.md` §2.

use std::collections::BTreeMap;

pub mod carried;

pub use carried::{Carried, SenderView, Trackers};

/// A pool's remainder below this leaves whole with the next departure
/// (it cannot change H by more than ~1e-9).
const NEGLIGIBLE: f64 = 1e-12;

/// A tag is done once this much of its mass has exited or been lost.
const DONE: f64 = 1.0 - 1e-9;

/// A tag still in flight at the end of a run is measured if at least
/// this much of its mass has exited or been lost.
const MEASURED: f64 = 0.99;

/// Per-tag masses carried by one packet or held by one pool.
pub type Masses = Vec<(u32, f64)>;

/// Which of a node's two pools a held packet is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// It will be sent on to another node.
    Forward,
    /// It will be delivered here (an exit event).
    Deliver,
}

/// Where a delivered packet went: its recipient (a client's mailbox;
/// `None` for what the exit provider discards: drop cover, its own node
/// loops) and the provider it left the network at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitPoint {
    /// The client whose mailbox it went to.
    pub recipient: Option<u32>,
    /// The exit provider's node number.
    pub node: u32,
}

/// One tagged message's result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TagResult {
    /// The tag.
    pub tag: u32,
    /// Entropy of its exit-event distribution given delivery, bits.
    pub entropy_bits: f64,
    /// Entropy of its distribution over recipients given delivery to a
    /// mailbox, bits (what an adversary holding the exit providers'
    /// mailboxes, which knows what they discard, is left with); NaN when
    /// none of its mass reached a mailbox.
    pub receiver_bits: f64,
    /// Entropy of its distribution over exit nodes given delivery, bits
    /// (what a global passive adversary that holds no provider learns of
    /// the receiving end: which provider's mailboxes, or which mix's own
    /// loops).
    pub exit_node_bits: f64,
    /// Mass that reached an exit.
    pub exited_mass: f64,
    /// Mass lost with packets links lost or nodes dropped.
    pub lost_mass: f64,
    /// Mass on packets a mix took in as its own returning node loops:
    /// with the pools kept by role the adversary knows these are not the
    /// message (ruled out, like lost mass).
    pub ruled_out_mass: f64,
    /// What the distribution gives the truth, once the message itself
    /// was delivered.
    pub truth: Option<Truth>,
}

/// What a tag's distribution gives its own message's delivery.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Truth {
    /// The share of the delivered mass on the true recipient: the
    /// adversary's posterior that the message went to whom it went.
    pub recipient_share: f64,
    /// The true recipient's rank among the recipients by mass (1: the
    /// adversary's best guess is right; ties count against it).
    pub recipient_rank: u32,
    /// The tag's own mass on the packet that was its message
    /// (unnormalised).
    pub own_mass: f64,
    /// The paired tag's mass on that packet (tags `2j` and `2j + 1` pair
    /// up; unnormalised).
    pub partner_mass: f64,
    /// What the packet's sender masses say of its sender (with
    /// `anonymity.sender_entropy`).
    pub sender: Option<SenderView>,
}

#[derive(Debug, Default, Clone)]
struct Tag {
    /// `−Σ q log2 q` over exit events (unnormalised).
    sum: f64,
    exited: f64,
    lost: f64,
    ruled_out: f64,
    recipients: BTreeMap<u32, f64>,
    exit_nodes: BTreeMap<u32, f64>,
    /// The true recipient, the tag's own mass on its message's packet,
    /// its partner's, and the sender view.
    truth: Option<(u32, f64, f64, Option<SenderView>)>,
}

impl Tag {
    fn out(&self) -> f64 {
        self.exited + self.lost + self.ruled_out
    }

    fn done(&self) -> bool {
        self.out() > DONE
    }

    /// `None` when no mass exited (the message was lost).
    fn result(&self, tag: u32) -> Option<TagResult> {
        let e = self.exited;
        (e > 0.0).then(|| TagResult {
            tag,
            // −Σ (q/E) log2(q/E) = (−Σ q log2 q)/E + log2 E.
            entropy_bits: (self.sum / e + e.log2()).max(0.0),
            // None of its mass reached a mailbox: no receiver entropy
            // (NaN, left out of the means), not 0 bits.
            receiver_bits: match self.recipients.values().sum::<f64>() {
                m if m > 0.0 => grouped_entropy(&self.recipients, m),
                _ => f64::NAN,
            },
            exit_node_bits: grouped_entropy(&self.exit_nodes, e),
            exited_mass: e,
            lost_mass: self.lost,
            ruled_out_mass: self.ruled_out,
            truth: self.truth.map(|(recipient, own, partner, sender)| {
                let mailboxes: f64 = self.recipients.values().sum();
                let (mine, rank) =
                    truth_rank(self.recipients.iter().map(|(r, m)| (*r, *m)), recipient);
                Truth {
                    recipient_share: if mailboxes > 0.0 {
                        mine / mailboxes
                    } else {
                        0.0
                    },
                    recipient_rank: rank,
                    own_mass: own,
                    partner_mass: partner,
                    sender,
                }
            }),
        })
    }
}

/// Entropy of the groups' masses divided by `total`, bits.
fn grouped_entropy(groups: &BTreeMap<u32, f64>, total: f64) -> f64 {
    entropy_of(groups.values().copied(), total)
}

/// Entropy of `masses` divided by `total`, bits.
pub(crate) fn entropy_of(masses: impl Iterator<Item = f64>, total: f64) -> f64 {
    let h: f64 = masses
        .map(|m| m / total)
        .filter(|p| *p > 0.0)
        .map(|p| -p * p.log2())
        .sum();
    h.max(0.0)
}

/// The mass on `truth` among `masses` and its rank by mass (1: the
/// most; ties count against it; with no mass on it, every one with some
/// ranks ahead, and at least one).
pub(crate) fn truth_rank(
    masses: impl Iterator<Item = (u32, f64)> + Clone,
    truth: u32,
) -> (f64, u32) {
    let mine = masses
        .clone()
        .find(|(k, _)| *k == truth)
        .map_or(0.0, |(_, m)| m);
    let ahead = match mine > 0.0 {
        true => masses.filter(|(k, m)| *k != truth && *m >= mine).count(),
        false => masses.count().max(1),
    };
    (
        mine,
        u32::try_from(ahead).unwrap_or(u32::MAX).saturating_add(1),
    )
}

/// What a run's tags came to.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct EntropyOutcome {
    /// Measured tags, by tag.
    pub tags: Vec<TagResult>,
    /// Tags whose whole mass was lost (nothing to measure).
    pub wholly_lost: u32,
    /// Tags with less than 99% of their mass out at the end of the run.
    pub unfinished: u32,
}

/// Tracks the tagged messages' masses through the nodes' pools.
#[derive(Debug, Default)]
pub struct EntropyTracker {
    pools: BTreeMap<(u32, Role), BTreeMap<u32, f64>>,
    /// At nodes the adversary holds: each packet's own masses, by packet.
    exact: BTreeMap<(u32, u64), Masses>,
    tags: BTreeMap<u32, Tag>,
    done: BTreeMap<u32, TagResult>,
    wholly_lost: u32,
}

impl EntropyTracker {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts tracking tag `tag`; returns the masses its first packet
    /// carries.
    pub fn tag(&mut self, tag: u32) -> Masses {
        self.tags.insert(tag, Tag::default());
        vec![(tag, 1.0)]
    }

    /// Tags being tracked.
    pub fn active(&self) -> usize {
        self.tags.len()
    }

    /// A packet carrying `masses` joined node `node`'s `role` pool.
    pub fn arrive(&mut self, node: u32, role: Role, masses: &Masses) {
        if masses.is_empty() {
            return;
        }
        let held = self.pools.entry((node, role)).or_default();
        for (t, m) in masses {
            *held.entry(*t).or_insert(0.0) += m;
        }
    }

    /// A packet left node `node`'s `role` pool, which held `n` packets
    /// just before (it included): the packet takes `1/n` of each tag's
    /// mass there.
    pub fn depart(&mut self, node: u32, role: Role, n: usize) -> Masses {
        let Some(held) = self.pools.get_mut(&(node, role)) else {
            return Vec::new();
        };
        let share = 1.0 / n.max(1) as f64;
        let mut out = Vec::with_capacity(held.len());
        held.retain(|t, m| {
            let mut q = *m * share;
            // A negligible remainder leaves with this packet rather than
            // vanish, so a tag's exits still add up to 1.
            if *m - q <= NEGLIGIBLE {
                q = *m;
            }
            *m -= q;
            if q > 0.0 {
                out.push((*t, q));
            }
            *m > 0.0
        });
        if held.is_empty() {
            self.pools.remove(&(node, role));
        }
        out
    }

    /// A packet `packet` carrying `masses` entered node `node`, which the
    /// adversary holds: it knows the packet when it leaves, so its mass
    /// is not spread over the node's pool.
    pub fn arrive_exact(&mut self, node: u32, packet: u64, masses: Masses) {
        if !masses.is_empty() {
            self.exact.insert((node, packet), masses);
        }
    }

    /// Packet `packet` left node `node`, which the adversary holds: it
    /// carries the masses it came in with.
    pub fn depart_exact(&mut self, node: u32, packet: u64) -> Masses {
        self.exact.remove(&(node, packet)).unwrap_or_default()
    }

    /// The packet carrying `masses`, about to exit to `recipient`, is tag
    /// `tag`'s own message (call before [`Self::exit`]).
    pub fn true_exit(
        &mut self,
        tag: u32,
        recipient: u32,
        masses: &Masses,
        sender: Option<SenderView>,
    ) {
        let mass = |t: u32| {
            masses
                .iter()
                .find(|(x, _)| *x == t)
                .map_or(0.0, |(_, q)| *q)
        };
        let (own, partner) = (mass(tag), mass(tag ^ 1));
        if let Some(t) = self.tags.get_mut(&tag) {
            t.truth = Some((recipient, own, partner, sender));
        }
    }

    /// A packet carrying `masses` left the network at `at` (an exit
    /// delivery).
    pub fn exit(&mut self, masses: &Masses, at: ExitPoint) {
        for (t, q) in masses {
            let Some(tag) = self.tags.get_mut(t) else {
                continue;
            };
            tag.sum -= q * q.log2();
            tag.exited += q;
            if let Some(r) = at.recipient {
                *tag.recipients.entry(r).or_insert(0.0) += q;
            }
            *tag.exit_nodes.entry(at.node).or_insert(0.0) += q;
            self.settle(*t);
        }
    }

    /// A packet carrying `masses` was a mix's own returning node loop:
    /// not the message (see [`TagResult::ruled_out_mass`]).
    pub fn rule_out(&mut self, masses: &Masses) {
        for (t, q) in masses {
            if let Some(tag) = self.tags.get_mut(t) {
                tag.ruled_out += q;
                self.settle(*t);
            }
        }
    }

    /// Node `node` lost everything it held (a mix that left): the masses
    /// of both its pools and of its exactly known packets are lost.
    pub fn lose_node(&mut self, node: u32) {
        for role in [Role::Forward, Role::Deliver] {
            if let Some(pool) = self.pools.remove(&(node, role)) {
                let masses: Masses = pool.into_iter().collect();
                self.lose(&masses);
            }
        }
        let packets: Vec<u64> = self
            .exact
            .range((node, 0)..=(node, u64::MAX))
            .map(|((_, p), _)| *p)
            .collect();
        for p in packets {
            let masses = self.depart_exact(node, p);
            self.lose(&masses);
        }
    }

    /// A packet carrying `masses` was lost (a link lost it, or a node
    /// dropped it): its mass can reach no exit.
    pub fn lose(&mut self, masses: &Masses) {
        for (t, q) in masses {
            if let Some(tag) = self.tags.get_mut(t) {
                tag.lost += q;
                self.settle(*t);
            }
        }
    }

    fn settle(&mut self, t: u32) {
        if !self.tags.get(&t).is_some_and(Tag::done) {
            return;
        }
        if let Some(tag) = self.tags.remove(&t) {
            match tag.result(t) {
                Some(r) => {
                    self.done.insert(t, r);
                }
                None => self.wholly_lost += 1,
            }
        }
    }

    /// Results of every tag whose mass has (almost) all exited or been
    /// lost. Tags still in flight at the end of a run are reported by
    /// [`Self::finish`].
    pub fn results(&self) -> impl Iterator<Item = (&u32, &TagResult)> {
        self.done.iter()
    }

    /// Closes the run: tags with at least 99% of their mass out (exited
    /// or lost) are measured on what exited; the others are counted as
    /// unfinished.
    pub fn finish(&mut self) -> EntropyOutcome {
        let mut unfinished = 0;
        for (t, tag) in std::mem::take(&mut self.tags) {
            if tag.out() >= MEASURED {
                match tag.result(t) {
                    Some(r) => {
                        self.done.insert(t, r);
                    }
                    None => self.wholly_lost += 1,
                }
            } else {
                unfinished += 1;
            }
        }
        EntropyOutcome {
            tags: self.done.values().copied().collect(),
            wholly_lost: self.wholly_lost,
            unfinished,
        }
    }
}

#[cfg(test)]
mod tests;
