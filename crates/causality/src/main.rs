//! `concord-clocks`: the causality lab.
//!
//! `concord-clocks lab` runs N simulated processes with skewed, drifting
//! clocks under a seed, reports where wall-clock order contradicts
//! causality and what Lamport order cannot tell, draws the space-time
//! diagram, and shows LWW losing a concurrent write that an MV-Register
//! keeps. `concord-clocks cart` shows the CRDT cart converging after a
//! partition.

mod analysis;
mod cart_demo;
mod png;
mod report;
mod sim;
mod svg;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "concord-clocks",
    about = "The causality lab: clocks, skew, and CRDTs"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// Output format.
    #[arg(short = 'w', long = "write-out", value_enum, default_value_t = Format::Table, global = true)]
    format: Format,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Simulate processes with skewed clocks; report and draw the run.
    #[command(alias = "diagram")]
    Lab(LabArgs),
    /// The shopping cart converging after a partition.
    Cart {
        /// Seed of the clock skews and the heal's delivery order.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

#[derive(clap::Args, Debug)]
struct LabArgs {
    /// Seed of every random choice.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Number of processes (2 to 8; 3 to 6 draw best).
    #[arg(long, default_value_t = 4)]
    procs: usize,
    /// Events before in-flight messages are drained.
    #[arg(long, default_value_t = 30)]
    events: usize,
    /// Clock offsets are drawn in [-skew, +skew] milliseconds.
    #[arg(long, default_value_t = 120)]
    skew_ms: u64,
    /// Clock rates are off by up to this many parts per million.
    #[arg(long, default_value_t = 200)]
    drift_ppm: u64,
    /// HLC max offset, ms; remote timestamps further ahead are flagged.
    #[arg(long, default_value_t = 250)]
    max_offset_ms: u64,
    /// Write the space-time diagram as SVG here.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Write the space-time diagram as PNG here.
    #[arg(long)]
    png: Option<PathBuf>,
    /// Colour this event's causal past and future (a label such as `B3`).
    #[arg(long)]
    focus: Option<String>,
    /// Also print every event with all its timestamps.
    #[arg(long)]
    table: bool,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Lab(args) => lab(args, cli.format),
        Cmd::Cart { seed } => {
            let out = cart_demo::run(seed);
            report::cart(&out, cli.format == Format::Json);
            Ok(())
        }
    }
}

fn lab(args: LabArgs, format: Format) -> Result<()> {
    if !(2..=8).contains(&args.procs) {
        bail!("--procs must be 2 to 8, not {}", args.procs);
    }
    let cfg = sim::Config {
        seed: args.seed,
        procs: args.procs,
        events: args.events,
        skew_ms: args.skew_ms,
        drift_ppm: args.drift_ppm,
        max_offset_ms: args.max_offset_ms,
    };
    let run = sim::run(&cfg);
    let findings = analysis::analyze(&run);
    let focus = match &args.focus {
        Some(label) => Some(
            run.events
                .iter()
                .position(|e| e.label.eq_ignore_ascii_case(label))
                .with_context(|| format!("no event labelled {label} in this run"))?,
        ),
        None => None,
    };
    let writes = analysis::writes(&run);
    let mut files = Vec::new();
    if args.svg.is_some() || args.png.is_some() {
        let picture = svg::draw(&run, &findings, focus);
        if let Some(path) = &args.svg {
            std::fs::write(path, &picture)
                .with_context(|| format!("writing {}", path.display()))?;
            files.push(path.display().to_string());
        }
        if let Some(path) = &args.png {
            png::write(&picture, path)?;
            files.push(path.display().to_string());
        }
    }
    if format == Format::Json {
        report::lab_json(&run, &findings, &writes, &files);
    } else {
        report::lab_table(&run, &findings, &writes, &files, args.table);
    }
    Ok(())
}
