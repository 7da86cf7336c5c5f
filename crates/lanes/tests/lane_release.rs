//! Lane releases end to end against `lanes up`: the article's three releases as one
//! LaneRelease (one approval promotes all three, a kill -9 mid-release resumes at the
//! same step), a broken member rolling every member back, a chain that fails only
//! across services rolled back by the lane's end-to-end analysis, a traffic step's
//! share of the group's ingress, and the refusals.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const RELEASE: &str = r#"
apiVersion: lanes.dev/v1alpha1
kind: LaneRelease
metadata:
  name: checkout-v2
spec:
  laneGroup: rollout
  lane: canary
  rollouts: [rollouts-mocka, rollouts-mockb, rollouts-mockc]
  steps:
    - pause: {}
"#;

/// The article's Rollout of `svc`, its canary judged on its own every 2 s by a success
/// rate of at least 0.95 (metric `metric`), with `limits` (YAML flow-map entries).
fn judged_rollout(svc: &str, limits: &str, metric: &str) -> String {
    format!(
        "apiVersion: rollouts.kruise.io/v1beta1
kind: Rollout
metadata: {{name: rollouts-{svc}}}
spec:
  workloadRef: {{apiVersion: apps/v1, kind: Deployment, name: {svc}-v1}}
  strategy:
    canary:
      enableExtraWorkloadForCanary: true
      steps: [{{replicas: 1}}]
      patchPodTemplateMetadata: {{labels: {{ASM_TRAFFIC_TAG: canary}}}}
      analysis: {{interval: 2s, {limits}, metrics: [{{name: {metric}, successRate: {{min: 0.95}}}}]}}
"
    )
}

/// Waits for Rollout `name` to be back to `Healthy`, its message saying it was rolled
/// back and naming `why`.
fn rolled_back_saying(d: &Daemon, name: &str, why: &str) {
    let ro = eventually(Duration::from_secs(60), || {
        let ro = rollout(d, name);
        (ro["status"]["phase"] == "Healthy").then_some(ro)
    });
    let said = ro["status"]["message"].as_str().unwrap_or("");
    assert!(
        said.starts_with("rolled back:") && said.contains(why),
        "{name}: {said}"
    );
}

