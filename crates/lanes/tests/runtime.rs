//! The local runtime end to end: `lanes up`, the article's manifests, real processes on
//! their own loopback addresses, sidecars, the gateway, and the article's curl.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// Pod name → IP, as `lanes get po -o wide` shows them.
fn pod_ips(d: &Daemon) -> BTreeMap<String, String> {
    let out = d.ok(&["get", "po", "-o", "wide"]);
    out.lines()
        .skip(1)
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols[0].to_string(), cols[5].to_string())
        })
        .collect()
}

fn ip_of(ips: &BTreeMap<String, String>, prefix: &str) -> String {
    ips.iter()
        .find(|(n, _)| n.starts_with(prefix))
        .map(|(_, ip)| ip.clone())
        .unwrap_or_else(|| panic!("no pod {prefix}* in {ips:?}"))
}

fn curl(d: &Daemon, lane: &str, id: &str) -> (u16, Vec<(String, String)>, String) {
    http_get(
        &d.gateway,
        "/mock",
        &[("x-asm-prefer-tag", lane), ("my-request-id", id)],
    )
}

/// The first curl after the Deployments settle: the gateway learns of ready pods from
/// the lane controller's next snapshot, a moment after their Deployment reports them.
fn curl_when_routed(d: &Daemon, lane: &str, id: &str) -> (u16, Vec<(String, String)>, String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let answer = curl(d, lane, id);
        if answer.0 == 200 || std::time::Instant::now() > deadline {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The subsets of mockb's generated DestinationRule; none while the lane controller has
/// not written it yet.
fn mockb_subsets(d: &Daemon) -> Vec<String> {
    let out = d.lanes(&[
        "get",
        "dr",
        "trafficlabel-dr-rollout-default-mockb",
        "-n",
        "istio-system",
        "-o",
        "json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && stderr.contains("not found") {
        return Vec::new();
    }
    assert!(out.status.success(), "lanes get dr failed: {stderr}");
    let dr: Value = serde_json::from_slice(&out.stdout).unwrap();
    dr["spec"]["subsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// A canary (v2) Deployment of `APP` calling `UPSTREAM`, `EXTRAENV` for more variables.
const CANARY: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: APP-canary
spec:
  replicas: 1
  selector:
    matchLabels:
      app: APP
      ASM_TRAFFIC_TAG: canary
  template:
    metadata:
      labels:
        app: APP
        ASM_TRAFFIC_TAG: canary
    spec:
      containers:
        - name: default
          image: registry.cn-beijing.aliyuncs.com/aliacs-app-catalog/go-http-sample:2.0
          env:
            - name: version
              value: v1
            - name: app
              value: APP
            - name: upstream_url
              value: "UPSTREAM"
            EXTRAENV
          ports:
            - containerPort: 8000
"#;

/// The canary of `app` calling `upstream`, with `extra_env` (YAML list items) added.
fn canary_deployment(app: &str, upstream: &str, extra_env: &str) -> String {
    CANARY
        .replace("APP", app)
        .replace("UPSTREAM", upstream)
        .replace("            EXTRAENV\n", extra_env)
}

/// mockb's canary, calling mockc.
fn mockb_canary(extra_env: &str) -> String {
    canary_deployment("mockb", "http://mockc:8000/", extra_env)
}

#[test]
fn the_articles_first_curl_and_a_hand_made_canary() {
    let d = Daemon::start();
    d.ok(&["apply", "-f", "examples/seed/"]);
    settled(&d, 3);
    let ips = pod_ips(&d);
    assert_eq!(ips.len(), 3, "{ips:?}");
    let (a, b, c) = (
        ip_of(&ips, "mocka-v1-"),
        ip_of(&ips, "mockb-v1-"),
        ip_of(&ips, "mockc-v1-"),
    );
    for ip in [&a, &b, &c] {
        assert!(ip.starts_with("127."), "{ip}");
    }
    let want = format!(
        "-> mocka(version: v1, ip: {a})-> mockb(version: v1, ip: {b})-> mockc(version: v1, ip: {c})"
    );
    let (status, _, body) = curl_when_routed(&d, "base", "9999");
    assert_eq!((status, body.as_str()), (200, want.as_str()));
    // The canary lane is empty: everything falls back.
    let (status, headers, body) = curl(&d, "canary", "10000");
    assert_eq!((status, body.as_str()), (200, want.as_str()));
    assert_eq!(header(&headers, "x-lanes-fallback"), Some("canary->base"));

    // A hand-made canary of mockb.
    apply_text(&d, &mockb_canary(""));
    settled(&d, 4);
    eventually(Duration::from_secs(20), || {
        let (_, _, body) = curl(&d, "canary", "10001");
        (versions(&body) == ["v1", "v2", "v1"]).then_some(())
    });
    for i in 0..20 {
        let (status, _, body) = curl(&d, "canary", &format!("c{i}"));
        assert_eq!(status, 200);
        assert_eq!(versions(&body), ["v1", "v2", "v1"], "{body}");
        let (status, _, body) = curl(&d, "base", &format!("b{i}"));
        assert_eq!(status, 200);
        assert_eq!(body, want, "base requests stay on the baseline");
    }
    // The lane controller writes the new subset into mockb's DestinationRule (the data
    // plane's route feed may see the pod first).
    eventually(Duration::from_secs(20), || {
        (mockb_subsets(&d) == ["base", "canary"]).then_some(())
    });
    // Logs of a pod.
    let pod = pod_ips(&d)
        .into_keys()
        .find(|n| n.starts_with("mockb-canary-"))
        .unwrap();
    assert!(
        d.ok(&["logs", &pod])
            .contains("sample mockb v2 listening on")
    );
}

#[test]
fn a_failing_canary_is_served_by_the_baseline_through_fallback() {
    let d = Daemon::start();
    d.ok(&["apply", "-f", "examples/seed/"]);
    apply_text(
        &d,
        &mockb_canary("            - name: FAIL_RATE\n              value: \"1\"\n"),
    );
    settled(&d, 4);
    let base = {
        let ips = pod_ips(&d);
        format!(
            "-> mocka(version: v1, ip: {})-> mockb(version: v1, ip: {})-> mockc(version: v1, ip: {})",
            ip_of(&ips, "mocka-v1-"),
            ip_of(&ips, "mockb-v1-"),
            ip_of(&ips, "mockc-v1-")
        )
    };
    // The canary pod is ready and in mockb's subsets: requests reach it, fail with 500,
    // and are retried on the baseline.
    eventually(Duration::from_secs(20), || {
        mockb_subsets(&d)
            .iter()
            .any(|s| s == "canary")
            .then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..20 {
        let (status, headers, body) = curl(&d, "canary", &format!("f{i}"));
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, base);
        assert_eq!(
            header(&headers, "x-lanes-fallback"),
            Some("canary->base"),
            "{headers:?}"
        );
        let (status, headers, body) = curl(&d, "base", &format!("g{i}"));
        assert_eq!((status, body.as_str()), (200, base.as_str()));
        assert_eq!(header(&headers, "x-lanes-fallback"), None);
    }
    let bearer = format!("Bearer {}", d.token());
    let (_, _, metrics) = http_get(&d.api, "/metrics", &[("authorization", &bearer)]);
    let retried = metrics
        .lines()
        .find(|l| {
            l.starts_with("lanes_fallbacks_total{")
                && l.contains("service=\"mockb\"")
                && l.contains("reason=\"upstream_status\"")
        })
        .unwrap_or_else(|| panic!("no upstream_status fallback of mockb in:\n{metrics}"));
    let n: f64 = retried.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 20.0, "{retried}");
    // Istio's series, as the canary pod's sidecar reports it: its workload is its
    // Deployment, and the failures are the canary's 500s.
    let failed = metrics
        .lines()
        .find(|l| {
            l.starts_with("istio_requests_total{reporter=\"destination\"")
                && l.contains("destination_workload=\"mockb-canary\"")
                && l.contains("destination_service_name=\"mockb\"")
                && l.contains("response_code=\"500\"")
        })
        .unwrap_or_else(|| panic!("no istio series of mockb-canary's 500s in:\n{metrics}"));
    let n: f64 = failed.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 20.0, "{failed}");
}

#[test]
fn a_killed_pod_restarts_and_scaling_under_load_fails_nothing() {
    let d = Daemon::start();
    d.ok(&["apply", "-f", "examples/seed/"]);
    settled(&d, 3);
    // kill -9 the mockb process.
    let pods: Value =
        serde_json::from_str(&d.ok(&["get", "po", "-l", "app=mockb", "-o", "json"])).unwrap();
    let pod = &pods["items"][0];
    let name = pod["metadata"]["name"].as_str().unwrap().to_string();
    let pid = pod["status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .unwrap()
        .trim_start_matches("pid://")
        .to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .unwrap()
            .success()
    );
    let restarted = eventually(Duration::from_secs(30), || {
        let p: Value = serde_json::from_str(&d.ok(&["get", "po", &name, "-o", "json"])).unwrap();
        let cs = &p["status"]["containerStatuses"][0];
        (cs["restartCount"].as_i64() == Some(1) && cs["ready"] == true)
            .then(|| cs["containerID"].clone())
    });
    assert_ne!(
        restarted.as_str().unwrap().trim_start_matches("pid://"),
        pid
    );
    eventually(Duration::from_secs(20), || {
        (curl(&d, "base", "after-kill").0 == 200).then_some(())
    });

    // Scale mockb 1 → 3 → 1 under a steady load through the gateway.
    let load = SteadyLoad::start(&d.gateway, &["base", "base"], |_, status, body| {
        status == 200 && versions(body) == ["v1", "v1", "v1"]
    });
    d.ok(&[
        "patch",
        "deploy",
        "mockb-v1",
        "--type",
        "merge",
        "-p",
        r#"{"spec": {"replicas": 3}}"#,
    ]);
    settled(&d, 3);
    let ips = pod_ips(&d);
    assert_eq!(ips.keys().filter(|n| n.starts_with("mockb-v1-")).count(), 3);
    std::thread::sleep(Duration::from_secs(1));
    d.ok(&[
        "patch",
        "deploy",
        "mockb-v1",
        "--type",
        "merge",
        "-p",
        r#"{"spec": {"replicas": 1}}"#,
    ]);
    settled(&d, 3);
    eventually(Duration::from_secs(40), || {
        (pod_ips(&d)
            .keys()
            .filter(|n| n.starts_with("mockb-v1-"))
            .count()
            == 1)
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    let (ok, failures) = load.finish();
    assert!(ok > 50, "only {ok} requests");
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
}

#[test]
fn an_unknown_image_leaves_the_pod_in_a_clear_error_and_nothing_else_breaks() {
    let d = Daemon::start();
    d.ok(&["apply", "-f", "examples/seed/"]);
    apply_text(
        &d,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: mystery\n  labels: {app: other}\nspec:\n  containers:\n    - name: c\n      image: ghcr.io/acme/mystery:1.4\n",
    );
    let reason = eventually(Duration::from_secs(20), || {
        let p: Value =
            serde_json::from_str(&d.ok(&["get", "po", "mystery", "-o", "json"])).unwrap();
        p["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
            .as_str()
            .map(str::to_string)
    });
    assert!(
        reason.contains("add it to the [images] table of lanes.toml"),
        "{reason}"
    );
    assert!(reason.contains("\"ghcr.io/acme/mystery\" = ["), "{reason}");
    settled(&d, 3);
    let (status, _, body) = curl_when_routed(&d, "base", "ok");
    assert_eq!(status, 200, "{body}");
}

#[test]
fn stopping_lanes_up_stops_its_pods() {
    let d = Daemon::start();
    d.ok(&["apply", "-f", "examples/seed/"]);
    settled(&d, 3);
    let pods: Value = serde_json::from_str(&d.ok(&["get", "po", "-o", "json"])).unwrap();
    let pids: Vec<String> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            p["status"]["containerStatuses"][0]["containerID"]
                .as_str()
                .unwrap()
                .trim_start_matches("pid://")
                .to_string()
        })
        .collect();
    assert_eq!(pids.len(), 3);
    d.stop();
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "pod process {pid} outlived lanes up"
        );
    }
}

/// The sample's variable to pass on W3C traceparent alone, as a YAML env list item.
const FORWARD_ONLY_TRACEPARENT: &str =
    "            - name: FORWARD_HEADERS\n              value: traceparent\n";

/// The article's v2 -> v1 -> v2 case (mockb has no canary) with applications that pass
/// on only W3C traceparent, as OpenTelemetry-instrumented ones do, and a client that
/// sends no my-request-id: mockb's baseline sidecar finds the lane by the trace id.
#[test]
fn applications_forwarding_only_traceparent_keep_the_canary_lane() {
    let d = Daemon::start();
    d.ok(&["apply", "-f", "examples/seed/00-gateway.yaml"]);
    let apps = std::fs::read_to_string(repo().join("examples/seed/10-apps.yaml")).unwrap();
    let only_traceparent = apps.replace(
        "          env:\n",
        &format!("          env:\n{FORWARD_ONLY_TRACEPARENT}"),
    );
    assert_eq!(only_traceparent.matches("FORWARD_HEADERS").count(), 3);
    apply_text(&d, &only_traceparent);
    d.ok(&["apply", "-f", "examples/seed/20-lanes.yaml"]);
    for (app, upstream) in [("mocka", "http://mockb:8000/"), ("mockc", "")] {
        apply_text(
            &d,
            &canary_deployment(app, upstream, FORWARD_ONLY_TRACEPARENT),
        );
    }
    settled(&d, 5);
    let canary = |i: u32| {
        let parent = format!("00-0af7651916cd43dd8448eb211c80{i:04x}-b7ad6b7169203331-01");
        http_get(
            &d.gateway,
            "/mock",
            &[("x-asm-prefer-tag", "canary"), ("traceparent", &parent)],
        )
    };
    eventually(Duration::from_secs(30), || {
        (versions(&canary(0).2) == ["v2", "v1", "v2"]).then_some(())
    });
    for i in 1..=20 {
        let (status, headers, body) = canary(i);
        assert_eq!(status, 200, "{body}");
        assert_eq!(versions(&body), ["v2", "v1", "v2"], "{body}");
        assert_eq!(header(&headers, "x-lanes-fallback"), Some("canary->base"));
    }
    // The samples did forward traceparent alone: mockb's baseline got no trace id of
    // the gateway's to correlate by.
    let pods = d.ok(&["get", "po", "-l", "app=mockb", "-o", "json"]);
    assert!(pods.contains("FORWARD_HEADERS"), "{pods}");
    // `lanes trace` shows the last request's six hops as one path, each with its lane.
    let tree = d.ok(&["trace", "0af7651916cd43dd8448eb211c800014"]);
    let lines: Vec<&str> = tree.lines().collect();
    assert_eq!(lines.len(), 7, "{tree}");
    assert_eq!(lines[0], "trace 0af7651916cd43dd8448eb211c800014");
    let expect = [
        "└─ gateway → mocka.default lane canary served by canary 200",
        "   └─ inbound pod mocka-canary-",
        "      └─ outbound pod mocka-canary-",
        "         └─ inbound pod mockb-v1-",
        "            └─ outbound pod mockb-v1-",
        "               └─ inbound pod mockc-canary-",
    ];
    for (line, want) in lines[1..].iter().zip(expect) {
        assert!(line.starts_with(want), "{line:?} is not {want:?}…:\n{tree}");
    }
    assert!(
        lines[3].contains("→ mockb.default lane canary served by base (fallback canary->base: lane_lacks_service) 200"),
        "{tree}"
    );
    assert!(
        lines[5].contains("→ mockc.default lane canary served by canary 200"),
        "{tree}"
    );
    assert_eq!(d.ok(&["trace", "--last"]), tree);
    let unknown = d.lanes(&["trace", "0af7651916cd43dd8448eb211c80ffff"]);
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr)
            .contains("no hop of trace 0af7651916cd43dd8448eb211c80ffff"),
        "{unknown:?}"
    );
    // Requests without a traceparent: each trace is found by the trace header's value,
    // a UUID (the trace-id is its bytes) or any other id.
    for (request_id, trace_id) in [
        (
            "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b",
            Some("6f1c2a3b4d5e4f608a7b9c0d1e2f3a4b"),
        ),
        ("order-4711", None),
    ] {
        let (status, _, body) = http_get(
            &d.gateway,
            "/mock",
            &[
                ("x-asm-prefer-tag", "canary"),
                ("my-request-id", request_id),
            ],
        );
        assert_eq!(status, 200, "{body}");
        let tree = d.ok(&["trace", request_id]);
        let lines: Vec<&str> = tree.lines().collect();
        assert_eq!(lines.len(), 7, "{tree}");
        if let Some(id) = trace_id {
            assert_eq!(lines[0], format!("trace {id}"));
        }
        assert!(
            lines[1].starts_with("└─ gateway → mocka.default lane canary"),
            "{tree}"
        );
        assert_eq!(d.ok(&["trace", &lines[0]["trace ".len()..]]), tree);
    }
}
