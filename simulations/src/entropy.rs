//! Anonymity of tagged messages: how uncertain a global passive adversary
//! (it sees every link) is about where a tagged message leaves the
//! network.
//!
//! Mass tracking, after the Loopix simulations: a tagged message starts
//! with probability mass 1 on the packet its sender hands to its gateway
//! (the adversary sees that link). A node's departures are memoryless
//! under Poisson mixing (and uniformly random in a pool flush), so each
//! packet leaving a node that holds `n` packets carries `M/n` of the
//! node's mass `M` for the tag, and the node keeps `M − M/n`. The mass
//! that reaches the network's exits (deliveries at exit providers) is the
//! adversary's distribution over exit events for the tagged message; its
//! Shannon entropy `H = −Σ q log2 q` is the message's entropy and `2^H` its
//! effective anonymity set size. Formulas: `specs/simulation.md`.

use std::collections::BTreeMap;

/// Mass below this is dropped (it cannot change H by more than ~1e-9).
const NEGLIGIBLE: f64 = 1e-12;

/// Per-tag masses carried by one packet or held by one node.
pub type Masses = Vec<(u32, f64)>;

/// One tagged message's result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TagResult {
    /// The tag.
    pub tag: u32,
    /// Entropy of its exit distribution, bits.
    pub entropy_bits: f64,
    /// Mass that reached an exit (1 unless the run ended first or links
    /// lost packets).
    pub exited_mass: f64,
}

#[derive(Debug, Default, Clone)]
struct Tag {
    entropy: f64,
    exited: f64,
}

/// Tracks the tagged messages' masses through the nodes.
#[derive(Debug, Default)]
pub struct EntropyTracker {
    nodes: BTreeMap<u32, BTreeMap<u32, f64>>,
    tags: BTreeMap<u32, Tag>,
    done: BTreeMap<u32, TagResult>,
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

    /// A packet carrying `masses` entered node `node`.
    pub fn arrive(&mut self, node: u32, masses: &Masses) {
        if masses.is_empty() {
            return;
        }
        let held = self.nodes.entry(node).or_default();
        for (t, m) in masses {
            *held.entry(*t).or_insert(0.0) += m;
        }
    }

    /// A packet left `node`, which held `n` packets just before (it
    /// included): the packet takes `1/n` of each tag's mass.
    pub fn depart(&mut self, node: u32, n: usize) -> Masses {
        let Some(held) = self.nodes.get_mut(&node) else {
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
            self.nodes.remove(&node);
        }
        out
    }

    /// A packet carrying `masses` left the network (an exit delivery).
    pub fn exit(&mut self, masses: &Masses) {
        for (t, q) in masses {
            let Some(tag) = self.tags.get_mut(t) else {
                continue;
            };
            tag.entropy -= q * q.log2();
            tag.exited += q;
            if tag.exited > 1.0 - 1e-9 {
                let tag = self.tags.remove(t).unwrap_or_default();
                self.done.insert(
                    *t,
                    TagResult {
                        tag: *t,
                        entropy_bits: tag.entropy,
                        exited_mass: tag.exited,
                    },
                );
            }
        }
    }

    /// Results of every tag whose mass has (almost) all exited. Tags still
    /// in flight at the end of a run are reported by [`Self::finish`].
    pub fn results(&self) -> impl Iterator<Item = (&u32, &TagResult)> {
        self.done.iter()
    }

    /// Closes the run: tags with at least 99% of their mass out are kept
    /// (their entropy counts the mass still inside as unknown and is a
    /// lower bound); the others are discarded as not measured.
    pub fn finish(&mut self) -> Vec<TagResult> {
        for (t, tag) in std::mem::take(&mut self.tags) {
            if tag.exited >= 0.99 {
                self.done.insert(
                    t,
                    TagResult {
                        tag: t,
                        entropy_bits: tag.entropy,
                        exited_mass: tag.exited,
                    },
                );
            }
        }
        self.done.values().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_holding_n_splits_evenly_over_its_departures() {
        let mut e = EntropyTracker::new();
        let m = e.tag(1);
        e.arrive(7, &m);
        // The node holds 4 packets; all 4 leave and exit.
        for n in (1..=4).rev() {
            let out = e.depart(7, n);
            e.exit(&out);
        }
        let r = e.finish();
        assert_eq!(r.len(), 1);
        assert!((r[0].entropy_bits - 2.0).abs() < 1e-9, "{r:?}");
        assert!((r[0].exited_mass - 1.0).abs() < 1e-9);
    }
}
