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

/// `text` as JSON, or null when it is not (an answer that is not the echo server's).
fn json_or_null(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_default()
}

/// The condition `kind` of the first parent of HTTPRoute `name` (in the mesh
/// namespace), once written.
fn condition(d: &Daemon, name: &str, kind: &str) -> Value {
    route_condition(d, ("httproute", NS, name), kind)
}

/// The condition `kind` of the first parent of route `(resource, namespace, name)`,
/// once written.
fn route_condition(d: &Daemon, (resource, ns, name): (&str, &str, &str), kind: &str) -> Value {
    eventually(Duration::from_secs(30), || {
        let route = json(&k_ok(d, &["get", resource, name, "-n", ns, "-o", "json"]));
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
    assert_eq!(accepted["reason"], "Accepted", "{accepted}");

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

/// One request of a conformance case and what the suite's `.go` file expects of it.
struct Expect<'a> {
    /// The Host called, `echo` unless said.
    host: &'a str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    /// 200 unless said.
    status: u16,
    /// The pod name prefix that answers.
    backend: Option<&'static str>,
    /// The path the backend sees, when rewritten.
    seen_path: Option<&'static str>,
    /// Headers the backend sees (values joined by commas).
    seen: &'static [(&'static str, &'static str)],
    /// Headers the backend does not see.
    absent: &'static [&'static str],
    /// Headers of the answer, and headers the answer does not have.
    answer: &'static [(&'static str, &'static str)],
    answer_absent: &'static [&'static str],
    /// Where a redirect sends the caller: the parts the suite checks.
    location: Option<Location>,
}

/// The parts of a redirect's `Location` the suite checks; `None` is not checked.
#[derive(Clone, Copy, Default)]
struct Location {
    scheme: Option<&'static str>,
    host: Option<&'static str>,
    port: Option<&'static str>,
    path: Option<&'static str>,
}

const fn to(path: &'static str, backend: &'static str) -> Expect<'static> {
    Expect {
        host: "echo",
        path,
        headers: &[],
        status: 200,
        backend: Some(backend),
        seen_path: None,
        seen: &[],
        absent: &[],
        answer: &[],
        answer_absent: &[],
        location: None,
    }
}

