//! Rollouts end to end through the CLI: the article's walkthrough (`lanes demo`),
//! continuous release, no failed request during approve, finalising and undo, a daemon
//! killed mid-release, and a Rollout deleted mid-release.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

fn wait_state(d: &Daemon, name: &str, phase: &str, state: Option<&str>) -> Value {
    eventually(Duration::from_secs(60), || {
        let r = rollout(d, name);
        let ok = r["status"]["phase"] == phase
            && state.is_none_or(|s| r["status"]["canaryStatus"]["currentStepState"] == s);
        ok.then_some(r)
    })
}

fn pod_images(d: &Daemon, app: &str) -> Vec<String> {
    let pods: Value =
        serde_json::from_str(&d.ok(&["get", "po", "-l", &format!("app={app}"), "-o", "json"]))
            .unwrap();
    pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            p["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn the_demo_reproduces_the_article_step_by_step() {
    let out = std::process::Command::new(bin())
        .arg("demo")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let checks: Vec<&str> = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with('✓') || l.trim_start().starts_with('✗'))
        .map(str::trim)
        .collect();
    let want = [
        "✓ mocka's DestinationRule has subsets [\"base\"]",
        "✓ mockb's DestinationRule has subsets [\"base\"]",
        "✓ mockc's DestinationRule has subsets [\"base\"]",
        "✓ base answers mocka v1 -> mockb v1 -> mockc v1, as the article shows",
        "✓ canary answers mocka v1 -> mockb v1 -> mockc v1, as the article shows",
        "✓ mocka's DestinationRule has subsets [\"base\", \"canary\"]",
        "✓ mockb's DestinationRule has subsets [\"base\"]",
        "✓ mockc's DestinationRule has subsets [\"base\"]",
        "✓ canary answers mocka v2 -> mockb v1 -> mockc v1, as the article shows",
        "✓ mocka's DestinationRule has subsets [\"base\", \"canary\"]",
        "✓ mockb's DestinationRule has subsets [\"base\", \"canary\"]",
        "✓ mockc's DestinationRule has subsets [\"base\", \"canary\"]",
        "✓ canary answers mocka v2 -> mockb v2 -> mockc v2, as the article shows",
        "✓ base answers mocka v1 -> mockb v1 -> mockc v1, as the article shows",
        "✓ mocka's DestinationRule has subsets [\"base\", \"canary\"]",
        "✓ mockb's DestinationRule has subsets [\"base\"]",
        "✓ mockc's DestinationRule has subsets [\"base\", \"canary\"]",
        "✓ base answers mocka v1 -> mockb v2 -> mockc v1, as the article shows",
        "✓ mocka's DestinationRule has subsets [\"base\"]",
        "✓ mockb's DestinationRule has subsets [\"base\"]",
        "✓ mockc's DestinationRule has subsets [\"base\"]",
        "✓ base answers mocka v2 -> mockb v2 -> mockc v2, as the article shows",
        "✓ canary answers mocka v3 -> mockb v2 -> mockc v2, as the article shows",
        "✓ base answers mocka v2 -> mockb v2 -> mockc v2, as the article shows",
        "✓ the canary Deployment of mocka v3 is gone",
        "✓ mocka's DestinationRule has subsets [\"base\"]",
        "✓ base answers mocka v2 -> mockb v2 -> mockc v2, as the article shows",
        "✓ canary answers mocka v2 -> mockb v2 -> mockc v2, as the article shows",
        "✓ all 28 checks hold: the article's walkthrough, reproduced",
    ];
    assert_eq!(checks, want, "{stdout}");
    // Every command is printed before its output.
    assert!(stdout.contains(
        "$ lanes rollout approve rollout/rollouts-mockb\nrollout/rollouts-mockb approved\n"
    ));
    assert!(stdout.contains("$ curl ${GATEWAY}/mock -H 'x-asm-prefer-tag: base' -H 'my-request-id: 9999'\n-> mocka(version: v1, ip: 127."));
}

