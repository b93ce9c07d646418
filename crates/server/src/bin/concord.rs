//! The `concord` server binary: parse etcd-style flags, run a member until
//! SIGINT or SIGTERM.

use anyhow::Context;
use concord_server::{run, Config, Listeners};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cfg = Config::load(std::env::args()).map_err(|e| anyhow::anyhow!("{e}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(&cfg.log_level))
        .with_ansi(false)
        .init();
    let listeners = Listeners::bind(&cfg).await.context("binding listeners")?;
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    run(cfg, listeners, shutdown).await?;
    Ok(())
}
