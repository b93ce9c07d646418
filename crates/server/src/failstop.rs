//! Fail-stop: a member that cannot go on stops with a clear message and a
//! non-zero exit code, so that a supervisor restarts it from its durable
//! state. It never keeps serving half alive (a dead driver thread behind
//! live listeners answered `/livez` ok and refused every write).
//!
//! - [`install_panic_hook`] (the binaries): a panic on any thread is logged
//!   as fatal and ends the process with [`PANIC_EXIT_CODE`]; the driver
//!   halts at its next round, before the backtrace is printed. No
//!   destructor runs, so nothing half-applied is checkpointed; on restart
//!   the WAL is the truth.
//! - Embedded (`run` in tests): the driver thread's panic is caught and
//!   reported with [`crate::shared::Shared::fatal`], which poisons the
//!   store, stops the member and makes `run` return the error; a critical
//!   task that ends before shutdown is reported the same way.
//! - `/livez` answers 503 once the driver has not finished a round for
//!   [`stall_bound`] (a hung fsync, a deadlock): the driver wakes at least
//!   every tick, so a silent driver is a stuck one.

use std::any::Any;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Set by the panic hook before it prints anything: printing a backtrace
/// can take seconds (symbols of a debug build on a busy machine), and the
/// driver must not apply, answer or acknowledge anything meanwhile.
static DYING: AtomicBool = AtomicBool::new(false);

/// Parks the calling thread for good once a panic hook has begun to stop
/// the process (the driver calls it each round; the exit follows).
pub fn halt_if_dying() {
    while DYING.load(Ordering::Acquire) {
        std::thread::park();
    }
}

/// Exit code of a member stopped by a panic (EX_SOFTWARE).
pub const PANIC_EXIT_CODE: i32 = 70;

/// A panic's message, for logs.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_string())
}

/// Makes every panic in this process fatal: logged, then exit with
/// [`PANIC_EXIT_CODE`]. For the binaries only (tests embed the server).
pub fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // First stop the driver, so that the member serves nothing more
        // while the backtrace is printed (it once went on leading for 6 s).
        DYING.store(true, Ordering::Release);
        default(info);
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed").to_string();
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let msg = panic_message(info.payload());
        let line = format!(
            "fatal: thread '{name}' panicked at {at}: {msg}; stopping the member \
             (exit code {PANIC_EXIT_CODE}) so that a supervisor restarts it from its durable state"
        );
        tracing::error!("{line}");
        eprintln!("{line}");
        std::process::exit(PANIC_EXIT_CODE);
    }));
}

/// How long the driver may go without finishing a round before `/livez`
/// reports the member dead: three election timeouts, at least 3 s (it
/// wakes every tick, and an fsync or a large apply can take a while).
pub fn stall_bound(election_timeout: Duration) -> Duration {
    (election_timeout * 3).max(Duration::from_secs(3))
}
