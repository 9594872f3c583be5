//! Per-object exponential backoff for failed reconciles, reset by a success.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The first retry waits this long; each further failure doubles it.
const FIRST: Duration = Duration::from_secs(1);
/// No retry waits longer than this.
const LONGEST: Duration = Duration::from_secs(300);

/// Failures in a row per object.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Records a failure of `key` and returns how long to wait before retrying.
    pub fn failed(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let count = failures.entry(key.to_string()).or_default();
        *count = count.saturating_add(1);
        FIRST
            .saturating_mul(2u32.saturating_pow(*count - 1))
            .min(LONGEST)
    }

    /// Forgets the failures of `key` after a successful reconcile.
    pub fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_doubles_the_wait_up_to_a_limit() {
        let backoff = Backoff::default();
        let waits: Vec<_> = (0..12).map(|_| backoff.failed("ns/a").as_secs()).collect();
        assert_eq!(&waits[..4], [1, 2, 4, 8]);
        assert_eq!(waits[11], 300);
    }

    #[test]
    fn a_success_resets_the_backoff() {
        let backoff = Backoff::default();
        backoff.failed("ns/a");
        backoff.failed("ns/a");
        backoff.succeeded("ns/a");
        assert_eq!(backoff.failed("ns/a"), Duration::from_secs(1));
    }
}
