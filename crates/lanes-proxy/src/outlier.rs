//! Passive outlier detection: an endpoint whose tries keep failing as a gateway would
//! see it (no answer in time, no connection, or a 502/503/504 from its sidecar) is
//! ejected from load balancing for a while, longer each time it is ejected again, as
//! Envoy's `consecutive_gateway_failure` does. Only failing endpoints are tracked, so
//! the table is bounded by the endpoints that fail at once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Consecutive failures that eject an endpoint.
pub const CONSECUTIVE_FAILURES: u32 = 5;
/// How long a first ejection lasts; the n-th lasts n times as long, at most
/// [`MAX_EJECTION`].
pub const BASE_EJECTION: Duration = Duration::from_secs(10);
/// The longest ejection.
pub const MAX_EJECTION: Duration = Duration::from_secs(300);

#[derive(Debug, Default, Clone, Copy)]
struct Health {
    consecutive: u32,
    ejected_until: Option<Instant>,
    ejections: u32,
}

/// The failing endpoints of a proxy and their ejections.
#[derive(Debug, Default)]
pub struct Outliers {
    failing: Mutex<HashMap<SocketAddr, Health>>,
}

/// Whether an attempt's outcome counts against the endpoint as a gateway failure.
pub fn is_gateway_failure(status: Option<u16>) -> bool {
    match status {
        None => true,
        Some(s) => matches!(s, 502..=504),
    }
}

impl Outliers {
    /// Records a try on `addr` at `now`; says whether it ejected the endpoint.
    pub fn record(&self, addr: SocketAddr, failed: bool, now: Instant) -> bool {
        let Ok(mut map) = self.failing.lock() else {
            return false;
        };
        if !failed {
            // A success clears the count; an endpoint that was ejected stays known
            // (its next ejection lasts longer) until its ejection has run out.
            if let Some(h) = map.get_mut(&addr) {
                h.consecutive = 0;
                if h.ejected_until.is_none_or(|t| t <= now) {
                    map.remove(&addr);
                }
            }
            return false;
        }
        let h = map.entry(addr).or_default();
        h.consecutive += 1;
        if h.consecutive < CONSECUTIVE_FAILURES || h.ejected_until.is_some_and(|t| t > now) {
            return false;
        }
        h.ejections += 1;
        h.consecutive = 0;
        let lasts = (BASE_EJECTION * h.ejections).min(MAX_EJECTION);
        h.ejected_until = Some(now + lasts);
        true
    }

    /// Whether `addr` is ejected at `now`.
    pub fn is_ejected(&self, addr: SocketAddr, now: Instant) -> bool {
        self.failing
            .lock()
            .ok()
            .and_then(|m| m.get(&addr).and_then(|h| h.ejected_until))
            .is_some_and(|t| t > now)
    }

    /// Endpoints tracked (failing or recently ejected).
    pub fn len(&self) -> usize {
        self.failing.lock().map_or(0, |m| m.len())
    }

    /// Whether none is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_in_a_row_eject_for_longer_each_time_and_success_forgets() {
        let o = Outliers::default();
        let a: SocketAddr = "127.0.1.1:15006".parse().unwrap_or_else(|_| unreachable!());
        let t = Instant::now();
        for _ in 0..4 {
            assert!(!o.record(a, true, t));
        }
        assert!(
            !o.record(a, false, t),
            "a success in between resets the count"
        );
        assert!(o.is_empty());
        for i in 0..5 {
            assert_eq!(o.record(a, true, t), i == 4);
        }
        assert!(o.is_ejected(a, t + Duration::from_secs(9)));
        assert!(!o.is_ejected(a, t + Duration::from_secs(11)));
        let t2 = t + Duration::from_secs(11);
        for _ in 0..5 {
            o.record(a, true, t2);
        }
        assert!(
            o.is_ejected(a, t2 + Duration::from_secs(19)),
            "the second lasts twice as long"
        );
        assert!(!o.is_ejected(a, t2 + Duration::from_secs(21)));
        o.record(a, false, t2 + Duration::from_secs(21));
        assert!(o.is_empty());
        assert!(is_gateway_failure(None) && is_gateway_failure(Some(504)));
        assert!(!is_gateway_failure(Some(500)) && !is_gateway_failure(Some(200)));
    }
}
