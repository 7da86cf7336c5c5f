//! `lanes operator`, the real binary, against a mocked Kubernetes API server over
//! loopback HTTP (through a kubeconfig): it takes the Lease, generates the article's
//! objects, serves metrics and health, logs JSON, and on SIGTERM stops and gives the
//! Lease up.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../../lanes-operator/tests/common/fake.rs"]
mod fake;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{bin, eventually, http_get, repo};
use serde_json::{Value, json};

const LEASE: (&str, &str, &str, &str) = (
    "coordination.k8s.io/v1",
    "Lease",
    "lanes-system",
    "lanes-operator",
);

fn seed_cluster(fake: &fake::FakeApi) {
    let loaded = lanes_model::load_paths(&[repo().join("examples/seed")]).unwrap();
    let mut ip = 10;
    for l in loaded {
        let v = l.object.raw;
        if v["kind"] == "Deployment" {
            let name = v["metadata"]["name"].as_str().unwrap();
            for i in 0..v["spec"]["replicas"].as_i64().unwrap_or(1) {
                fake.put(json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": format!("{name}-{i}"), "namespace": "default",
                                 "labels": v["spec"]["template"]["metadata"]["labels"]},
                    "spec": v["spec"]["template"]["spec"],
                    "status": {"podIP": format!("10.0.0.{}", ip + i),
                               "conditions": [{"type": "Ready", "status": "True"}]},
                }));
            }
            ip += 10;
        }
        fake.put(v);
    }
}

/// A mocked API server on loopback HTTP (served by the runtime returned), seeded with
/// the article's objects, and a kubeconfig naming it (in `dir`).
fn mocked_cluster(
    dir: &std::path::Path,
) -> (tokio::runtime::Runtime, fake::FakeApi, std::path::PathBuf) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (fake, addr) = fake::FakeApi::on_loopback(&rt);
    seed_cluster(&fake);
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, fake::kubeconfig(addr)).unwrap();
    (rt, fake, kubeconfig)
}

/// `lanes operator` with the arguments deploy/operator.yaml passes (free ports) and
/// `extra`, against `kubeconfig`: the child and its JSON log lines.
fn start_operator(
    kubeconfig: &std::path::Path,
    extra: &[&str],
) -> (std::process::Child, std::sync::mpsc::Receiver<Value>) {
    let mut child = Command::new(bin())
        .args([
            "operator",
            "--flavor",
            "asm",
            "--metrics-addr",
            "127.0.0.1:0",
            "--lease-seconds",
            "3",
        ])
        .args(extra)
        .env("KUBECONFIG", kubeconfig)
        .env("POD_NAME", "lanes-operator-e2e")
        .env("POD_NAMESPACE", "lanes-system")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Structured logs: one JSON object per line.
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
            let _ = tx.send(v);
        }
    });
    (child, rx)
}

/// SIGTERM, then a clean exit within 20 s.
fn stop_cleanly(child: &mut std::process::Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let code = eventually(Duration::from_secs(20), || child.try_wait().unwrap());
    assert!(code.success(), "{code:?}");
}

/// Waits for the log line with `message`; returns its `addr` field and the lines read.
fn listening(rx: &std::sync::mpsc::Receiver<Value>, message: &str) -> (String, Vec<Value>) {
    let mut lines = Vec::new();
    let addr = eventually(Duration::from_secs(30), || {
        let v = rx.recv_timeout(Duration::from_millis(100)).ok()?;
        lines.push(v.clone());
        (v["message"] == message).then(|| v["addr"].as_str().unwrap().to_string())
    });
    (addr, lines)
}

