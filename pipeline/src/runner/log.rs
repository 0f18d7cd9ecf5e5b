//! A stage's item errors in the log: every one counted, at most a burst logged.

use std::error::Error;
use std::time::{Duration, Instant};

use tracing::warn;

use crate::error::Chain;

/// A stage logs at most `ERROR_LOG_BURST` item errors per `ERROR_LOG_INTERVAL`; all are counted.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(1);
const ERROR_LOG_BURST: u32 = 10;
/// Logs item errors in bursts of at most `ERROR_LOG_BURST` per interval, so a source that
/// fails every frame cannot flood the log; each line says how many were left out before it.
#[derive(Default)]
pub(super) struct ErrorLog {
    interval_start: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl ErrorLog {
    pub(super) fn note(
        &mut self,
        stage: &'static str,
        worker: Option<usize>,
        error: &(dyn Error + 'static),
    ) {
        if let Some(suppressed) = self.admit(Instant::now()) {
            warn!(stage, worker, error = %Chain(error), suppressed, "item skipped");
        }
    }

    /// Whether an error at `now` gets logged: `Some(errors left out since the last one)`.
    fn admit(&mut self, now: Instant) -> Option<u64> {
        if self
            .interval_start
            .is_none_or(|start| now.saturating_duration_since(start) >= ERROR_LOG_INTERVAL)
        {
            self.interval_start = Some(now);
            self.logged = 0;
        }
        if self.logged == ERROR_LOG_BURST {
            self.suppressed += 1;
            return None;
        }
        self.logged += 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_logging_is_limited_to_bursts_and_says_what_it_left_out() {
        let mut log = ErrorLog::default();
        let start = Instant::now();
        let admitted: Vec<_> = (0..25).map(|_| log.admit(start)).collect();
        assert_eq!(admitted.iter().flatten().count(), ERROR_LOG_BURST as usize);
        assert!(admitted[10..].iter().all(Option::is_none));
        assert_eq!(log.admit(start + ERROR_LOG_INTERVAL), Some(15));
        assert_eq!(log.admit(start + ERROR_LOG_INTERVAL), Some(0));
    }
}
