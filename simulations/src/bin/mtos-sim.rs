//! `mtos-sim`: run scenarios of the production mix engine under virtual
//! time.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use mtos_sim::{Scenario, run_scenario};

/// mtos-sim: the mtos mix engine and cover schedule under virtual time.
#[derive(Debug, Parser)]
#[command(name = "mtos-sim", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one scenario; write summary.json, latency.csv and entropy.csv.
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

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Run {
            scenario,
            seed,
            out,
            quiet,
        } => {
            let s = Scenario::load(&scenario).map_err(|e| e.to_string())?;
            let seed = seed.unwrap_or(s.seed);
            let bar = if quiet {
                ProgressBar::hidden()
            } else {
                let bar = ProgressBar::new(1000);
                bar.set_style(
                    ProgressStyle::with_template(
                        "{msg} [{elapsed_precise}] {wide_bar} {percent}% virtual time (eta {eta})",
                    )
                    .map_err(|e| e.to_string())?,
                );
                bar.set_message(s.name.clone());
                bar
            };
            let metrics = run_scenario(s.clone(), seed, |f| {
                bar.set_position((f * 1000.0) as u64);
            });
            bar.finish_and_clear();
            let summary = serde_json::to_string_pretty(&metrics.summary(&s, seed))
                .map_err(|e| e.to_string())?;
            if let Some(dir) = out {
                std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                let write = |name: &str, text: &str| {
                    let path = dir.join(name);
                    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
                };
                write("summary.json", &(summary.clone() + "\n"))?;
                write("latency.csv", &metrics.latency_csv())?;
                write("entropy.csv", &metrics.entropy_csv())?;
                eprintln!(
                    "wrote {}/summary.json, latency.csv and entropy.csv",
                    dir.display()
                );
            }
            println!("{summary}");
            Ok(())
        }
    }
}