#[test]
fn the_operator_binary_runs_against_an_api_server_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (_rt, fake, kubeconfig) = mocked_cluster(dir.path());
    let (mut child, rx) = start_operator(&kubeconfig, &[]);
    // The first line says where metrics listen.
    let (metrics, lines) = listening(&rx, "metrics and health listening");
    assert_eq!(lines[0]["level"], "INFO", "{:?}", lines[0]);

    // It leads and reconciles: the article's 8 objects appear.
    eventually(Duration::from_secs(30), || {
        let n = fake
            .list("networking.istio.io/v1alpha3", "VirtualService")
            .len()
            + fake
                .list("networking.istio.io/v1alpha3", "DestinationRule")
                .len();
        (n == 8).then_some(())
    });
    let lease = fake.get(LEASE.0, LEASE.1, LEASE.2, LEASE.3).unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "lanes-operator-e2e");
    // The round's gauges are set when it ends, after its last write (the lane groups'
    // status): wait for the round, then read them.
    eventually(Duration::from_secs(30), || {
        let (_, _, body) = http_get(&metrics, "/metrics", &[]);
        body.contains("lanes_operator_reconciles_total{controller=\"lanes\",result=\"ok\"}")
            .then_some(())
    });
    let (status, _, body) = http_get(&metrics, "/metrics", &[]);
    assert_eq!(status, 200);
    assert!(
        body.lines().any(|l| l == "lanes_operator_leader 1"),
        "{body}"
    );
    assert!(
        body.lines()
            .any(|l| l == "lanes_operator_generated_objects 8"),
        "{body}"
    );
    assert_eq!(http_get(&metrics, "/readyz", &[]).0, 200);
    assert_eq!(http_get(&metrics, "/healthz", &[]).0, 200);

    // SIGTERM: a clean exit, the Lease given up for the next replica.
    stop_cleanly(&mut child);
    let lease = fake.get(LEASE.0, LEASE.1, LEASE.2, LEASE.3).unwrap();
    assert!(lease["spec"].get("holderIdentity").is_none(), "{lease}");
}

#[test]
fn the_operator_says_clearly_when_there_is_no_cluster_to_talk_to() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args([
            "operator",
            "--metrics-addr",
            "127.0.0.1:0",
            "--log-format",
            "text",
        ])
        .env("KUBECONFIG", dir.path().join("missing"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env("HOME", dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot configure a Kubernetes client"),
        "{err}"
    );
}

/// A self-signed serving certificate for 127.0.0.1, as `tls.crt`/`tls.key` in `dir`.
fn webhook_cert(dir: &std::path::Path) {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.join("tls.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), key.serialize_pem()).unwrap();
}

/// The AdmissionReview the API server sends for an update of `old` to `new`.
fn review(old: &Value, new: &Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "name": new["metadata"]["name"], "namespace": "default",
            "operation": "UPDATE",
            "userInfo": {"username": "admin"},
            "object": new, "oldObject": old,
            "dryRun": false,
        }
    })
}

