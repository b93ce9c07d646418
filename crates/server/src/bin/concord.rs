//! The `concord` server binary: etcd-style flags, runs one member until
//! SIGINT or SIGTERM.

fn main() -> anyhow::Result<()> {
    concord_server::cli::serve_main(std::env::args().collect())?;
    Ok(())
}
