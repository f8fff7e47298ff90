//! What packets carry for the anonymity trackers: the tagged messages'
//! masses, and, with `anonymity.sender_entropy`, every sender's
//! (`specs/simulation.md` §2, "Sender entropy"). The sender tracker is a
//! second [`EntropyTracker`] whose "tags" are the senders: every packet a
//! client sends starts with mass 1 on its client, every node loop on its
//! node, and the pools split them as they split tags; the masses a
//! delivered packet carries are then the adversary's distribution over
//! who sent it.

use super::{EntropyTracker, ExitPoint, Masses, Role};

/// One packet's masses.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Carried {
    /// Tagged messages' masses.
    pub tags: Masses,
    /// Senders' masses (empty unless sender entropy is on).
    pub senders: Masses,
}

/// The sender number of what node `node` sends itself (its node loops),
/// apart from every client's.
pub fn node_sender(node: u32) -> u32 {
    u32::MAX - node
}

/// Both trackers.
#[derive(Debug, Default)]
pub struct Trackers {
    /// The tagged messages.
    pub tags: EntropyTracker,
    /// The senders, when sender entropy is on.
    pub senders: Option<EntropyTracker>,
}

impl Trackers {
    /// Trackers, with the sender one if `senders`.
    pub fn new(senders: bool) -> Self {
        Self {
            tags: EntropyTracker::new(),
            senders: senders.then(EntropyTracker::new),
        }
    }

    /// What a new packet from `sender` (a client, or [`node_sender`])
    /// carries besides `tags`.
    pub fn start(&self, sender: u32, tags: Masses) -> Carried {
        Carried {
            tags,
            senders: match self.senders {
                Some(_) => vec![(sender, 1.0)],
                None => Vec::new(),
            },
        }
    }

    /// See [`EntropyTracker::arrive`].
    pub fn arrive(&mut self, node: u32, role: Role, c: &Carried) {
        self.tags.arrive(node, role, &c.tags);
        if let Some(s) = &mut self.senders {
            s.arrive(node, role, &c.senders);
        }
    }

    /// See [`EntropyTracker::depart`].
    pub fn depart(&mut self, node: u32, role: Role, n: usize) -> Carried {
        Carried {
            tags: self.tags.depart(node, role, n),
            senders: self
                .senders
                .as_mut()
                .map_or_else(Vec::new, |s| s.depart(node, role, n)),
        }
    }

    /// See [`EntropyTracker::arrive_exact`].
    pub fn arrive_exact(&mut self, node: u32, packet: u64, c: Carried) {
        self.tags.arrive_exact(node, packet, c.tags);
        if let Some(s) = &mut self.senders {
            s.arrive_exact(node, packet, c.senders);
        }
    }

    /// See [`EntropyTracker::depart_exact`].
    pub fn depart_exact(&mut self, node: u32, packet: u64) -> Carried {
        Carried {
            tags: self.tags.depart_exact(node, packet),
            senders: self
                .senders
                .as_mut()
                .map_or_else(Vec::new, |s| s.depart_exact(node, packet)),
        }
    }

    /// The packet was lost: its tag masses are (sender masses need no
    /// accounting: no result is read from their losses).
    pub fn lose(&mut self, c: &Carried) {
        self.tags.lose(&c.tags);
    }

    /// See [`EntropyTracker::lose_node`].
    pub fn lose_node(&mut self, node: u32) {
        self.tags.lose_node(node);
        if let Some(s) = &mut self.senders {
            s.lose_node(node);
        }
    }

    /// See [`EntropyTracker::rule_out`].
    pub fn rule_out(&mut self, c: &Carried) {
        self.tags.rule_out(&c.tags);
    }

    /// See [`EntropyTracker::exit`].
    pub fn exit(&mut self, c: &Carried, at: ExitPoint) {
        self.tags.exit(&c.tags, at);
    }
}

/// What the sender masses on a delivered packet say about its sender.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SenderView {
    /// Entropy of the distribution over senders, bits.
    pub entropy_bits: f64,
    /// The posterior on the true sender.
    pub posterior_on_true_sender: f64,
    /// The true sender's rank by mass (1: the best guess is right; ties
    /// count against it).
    pub rank: u32,
    /// The posterior on the other sender of the tag's pair (Loopix's
    /// second target sender), when it is another client.
    pub posterior_on_other: Option<f64>,
}

/// Whether a sender number is a client's (not a node's, see
/// [`node_sender`]).
fn is_client(sender: u32) -> bool {
    sender < u32::MAX / 2
}

/// The view of `senders` (a delivered packet's sender masses) when
/// client `truth` sent it, over the clients only: the packet is a
/// client's message, so the adversary rules the nodes' own loops out and
/// divides by the clients' mass. `other`: a second client whose
/// posterior is reported too. `None` when it carries none.
pub fn sender_view(senders: &Masses, truth: u32, other: Option<u32>) -> Option<SenderView> {
    let senders: Masses = senders
        .iter()
        .copied()
        .filter(|(s, _)| is_client(*s))
        .collect();
    let total: f64 = senders.iter().map(|(_, m)| m).sum();
    if total <= 0.0 {
        return None;
    }
    let (mine, rank) = super::truth_rank(senders.iter().copied(), truth);
    let mass_of = |c: u32| {
        senders
            .iter()
            .find(|(s, _)| *s == c)
            .map_or(0.0, |(_, m)| *m)
    };
    Some(SenderView {
        entropy_bits: super::entropy_of(senders.iter().map(|(_, m)| *m), total),
        posterior_on_true_sender: mine / total,
        rank,
        posterior_on_other: other.filter(|o| *o != truth).map(|o| mass_of(o) / total),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two senders' packets meet in one pool of 2 and leave: each
    /// leaving packet is half one, half the other (1 bit); a third
    /// sender's packet held apart stays whole.
    #[test]
    fn senders_mix_in_pools_as_tags_do() {
        let mut t = Trackers::new(true);
        let a = t.start(1, Vec::new());
        let b = t.start(2, Vec::new());
        t.arrive(9, Role::Forward, &a);
        t.arrive(9, Role::Forward, &b);
        let out = t.depart(9, Role::Forward, 2);
        let v = sender_view(&out.senders, 1, Some(2)).unwrap();
        assert!((v.entropy_bits - 1.0).abs() < 1e-12);
        assert!((v.posterior_on_true_sender - 0.5).abs() < 1e-12);
        // A tie counts against the truth.
        assert_eq!(v.rank, 2);
        let c = t.start(3, Vec::new());
        t.arrive_exact(8, 77, c);
        let whole = t.depart_exact(8, 77);
        let v = sender_view(&whole.senders, 3, None).unwrap();
        assert_eq!((v.entropy_bits, v.rank), (0.0, 1));
        assert!(Trackers::new(false).start(1, Vec::new()).senders.is_empty());
    }
}