const fn not_found(path: &'static str) -> Expect<'static> {
    Expect {
        status: 404,
        backend: None,
        ..to(path, "")
    }
}

const fn redirect(path: &'static str, status: u16, location: Location) -> Expect<'static> {
    Expect {
        status,
        backend: None,
        location: Some(location),
        ..to(path, "")
    }
}

/// A call from the pod at `from` through its sidecar to `http://{host}{path}`.
fn call(from: &str, e: &Expect) -> (u16, Vec<(String, String)>, String) {
    let mut headers = vec![("host", e.host)];
    headers.extend(e.headers.iter().copied());
    http_get(
        &format!("{from}:15001"),
        &format!("http://{}{}", e.host, e.path),
        &headers,
    )
}

/// What is wrong with the redirect `got` (a `Location` header), if anything.
fn wrong_location(want: &Location, got: Option<&str>) -> Option<String> {
    let Some(uri) = got.and_then(|l| l.parse::<http::Uri>().ok()) else {
        return Some(format!("Location {got:?} is not an absolute URI"));
    };
    let port = uri.port_u16().map(|p| p.to_string());
    let parts = [
        ("scheme", want.scheme, uri.scheme_str()),
        ("host", want.host, uri.host()),
        ("port", want.port, port.as_deref()),
        ("path", want.path, Some(uri.path())),
    ];
    parts
        .into_iter()
        .find(|(_, want, got)| want.is_some() && want != got)
        .map(|(part, want, got)| format!("Location {uri}: {part} {got:?}, want {want:?}"))
}

/// What is wrong with the answer to `e`, if anything.
fn mismatch(
    e: &Expect,
    (status, answer, body): &(u16, Vec<(String, String)>, String),
) -> Option<String> {
    if *status != e.status {
        return Some(format!(
            "{}{}: status {status}, want {}: {body}",
            e.host, e.path, e.status
        ));
    }
    let header = |name: &str| {
        answer
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    if let Some(want) = &e.location {
        return wrong_location(want, header("location")).map(|why| format!("{}: {why}", e.path));
    }
    // A 404 expected: its status is all there is to check.
    let backend = e.backend?;
    let Ok(echoed) = serde_json::from_str::<Value>(body) else {
        return Some(format!("{}: not an echo answer: {body}", e.path));
    };
    let seen = |name: &str| -> Option<String> {
        let headers = echoed["headers"].as_object()?;
        let (_, v) = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name))?;
        Some(
            v.as_array()?
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(","),
        )
    };
    let pod = echoed["pod"].as_str().unwrap_or_default();
    let checks = [
        (
            pod.starts_with(&format!("{backend}-")),
            format!("answered by {pod}, want {backend}"),
        ),
        (
            e.seen_path.is_none_or(|p| echoed["path"] == p),
            format!(
                "backend saw path {}, want {:?}",
                echoed["path"], e.seen_path
            ),
        ),
        (
            e.seen.iter().all(|(k, v)| seen(k).as_deref() == Some(*v)),
            format!(
                "backend saw headers {}, want {:?}",
                echoed["headers"], e.seen
            ),
        ),
        (
            e.absent.iter().all(|k| seen(k).is_none()),
            format!("backend saw {:?} of {}", e.absent, echoed["headers"]),
        ),
        (
            e.answer.iter().all(|(k, v)| header(k) == Some(*v))
                && e.answer_absent.iter().all(|k| header(k).is_none()),
            format!(
                "answer headers {answer:?}, want {:?} and none of {:?}",
                e.answer, e.answer_absent
            ),
        ),
    ];
    checks
        .into_iter()
        .find(|(ok, _)| !ok)
        .map(|(_, why)| format!("{}{}: {why}", e.host, e.path))
}

/// The requests of the header modifier cases (`httproute-request-header-modifier.go`,
/// which the backend variant shares).
fn header_modifier_cases() -> Vec<Expect<'static>> {
    let header = |path, headers, seen, absent| Expect {
        path,
        headers,
        seen,
        absent,
        ..to(path, "echo-v1")
    };
    vec![
        header(
            "/set",
            &[("Some-Other-Header", "val")],
            &[
                ("Some-Other-Header", "val"),
                ("X-Header-Set", "set-overwrites-values"),
            ],
            &[],
        ),
        header(
            "/set",
            &[
                ("Some-Other-Header", "val"),
                ("X-Header-Set", "some-other-value"),
            ],
            &[
                ("Some-Other-Header", "val"),
                ("X-Header-Set", "set-overwrites-values"),
            ],
            &[],
        ),
        header(
            "/add",
            &[("Some-Other-Header", "val")],
            &[
                ("Some-Other-Header", "val"),
                ("X-Header-Add", "add-appends-values"),
            ],
            &[],
        ),
        header(
            "/add",
            &[
                ("Some-Other-Header", "val"),
                ("X-Header-Add", "some-other-value"),
            ],
            &[
                ("Some-Other-Header", "val"),
                ("X-Header-Add", "some-other-value,add-appends-values"),
            ],
            &[],
        ),
        header(
            "/remove",
            &[("X-Header-Remove", "val")],
            &[],
            &["X-Header-Remove"],
        ),
        header(
            "/multiple",
            &[
                ("X-Header-Set-2", "set-val-2"),
                ("X-Header-Add-2", "add-val-2"),
                ("X-Header-Remove-2", "remove-val-2"),
                ("Another-Header", "another-header-val"),
            ],
            &[
                ("X-Header-Set-1", "header-set-1"),
                ("X-Header-Set-2", "header-set-2"),
                ("X-Header-Add-1", "header-add-1"),
                ("X-Header-Add-2", "add-val-2,header-add-2"),
                ("X-Header-Add-3", "header-add-3"),
                ("Another-Header", "another-header-val"),
            ],
            &["X-Header-Remove-1", "X-Header-Remove-2"],
        ),
        header(
            "/case-insensitivity",
            &[
                ("x-header-set", "original-val-set"),
                ("x-header-add", "original-val-add"),
                ("x-header-remove", "original-val-remove"),
                ("Another-Header", "another-header-val"),
            ],
            &[
                ("X-Header-Set", "header-set"),
                ("X-Header-Add", "original-val-add,header-add"),
                ("Another-Header", "another-header-val"),
            ],
            &["x-header-remove", "X-Header-Remove"],
        ),
    ]
}

