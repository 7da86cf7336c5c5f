//! The data plane's metrics, in Prometheus text on the admin listener: requests by
//! role, service, namespace, lane, subset, code and fallback; latency by service and
//! subset, and of the requests entering each lane at the gateway; fallbacks by reason; correlation-table size and evictions; and Istio's
//! standard series ([`crate::istio`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::istio::IstioMetrics;

/// A label value shared by reference count: labels are built on every request, and
/// cloning one of these does not allocate.
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq)]
pub struct Label(pub Arc<str>);

impl EncodeLabelValue for Label {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, &self.0)
    }
}

impl From<&str> for Label {
    fn from(s: &str) -> Self {
        Label(s.into())
    }
}

impl From<&Arc<str>> for Label {
    fn from(s: &Arc<str>) -> Self {
        Label(s.clone())
    }
}

/// Labels of the request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `gateway`, `inbound` or `outbound`.
    pub role: &'static str,
    /// Destination service (empty for hosts outside the mesh).
    pub service: Label,
    /// Destination namespace.
    pub namespace: Label,
    /// The request's lane (empty outside lane groups).
    pub lane: Label,
    /// The subset that served it.
    pub subset: Label,
    /// Response status.
    pub code: u16,
    /// Fallback reason, or `none`.
    pub fallback: &'static str,
}

/// Labels of the latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    /// Destination service.
    pub service: Label,
    /// Destination namespace.
    pub namespace: Label,
    /// Subset that served.
    pub subset: Label,
}

/// Labels of the latency of the requests that entered a lane at the gateway.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EntryLabels {
    /// Namespace of the service the request entered.
    pub namespace: Label,
    /// The lane it entered.
    pub lane: Label,
}

/// Labels of the fallback counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FallbackLabels {
    /// Destination service.
    pub service: Label,
    /// Why the request fell back.
    pub reason: &'static str,
    /// Lane asked for.
    pub from: Label,
    /// Lane that served.
    pub to: Label,
}

/// Labels of the upstream attempt counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    /// Destination service.
    pub service: Label,
    /// Destination namespace.
    pub namespace: Label,
    /// Subset tried.
    pub subset: Label,
    /// `success` or `failure` (5xx, connect error, reset, timeout).
    pub outcome: &'static str,
}

/// How an attempt on an upstream subset went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The upstream answered, not with a 5xx.
    Success,
    /// The upstream failed: a 5xx, a refused connection, a reset, a timeout.
    Failure,
    /// The client spoiled it (a malformed or cut-short request body): not the
    /// upstream's doing, never a verdict on it.
    ClientError,
}

impl AttemptOutcome {
    fn index(self) -> usize {
        match self {
            AttemptOutcome::Success => 0,
            AttemptOutcome::Failure => 1,
            AttemptOutcome::ClientError => 2,
        }
    }

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Success => "success",
            AttemptOutcome::Failure => "failure",
            AttemptOutcome::ClientError => "client_error",
        }
    }
}

/// Upper bounds (ms) of the attempt latency buckets the rollout analysis reads.
pub const ATTEMPT_BUCKETS_MS: [f64; 14] = [
    0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];

/// Cumulative counts of the attempts on one subset of one service.
#[derive(Debug, Default)]
struct AttemptCounts {
    total: AtomicU64,
    failures: AtomicU64,
    /// Per bucket (not cumulative), the last one for slower than every bound.
    buckets: [AtomicU64; ATTEMPT_BUCKETS_MS.len() + 1],
}

impl AttemptCounts {
    fn record(&self, failed: bool, took: Duration) {
        self.total.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        let ms = took.as_secs_f64() * 1000.0;
        let i = ATTEMPT_BUCKETS_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(ATTEMPT_BUCKETS_MS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
    }
}

/// Cumulative counts by key, each created when first recorded.
#[derive(Debug)]
struct CountsBy<K>(std::sync::RwLock<HashMap<K, Arc<AttemptCounts>>>);

impl<K> Default for CountsBy<K> {
    fn default() -> Self {
        CountsBy(std::sync::RwLock::new(HashMap::new()))
    }
}

impl<K: std::hash::Hash + Eq> CountsBy<K> {
    fn get_or_create(&self, key: K) -> Arc<AttemptCounts> {
        let found = self
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .cloned();
        found.unwrap_or_else(|| {
            self.0
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(key)
                .or_default()
                .clone()
        })
    }

