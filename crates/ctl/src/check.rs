//! `concordctl check HISTORY`: the linearizability checker on a recorded
//! history (JSON lines, see the check crate's HISTORY.md).

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use concord_check::{check, History, Verdict};
use serde_json::json;

use crate::{exit, Format, Global};

/// Check a recorded history for linearizability.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// History file (JSON lines); `-` reads standard input.
    history: PathBuf,
    /// Give up (exit 4) after this many milliseconds of searching.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<u8> {
    let name = args.history.display().to_string();
    let history = if name == "-" {
        History::read_jsonl(std::io::stdin().lock())
    } else {
        let file = File::open(&args.history).with_context(|| format!("opening {name}"))?;
        History::read_jsonl(BufReader::new(file))
    }
    .with_context(|| format!("reading {name}"))?;
    let report = check(&history, Duration::from_millis(args.timeout_ms));
    let (word, code, detail) = match &report.verdict {
        Verdict::Linearizable => ("linearizable", 0, String::new()),
        Verdict::NotLinearizable(v) => ("not linearizable", exit::NOT_LINEARIZABLE, v.to_string()),
        Verdict::Unknown => ("unknown", exit::UNKNOWN, format!("{:?}", report.undecided)),
    };
    match global.format {
        Format::Json => println!(
            "{}",
            json!({
                "verdict": word,
                "ops": history.ops().len(),
                "partitions": report.partitions,
                "elapsed_ms": report.elapsed.as_secs_f64() * 1e3,
                "detail": detail,
            })
        ),
        Format::Table => {
            println!(
                "{word} ({} ops, {} partitions, {:.1} ms)",
                history.ops().len(),
                report.partitions,
                report.elapsed.as_secs_f64() * 1e3
            );
            if !detail.is_empty() {
                println!("{detail}");
            }
        }
    }
    Ok(code)
}