/// The redirect cases: the status and the parts of `Location` each `.go` file checks.
fn redirect_cases() -> Vec<(&'static str, Vec<Expect<'static>>)> {
    let path = |path| Location {
        path: Some(path),
        ..Location::default()
    };
    let host = Location {
        host: Some("example.org"),
        ..Location::default()
    };
    let at = |host: Option<&'static str>, path: &'static str| Location {
        host,
        path: Some(path),
        ..Location::default()
    };
    let port = |host| Location {
        host,
        port: Some("8083"),
        ..Location::default()
    };
    let scheme = |host| Location {
        host,
        scheme: Some("https"),
        ..Location::default()
    };
    let org = Some("example.org");
    vec![
        (
            "httproute-303-redirect",
            vec![redirect(
                "/redirect",
                303,
                Location {
                    scheme: Some("http"),
                    host: Some("echo"),
                    ..path("/redirect")
                },
            )],
        ),
        (
            "httproute-307-redirect",
            vec![redirect("/temporary", 307, path("/temporary"))],
        ),
        (
            "httproute-308-redirect",
            vec![redirect("/permanent", 308, path("/permanent"))],
        ),
        (
            "httproute-redirect-host-and-status",
            vec![
                redirect("/hostname-redirect", 302, host),
                redirect("/host-and-status", 301, host),
            ],
        ),
        (
            "httproute-redirect-path",
            vec![
                redirect(
                    "/original-prefix/lemon",
                    302,
                    path("/replacement-prefix/lemon"),
                ),
                redirect("/full/path/original", 302, path("/full-path-replacement")),
                redirect("/path-and-host", 302, at(org, "/replacement-prefix")),
                redirect("/path-and-status", 301, path("/replacement-prefix")),
                redirect("/full-path-and-host", 302, at(org, "/replacement-full")),
                redirect("/full-path-and-status", 301, path("/replacement-full")),
            ],
        ),
        (
            "httproute-redirect-port",
            vec![
                redirect("/port", 302, port(None)),
                redirect("/port-and-host", 302, port(org)),
                redirect("/port-and-status", 301, port(None)),
                redirect("/port-and-host-and-status", 302, port(org)),
            ],
        ),
        (
            "httproute-redirect-scheme",
            vec![
                redirect("/scheme", 302, scheme(None)),
                redirect("/scheme-and-host", 302, scheme(org)),
                redirect("/scheme-and-status", 301, scheme(None)),
                redirect("/scheme-and-host-and-status", 302, scheme(org)),
            ],
        ),
    ]
}

