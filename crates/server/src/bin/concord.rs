//! The `concord` server binary: etcd-style flags, runs one member until
//! SIGINT or SIGTERM.

/// mimalloc: the allocator matters on the request path (many small buffers).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    concord_server::cli::serve_main(std::env::args().collect())?;
    Ok(())
}
