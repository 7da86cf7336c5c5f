//! What every listener does to stay alive under load and abuse: a cap on the
//! connections it holds (more are refused at once), a deadline for a connection's first
//! byte, an idle deadline for connections with no request in flight, and back-off on
//! accept errors (running out of descriptors) instead of a hot loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

/// The shortest and longest pause after a failed accept.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(5), Duration::from_secs(1));

/// Back-off after accept errors: doubles on each failure, resets on a success.
#[derive(Debug)]
pub struct AcceptBackoff {
    next: Duration,
    last_log: Option<Instant>,
    suppressed: u64,
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        AcceptBackoff {
            next: ACCEPT_BACKOFF.0,
            last_log: None,
            suppressed: 0,
        }
    }
}

impl AcceptBackoff {
    /// A successful accept.
    pub fn reset(&mut self) {
        self.next = ACCEPT_BACKOFF.0;
    }

    /// A failed accept: logs it (at most once a second) and returns how long to pause.
    pub fn failed(&mut self, listener: &str, error: &std::io::Error) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(ACCEPT_BACKOFF.1);
        if self
            .last_log
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            tracing::warn!(listener, error = %error, pause_ms = pause.as_millis() as u64,
                suppressed = self.suppressed, "accept failed; pausing");
            self.last_log = Some(Instant::now());
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
        pause
    }
}

/// Waits for a connection's first byte, up to `limit`. False when the client sent
/// nothing in time or closed.
pub async fn first_byte(stream: &TcpStream, limit: Duration) -> bool {
    peek_first_byte(stream, limit).await.is_some()
}

/// The first byte the client sends (left unread), or `None` when it sends nothing
/// within `limit`.
pub async fn peek_first_byte(stream: &TcpStream, limit: Duration) -> Option<u8> {
    let mut one = [0u8; 1];
    match tokio::time::timeout(limit, stream.peek(&mut one)).await {
        Ok(Ok(n)) if n > 0 => Some(one[0]),
        _ => None,
    }
}

/// Whether a connection's first byte opens a TLS handshake (a TLS record of type
/// `handshake`); plain HTTP starts with a method's letter.
pub fn is_tls_handshake(first: u8) -> bool {
    first == 0x16
}

/// A connection's requests in flight and when the last one ended, for its idle
/// deadline.
#[derive(Debug)]
pub struct Activity {
    base: Instant,
    in_flight: AtomicUsize,
    last_ms: AtomicU64,
}

impl Activity {
    /// A fresh connection: idle since now.
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            base: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
        })
    }

    /// A request starts; it counts as in flight until the guard (kept with its
    /// response body) is dropped.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    fn touch(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Release);
    }

    /// When the connection turns idle past `limit`, or `None` while a request is in
    /// flight.
    pub fn idle_deadline(&self, limit: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(self.base + Duration::from_millis(self.last_ms.load(Ordering::Acquire)) + limit)
    }

    /// Whether the connection has been idle for `limit` by now.
    pub fn is_idle(&self, limit: Duration) -> bool {
        self.idle_deadline(limit)
            .is_some_and(|d| d <= Instant::now())
    }
}

/// A request in flight on a connection.
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_idle_only_with_nothing_in_flight() {
        let a = Activity::new();
        let limit = Duration::from_secs(30);
        assert!(!a.is_idle(limit));
        let req = a.begin();
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(!a.is_idle(limit), "a request in flight keeps it open");
        assert_eq!(a.idle_deadline(limit), None);
        drop(req);
        assert!(
            !a.is_idle(limit),
            "idle time counts from the last request's end"
        );
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(a.is_idle(limit));
    }

    #[tokio::test(start_paused = true)]
    async fn accept_back_off_doubles_to_a_second_and_resets() {
        let mut b = AcceptBackoff::default();
        let e = std::io::Error::other("EMFILE");
        let pauses: Vec<u128> = (0..10).map(|_| b.failed("t", &e).as_millis()).collect();
        assert_eq!(pauses, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.reset();
        assert_eq!(b.failed("t", &e), Duration::from_millis(5));
    }
}