/// The mesh conformance cases that concern HTTP routing, each request as the suite's
/// `.go` file of the same name makes and checks it (transcribed here as data).
/// `echo_v2_pod` is echo-v2's pod address, which `mesh-frontend` calls directly.
fn conformance_cases(echo_v2_pod: &str) -> Vec<(&'static str, Vec<Expect<'_>>)> {
    let rewrite = |path, seen_path| Expect {
        seen_path: Some(seen_path),
        ..to(path, "echo-v1")
    };
    let modify_hs: &[(&str, &str)] = &[
        ("X-Header-Remove", "remove-val"),
        ("X-Header-Add-Append", "append-val-1"),
        ("X-Header-Set", "set-val"),
    ];
    let modified: &[(&str, &str)] = &[
        ("X-Header-Add", "header-val-1"),
        ("X-Header-Add-Append", "append-val-1,header-val-2"),
        ("X-Header-Set", "set-overwrites-values"),
    ];
    // A call to `host` answered by `backend` with (or without) X-Header-Set.
    let set = |host, backend, value: Option<&'static [(&'static str, &'static str)]>| Expect {
        host,
        answer: value.unwrap_or(&[]),
        answer_absent: if value.is_some() {
            &[]
        } else {
            &["X-Header-Set"]
        },
        ..to("/", backend)
    };
    let mut cases = vec![
        (
            "httproute-simple-same-namespace",
            (0..5).map(|_| to("/", "echo-v1")).collect(),
        ),
        (
            "httproute-matching",
            vec![
                to("/", "echo-v1"),
                to("/example", "echo-v1"),
                Expect {
                    headers: &[("Version", "one")],
                    ..to("/", "echo-v1")
                },
                to("/v2", "echo-v2"),
                to("/v2/example", "echo-v2"),
                Expect {
                    headers: &[("Version", "two")],
                    ..to("/", "echo-v2")
                },
                to("/v2/", "echo-v2"),
                to("/v2example", "echo-v1"),
                to("/foo/v2/example", "echo-v1"),
            ],
        ),
        (
            "httproute-query-param-matching",
            vec![
                to("/?animal=whale", "echo-v1"),
                to("/?animal=dolphin", "echo-v2"),
                to("/?animal=whale&otherparam=irrelevant", "echo-v1"),
                to("/?animal=dolphin&color=yellow", "echo-v2"),
                not_found("/?color=blue"),
                not_found("/?animal=dog"),
                not_found("/?animal=whaledolphin"),
                not_found("/"),
                to("/path1?animal=whale", "echo-v1"),
                Expect {
                    headers: &[("version", "one")],
                    ..to("/?animal=whale", "echo-v2")
                },
                to("/path3?animal=shark", "echo-v1"),
                Expect {
                    headers: &[("version", "three")],
                    ..to("/path4?animal=kraken", "echo-v1")
                },
                not_found("/?animal=shark"),
                not_found("/path4?animal=kraken"),
                to("/path5?animal=hydra", "echo-v1"),
            ],
        ),
        ("httproute-request-header-modifier", header_modifier_cases()),
        (
            "httproute-rewrite-path",
            vec![
                rewrite("/prefix/one/two", "/one/two"),
                rewrite("/strip-prefix/three", "/three"),
                rewrite("/strip-prefix", "/"),
                rewrite("/full/one/two", "/one"),
                Expect {
                    headers: modify_hs,
                    seen: modified,
                    absent: &["X-Header-Remove"],
                    ..rewrite("/full/rewrite-path-and-modify-headers/test", "/test")
                },
                Expect {
                    headers: modify_hs,
                    seen: modified,
                    absent: &["X-Header-Remove"],
                    ..rewrite("/prefix/rewrite-path-and-modify-headers/one", "/prefix/one")
                },
            ],
        ),
        (
            "httproute-request-header-modifier-backend",
            header_modifier_cases(),
        ),
        (
            "httproute-named-rule",
            vec![to("/named", "echo-v1"), to("/unnamed", "echo-v2")],
        ),
        (
            "mesh-split",
            vec![to("/v1", "echo-v1"), to("/v2", "echo-v2")],
        ),
        (
            "mesh-ports",
            vec![
                set("echo-v1", "echo-v1", Some(&[("X-Header-Set", "v1")])),
                set("echo-v1:8080", "echo-v1", None),
                set("echo-v2", "echo-v2", Some(&[("X-Header-Set", "v2")])),
                set("echo-v2:8080", "echo-v2", Some(&[("X-Header-Set", "v2")])),
            ],
        ),
        (
            "mesh-frontend",
            vec![
                set("echo-v2", "echo-v2", Some(&[("X-Header-Set", "set")])),
                set(echo_v2_pod, "echo-v2", None),
            ],
        ),
    ];
    cases.extend(redirect_cases());
    cases
}