/// POSTs `body` to the webhook over TLS (curl, trusting `ca`): the answer.
fn post_review(addr: &str, ca: &std::path::Path, body: &Value) -> Value {
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--cacert"])
        .arg(ca)
        .args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            "@-",
        ])
        .arg(format!("https://{addr}{}", lanes_operator::webhook::PATH))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .unwrap()
                .write_all(body.to_string().as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success(), "curl failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The patch of an answer, applied to `object`.
fn patched(answer: &Value, object: &Value) -> Value {
    let response = &answer["response"];
    let bytes: Vec<u8> = match &response["patch"] {
        Value::Array(b) => b.iter().map(|x| x.as_u64().unwrap() as u8).collect(),
        Value::Null => return object.clone(),
        other => panic!("unexpected patch encoding {other}"),
    };
    assert_eq!(response["patchType"], "JSONPatch");
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
    let mut out = object.clone();
    json_patch::patch(&mut out, &patch).unwrap();
    out
}

/// The webhook, served by the binary over TLS, answers a template change under the
/// seed's Rollout with the patch the in-process admission of `lanes up` makes (paused,
/// release marked), and lets other updates through untouched.
#[test]
fn the_webhook_over_tls_patches_as_the_in_process_admission_does() {
    let dir = tempfile::tempdir().unwrap();
    let (_rt, fake, kubeconfig) = mocked_cluster(dir.path());
    webhook_cert(dir.path());
    let (mut child, rx) = start_operator(
        &kubeconfig,
        &[
            "--webhook-cert-dir",
            dir.path().to_str().unwrap(),
            "--webhook-addr",
            "127.0.0.1:0",
        ],
    );
    let (addr, _) = listening(&rx, "admission webhook listening (TLS)");
    let old = fake
        .get("apps/v1", "Deployment", "default", "mocka-v1")
        .unwrap();
    let mut new = old.clone();
    new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("mocka:2.0");
    // The in-process admission's result, for the seed's Rollouts.
    let rollouts: Vec<lanes_model::rollout::Rollout> = fake
        .list("rollouts.kruise.io/v1beta1", "Rollout")
        .into_iter()
        .map(|r| serde_json::from_value(r).unwrap())
        .collect();
    let mut expected = new.clone();
    let managing = lanes_rollout::admission::managing(&rollouts, "default", "mocka-v1");
    assert_eq!(managing, Some("rollouts-mocka"));
    lanes_rollout::admission::admit_deployment(Some(&old), &mut expected, managing);
    assert_eq!(expected["spec"]["paused"], true);
    // The webhook's cache of Rollouts fills from a watch: ask until it answers so.
    let answer = eventually(Duration::from_secs(20), || {
        let a = post_review(&addr, &dir.path().join("tls.crt"), &review(&old, &new));
        (a["response"]["patch"] != Value::Null).then_some(a)
    });
    assert_eq!(answer["response"]["allowed"], true);
    assert_eq!(
        answer["response"]["uid"],
        "705ab4f5-6393-11e8-b7cc-42010a800002"
    );
    assert_eq!(patched(&answer, &new), expected);
    // An update that keeps the template (a scale) passes untouched.
    let mut scaled = old.clone();
    scaled["spec"]["replicas"] = json!(3);
    let answer = post_review(&addr, &dir.path().join("tls.crt"), &review(&old, &scaled));
    assert_eq!(answer["response"]["allowed"], true);
    assert_eq!(answer["response"]["patch"], Value::Null);
    stop_cleanly(&mut child);
}

/// A Prometheus token file that cannot be read, or holds nothing, stops the operator at
/// start with the flag and the file named.
#[test]
fn a_bad_prometheus_token_file_or_url_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty-token");
    std::fs::write(&empty, "\n").unwrap();
    let missing = dir.path().join("no-such-token");
    for (file, says) in [(&missing, "cannot read"), (&empty, "holds no token")] {
        let out = Command::new(bin())
            .args(["operator", "--prometheus-token-file"])
            .arg(file)
            .env("KUBECONFIG", dir.path().join("no-kubeconfig"))
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--prometheus-token-file")
                && err.contains(says)
                && err.contains(file.to_str().unwrap()),
            "{err}"
        );
    }
    for url in ["ftp://prometheus:9090", "prometheus:9090", "http://"] {
        let out = Command::new(bin())
            .args(["operator", "--mesh-prometheus", url])
            .env("KUBECONFIG", dir.path().join("no-kubeconfig"))
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--mesh-prometheus") && err.contains("is not an http:// or https:// URL"),
            "{err}"
        );
    }
}

/// What the Deployment controller reports once it has caught up with `d` (a paused
/// Deployment keeps its updated count).
fn caught_up(d: &Value) -> Value {
    let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
    let paused = d["spec"]["paused"].as_bool().unwrap_or(false);
    let updated = match d["status"]["updatedReplicas"].as_i64() {
        Some(n) if paused => n,
        _ => replicas,
    };
    json!({
        "observedGeneration": d["metadata"]["generation"].as_i64().unwrap_or(1),
        "replicas": replicas, "updatedReplicas": updated,
        "readyReplicas": replicas, "availableReplicas": replicas,
    })
}

