//! What a release's analysis measures: the canary's requests (built-in `successRate`
//! and `latencyP99`, from a [`Samples`] source: the local data plane's counters in
//! `lanes up`, Istio's standard series in the cluster's Prometheus on a cluster) and the
//! `prometheus` metrics (queried when a measurement is due).

use std::collections::BTreeMap;

use futures_util::future::BoxFuture;
use lanes_model::rollout::{Analysis, AnalysisStatus, Sample};
use lanes_rollout::analysis::BUCKETS_MS;

use crate::prometheus::{Prometheus, QueryError};

/// The canary a release measures: the Service and lane its pods join, and the canary
/// Deployment they belong to.
#[derive(Debug, Clone, Copy)]
pub struct Measured<'a> {
    /// The Service the canary serves.
    pub service: &'a str,
    /// The namespace of the Rollout.
    pub namespace: &'a str,
    /// The lane the canary's pods join.
    pub lane: &'a str,
    /// The canary Deployment.
    pub workload: &'a str,
}

/// A lane as its users enter it: the requests the gateway took into `lane` for
/// services in `namespace`.
#[derive(Debug, Clone, Copy)]
pub struct LaneEntry<'a> {
    /// The namespace of the services entered.
    pub namespace: &'a str,
    /// The lane.
    pub lane: &'a str,
}

/// The cumulative requests the data plane counted on a canary, and on a lane.
pub trait Samples: Send + Sync {
    /// The canary's requests so far, or why they cannot be read now.
    fn sample<'a>(&'a self, canary: Measured<'a>) -> BoxFuture<'a, Result<Sample, QueryError>>;

    /// The requests that entered the lane at the gateway so far (failed: a 5xx or failed
    /// gRPC answer, or a failure a fallback hid), or why they cannot be read now.
    fn lane_sample<'a>(&'a self, lane: LaneEntry<'a>) -> BoxFuture<'a, Result<Sample, QueryError>>;
}

/// No data plane to ask: every canary and lane has seen no requests.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoSamples;

impl Samples for NoSamples {
    fn sample<'a>(&'a self, _: Measured<'a>) -> BoxFuture<'a, Result<Sample, QueryError>> {
        Box::pin(std::future::ready(Ok(Sample::default())))
    }

    fn lane_sample<'a>(&'a self, _: LaneEntry<'a>) -> BoxFuture<'a, Result<Sample, QueryError>> {
        Box::pin(std::future::ready(Ok(Sample::default())))
    }
}

/// Istio's standard series in a Prometheus that scrapes the mesh's sidecars (Istio's,
/// or Lanes' own, which export the same): the canary is its Deployment as the serving
/// sidecars report it (`reporter="destination"`, `destination_workload`).
#[derive(Debug, Clone)]
pub struct IstioSeries {
    /// The client.
    pub prometheus: Prometheus,
    /// The Prometheus (`http://` or `https://` URL).
    pub address: String,
}

/// A PromQL string literal.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The label matchers of the requests the canary served.
pub fn istio_selector(c: &Measured<'_>) -> String {
    format!(
        "reporter=\"destination\",destination_workload_namespace={},destination_workload={},destination_service_name={}",
        quoted(c.namespace),
        quoted(c.workload),
        quoted(c.service)
    )
}

/// Cumulative counts by `le` (ms) laid onto the built-in buckets: each bound takes the
/// count at the largest `le` not above it (never fewer slow requests than there were),
/// and the last bucket holds what is beyond every bound.
pub fn onto_buckets(by_le: &[(String, f64)], total: u64) -> Vec<u64> {
    let mut les: Vec<(f64, u64)> = by_le
        .iter()
        .filter_map(|(le, n)| Some((le.parse::<f64>().ok()?, *n as u64)))
        .filter(|(le, _)| le.is_finite())
        .collect();
    les.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut out = Vec::with_capacity(BUCKETS_MS.len() + 1);
    let mut below = 0;
    for bound in BUCKETS_MS {
        let upto = les
            .iter()
            .take_while(|(le, _)| *le <= bound)
            .last()
            .map_or(0, |(_, n)| *n)
            .max(below);
        out.push(upto - below);
        below = upto;
    }
    out.push(total.saturating_sub(below));
    out
}

impl Samples for IstioSeries {
    fn sample<'a>(&'a self, canary: Measured<'a>) -> BoxFuture<'a, Result<Sample, QueryError>> {
        Box::pin(async move {
            let sel = istio_selector(&canary);
            // Totals and failures from one query, so both are of the same evaluation:
            // two queries could straddle a scrape and count more failures than requests.
            let by_outcome = self
                .prometheus
                .query_by(&self.address, &outcome_query(&sel), OUTCOME)
                .await?;
            let (total, failures) = totals_by_outcome(&by_outcome);
            let by_le = self
                .prometheus
                .query_by(
                    &self.address,
                    &format!("sum by (le) (istio_request_duration_milliseconds_bucket{{{sel}}})"),
                    "le",
                )
                .await?;
            Ok(Sample {
                time: String::new(),
                total,
                failures,
                buckets: onto_buckets(&by_le, total),
            })
        })
    }

