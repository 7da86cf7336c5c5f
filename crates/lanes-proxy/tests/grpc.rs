//! gRPC through the gateway and the sidecars, with real gRPC peers no one here wrote
//! (Python's grpcio, `tests/grpc/peer.py`): the lane kept across a gRPC call chain, the
//! fallback when a canary answers `UNAVAILABLE`, the `grpc-status` in Istio's series,
//! and server and bidirectional streams.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{App, Cluster, PodSpec, grpc_peer, manifests, pod, python, settings};
use serde_json::Value;

/// The article's lanes with an ingress rule for the test service's gRPC methods.
fn grpc_manifests() -> String {
    let text = manifests().replace("exact: /mock", "prefix: /lanes.test.Chain/");
    assert_eq!(text.matches("prefix: /lanes.test.Chain/").count(), 3);
    text
}

fn grpc(upstream: Option<&'static str>) -> App {
    App::Grpc {
        upstream,
        unavailable: false,
    }
}

/// mocka → mockb → mockc over gRPC, all in the baseline lane, and the given canaries.
fn chain(canaries: &[(&str, App)]) -> Vec<PodSpec> {
    let mut pods = vec![
        pod("mocka", "v1", "base", grpc(Some("mockb:8000"))),
        pod("mockb", "v1", "base", grpc(Some("mockc:8000"))),
        pod("mockc", "v1", "base", grpc(None)),
    ];
    for (service, app) in canaries {
        pods.push(pod(service, "v2", "canary", app.clone()));
    }
    pods
}

/// Calls `method` through the gateway with the given metadata (the grpcio client of
/// `peer.py`), and returns what it printed: code, messages, initial and trailing metadata.
async fn call(cluster: &Cluster, method: &str, metadata: &[&str]) -> Value {
    let mut cmd = std::process::Command::new(python());
    cmd.arg(grpc_peer())
        .args(["call", &cluster.gateway.to_string(), "example.com", method]);
    cmd.args(metadata);
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("python"))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_call_chain_keeps_the_canary_lane_past_a_baseline_hop() {
    let c = Cluster::start(
        &grpc_manifests(),
        chain(&[("mockb", grpc(Some("mockc:8000"))), ("mockc", grpc(None))]),
        settings(),
    )
    .await;
    let canary = call(
        &c,
        "Call",
        &["x-asm-prefer-tag=canary", "my-request-id=grpc-chain-1"],
    )
    .await;
    assert_eq!(canary["code"], "OK", "{canary}");
    assert_eq!(
        canary["messages"][0], "-> mocka(version: v1)-> mockb(version: v2)-> mockc(version: v2)",
        "mocka has no canary: the baseline serves it and the canary lane goes on: {canary}"
    );
    // No trace id from the client: the gateway gives the call one.
    let base = call(&c, "Call", &["x-asm-prefer-tag=base"]).await;
    assert_eq!(
        base["messages"][0], "-> mocka(version: v1)-> mockb(version: v1)-> mockc(version: v1)",
        "{base}"
    );
    let metrics = c.metrics().await;
    let served = istio_line(&metrics, "mockb-canary");
    assert!(
        served
            .contains("request_protocol=\"grpc\",response_code=\"200\",grpc_response_status=\"0\""),
        "{served}"
    );
}

/// The `istio_requests_total` series of calls served by `workload`.
fn istio_line<'m>(metrics: &'m str, workload: &str) -> &'m str {
    let wanted = format!("destination_workload=\"{workload}\"");
    metrics
        .lines()
        .find(|l| l.starts_with("istio_requests_total{") && l.contains(&wanted))
        .unwrap_or_else(|| panic!("no series for {workload}: {metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_answering_unavailable_is_served_by_the_baseline_with_the_fallback_header() {
    let draining = App::Grpc {
        upstream: Some("mockc:8000"),
        unavailable: true,
    };
    let c = Cluster::start(
        &grpc_manifests(),
        chain(&[
            ("mocka", grpc(Some("mockb:8000"))),
            ("mockb", draining),
            ("mockc", grpc(None)),
        ]),
        settings(),
    )
    .await;
    let r = call(
        &c,
        "Call",
        &[
            "x-asm-prefer-tag=canary",
            "my-request-id=grpc-unavailable-1",
        ],
    )
    .await;
    assert_eq!(r["code"], "OK", "{r}");
    assert_eq!(
        r["messages"][0], "-> mocka(version: v2)-> mockb(version: v1)-> mockc(version: v2)",
        "the baseline mockb answers and the call stays in the canary lane after it: {r}"
    );
    assert_eq!(
        r["initial"]["x-lanes-fallback"], "canary->base",
        "mockb's fallback, reported on mocka's answer: {r}"
    );
    let metrics = c.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("lanes_fallbacks_total{")
                && l.contains("reason=\"grpc_unavailable\"")
                && l.contains("from=\"canary\",to=\"base\"")),
        "{metrics}"
    );
    let refused = istio_line(&metrics, "mockb-canary");
    assert!(
        refused.contains("grpc_response_status=\"14\""),
        "the canary's failed call is counted as one: {refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_and_bidirectional_streams_pass_in_the_canary_lane() {
    let c = Cluster::start(
        &grpc_manifests(),
        chain(&[("mocka", grpc(None))]),
        settings(),
    )
    .await;
    let counted = call(&c, "Count", &["x-asm-prefer-tag=canary"]).await;
    assert_eq!(counted["code"], "OK", "{counted}");
    let want: Vec<String> = (0..5).map(|i| format!("mocka v2 #{i}")).collect();
    assert_eq!(counted["messages"], serde_json::json!(want), "{counted}");

    let echoed = call(&c, "Echo", &["x-asm-prefer-tag=canary"]).await;
    assert_eq!(echoed["code"], "OK", "{echoed}");
    let messages = echoed["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1000, "{echoed}");
    for (i, m) in messages.iter().enumerate() {
        assert_eq!(m, &format!("v2:m{i}"));
    }
    let base = call(&c, "Echo", &["x-asm-prefer-tag=base"]).await;
    assert_eq!(base["messages"][999], "v1:m999", "{base}");
}