/// `count` gRPC calls to `target` (a sidecar's outbound listener, or the gateway) for
/// `authority`, by grpcio (`tests/grpc/echo_client.py`): per call, the pod that
/// answered, or the error.
fn grpc_calls(target: &str, authority: &str, count: usize) -> Vec<String> {
    let python = std::env::var("LANES_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(python)
        .arg(repo().join("crates/lanes/tests/grpc/echo_client.py"))
        .args([target, authority, &count.to_string()])
        .output()
        .expect("python for the gRPC client");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Whether `f` holds within 30 s, tried every 200 ms.
fn within_30s(mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if f() {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The mesh conformance cases that concern HTTP routing, each request checked against
/// what the suite's `.go` file of the same name expects (transcribed here as data).
#[test]
fn the_mesh_conformance_cases_route_as_the_suite_expects() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(&dir.path().join("state"), &[]);
    k_ok(&d, &["apply", "-f", &format!("{MESH}/base-manifests.yaml")]);
    let pods = eventually(Duration::from_secs(60), || {
        let pods = json(&k_ok(&d, &["get", "pods", "-A", "-o", "json"]));
        let items = pods["items"].as_array()?.clone();
        let ip = |ns: &str, version: &str| -> Option<String> {
            let p = items.iter().find(|p| {
                p["metadata"]["namespace"] == ns
                    && p["metadata"]["labels"]["version"] == version
                    && p.pointer("/status/conditions")
                        .and_then(Value::as_array)
                        .is_some_and(|cs| {
                            cs.iter()
                                .any(|c| c["type"] == "Ready" && c["status"] == "True")
                        })
            })?;
            Some(p["status"]["podIP"].as_str()?.to_string())
        };
        Some((
            ip(NS, "v1")?,
            ip(NS, "v2")?,
            ip("gateway-conformance-mesh-consumer", "v1")?,
        ))
    });
    let (producer, echo_v2, consumer) = pods;
    let echo_v2_pod = format!("{echo_v2}:8080");
    // Before any route, `echo` is served by both its pods: the baseline the cases change.
    eventually(Duration::from_secs(60), || {
        let answered: Vec<String> = (0..4)
            .filter_map(|_| {
                let (_, _, body) = call(&producer, &to("/", ""));
                Some(json_or_null(&body)["pod"].as_str()?.to_string())
            })
            .collect();
        let by = |v: &str| answered.iter().any(|p| p.starts_with(v));
        (by("echo-v1-") && by("echo-v2-")).then_some(())
    });
    let mut passed = Vec::new();
    for (case, expects) in conformance_cases(&echo_v2_pod) {
        // Before the case's route, its requests do not all answer as it expects: what
        // passes below is the route's doing (and no earlier case's route lingers). The
        // pods of `echo` are taken in turn, so a case whose requests alternate v1 and v2
        // (mesh-split) can match the turn by chance: after a try that does, one more
        // call shifts the turn for the next.
        let wrong = |e: &Expect| mismatch(e, &call(&producer, e));
        let unrouted = within_30s(|| {
            let unrouted = expects.iter().any(|e| wrong(e).is_some());
            if !unrouted {
                call(&producer, &to("/", ""));
            }
            unrouted
        });
        assert!(unrouted, "{case}: answers as expected before its route");
        let file = format!("{MESH}/{case}.yaml");
        k_ok(&d, &["apply", "-f", &file]);
        // Eventually consistent, as the suite's requests are: until every request
        // answers as expected (the route reaching the sidecars), for at most 30 s.
        within_30s(|| expects.iter().all(|e| wrong(e).is_none()));
        let wrong: Vec<String> = expects.iter().filter_map(wrong).collect();
        assert!(wrong.is_empty(), "{case}: {wrong:#?}");
        passed.push(format!("{case} ({} requests)", expects.len()));
        k_ok(&d, &["delete", "-f", &file]);
    }

    // A consumer route changes only its own namespace's calls.
    k_ok(
        &d,
        &["apply", "-f", &format!("{MESH}/mesh-consumer-route.yaml")],
    );
    let host = "echo-v1.gateway-conformance-mesh";
    let set = |from: &str| {
        let (status, headers, _) = call(
            from,
            &Expect {
                host,
                ..to("/", "echo-v1")
            },
        );
        assert_eq!(status, 200);
        headers
            .into_iter()
            .find(|(k, _)| k == "x-header-set")
            .map(|(_, v)| v)
    };
    eventually(Duration::from_secs(30), || {
        set(&consumer).filter(|v| v == "set")
    });
    assert_eq!(set(&producer), None, "not from the consumer's namespace");
    passed.push("mesh-consumer-route (2 requests)".into());
    k_ok(
        &d,
        &["delete", "-f", &format!("{MESH}/mesh-consumer-route.yaml")],
    );

    // Weights: 500 requests split 70/30, within the suite's tolerance of 5 points.
    k_ok(
        &d,
        &["apply", "-f", &format!("{MESH}/httproute-weight.yaml")],
    );
    let v2 = |body: &str| {
        json(body)["pod"]
            .as_str()
            .unwrap_or_default()
            .starts_with("echo-v2-")
    };
    // Calls to `echo` look the same before the route reaches the sidecars (its pods
    // taken in turn) as after: a marker route applied after it, on echo-v1, shows when
    // the sidecars have both (the route table follows the store's order).
    let marker = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: marker, namespace: gateway-conformance-mesh}\nspec:\n  parentRefs: [{group: '', kind: Service, name: echo-v1, port: 80}]\n  rules:\n  - filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: X-Marker, value: 'on'}]}}]\n    backendRefs: [{name: echo-v1, port: 80}]\n";
    let marker_path = dir.path().join("marker.yaml");
    std::fs::write(&marker_path, marker).unwrap();
    k_ok(&d, &["apply", "-f", marker_path.to_str().unwrap()]);
    eventually(Duration::from_secs(30), || {
        let (_, headers, _) = call(
            &producer,
            &Expect {
                host: "echo-v1",
                ..to("/", "echo-v1")
            },
        );
        headers
            .iter()
            .any(|(k, v)| k == "x-marker" && v == "on")
            .then_some(())
    });
    // As the suite does: up to 10 distributions of 500 requests, one of which must be
    // within 5 points of 70/30 (a split that is wrong misses every time; a right one
    // misses one in ~70 by chance).
    let mut shares = Vec::new();
    for _ in 0..10 {
        let v2s = (0..500)
            .filter(|_| v2(&call(&producer, &to("/", "")).2))
            .count();
        shares.push(v2s as f64 / 500.0);
        if (shares[shares.len() - 1] - 0.3).abs() <= 0.05 {
            break;
        }
    }
    let share = shares[shares.len() - 1];
    println!(
        "httproute-weight: echo-v2 took {:?} of 500 requests per try (want 0.30 +/- 0.05)",
        shares
    );
    assert!((share - 0.3).abs() <= 0.05, "echo-v2 took {shares:?}");
    passed.push(format!(
        "httproute-weight (500 requests, echo-v2 {:.1}%, try {})",
        share * 100.0,
        shares.len()
    ));
    k_ok(
        &d,
        &["delete", "-f", &format!("{MESH}/httproute-weight.yaml")],
    );

    // gRPC: grpcroute-weight's 70/30 split of calls to echo:7070, made by grpcio (a
    // real gRPC client) through the sidecar, within the same tolerance.
    // Before the route, the calls reach both pods' gRPC port (taken in turn).
    let before = grpc_calls(&format!("{producer}:15001"), "echo:7070", 20);
    let by = |v: &str| before.iter().filter(|h| h.starts_with(v)).count();
    assert!(by("echo-v1-") >= 5 && by("echo-v2-") >= 5, "{before:?}");
    k_ok(
        &d,
        &["apply", "-f", &format!("{MESH}/grpcroute-weight.yaml")],
    );
    let mut shares = Vec::new();
    for _ in 0..10 {
        let answered = grpc_calls(&format!("{producer}:15001"), "echo:7070", 500);
        let errors: Vec<&String> = answered.iter().filter(|h| h.starts_with("error")).collect();
        assert!(errors.is_empty(), "{:?}", &errors[..errors.len().min(3)]);
        let v2s = answered
            .iter()
            .filter(|h| h.starts_with("echo-v2-"))
            .count();
        shares.push(v2s as f64 / 500.0);
        if (shares[shares.len() - 1] - 0.3).abs() <= 0.05 {
            break;
        }
    }
    let share = shares[shares.len() - 1];
    println!("grpcroute-weight: echo-v2 took {shares:?} of 500 calls per try");
    assert!((share - 0.3).abs() <= 0.05, "echo-v2 took {shares:?}");
    let grpc = ("grpcroute", NS, "mesh-grpc-weighted-backends");
    let accepted = route_condition(&d, grpc, "Accepted");
    assert_eq!(accepted["status"], "True", "{accepted}");
    passed.push(format!(
        "grpcroute-weight (500 calls, echo-v2 {:.1}%, try {})",
        share * 100.0,
        shares.len()
    ));
    k_ok(
        &d,
        &["delete", "-f", &format!("{MESH}/grpcroute-weight.yaml")],
    );

    // A backend that does not exist routes nothing there: calls that pick it get a 500.
    let missing = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: missing-backend, namespace: gateway-conformance-mesh}\nspec:\n  parentRefs: [{group: '', kind: Service, name: echo-v2, port: 80}]\n  rules:\n  - backendRefs: [{name: echo-v9, port: 80}]\n";
    let path = dir.path().join("missing.yaml");
    std::fs::write(&path, missing).unwrap();
    k_ok(&d, &["apply", "-f", path.to_str().unwrap()]);
    let (status, _, body) = eventually(Duration::from_secs(30), || {
        let answer = call(
            &producer,
            &Expect {
                host: "echo-v2",
                ..to("/", "")
            },
        );
        (answer.0 == 500).then_some(answer)
    });
    assert!(body.contains("echo-v9"), "{status}: {body}");
    println!("passed: {passed:#?}");
    d.stop();
}

