//! Kruise Rollout fidelity against `lanes up`: traffic steps taking their share of the
//! lane group's ingress, Kruise's step jump (a case of its own end-to-end suite,
//! `test/e2e/rollout_v1beta1_test.go`, "Step Jump"), and what the API refuses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const SAMPLE: &str = "registry.cn-beijing.aliyuncs.com/aliacs-app-catalog/go-http-sample";

fn seed(d: &Daemon, files: &[&str]) {
    for f in files {
        let path = repo().join("examples/seed").join(f);
        d.ok(&["apply", "-f", path.to_str().unwrap()]);
    }
}

fn set_image(d: &Daemon, deploy: &str, tag: &str) {
    d.ok(&[
        "set",
        "image",
        &format!("deployment/{deploy}"),
        &format!("default={SAMPLE}:{tag}"),
    ]);
}

/// Waits until the Rollout is `phase` at step `index` in `state` (any step: 0).
fn wait_step(d: &Daemon, name: &str, phase: &str, index: i64, state: &str) -> Value {
    eventually(Duration::from_secs(90), || {
        let r = rollout(d, name);
        let cs = &r["status"]["canaryStatus"];
        let ok = r["status"]["phase"] == phase
            && (index == 0 || cs["currentStepIndex"] == index)
            && cs["currentStepState"] == state;
        ok.then_some(r)
    })
}

/// The mocka version that answered each of the requests `prefix-0` .. `prefix-{n-1}`
/// (trace-header values), sent without a lane header.
fn answers(d: &Daemon, prefix: &str, n: usize, extra: &[(&str, &str)]) -> Vec<String> {
    (0..n)
        .map(|i| {
            let id = format!("{prefix}-{i}");
            let mut headers = vec![("my-request-id", id.as_str())];
            headers.extend_from_slice(extra);
            let (status, _, body) = http_get(&d.gateway, "/mock", &headers);
            assert_eq!(status, 200, "{id}: {body}");
            versions(&body).first().cloned().unwrap_or_default()
        })
        .collect()
}

fn share(answers: &[String], version: &str) -> f64 {
    let hits = answers.iter().filter(|v| *v == version).count();
    100.0 * hits as f64 / answers.len() as f64
}

/// The lane the gateway sent the newest request with trace-header value `id` into.
fn gateway_lane(d: &Daemon, id: &str) -> String {
    let hops: Value = serde_json::from_str(&d.ok(&["trace", id, "--json"])).unwrap();
    let gateway = hops
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["role"] == "gateway")
        .max_by_key(|h| h["startUnixNano"].as_u64())
        .unwrap_or_else(|| panic!("{id}: no gateway hop in {hops}"));
    gateway["lane"].as_str().unwrap().to_string()
}

/// The canary's weight in the release's generated ingress VirtualService.
fn release_weight(d: &Daemon, rollout: &str) -> Value {
    let vs: Value = serde_json::from_str(&d.ok(&[
        "get",
        "vs",
        &format!("swimlane-ingress-vs-rollout-release-default-{rollout}"),
        "-n",
        "istio-system",
        "-o",
        "json",
    ]))
    .unwrap();
    let split = vs["spec"]["http"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == format!("release-default-{rollout}"))
        .cloned()
        .unwrap();
    split["route"][0]["weight"].clone()
}

/// Requests without a lane header through the gateway until stopped; every answer that
/// is not a 200 through the whole chain is kept.
struct Unlabeled {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    thread: std::thread::JoinHandle<()>,
}