    /// The lane's requests as Lanes' gateway exports them (`lanes_requests_total` of
    /// role `gateway`, and their latency, `lanes_gateway_lane_duration_seconds`);
    /// Istio's series carry no lane.
    fn lane_sample<'a>(&'a self, lane: LaneEntry<'a>) -> BoxFuture<'a, Result<Sample, QueryError>> {
        Box::pin(async move {
            let query = lane_outcome_query(&lane);
            let by_outcome = self
                .prometheus
                .query_by(&self.address, &query, OUTCOME)
                .await?;
            let (total, failures) = totals_by_outcome(&by_outcome);
            let by_le = self
                .prometheus
                .query_by(&self.address, &lane_latency_query(&lane), "le")
                .await?;
            Ok(Sample {
                time: String::new(),
                total,
                failures,
                buckets: onto_buckets(&seconds_to_ms(by_le), total),
            })
        })
    }
}

/// The requests Lanes' gateway took into a lane, summed by outcome (`failure` for a
/// 5xx answer).
pub fn lane_outcome_query(lane: &LaneEntry<'_>) -> String {
    let series = format!(
        "lanes_requests_total{{role=\"gateway\",namespace={},lane={}}}",
        quoted(lane.namespace),
        quoted(lane.lane)
    );
    format!(
        "sum by ({OUTCOME}) (label_replace({series}, \"{OUTCOME}\", \"failure\", \"code\", \"5[0-9][0-9]\"))"
    )
}

/// The latency buckets (cumulative, `le` in seconds) of the requests Lanes' gateway
/// took into a lane.
pub fn lane_latency_query(lane: &LaneEntry<'_>) -> String {
    format!(
        "sum by (le) (lanes_gateway_lane_duration_seconds_bucket{{namespace={},lane={}}})",
        quoted(lane.namespace),
        quoted(lane.lane)
    )
}

/// Bucket bounds in seconds, as milliseconds to the microsecond (so `0.025` is `25`, not
/// a hair above it); `+Inf` stays.
fn seconds_to_ms(by_le: Vec<(String, f64)>) -> Vec<(String, f64)> {
    by_le
        .into_iter()
        .map(|(le, n)| match le.parse::<f64>() {
            Ok(s) if s.is_finite() => (((s * 1e6).round() / 1e3).to_string(), n),
            _ => (le, n),
        })
        .collect()
}

/// The label [`outcome_query`] sorts requests by.
const OUTCOME: &str = "outcome";

/// The canary's requests summed by outcome: `failure` for a 5xx answer (three digits)
/// or a gRPC call that ended with a status other than `OK` (whatever its HTTP status),
/// no label for the others.
pub fn outcome_query(selector: &str) -> String {
    let series = format!("istio_requests_total{{{selector}}}");
    let by_code = format!(
        "label_replace({series}, \"{OUTCOME}\", \"failure\", \"response_code\", \"5[0-9][0-9]\")"
    );
    let by_grpc = format!(
        "label_replace({by_code}, \"{OUTCOME}\", \"failure\", \"grpc_response_status\", \"[1-9][0-9]*\")"
    );
    format!("sum by ({OUTCOME}) ({by_grpc})")
}

/// Requests in all, and the failed ones, of the sums of [`outcome_query`].
pub fn totals_by_outcome(by_outcome: &[(String, f64)]) -> (u64, u64) {
    let count = |v: f64| v.max(0.0) as u64;
    let total = by_outcome.iter().map(|(_, v)| count(*v)).sum();
    let failures = by_outcome
        .iter()
        .filter(|(outcome, _)| outcome == "failure")
        .map(|(_, v)| count(*v))
        .sum();
    (total, failures)
}

/// Whether a measurement is due: never taken, or the interval has passed since.
fn measurement_due(
    record: Option<&AnalysisStatus>,
    interval_ms: u64,
    now: jiff::Timestamp,
) -> bool {
    let last = record
        .and_then(|a| a.last_sample.as_ref())
        .and_then(|s| s.time.parse::<jiff::Timestamp>().ok());
    let interval = jiff::SignedDuration::from_millis(interval_ms as i64);
    last.is_none_or(|t| now >= t + interval)
}

