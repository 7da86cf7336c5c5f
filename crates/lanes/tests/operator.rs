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
    let (fake, addr) = rt.block_on(async {
        let (fake, _client) = fake::FakeApi::start();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = fake.clone();
        tokio::spawn(async move { server.serve_http(listener).await });
        (fake, addr)
    });
    seed_cluster(&fake);
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: mock\n  cluster:\n    server: http://{addr}\n\
             users:\n- name: test\n  user:\n    token: test-token\ncontexts:\n- name: mock\n  context:\n    cluster: mock\n    user: test\n    namespace: default\n\
             current-context: mock\n"
        ),
    )
    .unwrap();
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
fn a_bad_prometheus_token_file_is_refused_naming_it() {
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
}
