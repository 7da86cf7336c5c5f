//! Hop records as OpenTelemetry spans, exported over OTLP/HTTP (protobuf) to a
//! collector: queued without waiting (a full queue drops the span and counts it), sent
//! in batches by a task of their own, so a slow or absent collector costs the request
//! path nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Uri, header};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use prometheus_client::metrics::counter::Counter;
use prost::Message;
use tokio::sync::mpsc;

use crate::trace::Hop;

/// Spans waiting to be sent, at most.
pub const QUEUE: usize = 4096;

/// Spans per export request, at most.
pub const BATCH: usize = 512;

/// How long a span waits for its batch to fill.
const LINGER: Duration = Duration::from_millis(500);

/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// After a failed export, spans are dropped at once (not queued, copied nor encoded)
/// for this long, doubling on each failure in a row up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_secs(1);

/// The longest pause after failed exports.
const MAX_PAUSE: Duration = Duration::from_secs(30);

/// Until when spans are dropped at once: a collector that is down costs nothing.
#[derive(Debug)]
struct Pause {
    base: std::time::Instant,
    /// Milliseconds since `base`.
    until: AtomicU64,
}

impl Pause {
    fn new() -> Pause {
        Pause {
            base: std::time::Instant::now(),
            until: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn is_paused(&self) -> bool {
        self.now_ms() < self.until.load(Ordering::Relaxed)
    }

    fn pause_for(&self, d: Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.until
            .store(self.now_ms().saturating_add(ms), Ordering::Relaxed);
    }
}

/// Why an exporter cannot start.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    /// The endpoint is no `http://host:port[/path]` URL.
    #[error("OTLP endpoint {0:?} is not an http://host:port[/path] URL (OTLP over HTTP, no TLS)")]
    Endpoint(String),
}

/// The URL spans are posted to: the endpoint's `/v1/traces`, unless it names that
/// path already (as `OTEL_EXPORTER_OTLP_ENDPOINT` and its `_TRACES_` variant do).
pub fn traces_url(endpoint: &str) -> Result<Uri, OtlpError> {
    let bad = || OtlpError::Endpoint(endpoint.to_string());
    let trimmed = endpoint.trim().trim_end_matches('/');
    if !trimmed.starts_with("http://") {
        return Err(bad());
    }
    let full = if trimmed.ends_with("/v1/traces") {
        trimmed.to_string()
    } else {
        format!("{trimmed}/v1/traces")
    };
    let uri: Uri = full.parse().map_err(|_| bad())?;
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad());
    }
    Ok(uri)
}

/// What the exporter did (counters of the proxy's metrics).
#[derive(Debug, Clone, Default)]
pub struct ExportCounts {
    /// Spans a collector accepted.
    pub exported: Counter,
    /// Spans dropped: the queue was full, or the collector failed or refused them.
    pub dropped: Counter,
}

/// The sending side of an exporter: hands hops to its task.
#[derive(Debug, Clone)]
pub struct Exporter {
    queue: mpsc::Sender<Hop>,
    counts: ExportCounts,
    pause: Arc<Pause>,
}

impl Exporter {
    /// Starts an exporter posting to `endpoint` (a task on the current runtime),
    /// counting in `counts`.
    pub fn spawn(endpoint: &str, counts: ExportCounts) -> Result<Exporter, OtlpError> {
        let url = traces_url(endpoint)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let pause = Arc::new(Pause::new());
        tokio::spawn(run(url, rx, counts.clone(), pause.clone()));
        Ok(Exporter {
            queue: tx,
            counts,
            pause,
        })
    }

    /// Queues a hop, or drops it when the queue is full or the collector failed
    /// lately: never waits.
    pub fn offer(&self, hop: &Hop) {
        if self.pause.is_paused() || self.queue.try_send(hop.clone()).is_err() {
            self.counts.dropped.inc();
        }
    }

    /// What it has done so far.
    pub fn counts(&self) -> &ExportCounts {
        &self.counts
    }
}

/// Collects batches and posts them until every sender is gone.
async fn run(url: Uri, mut rx: mpsc::Receiver<Hop>, counts: ExportCounts, pause: Arc<Pause>) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut batch = Vec::with_capacity(BATCH);
    let mut next_pause = FIRST_PAUSE;
    while let Some(first) = rx.recv().await {
        batch.push(first);
        let deadline = tokio::time::Instant::now() + LINGER;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(hop)) => batch.push(hop),
                Ok(None) | Err(_) => break,
            }
        }
        let n = batch.len() as u64;
        let body = encode(&batch);
        batch.clear();
        let req = Request::post(url.clone())
            .header(header::CONTENT_TYPE, "application/x-protobuf")
            .body(Full::new(Bytes::from(body)));
        let Ok(req) = req else {
            counts.dropped.inc_by(n);
            continue;
        };
        match tokio::time::timeout(EXPORT_TIMEOUT, client.request(req)).await {
            Ok(Ok(resp)) if resp.status().is_success() => {
                counts.exported.inc_by(n);
                next_pause = FIRST_PAUSE;
            }
            outcome => {
                let why = match outcome {
                    Ok(Ok(resp)) => format!("answered {}", resp.status()),
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => "timed out".to_string(),
                };
                tracing::debug!(%url, %why, spans = n, pause = ?next_pause,
                    "OTLP export failed; spans dropped");
                counts.dropped.inc_by(n);
                // What waits was meant for the same collector: dropped with it.
                let mut queued = 0;
                while rx.try_recv().is_ok() {
                    queued += 1;
                }
                counts.dropped.inc_by(queued);
                pause.pause_for(next_pause);
                next_pause = (next_pause * 2).min(MAX_PAUSE);
            }
        }
    }
}

