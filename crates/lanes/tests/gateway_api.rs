//! Gateway API on `lanes up`, through the real kubectl: the mesh conformance manifests
//! of the Gateway API (`crates/lanes-model/tests/data/gateway-api-mesh/`) stored
//! unchanged, with the CRDs' defaults and checks; an invalid match refused at
//! admission; route status as a Gateway API implementation writes it; and
//! `lanes up --flavor gateway-api` writing the seed's lanes as HTTPRoutes and lane
//! Services while its data plane serves the lanes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::kubectl::{k_ok, kubectl};
use common::{Daemon, eventually, http_get, repo};
use serde_json::Value;

const MESH: &str = "crates/lanes-model/tests/data/gateway-api-mesh";
const NS: &str = "gateway-conformance-mesh";

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// The condition `kind` of the first parent of route `name`, once written.
fn condition(d: &Daemon, name: &str, kind: &str) -> Value {
    eventually(Duration::from_secs(30), || {
        let route = json(&k_ok(
            d,
            &["get", "httproute", name, "-n", NS, "-o", "json"],
        ));
        route
            .pointer("/status/parents/0/conditions")?
            .as_array()?
            .iter()
            .find(|c| c["type"] == kind)
            .cloned()
    })
}

#[test]
fn the_mesh_conformance_manifests_are_stored_checked_and_given_status() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(&dir.path().join("state"), &["--flavor", "gateway-api"]);
    k_ok(&d, &["apply", "-f", &format!("{MESH}/base-manifests.yaml")]);
    let mut cases = std::fs::read_dir(repo().join(MESH))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .filter(|p| !p.ends_with("base-manifests.yaml"))
        .collect::<Vec<_>>();
    cases.sort();
    assert_eq!(cases.len(), 20);
    for case in &cases {
        k_ok(&d, &["apply", "-f", case.to_str().unwrap()]);
    }
    // 20 files, two of which write the same route: 18 HTTPRoutes and 1 GRPCRoute.
    let routes = json(&k_ok(&d, &["get", "httproutes", "-A", "-o", "json"]));
    assert_eq!(routes["items"].as_array().unwrap().len(), 18);
    let grpc = json(&k_ok(&d, &["get", "grpcroutes", "-A", "-o", "json"]));
    assert_eq!(grpc["items"].as_array().unwrap().len(), 1);

    // The echo image of the suite runs as the built-in conformance echo server: a call
    // through a pod's sidecar to echo-v1 is answered with what arrived and by whom.
    let pods = eventually(Duration::from_secs(60), || {
        let pods = json(&k_ok(&d, &["get", "pods", "-A", "-o", "json"]));
        let items = pods["items"].as_array()?.clone();
        let ready = items.iter().filter(|p| {
            p.pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
        });
        (ready.count() == 3).then_some(items)
    });
    let caller = pods[0]["status"]["podIP"].as_str().unwrap();
    let (status, _, body) = http_get(
        &format!("{caller}:15001"),
        "http://echo-v1.gateway-conformance-mesh:8080/v2/x?q=1",
        &[("version", "two")],
    );
    assert_eq!(status, 200, "{body}");
    let echoed = json(&body);
    assert_eq!(echoed["path"], "/v2/x?q=1");
    assert_eq!(echoed["namespace"], NS);
    assert!(
        echoed["pod"].as_str().unwrap().starts_with("echo-v1-"),
        "{echoed}"
    );
    assert_eq!(echoed["headers"]["Version"][0], "two");

    // Stored as an API server with the CRDs stores them: defaults filled in.
    let matching = json(&k_ok(
        &d,
        &["get", "httproute", "mesh-matching", "-n", NS, "-o", "json"],
    ));
    let backend = &matching["spec"]["rules"][0]["backendRefs"][0];
    assert_eq!(
        (backend["group"].as_str(), backend["kind"].as_str()),
        (Some(""), Some("Service"))
    );
    assert_eq!(backend["weight"], 1);
    assert_eq!(
        matching["spec"]["rules"][0]["matches"][1]["headers"][0]["type"],
        "Exact"
    );

    // Every backend of the weight case resolves; its parent Service exists.
    let resolved = condition(&d, "mesh-weighted-backends", "ResolvedRefs");
    assert_eq!(
        (resolved["status"].as_str(), resolved["reason"].as_str()),
        (Some("True"), Some("ResolvedRefs"))
    );
    let accepted = condition(&d, "mesh-weighted-backends", "Accepted");
    assert_eq!(accepted["reason"], "Pending", "{accepted}");

    // A backend that does not exist: ResolvedRefs False, naming it.
    let missing = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: missing-backend, namespace: gateway-conformance-mesh}\nspec:\n  parentRefs: [{group: '', kind: Service, name: echo, port: 80}]\n  rules:\n  - backendRefs: [{name: echo-v9, port: 80}]\n";
    let path = dir.path().join("missing.yaml");
    std::fs::write(&path, missing).unwrap();
    k_ok(&d, &["apply", "-f", path.to_str().unwrap()]);
    let resolved = condition(&d, "missing-backend", "ResolvedRefs");
    assert_eq!(
        (resolved["status"].as_str(), resolved["reason"].as_str()),
        (Some("False"), Some("BackendNotFound"))
    );
    assert!(
        resolved["message"]
            .as_str()
            .unwrap()
            .contains("echo-v9 not found"),
        "{resolved}"
    );

    // An invalid match is refused at admission, by the CRD's own rule, and not stored.
    let bad = missing
        .replace("missing-backend", "bad-match")
        .replace("  - backendRefs: [{name: echo-v9, port: 80}]", "  - matches: [{path: {type: Exact, value: no-slash}}]\n    backendRefs: [{name: echo-v1, port: 80}]");
    std::fs::write(&path, bad).unwrap();
    let out = kubectl(&d, &["apply", "-f", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("spec.rules[0].matches[0].path") && err.contains("must be an absolute path"),
        "{err}"
    );
    assert!(
        !kubectl(&d, &["get", "httproute", "bad-match", "-n", NS])
            .status
            .success()
    );
    d.stop();
}

#[test]
fn the_gateway_api_flavor_writes_the_seeds_lanes_as_httproutes_and_lane_services() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(&dir.path().join("state"), &["--flavor", "gateway-api"]);
    k_ok(&d, &["apply", "-f", "examples/seed/"]);
    let names = eventually(Duration::from_secs(60), || {
        let routes = json(&k_ok(&d, &["get", "httproutes", "-o", "json"]));
        let names: Vec<String> = routes["items"]
            .as_array()?
            .iter()
            .filter_map(|r| r["metadata"]["name"].as_str().map(str::to_string))
            .collect();
        (names.len() == 5).then_some(names)
    });
    assert!(
        names.contains(&"trafficlabel-route-rollout-mocka-8000".to_string()),
        "{names:?}"
    );
    let services = k_ok(
        &d,
        &["get", "services", "-l", "asm-system=true", "-o", "name"],
    );
    assert_eq!(
        services.lines().collect::<Vec<_>>(),
        [
            "service/mocka-base",
            "service/mockb-base",
            "service/mockc-base"
        ]
    );
    // The lanes are served all the same: the whole chain answers in the base lane.
    let body = eventually(Duration::from_secs(60), || {
        let (status, _, body) = http_get(&d.gateway, "/mock", &[("x-asm-prefer-tag", "base")]);
        (status == 200 && body.matches("version: v1").count() == 3).then_some(body)
    });
    assert!(body.contains("-> mockc"), "{body}");
    d.stop();
}
