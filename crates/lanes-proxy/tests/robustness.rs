//! The proxy under pressure: a flood of unique trace ids, route-table swaps under load,
//! malformed and slow clients, HTTP/2, and the metric series it exports.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn metric(metrics: &str, name: &str, must_contain: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(name) && l.contains(must_contain))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_unique_trace_ids_never_grow_the_table_past_its_capacity() {
    const TOTAL: u64 = 1_000_000;
    const CONNS: u64 = 8;
    const CAPACITY: usize = 10_000;
    let mut s = settings();
    s.correlation_capacity = CAPACITY;
    let pods = vec![
        pod("mocka", "v1", "base", App::Echo),
        pod("mockb", "v1", "base", App::Echo),
        pod("mockc", "v1", "base", App::Echo),
    ];
    let c = Cluster::start(&manifests(), pods, s).await;
    let target = c.pod("mockb-v1-base").inbound;
    let capacity = c.pod("mockb-v1-base").sidecar.correlation.capacity();
    assert_eq!(capacity, CAPACITY);
    let sent = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for conn in 0..CONNS {
        let sent = sent.clone();
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(target).await.unwrap();
            let (mut send, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(driver);
            for i in 0..TOTAL / CONNS {
                let req = Request::get("/")
                    .header("host", "mockb")
                    .header("x-asm-prefer-tag", "canary")
                    .header("my-request-id", format!("{conn}-{i}"))
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                send.ready().await.unwrap();
                let resp = send.send_request(req).await.unwrap();
                assert_eq!(resp.status(), StatusCode::OK);
                resp.into_body().collect().await.unwrap();
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Sample the table's size from the admin endpoint while the flood runs.
    let mut samples = 0;
    let mut max_seen = 0.0f64;
    while sent.load(Ordering::Relaxed) < TOTAL {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let m = c.metrics().await;
        if let Some(v) = metric(&m, "lanes_correlation_entries", "pod=\"mockb-v1-base\"") {
            max_seen = max_seen.max(v);
            samples += 1;
        }
        if tasks.iter().all(|t| t.is_finished()) {
            break;
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let m = c.metrics().await;
    let entries = metric(&m, "lanes_correlation_entries", "pod=\"mockb-v1-base\"").unwrap();
    let evictions = metric(
        &m,
        "lanes_correlation_evictions_total",
        "pod=\"mockb-v1-base\"",
    )
    .unwrap();
    assert!(samples > 0);
    assert!(max_seen <= CAPACITY as f64, "saw {max_seen} entries");
    assert!(entries <= CAPACITY as f64, "{entries}");
    assert!(entries > (CAPACITY / 2) as f64, "{entries}");
    assert_eq!(entries + evictions, TOTAL as f64);
    // The newest trace is still correlated; the oldest was evicted.
    let sc = &c.pod("mockb-v1-base").sidecar.correlation;
    assert_eq!(
        sc.lookup(&format!("0-{}", TOTAL / CONNS - 1)).as_deref(),
        Some("canary")
    );
    assert_eq!(sc.lookup("0-0"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_table_swaps_every_10ms_under_load_fail_no_request() {
    let mut specs = chain_pods(&["mocka", "mockb", "mockc"]);
    let mut extra = pod("mocka", "v1", "base", sample(Some("http://mockb:8000/")));
    extra.name = "mocka-v1-base-2".into();
    specs.push(extra);
    let c = Arc::new(Cluster::start(&manifests(), specs, settings()).await);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut load = Vec::new();
    for worker in 0..4 {
        let (c, stop, ok, failed) = (c.clone(), stop.clone(), ok.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let lane = if i.is_multiple_of(2) {
                    "base"
                } else {
                    "canary"
                };
                let (status, _, body) = c.get(lane, &format!("{worker}-{i}")).await;
                let want = if lane == "base" { ["v1"; 3] } else { ["v2"; 3] };
                if status == StatusCode::OK && versions(&body) == want {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.lock().unwrap().push(format!("{status} {body}"));
                }
                i += 1;
            }
        }));
    }
    let started = Instant::now();
    let mut swaps = 0u32;
    while started.elapsed() < Duration::from_secs(3) {
        let all: Vec<_> = c.pods.iter().collect();
        let without_extra: Vec<_> = c
            .pods
            .iter()
            .filter(|p| p.spec.name != "mocka-v1-base-2")
            .collect();
        c.publish(if swaps.is_multiple_of(2) {
            &without_extra
        } else {
            &all
        });
        swaps += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    let failed = failed.lock().unwrap();
    assert!(swaps >= 100, "{swaps} swaps");
    assert!(
        ok.load(Ordering::Relaxed) > 100,
        "only {} requests",
        ok.load(Ordering::Relaxed)
    );
    assert!(
        failed.is_empty(),
        "{} failed, first: {:?}",
        failed.len(),
        failed.first()
    );
}

/// Sends raw bytes and returns what the server answered before closing (or timing out).
async fn raw(addr: std::net::SocketAddr, bytes: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(bytes).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_slow_clients_get_4xx_or_are_closed_and_others_are_served() {
    let c = Cluster::start(&manifests(), chain_pods(&[]), settings()).await;
    let wait = Duration::from_secs(5);
    let answer = raw(
        c.gateway,
        b"GET /mock HTTP/1.1\r\nHost: x\r\nBad\x01Name: y\r\n\r\n",
        wait,
    )
    .await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
        "invalid header byte: {answer:?}"
    );

    let mut big = b"GET /mock HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 1024 * 1024));
    big.extend_from_slice(b"\r\n\r\n");
    let answer = raw(c.gateway, &big, wait).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "1 MB header: {answer:?}"
    );

    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let answer = raw(c.gateway, &garbage, wait).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
        "garbage: {answer:?}"
    );

    // Slowloris: half a request head, then silence. The header read timeout (1 s here)
    // closes the connection; meanwhile others are served.
    let mut slow = TcpStream::connect(c.gateway).await.unwrap();
    slow.write_all(b"GET /mock HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let (status, _, body) = c.get("base", "meanwhile").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "a slow client was never cut off");
    let answer = String::from_utf8_lossy(&buf);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer:?}"
    );

    let (status, _, body) = c.get("base", "after").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(versions(&body), ["v1", "v1", "v1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_cleartext_end_to_end() {
    let c = Cluster::start(&manifests(), chain_pods(&["mockb"]), settings()).await;
    let stream = TcpStream::connect(c.gateway).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    for (lane, want) in [("canary", ["v1", "v2", "v1"]), ("base", ["v1", "v1", "v1"])] {
        let req = Request::get("http://example.com/mock")
            .header("x-asm-prefer-tag", lane)
            .header("my-request-id", format!("h2-{lane}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.version(), http::Version::HTTP_2);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(versions(&String::from_utf8_lossy(&body)), want);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_metric_series_is_exported() {
    let c = Cluster::start(&manifests(), chain_pods(&["mockc"]), settings()).await;
    let (status, _, _) = c.get("canary", "m-1").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = c.get("base", "m-2").await;
    assert_eq!(status, StatusCode::OK);
    let m = c.metrics().await;
    for (name, labels) in [
        (
            "lanes_requests_total{",
            &[
                "role=\"gateway\"",
                "service=\"mocka\"",
                "namespace=\"default\"",
                "lane=\"canary\"",
                "subset=\"base\"",
                "code=\"200\"",
                "fallback=\"lane_lacks_service\"",
            ][..],
        ),
        (
            "lanes_requests_total{",
            &[
                "role=\"outbound\"",
                "service=\"mockc\"",
                "lane=\"canary\"",
                "subset=\"canary\"",
                "fallback=\"none\"",
            ][..],
        ),
        (
            "lanes_requests_total{",
            &["role=\"inbound\"", "code=\"200\""][..],
        ),
        (
            "lanes_request_duration_seconds_bucket{",
            &["service=\"mockc\"", "subset=\"canary\"", "le=\""][..],
        ),
        (
            "lanes_request_duration_seconds_count{",
            &["service=\"mocka\"", "subset=\"base\""][..],
        ),
        (
            "lanes_fallbacks_total{",
            &[
                "service=\"mocka\"",
                "reason=\"lane_lacks_service\"",
                "from=\"canary\"",
                "to=\"base\"",
            ][..],
        ),
        (
            "lanes_correlation_entries{",
            &["pod=\"mockb-v1-base\"", "namespace=\"default\""][..],
        ),
        (
            "lanes_correlation_evictions_total{",
            &["pod=\"mockb-v1-base\""][..],
        ),
        (
            "istio_requests_total{",
            &[
                "reporter=\"destination\"",
                "destination_workload=\"mockc-canary\"",
                "destination_workload_namespace=\"default\"",
                "destination_app=\"mockc\"",
                "destination_version=\"v2\"",
                "destination_service=\"mockc.default.svc.cluster.local\"",
                "destination_service_name=\"mockc\"",
                "destination_service_namespace=\"default\"",
                "request_protocol=\"http\"",
                "response_code=\"200\"",
                "response_flags=\"-\"",
            ][..],
        ),
        (
            "istio_request_duration_milliseconds_bucket{",
            &["le=\"", "destination_workload=\"mocka-base\""][..],
        ),
    ] {
        let found = m
            .lines()
            .any(|l| l.starts_with(name) && labels.iter().all(|want| l.contains(want)));
        assert!(found, "no {name} series with {labels:?} in:\n{m}");
    }
    // mockb's sidecar correlated both requests' trace ids, each with its lane.
    assert_eq!(
        metric(&m, "lanes_correlation_entries", "pod=\"mockb-v1-base\""),
        Some(2.0)
    );
    let sc = &c.pod("mockb-v1-base").sidecar.correlation;
    assert_eq!(sc.lookup("m-1").as_deref(), Some("canary"));
    assert_eq!(sc.lookup("m-2").as_deref(), Some("base"));
}
