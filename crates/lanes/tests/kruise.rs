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
    let start = std::time::Instant::now();
    loop {
        let r = rollout(d, name);
        let cs = &r["status"]["canaryStatus"];
        let ok = r["status"]["phase"] == phase
            && (index == 0 || cs["currentStepIndex"] == index)
            && cs["currentStepState"] == state;
        if ok {
            return r;
        }

        assert!(
            start.elapsed() < Duration::from_secs(90),
            "not {phase} at step {index} {state} within 90 s: {}",
            r["status"]
        );
        std::thread::sleep(Duration::from_millis(50));
    }
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
    routed(&d);
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

/// A merge patch of Rollout `rollouts-mocka` (its status with `status`).
async fn patch_rollout(
    c: &lanes_server::Client,
    patch: &Value,
    status: bool,
) -> Result<Value, lanes_server::client::ClientError> {
    c.patch(
        lanes_model::Kind::Rollout,
        Some("default"),
        "rollouts-mocka",
        lanes_server::merge::PatchType::Merge,
        patch,
        status,
    )
    .await
}

/// A Rollout on `mocka-v1` whose canary strategy is `canary` (YAML flow mapping
/// entries), as JSON.
fn rollout_json(name: &str, canary: Value) -> Value {
    json!({
        "apiVersion": "rollouts.kruise.io/v1beta1",
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "mocka-v1"},
            "strategy": {"canary": canary},
        },
    })
}

