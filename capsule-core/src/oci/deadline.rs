//! The deadline of one registry operation (a pull, a push, a `fetch`, one lazy fetch at run
//! time) and the retry policy of its requests.
//!
//! An operation starts an [`Operation`] on its thread; every request the [`super::client`]
//! sends while it lasts gets the time left as its overall timeout (ureq's, which covers the
//! connection, the headers and reading the body), and a body read past it fails. So a registry
//! that answers one byte every few seconds ends in [`super::OciError::Deadline`], naming the
//! registry and the reference, instead of hanging. `CAPSULE_REGISTRY_TIMEOUT` (seconds) sets
//! the limit; the default is 30 minutes. Threads are independent: the materialiser serves each
//! first open on a thread of its own, and each lazy fetch has its own deadline.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// The environment variable that sets an operation's limit, in seconds.
pub const ENV: &str = "CAPSULE_REGISTRY_TIMEOUT";
/// The limit without it.
pub const DEFAULT: Duration = Duration::from_secs(30 * 60);
/// How many times a request is sent at most (the first time and five retries).
pub const ATTEMPTS: u32 = 6;
/// The first retry's delay; each next one doubles it (0.25, 0.5, 1, 2, 4 s).
pub const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest wait a `Retry-After` header gets.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

thread_local! {
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// The limit of one operation: `$CAPSULE_REGISTRY_TIMEOUT` seconds (a positive number), else
/// [`DEFAULT`].
pub fn limit() -> Duration {
    std::env::var(ENV)
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(DEFAULT, |s| Duration::from_secs_f64(s.min(365.0 * 86400.0)))
}

/// One operation on this thread; its deadline holds until it is dropped. Nested operations
/// keep the earlier deadline.
#[derive(Debug)]
pub struct Operation {
    previous: Option<Instant>,
}

impl Operation {
    /// Start an operation of [`limit`] from now.
    pub fn start() -> Operation {
        let mine = Instant::now() + limit();
        let previous = DEADLINE.with(Cell::get);
        DEADLINE.with(|d| d.set(Some(previous.map_or(mine, |p| p.min(mine)))));
        Operation { previous }
    }
}

impl Drop for Operation {
    fn drop(&mut self) {
        DEADLINE.with(|d| d.set(self.previous));
    }
}

/// The deadline of this thread's operation; outside one, [`limit`] from now.
pub fn deadline() -> Instant {
    DEADLINE.with(Cell::get).unwrap_or_else(|| Instant::now() + limit())
}

/// The time left before `deadline` (zero once past).
pub fn left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// The delay before retry number `retry` (1-based).
pub fn backoff(retry: u32) -> Duration {
    FIRST_BACKOFF.saturating_mul(1 << retry.saturating_sub(1).min(16))
}

/// A body reader that fails once the operation's deadline has passed (ureq's own deadline
/// surfaces as a timed-out read; both become the same error, naming the registry and the
/// reference).
pub struct Reader<R> {
    pub(crate) inner: R,
    pub(crate) deadline: Instant,
    pub(crate) registry: String,
    pub(crate) reference: String,
}

impl<R> Reader<R> {
    fn expired(&self) -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "registry {} did not send {} within the deadline of {} s ({ENV} sets it)",
                self.registry,
                self.reference,
                limit().as_secs()
            ),
        )
    }
}

impl<R: std::io::Read> std::io::Read for Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if Instant::now() >= self.deadline {
            return Err(self.expired());
        }
        match self.inner.read(buf) {
            Err(e) if timed_out(&e) => Err(self.expired()),
            other => other,
        }
    }
}

/// Whether a body read failed because a timeout ran out: the socket's (`TimedOut`,
/// `WouldBlock`) or ureq's own (a [`ureq::Error::Timeout`] inside the I/O error).
fn timed_out(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock)
        || e.get_ref()
            .and_then(|inner| inner.downcast_ref::<ureq::Error>())
            .is_some_and(|u| matches!(u, ureq::Error::Timeout(_)) || matches!(u, ureq::Error::Io(io) if timed_out(io)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_nest_and_restore() {
        assert!(DEADLINE.with(Cell::get).is_none());
        {
            let _outer = Operation::start();
            let outer = deadline();
            {
                let _inner = Operation::start();
                assert_eq!(deadline(), outer, "a nested operation keeps the earlier deadline");
            }
            assert_eq!(DEADLINE.with(Cell::get), Some(outer));
        }
        assert!(DEADLINE.with(Cell::get).is_none());
        assert_eq!(backoff(1), Duration::from_millis(250));
        assert_eq!(backoff(5), Duration::from_secs(4));
    }
}