    /// A reading of `key`'s counts (zero when none were recorded).
    fn sample(&self, key: &K) -> AttemptSample {
        let counts = self
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned();
        match counts {
            None => AttemptSample {
                buckets: vec![0; ATTEMPT_BUCKETS_MS.len() + 1],
                ..Default::default()
            },
            Some(c) => c.sample(),
        }
    }

    /// A reading of every key's counts.
    fn samples(&self) -> Vec<(K, AttemptSample)>
    where
        K: Clone,
    {
        let all: Vec<(K, Arc<AttemptCounts>)> = self
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, c)| (k.clone(), c.clone()))
            .collect();
        all.into_iter().map(|(k, c)| (k, c.sample())).collect()
    }
}

impl AttemptCounts {
    fn sample(&self) -> AttemptSample {
        AttemptSample {
            total: self.total.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
        }
    }
}

/// The requests routed to one service in one lane, as the dashboard's map counts them.
#[derive(Debug, Clone, PartialEq)]
pub struct CellSample {
    /// The service.
    pub service: Arc<str>,
    /// Its namespace.
    pub namespace: Arc<str>,
    /// The lane asked for (the lane that served, when none was).
    pub lane: Arc<str>,
    /// The counts so far.
    pub counts: AttemptSample,
}

/// The labels that name one subset's series: its service, namespace and lane.
#[derive(Debug, Clone, Copy)]
pub struct SubsetKey<'a> {
    /// Destination service.
    pub service: &'a Arc<str>,
    /// Destination namespace.
    pub namespace: &'a Arc<str>,
    /// The subset (its lane; empty for a service's endpoints as a whole).
    pub subset: &'a Arc<str>,
}

/// Handles to one subset's series, taken from the families when first used so that the
/// requests after skip the families' label lookups. A series is taken only when it is
/// first recorded, as the family itself would create it, and the families never remove
/// these series, so a handle always counts into the series that is exported. The
/// handles belong to the first `Metrics` they were taken from; another is served by
/// lookups, as before.
#[derive(Debug, Default)]
pub struct SubsetSeries {
    owner: OnceLock<u64>,
    latency: OnceLock<Histogram>,
    attempts: [OnceLock<Counter>; 3],
    counts: OnceLock<Arc<AttemptCounts>>,
}

impl SubsetSeries {
    fn is_for(&self, metrics: &Metrics) -> bool {
        *self.owner.get_or_init(|| metrics.id) == metrics.id
    }

    /// Records one attempt on the subset. An attempt the client spoiled is counted
    /// under `client_error` and is no sample of the subset's health.
    pub fn record_attempt(
        &self,
        metrics: &Metrics,
        key: SubsetKey<'_>,
        outcome: AttemptOutcome,
        took: Duration,
    ) {
        if !self.is_for(metrics) {
            return SubsetSeries::default().record_attempt(metrics, key, outcome, took);
        }
        self.attempts[outcome.index()]
            .get_or_init(|| {
                metrics
                    .attempts
                    .get_or_create(&AttemptLabels {
                        service: key.service.into(),
                        namespace: key.namespace.into(),
                        subset: key.subset.into(),
                        outcome: outcome.as_str(),
                    })
                    .clone()
            })
            .inc();
        if outcome == AttemptOutcome::ClientError {
            return;
        }
        self.counts
            .get_or_init(|| metrics.attempt_counts(key))
            .record(outcome == AttemptOutcome::Failure, took);
    }

    /// Records a request's time until the response head came from this subset.
    pub fn observe_latency(&self, metrics: &Metrics, key: SubsetKey<'_>, took: Duration) {
        if !self.is_for(metrics) {
            return SubsetSeries::default().observe_latency(metrics, key, took);
        }
        self.latency
            .get_or_init(|| {
                metrics
                    .latency
                    .get_or_create(&LatencyLabels {
                        service: key.service.into(),
                        namespace: key.namespace.into(),
                        subset: key.subset.into(),
                    })
                    .clone()
            })
            .observe(took.as_secs_f64());
    }
}

