//! Hop records: one span per hop, one trace per request, parent links from the gateway
//! to the last pod, the lane and subset of each hop, exported over OTLP/HTTP to a
//! receiver that decodes them with the official protobuf definitions (PyPI
//! `opentelemetry-proto`), and kept in the ring `lanes trace` reads.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{Cluster, Process, chain_pods, manifests, python, settings, w3c_chain_pods};
use http::Request;
use http_body_util::Full;
use lanes_proxy::otlp::Exporter;
use lanes_proxy::trace::{Hop, Hops};
use serde_json::Value;

/// The receiver, and its spans as they arrive (one JSON object per line).
fn receiver() -> (u16, Process, std::sync::mpsc::Receiver<Value>) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/otlp/receiver.py");
    let mut child = std::process::Command::new(python())
        .arg(script)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python for the OTLP receiver");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let port = first
        .strip_prefix("listening ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| {
            panic!("the receiver did not start (opentelemetry-proto installed?): {first:?}")
        });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if tx.send(serde_json::from_str(&line).unwrap()).is_err() {
                return;
            }
        }
    });
    (port, Process::from(child), rx)
}

async fn get(c: &Cluster, lane: &str, headers: &[(&str, &str)]) -> String {
    let mut req = Request::get("/mock")
        .header("host", "example.com")
        .header("x-asm-prefer-tag", lane);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let (status, _, body) = c.request(req.body(Full::new(Bytes::new())).unwrap()).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The chain of roles from the hop with no parent in the trace down its only path,
/// checking that every hop's parent is in the trace.
fn path<'a>(spans: &[&'a Value]) -> Vec<&'a Value> {
    let by_id: BTreeMap<&str, &Value> = spans
        .iter()
        .map(|s| (s["span_id"].as_str().unwrap(), *s))
        .collect();
    let mut out: Vec<&Value> = spans
        .iter()
        .copied()
        .filter(|s| !by_id.contains_key(s["parent_span_id"].as_str().unwrap()))
        .collect();
    assert_eq!(out.len(), 1, "one root per trace: {spans:?}");
    while let Some(child) = spans
        .iter()
        .find(|s| s["parent_span_id"] == out.last().unwrap()["span_id"])
    {
        out.push(child);
    }
    assert_eq!(out.len(), spans.len(), "every span on one path: {spans:?}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hop_is_one_otlp_span_with_parent_links_and_the_lanes_it_took() {
    let (port, _receiver, spans) = receiver();
    let exporter =
        Exporter::spawn(&format!("http://127.0.0.1:{port}"), Default::default()).unwrap();
    let hops = Arc::new(Hops::new(
        1000,
        vec![Box::new(move |h: &Hop| exporter.offer(h))],
    ));
    let c = Cluster::start_with_hops(
        &manifests(),
        chain_pods(&["mockb"]),
        settings(),
        Some(hops.clone()),
    )
    .await;
    get(&c, "canary", &[("my-request-id", "otel-canary")]).await;
    get(&c, "base", &[]).await;
    let mut got = Vec::new();
    while got.len() < 12 {
        got.push(
            spans
                .recv_timeout(Duration::from_secs(10))
                .expect("12 spans within 10 s"),
        );
    }
    assert!(
        spans.recv_timeout(Duration::from_millis(700)).is_err(),
        "no more than 12"
    );
    let mut traces: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for s in &got {
        traces
            .entry(s["trace_id"].as_str().unwrap())
            .or_default()
            .push(s);
        assert_eq!(s["resource"]["service.name"], "lanes");
        assert_eq!(s["scope"], "lanes-proxy");
    }
    assert_eq!(traces.len(), 2, "one trace per request");
    let canary = traces
        .values()
        .find(|t| t.iter().any(|s| s["attributes"]["lanes.lane"] == "canary"))
        .unwrap();
    let p = path(canary);
    let roles: Vec<&str> = p
        .iter()
        .map(|s| s["attributes"]["lanes.role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        [
            "gateway", "inbound", "outbound", "inbound", "outbound", "inbound"
        ]
    );
    let attr = |i: usize, k: &str| p[i]["attributes"][k].clone();
    // The gateway: mocka has no canary, so its baseline serves.
    assert_eq!(p[0]["name"], "gateway mocka.default");
    assert_eq!(p[0]["parent_span_id"], "", "the client sent no trace");
    assert_eq!(attr(0, "lanes.subset"), "base");
    assert_eq!(attr(0, "lanes.fallback.reason"), "lane_lacks_service");
    assert_eq!(attr(1, "k8s.pod.name"), "mocka-v1-base");
    // mocka's call to mockb stays in the canary lane (its application passed on only
    // my-request-id: the parent is the inbound hop that brought the trace in).
    assert_eq!(attr(2, "lanes.service"), "mockb");
    assert_eq!(attr(2, "lanes.lane"), "canary");
    assert_eq!(attr(2, "lanes.subset"), "canary");
    assert_eq!(p[2]["kind"], 3, "outbound calls are client spans");
    assert_eq!(attr(3, "k8s.pod.name"), "mockb-v2-canary");
    assert_eq!(attr(4, "lanes.subset"), "base");
    assert_eq!(attr(5, "k8s.pod.name"), "mockc-v1-base");
    for s in &p {
        assert_eq!(s["attributes"]["http.response.status_code"], 200);
        assert!(s["end"].as_u64() >= s["start"].as_u64());
    }
    // The outer hop lasts as long as the ones inside it.
    assert!(p[0]["start"].as_u64() <= p[5]["start"].as_u64());
    assert!(p[0]["end"].as_u64() >= p[5]["end"].as_u64());
    // The ring holds the same hops.
    let trace_id = p[0]["trace_id"].as_str().unwrap();
    assert_eq!(hops.trace(&trace_id.parse().unwrap()).len(), 6);
}

