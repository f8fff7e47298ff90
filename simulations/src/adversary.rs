//! `[adversary]`: nodes the adversary holds, besides watching every link
//! (`specs/simulation.md` §5). A held node sees through its own mixing:
//! it knows which packet leaving it is which packet that entered, so a
//! tagged message's mass passes through it whole instead of spreading
//! over its pool. The summary reports the entropies against this
//! adversary and how often a route was held end to end.

use std::collections::BTreeSet;

use rand::seq::SliceRandom;
use serde::Deserialize;

/// Which nodes the adversary holds.
#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// `fraction` of all nodes (mixes and providers), drawn at random.
    Random,
    /// `fraction` of the mixes, drawn at random.
    Mixes,
    /// `fraction` of the providers, drawn at random.
    Providers,
    /// Every mix of layer `layer` (1-based).
    Layer,
    /// `fraction` of the mixes, the largest by `[topology] bandwidth`
    /// (ties: a layer at a time), which routes draw most often.
    Busiest,
    /// The nodes named in `nodes`.
    List,
}

/// The `[adversary]` section.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdversaryConfig {
    /// Which nodes.
    pub strategy: Strategy,
    /// The share drawn (random, mixes, providers).
    #[serde(default)]
    pub fraction: f64,
    /// The layer held (layer).
    #[serde(default)]
    pub layer: Option<u32>,
    /// The nodes held (list; mixes numbered from 0 layer by layer, then
    /// the providers).
    #[serde(default)]
    pub nodes: Vec<u32>,
}

/// The network's shape, as the adversary's choice needs it.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Mix layers.
    pub layers: u32,
    /// Mixes per layer.
    pub per_layer: u32,
    /// Providers.
    pub providers: u32,
    /// Whether the mixes have bandwidth weights (`[topology] bandwidth`).
    pub weighted: bool,
}

impl Shape {
    fn mixes(self) -> u32 {
        self.layers * self.per_layer
    }
    fn nodes(self) -> u32 {
        self.mixes() + self.providers
    }
}

impl AdversaryConfig {
    /// Why the section does not fit the network, if it does not: the
    /// field and the reason.
    pub fn check(&self, shape: Shape) -> Result<(), (&'static str, String)> {
        let fraction_used = matches!(
            self.strategy,
            Strategy::Random | Strategy::Mixes | Strategy::Providers | Strategy::Busiest
        );
        if self.strategy == Strategy::Busiest && !shape.weighted {
            return Err((
                "adversary.strategy",
                "the busiest mixes are those [topology] bandwidth weighs most: with equal mixes it is the mixes strategy".into(),
            ));
        }
        if fraction_used && !(self.fraction > 0.0 && self.fraction <= 1.0) {
            return Err(("adversary.fraction", "must be in (0, 1]".into()));
        }
        if !fraction_used && self.fraction != 0.0 {
            return Err((
                "adversary.fraction",
                "only for the random, mixes, providers and busiest strategies".into(),
            ));
        }
        match (self.strategy, self.layer) {
            (Strategy::Layer, Some(l)) if l >= 1 && l <= shape.layers => {}
            (Strategy::Layer, _) => {
                return Err((
                    "adversary.layer",
                    format!(
                        "the layer strategy needs a layer from 1 to {}",
                        shape.layers
                    ),
                ));
            }
            (_, Some(_)) => {
                return Err(("adversary.layer", "only for the layer strategy".into()));
            }
            _ => {}
        }
        match self.strategy {
            Strategy::List if self.nodes.is_empty() => {
                return Err(("adversary.nodes", "the list strategy names nodes".into()));
            }
            Strategy::List => {
                if let Some(n) = self.nodes.iter().find(|n| **n >= shape.nodes()) {
                    return Err((
                        "adversary.nodes",
                        format!("node {n}: the network has nodes 0 to {}", shape.nodes() - 1),
                    ));
                }
            }
            _ if !self.nodes.is_empty() => {
                return Err(("adversary.nodes", "only for the list strategy".into()));
            }
            _ => {}
        }
        Ok(())
    }

