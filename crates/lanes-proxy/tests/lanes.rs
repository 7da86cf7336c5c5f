//! Lane propagation and fallback over real sockets: a gateway, a sidecar per pod, and
//! application servers that forward only the trace header.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::Full;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_requests_stay_canary_at_every_hop() {
    let c = Cluster::start(
        &manifests(),
        chain_pods(&["mocka", "mockb", "mockc"]),
        settings(),
    )
    .await;
    for i in 0..20 {
        let (status, _, body) = c.get("canary", &format!("c-{i}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(versions(&body), ["v2", "v2", "v2"], "{body}");
        let (status, _, body) = c.get("base", &format!("b-{i}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(versions(&body), ["v1", "v1", "v1"], "{body}");
    }
    // Addresses in the answer are the pods' own.
    let (_, _, body) = c.get("base", "addr").await;
    assert!(body.contains(&format!("ip: {})", c.pod("mocka-v1-base").app_addr.ip())));
    // Istio's standard series, as the serving pods' sidecars report them: the 20
    // canary calls of mockb were served by mockb's canary workload.
    let metrics = c.mesh.metrics().encode();
    let served = |workload: &str| -> u64 {
        metrics
            .lines()
            .filter(|l| l.starts_with("istio_requests_total{reporter=\"destination\""))
            .filter(|l| l.contains(&format!("destination_workload=\"{workload}\"")))
            .filter(|l| l.contains("destination_service_name=\"mockb\""))
            .filter(|l| l.contains("destination_version=\"v2\"") == workload.ends_with("canary"))
            .filter(|l| l.contains("response_code=\"200\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    assert_eq!(served("mockb-canary"), 20, "{metrics}");
    // What entered each lane at the gateway, as a lane release's analysis reads it.
    let m = c.mesh.metrics();
    let canary = m.entry_sample("default", "canary");
    assert_eq!((canary.total, canary.failures), (20, 0));
    assert_eq!(canary.buckets.iter().sum::<u64>(), 20);
    assert_eq!(m.entry_sample("default", "base").total, 21);
    assert_eq!(m.entry_sample("other", "canary").total, 0);
    assert_eq!(served("mockb-base"), 21, "{metrics}");
    assert!(
        metrics.lines().any(|l| l
            .starts_with("istio_request_duration_milliseconds_bucket{le=\"+Inf\"")
            && l.contains("destination_workload=\"mockb-canary\"")
            && l.ends_with("} 20")),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lane_survives_a_fallback_hop() {
    // No canary of the middle service: mockb's baseline serves canary requests, and
    // mockb's own call still reaches mockc's canary (correlation by trace id).
    let c = Cluster::start(&manifests(), chain_pods(&["mocka", "mockc"]), settings()).await;
    for i in 0..20 {
        let (status, headers, body) = c.get("canary", &format!("t-{i}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(versions(&body), ["v2", "v1", "v2"], "{body}");
        // mocka's call to mockb fell back; mocka's sidecar reports it to the caller.
        assert_eq!(headers.get("x-lanes-fallback").unwrap(), "canary->base");
        let (_, _, body) = c.get("base", &format!("u-{i}")).await;
        assert_eq!(versions(&body), ["v1", "v1", "v1"], "{body}");
    }
    // Base requests never touched a canary subset.
    let metrics = c.metrics().await;
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("lanes_requests_total{"))
    {
        if line.contains("lane=\"base\"") {
            assert!(line.contains("subset=\"base\""), "{line}");
        }
    }
    assert!(
        metrics.contains("reason=\"lane_lacks_service\""),
        "{metrics}"
    );
}

/// GET /mock through the gateway in the canary lane with `headers` and no
/// `my-request-id` of the client's.
fn canary_without_trace_id(headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut req = Request::get("/mock")
        .header("host", "example.com")
        .header("x-asm-prefer-tag", "canary");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.body(Full::new(Bytes::new())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_no_trace_id_keeps_its_lane_across_a_baseline_hop() {
    // The gateway gives each request the group's trace header (my-request-id), which the
    // applications forward: mockb's baseline still calls mockc's canary.
    let c = Cluster::start(&manifests(), chain_pods(&["mocka", "mockc"]), settings()).await;
    for _ in 0..10 {
        let (status, _, body) = c.request(canary_without_trace_id(&[])).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(versions(&body), ["v2", "v1", "v2"], "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applications_that_forward_only_traceparent_keep_the_lane_across_a_baseline_hop() {
    // The applications pass on W3C traceparent alone (not my-request-id): the sidecars
    // correlate by its trace id.
    let c = Cluster::start(
        &manifests(),
        w3c_chain_pods(&["mocka", "mockc"]),
        settings(),
    )
    .await;
    for i in 0..10 {
        let parent = format!("00-4bf92f3577b34da6a3ce929d0e0e{i:04x}-00f067aa0ba902b7-01");
        let (status, headers, body) = c
            .request(canary_without_trace_id(&[("traceparent", &parent)]))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(versions(&body), ["v2", "v1", "v2"], "{body}");
        assert_eq!(headers.get("x-lanes-fallback").unwrap(), "canary->base");
    }
    // A traceparent that is no valid one is no key: the lane is lost at the baseline hop.
    let zero = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
    let (_, _, body) = c
        .request(canary_without_trace_id(&[("traceparent", zero)]))
        .await;
    assert_eq!(versions(&body), ["v2", "v1", "v1"], "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_canary_lane_falls_back_everywhere() {
    let c = Cluster::start(&manifests(), chain_pods(&[]), settings()).await;
    let (status, headers, body) = c.get("canary", "10000").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(versions(&body), ["v1", "v1", "v1"]);
    assert_eq!(headers.get("x-lanes-fallback").unwrap(), "canary->base");
    let (_, headers, _) = c.get("base", "9999").await;
    assert!(headers.get("x-lanes-fallback").is_none());
}

async fn failing_canary(app: App) -> Cluster {
    let mut pods = chain_pods(&[]);
    pods.push(pod("mocka", "v2", "canary", app));
    Cluster::start(&manifests(), pods, settings()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_failure_kind_falls_back_to_the_baseline() {
    for (app, reason) in [
        (App::Refuse, "upstream_status"),
        (App::Reset, "upstream_status"),
        (App::Status(502), "upstream_status"),
        (App::Status(503), "upstream_status"),
        (App::Status(504), "upstream_status"),
    ] {
        let c = failing_canary(app.clone()).await;
        let (status, headers, body) = c.get("canary", "f-1").await;
        assert_eq!(status, StatusCode::OK, "{app:?}: {body}");
        assert_eq!(versions(&body), ["v1", "v1", "v1"], "{app:?}: {body}");
        assert_eq!(
            headers.get("x-lanes-fallback").unwrap(),
            "canary->base",
            "{app:?}"
        );
        let metrics = c.metrics().await;
        assert!(
            metrics.contains(&format!("reason=\"{reason}\"")),
            "{app:?}: {metrics}"
        );
        // The caller got an answer, but the lane failed it: a lane release counts that.
        let entered = c.mesh.metrics().entry_sample("default", "canary");
        assert_eq!((entered.total, entered.failures), (1, 1), "{app:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_errors_and_resets_at_the_endpoint_fall_back_with_their_reason() {
    // Point the canary endpoint straight at the misbehaving address, with no sidecar in
    // front, so the gateway itself sees the connect error or the reset.
    for (app, reason) in [(App::Refuse, "connect_error"), (App::Reset, "reset")] {
        let c = failing_canary(app.clone()).await;
        let canary = c.pod("mocka-v2-canary");
        let mut endpoints: Vec<lanes_proxy::Endpoint> = c
            .pods
            .iter()
            .map(|p| lanes_proxy::Endpoint {
                service: p.spec.service.clone(),
                namespace: "default".into(),
                address: p.inbound,
                labels: p.labels(),
                ready: true,
                pod: None,
            })
            .collect();
        for e in &mut endpoints {
            if e.labels.get("ASM_TRAFFIC_TAG").map(String::as_str) == Some("canary") {
                e.address = canary.app_addr;
            }
        }
        let (loaded, _) = lanes_model::decode_str("m.yaml", &c.manifests);
        let objects: Vec<_> = loaded.iter().map(|l| &l.object).collect();
        let views: Vec<_> = c
            .pods
            .iter()
            .map(|p| lanes_model::mesh::PodView {
                name: p.spec.name.clone(),
                namespace: "default".into(),
                labels: p.labels(),
                ready: true,
                ip: None,
            })
            .collect();
        let out = lanes_compile::compile(&objects, &views, lanes_compile::Flavor::Asm);
        c.mesh.update(&out.routes, &endpoints).unwrap();
        let (status, headers, body) = c.get("canary", "f-2").await;
        assert_eq!(status, StatusCode::OK, "{app:?}: {body}");
        assert_eq!(headers.get("x-lanes-fallback").unwrap(), "canary->base");
        let metrics = c.metrics().await;
        assert!(
            metrics.contains(&format!("reason=\"{reason}\"")),
            "{app:?}: {metrics}"
        );
        // The caller got an answer, but the lane failed it: a lane release counts that.
        let entered = c.mesh.metrics().entry_sample("default", "canary");
        assert_eq!((entered.total, entered.failures), (1, 1), "{app:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_bodies_are_replayed_and_large_ones_are_not() {
    let pods = vec![
        pod("mocka", "v1", "base", App::Echo),
        pod("mocka", "v2", "canary", App::Status(503)),
        pod("mockb", "v1", "base", App::Echo),
        pod("mockc", "v1", "base", App::Echo),
    ];
    let c = Cluster::start(&manifests(), pods, settings()).await;
    let post = |size: usize| {
        Request::post("/mock")
            .header("host", "example.com")
            .header("x-asm-prefer-tag", "canary")
            .body(Full::new(Bytes::from(vec![b'x'; size])))
            .unwrap()
    };
    let (status, headers, body) = c.request(post(1000)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.len(), 1000, "the replayed body arrives whole");
    assert_eq!(headers.get("x-lanes-fallback").unwrap(), "canary->base");

    let (status, headers, body) = c.request(post(100 * 1024)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(headers.get("x-lanes-fallback").is_none());
    let why = headers.get("x-lanes-no-retry").unwrap().to_str().unwrap();
    assert!(why.contains("65536"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_never_answers_times_out_within_the_bound() {
    let mut s = settings();
    s.request_timeout_ms = 300;
    let pods = vec![
        pod("mocka", "v1", "base", App::Hang),
        pod("mockb", "v1", "base", App::Echo),
        pod("mockc", "v1", "base", App::Echo),
    ];
    let c = Cluster::start(&manifests(), pods, s).await;
    let started = std::time::Instant::now();
    let (status, _, body) = c.get("base", "slow").await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    // The hop nearest the hung application answers first, naming it: the gateway's
    // 300 ms budget less a hop's margin (250 ms) is what the pod's sidecar waits.
    assert!(
        body.contains("pod mocka") && body.contains("did not answer within 50 ms"),
        "{body}"
    );
    // The bound: the configured timeout, never an open-ended wait.
    assert!(took >= std::time::Duration::from_millis(50), "{took:?}");
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_endpoint_anywhere_is_a_503_naming_service_lane_and_fallback() {
    let pods = vec![
        pod("mockb", "v1", "base", App::Echo),
        pod("mockc", "v1", "base", App::Echo),
    ];
    let c = Cluster::start(&manifests(), pods, settings()).await;
    let (status, _, body) = c.get("canary", "x").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("mocka.default"), "{body}");
    assert!(body.contains("lane \"canary\""), "{body}");
    assert!(body.contains("fallback lane \"base\""), "{body}");
    // The lane's users saw a failure.
    let entered = c.mesh.metrics().entry_sample("default", "canary");
    assert_eq!((entered.total, entered.failures), (1, 1));
    let (status, _, body) = c
        .request(
            Request::get("/nowhere")
                .header("host", "example.com")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("no lane ingress rule matches"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_outside_the_mesh_pass_through_unless_registry_only() {
    let c = Cluster::start(&manifests(), chain_pods(&[]), settings()).await;
    let outside = c.pod("mockc-v1-base").app_addr; // an address, not a mesh host
    let outbound = c.pod("mocka-v1-base").outbound;
    let req = || {
        Request::get(format!("http://{outside}/"))
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let (status, body) = send_via(outbound, req()).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(body.starts_with("-> mockc(version: v1"), "{body}");

    let mut s = settings();
    s.registry_only = true;
    let c = Cluster::start(&manifests(), chain_pods(&[]), s).await;
    let outside = c.pod("mockc-v1-base").app_addr;
    let req = Request::get(format!("http://{outside}/"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, body) = send_via(c.pod("mocka-v1-base").outbound, req)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(body.contains("registry-only"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_header_and_baggage_carry_the_lane_too() {
    let c = Cluster::start(&manifests(), chain_pods(&["mockb"]), settings()).await;
    let outbound = c.pod("mocka-v1-base").outbound;
    // The app sets the route header itself: honoured.
    let req = Request::get("http://mockb:8000/")
        .header("x-asm-prefer-tag", "canary")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (_, body) = send_via(outbound, req).await.unwrap();
    assert_eq!(versions(&body)[0], "v2", "{body}");
    // Baggage only.
    let req = Request::get("http://mockb.default.svc.cluster.local:8000/")
        .header("baggage", "userId=1,x-asm-prefer-tag=canary")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (_, body) = send_via(outbound, req).await.unwrap();
    assert_eq!(versions(&body)[0], "v2", "{body}");
    // Nothing: the calling pod's own lane (base).
    let req = Request::get("http://mockb/")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (_, body) = send_via(outbound, req).await.unwrap();
    assert_eq!(versions(&body)[0], "v1", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_try_that_times_out_falls_back_to_the_baseline() {
    let mut s = settings();
    s.request_timeout_ms = 2_000;
    let pods = vec![
        pod("mocka", "v1", "base", App::Echo),
        pod("mocka", "v2", "canary", App::Hang),
        pod("mockb", "v1", "base", App::Echo),
        pod("mockc", "v1", "base", App::Echo),
    ];
    let c = Cluster::start(&manifests(), pods, s).await;
    let (status, headers, body) = c.get("canary", "slow").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers.get("x-lanes-fallback").unwrap(), "canary->base");
    // The canary's sidecar, nearest the hung application, gave up first (its budget is
    // half the gateway's less a hop's margin) and its 504 sent the request to the base.
    let metrics = c.mesh.metrics().encode();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("lanes_upstream_attempts_total")
                && l.contains("subset=\"canary\"")
                && l.contains("outcome=\"failure\"")),
        "the canary's try counts as its failure"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_keeps_timing_out_is_ejected() {
    let mut s = settings();
    s.request_timeout_ms = 600;
    let pods = vec![
        pod("mocka", "v1", "base", App::Echo),
        pod("mocka", "v9", "base", App::Hang),
        pod("mockb", "v1", "base", App::Echo),
        pod("mockc", "v1", "base", App::Echo),
    ];
    let c = Cluster::start(&manifests(), pods, s).await;
    let mut statuses = Vec::new();
    for i in 0..24 {
        let (status, _, _) = c.get("base", &format!("t{i}")).await;
        statuses.push(status.as_u16());
    }
    let timeouts = statuses.iter().filter(|s| **s == 504).count();
    assert_eq!(
        timeouts,
        outlier_failures(),
        "round robin sends the hung endpoint every other request until it is ejected: {statuses:?}"
    );
    assert!(statuses[14..].iter().all(|s| *s == 200), "{statuses:?}");
}

fn outlier_failures() -> usize {
    lanes_proxy::outlier::CONSECUTIVE_FAILURES as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failed_canary_falls_back_the_next_hop_stays_in_the_canary_lane() {
    let mut pods = chain_pods(&["mockb"]);
    pods.push(pod("mocka", "v2", "canary", App::Status(500)));
    let c = Cluster::start(&manifests(), pods, settings()).await;
    for i in 0..5 {
        let (status, headers, body) = c.get("canary", &format!("ff-{i}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(headers.get("x-lanes-fallback").unwrap(), "canary->base");
        assert_eq!(versions(&body), ["v1", "v2", "v1"], "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_sides_answer_alike_in_memory_and_over_the_wire() {
    let c = Cluster::start(
        &manifests(),
        chain_pods(&["mocka", "mockb", "mockc"]),
        settings(),
    )
    .await;
    let local = c.mesh.local_inbound();
    eventually_async(|| local.len() == c.pods.len()).await;
    for p in &c.pods {
        assert_eq!(local.get(p.inbound).unwrap().pod.name, p.spec.name);
    }
    let (status, _, in_memory) = c.get("canary", "mem").await;
    assert_eq!(status, StatusCode::OK, "{in_memory}");
    // Forgotten here, the inbound sides still listen: the same calls go over loopback.
    for p in &c.pods {
        local.remove(p.inbound);
    }
    let (status, _, wire) = c.get("canary", "wire").await;
    assert_eq!(status, StatusCode::OK, "{wire}");
    assert_eq!(versions(&in_memory), ["v2", "v2", "v2"]);
    assert_eq!(versions(&wire), versions(&in_memory));
    // A sidecar that stops is forgotten: nothing routes to it in memory afterwards.
    let c2 = Cluster::start(&manifests(), chain_pods(&["mocka"]), settings()).await;
    eventually_async(|| !c2.mesh.local_inbound().is_empty()).await;
    c2.stop.send(true).unwrap();
    eventually_async(|| c2.mesh.local_inbound().is_empty()).await;
}

/// Waits up to 5 s for `done`.
async fn eventually_async(done: impl Fn() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("not within 5 s");
}
