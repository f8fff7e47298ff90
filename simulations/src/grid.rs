//! Grid sweeps (`specs/simulation.md` §6): several parameters, each over
//! its values, every point of their product under several seeds. A sweep
//! runs here on the machine's cores, or writes one command per run
//! (`--emit-jobs`) for GNU parallel, a Slurm array or Kubernetes Jobs;
//! either way each run leaves `point-K/seed-S/summary.json` under the
//! output directory, and [`merge`] reads them back into `sweep.csv`: one
//! row per point, each figure's mean over the seeds and the half-width
//! of its 95% interval.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::replicate::mean_ci95;
use crate::scenario::{Scenario, ScenarioError};
use crate::sweep::{SweepError, set_param};

/// One point of a grid: its parameters' values and its scenario.
#[derive(Debug, Clone)]
pub struct Point {
    /// `(name, value as written)` for each parameter, in the grid's order.
    pub values: Vec<(String, String)>,
    /// The values as numbers.
    pub xs: Vec<f64>,
    /// The scenario's text with the values set.
    pub text: String,
    /// The scenario, checked.
    pub scenario: Scenario,
}

/// The points of the grid over `params` of the scenario at `path`, the
/// last parameter varying fastest. Every point is built and checked
/// before anything runs.
pub fn points(path: &Path, params: &[(String, Vec<String>)]) -> Result<Vec<Point>, SweepError> {
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
        path: path.to_owned(),
        source,
    })?;
    let text = with_absolute_trace(&text, path);
    let mut combos: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for (name, values) in params {
        combos = combos
            .into_iter()
            .flat_map(|c| {
                values.iter().map(move |v| {
                    let mut c = c.clone();
                    c.push((name.clone(), v.clone()));
                    c
                })
            })
            .collect();
    }
    let mut out = Vec::with_capacity(combos.len());
    for values in combos {
        let mut t = text.clone();
        let mut xs = Vec::with_capacity(values.len());
        for (name, v) in &values {
            let (next, x) = set_param(&t, name, v)?;
            t = next;
            xs.push(x);
        }
        let scenario = Scenario::parse(&t, path).map_err(|source| {
            let join = |f: fn(&(String, String)) -> &str| {
                values.iter().map(f).collect::<Vec<_>>().join(", ")
            };
            SweepError::Scenario {
                name: join(|(n, _)| n),
                value: join(|(_, v)| v),
                source,
            }
        })?;
        out.push(Point {
            values,
            xs,
            text: t,
            scenario,
        });
    }
    Ok(out)
}

/// `text` with a trace file named relative to the scenario at `path`
/// made absolute, so a point's scenario written elsewhere
/// (`points/point-K.toml`) reads the same trace. Unchanged when there is
/// no trace or the text does not parse (the check reports that).
fn with_absolute_trace(text: &str, path: &Path) -> String {
    let Ok(mut table) = toml::from_str::<toml::Table>(text) else {
        return text.to_owned();
    };
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let base = std::fs::canonicalize(&base).unwrap_or(base);
    let file = table
        .get_mut("clients")
        .and_then(|c| c.get_mut("send"))
        .and_then(|s| s.get_mut("file"));
    match file {
        Some(toml::Value::String(f)) if Path::new(f.as_str()).is_relative() => {
            *f = base.join(f.as_str()).display().to_string();
        }
        _ => return text.to_owned(),
    }
    toml::to_string(&table).unwrap_or_else(|_| text.to_owned())
}

/// Refuses to write a grid into `out` when it already holds one: runs of
/// an earlier grid left there would be merged into the new one.
pub fn check_fresh(out: &Path) -> Result<(), String> {
    if out.join("grid.json").exists() {
        return Err(format!(
            "{} already holds a sweep (grid.json): choose a new directory, or merge that one",
            out.display()
        ));
    }
    Ok(())
}

/// The seeds of every point: `first`, `first + 1`, ….
pub fn seeds(first: u64, n: usize) -> Vec<u64> {
    (0..n)
        .map(|i| crate::replicate::replication_seed(first, i))
        .collect()
}

/// Where run (`point`, `seed`) writes its outputs under `out`.
pub fn run_dir(out: &Path, point: usize, seed: u64) -> PathBuf {
    out.join(format!("point-{point}"))
        .join(format!("seed-{seed}"))
}

