//! `mtos-sim`: run scenarios of the production mix engine under virtual
//! time.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use mtos_sim::plot::{cdf_points, line_chart};
use mtos_sim::sweep::{parse_param, sweep};
use mtos_sim::{Metrics, Scenario, run_scenario};

/// mtos-sim: the mtos mix engine and cover schedule under virtual time.
#[derive(Debug, Parser)]
#[command(name = "mtos-sim", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one scenario: summary.json, latency.csv, entropy.csv and SVG plots.
    ///
    /// Example: mtos-sim run simulations/scenarios/small.toml --seed 7 --out results/
    Run {
        /// The scenario TOML file.
        scenario: PathBuf,
        /// Seed [default: the scenario's].
        #[arg(long)]
        seed: Option<u64>,
        /// Output directory (created if needed) [default: print the summary only].
        #[arg(long)]
        out: Option<PathBuf>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// Run it under this many seeds (the seed, seed + 1, ...) and
        /// report each run's figures and their mean with a 95%
        /// confidence interval (replications.json).
        #[arg(long, default_value_t = 1)]
        replications: usize,
        /// Parallel runs for --replications [default: the number of cores].
        #[arg(long)]
        jobs: Option<usize>,
    },
    /// Run a scenario once per value of one parameter, in parallel, and plot
    /// latency and entropy against it.
    ///
    /// Example: mtos-sim sweep simulations/scenarios/small.toml --param mixing.mean_delay_ms=10,50,200 --out sweep/
    Sweep {
        /// The scenario TOML file.
        scenario: PathBuf,
        /// NAME=V1,V2,...: a numeric key of the scenario, as a dotted path.
        #[arg(long)]
        param: String,
        /// Seed for every run [default: the scenario's].
        #[arg(long)]
        seed: Option<u64>,
        /// Output directory for sweep.csv and the plots.
        #[arg(long)]
        out: PathBuf,
        /// Parallel runs [default: the number of cores].
        #[arg(long)]
        jobs: Option<usize>,
    },
    /// The intersection attack on bulk windows (specs/simulation.md §4):
    /// posts until a publisher is singled out, for windows in fixed
    /// cohorts (mtos), drawn apart per client, or following the queue.
    ///
    /// Example: mtos-sim windows --clients 10000 --cohorts 20 --runs 200
    Windows {
        /// Clients online.
        #[arg(long, default_value_t = 10_000)]
        clients: usize,
        /// Cohorts: each client is in bulk 1/cohorts of the time.
        #[arg(long, default_value_t = 20)]
        cohorts: u32,
        /// A window's length, seconds.
        #[arg(long, default_value_t = 30.0)]
        window_secs: f64,
        /// Seconds from a window's start until the post is stored.
        #[arg(long, default_value_t = 10.0)]
        transfer_secs: f64,
        /// Posts, one a day.
        #[arg(long, default_value_t = 30)]
        posts: usize,
        /// Runs per policy.
        #[arg(long, default_value_t = 200)]
        runs: usize,
        /// The first run's seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mtos-sim: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) -> Result<(), String> {
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn bar(len: u64, quiet: bool, msg: &str, unit: &str) -> Result<ProgressBar, String> {
    if quiet {
        return Ok(ProgressBar::hidden());
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{msg}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {unit} (eta {{eta}})"
        ))
        .map_err(|e| e.to_string())?,
    );
    bar.set_message(msg.to_owned());
    Ok(bar)
}