/// A Gateway, and routes on it from two namespaces: one its listener takes for the
/// seed's chain (its filter naming the lane), one for the conformance echo server, one
/// a listener refuses.
const ON_GATEWAY: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: lanes-gw, namespace: default}
spec:
  gatewayClassName: lanes
  listeners:
  - {name: web, port: 80, protocol: HTTP, hostname: "*.example.com", allowedRoutes: {namespaces: {from: All}}}
  - {name: own, port: 8080, protocol: HTTP}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop, namespace: default}
spec:
  parentRefs: [{name: lanes-gw, sectionName: web}]
  hostnames: [shop.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /mock}}]
    filters:
    - {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-asm-prefer-tag, value: base}]}}
    - {type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: X-Route, value: shop}]}}
    backendRefs: [{name: mocka, port: 8000}]
  - matches: [{path: {type: PathPrefix, value: /old}}]
    filters:
    - {type: RequestRedirect, requestRedirect: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /mock}, statusCode: 301}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo, namespace: gateway-conformance-mesh}
spec:
  parentRefs: [{name: lanes-gw, namespace: default}]
  hostnames: [echo.example.com, echo.other.org]
  rules:
  - backendRefs: [{name: echo-v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /v2}}]
    filters:
    - {type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}
    backendRefs: [{name: echo-v2, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: echo-grpc, namespace: gateway-conformance-mesh}
spec:
  parentRefs: [{name: lanes-gw, namespace: default}]
  hostnames: [grpc.example.com]
  rules:
  - matches: [{method: {service: proto.EchoTestService}}]
    backendRefs: [{name: echo-v2, port: 7070}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: refused, namespace: gateway-conformance-mesh}
spec:
  parentRefs: [{name: lanes-gw, namespace: default, sectionName: own}]
  hostnames: [refused.example.com]
  rules:
  - backendRefs: [{name: echo-v1, port: 8080}]
"#;

/// Routes attached to a Gateway are served by Lanes' gateway, ahead of the lane
/// groups' ingress, with Lanes' lanes chosen within the backend; their status says which
/// listener took them, or why none did.
#[test]
fn routes_on_a_gateway_are_served_by_lanes_gateway_within_the_lanes() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(&dir.path().join("state"), &[]);
    k_ok(&d, &["apply", "-f", "examples/seed/"]);
    k_ok(&d, &["apply", "-f", &format!("{MESH}/base-manifests.yaml")]);
    let path = dir.path().join("on-gateway.yaml");
    std::fs::write(&path, ON_GATEWAY).unwrap();
    k_ok(&d, &["apply", "-f", path.to_str().unwrap()]);
    let get = |host: &str, path: &str, headers: &[(&str, &str)]| {
        let mut all = vec![("host", host)];
        all.extend_from_slice(headers);
        http_get(&d.gateway, path, &all)
    };
    let header = |answer: &[(String, String)], name: &str| {
        answer
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };

    // The seed's chain, in the lane the route's filter names: base, every hop.
    let (_, answer, body) = eventually(Duration::from_secs(60), || {
        let got = get("shop.example.com", "/mock", &[]);
        (got.0 == 200 && body_is_base_chain(&got.2)).then_some(got)
    });
    assert_eq!(
        header(&answer, "x-route").as_deref(),
        Some("shop"),
        "{body}"
    );
    // A redirect rule answers at the gateway.
    let (status, answer, _) = get("shop.example.com", "/old/x", &[]);
    assert_eq!(status, 301);
    assert_eq!(
        header(&answer, "location").as_deref(),
        Some("http://shop.example.com/mock/x")
    );
    // A host no route on the Gateway takes is left to the lane ingress (the seed's).
    let (status, answer, body) = get(
        "other.example.com",
        "/mock",
        &[("x-asm-prefer-tag", "base")],
    );
    assert_eq!(status, 200, "{body}");
    assert!(body_is_base_chain(&body), "{body}");
    assert_eq!(header(&answer, "x-route"), None);

    // A route from another namespace, on the listener that allows it: host names
    // narrowed to the listener's (echo.other.org is not one), rules and filters run.
    let echoed = |host: &str, path: &str| {
        let (status, _, body) = get(host, path, &[]);
        (status, json_or_null(&body))
    };
    let (status, v1) = eventually(Duration::from_secs(30), || {
        let got = echoed("echo.example.com", "/x");
        (got.0 == 200).then_some(got)
    });
    assert_eq!(status, 200);
    assert!(v1["pod"].as_str().unwrap().starts_with("echo-v1-"), "{v1}");
    // echo-v2's pod starts on its own and may turn ready after echo-v1's.
    let (status, v2) = eventually(Duration::from_secs(30), || {
        let got = echoed("echo.example.com", "/v2/y");
        (got.0 == 200).then_some(got)
    });
    assert_eq!(status, 200);
    assert!(v2["pod"].as_str().unwrap().starts_with("echo-v2-"), "{v2}");
    assert_eq!(v2["path"], "/y");
    let (status, _) = echoed("echo.other.org", "/x");
    assert_eq!(
        status, 404,
        "echo.other.org is no host name of the listener"
    );
    let (status, _) = echoed("refused.example.com", "/x");
    assert_eq!(status, 404, "the route no listener takes routes nothing");

    // A GRPCRoute on the Gateway: gRPC calls (grpcio) for its host name go to echo-v2.
    let answered = eventually(Duration::from_secs(30), || {
        let gateway = d.gateway.trim_start_matches("http://");
        let answered = grpc_calls(gateway, "grpc.example.com", 4);
        answered
            .iter()
            .all(|h| h.starts_with("echo-v2-"))
            .then_some(answered)
    });
    assert_eq!(answered.len(), 4);

    // Status: the listener that took each route, or why none did.
    let accepted = |ns, name| route_condition(&d, ("httproute", ns, name), "Accepted");
    let shop = accepted("default", "shop");
    assert_eq!(
        (shop["status"].as_str(), shop["reason"].as_str()),
        (Some("True"), Some("Accepted"))
    );
    assert_eq!(shop["message"], "routed by Lanes' gateway");
    let refused = accepted(NS, "refused");
    assert_eq!(
        (refused["status"].as_str(), refused["reason"].as_str()),
        (Some("False"), Some("NotAllowedByListeners"))
    );
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("namespace default only"),
        "{refused}"
    );
    // The Gateway's status: programmed, where it is reached, the routes each listener
    // took (web: shop, echo and echo-grpc; own: none from another namespace).
    let attached = eventually(Duration::from_secs(30), || {
        // `gateway` alone is Istio's here, as on a cluster with both: the full name.
        let gw = json(&k_ok(
            &d,
            &[
                "get",
                "gateways.gateway.networking.k8s.io",
                "lanes-gw",
                "-o",
                "json",
            ],
        ));
        let counts: Vec<u64> = gw
            .pointer("/status/listeners")?
            .as_array()?
            .iter()
            .filter_map(|l| l["attachedRoutes"].as_u64())
            .collect();
        (counts == [3, 0]).then_some(gw)
    });
    assert_eq!(attached["status"]["addresses"][0]["value"], "127.0.0.1");
    let table = k_ok(&d, &["get", "gtw", "lanes-gw"]);
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        &row[..4],
        ["lanes-gw", "lanes", "127.0.0.1", "True"],
        "{table}"
    );
    d.stop();
}

/// Whether `body` is the seed's chain answering in the base lane: three hops, v1 each.
fn body_is_base_chain(body: &str) -> bool {
    body.matches("version: v1").count() == 3 && body.contains("-> mockc")
}
