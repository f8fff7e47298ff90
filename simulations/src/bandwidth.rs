//! `[topology] bandwidth`: mixes of unequal capacity, which routes
//! choose in proportion to (`specs/simulation.md` §1, Bandwidth). A
//! research option: production draws every mix of a layer uniformly
//! (`mtos_mixnode::route`), as does the simulator without it. Networks
//! that weight routes by bandwidth or stake (Nym's, Tor's) concentrate
//! traffic on their largest nodes, which is what an adversary taking the
//! busiest nodes (`[adversary] strategy = "busiest"`) exploits.

use serde::Deserialize;

/// How the mixes' weights are given.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Bandwidth {
    /// In every layer, mix `i` (from 0) weighs `1 / (i + 1)^s`: a few
    /// large mixes and a tail of small ones.
    Zipf {
        /// The exponent, 0 (equal) to 10.
        s: f64,
    },
    /// One weight per mix, numbered from 0 layer by layer.
    List {
        /// The weights, each finite and > 0.
        mixes: Vec<f64>,
    },
}

impl Bandwidth {
    /// Every mix's weight in a network of `layers × per_layer` mixes, or
    /// the field and the reason it does not fit.
    pub fn weights(&self, layers: u32, per_layer: u32) -> Result<Vec<f64>, (&'static str, String)> {
        let mixes = (layers * per_layer) as usize;
        match self {
            Self::Zipf { s } => {
                if !(s.is_finite() && (0.0..=10.0).contains(s)) {
                    return Err(("topology.bandwidth.s", "from 0 to 10".into()));
                }
                Ok((0..mixes)
                    .map(|n| 1.0 / (f64::from(n as u32 % per_layer) + 1.0).powf(*s))
                    .collect())
            }
            Self::List { mixes: w } => {
                if w.len() != mixes {
                    return Err((
                        "topology.bandwidth.mixes",
                        format!("one weight per mix: {mixes}, not {}", w.len()),
                    ));
                }
                if let Some(bad) = w.iter().find(|x| !(x.is_finite() && **x > 0.0)) {
                    return Err((
                        "topology.bandwidth.mixes",
                        format!("{bad}: each weight finite and > 0"),
                    ));
                }
                Ok(w.clone())
            }
        }
    }

    /// The summary's description.
    pub fn summary(&self) -> serde_json::Value {
        match self {
            Self::Zipf { s } => serde_json::json!({ "kind": "zipf", "s": s }),
            Self::List { mixes } => serde_json::json!({ "kind": "list", "mixes": mixes }),
        }
    }
}

/// Mixes' weights ready for drawing: cumulative sums over all mixes,
/// so a draw in any run of consecutive mixes (a layer, or all of them)
/// is a binary search.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Weights {
    weights: Vec<f64>,
    cumulative: Vec<f64>,
}

impl Weights {
    pub(crate) fn new(weights: Vec<f64>) -> Self {
        let cumulative = weights
            .iter()
            .scan(0.0, |sum, w| {
                *sum += w;
                Some(*sum)
            })
            .collect();
        Self {
            weights,
            cumulative,
        }
    }

    /// Mix `n`'s weight.
    pub(crate) fn of(&self, n: u32) -> f64 {
        self.weights.get(n as usize).copied().unwrap_or(0.0)
    }

    /// The mix among `first..first + count` that `u` (uniform in [0, 1))
    /// falls on, each in proportion to its weight.
    pub(crate) fn draw(&self, u: f64, first: u32, count: u32) -> u32 {
        let (a, b) = (first as usize, (first + count) as usize);
        let below = if a == 0 { 0.0 } else { self.cumulative[a - 1] };
        let target = below + u * (self.cumulative[b - 1] - below);
        let i = self.cumulative[a..b].partition_point(|c| *c <= target);
        first + (i as u32).min(count - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_weighs_each_layer_alike_and_draws_follow_the_weights() {
        let w = Bandwidth::Zipf { s: 1.0 }.weights(2, 3).unwrap();
        assert_eq!(w, vec![1.0, 0.5, 1.0 / 3.0, 1.0, 0.5, 1.0 / 3.0]);
        let weights = Weights::new(w);
        // Layer 2 (mixes 3 to 5): shares 6/11, 3/11, 2/11.
        let mut counts = [0u32; 3];
        let steps = 11_000;
        for k in 0..steps {
            let u = (f64::from(k) + 0.5) / f64::from(steps);
            counts[(weights.draw(u, 3, 3) - 3) as usize] += 1;
        }
        assert_eq!(counts, [6_000, 3_000, 2_000]);
        assert_eq!(weights.draw(0.0, 0, 6), 0);
        assert_eq!(weights.draw(0.999_999, 0, 6), 5);
    }

    #[test]
    fn bad_weights_name_their_field() {
        let short = Bandwidth::List { mixes: vec![1.0] }.weights(1, 2);
        assert_eq!(short.unwrap_err().0, "topology.bandwidth.mixes");
        let zero = Bandwidth::List {
            mixes: vec![1.0, 0.0],
        }
        .weights(1, 2);
        assert_eq!(zero.unwrap_err().0, "topology.bandwidth.mixes");
        let s = Bandwidth::Zipf { s: f64::NAN }.weights(1, 2);
        assert_eq!(s.unwrap_err().0, "topology.bandwidth.s");
    }
}
