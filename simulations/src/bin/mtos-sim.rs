//! `mtos-sim`: run scenarios of the production mix engine under virtual
//! time.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use mtos_sim::grid;
use mtos_sim::plot::{cdf_points, line_chart};
use mtos_sim::sweep::{parse_param, run_parallel};
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
    /// Run a scenario at every point of a grid of parameters, each point
    /// under several seeds, in parallel; sweep.csv has each point's
    /// figures (mean and 95% half-width over the seeds), and with one
    /// parameter latency and entropy are plotted against it. With
    /// --emit-jobs nothing runs: jobs.txt gets one command per run (for
    /// GNU parallel, a Slurm array, Kubernetes Jobs) and `mtos-sim merge`
    /// reads their outputs back.
    ///
    /// Example: mtos-sim sweep simulations/scenarios/small.toml --param mixing.mean_delay_ms=10,50,200 --param cover.payload=2,4 --seeds 5 --out sweep/
    Sweep {
        /// The scenario TOML file.
        scenario: PathBuf,
        /// NAME=V1,V2,...: a numeric key of the scenario, as a dotted path;
        /// repeat for a grid.
        #[arg(long, required = true)]
        param: Vec<String>,
        /// The first seed [default: the scenario's].
        #[arg(long)]
        seed: Option<u64>,
        /// Seeds per point (seed, seed + 1, ...).
        #[arg(long, default_value_t = 1)]
        seeds: usize,
        /// Output directory: grid.json, points/, point-K/seed-S/summary.json,
        /// sweep.csv and the plots.
        #[arg(long)]
        out: PathBuf,
        /// Parallel runs [default: the number of cores].
        #[arg(long)]
        jobs: Option<usize>,
        /// Write jobs.txt (one command per run) instead of running.
        #[arg(long)]
        emit_jobs: bool,
    },
    /// Read the runs of a sweep (its --out directory) into sweep.csv: after
    /// the commands of `sweep --emit-jobs` have run, wherever they ran.
    ///
    /// Example: parallel < sweep/jobs.txt && mtos-sim merge sweep/
    Merge {
        /// The sweep's output directory.
        dir: PathBuf,
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
    /// The metric against its closed form (specs/simulation.md §2): a
    /// stratified network of exponential mixes driven by the production
    /// engine, its mean entropy over seeds, and the Erlang closed form.
    /// Prints one CSV row per network of the grid.
    ///
    /// Example: mtos-sim stratified --layers 1,3 --width 1,3 --load 3,10,50 --seeds 5
    Stratified {
        /// Mix layers, 1 to 4 (a list for several networks).
        #[arg(long, value_delimiter = ',', default_value = "3")]
        layers: Vec<u32>,
        /// Mixes per layer (a list).
        #[arg(long, value_delimiter = ',', default_value = "3")]
        width: Vec<u32>,
        /// Each mix's load λ/μ (a list).
        #[arg(long, value_delimiter = ',', default_value = "50")]
        load: Vec<f64>,
        /// Mean hold 1/μ, milliseconds.
        #[arg(long, default_value_t = 100)]
        mean_delay_ms: u64,
        /// Tagged messages per run.
        #[arg(long, default_value_t = 150)]
        tags: u32,
        /// Runs per network (seeds seed, seed + 1, ...).
        #[arg(long, default_value_t = 5)]
        seeds: usize,
        /// The first seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

/// Merges a sweep's runs into sweep.csv, prints it, and with one
/// parameter plots latency and entropy against it.
fn merged(out: &Path) -> Result<(), String> {
    let grid::Merged {
        params,
        points,
        missing,
    } = grid::merge(out)?;
    if missing > 0 {
        eprintln!("{missing} runs have no summary.json yet (not run, or failed): left out");
    }
    if let [name] = params.as_slice() {
        let series = |f: usize| -> Vec<(f64, f64)> {
            points
                .iter()
                .filter_map(|p| Some((*p.xs.first()?, p.figures.get(f)?.0)))
                .filter(|(_, y)| y.is_finite())
                .collect()
        };
        let at = |n: &str| grid::FIGURES.iter().position(|(f, _)| *f == n).unwrap_or(0);
        let lat = series(at("end_to_end_latency_mean_s"));
        if !lat.is_empty() {
            line_chart(
                &out.join("sweep_latency.svg"),
                &format!("Mean end-to-end latency vs {name}"),
                name,
                "seconds",
                &lat,
                true,
            )
            .map_err(|e| e.to_string())?;
        }
        let ent = series(at("entropy_bits"));
        if !ent.is_empty() {
            line_chart(
                &out.join("sweep_entropy.svg"),
                &format!("Mean message entropy vs {name}"),
                name,
                "bits",
                &ent,
                true,
            )
            .map_err(|e| e.to_string())?;
        }
    }
    let csv = std::fs::read_to_string(out.join("sweep.csv")).map_err(|e| e.to_string())?;
    print!("{csv}");
    eprintln!("wrote sweep.csv to {}", out.display());
    Ok(())
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
                write(
                    &dir,
                    "node_load.csv",
                    &mtos_sim::load::csv(&s, &metrics.node_load),
                )?;
                if !metrics.queue_series.times.is_empty() {
                    write(
                        &dir,
                        "queue_series.csv",
                        &metrics.queue_series.csv(metrics.node_load.len()),
                    )?;
                }
                plots(&dir, &metrics)?;
                eprintln!(
                    "wrote summary.json, run.json, latency.csv, entropy.csv, node_load.csv, queue_series.csv, latency_cdf.svg and entropy.svg to {}",
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
            seeds,
            out,
            jobs,
            emit_jobs,
        } => {
            let params = param
                .iter()
                .map(|p| parse_param(p))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            if seeds == 0 {
                return Err("--seeds must be at least 1".into());
            }
            let points = grid::points(&scenario, &params).map_err(|e| e.to_string())?;
            let first = seed.unwrap_or_else(|| points.first().map_or(0, |p| p.scenario.seed));
            let seed_list = grid::seeds(first, seeds);
            grid::check_fresh(&out)?;
            std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
            if emit_jobs {
                let exe = std::env::current_exe().map_err(|e| e.to_string())?;
                let n = grid::emit_jobs(&out, &exe, &points, &seed_list)?;
                eprintln!(
                    "wrote {n} commands to {}; run them (e.g. parallel < jobs.txt), then mtos-sim merge {}",
                    out.join("jobs.txt").display(),
                    out.display()
                );
                return Ok(());
            }
            grid::write_grid(&out, &points, &seed_list)?;
            let jobs = jobs.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
            });
            let runs: Vec<(Scenario, u64)> = points
                .iter()
                .flat_map(|p| seed_list.iter().map(|s| (p.scenario.clone(), *s)))
                .collect();
            let bar = bar(runs.len() as u64, false, "sweep", "runs")?;
            let results = run_parallel(&runs, jobs, |done| bar.set_position(done as u64));
            bar.finish_and_clear();
            for (i, ((s, seed), m)) in runs.iter().zip(&results).enumerate() {
                let Some(m) = m else { continue };
                let dir = grid::run_dir(&out, i / seed_list.len(), *seed);
                std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                let summary = serde_json::to_string_pretty(&m.summary(s, *seed))
                    .map_err(|e| e.to_string())?;
                write(&dir, "summary.json", &(summary + "\n"))?;
            }
            merged(&out)
        }
        Command::Merge { dir } => merged(&dir),
        Command::Stratified {
            layers,
            width,
            load,
            mean_delay_ms,
            tags,
            seeds,
            seed,
        } => {
            use mtos_sim::stratified::Stratified;
            let loads_ok = load.iter().all(|l| l.is_finite() && *l > 0.0);
            if layers.iter().any(|l| !(1..=4).contains(l))
                || width.contains(&0)
                || !loads_ok
                || mean_delay_ms == 0
                || tags == 0
                || seeds < 2
            {
                return Err(
                    "layers 1 to 4, width >= 1, load > 0, mean_delay_ms >= 1, tags >= 1, seeds >= 2"
                        .into(),
                );
            }
            println!(
                "layers,width,load,mean_delay_ms,seeds,entropy_bits_mean,entropy_bits_ci95,stderr_bits,closed_form_bits,difference_in_stderrs"
            );
            for &l in &layers {
                for &w in &width {
                    for &rho in &load {
                        let c = Stratified {
                            layers: l,
                            width: w,
                            load: rho,
                            mean_delay: std::time::Duration::from_millis(mean_delay_ms),
                            tags,
                        }
                        .compare(seed, seeds);
                        println!(
                            "{l},{w},{rho},{mean_delay_ms},{seeds},{:.4},{:.4},{:.4},{:.4},{:.2}",
                            c.mean_bits,
                            c.ci95_bits,
                            c.stderr_bits,
                            c.closed_form_bits,
                            (c.mean_bits - c.closed_form_bits) / c.stderr_bits
                        );
                    }
                }
            }
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