#[test]
fn continuous_release_ends_on_the_newest_template() {
    let d = Daemon::start();
    d.ok(&["apply", "-f", "examples/seed/"]);
    wait_state(&d, "rollouts-mocka", "Healthy", None);
    patch_image(&d, "mocka-v1", "2.0", "");
    let v2 = wait_state(&d, "rollouts-mocka", "Progressing", Some("StepPaused"));
    let v2_revision = v2["status"]["canaryStatus"]["canaryRevision"].clone();
    assert!(v2_revision.is_string(), "{v2}");
    assert_eq!(
        pod_images(&d, "mocka")
            .iter()
            .filter(|i| *i == "2.0")
            .count(),
        1
    );
    // A newer template during the step: the release restarts at step 1 on v3. The
    // controller writes a reconcile's status after its actions, so v3's pods can be up
    // while the status still shows v2's pause: wait for the pause of v3's revision.
    d.ok(&[
        "set",
        "image",
        "deployment/mocka-v1",
        "default=registry.cn-beijing.aliyuncs.com/aliacs-app-catalog/go-http-sample:3.0",
    ]);
    let r = eventually(Duration::from_secs(60), || {
        let r = rollout(&d, "rollouts-mocka");
        let images = pod_images(&d, "mocka");
        (r["status"]["canaryStatus"]["currentStepState"] == "StepPaused"
            && r["status"]["canaryStatus"]["canaryRevision"] != v2_revision
            && images.iter().filter(|i| *i == "3.0").count() == 1
            && !images.iter().any(|i| i == "2.0"))
        .then_some(r)
    });
    assert_eq!(r["status"]["canaryStatus"]["currentStepIndex"], 1);
    let deploys = d.ok(&["get", "deploy", "-o", "name"]);
    assert_eq!(
        deploys
            .lines()
            .filter(|l| l.starts_with("deployment/mocka-v1-"))
            .count(),
        1,
        "{deploys}"
    );
    // The canary lane serves v3 once the data plane has the new canary pod's endpoint
    // (a step without traffic does not wait for routing).
    eventually(Duration::from_secs(30), || {
        let (_, _, body) = http_get(
            &d.gateway,
            "/mock",
            &[("x-asm-prefer-tag", "canary"), ("my-request-id", "c1")],
        );
        (versions(&body) == ["v3", "v1", "v1"]).then_some(())
    });
    // Approve: v3 becomes the baseline.
    d.ok(&["rollout", "approve", "rollout/rollouts-mocka"]);
    wait_state(&d, "rollouts-mocka", "Healthy", None);
    eventually(Duration::from_secs(60), || {
        (pod_images(&d, "mocka") == ["3.0"]).then_some(())
    });
    // Approving again is refused, with the reason.
    let out = d.lanes(&["rollout", "approve", "rollout/rollouts-mocka"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("only a release waiting in StepPaused can be approved")
    );
}

#[test]
fn no_request_fails_during_approve_finalising_and_undo() {
    let d = Daemon::start();
    d.ok(&["apply", "-f", "examples/seed/"]);
    wait_state(&d, "rollouts-mockb", "Healthy", None);
    routed(&d);
    let load = SteadyLoad::start(&d.gateway, &["base", "canary"], |_, status, body| {
        status == 200 && versions(body).len() == 3
    });
    // A release approved and finalised...
    patch_image(&d, "mockb-v1", "2.0", "");
    wait_state(&d, "rollouts-mockb", "Progressing", Some("StepPaused"));
    std::thread::sleep(Duration::from_millis(500));
    d.ok(&["rollout", "approve", "rollout/rollouts-mockb"]);
    wait_state(&d, "rollouts-mockb", "Healthy", None);
    eventually(Duration::from_secs(60), || {
        (pod_images(&d, "mockb") == ["2.0"]).then_some(())
    });
    // ...and one undone.
    patch_image(&d, "mockc-v1", "2.0", "");
    wait_state(&d, "rollouts-mockc", "Progressing", Some("StepPaused"));
    std::thread::sleep(Duration::from_millis(500));
    d.ok(&["rollout", "undo", "rollout/rollouts-mockc"]);
    wait_state(&d, "rollouts-mockc", "Healthy", None);
    eventually(Duration::from_secs(60), || {
        (pod_images(&d, "mockc") == ["1.0"]).then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    let (ok, failures) = load.finish();
    assert!(ok > 100, "only {ok} requests");
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    // The undone release left the workload on its stable template and no canary.
    let dep: Value =
        serde_json::from_str(&d.ok(&["get", "deploy", "mockc-v1", "-o", "json"])).unwrap();
    assert!(
        dep["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap()
            .ends_with(":1.0")
    );
    assert_ne!(dep["spec"]["paused"], true);
    assert!(
        !d.ok(&["get", "deploy", "-o", "name"])
            .contains("deployment/mockc-v1-")
    );
}

#[test]
fn a_release_survives_kill_9_of_the_daemon_and_completes_on_approval() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let d = Daemon::start_in(&state, &[]);
    d.ok(&["apply", "-f", "examples/seed/"]);
    wait_state(&d, "rollouts-mocka", "Healthy", None);
    patch_image(&d, "mocka-v1", "2.0", "");
    let before = wait_state(&d, "rollouts-mocka", "Progressing", Some("StepPaused"));
    d.kill9();
    let d = Daemon::start_in(&state, &[]);
    // It resumes where it stood: same step, same canary revision, the canary pod back.
    let after = wait_state(&d, "rollouts-mocka", "Progressing", Some("StepPaused"));
    assert_eq!(
        after["status"]["canaryStatus"]["canaryRevision"],
        before["status"]["canaryStatus"]["canaryRevision"]
    );
    assert_eq!(after["status"]["canaryStatus"]["currentStepIndex"], 1);
    eventually(Duration::from_secs(60), || {
        let (_, _, body) = http_get(&d.gateway, "/mock", &[("x-asm-prefer-tag", "canary")]);
        (versions(&body) == ["v2", "v1", "v1"]).then_some(())
    });
    d.ok(&["rollout", "approve", "rollout/rollouts-mocka"]);
    wait_state(&d, "rollouts-mocka", "Healthy", None);
    eventually(Duration::from_secs(60), || {
        let (_, _, body) = http_get(&d.gateway, "/mock", &[("x-asm-prefer-tag", "base")]);
        (versions(&body) == ["v2", "v1", "v1"]).then_some(())
    });
    let status = d.ok(&["rollout", "status", "rollout/rollouts-mocka"]);
    assert!(status.contains("Healthy"), "{status}");
}

#[test]
fn deleting_a_rollout_mid_release_restores_the_stable_deployment() {
    let d = Daemon::start();
    d.ok(&["apply", "-f", "examples/seed/"]);
    wait_state(&d, "rollouts-mockc", "Healthy", None);
    patch_image(&d, "mockc-v1", "2.0", "");
    wait_state(&d, "rollouts-mockc", "Progressing", Some("StepPaused"));
    d.ok(&["delete", "rollout", "rollouts-mockc"]);
    // The canary goes, the Deployment is resumed and unmarked, and rolls as usual.
    eventually(Duration::from_secs(60), || {
        let dep: Value =
            serde_json::from_str(&d.ok(&["get", "deploy", "mockc-v1", "-o", "json"])).unwrap();
        let resumed = dep["spec"]["paused"] != true
            && dep["metadata"]["annotations"]
                .get("lanes.dev/stable-template")
                .is_none();
        let no_canary = !d
            .ok(&["get", "deploy", "-o", "name"])
            .contains("deployment/mockc-v1-");
        (resumed && no_canary).then_some(())
    });
    eventually(Duration::from_secs(60), || {
        (pod_images(&d, "mockc") == ["2.0"]).then_some(())
    });
}

/// The Events the API holds about Rollout `name`: (reason, note) pairs.
fn rollout_events(d: &Daemon, name: &str) -> Vec<(String, String)> {
    let bearer = format!("Bearer {}", d.token());
    let (_, _, body) = common::http_get(
        &d.api,
        "/apis/events.k8s.io/v1/namespaces/default/events",
        &[("authorization", &bearer)],
    );
    let list: Value = serde_json::from_str(&body).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["regarding"]["name"] == name)
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or("").to_string();
            (s("reason"), s("note"))
        })
        .collect()
}

