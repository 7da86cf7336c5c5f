//! `lanes up` with the CLI: apply, get, patch, restart, concurrency, all-or-nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use lanes_model::Kind;
use serde_json::{Value, json};

#[test]
fn apply_seed_then_get_equals_render_and_reapply_is_unchanged() {
    let d = Daemon::start();
    let first = d.ok(&["apply", "-f", "examples/seed/"]);
    assert_eq!(first.lines().count(), 13, "{first}");
    assert!(first.lines().all(|l| l.ends_with(" created")), "{first}");
    let second = d.ok(&["apply", "-f", "examples/seed/"]);
    assert_eq!(second.lines().count(), 13);
    assert!(
        second.lines().all(|l| l.ends_with(" unchanged")),
        "{second}"
    );

    let rendered = objects(&d.ok(&["render", "-f", "examples/seed/"]));
    let got = eventually(Duration::from_secs(10), || {
        let got = objects(&d.ok(&["get", "vs,dr", "-n", "istio-system", "-o", "yaml"]));
        (got.len() == 8).then_some(got)
    });
    // What `render` shows, plus the owner reference to the lane group that the
    // controller adds (render has no group uid to name).
    let got: Vec<Value> = got
        .into_iter()
        .map(|mut o| {
            let owners = o["metadata"]
                .as_object_mut()
                .and_then(|m| m.remove("ownerReferences"));
            assert_eq!(owners.unwrap()[0]["name"], "rollout", "{o}");
            o
        })
        .collect();
    assert_eq!(got, rendered);

    // A change is `configured`; get by name, json, selectors, all namespaces.
    let dir = tempfile::tempdir().unwrap();
    let apps = std::fs::read_to_string(repo().join("examples/seed/10-apps.yaml"))
        .unwrap()
        .replace(
            "replicas: 1\n  selector:\n    matchLabels:\n      app: mockc",
            "replicas: 2\n  selector:\n    matchLabels:\n      app: mockc",
        );
    std::fs::write(dir.path().join("apps.yaml"), apps).unwrap();
    let out = d.ok(&[
        "apply",
        "-f",
        dir.path().join("apps.yaml").to_str().unwrap(),
    ]);
    assert!(out.contains("deployment/mockc-v1 configured"), "{out}");
    assert!(out.contains("deployment/mocka-v1 unchanged"), "{out}");
    let v: Value =
        serde_json::from_str(&d.ok(&["get", "deploy", "mockc-v1", "-o", "json"])).unwrap();
    assert_eq!(v["spec"]["replicas"], 2);
    assert_eq!(v["metadata"]["generation"], 2);
    let names = d.ok(&["get", "svc", "-l", "app in (mocka,mockb)", "-o", "name"]);
    assert_eq!(names, "service/mocka\nservice/mockb\n");
    let all = d.ok(&["get", "deployments", "-A"]);
    assert!(all.starts_with("NAMESPACE"), "{all}");
    let lanes = d.ok(&["get", "asmswimlane"]);
    assert!(
        lanes.contains("base") && lanes.contains("canary"),
        "{lanes}"
    );
    let described = d.ok(&["describe", "rollout", "rollouts-mocka"]);
    assert!(described.contains("workloadRef"), "{described}");

    // The article's patch, as written (strategic merge: containers merged by name).
    d.ok(&[
        "patch",
        "deployment",
        "mocka-v1",
        "-p",
        r#"{"spec": {"template": {"spec": {"containers": [{"name": "default", "image": "registry.cn-beijing.aliyuncs.com/aliacs-app-catalog/go-http-sample:2.0"}]}}}}"#,
    ]);
    let v: Value =
        serde_json::from_str(&d.ok(&["get", "deploy", "mocka-v1", "-o", "json"])).unwrap();
    let c = &v["spec"]["template"]["spec"]["containers"][0];
    assert!(c["image"].as_str().unwrap().ends_with(":2.0"));
    assert_eq!(
        c["env"][1]["value"], "mocka",
        "the merge kept the rest of the container"
    );
    // A merge patch and a JSON patch.
    d.ok(&[
        "patch",
        "deploy",
        "mocka-v1",
        "--type",
        "merge",
        "-p",
        r#"{"metadata": {"labels": {"team": "a"}}}"#,
    ]);
    d.ok(&[
        "patch",
        "deploy",
        "mocka-v1",
        "--type",
        "json",
        "-p",
        r#"[{"op": "replace", "path": "/spec/replicas", "value": 3}]"#,
    ]);
    let v: Value =
        serde_json::from_str(&d.ok(&["get", "deploy", "mocka-v1", "-o", "json"])).unwrap();
    assert_eq!(v["metadata"]["labels"]["team"], "a");
    assert_eq!(v["spec"]["replicas"], 3);
    // A patch that breaks the object is refused with the field.
    let out = d.lanes(&[
        "patch",
        "deploy",
        "mocka-v1",
        "--type",
        "merge",
        "-p",
        r#"{"spec": {"replicas": "many"}}"#,
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("spec.replicas"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Delete by name and by file.
    assert!(
        d.ok(&["delete", "rollout", "rollouts-mockc"])
            .contains("rollout/rollouts-mockc deleted")
    );
    let out = d.lanes(&["get", "rollout", "rollouts-mockc"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
    d.ok(&["delete", "-f", "examples/seed/20-lanes.yaml"]);
    eventually(Duration::from_secs(10), || {
        d.ok(&["get", "vs,dr", "-n", "istio-system", "-o", "name"])
            .is_empty()
            .then_some(())
    });
}

fn canary_pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default",
                     "labels": {"app": "mocka", "ASM_TRAFFIC_TAG": "canary"}},
        "spec": {"containers": [{"name": "default", "image": "go-http-sample:2.0"}]}
    })
}

/// The subsets of a service's DestinationRule (none while it does not exist yet).
fn subsets(d: &Daemon, svc: &str) -> Vec<String> {
    let out = d.lanes(&[
        "get",
        "dr",
        &format!("trafficlabel-dr-rollout-default-{svc}"),
        "-n",
        "istio-system",
        "-o",
        "json",
    ]);
    if !out.status.success() {
        return Vec::new();
    }
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["spec"]["subsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_pods_through_the_api_add_and_remove_the_subset() {
    let d = Daemon::start();
    d.ok(&["apply", "-f", "examples/seed/"]);
    let c = d.client();
    eventually(Duration::from_secs(10), || {
        (subsets(&d, "mocka") == ["base"]).then_some(())
    });
    // A pod whose image maps to no command never becomes ready: no subset.
    let mut stuck = canary_pod("mocka-canary-stuck");
    stuck["spec"]["containers"][0]["image"] = json!("example.com/unmapped:1");
    c.create(&stuck).await.unwrap();
    eventually(Duration::from_secs(10), || {
        let p = d.ok(&["get", "po", "mocka-canary-stuck", "-o", "json"]);
        p.contains("ImageNotMapped").then_some(())
    });
    assert_eq!(subsets(&d, "mocka"), ["base"]);
    // A pod of the sample image runs, turns ready, and its lane gains the subset.
    c.create(&canary_pod("mocka-canary-1")).await.unwrap();
    eventually(Duration::from_secs(20), || {
        (subsets(&d, "mocka") == ["base", "canary"]).then_some(())
    });
    assert_eq!(subsets(&d, "mockb"), ["base"]);
    c.delete(Kind::Pod, Some("default"), "mocka-canary-1")
        .await
        .unwrap();
    eventually(Duration::from_secs(10), || {
        (subsets(&d, "mocka") == ["base"]).then_some(())
    });
    // A status written through the API counts as well (as a kubelet would write it).
    let mut ready = c
        .get(Kind::Pod, Some("default"), "mocka-canary-stuck")
        .await
        .unwrap();
    ready["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
    c.replace_status(Kind::Pod, Some("default"), "mocka-canary-stuck", &ready)
        .await
        .unwrap();
    eventually(Duration::from_secs(10), || {
        (subsets(&d, "mocka") == ["base", "canary"]).then_some(())
    });
}

#[test]
fn restarts_keep_every_object_with_its_version() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let d = Daemon::start_in(&state, &[]);
    d.ok(&["apply", "-f", "examples/seed/"]);
    let snapshot = |d: &Daemon| {
        let mut v: Vec<(String, String)> = Vec::new();
        for kind in [
            "svc",
            "deploy",
            "asmswimlanegroup",
            "asmswimlane",
            "rollout",
            "gw",
        ] {
            let list: Value =
                serde_json::from_str(&d.ok(&["get", kind, "-A", "-o", "json"])).unwrap();
            // Objects no controller writes come back exactly, resourceVersion included;
            // Deployments, Rollouts and lane groups, whose status the controllers keep up
            // to date (the pods come back and report again), come back with the same uid,
            // generation and spec.
            for o in list["items"].as_array().unwrap() {
                let by_controllers = ["Deployment", "Rollout", "ASMSwimLaneGroup"];
                let version = if by_controllers.iter().any(|k| o["kind"] == *k) {
                    format!(
                        "uid {} generation {} spec {}",
                        o["metadata"]["uid"], o["metadata"]["generation"], o["spec"]
                    )
                } else {
                    o["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap()
                        .to_string()
                };
                v.push((format!("{}/{}", o["kind"], o["metadata"]["name"]), version));
            }
        }
        v.sort();
        v
    };
    let before = snapshot(&d);
    assert_eq!(before.len(), 13);
    d.stop();
    let d = Daemon::start_in(&state, &[]);
    assert_eq!(snapshot(&d), before, "after a graceful restart");
    // Writes in flight, then kill -9.
    let client_dir = tempfile::tempdir().unwrap();
    for i in 0..5 {
        let f = client_dir.path().join(format!("s{i}.yaml"));
        std::fs::write(&f, format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: extra{i}\nspec:\n  ports: [{{port: 80}}]\n")).unwrap();
        d.ok(&["apply", "-f", f.to_str().unwrap()]);
    }
    let before = snapshot(&d);
    d.kill9();
    let d = Daemon::start_in(&state, &[]);
    assert_eq!(snapshot(&d), before, "after kill -9");
    assert!(
        d.ok(&["get", "vs", "-n", "istio-system", "-o", "name"])
            .lines()
            .count()
            == 5
    );
}

#[test]
fn an_apply_with_one_bad_document_stores_nothing() {
    let d = Daemon::start();
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "00-gateway.yaml",
        "10-apps.yaml",
        "20-lanes.yaml",
        "30-rollouts.yaml",
    ] {
        std::fs::copy(repo().join("examples/seed").join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(
        dir.path().join("40-bad.yaml"),
        "apiVersion: rollouts.kruise.io/v1beta1\nkind: Rollout\nmetadata:\n  name: bad\nspec:\n  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: mocka-v1}\n  strategy:\n    canary:\n      steps:\n        - replicas: abc\n",
    )
    .unwrap();
    let out = d.lanes(&["apply", "-f", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("40-bad.yaml:1 Rollout/bad: spec.strategy.canary.steps[0].replicas: expected an integer or a percentage, got \"abc\""),
        "{err}"
    );
    for kind in ["svc", "deploy", "rollout", "asmswimlanegroup"] {
        assert_eq!(
            d.ok(&["get", kind, "-A", "-o", "name"]),
            "",
            "{kind} stored"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_refuses_bad_bodies_with_4xx_and_stores_nothing() {
    let d = Daemon::start();
    let c = d.client();
    // An object of the wrong shape straight through the API: 400 naming the field, as
    // the API server answers a body it cannot decode.
    let bad = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
        "spec": {"replicas": "many"}});
    let err = c.create(&bad).await.unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(400));
    assert!(err.to_string().contains("spec.replicas"), "{err}");
    // An apply batch with one invalid object stores none.
    let good = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ok"}, "spec": {"ports": [{"port": 80}]}});
    let err = c.apply(vec![good.clone(), bad]).await.unwrap_err();
    assert!(
        err.to_string().contains("nothing applied") && err.to_string().contains("object 2"),
        "{err}"
    );
    assert!(c.list(Kind::Service, None, None).await.unwrap().is_empty());
    // Not JSON, unknown resource, wrong patch type.
    let (status, _) = c
        .send(
            http::Method::POST,
            "/api/v1/namespaces/default/services",
            Some("application/json"),
            Some(b"{nope".to_vec()),
        )
        .await
        .unwrap();
    assert_eq!(status.as_u16(), 400);
    let (status, _) = c
        .send(http::Method::GET, "/api/v1/configmaps", None, None)
        .await
        .unwrap();
    assert_eq!(status.as_u16(), 404);
    // The private routes of before are gone: one API, the Kubernetes one.
    for old in ["/api/deployments", "/api/apply", "/api/services/ok"] {
        let (status, _) = c.send(http::Method::GET, old, None, None).await.unwrap();
        assert_eq!(status.as_u16(), 404, "{old}");
    }
    c.create(&good).await.unwrap();
    let (status, body) = c
        .send(
            http::Method::PATCH,
            "/api/v1/namespaces/default/services/ok",
            Some("text/plain"),
            Some(b"{}".to_vec()),
        )
        .await
        .unwrap();
    assert_eq!(status.as_u16(), 415, "{}", String::from_utf8_lossy(&body));
    // A stale resourceVersion is a 409.
    let v = c.get(Kind::Service, Some("default"), "ok").await.unwrap();
    c.replace(Kind::Service, Some("default"), "ok", &v)
        .await
        .unwrap();
    let err = c
        .replace(Kind::Service, Some("default"), "ok", &{
            let mut v2 = v.clone();
            v2["spec"]["ports"][0]["port"] = json!(81);
            v2
        })
        .await;
    // The first replace was a no-op (nothing changed), so its version is still current.
    assert!(err.is_ok());
    let err = c
        .replace(Kind::Service, Some("default"), "ok", &v)
        .await
        .unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(409), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_clients_lose_no_update() {
    let d = Daemon::start();
    let c = d.client();
    c.create(&json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "counter", "annotations": {"count": "0"}},
        "spec": {"ports": [{"port": 80}]}}))
        .await
        .unwrap();
    let done = Arc::new(AtomicU64::new(0));
    let conflicts = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (c, done, conflicts) = (c.clone(), done.clone(), conflicts.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                if i % 5 == 0 {
                    // Some clients apply their own objects.
                    let obj = json!({"apiVersion": "v1", "kind": "Service",
                        "metadata": {"name": format!("c{i}"), "labels": {"n": n.to_string()}},
                        "spec": {"ports": [{"port": 80}]}});
                    c.apply(vec![obj]).await.unwrap();
                    n += 1;
                    continue;
                }
                // Others increment a shared counter: read, then write with the version read.
                let mut v = c
                    .get(Kind::Service, Some("default"), "counter")
                    .await
                    .unwrap();
                let count: u64 = v["metadata"]["annotations"]["count"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                v["metadata"]["annotations"]["count"] = json!((count + 1).to_string());
                match c
                    .replace(Kind::Service, Some("default"), "counter", &v)
                    .await
                {
                    Ok(_) => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) if e.status().map(|s| s.as_u16()) == Some(409) => {
                        conflicts.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        }));
    }
    // Meanwhile /healthz keeps answering.
    let mut health_checks = 0;
    while Instant::now() < deadline {
        assert!(c.healthy().await, "healthz failed under load");
        health_checks += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    let v = c
        .get(Kind::Service, Some("default"), "counter")
        .await
        .unwrap();
    let count: u64 = v["metadata"]["annotations"]["count"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let done = done.load(Ordering::Relaxed);
    assert!(done > 50, "only {done} increments");
    assert_eq!(count, done, "every acknowledged increment is in the store");
    assert!(
        conflicts.load(Ordering::Relaxed) > 0,
        "50 writers on one object never conflicted?"
    );
    assert!(health_checks > 10);
}

#[test]
fn a_non_loopback_api_needs_a_token_and_the_token_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(bin())
        .args([
            "up",
            "--no-auth",
            "--api",
            "0.0.0.0:0",
            "--gateway",
            "127.0.0.1:0",
            "--state-dir",
        ])
        .arg(dir.path())
        .env_remove("LANES_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("without a bearer token"));

    let d = Daemon::start_in(&dir.path().join("s"), &["--token", "s3cret"]);
    let out = d.lanes(&["get", "svc"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bearer token"));
    let out = std::process::Command::new(bin())
        .args(["get", "svc"])
        .env("LANES_SERVER", &d.api)
        .env("LANES_TOKEN", "s3cret")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_replay_from_a_version_then_follow() {
    use http_body_util::BodyExt;
    let d = Daemon::start();
    let c = d.client();
    let svc = |name: &str| json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": {"ports": [{"port": 80}]}});
    let first = c.create(&svc("w1")).await.unwrap();
    let rv: u64 = first["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    c.create(&svc("w2")).await.unwrap();
    let resp = c
        .start(
            http::Method::GET,
            &format!("/api/v1/namespaces/default/services?watch=true&resourceVersion={rv}"),
            None,
            None,
        )
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let mut body = resp.into_body();
    let c2 = c.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        c2.delete(Kind::Service, Some("default"), "w1")
            .await
            .unwrap();
    });
    let mut text = String::new();
    while text.lines().count() < 2 {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Some(d) = frame.data_ref() {
            text.push_str(&String::from_utf8_lossy(d));
        }
    }
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events[0]["type"], "ADDED");
    assert_eq!(events[0]["object"]["metadata"]["name"], "w2");
    assert_eq!(events[1]["type"], "DELETED");
    assert_eq!(events[1]["object"]["metadata"]["name"], "w1");
}