    /// The nodes held, drawn with `rng` where the strategy draws: the
    /// fraction of the candidates, rounded, at least one. `weights` are
    /// the mixes' bandwidth weights (busiest).
    pub fn choose<R: rand::Rng + ?Sized>(
        &self,
        shape: Shape,
        weights: Option<&[f64]>,
        rng: &mut R,
    ) -> BTreeSet<u32> {
        let share = |n: usize| ((n as f64 * self.fraction).round() as usize).clamp(1, n.max(1));
        let draw = |candidates: Vec<u32>, rng: &mut R| -> BTreeSet<u32> {
            let mut c = candidates;
            let k = share(c.len());
            c.shuffle(rng);
            c.into_iter().take(k).collect()
        };
        match self.strategy {
            Strategy::Random => draw((0..shape.nodes()).collect(), rng),
            Strategy::Mixes => draw((0..shape.mixes()).collect(), rng),
            Strategy::Providers => draw((shape.mixes()..shape.nodes()).collect(), rng),
            Strategy::Layer => {
                let l = self.layer.unwrap_or(1).saturating_sub(1);
                (l * shape.per_layer..(l + 1) * shape.per_layer).collect()
            }
            Strategy::List => self.nodes.iter().copied().collect(),
            Strategy::Busiest => {
                let mut mixes: Vec<u32> = (0..shape.mixes()).collect();
                let w = |n: u32| {
                    weights
                        .and_then(|w| w.get(n as usize))
                        .copied()
                        .unwrap_or(0.0)
                };
                // Equal weights are taken a layer at a time (the first mix
                // of each layer, then the second of each, …), so equal
                // mixes give one mix per layer, as Zipf weights do.
                let per_layer = shape.per_layer.max(1);
                mixes.sort_by(|a, b| {
                    w(*b)
                        .total_cmp(&w(*a))
                        .then((a % per_layer).cmp(&(b % per_layer)))
                        .then(a.cmp(b))
                });
                let k = share(mixes.len());
                mixes.into_iter().take(k).collect()
            }
        }
    }
}

/// The nodes the scenario's adversary holds, by node number (none
/// without `[adversary]`), drawn as every run and study of the seed
/// draws them: the packet simulation and the storage study see one set.
pub fn held_nodes(scenario: &crate::Scenario, seed: u64) -> Vec<bool> {
    let shape = scenario.shape();
    let mut held = vec![false; shape.nodes() as usize];
    if let Some(a) = &scenario.adversary {
        let mut rng = crate::sim::component_rng(seed, "adversary", 0);
        let weights = scenario.mix_weights();
        for n in a.choose(shape, weights.as_deref(), &mut rng) {
            if let Some(h) = held.get_mut(n as usize) {
                *h = true;
            }
        }
    }
    held
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    const SHAPE: Shape = Shape {
        layers: 3,
        per_layer: 4,
        providers: 3,
        weighted: false,
    };

    fn config(strategy: Strategy) -> AdversaryConfig {
        AdversaryConfig {
            strategy,
            fraction: 0.0,
            layer: None,
            nodes: Vec::new(),
        }
    }

    #[test]
    fn strategies_pick_what_they_name() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let layer = AdversaryConfig {
            layer: Some(2),
            ..config(Strategy::Layer)
        };
        assert_eq!(
            layer.choose(SHAPE, None, &mut rng),
            [4, 5, 6, 7].into_iter().collect()
        );
        let providers = AdversaryConfig {
            fraction: 0.67,
            ..config(Strategy::Providers)
        };
        let p = providers.choose(SHAPE, None, &mut rng);
        assert_eq!(p.len(), 2);
        assert!(p.iter().all(|n| (12..15).contains(n)));
        let mixes = AdversaryConfig {
            fraction: 0.25,
            ..config(Strategy::Mixes)
        };
        let m = mixes.choose(SHAPE, None, &mut rng);
        assert_eq!(m.len(), 3);
        assert!(m.iter().all(|n| *n < 12));
        // The busiest third of the mixes: the largest of each layer, then
        // one second-largest (mix 1, layer 1's: ties go a layer at a
        // time).
        let weights = crate::bandwidth::Bandwidth::Zipf { s: 1.0 }
            .weights(3, 4)
            .unwrap();
        let busiest = AdversaryConfig {
            fraction: 1.0 / 3.0,
            ..config(Strategy::Busiest)
        };
        let weighted = Shape {
            weighted: true,
            ..SHAPE
        };
        assert!(busiest.check(weighted).is_ok());
        assert_eq!(busiest.check(SHAPE).unwrap_err().0, "adversary.strategy");
        assert_eq!(
            busiest.choose(weighted, Some(&weights), &mut rng),
            [0, 4, 8, 1].into_iter().collect()
        );
        // Equal weights (Zipf s = 0): a mix of each layer first.
        let equal = crate::bandwidth::Bandwidth::Zipf { s: 0.0 }
            .weights(3, 4)
            .unwrap();
        let a_quarter = AdversaryConfig {
            fraction: 0.25,
            ..busiest
        };
        assert_eq!(
            a_quarter.choose(weighted, Some(&equal), &mut rng),
            [0, 4, 8].into_iter().collect()
        );
    }

    #[test]
    fn bad_sections_name_their_field() {
        let no_fraction = config(Strategy::Random);
        assert_eq!(
            no_fraction.check(SHAPE).unwrap_err().0,
            "adversary.fraction"
        );
        let bad_layer = AdversaryConfig {
            layer: Some(4),
            ..config(Strategy::Layer)
        };
        assert_eq!(bad_layer.check(SHAPE).unwrap_err().0, "adversary.layer");
        let bad_node = AdversaryConfig {
            nodes: vec![15],
            ..config(Strategy::List)
        };
        assert_eq!(bad_node.check(SHAPE).unwrap_err().0, "adversary.nodes");
        let stray = AdversaryConfig {
            fraction: 0.5,
            ..config(Strategy::Layer)
        };
        assert!(stray.check(SHAPE).is_err());
    }
}