/// Bad input to the rollout controller: a Rollout naming a missing workload and a
/// second Rollout on a workload that has one each get a condition and an Event saying
/// what and where, and touch nothing: the first Rollout's release runs as if they were
/// not there.
#[test]
fn a_rollout_on_a_missing_workload_says_so_and_one_on_a_taken_workload_is_refused() {
    let d = Daemon::start();
    d.ok(&["apply", "-f", "examples/seed/"]);
    wait_state(&d, "rollouts-mocka", "Healthy", None);
    let extra = |name: &str, workload: &str| {
        format!(
            "apiVersion: rollouts.kruise.io/v1beta1\nkind: Rollout\nmetadata:\n  name: {name}\nspec:\n  workloadRef:\n    apiVersion: apps/v1\n    kind: Deployment\n    name: {workload}\n  strategy:\n    canary:\n      enableExtraWorkloadForCanary: true\n      steps:\n        - replicas: 1\n"
        )
    };
    // A second Rollout on a workload is refused, as Kruise's webhook refuses it (on a
    // cluster where one gets past admission, it says Conflict: the operator's tests).
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("again.yaml");
    std::fs::write(&f, extra("rollouts-mocka-again", "mocka-v1")).unwrap();
    let out = d.lanes(&["apply", "-f", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "spec.workloadRef: Rollout \"rollouts-mocka\" already releases Deployment \"mocka-v1\""
        ),
        "{err}"
    );
    apply_text(&d, &extra("rollouts-ghost", "nothing-here"));
    let says = |name: &str, reason: &str, what: &str| {
        let r = eventually(Duration::from_secs(30), || {
            let r = rollout(&d, name);
            (r["status"]["phase"] == "Initial").then_some(r)
        });
        let message = r["status"]["message"].as_str().unwrap().to_string();
        assert!(message.contains(what), "{message}");
        let c = &r["status"]["conditions"][0];
        assert_eq!(c["type"], "Progressing");
        assert_eq!(c["reason"], reason, "{c}");
        assert_eq!(c["message"], message.as_str());
        let events = eventually(Duration::from_secs(30), || {
            let e = rollout_events(&d, name);
            (!e.is_empty()).then_some(e)
        });
        assert!(
            events.iter().any(|(_, note)| note == &message),
            "{events:?}"
        );
    };
    says(
        "rollouts-ghost",
        "Initializing",
        "spec.workloadRef: Deployment default/nothing-here not found",
    );
    // The first Rollout's release runs alone: one canary, made by it.
    patch_image(&d, "mocka-v1", "2.0", "");
    let r = wait_state(&d, "rollouts-mocka", "Progressing", Some("StepPaused"));
    assert_eq!(r["status"]["canaryStatus"]["canaryReplicas"], 1);
    let canaries: Vec<Value> =
        serde_json::from_str::<Value>(&d.ok(&["get", "deploy", "-o", "json"])).unwrap()["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| {
                x["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .starts_with("mocka-v1-")
            })
            .cloned()
            .collect();
    assert_eq!(canaries.len(), 1);
    assert_eq!(
        canaries[0]["metadata"]["ownerReferences"][0]["name"],
        "rollouts-mocka"
    );
    assert!(
        d.lanes(&["get", "rollout", "rollouts-mocka-again"])
            .status
            .code()
            == Some(1)
    );
}