/// What Lanes does not run is refused at the API with a 422 naming the field (and by
/// `lanes lint` as an error); Kruise's webhook rules hold: one Rollout per workload, and
/// a release in flight keeps its workload and its number of steps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_refuses_what_lanes_does_not_run_and_what_kruise_forbids() {
    let d = Daemon::start();
    seed(&d, &["00-gateway.yaml", "10-apps.yaml", "20-lanes.yaml"]);
    let c = d.client();
    let base = json!({"enableExtraWorkloadForCanary": true, "steps": [{"replicas": 1}]});
    let with = |extra: Value| {
        let mut canary = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            canary[k] = v.clone();
        }
        canary
    };
    let mut blue_green = rollout_json("r", base.clone());
    blue_green["spec"]["strategy"] = json!({"blueGreen": {"steps": [{"replicas": "50%"}]}});
    let mut stateful = rollout_json("r", base.clone());
    stateful["spec"]["workloadRef"]["kind"] = json!("StatefulSet");
    let refused = [
        (blue_green, "spec.strategy.blueGreen"),
        (stateful, "spec.workloadRef"),
        (
            rollout_json(
                "r",
                with(json!({"trafficRoutings": [{"service": "mocka", "ingress": {"name": "i"}}]})),
            ),
            "spec.strategy.canary.trafficRoutings[0].ingress",
        ),
        (
            rollout_json(
                "r",
                with(
                    json!({"trafficRoutings": [{"service": "mocka", "gateway": {"httpRouteName": "h"}}]}),
                ),
            ),
            "spec.strategy.canary.trafficRoutings[0].gateway",
        ),
        (
            rollout_json("r", with(json!({"trafficRoutingRef": "tr"}))),
            "spec.strategy.canary.trafficRoutingRef",
        ),
        (
            rollout_json("r", with(json!({"steps": [{"traffic": "10%"}]}))),
            "spec.strategy.canary.steps[0].replicas",
        ),
        (
            rollout_json(
                "r",
                with(json!({"steps": [{"replicas": 1, "traffic": "0%"}]})),
            ),
            "spec.strategy.canary.steps[0].traffic",
        ),
        (
            rollout_json(
                "r",
                with(json!({"steps": [{"replicas": "50%"}, {"replicas": "20%"}]})),
            ),
            "spec.strategy.canary.steps[1].replicas",
        ),
    ];
    for (object, field) in &refused {
        let err = c.create(object).await.unwrap_err();
        assert_eq!(
            err.status().map(|s| s.as_u16()),
            Some(422),
            "{field}: {err}"
        );
        assert!(err.to_string().contains(field), "{field}: {err}");
        // lint says the same, as an error.
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("r.yaml");
        std::fs::write(&f, serde_json::to_string(object).unwrap()).unwrap();
        let out = d.lanes(&["lint", "-f", f.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{field}: {text}");
        assert!(
            text.contains(&format!("Rollout/r: {field}: ")),
            "{field}: {text}"
        );
    }
    assert!(
        c.list(lanes_model::Kind::Rollout, None, None)
            .await
            .unwrap()
            .is_empty()
    );

    // One Rollout per workload.
    let good = json!({"enableExtraWorkloadForCanary": true,
        "steps": [{"replicas": 1}, {"replicas": 1}],
        "patchPodTemplateMetadata": {"labels": {"ASM_TRAFFIC_TAG": "canary"}}});
    c.create(&rollout_json("rollouts-mocka", good.clone()))
        .await
        .unwrap();
    let err = c
        .create(&rollout_json("again", good.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(422), "{err}");
    assert!(
        err.to_string().contains(
            "spec.workloadRef: Rollout \"rollouts-mocka\" already releases Deployment \"mocka-v1\""
        ),
        "{err}"
    );
    // While Progressing, the number of steps and the workload stay; a step may change.
    settled(&d, 3);
    set_image(&d, "mocka-v1", "2.0");
    wait_step(&d, "rollouts-mocka", "Progressing", 1, "StepPaused");
    let fewer = json!({"spec": {"strategy": {"canary": {"steps": [{"replicas": 1}]}}}});
    let err = patch_rollout(&c, &fewer, false).await.unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(422), "{err}");
    assert!(
        err.to_string()
            .contains("spec.strategy.canary.steps: the number of steps (2) is immutable"),
        "{err}"
    );
    let other = json!({"spec": {"workloadRef": {"name": "mockb-v1"}}});
    let err = patch_rollout(&c, &other, false).await.unwrap_err();
    assert!(
        err.to_string().contains("spec.workloadRef: is immutable"),
        "{err}"
    );
    let changed = json!({"spec": {"strategy": {"canary": {"steps": [{"replicas": 1}, {"replicas": 1, "pause": {"duration": 5}}]}}}});
    patch_rollout(&c, &changed, false).await.unwrap();
}

/// Kruise's status patch of a step jump (`kubectl-kruise rollout approve --step`, and
/// the e2e suite's `RolloutJumpCanaryStep`): the step to go to, and approval.
async fn jump(c: &lanes_server::Client, to: i64) {
    let patch =
        json!({"status": {"canaryStatus": {"nextStepIndex": to, "currentStepState": "StepReady"}}});
    patch_rollout(c, &patch, true).await.unwrap();
}

/// The replicas of the canary Deployment of `mocka-v1` and how many are available.
fn canary_replicas(d: &Daemon) -> (i64, i64) {
    let list: Value = serde_json::from_str(&d.ok(&[
        "get",
        "deploy",
        "-l",
        "rollouts.kruise.io/canary-deployment=mocka-v1",
        "-o",
        "json",
    ]))
    .unwrap();
    let c = &list["items"][0];
    (
        c["spec"]["replicas"].as_i64().unwrap_or(-1),
        c["status"]["availableReplicas"].as_i64().unwrap_or(0),
    )
}

/// How a release runs its canary: an extra Deployment, or the workload's own pods.
#[derive(Clone, Copy, PartialEq)]
enum Style {
    Extra,
    Partition,
}

/// Partition style: the workload's pods at the new template (its `updatedReplicas`), and
/// how many ready pods are in the canary lane.
fn updated_in_lane(d: &Daemon) -> (i64, i64) {
    let w: Value =
        serde_json::from_str(&d.ok(&["get", "deploy", "mocka-v1", "-o", "json"])).unwrap();
    let pods: Value = serde_json::from_str(&d.ok(&[
        "get",
        "pods",
        "-l",
        "app=mocka,ASM_TRAFFIC_TAG=canary",
        "-o",
        "json",
    ]))
    .unwrap();
    let ready = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            p["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })
        .count();
    (
        w["status"]["updatedReplicas"].as_i64().unwrap_or(-1),
        ready as i64,
    )
}

/// At step `index` (paused): Kruise's `nextStepIndex`, the canary's pods, and the share
/// the lanes' ingress gives it.
fn at_step(d: &Daemon, style: Style, index: i64, next: i64, canary: i64, weight: i64) {
    let r = wait_step(d, "rollouts-mocka", "Progressing", index, "StepPaused");
    assert_eq!(
        r["status"]["canaryStatus"]["nextStepIndex"], next,
        "step {index}"
    );
    eventually(Duration::from_secs(30), || {
        let now = match style {
            Style::Extra => canary_replicas(d),
            Style::Partition => updated_in_lane(d),
        };
        (now == (canary, canary)).then_some(())
    });
    eventually(Duration::from_secs(30), || {
        (release_weight(d, "rollouts-mocka") == weight).then_some(())
    });
}

/// The seed with `mocka-v1` patched by `workload_patch` (5 replicas), a Rollout of
/// Kruise's e2e base (steps 20/40/60/80/100%, each with its traffic share; `pause: {}`
/// first, then 10 s), and v2 released up to step 1: the client and the steps.
async fn five_steps_at_step_1(
    d: &Daemon,
    workload_patch: &str,
    style: Style,
) -> (lanes_server::Client, Value) {
    seed(d, &["00-gateway.yaml", "10-apps.yaml", "20-lanes.yaml"]);
    d.ok(&["patch", "deployment", "mocka-v1", "-p", workload_patch]);
    let step =
        |r: &str, t: &str, pause: Value| json!({"replicas": r, "traffic": t, "pause": pause});
    let steps = json!([
        step("20%", "20%", json!({})),
        step("40%", "40%", json!({"duration": 10})),
        step("60%", "60%", json!({"duration": 10})),
        step("80%", "80%", json!({"duration": 10})),
        step("100%", "100%", json!({"duration": 0})),
    ]);
    let c = d.client();
    c.create(&rollout_json(
        "rollouts-mocka",
        json!({"enableExtraWorkloadForCanary": style == Style::Extra, "steps": steps,
            "patchPodTemplateMetadata": {"labels": {"ASM_TRAFFIC_TAG": "canary"}}}),
    ))
    .await
    .unwrap();
    settled(d, 3);
    set_image(d, "mocka-v1", "2.0");
    at_step(d, style, 1, 2, 1, 20);
    (c, steps)
}

/// Kruise's e2e case "Step Jump: V1->V2: Deployment, Canary, patch nextStepIndex to
/// jump" (`test/e2e/rollout_v1beta1_test.go`), on lanes: steps 20/40/60/80/100% of a
/// 5-replica Deployment, each with its traffic share; step 1 -> 2 -> 3 -> 4 -> jump to 3
/// (the canary keeps its 4 pods) -> step 3 changed (redone, no jump) -> jump to 2 -> 1 ->
/// 5, and the release completes. Then `kubectl get rollouts -o yaml` at rest shows what
/// Kruise keeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kruise_step_jump_deployment_canary() {
    let d = Daemon::start();
    let (c, steps) = five_steps_at_step_1(&d, r#"{"spec": {"replicas": 5}}"#, Style::Extra).await;
    d.ok(&["rollout", "approve", "rollout/rollouts-mocka"]);
    at_step(&d, Style::Extra, 2, 3, 2, 40);
    d.ok(&["rollout", "approve", "rollout/rollouts-mocka"]);
    at_step(&d, Style::Extra, 3, 4, 3, 60);
    d.ok(&["rollout", "approve", "rollout/rollouts-mocka"]);
    at_step(&d, Style::Extra, 4, 5, 4, 80);
    // The workload's own pods stay on v1 throughout.
    let w: Value =
        serde_json::from_str(&d.ok(&["get", "deploy", "mocka-v1", "-o", "json"])).unwrap();
    assert_eq!(w["status"]["availableReplicas"], 5);
    assert_eq!(w["spec"]["paused"], true);

    jump(&c, 3).await;
    at_step(&d, Style::Extra, 3, 4, 4, 60);
    // Step 3 changed (an integer count, the same share): redone, no jump.
    let hash = rollout(&d, "rollouts-mocka")["status"]["canaryStatus"]["rolloutHash"].clone();
    let mut changed = steps.clone();
    changed[2] = json!({"replicas": 3, "traffic": "60%", "pause": {"duration": 10}});
    patch_rollout(
        &c,
        &json!({"spec": {"strategy": {"canary": {"steps": changed}}}}),
        false,
    )
    .await
    .unwrap();
    eventually(Duration::from_secs(30), || {
        let r = rollout(&d, "rollouts-mocka");
        (r["status"]["canaryStatus"]["rolloutHash"] != hash).then_some(())
    });
    at_step(&d, Style::Extra, 3, 4, 4, 60);
    jump(&c, 2).await;
    at_step(&d, Style::Extra, 2, 3, 4, 40);
    jump(&c, 1).await;
    at_step(&d, Style::Extra, 1, 2, 4, 20);
    // pause and resume say when there is nothing to do; a jump to no step is refused.
    assert_eq!(
        d.ok(&["rollout", "pause", "rollout/rollouts-mocka"]),
        "rollout/rollouts-mocka paused\n"
    );
    assert_eq!(
        d.ok(&["rollout", "pause", "rollout/rollouts-mocka"]),
        "rollout/rollouts-mocka is already paused\n"
    );
    d.ok(&["rollout", "resume", "rollout/rollouts-mocka"]);
    assert_eq!(
        d.ok(&["rollout", "resume", "rollout/rollouts-mocka"]),
        "rollout/rollouts-mocka is already resumed\n"
    );
    let out = d.lanes(&[
        "rollout",
        "approve",
        "rollout/rollouts-mocka",
        "--to-step",
        "9",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("--to-step 9 names no step: it has steps 1 to 5"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // To the last step (the CLI's jump): every pod, no approval needed, and the release
    // completes.
    assert_eq!(
        d.ok(&[
            "rollout",
            "approve",
            "rollout/rollouts-mocka",
            "--to-step",
            "5"
        ]),
        "rollout/rollouts-mocka approved, on to step 5\n"
    );
    let r = wait_step(&d, "rollouts-mocka", "Healthy", 5, "Completed");
    assert_eq!(r["status"]["canaryStatus"]["nextStepIndex"], -1);
    settled(&d, 3);
    assert_eq!(release_weight(&d, "rollouts-mocka"), 0);
    assert_eq!(share(&answers(&d, "done", 50, &[]), "v2"), 100.0);

    // At rest, what Kruise keeps, as kubectl shows it.
    let yaml = kubectl(&d, &["get", "rollouts", "rollouts-mocka", "-o", "yaml"]);
    let r: Value = serde_saphyr::from_str(&yaml).unwrap();
    let status = &r["status"];
    let cs = &status["canaryStatus"];
    assert_eq!(status["phase"], "Healthy");
    assert_eq!(cs["currentStepIndex"], 5);
    assert_eq!(cs["currentStepState"], "Completed");
    assert_eq!(cs["nextStepIndex"], -1);
    assert!(cs["canaryRevision"].is_string(), "{cs}");
    assert_eq!(cs["canaryRevision"], cs["stableRevision"], "{cs}");
    assert!(cs["podTemplateHash"].is_string(), "{cs}");
    assert!(cs["rolloutHash"].is_string(), "{cs}");
    assert_eq!(
        cs["observedWorkloadGeneration"],
        w["metadata"]["generation"].as_i64().unwrap() + 1
    );
    let condition = |kind: &str| {
        status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == kind)
            .map(|c| (c["status"].clone(), c["reason"].clone()))
    };
    assert_eq!(
        condition("Progressing"),
        Some((json!("False"), json!("Completed")))
    );
    assert_eq!(
        condition("Succeeded"),
        Some((json!("True"), json!("Completed")))
    );
}

/// Kruise's e2e case "Step Jump: V1->V2: Deployment, Partition, patch nextStepIndex to
/// jump", on lanes: the same five steps, run partition style — no canary Deployment; the
/// workload's own pods move to v2 in batches (its `updatedReplicas`), each joining the
/// canary lane; step 1 -> 2 -> 3 -> 4 -> jump to 3 (the 4 new pods stay) -> 2 -> 1 -> 5,
/// and the release completes with every pod on v2, back in the baseline lane.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kruise_step_jump_deployment_partition() {
    let d = Daemon::start();
    let (c, _) = five_steps_at_step_1(&d, r#"{"spec": {"replicas": 5}}"#, Style::Partition).await;
    let at =
        |index, next, canary, weight| at_step(&d, Style::Partition, index, next, canary, weight);
    // The workload is paused with its partition, and the stable pods stay on v1.
    let w: Value =
        serde_json::from_str(&d.ok(&["get", "deploy", "mocka-v1", "-o", "json"])).unwrap();
    assert_eq!(w["spec"]["paused"], true);
    assert_eq!(w["status"]["replicas"], 5);
    let strategy: Value = serde_json::from_str(
        w["metadata"]["annotations"]["rollouts.kruise.io/deployment-strategy"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    // The step's replicas as written (Kruise's partition is a count or a percentage).
    assert_eq!(
        strategy,
        json!({"rollingStyle": "Partition", "partition": "20%"})
    );
    let canaries = d.ok(&[
        "get",
        "deploy",
        "-l",
        "rollouts.kruise.io/canary-deployment=mocka-v1",
        "-o",
        "name",
    ]);
    assert_eq!(canaries, "", "no canary Deployment in partition style");
    // podTemplateHash is the new pods' pod-template-hash.
    let r = rollout(&d, "rollouts-mocka");
    let hash = r["status"]["canaryStatus"]["podTemplateHash"]
        .as_str()
        .unwrap()
        .to_string();
    let new_pods = d.ok(&[
        "get",
        "pods",
        "-l",
        &format!("app=mocka,pod-template-hash={hash}"),
        "-o",
        "name",
    ]);
    assert_eq!(new_pods.lines().count(), 1, "{new_pods}");
    // describe lists that pod as the canary's, the four others as stable.
    let described = d.ok(&["rollout", "describe", "rollout/rollouts-mocka"]);
    assert!(
        described.contains("Canary pods (1):") && described.contains("Stable pods (4):"),
        "{described}"
    );
    // Without a lane header, 20% of the traces enter the canary lane: v2 answers them.
    let step1 = answers(&d, "p1", 100, &[]);
    assert!((10.0..=30.0).contains(&share(&step1, "v2")), "{step1:?}");

    d.ok(&["rollout", "approve", "rollout/rollouts-mocka"]);
    at(2, 3, 2, 40);
    d.ok(&["rollout", "approve", "rollout/rollouts-mocka"]);
    at(3, 4, 3, 60);
    d.ok(&["rollout", "approve", "rollout/rollouts-mocka"]);
    at(4, 5, 4, 80);
    // Back to step 3: the new pods stay (a release never scales its canary down).
    jump(&c, 3).await;
    at(3, 4, 4, 60);
    jump(&c, 2).await;
    at(2, 3, 4, 40);
    jump(&c, 1).await;
    at(1, 2, 4, 20);
    jump(&c, 5).await;
    let r = wait_step(&d, "rollouts-mocka", "Healthy", 5, "Completed");
    assert_eq!(r["status"]["canaryStatus"]["nextStepIndex"], -1);
    settled(&d, 3);
    let w: Value =
        serde_json::from_str(&d.ok(&["get", "deploy", "mocka-v1", "-o", "json"])).unwrap();
    assert_eq!(w["spec"]["paused"], false);
    assert_eq!(w["status"]["updatedReplicas"], 5);
    assert!(
        w["metadata"]["annotations"]
            .get("rollouts.kruise.io/deployment-strategy")
            .is_none(),
        "{}",
        w["metadata"]
    );
    // Every pod in the baseline lane again, on v2.
    assert_eq!(updated_in_lane(&d), (5, 0));
    assert_eq!(release_weight(&d, "rollouts-mocka"), 0);
    assert_eq!(share(&answers(&d, "done", 50, &[]), "v2"), 100.0);
    let base = answers(&d, "base", 20, &[("x-asm-prefer-tag", "base")]);
    assert_eq!(share(&base, "v2"), 100.0);
}

/// The canary's pods labelled with rollout id `id` and batch `batch`.
fn batch_pods(d: &Daemon, id: &str, batch: &str) -> usize {
    let list: Value = serde_json::from_str(&d.ok(&[
        "get",
        "pods",
        "-l",
        &format!("app=mocka,rollouts.kruise.io/rollout-id={id},rollouts.kruise.io/rollout-batch-id={batch}"),
        "-o",
        "json",
    ]))
    .unwrap();
    list["items"].as_array().map_or(0, Vec::len)
}

/// Kruise's e2e case "Step Jump: V1->V2: Deployment, Canary, remove 2-4 steps"
/// (`test/e2e/rollout_v1beta1_test.go`), on lanes: step 1, a jump to step 3 (3 canary
/// pods, 60% of the lane group's ingress), then taking steps 2-4 out while the release
/// runs is refused (Kruise's webhook forbids changing the number of steps). With it, what
/// the suite checks of a workload labelled `rollouts.kruise.io/rollout-id`: the Rollout
/// observes the id and each canary pod carries it and the batch it came up in;
/// `lanes rollout describe` lists the canary's and the stable pods; and, as Kruise's
/// "delete rollout" cases, deleting the Rollout mid-release stands the release down and
/// lets the workload roll to the new version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kruise_remove_steps_while_progressing_and_batch_labels() {
    let d = Daemon::start();
    let labelled = r#"{"metadata": {"labels": {"rollouts.kruise.io/rollout-id": "1"}}, "spec": {"replicas": 5}}"#;
    let (c, _) = five_steps_at_step_1(&d, labelled, Style::Extra).await;
    let step =
        |r: &str, t: &str, pause: Value| json!({"replicas": r, "traffic": t, "pause": pause});
    eventually(Duration::from_secs(30), || {
        (batch_pods(&d, "1", "1") == 1).then_some(())
    });
    jump(&c, 3).await;
    at_step(&d, Style::Extra, 3, 4, 3, 60);
    // The pods that came up in step 3 carry its batch; the first keeps its own.
    eventually(Duration::from_secs(30), || {
        (batch_pods(&d, "1", "3") == 2).then_some(())
    });
    assert_eq!(batch_pods(&d, "1", "1"), 1);
    let r = rollout(&d, "rollouts-mocka");
    assert_eq!(r["status"]["canaryStatus"]["observedRolloutID"], "1");
    // Kruise's revisions select the pods (as kubectl-kruise lists them): podTemplateHash
    // the canary's, stableRevision the workload's.
    let pods_of = |hash: &str| {
        d.ok(&[
            "get",
            "pods",
            "-l",
            &format!("pod-template-hash={hash}"),
            "-o",
            "name",
        ])
        .lines()
        .count()
    };
    eventually(Duration::from_secs(30), || {
        let cs = rollout(&d, "rollouts-mocka")["status"]["canaryStatus"].clone();
        let (canary, stable) = (
            cs["podTemplateHash"].as_str()?,
            cs["stableRevision"].as_str()?,
        );
        (pods_of(canary) == 3 && pods_of(stable) == 5).then_some(())
    });

    // Steps 2-4 taken out mid-release: refused, and the release goes on unchanged.
    let one = json!({"spec": {"strategy": {"canary": {"steps": [step("20%", "20%", json!({}))]}}}});
    let err = patch_rollout(&c, &one, false)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "is invalid: spec.strategy.canary.steps: the number of steps (5) is immutable"
        ),
        "{err}"
    );
    let r = rollout(&d, "rollouts-mocka");
    assert_eq!(
        r["spec"]["strategy"]["canary"]["steps"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    at_step(&d, Style::Extra, 3, 4, 3, 60);

    // describe: the canary's pods (with their batches) and the stable ones.
    let out = d.ok(&["rollout", "describe", "rollout/rollouts-mocka"]);
    assert!(out.contains("Canary pods (3):"), "{out}");
    assert!(out.contains("Stable pods (5):"), "{out}");
    assert!(out.contains("batch=3 rollout-id=1"), "{out}");
    assert!(
        out.contains("3. replicas=60% traffic=60% pause=10s current"),
        "{out}"
    );

    // Deleted mid-release: Kruise's finalizer holds the Rollout, `Terminating`, while
    // the release stands down (a second finalizer keeps it here to be seen); then the
    // canary is gone, the workload let go, and it rolls to v2.
    let r = rollout(&d, "rollouts-mocka");
    assert_eq!(
        r["metadata"]["finalizers"],
        json!(["rollouts.kruise.io/rollout"])
    );
    let hold =
        json!({"metadata": {"finalizers": ["rollouts.kruise.io/rollout", "lanes.dev/test-hold"]}});
    patch_rollout(&c, &hold, false).await.unwrap();
    c.delete(
        lanes_model::Kind::Rollout,
        Some("default"),
        "rollouts-mocka",
    )
    .await
    .unwrap();
    let held = eventually(Duration::from_secs(30), || {
        let r = rollout(&d, "rollouts-mocka");
        (r["metadata"]["finalizers"] == json!(["lanes.dev/test-hold"])).then_some(r)
    });
    assert_eq!(held["status"]["phase"], "Terminating", "{}", held["status"]);
    assert!(held["metadata"]["deletionTimestamp"].is_string());
    patch_rollout(&c, &json!({"metadata": {"finalizers": null}}), false)
        .await
        .unwrap();
    eventually(Duration::from_secs(60), || {
        let gone = d.lanes(&["get", "rollout", "rollouts-mocka"]).status.code() == Some(1);
        gone.then_some(())
    });
    eventually(Duration::from_secs(90), || {
        let w: Value =
            serde_json::from_str(&d.ok(&["get", "deploy", "mocka-v1", "-o", "json"])).unwrap();
        let rolled = w["spec"]["paused"] != true
            && w["status"]["updatedReplicas"] == 5
            && w["status"]["availableReplicas"] == 5
            && w["status"]["replicas"] == 5;
        rolled.then_some(())
    });
    eventually(Duration::from_secs(30), || {
        let (replicas, _) = canary_replicas(&d);
        (replicas == -1).then_some(())
    });
    // Without the Rollout's traffic steps the group routes by lane rule alone (the seed's
    // rule_based ingress): the baseline lane serves the new version.
    // (Once the old pods' endpoints are gone from the data plane.)
    let base = [("x-asm-prefer-tag", "base")];
    eventually(Duration::from_secs(30), || {
        (share(&answers(&d, "after", 30, &base), "v2") == 100.0).then_some(())
    });
}

/// `kubectl` (the real one, on the PATH) against the daemon.
fn kubectl(d: &Daemon, args: &[&str]) -> String {
    let out = std::process::Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", d.state.join("kubeconfig"))
        .env("HOME", &d.state)
        .output()
        .expect("kubectl on the PATH");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The revisions `kubectl rollout history` lists for `deployment/mocka-v1`.
fn kubectl_revisions(d: &Daemon) -> Vec<i64> {
    kubectl(d, &["rollout", "history", "deployment/mocka-v1"])
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

/// The image mocka-v1's pods run, once they all run one.
fn settled_image(d: &Daemon) -> String {
    eventually(Duration::from_secs(60), || {
        let list: Value =
            serde_json::from_str(&d.ok(&["get", "pods", "-l", "app=mocka", "-o", "json"])).unwrap();
        let images: std::collections::BTreeSet<String> = list["items"]
            .as_array()?
            .iter()
            .filter_map(|p| {
                p["spec"]["containers"][0]["image"]
                    .as_str()
                    .map(String::from)
            })
            .collect();
        (images.len() == 1).then(|| images.into_iter().next().unwrap_or_default())
    })
}

/// `kubectl-kruise`'s workload commands as `lanes rollout history|undo --to-revision|
/// restart`, on a workload a Rollout guards: the history is the Deployment's
/// ReplicaSets as a cluster keeps them (the real kubectl lists the same revisions), a
/// revision that comes back takes a new number, and going back to a revision or
/// restarting is a release the Rollout runs like any other.
#[test]
fn rollout_history_undo_to_revision_and_restart_under_a_rollout() {
    let d = Daemon::start();
    seed(&d, &["00-gateway.yaml", "10-apps.yaml", "20-lanes.yaml"]);
    apply_text(
        &d,
        "apiVersion: rollouts.kruise.io/v1beta1
kind: Rollout
metadata: {name: rollouts-mocka, namespace: default}
spec:
  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: mocka-v1}
  strategy:
    canary:
      enableExtraWorkloadForCanary: true
      steps:
      - replicas: 1
        pause: {}
",
    );
    settled(&d, 3);
    let release = |what: &[&str]| {
        d.ok(what);
        wait_step(&d, "rollouts-mocka", "Progressing", 1, "StepPaused");
        d.ok(&["rollout", "approve", "rollout/rollouts-mocka"]);
        wait_step(&d, "rollouts-mocka", "Healthy", 0, "Completed");
        settled(&d, 3);
    };
    release(&[
        "set",
        "image",
        "deployment/mocka-v1",
        &format!("default={SAMPLE}:2.0"),
    ]);
    assert_eq!(settled_image(&d), format!("{SAMPLE}:2.0"));
    let history = d.ok(&["rollout", "history", "rollout/rollouts-mocka"]);
    assert!(
        history.contains(&format!("1         <none>        {SAMPLE}:1.0")),
        "{history}"
    );
    assert!(
        history.contains(&format!("2         <none>        {SAMPLE}:2.0")),
        "{history}"
    );
    assert_eq!(kubectl_revisions(&d), vec![1, 2]);

    // Back to revision 1: a release of the old template; revision 1 becomes 3.
    release(&[
        "rollout",
        "undo",
        "rollout/rollouts-mocka",
        "--to-revision",
        "1",
    ]);
    assert_eq!(settled_image(&d), format!("{SAMPLE}:1.0"));
    assert_eq!(kubectl_revisions(&d), vec![2, 3]);
    let one = d.ok(&[
        "rollout",
        "history",
        "deployment/mocka-v1",
        "--revision",
        "3",
    ]);
    assert!(one.contains(&format!("image: {SAMPLE}:1.0")), "{one}");
    assert!(!one.contains("pod-template-hash"), "{one}");

    // A restart: a new template (the restart annotation), released in turn; the
    // Deployment's change cause goes with the new revision, as kubectl shows it.
    d.ok(&[
        "patch",
        "deployment",
        "mocka-v1",
        "-p",
        r#"{"metadata": {"annotations": {"kubernetes.io/change-cause": "restart for the test"}}}"#,
    ]);
    release(&["rollout", "restart", "rollout/rollouts-mocka"]);
    assert_eq!(kubectl_revisions(&d), vec![2, 3, 4]);
    let history = kubectl(&d, &["rollout", "history", "deployment/mocka-v1"]);
    let line4 = history
        .lines()
        .find(|l| l.starts_with('4'))
        .unwrap_or_default();
    assert!(line4.contains("restart for the test"), "{history}");
    let pods: Value =
        serde_json::from_str(&d.ok(&["get", "pods", "-l", "app=mocka", "-o", "json"])).unwrap();
    assert!(
        pods["items"][0]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            .is_string(),
        "{pods}"
    );
    let rs = kubectl(&d, &["get", "rs", "-l", "app=mocka", "-o", "name"]);
    assert_eq!(rs.lines().count(), 3, "{rs}");

    let out = d.lanes(&[
        "rollout",
        "undo",
        "rollout/rollouts-mocka",
        "--to-revision",
        "9",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("deployment/mocka-v1 has no revision 9 (it has 2, 3, 4)"),
        "{err}"
    );
}

/// The setting of Kruise's "Canary rollout with Ingress using advance deployment" cases,
/// on lanes: `mocka-v1` at 5 replicas and a partition-style Rollout of three steps (20%
/// of the pods with 20% of the traffic, approval; 60%, approval; 100%), v2 released up
/// to step 1 (one pod updated, in the canary lane).
async fn advanced_at_step_1(d: &Daemon) -> lanes_server::Client {
    seed(d, &["00-gateway.yaml", "10-apps.yaml", "20-lanes.yaml"]);
    d.ok(&[
        "patch",
        "deployment",
        "mocka-v1",
        "-p",
        r#"{"spec": {"replicas": 5}}"#,
    ]);
    let c = d.client();
    c.create(&rollout_json(
        "rollouts-mocka",
        json!({"enableExtraWorkloadForCanary": false, "steps": [
            {"replicas": "20%", "traffic": "20%", "pause": {}},
            {"replicas": "60%", "pause": {}},
            {"replicas": "100%", "pause": {"duration": 0}},
        ], "patchPodTemplateMetadata": {"labels": {"ASM_TRAFFIC_TAG": "canary"}}}),
    ))
    .await
    .unwrap();
    settled(d, 3);
    set_image(d, "mocka-v1", "2.0");
    at_step(d, Style::Partition, 1, 2, 1, 20);
    c
}

/// The workload's `metadata.generation`, `spec.replicas`, and status `updatedReplicas`,
/// `readyReplicas`.
fn workload_counts(d: &Daemon) -> (i64, i64, i64, i64) {
    let w: Value =
        serde_json::from_str(&d.ok(&["get", "deploy", "mocka-v1", "-o", "json"])).unwrap();
    let n = |p: &str| w.pointer(p).and_then(Value::as_i64).unwrap_or(-1);
    (
        n("/metadata/generation"),
        n("/spec/replicas"),
        n("/status/updatedReplicas"),
        n("/status/readyReplicas"),
    )
}

/// Waits until every one of the workload's pods is updated and ready, `spec.paused` off.
fn all_pods_ready(d: &Daemon) {
    eventually(Duration::from_secs(60), || {
        let (_, want, updated, ready) = workload_counts(d);
        let w: Value =
            serde_json::from_str(&d.ok(&["get", "deploy", "mocka-v1", "-o", "json"])).unwrap();
        (w["spec"]["paused"] != true && updated == want && ready == want).then_some(())
    });
}

/// Scales the workload to 6 after its release: the Rollout's observed workload
/// generation follows (Kruise's `WaitRolloutWorkloadGeneration`).
fn scaled_after_release(d: &Daemon) {
    kubectl(d, &["scale", "deployment/mocka-v1", "--replicas=6"]);
    let (generation, ..) = workload_counts(d);
    eventually(Duration::from_secs(30), || {
        let r = rollout(d, "rollouts-mocka");
        (r["status"]["canaryStatus"]["observedWorkloadGeneration"] == generation).then_some(())
    });
}

/// Kruise's "advanced deployment rolling with traffic case": 1 pod with 20% of the
/// traffic, then 3 pods, then every pod; `Succeeded`; scaled afterwards, the Rollout's
/// observed workload generation follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kruise_advanced_deployment_rolling_with_traffic() {
    let d = Daemon::start();
    advanced_at_step_1(&d).await;
    let step1 = answers(&d, "t1", 100, &[]);
    assert!((10.0..=30.0).contains(&share(&step1, "v2")), "{step1:?}");
    d.ok(&["rollout", "approve", "rollout/rollouts-mocka"]);
    // Step 2 names no traffic: the share of step 1 holds (Lanes carries it on).
    at_step(&d, Style::Partition, 2, 3, 3, 20);
    d.ok(&["rollout", "approve", "rollout/rollouts-mocka"]);
    let r = wait_step(&d, "rollouts-mocka", "Healthy", 3, "Completed");
    all_pods_ready(&d);
    assert_eq!(updated_in_lane(&d), (5, 0));
    let conditions = r["status"]["conditions"].as_array().unwrap();
    let succeeded = conditions
        .iter()
        .find(|c| c["type"] == "Succeeded")
        .unwrap();
    assert_eq!(succeeded["status"], "True");
    assert_eq!(share(&answers(&d, "t2", 30, &[]), "v2"), 100.0);
    scaled_after_release(&d);
}

/// Kruise's "advanced deployment continuous rolling case": v2 at step 2 (3 pods), then
/// v3: the release starts over at step 1 with one v3 pod (the v2 pods go back to v1),
/// then step 2 with three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kruise_advanced_deployment_continuous_rolling() {
    let d = Daemon::start();
    advanced_at_step_1(&d).await;
    d.ok(&["rollout", "approve", "rollout/rollouts-mocka"]);
    at_step(&d, Style::Partition, 2, 3, 3, 20);
    set_image(&d, "mocka-v1", "3.0");
    at_step(&d, Style::Partition, 1, 2, 1, 20);
    // One pod runs v3; the other four run v1 again (none on v2).
    let base = answers(&d, "c1", 40, &[("x-asm-prefer-tag", "base")]);
    assert_eq!(share(&base, "v1"), 100.0, "{base:?}");
    let canary = answers(&d, "c2", 10, &[("x-asm-prefer-tag", "canary")]);
    assert_eq!(share(&canary, "v3"), 100.0, "{canary:?}");
    d.ok(&["rollout", "approve", "rollout/rollouts-mocka"]);
    at_step(&d, Style::Partition, 2, 3, 3, 20);
}

/// Kruise's "advanced deployment rollback case": at step 2 (3 pods on v2) the template
/// goes back to v1: the Rollout is Healthy and every pod runs v1 again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kruise_advanced_deployment_rollback() {
    let d = Daemon::start();
    advanced_at_step_1(&d).await;
    d.ok(&["rollout", "approve", "rollout/rollouts-mocka"]);
    at_step(&d, Style::Partition, 2, 3, 3, 20);
    set_image(&d, "mocka-v1", "1.0");
    wait_step(&d, "rollouts-mocka", "Healthy", 0, "Completed");
    all_pods_ready(&d);
    assert_eq!(updated_in_lane(&d), (5, 0));
    let all = answers(&d, "rb", 30, &[("x-asm-prefer-tag", "base")]);
    assert_eq!(share(&all, "v1"), 100.0, "{all:?}");
}

/// Kruise's "advanced deployment delete rollout case": the Rollout deleted at step 1,
/// the workload is resumed and rolls every pod to v2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kruise_advanced_deployment_delete_rollout() {
    let d = Daemon::start();
    advanced_at_step_1(&d).await;
    d.ok(&["delete", "rollout", "rollouts-mocka"]);
    eventually(Duration::from_secs(30), || {
        let out = d.lanes(&["get", "rollout", "rollouts-mocka"]);
        (!out.status.success()).then_some(())
    });
    all_pods_ready(&d);
    let w: Value =
        serde_json::from_str(&d.ok(&["get", "deploy", "mocka-v1", "-o", "json"])).unwrap();
    let annotations = &w["metadata"]["annotations"];
    assert!(
        annotations
            .get("rollouts.kruise.io/deployment-strategy")
            .is_none(),
        "{annotations}"
    );
    let all = answers(&d, "del", 30, &[("x-asm-prefer-tag", "base")]);
    assert_eq!(share(&all, "v2"), 100.0, "{all:?}");
}

/// Kruise's "advanced deployment scaling case": at step 1 (20%) the workload scales 5 ->
/// 10 (the canary has 2 ready pods) and back to 5 (1), then the release completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kruise_advanced_deployment_scaling() {
    let d = Daemon::start();
    advanced_at_step_1(&d).await;
    let canary_ready = |want: i64| {
        eventually(Duration::from_secs(60), || {
            let r = rollout(&d, "rollouts-mocka");
            (r["status"]["canaryStatus"]["canaryReadyReplicas"] == want).then_some(())
        })
    };
    kubectl(&d, &["scale", "deployment/mocka-v1", "--replicas=10"]);
    canary_ready(2);
    eventually(Duration::from_secs(60), || {
        let (_, _, updated, ready) = workload_counts(&d);
        (updated == 2 && ready == 10).then_some(())
    });
    kubectl(&d, &["scale", "deployment/mocka-v1", "--replicas=5"]);
    canary_ready(1);
    d.ok(&["rollout", "approve", "rollout/rollouts-mocka"]);
    at_step(&d, Style::Partition, 2, 3, 3, 20);
    d.ok(&["rollout", "approve", "rollout/rollouts-mocka"]);
    wait_step(&d, "rollouts-mocka", "Healthy", 3, "Completed");
    all_pods_ready(&d);
}

/// Kruise's partition base Rollout (`rollout_v1beta1_partition_base.yaml`, steps 20%
/// with 20% of the traffic and approval, then 40/60/80% with 10 s pauses, then 100%),
/// on lanes, over `mocka-v1` at 5 replicas labelled `workload_labels`; v2 released up to
/// step 1.
async fn partition_base_at_step_1(d: &Daemon, workload_labels: Value) {
    seed(d, &["00-gateway.yaml", "10-apps.yaml", "20-lanes.yaml"]);
    let patch = json!({"metadata": {"labels": workload_labels}, "spec": {"replicas": 5}});
    d.ok(&["patch", "deployment", "mocka-v1", "-p", &patch.to_string()]);
    let pause = |s: i64| json!({"duration": s});
    d.client()
        .create(&rollout_json(
            "rollouts-mocka",
            json!({"enableExtraWorkloadForCanary": false, "steps": [
                {"replicas": "20%", "traffic": "20%", "pause": {}},
                {"replicas": "40%", "pause": pause(10)},
                {"replicas": "60%", "pause": pause(10)},
                {"replicas": "80%", "pause": pause(10)},
                {"replicas": "100%", "pause": pause(0)},
            ], "patchPodTemplateMetadata": {"labels": {"ASM_TRAFFIC_TAG": "canary"}}}),
        ))
        .await
        .unwrap();
    settled(d, 3);
    set_image(d, "mocka-v1", "2.0");
    at_step(d, Style::Partition, 1, 2, 1, 20);
}

/// Kruise's "CloneSet V1->V2: Percentage, 20%,40%,60%,80%,100%, no traffic, Succeeded",
/// on a Deployment (partition style applies to both): one pod at step 1, then approved,
/// the timed steps run through to `Healthy` with every pod updated and `Succeeded`; the
/// workload scaled afterwards, the observed workload generation follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kruise_percentage_steps_succeeded_as_a_deployment() {
    let d = Daemon::start();
    partition_base_at_step_1(&d, json!({})).await;
    let (_, _, updated, _) = workload_counts(&d);
    assert_eq!(updated, 1);
    d.ok(&["rollout", "approve", "rollout/rollouts-mocka"]);
    let r = wait_step(&d, "rollouts-mocka", "Healthy", 5, "Completed");
    all_pods_ready(&d);
    assert_eq!(updated_in_lane(&d), (5, 0));
    let conditions = r["status"]["conditions"].as_array().unwrap();
    let condition = |t: &str| conditions.iter().find(|c| c["type"] == t).unwrap();
    assert_eq!(condition("Succeeded")["status"], "True");
    assert_eq!(condition("Progressing")["reason"], "Completed");
    assert_eq!(condition("Progressing")["status"], "False");
    scaled_after_release(&d);
}

/// Kruise's "Patch batch id to pods: normal case" (an Advanced StatefulSet there), on a
/// Deployment: the workload labelled `rollouts.kruise.io/rollout-id: "1"`; each step's
/// new pod is labelled with its batch, and at the end each of the 5 batches has one pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kruise_patch_batch_id_to_pods_normal_case_as_a_deployment() {
    let d = Daemon::start();
    partition_base_at_step_1(&d, json!({"rollouts.kruise.io/rollout-id": "1"})).await;
    let batch = |b: &str, n: usize| {
        eventually(Duration::from_secs(30), || {
            (batch_pods(&d, "1", b) == n).then_some(())
        })
    };
    batch("1", 1);
    d.ok(&["rollout", "approve", "rollout/rollouts-mocka"]);
    wait_step(&d, "rollouts-mocka", "Progressing", 2, "StepPaused");
    batch("2", 1);
    wait_step(&d, "rollouts-mocka", "Healthy", 5, "Completed");
    all_pods_ready(&d);
    for b in ["1", "2", "3", "4", "5"] {
        batch(b, 1);
    }
}

