//! `concord-check history.jsonl [--timeout-ms N]`: checks a recorded history.
//!
//! Exit codes: 0 linearizable, 1 not linearizable, 2 unknown (timeout),
//! 3 bad usage or unreadable history.

use std::fs::File;
use std::io::{self, BufReader};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::error::ErrorKind;
use clap::Parser;
use concord_check::{check, History, Verdict};

/// Check a JSON-lines history of key-value operations for linearizability.
#[derive(Debug, Parser)]
#[command(name = "concord-check", version)]
struct Args {
    /// History file (JSON lines, see HISTORY.md); `-` reads standard input.
    history: PathBuf,
    /// Give up (exit 2) after this many milliseconds of searching.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// On a violation, list every op involved instead of the last ones.
    #[arg(long, short)]
    verbose: bool,
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            e.exit()
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(3);
        }
    };
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("concord-check: {e:#}");
            ExitCode::from(3)
        }
    }
}

fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let history = if args.history.as_os_str() == "-" {
        History::read_jsonl(io::stdin().lock())
    } else {
        let file = File::open(&args.history)
            .with_context(|| format!("opening {}", args.history.display()))?;
        History::read_jsonl(BufReader::new(file))
    }
    .with_context(|| format!("reading {}", args.history.display()))?;

    let report = check(&history, Duration::from_millis(args.timeout_ms));
    eprintln!(
        "{} ops, {} partitions, {:.1} ms",
        history.ops().len(),
        report.partitions,
        report.elapsed.as_secs_f64() * 1e3
    );
    Ok(match report.verdict {
        Verdict::Linearizable => {
            println!("linearizable");
            ExitCode::SUCCESS
        }
        Verdict::NotLinearizable(v) => {
            println!("NOT linearizable");
            if args.verbose {
                println!("{v:#}");
            } else {
                println!("{v}");
            }
            ExitCode::from(1)
        }
        Verdict::Unknown => {
            println!("unknown (timeout)");
            for keys in &report.undecided {
                println!("  gave up on partition {keys:?} (time budget or 1 GiB memory cap)");
            }
            ExitCode::from(2)
        }
    })
}
