//! Judging a canary from its attempts: one measurement per metric per interval, from
//! the difference between two cumulative samples. Too few requests is inconclusive,
//! never a failure.

use std::collections::BTreeMap;

use lanes_model::rollout::{
    Analysis, AnalysisMetric, AnalysisStatus, Measurement, Sample, Verdict,
};

/// Measurements kept in an analysis record, newest last.
const KEPT_MEASUREMENTS: usize = 20;

/// What an analysis round came to.
#[derive(Debug, Clone, PartialEq)]
pub struct Round {
    /// When the next round is due.
    pub next: jiff::Timestamp,
    /// Why the analysis failed, once failed rounds exceed `failureLimit`.
    pub failed: Option<String>,
}

/// One analysis round of `cfg` on the record `a`, with the cumulative sample `cur`, when
/// its interval has passed since the last (the first sample only starts the record): a
/// verdict per metric (`external` holds the `prometheus` metrics' values).
pub fn round(
    cfg: &Analysis,
    a: &mut AnalysisStatus,
    cur: &Sample,
    external: &BTreeMap<String, Result<f64, String>>,
    now: jiff::Timestamp,
) -> Round {
    let interval =
        jiff::SignedDuration::from_millis(cfg.interval.millis().unwrap_or(60_000) as i64);
    let Some(prev) = a.last_sample.clone() else {
        a.last_sample = Some(cur.clone());
        return Round {
            next: now + interval,
            failed: None,
        };
    };
    let due = prev.time.parse::<jiff::Timestamp>().unwrap_or(now) + interval;
    if now < due {
        return Round {
            next: due,
            failed: None,
        };
    }
    let at = now.to_string();
    let mut failed = None;
    let mut all_passed = true;
    for metric in &cfg.metrics {
        let value = external.get(&metric.name).cloned();
        let m = judge(metric, &prev, cur, cfg.min_requests, value, &at);
        if m.verdict == Verdict::Failed && failed.is_none() {
            let why = m.message.clone().unwrap_or_default();
            failed = Some(format!("{}: {why}", m.metric));
        }
        all_passed &= m.verdict == Verdict::Passed;
        a.measurements.push(m);
    }
    let excess = a.measurements.len().saturating_sub(KEPT_MEASUREMENTS);
    a.measurements.drain(..excess);
    a.last_sample = Some(cur.clone());
    let next = now + interval;
    let Some(last) = failed else {
        if all_passed {
            a.passes += 1;
        }
        return Round { next, failed: None };
    };
    a.failures += 1;
    let failed = (a.failures > cfg.failure_limit).then(|| {
        format!(
            "analysis failed {} times (failureLimit {}), last {last}",
            a.failures, cfg.failure_limit
        )
    });
    Round { next, failed }
}

/// Upper bounds (ms) of the latency buckets samples count in (the data plane's).
pub const BUCKETS_MS: [f64; 14] = [
    0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];

/// The 99th percentile (ms) of the attempts counted per bucket: the upper bound of the
/// bucket holding it (twice the last bound when beyond every bound).
pub fn p99_ms(buckets: &[u64]) -> Option<f64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = (total as f64 * 0.99).ceil() as u64;
    let mut seen = 0;
    for (i, n) in buckets.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Some(
                BUCKETS_MS
                    .get(i)
                    .copied()
                    .unwrap_or(BUCKETS_MS[BUCKETS_MS.len() - 1] * 2.0),
            );
        }
    }
    None
}