/// The values of an analysis's `prometheus` metrics (a Rollout's, or a lane
/// release's, with its record so far) when a measurement is due (none otherwise), each
/// a number or why there is none.
pub async fn external_values(
    prometheus: &Prometheus,
    cfg: Option<&Analysis>,
    record: Option<&AnalysisStatus>,
    now: jiff::Timestamp,
) -> BTreeMap<String, Result<f64, String>> {
    let mut out = BTreeMap::new();
    let Some(cfg) = cfg else {
        return out;
    };
    if !measurement_due(record, cfg.interval.millis().unwrap_or(60_000), now) {
        return out;
    }
    for m in &cfg.metrics {
        if let Some(p) = &m.prometheus {
            let v = prometheus
                .query(&p.address, &p.query)
                .await
                .map_err(|e| e.to_string());
            out.insert(m.name.clone(), v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_buckets_are_laid_onto_the_built_in_ones() {
        let le = |pairs: &[(&str, f64)]| -> Vec<(String, f64)> {
            pairs.iter().map(|(l, n)| (l.to_string(), *n)).collect()
        };
        // Lanes' own buckets: exact.
        let b = onto_buckets(&le(&[("1.0", 2.0), ("10.0", 5.0), ("+Inf", 6.0)]), 6);
        assert_eq!(b.len(), BUCKETS_MS.len() + 1);
        assert_eq!((b[1], b[4], b[BUCKETS_MS.len()]), (2, 3, 1));
        assert_eq!(b.iter().sum::<u64>(), 6);
        // Istio's default buckets (no 2.5): what is within 5 ms counts at 5, not 2.5.
        let b = onto_buckets(&le(&[("1", 1.0), ("5", 4.0), ("+Inf", 4.0)]), 4);
        assert_eq!((b[1], b[2], b[3]), (1, 0, 3));
    }

    #[test]
    fn the_gateways_lane_buckets_in_seconds_are_laid_onto_the_built_in_ones() {
        let by_le: Vec<(String, f64)> = [
            ("0.005", 3.0),
            ("0.025", 4.0),
            ("0.25", 9.0),
            ("+Inf", 10.0),
        ]
        .iter()
        .map(|(l, n)| (l.to_string(), *n))
        .collect();
        let ms = seconds_to_ms(by_le);
        assert_eq!(ms[1].0, "25");
        let b = onto_buckets(&ms, 10);
        // 3 within 5 ms, 1 more within 25 ms, 5 more within 250 ms, 1 beyond.
        assert_eq!((b[3], b[5], b[8], b[BUCKETS_MS.len()]), (3, 1, 5, 1));
        assert_eq!(b.iter().sum::<u64>(), 10);
        let q = lane_latency_query(&LaneEntry {
            namespace: "default",
            lane: "canary",
        });
        assert_eq!(
            q,
            "sum by (le) (lanes_gateway_lane_duration_seconds_bucket{namespace=\"default\",lane=\"canary\"})"
        );
    }

    #[test]
    fn the_selector_quotes_names() {
        let c = Measured {
            service: "mockb",
            namespace: "default",
            lane: "canary",
            workload: "mockb-v1-5f6d",
        };
        assert_eq!(
            istio_selector(&c),
            "reporter=\"destination\",destination_workload_namespace=\"default\",destination_workload=\"mockb-v1-5f6d\",destination_service_name=\"mockb\""
        );
        assert_eq!(quoted("a\"b"), "\"a\\\"b\"");
    }

    #[test]
    fn totals_and_failures_come_of_one_set_of_sums() {
        let by = |pairs: &[(&str, f64)]| -> Vec<(String, f64)> {
            pairs.iter().map(|(c, n)| (c.to_string(), *n)).collect()
        };
        assert_eq!(
            totals_by_outcome(&by(&[("", 73.0), ("failure", 25.0)])),
            (98, 25)
        );
        // No series yet: nothing counted.
        assert_eq!(totals_by_outcome(&[]), (0, 0));
        // A counter reset read as a negative sum counts nothing.
        assert_eq!(
            totals_by_outcome(&by(&[("", 5.0), ("failure", -1.0)])),
            (5, 0)
        );
    }

    #[test]
    fn the_lane_query_reads_lanes_gateway_series_of_the_lane() {
        let q = lane_outcome_query(&LaneEntry {
            namespace: "default",
            lane: "can\"ary",
        });
        assert_eq!(
            q,
            "sum by (outcome) (label_replace(lanes_requests_total{role=\"gateway\",namespace=\"default\",lane=\"can\\\"ary\"}, \"outcome\", \"failure\", \"code\", \"5[0-9][0-9]\"))"
        );
    }

    #[test]
    fn the_outcome_query_marks_5xx_answers_and_failed_grpc_calls() {
        let q = outcome_query("destination_workload=\"w\"");
        assert!(q.starts_with("sum by (outcome) (label_replace(label_replace(istio_requests_total{destination_workload=\"w\"}"), "{q}");
        assert!(q.contains("\"response_code\", \"5[0-9][0-9]\""), "{q}");
        assert!(
            q.contains("\"grpc_response_status\", \"[1-9][0-9]*\""),
            "{q}"
        );
    }
}