/// Ends `load`, which ran long enough, with no base-lane request failed.
fn base_never_failed(load: SteadyLoad) {
    let (ok, failures) = load.finish();
    assert!(ok > 50, "only {ok} requests");
    assert!(
        failures.is_empty(),
        "the base lane failed {} times: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
}

fn release(d: &Daemon) -> Value {
    release_named(d, "checkout-v2")
}

fn release_named(d: &Daemon, name: &str) -> Value {
    serde_json::from_str(&d.ok(&["get", "lanerelease", name, "-o", "json"])).unwrap()
}

fn wait_release(d: &Daemon, limit: u64, ok: impl Fn(&Value) -> bool) -> Value {
    wait_named(d, "checkout-v2", limit, ok)
}

fn wait_named(d: &Daemon, name: &str, limit: u64, ok: impl Fn(&Value) -> bool) -> Value {
    eventually(Duration::from_secs(limit), || {
        let r = release_named(d, name);
        ok(&r).then_some(r)
    })
}

fn waiting_for_approval(r: &Value) -> bool {
    r["status"]["phase"] == "Progressing"
        && r["status"]["currentStepIndex"] == 1
        && r["status"]["currentStepState"] == "StepPaused"
}

/// The seed, settled, with the LaneRelease over its three Rollouts.
fn seeded(d: &Daemon) {
    d.ok(&["apply", "-f", "examples/seed/"]);
    apply_text(d, RELEASE);
    settled(d, 3);
    routed(d);
}

/// The canary subsets of the generated DestinationRules, by service.
fn canary_subsets(d: &Daemon) -> Vec<String> {
    let drs: Value =
        serde_json::from_str(&d.ok(&["get", "dr", "-n", "istio-system", "-o", "json"])).unwrap();
    let mut out = Vec::new();
    for dr in drs["items"].as_array().unwrap() {
        for s in dr["spec"]["subsets"].as_array().into_iter().flatten() {
            if s["name"] == "canary" {
                out.push(dr["spec"]["host"].as_str().unwrap_or("").to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn the_articles_release_is_one_lane_release_promoted_by_one_approval() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let d = Daemon::start_in(&state, &[]);
    seeded(&d);
    for svc in ["mocka-v1", "mockb-v1", "mockc-v1"] {
        patch_image(&d, svc, "2.0", "");
    }
    let before = wait_release(&d, 90, waiting_for_approval);
    let members: Vec<&str> = before["status"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["rollout"].as_str().unwrap())
        .collect();
    assert_eq!(
        members,
        ["rollouts-mocka", "rollouts-mockb", "rollouts-mockc"]
    );
    assert!(
        before["status"]["members"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["state"] == "Ready"),
        "{before}"
    );
    // kill -9 mid-release: it resumes at the same step with the same members.
    d.kill9();
    let d = Daemon::start_in(&state, &[]);
    let after = wait_release(&d, 90, waiting_for_approval);
    assert_eq!(after["status"]["members"], before["status"]["members"]);
    eventually(Duration::from_secs(60), || {
        let (_, _, body) = http_get(&d.gateway, "/mock", &[("x-asm-prefer-tag", "canary")]);
        (versions(&body) == ["v2", "v2", "v2"]).then_some(())
    });
    let subsets = eventually(Duration::from_secs(30), || {
        let s = canary_subsets(&d);
        (s.len() == 3).then_some(s)
    });
    assert_eq!(
        subsets,
        [
            "mocka.default.svc.cluster.local",
            "mockb.default.svc.cluster.local",
            "mockc.default.svc.cluster.local"
        ]
    );
    let load = SteadyLoad::start(&d.gateway, &["base", "canary"], |_, status, body| {
        status == 200 && versions(body).len() == 3
    });
    // A member is not approved on its own.
    let alone = d.lanes(&["rollout", "approve", "rollout/rollouts-mockb"]);
    assert!(!alone.status.success());
    let err = String::from_utf8_lossy(&alone.stderr);
    assert!(err.contains("member of LaneRelease checkout-v2"), "{err}");
    let status = d.ok(&["release", "status", "checkout-v2"]);
    assert!(status.contains("Progressing step 1/1"), "{status}");
    // One approval promotes all three.
    let out = d.ok(&["release", "approve", "lanerelease/checkout-v2"]);
    assert!(out.contains("approved"), "{out}");
    // The canary subsets leave the lane in one compile round, before any canary goes:
    // every look (the canary Deployments read first, then the DestinationRules) that
    // misses a canary finds no canary subset left.
    let canaries: Vec<String> = before["status"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let workload = m["rollout"].as_str().unwrap().replace("rollouts-", "") + "-v1";
            format!("{workload}-{}", m["revision"].as_str().unwrap())
        })
        .collect();
    let mut looks = Vec::new();
    let done = eventually(Duration::from_secs(120), || {
        let deployments = d.ok(&["get", "deployments", "-o", "name"]);
        let up = canaries
            .iter()
            .filter(|c| deployments.lines().any(|l| l.rsplit('/').next() == Some(c)))
            .count();
        looks.push((up, canary_subsets(&d).len()));
        let r = release_named(&d, "checkout-v2");
        (r["status"]["phase"] == "Completed").then_some(r)
    });
    assert_eq!(looks[0], (3, 3), "{looks:?}");
    assert!(
        looks.iter().all(|(up, subsets)| *up == 3 || *subsets == 0),
        "{looks:?}"
    );
    assert_eq!(looks.last(), Some(&(0, 0)), "{looks:?}");
    eventually(Duration::from_secs(60), || {
        let (_, _, body) = http_get(&d.gateway, "/mock", &[("x-asm-prefer-tag", "base")]);
        (versions(&body) == ["v2", "v2", "v2"]).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    let (ok, failures) = load.finish();
    assert!(ok > 100, "only {ok} requests");
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    for m in done["status"]["members"].as_array().unwrap() {
        assert_eq!(m["state"], "Promoted", "{m}");
    }
    for r in ["rollouts-mocka", "rollouts-mockb", "rollouts-mockc"] {
        assert_eq!(rollout(&d, r)["status"]["phase"], "Healthy");
    }
    let table = d.ok(&["get", "lanereleases"]);
    assert!(
        table.contains("Completed")
            && table.contains("rollouts-mocka,rollouts-mockb,rollouts-mockc"),
        "{table}"
    );
}

#[test]
fn a_broken_member_rolls_every_member_back_and_the_base_never_fails() {
    let d = Daemon::start();
    d.ok(&["apply", "-f", "examples/seed/"]);
    // mockc judged on its own: half its answers fail.
    apply_text(
        &d,
        &judged_rollout("mockc", "failureLimit: 1, minRequests: 10", "success-rate"),
    );
    apply_text(&d, RELEASE);
    settled(&d, 3);
    routed(&d);
    let load = SteadyLoad::start(&d.gateway, &["base", "canary"], |lane, status, body| {
        lane == "canary" || (status == 200 && versions(body).len() == 3)
    });
    patch_image(&d, "mocka-v1", "2.0", "");
    patch_image(&d, "mockb-v1", "2.0", "");
    patch_image(
        &d,
        "mockc-v1",
        "2.0",
        r#", "env": [{"name": "FAIL_RATE", "value": "0.5"}]"#,
    );
    let r = wait_release(&d, 120, |r| r["status"]["phase"] == "RolledBack");
    let message = r["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("member rollouts-mockc failed") && message.contains("success-rate"),
        "{message}"
    );
    for m in r["status"]["members"].as_array().unwrap() {
        let state = match m["rollout"].as_str().unwrap() {
            "rollouts-mockc" => "Failed",
            _ => "RolledBack",
        };
        assert_eq!(m["state"], state, "{m}");
    }
    // Every member is back on v1, its status saying why, naming mockc.
    for name in ["rollouts-mocka", "rollouts-mockb"] {
        rolled_back_saying(&d, name, "rollouts-mockc");
        let events = d.ok(&["get", "events", "-o", "json"]);
        assert!(
            events.contains("LaneRelease checkout-v2 rolls back every member"),
            "no Event says why"
        );
    }
    eventually(Duration::from_secs(60), || {
        let (_, _, body) = http_get(&d.gateway, "/mock", &[("x-asm-prefer-tag", "canary")]);
        (versions(&body) == ["v1", "v1", "v1"]).then_some(())
    });
    base_never_failed(load);
}

#[test]
fn a_chain_that_fails_only_across_services_is_rolled_back_by_the_lane_analysis() {
    let d = Daemon::start();
    d.ok(&["apply", "-f", "examples/seed/"]);
    // mockb judged on its own too: its canary answers no 5xx, so it passes.
    apply_text(
        &d,
        &judged_rollout("mockb", "minRequests: 5", "mockb-success"),
    );
    let judged = r#"
apiVersion: lanes.dev/v1alpha1
kind: LaneRelease
metadata:
  name: checkout-v2
spec:
  laneGroup: rollout
  lane: canary
  rollouts: [rollouts-mockb, rollouts-mockc]
  steps:
    - pause: {}
  analysis:
    interval: 2s
    failureLimit: 1
    minRequests: 10
    metrics:
      - name: lane-success
        successRate: {min: 0.95}
"#;
    apply_text(&d, judged);
    settled(&d, 3);
    routed(&d);
    let load = SteadyLoad::start(&d.gateway, &["base", "canary"], |lane, status, body| {
        lane == "canary" || (status == 200 && versions(body).len() == 3)
    });
    // mockb v2 no longer serves the path mocka (v1) calls: it answers 404, no failure of
    // its own, and mocka's answer to the lane's users is a 502.
    patch_image(
        &d,
        "mockb-v1",
        "2.0",
        r#", "env": [{"name": "SERVE_PATHS", "value": "/v2/"}]"#,
    );
    patch_image(&d, "mockc-v1", "2.0", "");
    let r = wait_release(&d, 150, |r| r["status"]["phase"] == "RolledBack");
    let message = r["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("lane \"canary\" failed its end-to-end analysis")
            && message.contains("lane-success"),
        "{message}"
    );
    let analysis = &r["status"]["analysis"];
    assert!(analysis["failures"].as_u64().unwrap() >= 2, "{analysis}");
    // No member failed on its own: the lane did. mockb's own analysis passed.
    for m in r["status"]["members"].as_array().unwrap() {
        assert_eq!(m["state"], "RolledBack", "{m}");
    }
    for name in ["rollouts-mockb", "rollouts-mockc"] {
        rolled_back_saying(&d, name, "end-to-end analysis");
    }
    let mockb = rollout(&d, "rollouts-mockb");
    let passed = mockb["status"]["analysis"]["passes"].as_u64().unwrap_or(0);
    assert!(passed >= 1, "mockb's own analysis: {}", mockb["status"]);
    let status = d.ok(&["release", "status", "checkout-v2"]);
    assert!(
        status.contains("lane \"canary\", end to end:") && status.contains("lane-success Failed"),
        "{status}"
    );
    eventually(Duration::from_secs(60), || {
        let (_, _, body) = http_get(&d.gateway, "/mock", &[("x-asm-prefer-tag", "canary")]);
        (versions(&body) == ["v1", "v1", "v1"]).then_some(())
    });
    base_never_failed(load);
}

/// The lane's weight in the release's generated ingress VirtualService.
fn lane_weight(d: &Daemon) -> Value {
    let vs: Value = serde_json::from_str(&d.ok(&[
        "get",
        "vs",
        "swimlane-ingress-vs-rollout-release-lanerelease-default-checkout-v2",
        "-n",
        "istio-system",
        "-o",
        "json",
    ]))
    .unwrap();
    vs["spec"]["http"][0]["route"][0]["weight"].clone()
}

/// How many of `n` requests that name no lane (trace ids `prefix-0`..) the whole chain
/// answered from the new versions.
fn in_new_versions(d: &Daemon, prefix: &str, n: usize) -> usize {
    (0..n)
        .filter(|i| {
            let id = format!("{prefix}-{i}");
            let (status, _, body) = http_get(&d.gateway, "/mock", &[("my-request-id", &id)]);
            assert_eq!(status, 200, "{id}: {body}");
            let v = versions(&body);
            assert!(
                v == ["v1", "v1", "v1"] || v == ["v2", "v2", "v2"],
                "{id}: {body}"
            );
            v[0] == "v2"
        })
        .count()
}

#[test]
fn a_release_with_a_traffic_step_takes_that_share_of_the_groups_ingress() {
    let d = Daemon::start();
    d.ok(&["apply", "-f", "examples/seed/"]);
    let stepped = RELEASE.replace("    - pause: {}", "    - traffic: 30%\n    - pause: {}");
    apply_text(&d, &stepped);
    settled(&d, 3);
    // At rest the release's route holds nothing: every request is the baseline's.
    eventually(Duration::from_secs(60), || {
        (http_get(&d.gateway, "/mock", &[]).0 == 200).then_some(())
    });
    assert_eq!(in_new_versions(&d, "rest", 50), 0);
    for svc in ["mocka-v1", "mockb-v1", "mockc-v1"] {
        patch_image(&d, svc, "2.0", "");
    }
    // Step 1 routes 30% of the requests that name no lane into the canary lane; step 2
    // holds that share until the release is approved.
    wait_release(&d, 90, |r| {
        r["status"]["phase"] == "Progressing"
            && r["status"]["currentStepIndex"] == 2
            && r["status"]["currentStepState"] == "StepPaused"
    });
    // Once every member's canary is in the routes (two passes alike).
    eventually(Duration::from_secs(30), || {
        let first = in_new_versions(&d, "warm", 100);
        (first > 0 && in_new_versions(&d, "warm", 100) == first).then_some(())
    });
    let share = in_new_versions(&d, "t", 400);
    assert!(
        (80..=160).contains(&share),
        "{share} of 400 entered the lane"
    );
    // Sticky: the same trace ids enter the same lanes again.
    assert_eq!(in_new_versions(&d, "t", 400), share);
    assert_eq!(lane_weight(&d), 30);
    d.ok(&["release", "approve", "checkout-v2"]);
    wait_release(&d, 120, |r| r["status"]["phase"] == "Completed");
    // Promoted: every request is the new versions', through the baseline lane.
    let all = eventually(Duration::from_secs(60), || {
        let n = in_new_versions(&d, "after", 50);
        (n == 50).then_some(n)
    });
    assert_eq!(all, 50);
    assert_eq!(lane_weight(&d), 0);
}

#[test]
fn a_release_paused_resumed_and_undone_from_the_cli() {
    let d = Daemon::start();
    seeded(&d);
    for svc in ["mocka-v1", "mockb-v1", "mockc-v1"] {
        patch_image(&d, svc, "2.0", "");
    }
    wait_release(&d, 90, waiting_for_approval);
    // Paused: an approval is taken, but the release does not go on.
    let out = d.ok(&["release", "pause", "checkout-v2"]);
    assert!(out.contains("lanerelease/checkout-v2 paused"), "{out}");
    assert_eq!(release(&d)["spec"]["paused"], true);
    let again = d.ok(&["release", "pause", "checkout-v2"]);
    assert!(again.contains("already paused"), "{again}");
    d.ok(&["release", "approve", "checkout-v2"]);
    let held = wait_release(&d, 30, |r| {
        r["status"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("paused in step 1/1"))
    });
    assert_eq!(held["status"]["phase"], "Progressing", "{held}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(release(&d)["status"]["phase"], "Progressing");
    // Resumed: the approval given while it was paused takes effect.
    d.ok(&["release", "resume", "checkout-v2"]);
    assert_eq!(release(&d)["spec"]["paused"], false);
    let promoted = wait_release(&d, 60, |r| r["status"]["phase"] != "Progressing");
    assert!(
        ["Promoting", "Finishing", "Completed"]
            .contains(&promoted["status"]["phase"].as_str().unwrap()),
        "{promoted}"
    );
    // A release past its promotion cannot be undone.
    let late = d.lanes(&["release", "undo", "checkout-v2"]);
    assert!(!late.status.success());
    let err = String::from_utf8_lossy(&late.stderr);
    assert!(err.contains("cannot be undone"), "{err}");
    wait_release(&d, 120, |r| r["status"]["phase"] == "Completed");
    // The next release, undone while it waits: every member goes back.
    for svc in ["mocka-v1", "mockb-v1", "mockc-v1"] {
        patch_image(&d, svc, "3.0", "");
    }
    wait_release(&d, 90, waiting_for_approval);
    let out = d.ok(&["release", "undo", "checkout-v2"]);
    assert!(out.contains("undone"), "{out}");
    let r = wait_release(&d, 120, |r| r["status"]["phase"] == "RolledBack");
    assert!(
        r["status"]["message"].as_str().unwrap().contains("undone"),
        "{r}"
    );
    eventually(Duration::from_secs(60), || {
        let (_, _, body) = http_get(&d.gateway, "/mock", &[("x-asm-prefer-tag", "canary")]);
        (versions(&body) == ["v2", "v2", "v2"]).then_some(())
    });
    for svc in ["mocka", "mockb", "mockc"] {
        let ro = eventually(Duration::from_secs(60), || {
            let ro = rollout(&d, &format!("rollouts-{svc}"));
            (ro["status"]["phase"] == "Healthy").then_some(ro)
        });
        assert!(ro["status"]["message"].as_str().is_some(), "{ro}");
        let w: Value =
            serde_json::from_str(&d.ok(&["get", "deployment", &format!("{svc}-v1"), "-o", "json"]))
                .unwrap();
        let image = w["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap();
        assert!(image.ends_with(":2.0"), "{svc}: {image}");
    }
}

#[test]
fn a_release_naming_a_missing_rollout_or_a_claimed_one_touches_nothing() {
    let d = Daemon::start();
    d.ok(&["apply", "-f", "examples/seed/"]);
    apply_text(&d, RELEASE);
    apply_text(
        &d,
        &RELEASE.replace("checkout-v2", "second").replace(
            "[rollouts-mocka, rollouts-mockb, rollouts-mockc]",
            "[rollouts-mockb, rollouts-nope]",
        ),
    );
    let second = wait_named(&d, "second", 30, |r| r["status"]["phase"] == "Invalid");
    let why = second["status"]["message"].as_str().unwrap();
    assert!(why.contains("rollouts-nope not found"), "{why}");
    // Fix the missing one: the claim by the older release is what stands.
    apply_text(
        &d,
        &RELEASE.replace("checkout-v2", "second").replace(
            "[rollouts-mocka, rollouts-mockb, rollouts-mockc]",
            "[rollouts-mockb]",
        ),
    );
    let second = wait_named(&d, "second", 30, |r| {
        let m = r["status"]["message"].as_str().unwrap_or("");
        r["status"]["phase"] == "Invalid" && m.contains("claimed by an older")
    });
    assert!(
        second["status"]["message"]
            .as_str()
            .unwrap()
            .contains("rollouts-mockb (by LaneRelease checkout-v2)")
    );
    // A lane that does not exist: invalid, naming the field and the group's lanes.
    apply_text(
        &d,
        &RELEASE
            .replace("checkout-v2", "typo")
            .replace("lane: canary", "lane: canry")
            .replace(
                "[rollouts-mocka, rollouts-mockb, rollouts-mockc]",
                "[rollouts-nope]",
            ),
    );
    let typo = wait_named(&d, "typo", 30, |r| r["status"]["phase"] == "Invalid");
    let why = typo["status"]["message"].as_str().unwrap();
    assert!(
        why.starts_with(
            "spec.lane: lane group \"rollout\" has no lane \"canry\" (it has base, canary)"
        ),
        "{why}"
    );
    // A refused field is a 422 naming it.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.yaml");
    std::fs::write(
        &f,
        RELEASE
            .replace("checkout-v2", "third")
            .replace("- pause: {}", "- traffic: 0%"),
    )
    .unwrap();
    let out = d.lanes(&["apply", "-f", f.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("spec.steps[0].traffic"), "{err}");
}