/// A Deployment for `lanes up` named as the cluster's canary `name` of `app`, in the
/// canary lane; its application fails every request when `failing`.
fn canary_for_lanes_up(name: &str, app: &str, upstream: &str, failing: bool) -> String {
    let fail = if failing {
        "            - name: FAIL_RATE\n              value: \"1\"\n"
    } else {
        ""
    };
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: {app}, ASM_TRAFFIC_TAG: canary}}\n  template:\n    metadata:\n      labels: {{app: {app}, ASM_TRAFFIC_TAG: canary, version: v2}}\n    spec:\n      containers:\n        - name: default\n          image: registry.cn-beijing.aliyuncs.com/aliacs-app-catalog/go-http-sample:2.0\n          env:\n            - name: version\n              value: v2\n            - name: app\n              value: {app}\n            - name: upstream_url\n              value: \"{upstream}\"\n{fail}          ports:\n            - containerPort: 8000\n"
    )
}

/// Built-in analysis on a cluster: `lanes operator --mesh-prometheus` against a mocked
/// API server reads the canaries' requests from a real Prometheus scraping Istio's
/// standard series — here from `lanes up`'s data plane, as a cluster's Prometheus
/// scrapes Istio's sidecars. mockb's failing canary is rolled back; mocka's healthy one
/// passes and waits for approval.
#[test]
fn built_in_analysis_on_a_cluster_reads_istios_series_from_a_real_prometheus() {
    let d = common::Daemon::start();
    d.ok(&["apply", "-f", "examples/seed/"]);
    common::settled(&d, 3);
    let p = common::prometheus(&d.api, &d.state.join("token"));
    let dir = tempfile::tempdir().unwrap();
    let (_rt, fake, kubeconfig) = mocked_cluster(dir.path());
    for d in fake.list("apps/v1", "Deployment") {
        let mut d = d.clone();
        d["status"] = caught_up(&d);
        fake.put(d);
    }
    let analysis = json!({"spec": {"strategy": {"canary": {"analysis": {
        "interval": "2s", "failureLimit": 0, "minRequests": 5, "onFailure": "rollback",
        "metrics": [{"name": "success-rate", "successRate": {"min": 0.95}}]}}}}});
    let rollout = |name: &str| fake.get("rollouts.kruise.io/v1beta1", "Rollout", "default", name);
    for name in ["rollouts-mocka", "rollouts-mockb"] {
        fake.merge(
            "rollouts.kruise.io/v1beta1",
            "Rollout",
            "default",
            name,
            &analysis,
            false,
        );
    }
    let (mut child, rx) = start_operator(&kubeconfig, &["--mesh-prometheus", &p.address]);
    eventually(Duration::from_secs(30), || {
        let _ = rx.try_recv();
        ["rollouts-mocka", "rollouts-mockb"]
            .iter()
            .all(|r| rollout(r).is_some_and(|r| r["status"]["phase"] == "Healthy"))
            .then_some(())
    });
    // Both workloads get version 2.0: the operator creates a canary Deployment of each.
    let image = json!({"spec": {"template": {"spec": {"containers": [{"name": "default",
        "image": "registry.cn-beijing.aliyuncs.com/aliacs-app-catalog/go-http-sample:2.0"}]}}}});
    for w in ["mocka-v1", "mockb-v1"] {
        fake.merge("apps/v1", "Deployment", "default", w, &image, false);
    }
    let canary_of = |w: &str| {
        eventually(Duration::from_secs(30), || {
            fake.list("apps/v1", "Deployment")
                .into_iter()
                .find(|d| d["metadata"]["labels"]["rollouts.kruise.io/canary-deployment"] == w)
        })
    };
    let (canary_a, canary_b) = (canary_of("mocka-v1"), canary_of("mockb-v1"));
    // The cluster's Deployment controller: every Deployment catches up (canaries ready).
    for d in fake.list("apps/v1", "Deployment") {
        let mut d = d.clone();
        d["status"] = caught_up(&d);
        fake.put(d);
    }
    // The same canaries run in lanes up's data plane: mocka's is healthy, mockb's fails.
    let name = |d: &Value| d["metadata"]["name"].as_str().unwrap().to_string();
    let (a, b) = (name(&canary_a), name(&canary_b));
    common::apply_text(
        &d,
        &canary_for_lanes_up(&a, "mocka", "http://mockb:8000/", false),
    );
    common::apply_text(
        &d,
        &canary_for_lanes_up(&b, "mockb", "http://mockc:8000/", true),
    );
    common::settled(&d, 5);
    // Canary traffic until both verdicts are in (the analysis interval is 2 s).
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let verdicts = loop {
        let (status, _, body) = http_get(&d.gateway, "/mock", &[("x-asm-prefer-tag", "canary")]);
        assert_eq!(status, 200, "the caller never sees the canary fail: {body}");
        std::thread::sleep(Duration::from_millis(20));
        let (ra, rb) = (
            rollout("rollouts-mocka").unwrap(),
            rollout("rollouts-mockb").unwrap(),
        );
        let rolled_back = rb["status"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("rolled back:"));
        let passed = ra["status"]["analysis"]["measurements"]
            .as_array()
            .is_some_and(|ms| ms.iter().any(|m| m["verdict"] == "Passed"));
        if rolled_back && passed {
            break (ra, rb);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no verdicts within 90 s:\n{}\n{}",
            ra["status"],
            rb["status"]
        );
    };
    let (ra, rb) = verdicts;
    let why = rb["status"]["message"].as_str().unwrap();
    assert!(
        why.contains("success-rate") && why.contains("success rate 0.000"),
        "{why}"
    );
    let workload = fake
        .get("apps/v1", "Deployment", "default", "mockb-v1")
        .unwrap();
    let image = workload["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap();
    assert!(
        image.ends_with(":1.0"),
        "mockb-v1 is back on its stable template: {image}"
    );
    let m = &ra["status"]["analysis"]["measurements"];
    assert!(
        m.as_array()
            .unwrap()
            .iter()
            .all(|m| m["verdict"] != "Failed"),
        "{m}"
    );
    assert_eq!(
        ra["status"]["canaryStatus"]["currentStepState"], "StepPaused",
        "{ra}"
    );
    // What the operator read is Istio's series of the canary workloads.
    let q = format!(
        "/api/v1/query?query=sum(istio_requests_total%7Bdestination_workload%3D%22{a}%22%2Cresponse_code%3D%22200%22%7D)"
    );
    let (_, _, body) = http_get(&p.address, &q, &[]);
    assert!(body.contains("\"value\""), "{body}");
    drop(p);
    stop_cleanly(&mut child);
}

/// A lane release's end-to-end analysis on a cluster: the requests that entered a lane
/// at the gateway, and their latency, read from a real Prometheus scraping Lanes'
/// gateway (here `lanes up`'s).
#[test]
fn a_lanes_entries_and_their_latency_are_read_from_a_real_prometheus() {
    use lanes_operator::analysis::{IstioSeries, LaneEntry, Samples};
    let d = common::Daemon::start();
    d.ok(&["apply", "-f", "examples/seed/"]);
    common::settled(&d, 3);
    let p = common::prometheus(&d.api, &d.state.join("token"));
    let sent = 40;
    for _ in 0..sent {
        let (status, _, body) = http_get(&d.gateway, "/mock", &[("x-asm-prefer-tag", "canary")]);
        assert_eq!(status, 200, "{body}");
    }
    let series = IstioSeries {
        prometheus: lanes_operator::prometheus::Prometheus::new(None),
        address: p.address.clone(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let lane = LaneEntry {
        namespace: "default",
        lane: "canary",
    };
    let sample = eventually(Duration::from_secs(30), || {
        let s = rt.block_on(series.lane_sample(lane)).ok()?;
        (s.total == sent).then_some(s)
    });
    assert_eq!(sample.failures, 0);
    assert_eq!(sample.buckets.iter().sum::<u64>(), sent, "{sample:?}");
    let p99 = lanes_rollout::analysis::p99_ms(&sample.buckets).unwrap();
    assert!(p99 > 0.0 && p99 <= 10_000.0, "{p99}");
    // The base lane's requests are its own.
    let base = rt
        .block_on(series.lane_sample(LaneEntry {
            namespace: "default",
            lane: "base",
        }))
        .unwrap();
    assert_eq!(base.total, 0, "{base:?}");
}
