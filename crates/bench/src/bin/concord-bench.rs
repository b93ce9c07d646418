//! `concord-bench`: parses the flags, runs the workload, prints the summary
//! and optionally writes the JSON report.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use concord_bench::{run, Args};

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match bench(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("concord-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn bench(args: &Args) -> anyhow::Result<()> {
    let report = run(args).await.context(args.workload.name())?;
    print!("{}", report.human());
    if let Some(path) = &args.json {
        report.write_json(path)?;
    }
    Ok(())
}