/// A reading of a subset's attempts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttemptSample {
    /// Attempts.
    pub total: u64,
    /// Failed attempts.
    pub failures: u64,
    /// Attempts per latency bucket (not cumulative; the last beyond every bound).
    pub buckets: Vec<u64>,
}

/// Labels of per-sidecar series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PodLabels {
    /// Pod name.
    pub pod: String,
    /// Pod namespace.
    pub namespace: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

/// The proxy's metric families and their registry.
#[derive(Debug)]
pub struct Metrics {
    /// Tells one set of families from another (see [`SubsetSeries`]).
    id: u64,
    registry: Registry,
    /// `lanes_requests_total`.
    pub requests: Family<RequestLabels, Counter>,
    /// `lanes_request_duration_seconds` (to the response head).
    pub latency: Family<LatencyLabels, Histogram, fn() -> Histogram>,
    /// `lanes_fallbacks_total`.
    pub fallbacks: Family<FallbackLabels, Counter>,
    /// `lanes_correlation_entries`.
    pub correlation_entries: Family<PodLabels, Gauge>,
    /// `lanes_correlation_evictions_total`.
    pub correlation_evictions: Family<PodLabels, Counter>,
    /// `lanes_upstream_attempts_total`: every attempt, the retried ones included.
    pub attempts: Family<AttemptLabels, Counter>,
    attempt_counts: CountsBy<(Label, Label, Label)>,
    /// The requests that entered each lane at the gateway, by the namespace of the
    /// service they entered and the lane: what a lane release's analysis judges.
    entry_counts: CountsBy<(Label, Label)>,
    /// `lanes_gateway_lane_duration_seconds`: their latency, for a Prometheus (on a
    /// cluster, where the analysis reads it from there).
    pub entry_latency: Family<EntryLabels, Histogram, fn() -> Histogram>,
    /// The requests routed (at the gateway or a sidecar's outbound side) to each service
    /// in each lane: the dashboard's live traffic per cell.
    cell_counts: CountsBy<(Label, Label, Label)>,
    /// Istio's standard series, under Istio's names.
    pub istio: IstioMetrics,
    /// `lanes_trace_spans_exported_total` and `lanes_trace_spans_dropped_total`.
    pub spans: crate::otlp::ExportCounts,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh set of families in a registry with the `lanes` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("lanes");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<LatencyLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let fallbacks = Family::<FallbackLabels, Counter>::default();
        let correlation_entries = Family::<PodLabels, Gauge>::default();
        let correlation_evictions = Family::<PodLabels, Counter>::default();
        registry.register("requests", "Requests proxied", requests.clone());
        registry.register(
            "request_duration_seconds",
            "Time from receiving a request to the upstream response head",
            latency.clone(),
        );
        registry.register(
            "fallbacks",
            "Requests served by a fallback lane",
            fallbacks.clone(),
        );
        registry.register(
            "correlation_entries",
            "Entries in a sidecar's trace-to-lane correlation table",
            correlation_entries.clone(),
        );
        registry.register(
            "correlation_evictions",
            "Correlation entries evicted to make room",
            correlation_evictions.clone(),
        );
        let attempts = Family::<AttemptLabels, Counter>::default();
        registry.register(
            "upstream_attempts",
            "Attempts on an upstream subset, by outcome (a fallback retry is a second attempt)",
            attempts.clone(),
        );
        let entry_latency =
            Family::<EntryLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register(
            "gateway_lane_duration_seconds",
            "Time to the response head of the requests that entered each lane at the gateway",
            entry_latency.clone(),
        );
        let spans = crate::otlp::ExportCounts::default();
        registry.register(
            "trace_spans_exported",
            "Hop spans an OTLP collector accepted",
            spans.exported.clone(),
        );
        registry.register(
            "trace_spans_dropped",
            "Hop spans dropped: the export queue was full, or the collector failed or refused them",
            spans.dropped.clone(),
        );
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Metrics {
            spans,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            istio: IstioMetrics::default(),
            attempts,
            attempt_counts: CountsBy::default(),
            entry_counts: CountsBy::default(),
            entry_latency,
            cell_counts: CountsBy::default(),
            registry,
            requests,
            latency,
            fallbacks,
            correlation_entries,
            correlation_evictions,
        }
    }

    /// The registry, for adding more families before serving.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The attempt counts of one subset, created when first asked for.
    fn attempt_counts(&self, key: SubsetKey<'_>) -> Arc<AttemptCounts> {
        self.attempt_counts.get_or_create((
            key.service.into(),
            key.namespace.into(),
            key.subset.into(),
        ))
    }

    /// The attempts on `subset` of a service so far (zero when none).
    pub fn attempt_sample(&self, service: &str, namespace: &str, subset: &str) -> AttemptSample {
        self.attempt_counts
            .sample(&(service.into(), namespace.into(), subset.into()))
    }

    /// Records a request that entered `lane` at the gateway, to a service in
    /// `namespace`: failed when answered with a 5xx or a failed gRPC status, timed to its
    /// response head. The lanes are those of the route table's ingress rules, so the
    /// counts stay bounded.
    pub fn record_entry(
        &self,
        namespace: &Arc<str>,
        lane: &Arc<str>,
        failed: bool,
        took: Duration,
    ) {
        self.entry_counts
            .get_or_create((namespace.into(), lane.into()))
            .record(failed, took);
        self.entry_latency
            .get_or_create(&EntryLabels {
                namespace: namespace.into(),
                lane: lane.into(),
            })
            .observe(took.as_secs_f64());
    }

    /// Records a request routed to `service` in `namespace` in `lane` (the lane asked
    /// for, else the one that served): failed when answered with a 5xx or a failed gRPC
    /// status, timed to its response head.
    pub fn record_cell(
        &self,
        service: &Arc<str>,
        namespace: &Arc<str>,
        lane: &Arc<str>,
        failed: bool,
        took: Duration,
    ) {
        self.cell_counts
            .get_or_create((service.into(), namespace.into(), lane.into()))
            .record(failed, took);
    }

    /// Every cell's counts so far.
    pub fn cell_samples(&self) -> Vec<CellSample> {
        self.cell_counts
            .samples()
            .into_iter()
            .map(|((service, namespace, lane), counts)| CellSample {
                service: service.0,
                namespace: namespace.0,
                lane: lane.0,
                counts,
            })
            .collect()
    }

    /// Records a failure in `lane` that a fallback hid from its caller (a try of the
    /// lane's subset failed, at any hop, and the baseline answered): the lane's users
    /// got an answer, but the lane failed them.
    pub fn record_hidden_failure(&self, namespace: &Arc<str>, lane: &Arc<str>) {
        self.entry_counts
            .get_or_create((namespace.into(), lane.into()))
            .failures
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The requests that entered `lane` at the gateway to services in `namespace`, so far
    /// (zero when none).
    pub fn entry_sample(&self, namespace: &str, lane: &str) -> AttemptSample {
        self.entry_counts.sample(&(namespace.into(), lane.into()))
    }

    /// Prometheus text exposition of every family: Lanes' own, then Istio's.
    pub fn encode(&self) -> String {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut out = String::new();
        let encoded = encode_registry(&mut out, &self.registry)
            .and_then(|()| encode_registry(&mut out, self.istio.registry()))
            .and_then(|()| encode_eof(&mut out));
        if encoded.is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(service: &str, subset: &str) -> [Arc<str>; 3] {
        [service.into(), "default".into(), subset.into()]
    }

    fn key(names: &[Arc<str>; 3]) -> SubsetKey<'_> {
        SubsetKey {
            service: &names[0],
            namespace: &names[1],
            subset: &names[2],
        }
    }

    fn series_line<'a>(text: &'a str, prefix: &str, outcome: &str) -> Option<&'a str> {
        text.lines()
            .find(|l| l.starts_with(prefix) && l.contains(&format!("outcome=\"{outcome}\"")))
    }

    #[test]
    fn subset_handles_count_into_the_exported_series_and_create_none_early() {
        let metrics = Metrics::new();
        let names = names("mocka", "canary");
        let key = key(&names);
        let series = SubsetSeries::default();
        let ms = Duration::from_millis;
        series.record_attempt(&metrics, key, AttemptOutcome::Success, ms(2));
        series.record_attempt(&metrics, key, AttemptOutcome::Success, ms(30));
        let text = metrics.encode();
        let attempts = "lanes_upstream_attempts_total{";
        assert!(series_line(&text, attempts, "success").is_some_and(|l| l.ends_with(" 2")));
        // Outcomes that have not happened have no series yet, as with the family alone.
        assert!(series_line(&text, attempts, "failure").is_none());
        assert!(!text.contains("lanes_request_duration_seconds_count{"));

        series.record_attempt(&metrics, key, AttemptOutcome::Failure, ms(700));
        series.record_attempt(&metrics, key, AttemptOutcome::ClientError, ms(1));
        series.observe_latency(&metrics, key, ms(3));
        let text = metrics.encode();
        assert!(series_line(&text, attempts, "failure").is_some_and(|l| l.ends_with(" 1")));
        assert!(series_line(&text, attempts, "client_error").is_some_and(|l| l.ends_with(" 1")));
        assert!(text.lines().any(|l| {
            l.starts_with("lanes_request_duration_seconds_count{")
                && l.contains("subset=\"canary\"")
                && l.ends_with(" 1")
        }));
        // The analysis reads the same counts; the client's error is no sample of health.
        let sample = metrics.attempt_sample("mocka", "default", "canary");
        assert_eq!((sample.total, sample.failures), (3, 1));
        assert_eq!(sample.buckets.iter().sum::<u64>(), 3);
        // 2 ms falls in the bucket up to 2.5 ms, 30 ms up to 50, 700 ms up to 1,000.
        assert_eq!(
            (sample.buckets[2], sample.buckets[6], sample.buckets[10]),
            (1, 1, 1)
        );
    }

    #[test]
    fn handles_taken_from_one_set_of_families_never_count_into_another() {
        let (first, second) = (Metrics::new(), Metrics::new());
        let names = names("mockb", "base");
        let key = key(&names);
        let series = SubsetSeries::default();
        let took = Duration::from_millis(1);
        series.record_attempt(&first, key, AttemptOutcome::Success, took);
        series.record_attempt(&second, key, AttemptOutcome::Failure, took);
        series.record_attempt(&second, key, AttemptOutcome::Success, took);
        let one = first.attempt_sample("mockb", "default", "base");
        let two = second.attempt_sample("mockb", "default", "base");
        assert_eq!((one.total, one.failures), (1, 0));
        assert_eq!((two.total, two.failures), (2, 1));
    }

    #[test]
    fn a_lanes_entries_are_counted_and_timed_for_prometheus() {
        let metrics = Metrics::new();
        let (ns, canary, base): (Arc<str>, Arc<str>, Arc<str>) =
            ("default".into(), "canary".into(), "base".into());
        let ms = Duration::from_millis;
        metrics.record_entry(&ns, &canary, false, ms(3));
        metrics.record_entry(&ns, &canary, true, ms(300));
        metrics.record_entry(&ns, &base, false, ms(1));
        let text = metrics.encode();
        let series = |what: &str, lane: &str| {
            let prefix = format!(
                "lanes_gateway_lane_duration_seconds_{what}{{namespace=\"default\",lane=\"{lane}\""
            );
            text.lines()
                .filter(|l| l.starts_with(&prefix))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            series("count", "canary"),
            ["lanes_gateway_lane_duration_seconds_count{namespace=\"default\",lane=\"canary\"} 2"]
        );
        assert_eq!(series("count", "base").len(), 1);
        // The slow one is beyond 250 ms, the fast one within 5 ms.
        let bucket = |le: &str| {
            let prefix = format!(
                "lanes_gateway_lane_duration_seconds_bucket{{le=\"{le}\",namespace=\"default\",lane=\"canary\"}} "
            );
            text.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .map(str::to_owned)
        };
        assert_eq!(bucket("0.005").as_deref(), Some("1"));
        assert_eq!(bucket("0.25").as_deref(), Some("1"));
        assert_eq!(bucket("0.5").as_deref(), Some("2"));
        // The analysis's own counts agree.
        let sample = metrics.entry_sample("default", "canary");
        assert_eq!((sample.total, sample.failures), (2, 1));
    }
}