#[tokio::test]
async fn a_clients_traceparent_is_continued_through_applications_that_forward_only_it() {
    let hops = Arc::new(Hops::new(100, Vec::new()));
    let c = Cluster::start_with_hops(
        &manifests(),
        w3c_chain_pods(&["mockb"]),
        settings(),
        Some(hops.clone()),
    )
    .await;
    let client = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let body = get(&c, "canary", &[("traceparent", client)]).await;
    assert_eq!(common::versions(&body), ["v1", "v2", "v1"], "{body}");
    let trace = hops.trace(&"0af7651916cd43dd8448eb211c80319c".parse().unwrap());
    assert_eq!(trace.len(), 6, "{trace:?}");
    let as_json: Vec<Value> = trace
        .iter()
        .map(|h| {
            let mut v = serde_json::to_value(h).unwrap();
            v["span_id"] = v["spanId"].clone();
            v["parent_span_id"] = v.get("parentSpanId").cloned().unwrap_or(Value::from(""));
            v["attributes"] = serde_json::json!({"lanes.role": v["role"]});
            v
        })
        .collect();
    let refs: Vec<&Value> = as_json.iter().collect();
    // The client's span is the gateway's parent, outside the recorded hops.
    let p = path(&refs);
    assert_eq!(p[0]["parentSpanId"], "b7ad6b7169203331");
    assert_eq!(p.len(), 6);
    assert_eq!(p[3]["pod"], "mockb-v2-canary");
    let tree = lanes_proxy::trace::render_tree(&trace);
    assert!(tree.starts_with("trace 0af7651916cd43dd8448eb211c80319c\n└─ gateway → mocka.default lane canary served by base (fallback canary->base: lane_lacks_service) 200"), "{tree}");
    assert_eq!(tree.lines().count(), 7, "{tree}");
}

#[tokio::test]
async fn a_collector_that_is_down_costs_requests_nothing_and_its_spans_are_counted_dropped() {
    // A port nothing listens on, held for the whole test: a socket bound and never
    // listening refuses connections, and no other test's listener can take its port
    // (a freed port could go to the collector of the test beside this one, which
    // would then receive these spans).
    let down = tokio::net::TcpSocket::new_v4().unwrap();
    down.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = down.local_addr().unwrap().port();
    let exporter =
        Exporter::spawn(&format!("http://127.0.0.1:{port}"), Default::default()).unwrap();
    let counts = exporter.counts().clone();
    let hops = Arc::new(Hops::new(
        0,
        vec![Box::new(move |h: &Hop| exporter.offer(h))],
    ));
    let c = Cluster::start_with_hops(&manifests(), chain_pods(&[]), settings(), Some(hops)).await;
    for i in 0..20 {
        get(&c, "base", &[("my-request-id", &format!("down-{i}"))]).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while counts.dropped.get() < 120 {
        assert!(
            std::time::Instant::now() < deadline,
            "the 120 spans are counted dropped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(counts.exported.get(), 0);
}