/// Writes the grid's description (`grid.json`) and each point's scenario
/// (`points/point-K.toml`) under `out`.
pub fn write_grid(out: &Path, points: &[Point], seeds: &[u64]) -> Result<(), String> {
    let dir = out.join("points");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (k, p) in points.iter().enumerate() {
        let path = dir.join(format!("point-{k}.toml"));
        std::fs::write(&path, &p.text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let grid = json!({
        "params": points.first().map_or_else(Vec::new, |p| p.values.iter().map(|(n, _)| n.clone()).collect()),
        "seeds": seeds,
        "points": points.iter().enumerate().map(|(k, p)| json!({
            "index": k,
            "values": p.values.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(),
            "xs": p.xs,
        })).collect::<Vec<_>>(),
    });
    let path = out.join("grid.json");
    std::fs::write(&path, grid.to_string() + "\n").map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes `jobs.txt` under `out`: one `mtos-sim run` command per point
/// and seed (`exe` the simulator's path), each writing its run
/// directory; returns how many.
pub fn emit_jobs(out: &Path, exe: &Path, points: &[Point], seeds: &[u64]) -> Result<usize, String> {
    write_grid(out, points, seeds)?;
    // Absolute paths: the commands run from any directory.
    let out = &std::fs::canonicalize(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let quote = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', r"'\''"));
    let mut jobs = String::new();
    for k in 0..points.len() {
        for s in seeds {
            let _ = writeln!(
                jobs,
                "{} run {} --seed {s} --quiet --out {} > /dev/null",
                quote(exe),
                quote(&out.join("points").join(format!("point-{k}.toml"))),
                quote(&run_dir(out, k, *s)),
            );
        }
    }
    let path = out.join("jobs.txt");
    std::fs::write(&path, &jobs).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(points.len() * seeds.len())
}

/// A figure read from a run's `summary.json`.
type Figure = (&'static str, fn(&Value) -> Option<f64>);

/// The figures `sweep.csv` reports for each point.
pub const FIGURES: [Figure; 13] = [
    ("entropy_bits", |s| {
        s["anonymity"]["entropy_bits_mean"].as_f64()
    }),
    ("closed_form_bits", |s| {
        s["anonymity"]["closed_form_bits"].as_f64()
    }),
    ("receiver_entropy_bits", |s| {
        s["anonymity"]["receiver_entropy_bits"]["mean"].as_f64()
    }),
    ("exit_node_entropy_bits", |s| {
        s["anonymity"]["exit_node_entropy_bits"]["mean"].as_f64()
    }),
    ("recipient_best_guess_right", |s| {
        s["anonymity"]["recipient_guess"]["best_guess_right"].as_f64()
    }),
    ("unlinkability_delta_at_epsilon_1", |s| {
        s["anonymity"]["unlinkability"]["delta_at_epsilon"]["1"].as_f64()
    }),
    ("sender_entropy_bits", |s| {
        s["anonymity"]["sender_guess"]["sender_entropy_bits_mean"].as_f64()
    }),
    ("end_to_end_latency_mean_s", |s| {
        s["end_to_end_latency_s"]["mean"].as_f64()
    }),
    ("end_to_end_latency_p99_s", |s| {
        s["end_to_end_latency_s"]["p99"].as_f64()
    }),
    ("network_latency_mean_s", |s| {
        s["network_latency_s"]["mean"].as_f64()
    }),
    ("cover_fraction", |s| {
        s["cover_fraction_of_packets"].as_f64()
    }),
    ("lost_mass", |s| s["anonymity"]["lost_mass_mean"].as_f64()),
    ("ruled_out_mass", |s| {
        s["anonymity"]["ruled_out_mass_mean"].as_f64()
    }),
];

/// One point's figures over its seeds.
#[derive(Debug, Clone)]
pub struct PointSummary {
    /// The point's values as numbers.
    pub xs: Vec<f64>,
    /// Runs found.
    pub runs: usize,
    /// Per figure: mean and the 95% interval's half-width (NaN when no
    /// run measured it, or the half-width with one run), and how many of
    /// the runs measured it.
    pub figures: Vec<(f64, f64, usize)>,
}

/// A merged sweep.
#[derive(Debug, Clone)]
pub struct Merged {
    /// The grid's parameters, in order.
    pub params: Vec<String>,
    /// Each point's figures, in the grid's order.
    pub points: Vec<PointSummary>,
    /// Runs with no readable `summary.json`.
    pub missing: usize,
}

/// The strings of a JSON array (none when it is not one).
fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Reads every run's `summary.json` under `out` (as `grid.json`
/// describes the grid) and writes `sweep.csv`: the parameters, the runs
/// found, and each figure's mean and 95% half-width. A run missing (not
/// yet done, or failed) is left out of its point and counted.
pub fn merge(out: &Path) -> Result<Merged, String> {
    let not_a_sweep = |e: String| {
        format!(
            "{}: not a sweep's output (no readable grid.json: {e})",
            out.display()
        )
    };
    let grid: Value = std::fs::read(out.join("grid.json"))
        .map_err(|e| not_a_sweep(e.to_string()))
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| not_a_sweep(e.to_string())))?;
    let names = strings(&grid["params"]);
    let seeds: Vec<u64> = grid["seeds"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    let points = grid["points"].as_array().cloned().unwrap_or_default();
    let mut csv = names.join(",");
    csv.push_str(if names.is_empty() { "runs" } else { ",runs" });
    for (f, _) in FIGURES {
        let _ = write!(csv, ",{f}_mean,{f}_ci95,{f}_runs");
    }
    csv.push('\n');
    let mut summaries = Vec::with_capacity(points.len());
    let mut missing = 0;
    for (k, p) in points.iter().enumerate() {
        let mut runs = Vec::new();
        for s in &seeds {
            let file = run_dir(out, k, *s).join("summary.json");
            match std::fs::read(&file)
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            {
                Some(v) => runs.push(v),
                None => missing += 1,
            }
        }
        let xs: Vec<f64> = p["xs"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default();
        let values = strings(&p["values"]);
        let figures: Vec<(f64, f64, usize)> = FIGURES
            .iter()
            .map(|(_, f)| {
                let measured: Vec<f64> = runs.iter().filter_map(f).collect();
                let (m, h) = mean_ci95(&measured);
                (m, h, measured.len())
            })
            .collect();
        let _ = write!(csv, "{}", values.join(","));
        let _ = write!(
            csv,
            "{}{}",
            if values.is_empty() { "" } else { "," },
            runs.len()
        );
        for (m, h, n) in &figures {
            let cell = |v: f64| {
                if v.is_finite() {
                    v.to_string()
                } else {
                    String::new()
                }
            };
            let _ = write!(csv, ",{},{},{n}", cell(*m), cell(*h));
        }
        csv.push('\n');
        summaries.push(PointSummary {
            xs,
            runs: runs.len(),
            figures,
        });
    }
    let path = out.join("sweep.csv");
    std::fs::write(&path, &csv).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Merged {
        params: names,
        points: summaries,
        missing,
    })
}