/// The setting of Kruise's "patch batch id to pods" cases whose release a rollout id
/// alone starts (a CloneSet there, a Deployment here): `mocka-v1` at 5 replicas, a
/// partition-style Rollout of 20/40/60/80% steps each awaiting approval (20% of the
/// traffic at the first) and 100% last, settled.
async fn id_release_setting(d: &Daemon) {
    seed(d, &["00-gateway.yaml", "10-apps.yaml", "20-lanes.yaml"]);
    d.ok(&[
        "patch",
        "deployment",
        "mocka-v1",
        "-p",
        r#"{"spec": {"replicas": 5}}"#,
    ]);
    d.client()
        .create(&rollout_json(
            "rollouts-mocka",
            json!({"enableExtraWorkloadForCanary": false, "steps": [
                {"replicas": "20%", "traffic": "20%", "pause": {}},
                {"replicas": "40%", "pause": {}},
                {"replicas": "60%", "pause": {}},
                {"replicas": "80%", "pause": {}},
                {"replicas": "100%", "pause": {"duration": 0}},
            ], "patchPodTemplateMetadata": {"labels": {"ASM_TRAFFIC_TAG": "canary"}}}),
        ))
        .await
        .unwrap();
    settled(d, 3);
    wait_step(d, "rollouts-mocka", "Healthy", 0, "Completed");
}