/// Measures `metric` over the interval from `prev` to `cur`. `external` is the value of
/// a Prometheus query when the driver ran one (`Err` says why it could not).
pub fn judge(
    metric: &AnalysisMetric,
    prev: &Sample,
    cur: &Sample,
    min_requests: u64,
    external: Option<Result<f64, String>>,
    now: &str,
) -> Measurement {
    let m = |value: Option<f64>, verdict: Verdict, message: String| Measurement {
        time: now.to_string(),
        metric: metric.name.clone(),
        value,
        verdict,
        message: Some(message),
    };
    if let Some(p) = &metric.prometheus {
        return match external {
            Some(Ok(v)) => {
                let low = p.min.is_some_and(|min| v < min);
                let high = p.max.is_some_and(|max| v > max);
                if low || high {
                    m(
                        Some(v),
                        Verdict::Failed,
                        format!("{} = {v} is outside [{:?}, {:?}]", p.query, p.min, p.max),
                    )
                } else {
                    m(Some(v), Verdict::Passed, format!("{} = {v}", p.query))
                }
            }
            Some(Err(e)) => m(None, Verdict::Inconclusive, format!("query failed: {e}")),
            None => m(
                None,
                Verdict::Inconclusive,
                "no value from Prometheus".into(),
            ),
        };
    }
    // Counters that went backwards (a restarted data plane) count from zero.
    let base = if cur.total < prev.total {
        &Sample::default()
    } else {
        prev
    };
    let requests = cur.total - base.total;
    if requests == 0 || requests < min_requests {
        return m(
            None,
            Verdict::Inconclusive,
            format!(
                "{requests} canary requests in the interval, fewer than minRequests {min_requests}; no verdict"
            ),
        );
    }
    // Never more failures than requests, should a source read its two counters apart.
    let failures = cur.failures.saturating_sub(base.failures).min(requests);
    if let Some(sr) = &metric.success_rate {
        let rate = 1.0 - failures as f64 / requests as f64;
        let text = format!(
            "success rate {rate:.3} over {requests} requests (min {})",
            sr.min
        );
        return if rate >= sr.min {
            m(Some(rate), Verdict::Passed, text)
        } else {
            m(Some(rate), Verdict::Failed, text)
        };
    }
    if let Some(lat) = &metric.latency_p99 {
        let delta: Vec<u64> = cur
            .buckets
            .iter()
            .enumerate()
            .map(|(i, n)| n.saturating_sub(base.buckets.get(i).copied().unwrap_or(0)))
            .collect();
        return match p99_ms(&delta) {
            None => m(None, Verdict::Inconclusive, "no latency recorded".into()),
            Some(p99) => {
                let text = format!(
                    "p99 {p99} ms over {requests} requests (max {} ms)",
                    lat.max_ms
                );
                if p99 <= lat.max_ms {
                    m(Some(p99), Verdict::Passed, text)
                } else {
                    m(Some(p99), Verdict::Failed, text)
                }
            }
        };
    }
    m(
        None,
        Verdict::Inconclusive,
        "the metric names no kind".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use lanes_model::rollout::{LatencyP99, SuccessRate};

    fn sample(total: u64, failures: u64, fast: u64, slow: u64) -> Sample {
        let mut buckets = vec![0; BUCKETS_MS.len() + 1];
        buckets[4] = fast; // <= 10 ms
        buckets[10] = slow; // <= 1000 ms
        Sample {
            time: String::new(),
            total,
            failures,
            buckets,
        }
    }

    fn rate(min: f64) -> AnalysisMetric {
        AnalysisMetric {
            name: "sr".into(),
            success_rate: Some(SuccessRate { min }),
            latency_p99: None,
            prometheus: None,
        }
    }

    #[test]
    fn verdicts() {
        let prev = sample(100, 0, 100, 0);
        let m = judge(&rate(0.95), &prev, &sample(200, 50, 200, 0), 10, None, "t");
        assert_eq!((m.verdict, m.value), (Verdict::Failed, Some(0.5)));
        let m = judge(&rate(0.95), &prev, &sample(200, 2, 200, 0), 10, None, "t");
        assert_eq!(m.verdict, Verdict::Passed);
        // Too few requests: inconclusive, never a failure.
        let m = judge(&rate(0.95), &prev, &sample(105, 5, 105, 0), 10, None, "t");
        assert_eq!(m.verdict, Verdict::Inconclusive);
        assert!(m.message.unwrap().contains("fewer than minRequests 10"));
        let m = judge(&rate(0.95), &prev, &prev, 0, None, "t");
        assert_eq!(m.verdict, Verdict::Inconclusive);
        // p99.
        let lat = AnalysisMetric {
            name: "lat".into(),
            success_rate: None,
            latency_p99: Some(LatencyP99 { max_ms: 500.0 }),
            prometheus: None,
        };
        let m = judge(&lat, &prev, &sample(200, 0, 195, 5), 10, None, "t");
        assert_eq!((m.verdict, m.value), (Verdict::Failed, Some(1000.0)));
        let m = judge(&lat, &prev, &sample(1200, 0, 1195, 5), 10, None, "t");
        assert_eq!((m.verdict, m.value), (Verdict::Passed, Some(10.0)));
    }
}