impl Unlabeled {
    fn start(gateway: &str) -> Unlabeled {
        let (stop, ok, failures) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(Mutex::new(Vec::new())),
        );
        let (s, o, f, gw) = (
            stop.clone(),
            ok.clone(),
            failures.clone(),
            gateway.to_string(),
        );
        let thread = std::thread::spawn(move || {
            let mut i = 0u64;
            while !s.load(Ordering::Relaxed) {
                let id = format!("load-{i}");
                let (status, _, body) = http_get(&gw, "/mock", &[("my-request-id", &id)]);
                if status == 200 && versions(&body).len() == 3 {
                    o.fetch_add(1, Ordering::Relaxed);
                } else {
                    f.lock().unwrap().push(format!("{id}: {status} {body}"));
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Unlabeled {
            stop,
            ok,
            failures,
            thread,
        }
    }

    fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        let failures = self.failures.lock().unwrap().clone();
        (self.ok.load(Ordering::Relaxed), failures)
    }
}

const TRAFFIC_ROLLOUT: &str = "apiVersion: rollouts.kruise.io/v1beta1
kind: Rollout
metadata:
  name: rollouts-mocka
spec:
  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: mocka-v1}
  strategy:
    canary:
      enableExtraWorkloadForCanary: true
      steps:
        - {replicas: 1, traffic: 10%}
        - replicas: 1
          matches:
            - headers: [{name: x-beta, value: 'yes'}]
        - {replicas: 1, traffic: 50%}
        - {replicas: 1, traffic: 100%}
      patchPodTemplateMetadata:
        labels: {ASM_TRAFFIC_TAG: canary}
";

/// A Rollout whose steps say `traffic: 10%`, then `matches`, `50%` and `100%`, over the
/// article's services: of the requests that name no lane, the step's share (sticky per
/// trace id, growing without moving a trace out) and those matching enter the canary
/// lane; none after finalising and none after an undo; no request fails throughout.
#[test]
fn traffic_steps_take_their_share_of_the_lane_groups_ingress() {
    let d = Daemon::start();
    seed(&d, &["00-gateway.yaml", "10-apps.yaml", "20-lanes.yaml"]);
    apply_text(&d, TRAFFIC_ROLLOUT);
    settled(&d, 3);
    let load = Unlabeled::start(&d.gateway);
    // At rest the release's route holds nothing: every request is the baseline's.
    assert_eq!(share(&answers(&d, "rest", 100, &[]), "v2"), 0.0);
    assert_eq!(release_weight(&d, "rollouts-mocka"), 0);

    set_image(&d, "mocka-v1", "2.0");
    wait_step(&d, "rollouts-mocka", "Progressing", 1, "StepPaused");
    let at10 = answers(&d, "t", 600, &[]);
    let s10 = share(&at10, "v2");
    assert!(
        (s10 - 10.0).abs() <= 3.0,
        "10% step: {s10}% answered by the canary"
    );
    assert_eq!(release_weight(&d, "rollouts-mocka"), 10);
    // Sticky: the same trace id lands in the same lane again.
    assert_eq!(answers(&d, "t", 100, &[]), at10[..100]);

    d.ok(&["rollout", "approve", "rollout/rollouts-mocka"]);
    wait_step(&d, "rollouts-mocka", "Progressing", 2, "StepPaused");
    // A matches-only step: requests with the header enter the canary lane, others do not.
    let beta = answers(&d, "beta", 50, &[("x-beta", "yes")]);
    assert_eq!(share(&beta, "v2"), 100.0, "{beta:?}");
    assert_eq!(share(&answers(&d, "t", 200, &[]), "v2"), 0.0);

    d.ok(&["rollout", "approve", "rollout/rollouts-mocka"]);
    wait_step(&d, "rollouts-mocka", "Progressing", 3, "StepPaused");
    let at50 = answers(&d, "t", 600, &[]);
    let s50 = share(&at50, "v2");
    assert!(
        (s50 - 50.0).abs() <= 5.0,
        "50% step: {s50}% answered by the canary"
    );
    // Growing the share keeps every trace that was in the canary lane there.
    for (i, v) in at10.iter().enumerate() {
        if v == "v2" {
            assert_eq!(at50[i], "v2", "t-{i} left the canary lane at 50%");
        }
    }

    d.ok(&["rollout", "approve", "rollout/rollouts-mocka"]);
    wait_step(&d, "rollouts-mocka", "Progressing", 4, "StepPaused");
    assert_eq!(share(&answers(&d, "t", 100, &[]), "v2"), 100.0);

    // Finalising: the share goes back to 0 and the stable Deployment rolls to v2.
    d.ok(&["rollout", "approve", "rollout/rollouts-mocka"]);
    wait_step(&d, "rollouts-mocka", "Healthy", 0, "Completed");
    settled(&d, 3);
    assert_eq!(release_weight(&d, "rollouts-mocka"), 0);
    let after = answers(&d, "t", 100, &[]);
    assert_eq!(share(&after, "v2"), 100.0, "the stable runs v2 now");
    for i in (0..100).filter(|i| at10[*i] == "v2") {
        assert_eq!(gateway_lane(&d, &format!("t-{i}")), "base");
    }

    // A second release (back to 1.0), undone at its 10% step.
    set_image(&d, "mocka-v1", "1.0");
    wait_step(&d, "rollouts-mocka", "Progressing", 1, "StepPaused");
    let s = share(&answers(&d, "u", 600, &[]), "v1");
    assert!(
        (s - 10.0).abs() <= 3.0,
        "10% step: {s}% answered by the canary"
    );
    d.ok(&["rollout", "undo", "rollout/rollouts-mocka"]);
    wait_step(&d, "rollouts-mocka", "Healthy", 0, "Completed");
    settled(&d, 3);
    assert_eq!(release_weight(&d, "rollouts-mocka"), 0);
    assert_eq!(share(&answers(&d, "u", 600, &[]), "v1"), 0.0);

    let (ok, failures) = load.finish();
    assert!(
        failures.is_empty(),
        "{} failed: {failures:#?}",
        failures.len()
    );
    assert!(ok > 100, "only {ok} requests under load");
}
