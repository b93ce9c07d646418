//! The progress bar on stderr, fed by a ticker task (clients only bump an
//! atomic counter).

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinHandle;

/// A progress bar that polls a counter every 100 ms until finished.
#[derive(Debug)]
pub(crate) struct Progress {
    bar: ProgressBar,
    ticker: JoinHandle<()>,
}

impl Progress {
    /// Starts a bar for `label`: of length `len` if known, else a spinner.
    /// Hidden unless `enabled` (and stderr is a terminal).
    pub(crate) fn start(
        enabled: bool,
        label: &str,
        len: Option<u64>,
        pos: impl Fn() -> u64 + Send + 'static,
    ) -> Self {
        let bar = match (enabled, len) {
            (false, _) => ProgressBar::hidden(),
            (true, Some(n)) => ProgressBar::new(n).with_style(
                ProgressStyle::with_template(
                    "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, eta {eta})",
                )
                .expect("valid template"),
            ),
            (true, None) => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template(
                    "{prefix} {spinner} [{elapsed_precise}] {pos} ({per_sec})",
                )
                .expect("valid template"),
            ),
        };
        bar.set_prefix(label.to_string());
        let b = bar.clone();
        let ticker = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                b.set_position(pos());
                if len.is_none() {
                    b.tick();
                }
            }
        });
        Progress { bar, ticker }
    }

    /// Stops the ticker and clears the bar.
    pub(crate) fn finish(self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}
