//! Where a process's hop records go: `--otlp-endpoint` (or `OTEL_EXPORTER_OTLP_ENDPOINT`)
//! exports them as OpenTelemetry spans, `--access-log` prints one JSON line per hop, and
//! `lanes up` keeps the newest in a ring for `lanes trace`.

use std::io::Write as _;
use std::sync::Arc;

use anyhow::Result;
use lanes_proxy::Metrics;
use lanes_proxy::otlp::Exporter;
use lanes_proxy::trace::{Hop, HopSink, Hops};

/// Hops `lanes up` keeps for `lanes trace` (a few MB at most).
pub const RING: usize = 10_000;

/// The flags both `lanes up` and `lanes proxy` take.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct HopOptions {
    /// Export every proxy hop as an OpenTelemetry span over OTLP/HTTP (protobuf) to
    /// this collector, e.g. http://127.0.0.1:4318 (`/v1/traces` is added).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// Print one JSON line per proxy hop on standard output (the access log; see the
    /// README for its fields).
    #[arg(long)]
    pub access_log: bool,
}

impl HopOptions {
    /// Whether hops go anywhere but a ring.
    pub fn records(&self) -> bool {
        self.access_log || self.otlp_endpoint.as_deref().is_some_and(|e| !e.is_empty())
    }

    /// Where hops go, keeping the newest `ring` of them; none when nothing would take
    /// them. Starts the exporter on the current runtime, counting in `metrics`.
    pub fn hops(&self, ring: usize, metrics: &Metrics) -> Result<Option<Arc<Hops>>> {
        let mut sinks: Vec<HopSink> = Vec::new();
        if let Some(endpoint) = self.otlp_endpoint.as_deref().filter(|e| !e.is_empty()) {
            let exporter = Exporter::spawn(endpoint, metrics.spans.clone())?;
            sinks.push(Box::new(move |h: &Hop| exporter.offer(h)));
        }
        if self.access_log {
            sinks.push(Box::new(access_log));
        }
        if ring == 0 && sinks.is_empty() {
            return Ok(None);
        }
        Ok(Some(Arc::new(Hops::new(ring, sinks))))
    }
}

/// One access-log line: the hop as JSON.
fn access_log(hop: &Hop) {
    if let Ok(line) = serde_json::to_string(hop) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
    }
}
