//! What the `concord` binary does, shared with `concord-local` (which runs
//! its members as copies of itself).

use tracing_subscriber::EnvFilter;

use crate::{run, Config, Listeners, ServerError};

/// Parses etcd-style flags and runs a member until SIGINT or SIGTERM.
pub fn serve_main(args: Vec<String>) -> Result<(), ServerError> {
    disable_transparent_huge_pages();
    let cfg = Config::load(args)?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(&cfg.log_level))
        .with_ansi(false)
        .try_init();
    // Fail-stop: any panic ends the process (failstop.rs).
    crate::failstop::install_panic_hook();
    // Failpoints from `FAILPOINTS="name=actions;..."`, as etcd's gofail
    // takes them (the fail-stop tests, the chaos lab); none by default.
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    // Fewer workers than CPUs: the driver and WAL threads need cores too, and
    // cross-thread wake-ups cost more than they save on small machines.
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(cfg.runtime_threads()).enable_all();
    // Without the LIFO slot, a task woken by another runs after the tasks
    // already queued: the HTTP/2 connection task then flushes the responses
    // of a whole applied batch in one write instead of one write each (7x
    // fewer `writev` calls on the leader at 256 clients). The option needs
    // `--cfg tokio_unstable`, which `.cargo/config.toml` sets.
    #[cfg(tokio_unstable)]
    builder.disable_lifo_slot();
    let rt = builder.build()?;
    rt.block_on(async move {
        let listeners = Listeners::bind(&cfg).await?;
        let shutdown = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        };
        run(cfg, listeners, shutdown).await
    })
}

/// Turns transparent huge pages off for this process (and its children).
///
/// mimalloc asks for huge pages on its arenas; a member's heap grows with
/// the history it keeps, and every first touch of a 2 MiB region had the
/// kernel zero all of it. At 256-client puts on a fresh cluster that was
/// 12-15% of the members' CPU (`clear_page_erms`); with 4 KiB pages, 0.5%,
/// member CPU per put 15% lower and peak RSS about 30% lower. Best effort:
/// an older kernel without the option keeps its default.
pub fn disable_transparent_huge_pages() {
    // The flag belongs to the process's address space: every thread and
    // child process gets it.
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}
