//! Metric analysis end to end: a failing canary rolls back by itself; a canary that
//! never becomes ready fails at the progress deadline.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn rollout(d: &Daemon, name: &str) -> Value {
    serde_json::from_str(&d.ok(&["get", "rollout", name, "-o", "json"])).unwrap()
}

fn apply_text(d: &Daemon, text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x.yaml");
    std::fs::write(&f, text).unwrap();
    d.ok(&["apply", "-f", f.to_str().unwrap()]);
}

const ANALYSED: &str = r#"
apiVersion: rollouts.kruise.io/v1beta1
kind: Rollout
metadata:
  name: rollouts-mocka
spec:
  workloadRef:
    apiVersion: apps/v1
    kind: Deployment
    name: mocka-v1
  strategy:
    canary:
      enableExtraWorkloadForCanary: true
      steps:
        - replicas: 1
      patchPodTemplateMetadata:
        labels:
          ASM_TRAFFIC_TAG: canary
      EXTRA
"#;

#[test]
fn a_failing_canary_rolls_back_by_itself_and_the_base_lane_never_fails() {
    let d = Daemon::start();
    d.ok(&["apply", "-f", "examples/seed/"]);
    apply_text(
        &d,
        &ANALYSED.replace(
            "      EXTRA\n",
            "      analysis:\n        interval: 2s\n        failureLimit: 1\n        minRequests: 10\n        onFailure: rollback\n        metrics:\n          - name: success-rate\n            successRate: {min: 0.95}\n          - name: latency\n            latencyP99: {maxMs: 500}\n",
        ),
    );
    eventually(Duration::from_secs(60), || {
        (rollout(&d, "rollouts-mocka")["status"]["phase"] == "Healthy").then_some(())
    });
    eventually(Duration::from_secs(60), || {
        (http_get(&d.gateway, "/mock", &[("x-asm-prefer-tag", "base")]).0 == 200).then_some(())
    });
    // Steady load on both lanes.
    let stop = Arc::new(AtomicBool::new(false));
    let base_failures = Arc::new(AtomicU64::new(0));
    let base_ok = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for lane in ["base", "canary"] {
        let (stop, bf, bo, gw) = (
            stop.clone(),
            base_failures.clone(),
            base_ok.clone(),
            d.gateway.clone(),
        );
        load.push(std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let (status, _, _) = http_get(
                    &gw,
                    "/mock",
                    &[
                        ("x-asm-prefer-tag", lane),
                        ("my-request-id", &format!("{lane}{i}")),
                    ],
                );
                if lane == "base" {
                    if status == 200 {
                        bo.fetch_add(1, Ordering::Relaxed);
                    } else {
                        bf.fetch_add(1, Ordering::Relaxed);
                    }
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
        }));
    }
    // Release v3 with half its answers failing.
    d.ok(&[
        "patch",
        "deployment",
        "mocka-v1",
        "-p",
        r#"{"spec": {"template": {"spec": {"containers": [{"name": "default", "image": "registry.cn-beijing.aliyuncs.com/aliacs-app-catalog/go-http-sample:3.0", "env": [{"name": "FAIL_RATE", "value": "0.5"}]}]}}}}"#,
    ]);
    let canary_ready = eventually(Duration::from_secs(60), || {
        let r = rollout(&d, "rollouts-mocka");
        let s = r["status"]["canaryStatus"]["currentStepState"]
            .as_str()
            .unwrap_or("")
            .to_string();
        (s == "StepMetricsAnalysis" || s == "StepPaused").then(Instant::now)
    });
    // interval × (failureLimit + 1) plus a few seconds.
    let r = eventually(Duration::from_secs(2 * 2 + 10), || {
        let r = rollout(&d, "rollouts-mocka");
        (r["status"]["phase"] == "Healthy").then_some(r)
    });
    let took = canary_ready.elapsed();
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.join().unwrap();
    }
    let message = r["status"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("rolled back:") && message.contains("success-rate"),
        "{message}"
    );
    let measurements = r["status"]["analysis"]["measurements"].as_array().unwrap();
    assert!(
        measurements.iter().any(|m| m["verdict"] == "Failed"),
        "{measurements:?}"
    );
    // The workload is back on the stable template; the canary Deployment is gone.
    let dep: Value =
        serde_json::from_str(&d.ok(&["get", "deploy", "mocka-v1", "-o", "json"])).unwrap();
    let c = &dep["spec"]["template"]["spec"]["containers"][0];
    assert!(c["image"].as_str().unwrap().ends_with(":1.0"), "{c}");
    assert!(
        c.get("env")
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["name"] != "FAIL_RATE")
    );
    eventually(Duration::from_secs(30), || {
        (!d.ok(&["get", "deploy", "-o", "name"])
            .contains("deployment/mocka-v1-"))
        .then_some(())
    });
    assert_eq!(
        base_failures.load(Ordering::Relaxed),
        0,
        "the base lane saw failures"
    );
    assert!(base_ok.load(Ordering::Relaxed) > 20);
    let status = d.ok(&["rollout", "status", "rollout/rollouts-mocka"]);
    assert!(
        status.contains("analysis:") && status.contains("Failed"),
        "{status}"
    );
    eprintln!("rolled back {took:?} after the canary was ready");
}

#[test]
fn a_canary_with_an_unknown_image_fails_at_the_progress_deadline() {
    let d = Daemon::start();
    d.ok(&["apply", "-f", "examples/seed/"]);
    apply_text(
        &d,
        &ANALYSED.replace("      EXTRA\n", "      progressDeadlineSeconds: 3\n"),
    );
    eventually(Duration::from_secs(60), || {
        (rollout(&d, "rollouts-mocka")["status"]["phase"] == "Healthy").then_some(())
    });
    d.ok(&[
        "set",
        "image",
        "deployment/mocka-v1",
        "default=ghcr.io/acme/nothing-here:9",
    ]);
    let r = eventually(Duration::from_secs(30), || {
        let r = rollout(&d, "rollouts-mocka");
        let m = r["status"]["message"].as_str().unwrap_or("").to_string();
        (r["status"]["phase"] == "Healthy" && m.starts_with("rolled back:")).then_some(r)
    });
    let m = r["status"]["message"].as_str().unwrap();
    assert!(
        m.contains("progressDeadlineSeconds 3") && m.contains("ImageNotMapped"),
        "{m}"
    );
    let dep: Value =
        serde_json::from_str(&d.ok(&["get", "deploy", "mocka-v1", "-o", "json"])).unwrap();
    assert!(
        dep["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap()
            .ends_with("go-http-sample:1.0")
    );
}
