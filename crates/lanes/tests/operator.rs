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

#[test]
fn the_operator_binary_runs_against_an_api_server_and_stops_cleanly_on_sigterm() {
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
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: mock\n  cluster:\n    server: http://{addr}\n\
             users:\n- name: test\n  user:\n    token: test-token\ncontexts:\n- name: mock\n  context:\n    cluster: mock\n    user: test\n    namespace: default\n\
             current-context: mock\n"
        ),
    )
    .unwrap();
    // The arguments deploy/operator.yaml passes, with a free metrics port.
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
        .env("KUBECONFIG", &kubeconfig)
        .env("POD_NAME", "lanes-operator-e2e")
        .env("POD_NAMESPACE", "lanes-system")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Structured logs: one JSON object per line; the first says where metrics listen.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let metrics = eventually(Duration::from_secs(30), || {
        let line = rx.recv_timeout(Duration::from_millis(100)).ok()?;
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        lines.push(v.clone());
        (v["message"] == "metrics and health listening")
            .then(|| v["addr"].as_str().unwrap().to_string())
    });
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
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let code = eventually(Duration::from_secs(20), || child.try_wait().unwrap());
    assert!(code.success(), "{code:?}");
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
