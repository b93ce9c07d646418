//! `concord-bench`: parses the flags, runs the workload, prints the summary
//! and optionally writes the JSON report.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use concord_bench::{run, Args};

/// mimalloc, as in the server: glibc malloc was a tenth of this process's
/// CPU at 256 clients, and this process shares the CPU with the members.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // As the server does (crates/server/src/cli.rs): no transparent huge
    // pages, whose zeroing on first touch was 7% of this process's CPU.
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    let args = Args::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    // As in the server (crates/server/src/cli.rs): a woken HTTP/2 connection
    // task runs after the queued request tasks, so their frames go out in
    // one write.
    #[cfg(tokio_unstable)]
    builder.disable_lifo_slot();
    let rt = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("concord-bench: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(bench(&args)) {
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
