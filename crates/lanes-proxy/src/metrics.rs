//! The data plane's metrics, in Prometheus text on the admin listener: requests by
//! role, service, namespace, lane, subset, code and fallback; latency by service and
//! subset; fallbacks by reason; correlation-table size and evictions.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of the request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `gateway`, `inbound` or `outbound`.
    pub role: &'static str,
    /// Destination service (empty for hosts outside the mesh).
    pub service: String,
    /// Destination namespace.
    pub namespace: String,
    /// The request's lane (empty outside lane groups).
    pub lane: String,
    /// The subset that served it.
    pub subset: String,
    /// Response status.
    pub code: u16,
    /// Fallback reason, or `none`.
    pub fallback: &'static str,
}

/// Labels of the latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    /// Destination service.
    pub service: String,
    /// Destination namespace.
    pub namespace: String,
    /// Subset that served.
    pub subset: String,
}

/// Labels of the fallback counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FallbackLabels {
    /// Destination service.
    pub service: String,
    /// Why the request fell back.
    pub reason: &'static str,
    /// Lane asked for.
    pub from: String,
    /// Lane that served.
    pub to: String,
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
        Metrics {
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

    /// Prometheus text exposition of every family.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