/// An `ExportTraceServiceRequest` of some hops, encoded.
pub fn encode(hops: &[Hop]) -> Vec<u8> {
    let resource = Resource {
        attributes: vec![text("service.name", "lanes")],
        ..Default::default()
    };
    let scope = InstrumentationScope {
        name: "lanes-proxy".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![ScopeSpans {
                scope: Some(scope),
                spans: hops.iter().map(span_of).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// One hop as a span, with the attributes the README documents.
fn span_of(h: &Hop) -> Span {
    let mut attributes = vec![text("lanes.role", h.role.as_str())];
    let mut add = |key: &str, v: Option<&str>| {
        if let Some(v) = v {
            attributes.push(text(key, v));
        }
    };
    add("lanes.service", h.service.as_deref());
    add("k8s.namespace.name", h.namespace.as_deref());
    add("k8s.pod.name", h.pod.as_deref());
    add("lanes.lane", h.lane.as_deref());
    add("lanes.subset", h.subset.as_deref());
    if let Some(f) = &h.fallback {
        attributes.push(text("lanes.fallback.from", &f.from));
        attributes.push(text("lanes.fallback.to", &f.to));
        attributes.push(text("lanes.fallback.reason", &f.reason));
    }
    attributes.push(int("http.response.status_code", i64::from(h.status)));
    if let Some(g) = h.grpc_status {
        attributes.push(int("rpc.grpc.status_code", i64::from(g)));
    }
    let failed = h.status >= 500 || h.grpc_status.is_some_and(|g| g != 0);
    let name = match (&h.service, &h.namespace) {
        (Some(s), Some(ns)) => format!("{} {s}.{ns}", h.role),
        _ => h.role.to_string(),
    };
    let kind = if h.role == crate::proxy::Side::Outbound {
        span::SpanKind::Client
    } else {
        span::SpanKind::Server
    };
    Span {
        trace_id: h.trace_id.0.to_vec(),
        span_id: h.span_id.0.to_vec(),
        parent_span_id: h.parent_span_id.map(|p| p.0.to_vec()).unwrap_or_default(),
        name,
        kind: kind as i32,
        start_time_unix_nano: h.start_unix_nano,
        end_time_unix_nano: h.start_unix_nano.saturating_add(h.duration_nano),
        attributes,
        status: Some(Status {
            code: if failed {
                status::StatusCode::Error
            } else {
                status::StatusCode::Unset
            } as i32,
            message: String::new(),
        }),
        ..Default::default()
    }
}

fn text(key: &str, v: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn int(key: &str, v: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(v)),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_drops_until_it_ends() {
        let p = Pause::new();
        assert!(!p.is_paused());
        p.pause_for(Duration::from_secs(60));
        assert!(p.is_paused());
        p.pause_for(Duration::ZERO);
        assert!(!p.is_paused());
    }

    #[test]
    fn the_endpoint_gets_v1_traces_unless_it_names_it_and_only_http_urls_pass() {
        assert_eq!(
            traces_url("http://127.0.0.1:4318").unwrap(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://collector:4318/v1/traces/").unwrap(),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://collector/otlp").unwrap(),
            "http://collector/otlp/v1/traces"
        );
        for bad in ["https://c:4318", "collector:4318", "", "http://"] {
            assert!(traces_url(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_hop_becomes_a_span_with_its_ids_times_and_attributes() {
        let hop = Hop {
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".parse().unwrap(),
            span_id: "00f067aa0ba902b7".parse().unwrap(),
            parent_span_id: Some("1111111111111111".parse().unwrap()),
            role: crate::proxy::Side::Outbound,
            service: Some("mockb".into()),
            namespace: Some("default".into()),
            pod: Some("mocka-v1-x".into()),
            lane: Some("canary".into()),
            subset: Some("base".into()),
            fallback: Some(Box::new(crate::trace::HopFallback {
                from: "canary".into(),
                to: "base".into(),
                reason: "lane_lacks_service".into(),
            })),
            status: 503,
            grpc_status: None,
            start_unix_nano: 1_000,
            duration_nano: 500,
        };
        let decoded = ExportTraceServiceRequest::decode(&encode(&[hop])[..]).unwrap();
        let s = &decoded.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(s.trace_id.len(), 16);
        assert_eq!(s.span_id, [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
        assert_eq!(s.parent_span_id, [0x11; 8]);
        assert_eq!(s.name, "outbound mockb.default");
        assert_eq!(s.kind, span::SpanKind::Client as i32);
        assert_eq!(
            (s.start_time_unix_nano, s.end_time_unix_nano),
            (1_000, 1_500)
        );
        assert_eq!(
            s.status.as_ref().unwrap().code,
            status::StatusCode::Error as i32
        );
        let attr = |k: &str| {
            s.attributes
                .iter()
                .find(|a| a.key == k)
                .and_then(|a| a.value.clone()?.value)
        };
        assert_eq!(
            attr("lanes.subset"),
            Some(any_value::Value::StringValue("base".into()))
        );
        assert_eq!(
            attr("lanes.fallback.reason"),
            Some(any_value::Value::StringValue("lane_lacks_service".into()))
        );
        assert_eq!(
            attr("http.response.status_code"),
            Some(any_value::Value::IntValue(503))
        );
    }
}
