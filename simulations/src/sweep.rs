//! Parameter sweeps: setting a scenario's numeric keys, and running
//! scenarios on the machine's cores (the grid is `crate::grid`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::metrics::Metrics;
use crate::scenario::{Scenario, ScenarioError};
use crate::sim::run_scenario;

/// A sweep could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SweepError {
    /// `--param` is not `NAME=V1,V2,...`.
    #[error("--param must look like NAME=V1,V2,... (got {0:?})")]
    Syntax(String),
    /// The seed named as a parameter: the runs' seeds come from
    /// `--seed` and `--seeds`, and would override it.
    #[error("the seed is not a parameter: the runs' seeds are --seed S --seeds R")]
    SeedParam,
    /// The parameter names no key of the scenario.
    #[error(
        "parameter `{0}` is not a key of this scenario (use a dotted path such as mixing.mean_delay_ms)"
    )]
    UnknownParam(String),
    /// A value does not fit the parameter.
    #[error("parameter `{name}`: value {value:?} is not a {kind}")]
    BadValue {
        /// The parameter.
        name: String,
        /// The value.
        value: String,
        /// What it must be.
        kind: &'static str,
    },
    /// A swept scenario is invalid.
    #[error("with {name} = {value}: {source}")]
    Scenario {
        /// The parameter.
        name: String,
        /// The value.
        value: String,
        /// Why.
        source: ScenarioError,
    },
    /// The scenario file could not be read or parsed.
    #[error(transparent)]
    Load(#[from] ScenarioError),
}

/// Parses `NAME=V1,V2,...`.
pub fn parse_param(spec: &str) -> Result<(String, Vec<String>), SweepError> {
    let (name, values) = spec
        .split_once('=')
        .ok_or_else(|| SweepError::Syntax(spec.to_owned()))?;
    let values: Vec<String> = values
        .split(',')
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect();
    if name.trim().is_empty() || values.is_empty() {
        return Err(SweepError::Syntax(spec.to_owned()));
    }
    if name.trim() == "seed" {
        return Err(SweepError::SeedParam);
    }
    Ok((name.trim().to_owned(), values))
}

/// The scenario text with the numeric key `name` (a dotted path) set to
/// `value`; the key must exist, and keeps its type.
pub fn set_param(text: &str, name: &str, value: &str) -> Result<(String, f64), SweepError> {
    let mut table: toml::Table = toml::from_str(text).map_err(|e| {
        SweepError::Load(ScenarioError::Parse {
            path: "scenario".into(),
            message: e.to_string(),
        })
    })?;
    let mut parts: Vec<&str> = name.split('.').collect();
    let last = parts
        .pop()
        .ok_or_else(|| SweepError::UnknownParam(name.into()))?;
    let mut node = &mut table;
    for p in parts {
        node = node
            .get_mut(p)
            .and_then(toml::Value::as_table_mut)
            .ok_or_else(|| SweepError::UnknownParam(name.into()))?;
    }
    let slot = node
        .get_mut(last)
        .ok_or_else(|| SweepError::UnknownParam(name.into()))?;
    let bad = |kind| SweepError::BadValue {
        name: name.into(),
        value: value.into(),
        kind,
    };
    let x = match slot {
        // A key written as an integer takes a decimal value too (its
        // field may be a number: `mean_delay_ms = 50` swept to 12.5); a
        // field that must be whole refuses it when the scenario is
        // checked, naming the field.
        toml::Value::Integer(_) => match value.parse::<i64>() {
            Ok(v) => {
                *slot = toml::Value::Integer(v);
                v as f64
            }
            Err(_) => {
                let v: f64 = value.parse().map_err(|_| bad("number"))?;
                if !v.is_finite() {
                    return Err(bad("finite number"));
                }
                *slot = toml::Value::Float(v);
                v
            }
        },
        toml::Value::Float(_) => {
            let v: f64 = value.parse().map_err(|_| bad("number"))?;
            *slot = toml::Value::Float(v);
            v
        }
        _ => return Err(bad("number (only numeric keys can be swept)")),
    };
    let text = toml::to_string(&table).map_err(|_| bad("serialisable value"))?;
    Ok((text, x))
}

/// Runs each `(scenario, seed)` on `jobs` threads; results come back in
/// the order given (`None` only for a run whose thread panicked).
/// `on_done` is called with the number of runs done so far.
pub fn run_parallel(
    runs: &[(Scenario, u64)],
    jobs: usize,
    on_done: impl Fn(usize) + Sync,
) -> Vec<Option<Metrics>> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Metrics>>> = Mutex::new(vec![None; runs.len()]);
    let done = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1).min(runs.len()) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((s, seed)) = runs.get(i) else {
                        break;
                    };
                    let m = run_scenario(s.clone(), *seed, |_| {});
                    if let Ok(mut r) = results.lock() {
                        r[i] = Some(m);
                    }
                    on_done(done.fetch_add(1, Ordering::Relaxed) + 1);
                }
            });
        }
    });
    results.into_inner().unwrap_or_default()
}
