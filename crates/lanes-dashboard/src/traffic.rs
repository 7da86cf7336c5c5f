//! Live traffic per cell: the data plane's cumulative counts per service and lane, read
//! while a page follows the map, turned into requests per second, success rate and p99
//! over the last few seconds, and a chart of the requests per second over the last
//! minutes. Pure: the caller reads the counts and says when.

use std::collections::{HashMap, VecDeque};

use lanes_rollout::analysis::p99_ms;
use serde::Serialize;

/// The cumulative counts of the requests routed to one service in one lane.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CellCount {
    /// The service.
    pub service: String,
    /// Its namespace.
    pub namespace: String,
    /// The lane.
    pub lane: String,
    /// Requests so far.
    pub total: u64,
    /// Failed ones (a 5xx, a failed gRPC call).
    pub failures: u64,
    /// Per latency bucket (not cumulative), on the analysis's bounds.
    pub buckets: Vec<u64>,
}

/// Where the counts come from.
pub trait TrafficSource: Send + Sync {
    /// Every cell's counts now.
    fn cells(&self) -> Vec<CellCount>;
}

/// A cell's traffic now.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CellTraffic {
    /// Requests per second over the last [`WINDOW_SECS`].
    pub rps: f64,
    /// The share of them that succeeded (none when there were none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub success: Option<f64>,
    /// Their 99th-percentile latency (ms, a bucket's upper bound).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
    /// Requests per second in each [`CHART_STEP_SECS`] of the last [`HISTORY_SECS`],
    /// oldest first (as far back as counted).
    pub chart: Vec<f64>,
    /// The window the figures are of: from and to, in the readings' time (seconds).
    pub window: [f64; 2],
}

/// The window the live figures are taken over.
pub const WINDOW_SECS: f64 = 5.0;
/// How far back the chart goes.
pub const HISTORY_SECS: f64 = 300.0;
/// The chart's step.
pub const CHART_STEP_SECS: f64 = 10.0;

type Key = (String, String, String);

/// The counts read so far (one reading a second at most, for [`HISTORY_SECS`]).
#[derive(Debug, Default)]
pub struct History {
    readings: VecDeque<(f64, HashMap<Key, CellCount>)>,
}

impl History {
    /// Takes a reading at `at` (seconds on any clock; the dashboard's is Unix time).
    pub fn push(&mut self, at: f64, cells: Vec<CellCount>) {
        if self.readings.back().is_some_and(|(t, _)| at - t < 1.0) {
            return;
        }
        let by_key = cells
            .into_iter()
            .map(|c| ((c.service.clone(), c.namespace.clone(), c.lane.clone()), c))
            .collect();
        self.readings.push_back((at, by_key));
        while self
            .readings
            .front()
            .is_some_and(|(t, _)| at - t > HISTORY_SECS + WINDOW_SECS)
        {
            self.readings.pop_front();
        }
    }

    /// The traffic of `service` in `namespace` in `lane`, once two readings are in.
    pub fn cell(&self, service: &str, namespace: &str, lane: &str) -> Option<CellTraffic> {
        let key = (service.to_string(), namespace.to_string(), lane.to_string());
        let (now, last) = self.readings.back()?;
        // The newest reading at least the window old (else the oldest there is).
        let (then, first) = self
            .readings
            .iter()
            .rev()
            .find(|(t, _)| now - t >= WINDOW_SECS)
            .or_else(|| self.readings.front())?;
        if now <= then {
            return None;
        }
        let zero = CellCount::default();
        let a = first.get(&key).unwrap_or(&zero);
        let b = last.get(&key).unwrap_or(&zero);
        let total = b.total.saturating_sub(a.total);
        let failures = b.failures.saturating_sub(a.failures);
        let buckets: Vec<u64> = (0..b.buckets.len())
            .map(|i| b.buckets[i].saturating_sub(a.buckets.get(i).copied().unwrap_or(0)))
            .collect();
        Some(CellTraffic {
            rps: total as f64 / (now - then),
            success: (total > 0).then(|| 1.0 - failures as f64 / total as f64),
            p99_ms: p99_ms(&buckets),
            chart: self.chart(&key),
            window: [*then, *now],
        })
    }

    /// Requests per second in each step of the history, for `key`.
    fn chart(&self, key: &Key) -> Vec<f64> {
        let Some((now, _)) = self.readings.back() else {
            return Vec::new();
        };
        let total_at = |t: f64| {
            // The count at the newest reading not after `t`.
            self.readings
                .iter()
                .rev()
                .find(|(at, _)| *at <= t)
                .map(|(at, r)| (*at, r.get(key).map_or(0, |c| c.total)))
        };
        let steps = (HISTORY_SECS / CHART_STEP_SECS) as usize;
        (0..steps)
            .rev()
            .filter_map(|i| {
                let end = now - i as f64 * CHART_STEP_SECS;
                let (t1, n1) = total_at(end)?;
                let (t0, n0) = total_at(end - CHART_STEP_SECS)?;
                (t1 > t0).then(|| n1.saturating_sub(n0) as f64 / (t1 - t0))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(total: u64, failures: u64, fast: u64) -> Vec<CellCount> {
        let mut buckets = vec![0; 15];
        buckets[2] = fast;
        buckets[8] = total - fast;
        vec![CellCount {
            service: "mocka".into(),
            namespace: "default".into(),
            lane: "canary".into(),
            total,
            failures,
            buckets,
        }]
    }

    #[test]
    fn rates_come_from_the_last_window_and_the_chart_from_the_history() {
        let mut h = History::default();
        assert_eq!(h.cell("mocka", "default", "canary"), None);
        // 20 requests a second for a minute, one in a hundred failing.
        for s in 0..=60u64 {
            h.push(s as f64, count(20 * s, s / 5, 20 * s - s / 2));
            // A second reading within the second is not kept.
            h.push(s as f64 + 0.5, count(20 * s + 7, 0, 0));
        }
        let c = h.cell("mocka", "default", "canary").unwrap();
        assert!((c.rps - 20.0).abs() < 1e-9, "{c:?}");
        assert_eq!(c.window, [55.0, 60.0]);
        let success = c.success.unwrap();
        assert!((0.98..1.0).contains(&success), "{c:?}");
        // Most within 2.5 ms, some within 250 ms: the p99 is 250 ms.
        assert_eq!(c.p99_ms, Some(250.0));
        assert_eq!(c.chart.len(), 6, "{c:?}");
        assert!(c.chart.iter().all(|r| (r - 20.0).abs() < 1e-9), "{c:?}");
        // A cell never counted has no traffic.
        let other = h.cell("mockb", "default", "canary").unwrap();
        assert_eq!((other.rps, other.success), (0.0, None));
        // Old readings go.
        h.push(1000.0, count(20_000, 0, 0));
        assert_eq!(h.readings.len(), 1);
    }
}
