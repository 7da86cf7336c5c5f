//! Metric analysis end to end: a failing canary rolls back by itself; a canary that
//! never becomes ready fails at the progress deadline.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

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

/// A daemon running the seed with rollouts-mocka replaced by `manifest`, settled and
/// healthy, before any release.
fn seeded_with_rollout(manifest: &str) -> Daemon {
    let d = Daemon::start();
    d.ok(&["apply", "-f", "examples/seed/"]);
    apply_text(&d, manifest);
    eventually(Duration::from_secs(60), || {
        (rollout(&d, "rollouts-mocka")["status"]["phase"] == "Healthy").then_some(())
    });
    settled(&d, 3);
    d
}

#[test]
fn a_failing_canary_rolls_back_by_itself_and_the_base_lane_never_fails() {
    let d = seeded_with_rollout(&ANALYSED.replace(
            "      EXTRA\n",
            "      analysis:\n        interval: 2s\n        failureLimit: 1\n        minRequests: 10\n        onFailure: rollback\n        metrics:\n          - name: success-rate\n            successRate: {min: 0.95}\n          - name: latency\n            latencyP99: {maxMs: 500}\n",
        ));
    routed(&d);
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
    let d = seeded_with_rollout(
        &ANALYSED.replace("      EXTRA\n", "      progressDeadlineSeconds: 3\n"),
    );
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

#[test]
fn the_prometheus_metric_kind_passes_and_fails_releases_against_a_real_prometheus() {
    let d = Daemon::start();
    d.ok(&["apply", "-f", "examples/seed/"]);
    let p = prometheus(&d.api, &d.state.join("token"));
    settled(&d, 3);
    let rollout_with = |name: &str, workload: &str, bound: &str| {
        ANALYSED
            .replace("rollouts-mocka", name)
            .replace("mocka-v1", workload)
            .replace(
                "      EXTRA\n",
                &format!(
                    "      analysis:\n        interval: 2s\n        failureLimit: 0\n        onFailure: rollback\n        metrics:\n          - name: scraped\n            prometheus:\n              address: {}\n              query: 'sum(up{{job=\"lanes\"}})'\n              {bound}\n",
                    p.address
                ),
            )
    };
    apply_text(&d, &rollout_with("rollouts-mocka", "mocka-v1", "min: 1"));
    apply_text(&d, &rollout_with("rollouts-mockb", "mockb-v1", "max: 0"));
    for (r, w) in [
        ("rollouts-mocka", "mocka-v1"),
        ("rollouts-mockb", "mockb-v1"),
    ] {
        eventually(Duration::from_secs(60), || {
            (rollout(&d, r)["status"]["phase"] == "Healthy").then_some(())
        });
        d.ok(&[
            "set",
            "image",
            &format!("deployment/{w}"),
            "default=registry.cn-beijing.aliyuncs.com/aliacs-app-catalog/go-http-sample:2.0",
        ]);
    }
    // min: 1 holds (the daemon is up): the release passes analysis and waits for approval.
    let a = eventually(Duration::from_secs(60), || {
        let r = rollout(&d, "rollouts-mocka");
        (r["status"]["canaryStatus"]["currentStepState"] == "StepPaused").then_some(r)
    });
    let m = &a["status"]["analysis"]["measurements"];
    assert!(
        m.as_array()
            .unwrap()
            .iter()
            .any(|m| m["verdict"] == "Passed" && m["value"] == 1.0),
        "{m}"
    );
    // max: 0 does not: that release rolls back.
    let b = eventually(Duration::from_secs(60), || {
        let r = rollout(&d, "rollouts-mockb");
        let msg = r["status"]["message"].as_str().unwrap_or("").to_string();
        (r["status"]["phase"] == "Healthy" && msg.starts_with("rolled back:")).then_some(r)
    });
    assert!(
        b["status"]["message"].as_str().unwrap().contains("scraped"),
        "{}",
        b["status"]["message"]
    );
    let dep: Value =
        serde_json::from_str(&d.ok(&["get", "deploy", "mockb-v1", "-o", "json"])).unwrap();
    assert!(
        dep["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap()
            .ends_with(":1.0")
    );
}

#[test]
fn a_healthy_release_with_analysis_and_timed_pauses_completes_by_itself() {
    let d = seeded_with_rollout(&ANALYSED
            .replace("        - replicas: 1\n", "        - replicas: 1\n          pause: {duration: 1}\n        - replicas: 100%\n          pause: {duration: 1}\n")
            .replace(
                "      EXTRA\n",
                "      analysis:\n        interval: 1s\n        minRequests: 5\n        metrics:\n          - name: success-rate\n            successRate: {min: 0.95}\n",
            ));
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let gw = d.gateway.clone();
    let load = std::thread::spawn(move || {
        let mut i = 0;
        while !s2.load(Ordering::Relaxed) {
            http_get(
                &gw,
                "/mock",
                &[
                    ("x-asm-prefer-tag", "canary"),
                    ("my-request-id", &format!("h{i}")),
                ],
            );
            i += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    d.ok(&[
        "set",
        "image",
        "deployment/mocka-v1",
        "default=registry.cn-beijing.aliyuncs.com/aliacs-app-catalog/go-http-sample:2.0",
    ]);
    eventually(Duration::from_secs(20), || {
        (rollout(&d, "rollouts-mocka")["status"]["phase"] == "Progressing").then_some(())
    });
    let r = eventually(Duration::from_secs(60), || {
        let r = rollout(&d, "rollouts-mocka");
        (r["status"]["phase"] == "Healthy").then_some(r)
    });
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    assert_eq!(r["status"]["message"], "workload deployment is completed");
    let dep: Value =
        serde_json::from_str(&d.ok(&["get", "deploy", "mocka-v1", "-o", "json"])).unwrap();
    assert!(
        dep["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap()
            .ends_with(":2.0")
    );
    eventually(Duration::from_secs(30), || {
        let (_, _, body) = http_get(&d.gateway, "/mock", &[("x-asm-prefer-tag", "base")]);
        body.starts_with("-> mocka(version: v2").then_some(())
    });
}

#[test]
fn without_canary_traffic_analysis_is_inconclusive_and_the_release_waits() {
    let d = seeded_with_rollout(&ANALYSED.replace(
            "      EXTRA\n",
            "      analysis:\n        interval: 1s\n        failureLimit: 0\n        minRequests: 5\n        metrics:\n          - name: success-rate\n            successRate: {min: 0.95}\n",
        ));
    d.ok(&[
        "set",
        "image",
        "deployment/mocka-v1",
        "default=registry.cn-beijing.aliyuncs.com/aliacs-app-catalog/go-http-sample:2.0",
    ]);
    let r = eventually(Duration::from_secs(60), || {
        let r = rollout(&d, "rollouts-mocka");
        let n = r["status"]["analysis"]["measurements"]
            .as_array()
            .map_or(0, Vec::len);
        (n >= 3).then_some(r)
    });
    assert_eq!(r["status"]["phase"], "Progressing");
    assert_eq!(
        r["status"]["canaryStatus"]["currentStepState"],
        "StepMetricsAnalysis"
    );
    assert_eq!(r["status"]["analysis"]["failures"], 0);
    assert!(
        r["status"]["analysis"]["measurements"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["verdict"] == "Inconclusive")
    );
    let msg = r["status"]["message"].as_str().unwrap();
    assert!(msg.contains("fewer than minRequests 5"), "{msg}");
}