/// Labels the workload `rollouts.kruise.io/rollout-id=id` (the template unchanged).
fn set_rollout_id(d: &Daemon, id: &str) {
    kubectl(
        d,
        &[
            "label",
            "deployment/mocka-v1",
            &format!("rollouts.kruise.io/rollout-id={id}"),
            "--overwrite",
        ],
    );
}

/// Approves the step the Rollout pauses in and waits for it to pause in step `next`.
fn approve_to(d: &Daemon, next: i64) {
    d.ok(&["rollout", "approve", "rollout/rollouts-mocka"]);
    wait_step(d, "rollouts-mocka", "Progressing", next, "StepPaused");
}

/// Waits until `n` pods carry release `id` and batch `batch`.
fn batch_has(d: &Daemon, id: &str, batch: &str, n: usize) {
    eventually(Duration::from_secs(30), || {
        (batch_pods(d, id, batch) == n).then_some(())
    });
}

/// Kruise's "patch batch id to pods: only rollout-id changes", on a Deployment: a new
/// rollout id alone starts a release of the same template, one pod a step labelled with
/// its batch; a second id at step 3 relabels batches 1-3 with it, and the release runs
/// on to every pod in its batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kruise_patch_batch_id_only_rollout_id_changes_as_a_deployment() {
    let d = Daemon::start();
    id_release_setting(&d).await;
    set_rollout_id(&d, "1");
    wait_step(&d, "rollouts-mocka", "Progressing", 1, "StepPaused");
    batch_has(&d, "1", "1", 1);
    approve_to(&d, 2);
    batch_has(&d, "1", "2", 1);
    approve_to(&d, 3);
    batch_has(&d, "1", "3", 1);
    set_rollout_id(&d, "2");
    for b in ["1", "2", "3"] {
        batch_has(&d, "2", b, 1);
    }
    let r = wait_step(&d, "rollouts-mocka", "Progressing", 3, "StepPaused");
    assert_eq!(r["status"]["canaryStatus"]["observedRolloutID"], "2");
    approve_to(&d, 4);
    batch_has(&d, "2", "4", 1);
    d.ok(&["rollout", "approve", "rollout/rollouts-mocka"]);
    wait_step(&d, "rollouts-mocka", "Healthy", 5, "Completed");
    all_pods_ready(&d);
    for b in ["1", "2", "3", "4", "5"] {
        batch_has(&d, "2", b, 1);
    }
    // The pods went back to the baseline lane; the template and its pods never changed.
    assert_eq!(updated_in_lane(&d), (5, 0));
    assert_eq!(share(&answers(&d, "id", 20, &[]), "v1"), 100.0);
}

/// Kruise's "patch batch id to pods: only change rollout-id after rolling the first
/// step", on a Deployment: id 1 starts the release; at step 1 id 2 takes over, and each
/// step after labels its pod with id 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kruise_patch_batch_id_rollout_id_changed_after_step_1_as_a_deployment() {
    let d = Daemon::start();
    id_release_setting(&d).await;
    set_rollout_id(&d, "1");
    wait_step(&d, "rollouts-mocka", "Progressing", 1, "StepPaused");
    batch_has(&d, "1", "1", 1);
    set_rollout_id(&d, "2");
    batch_has(&d, "2", "1", 1);
    wait_step(&d, "rollouts-mocka", "Progressing", 1, "StepPaused");
    for (next, batch) in [(2, "2"), (3, "3"), (4, "4")] {
        approve_to(&d, next);
        batch_has(&d, "2", batch, 1);
    }
    d.ok(&["rollout", "approve", "rollout/rollouts-mocka"]);
    wait_step(&d, "rollouts-mocka", "Healthy", 5, "Completed");
    for b in ["1", "2", "3", "4", "5"] {
        batch_has(&d, "2", b, 1);
    }
}
