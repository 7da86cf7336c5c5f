//! Time budgets per hop, so a timeout tells the truth: every proxied request carries
//! the time it has left (`x-lanes-budget-ms`), each hop hands the next one a margin
//! less, and so the hop nearest a stuck service times out first and names it, while the
//! hops above it are still waiting and pass its answer on.

use std::time::Duration;

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

/// Request header: milliseconds the request has left.
pub const BUDGET_HEADER: HeaderName = HeaderName::from_static("x-lanes-budget-ms");

/// What each hop keeps for itself: the next hop's budget is this much shorter.
pub const HOP_MARGIN: Duration = Duration::from_millis(250);

/// The least budget handed on (a hop always gets some time).
const FLOOR: Duration = Duration::from_millis(50);

/// The time a request has left: what it says (its budget header, a gRPC call's
/// `grpc-timeout`, the shorter of both), never more than `limit`.
pub fn remaining(headers: &HeaderMap, limit: Duration) -> Duration {
    let budget = headers
        .get(&BUDGET_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(limit, |ms| Duration::from_millis(ms).min(limit));
    crate::grpc::timeout(headers).map_or(budget, |t| t.min(budget))
}

/// The budget the next hop gets when this hop waits `this_hop` for it.
pub fn for_next_hop(this_hop: Duration) -> Duration {
    this_hop.saturating_sub(HOP_MARGIN).max(FLOOR)
}

/// The time one try may take out of `left`: half of it when a fallback try may follow
/// (so the fallback has time too), all of it otherwise.
pub fn per_try(left: Duration, fallback_may_follow: bool) -> Duration {
    if fallback_may_follow { left / 2 } else { left }.max(FLOOR)
}

/// Stamps the budget of the next hop.
pub fn set(headers: &mut HeaderMap, budget: Duration) {
    let ms = u64::try_from(budget.as_millis()).unwrap_or(u64::MAX);
    headers.insert(BUDGET_HEADER, HeaderValue::from(ms));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_shrink_hop_by_hop_and_never_exceed_the_limit() {
        let limit = Duration::from_secs(15);
        let mut h = HeaderMap::new();
        assert_eq!(remaining(&h, limit), limit);
        set(&mut h, Duration::from_secs(20));
        assert_eq!(remaining(&h, limit), limit, "a client cannot raise it");
        set(&mut h, Duration::from_millis(900));
        assert_eq!(remaining(&h, limit), Duration::from_millis(900));
        h.insert(crate::grpc::TIMEOUT, HeaderValue::from_static("300m"));
        assert_eq!(
            remaining(&h, limit),
            Duration::from_millis(300),
            "a gRPC deadline"
        );
        h.insert(crate::grpc::TIMEOUT, HeaderValue::from_static("2S"));
        assert_eq!(remaining(&h, limit), Duration::from_millis(900));
        h.remove(crate::grpc::TIMEOUT);
        // Each hop hands on a margin less: the innermost times out first.
        let hops: Vec<u128> = std::iter::successors(Some(limit), |b| Some(for_next_hop(*b)))
            .take(4)
            .map(|d| d.as_millis())
            .collect();
        assert_eq!(hops, [15_000, 14_750, 14_500, 14_250]);
        assert_eq!(for_next_hop(Duration::from_millis(10)), FLOOR);
        assert_eq!(
            per_try(Duration::from_secs(10), true),
            Duration::from_secs(5)
        );
        assert_eq!(
            per_try(Duration::from_secs(10), false),
            Duration::from_secs(10)
        );
    }
}