fn plots(dir: &Path, m: &Metrics) -> Result<(), String> {
    if !m.network_latency_s.is_empty() {
        line_chart(
            &dir.join("latency_cdf.svg"),
            "End-to-end latency of real messages (CDF)",
            "seconds",
            "fraction of messages",
            &cdf_points(&m.end_to_end_latency_s),
            false,
        )
        .map_err(|e| e.to_string())?;
    }
    let points: Vec<(f64, f64)> = m
        .entropy
        .iter()
        .filter_map(|t| Some((*m.tag_sent_s.get(t.tag as usize)?, t.entropy_bits)))
        .collect();
    if !points.is_empty() {
        line_chart(
            &dir.join("entropy.svg"),
            "Entropy of tagged messages over time",
            "send time (s)",
            "entropy (bits)",
            &points,
            true,
        )
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Run {
            scenario,
            seed,
            out,
            quiet,
            replications,
            jobs,
        } => {
            let s = Scenario::load(&scenario).map_err(|e| e.to_string())?;
            let seed = seed.unwrap_or(s.seed);
            if replications == 0 {
                return Err("--replications must be at least 1".into());
            }
            if replications > 1 {
                let jobs = jobs.unwrap_or_else(|| {
                    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
                });
                let bar = bar(replications as u64, quiet, &s.name, "runs")?;
                let runs = mtos_sim::replicate::replicate(&s, seed, replications, jobs, |done| {
                    bar.set_position(done as u64);
                });
                bar.finish_and_clear();
                let summary =
                    serde_json::to_string_pretty(&mtos_sim::replicate::summary(&s, &runs))
                        .map_err(|e| e.to_string())?;
                if let Some(dir) = out {
                    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                    write(&dir, "replications.json", &(summary.clone() + "\n"))?;
                    eprintln!("wrote replications.json to {}", dir.display());
                }
                println!("{summary}");
                return Ok(());
            }
            let bar = bar(1000, quiet, &s.name, "‰ of virtual time")?;
            let started = std::time::Instant::now();
            let metrics = run_scenario(s.clone(), seed, |f| {
                bar.set_position((f * 1000.0) as u64);
            });
            bar.finish_and_clear();
            // Wall time is not part of the summary, which a seed
            // reproduces byte for byte: run.json and stderr.
            let wall = started.elapsed().as_secs_f64();
            let timing = serde_json::json!({
                "scenario": s.name,
                "seed": seed,
                "code_version": mtos_sim::CODE_VERSION,
                "wall_seconds": wall,
                "events": metrics.events,
                "events_per_second": metrics.events as f64 / wall.max(1e-9),
            });
            eprintln!(
                "{} events in {wall:.1} s ({:.0} events/s)",
                metrics.events,
                metrics.events as f64 / wall.max(1e-9)
            );
            let summary = serde_json::to_string_pretty(&metrics.summary(&s, seed))
                .map_err(|e| e.to_string())?;
            if let Some(dir) = out {
                std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                write(&dir, "summary.json", &(summary.clone() + "\n"))?;
                write(&dir, "run.json", &(timing.to_string() + "\n"))?;
                write(&dir, "latency.csv", &metrics.latency_csv())?;
                write(&dir, "entropy.csv", &metrics.entropy_csv())?;
                plots(&dir, &metrics)?;
                eprintln!(
                    "wrote summary.json, run.json, latency.csv, entropy.csv, latency_cdf.svg and entropy.svg to {}",
                    dir.display()
                );
            }
            println!("{summary}");
            Ok(())
        }
        Command::Sweep {
            scenario,
            param,
            seed,
            out,
            jobs,
        } => {
            let (name, values) = parse_param(&param).map_err(|e| e.to_string())?;
            let jobs = jobs.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
            });
            let bar = bar(values.len() as u64, false, &name, "runs")?;
            let results = sweep(&scenario, &name, &values, seed, jobs, |done| {
                bar.set_position(done as u64);
            })
            .map_err(|e| e.to_string())?;
            bar.finish_and_clear();
            std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
            let mut csv = format!(
                "{name},latency_mean_s,latency_p99_s,entropy_bits_mean,entropy_bits_stderr,cover_fraction\n"
            );
            let mut lat = Vec::new();
            let mut ent = Vec::new();
            for (x, s, m) in &results {
                let summary = m.summary(s, seed.unwrap_or(s.seed));
                let l = &summary["end_to_end_latency_s"];
                let (h, se) = m.mean_entropy().unwrap_or((f64::NAN, f64::NAN));
                let _ = writeln!(
                    csv,
                    "{x},{},{},{h},{se},{}",
                    l["mean"].as_f64().unwrap_or(f64::NAN),
                    l["p99"].as_f64().unwrap_or(f64::NAN),
                    summary["cover_fraction_of_packets"]
                        .as_f64()
                        .unwrap_or(f64::NAN)
                );
                if let Some(v) = l["mean"].as_f64() {
                    lat.push((*x, v));
                }
                if h.is_finite() {
                    ent.push((*x, h));
                }
            }
            write(&out, "sweep.csv", &csv)?;
            line_chart(
                &out.join("sweep_latency.svg"),
                &format!("Mean end-to-end latency vs {name}"),
                &name,
                "seconds",
                &lat,
                true,
            )
            .map_err(|e| e.to_string())?;
            if !ent.is_empty() {
                line_chart(
                    &out.join("sweep_entropy.svg"),
                    &format!("Mean message entropy vs {name}"),
                    &name,
                    "bits",
                    &ent,
                    true,
                )
                .map_err(|e| e.to_string())?;
            }
            print!("{csv}");
            eprintln!("wrote sweep.csv and plots to {}", out.display());
            Ok(())
        }
        Command::Windows {
            clients,
            cohorts,
            window_secs,
            transfer_secs,
            posts,
            runs,
            seed,
        } => {
            use mtos_sim::windows::{IntersectionConfig, WindowPolicy, intersection_attack};
            let positive = window_secs.is_finite() && window_secs > 0.0;
            if clients < 2 || cohorts == 0 || posts == 0 || runs == 0 || !positive {
                return Err("clients >= 2, cohorts, posts, runs and window_secs > 0".into());
            }
            let cfg = IntersectionConfig {
                clients,
                cohorts,
                window_secs,
                transfer_secs,
                posts,
                runs,
                seed,
            };
            println!(
                "{clients} clients, each in bulk 1/{cohorts} of the time, windows of {window_secs} s, a post stored within {transfer_secs} s of its window's start; {posts} posts, {runs} runs (seeds {seed}..)"
            );
            println!(
                "policy,singled_out_share,median_posts,left_after_1,left_after_3,left_after_{posts}"
            );
            for policy in WindowPolicy::ALL {
                let r = intersection_attack(&cfg, policy);
                let at = |i: usize| r.mean_left.get(i).copied().unwrap_or(f64::NAN);
                println!(
                    "{},{:.3},{},{:.1},{:.1},{:.1}",
                    policy.name(),
                    r.share_singled_out(),
                    r.median_posts()
                        .map_or("never".to_owned(), |p| p.to_string()),
                    at(0),
                    at(2),
                    at(posts - 1)
                );
            }
            Ok(())
        }
    }
}
