//! What a release's analysis measures: the canary's attempts (built-in `successRate` and
//! `latencyP99`, from a [`Samples`] source) and the `prometheus` metrics (queried when a
//! measurement is due).

use std::collections::BTreeMap;

use lanes_model::rollout::{Rollout, Sample};

use crate::prometheus::Prometheus;

/// The cumulative attempts the data plane counted on one lane of a Service.
pub trait Samples: Send + Sync {
    /// Attempts on `service` in `namespace` served by `lane`'s pods.
    fn sample(&self, service: &str, namespace: &str, lane: &str) -> Sample;
}

/// No data plane to ask: every canary has seen no attempts.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoSamples;

impl Samples for NoSamples {
    fn sample(&self, _: &str, _: &str, _: &str) -> Sample {
        Sample::default()
    }
}

/// Whether a measurement is due: never taken, or the interval has passed since.
fn measurement_due(r: &Rollout, interval_ms: u64, now: jiff::Timestamp) -> bool {
    let last = r
        .status
        .as_ref()
        .and_then(|s| s.analysis.as_ref())
        .and_then(|a| a.last_sample.as_ref())
        .and_then(|s| s.time.parse::<jiff::Timestamp>().ok());
    let interval = jiff::SignedDuration::from_millis(interval_ms as i64);
    last.is_none_or(|t| now >= t + interval)
}

/// The values of the Rollout's `prometheus` metrics when a measurement is due (none
/// otherwise), each a number or why there is none.
pub async fn external_values(
    prometheus: &Prometheus,
    r: &Rollout,
    now: jiff::Timestamp,
) -> BTreeMap<String, Result<f64, String>> {
    let mut out = BTreeMap::new();
    let Some(cfg) = lanes_rollout::analysis_of(r) else {
        return out;
    };
    if !measurement_due(r, cfg.interval.millis().unwrap_or(60_000), now) {
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
