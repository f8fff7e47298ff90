//! Replications: one scenario run under several seeds, each run's figures
//! and their mean over the runs with a 95% confidence interval
//! (`specs/simulation.md` §2, "Replications"). Tags within one run share
//! its traffic, so they are not independent samples; the runs are.

use serde_json::{Value, json};

use crate::grid::FIGURES;
use crate::metrics::Metrics;
use crate::scenario::Scenario;
use crate::sweep::run_parallel;

/// The seed of replication `i` of a set starting at `first`.
pub fn replication_seed(first: u64, i: usize) -> u64 {
    first.wrapping_add(i as u64)
}

/// Student's t quantile at 0.975 for `df` degrees of freedom (two-sided
/// 95%): table values (to 3 decimals) to 30, then those at 30, 40, 60
/// and 120 for the ranges they start.
pub fn t_975(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::NAN,
        1..=30 => T[df - 1],
        // Between table rows the smaller df's value: the interval errs
        // wide, never narrow.
        31..=40 => T[29],
        41..=60 => 2.021,
        61..=120 => 2.000,
        121.. => 1.980,
    }
}

/// Mean of `values` and the half-width of its 95% confidence interval
/// (`t · s/√n`; NaN with one value).
pub fn mean_ci95(values: &[f64]) -> (f64, f64) {
    let n = values.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return (mean, f64::NAN);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    (mean, t_975(n - 1) * (var / n as f64).sqrt())
}

/// Runs `scenario` under `n` seeds from `first_seed` on `jobs` threads;
/// the runs in seed order.
pub fn replicate(
    scenario: &Scenario,
    first_seed: u64,
    n: usize,
    jobs: usize,
    on_done: impl Fn(usize) + Sync,
) -> Vec<(u64, Metrics)> {
    let runs: Vec<(Scenario, u64)> = (0..n)
        .map(|i| (scenario.clone(), replication_seed(first_seed, i)))
        .collect();
    runs.iter()
        .map(|(_, seed)| *seed)
        .zip(run_parallel(&runs, jobs, on_done))
        .filter_map(|(seed, m)| m.map(|m| (seed, m)))
        .collect()
}

/// The replications' summary: each run's figures, and for each figure
/// its mean over the runs that measured it with the 95% interval's
/// half-width.
///
/// The figures are a sweep's (`grid::FIGURES`), read from each run's
/// summary, so a replication and a sweep point report the same ones.
pub fn summary(scenario: &Scenario, runs: &[(u64, Metrics)]) -> Value {
    let summaries: Vec<Value> = runs
        .iter()
        .map(|(seed, m)| m.summary(scenario, *seed))
        .collect();
    let per_run: Vec<Value> = runs
        .iter()
        .zip(&summaries)
        .map(|((seed, m), s)| {
            let mut o = serde_json::Map::new();
            o.insert("seed".into(), json!(seed));
            o.insert("tagged_measured".into(), json!(m.entropy.len()));
            for (name, f) in FIGURES {
                o.insert(name.into(), f(s).map_or(Value::Null, |v| json!(v)));
            }
            Value::Object(o)
        })
        .collect();
    let mut across = serde_json::Map::new();
    for (name, f) in FIGURES {
        let values: Vec<f64> = summaries.iter().filter_map(f).collect();
        let (mean, half) = mean_ci95(&values);
        across.insert(
            name.into(),
            json!({
                "runs": values.len(),
                "mean": finite(mean),
                "ci95_half_width": finite(half),
            }),
        );
    }
    json!({
        "scenario": scenario.name,
        "code_version": crate::CODE_VERSION,
        "replications": runs.len(),
        "seeds": runs.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        "mean_over_runs": across,
        "runs": per_run,
    })
}

fn finite(v: f64) -> Value {
    if v.is_finite() { json!(v) } else { Value::Null }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_uses_students_t() {
        // n = 4, s = 1: half-width t(3) · 1/2.
        let v = [1.0, 2.0, 3.0, 4.0];
        let (mean, half) = mean_ci95(&v);
        let s = (5.0f64 / 3.0).sqrt();
        assert!((mean - 2.5).abs() < 1e-12);
        assert!((half - 3.182 * s / 2.0).abs() < 1e-9, "{half}");
        assert!(mean_ci95(&[3.0]).1.is_nan());
        assert!((t_975(100) - 2.0).abs() < 1e-12);
        assert!(t_975(1000) > 1.96);
    }
}
