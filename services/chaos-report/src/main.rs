//! `chaos-report`: the checking and drawing half of `scripts/chaos.sh`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use chaos_report::{check, percentiles, plot, table, verify};

#[derive(Debug, Parser)]
#[command(
    name = "chaos-report",
    version,
    about = "Checks acknowledged writes against Redis, prints the phase table, draws the timeline"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check one phase: failures against its requirements, acknowledged writes against a
    /// Redis dump. Prints one JSON row on stdout; exit code 1 when a requirement failed.
    Verify(verify::Args),
    /// Print rows written by `verify` (one JSON object per line) as a table.
    Table {
        /// File of JSON rows.
        rows: PathBuf,
    },
    /// Walk every key under a prefix (one Redis or every cluster primary) and check that
    /// indexes, entities and counts agree. Exit code 1 on any violation, 2 when Redis cannot be
    /// read.
    Check(check::Args),
    /// Draw requests per second per replica over time with the faults marked (SVG and PNG).
    Plot(plot::Args),
    /// Print percentiles and the maximum of whole numbers read from a file or stdin (HDR
    /// histogram, 3 significant figures), on one line separated by spaces.
    Percentiles(percentiles::Args),
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("chaos-report: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Verify(args) => {
            let row = verify::run(&args)?;
            println!("{}", serde_json::to_string(&row)?);
            for problem in &row.problems {
                eprintln!("chaos-report: phase {}: {problem}", row.phase);
            }
            Ok(if row.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Table { rows } => {
            let rows = table::read_rows(&rows)?;
            print!("{}", table::render(&rows));
            Ok(if rows.iter().all(|r| r.passed) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Check(args) => {
            let report = check::run(&args)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", check::render(&report));
            }
            Ok(if report.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Plot(args) => {
            plot::run(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Percentiles(args) => {
            println!("{}", percentiles::run(&args)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
