//! The rollout scenarios as one table, run against both drivers — the embedded mode
//! (store, API server with its admission, embedded controller) and the operator (mocked
//! Kubernetes API server, the operator's reconcile) — expecting the same transitions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use lanes_rollout::STABLE_TEMPLATE;
use serde_json::{Value, json};

/// What a row expects after its steps.
#[derive(Debug, Clone, PartialEq)]
struct Expect {
    /// Rollout phase, step index and step state (`None`: the Rollout is gone).
    rollout: Option<(&'static str, i32, &'static str)>,
    /// Image and replicas of each canary Deployment.
    canaries: Vec<(&'static str, i64)>,
    /// Whether the workload is paused (`None`: either; between releases the operator
    /// holds it paused where the embedded mode's admission needs no hold).
    paused: Option<bool>,
    /// Whether the workload carries the release's stable template.
    marked: bool,
}

fn rows() -> Vec<(&'static str, Vec<Step>, Expect)> {
    use Step::*;
    let e = |rollout, canaries: Vec<(&'static str, i64)>, paused, marked| Expect {
        rollout,
        canaries,
        paused,
        marked,
    };
    let progressing = |i, state| Some(("Progressing", i, state));
    let healthy = Some(("Healthy", 2, "Completed"));
    #[rustfmt::skip]
    let rows = vec![
        ("steady: the workload runs, the Rollout is healthy",
         vec![Apply(workload("a:1")), Apply(rollout()), Settle, Reconcile(0), Reconcile(0)],
         e(healthy, vec![], None, false)),
        ("new image: the workload is paused and a 1-replica canary created",
         vec![SetImage("a:2"), Reconcile(0)],
         e(progressing(1, "StepUpgrade"), vec![("a:2", 1)], Some(true), true)),
        ("canary ready: waits in step 1 for approval",
         vec![Settle, Reconcile(0), Reconcile(5)],
         e(progressing(1, "StepPaused"), vec![("a:2", 1)], Some(true), true)),
        ("approved: step 2 scales the canary to 50% of 4",
         vec![Approve, Reconcile(10)],
         e(progressing(2, "StepUpgrade"), vec![("a:2", 2)], Some(true), true)),
        ("step 2 ready: a timed pause of 30 s",
         vec![Settle, Reconcile(10), Reconcile(30)],
         e(progressing(2, "StepPaused"), vec![("a:2", 2)], Some(true), true)),
        ("pause over: finalising, the stable Deployment rolls",
         vec![Reconcile(41)],
         e(progressing(2, "Completed"), vec![("a:2", 2)], Some(false), true)),
        ("stable rolled: canary deleted, marks removed, healthy",
         vec![Settle, Reconcile(42)],
         e(healthy, vec![], None, false)),
        ("a second release starts",
         vec![SetImage("a:3"), Reconcile(50), Settle, Reconcile(51)],
         e(progressing(1, "StepPaused"), vec![("a:3", 1)], Some(true), true)),
        ("undo (the stable image back): the release is cancelled",
         vec![SetImage("a:2"), Reconcile(52)],
         e(healthy, vec![], None, false)),
        ("a third release",
         vec![SetImage("a:5"), Reconcile(60), Settle, Reconcile(61)],
         e(progressing(1, "StepPaused"), vec![("a:5", 1)], Some(true), true)),
        ("continuous release: a newer template restarts at step 1, the older canary goes",
         vec![SetImage("a:6"), Reconcile(62)],
         e(progressing(1, "StepUpgrade"), vec![("a:6", 1)], Some(true), true)),
        ("paused by the user: an approval waits",
         vec![Settle, Reconcile(63), PatchRollout(json!({"spec": {"strategy": {"paused": true}}})),
              Approve, Reconcile(64), Settle, Reconcile(65)],
         e(progressing(1, "StepReady"), vec![("a:6", 1)], Some(true), true)),
        ("resumed: the approval takes effect",
         vec![PatchRollout(json!({"spec": {"strategy": {"paused": false}}})), Reconcile(66)],
         e(progressing(2, "StepUpgrade"), vec![("a:6", 2)], Some(true), true)),
        ("plan change mid-release: the step is redone under the new plan",
         vec![PatchRollout(json!({"spec": {"strategy": {"canary": {"steps": [
              {"replicas": 1}, {"replicas": 3}]}}}})), Reconcile(67)],
         e(progressing(2, "StepUpgrade"), vec![("a:6", 3)], Some(true), true)),
        ("disabled: the release stands down, the workload is let go",
         vec![PatchRollout(json!({"spec": {"disabled": true}})), Reconcile(68)],
         e(Some(("Disabled", 0, "")), vec![], Some(false), false)),
        ("enabled again: healthy on what runs",
         vec![Settle, PatchRollout(json!({"spec": {"disabled": false}})), Reconcile(69)],
         e(healthy, vec![], None, false)),
        ("a fourth release",
         vec![Settle, Reconcile(70), SetImage("a:7"), Reconcile(71), Settle, Reconcile(72)],
         e(progressing(1, "StepPaused"), vec![("a:7", 1)], Some(true), true)),
        ("the Rollout deleted mid-release: canary gone, workload released",
         vec![DeleteRollout, Reconcile(80)],
         e(None, vec![], Some(false), false)),
    ];
    rows
}

async fn observe<D: Driver>(d: &D) -> Expect {
    let rollout = d.rollout().await.map(|r| {
        let s = |p: &str| -> &'static str {
            Box::leak(
                r.pointer(p)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
                    .into_boxed_str(),
            )
        };
        (
            s("/status/phase"),
            r.pointer("/status/canaryStatus/currentStepIndex")
                .and_then(Value::as_i64)
                .unwrap_or(0) as i32,
            s("/status/canaryStatus/currentStepState"),
        )
    });
    let deployments = d.deployments().await;
    let mut canaries: Vec<(&'static str, i64)> = deployments
        .iter()
        .filter(|d| {
            d.pointer("/metadata/labels/rollouts.kruise.io~1canary-deployment")
                .is_some()
        })
        .map(|d| {
            let image = d["spec"]["template"]["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let image: &'static str = Box::leak(image.into_boxed_str());
            (image, d["spec"]["replicas"].as_i64().unwrap_or(1))
        })
        .collect();
    canaries.sort();
    let w = deployments
        .iter()
        .find(|d| d["metadata"]["name"] == WORKLOAD)
        .unwrap();
    Expect {
        rollout,
        canaries,
        paused: Some(w["spec"]["paused"].as_bool().unwrap_or(false)),
        marked: w["metadata"]["annotations"].get(STABLE_TEMPLATE).is_some(),
    }
}

async fn run_table<D: Driver>(name: &str, mut d: D) {
    for (row, steps, want) in rows() {
        for s in &steps {
            d.step(s).await;
        }
        let mut got = observe(&d).await;
        if want.paused.is_none() {
            got.paused = None;
        }
        assert_eq!(
            got,
            want,
            "{name} driver, row {row:?}: rollout {:#?}",
            d.rollout().await
        );
    }
}

/// Runs `steps`, then says where the LaneRelease and its member's Rollout are.
async fn release_run<D: Driver>(d: &mut D, steps: Vec<Step>) -> (Value, Value) {
    for s in &steps {
        d.step(s).await;
    }
    (d.lane_release().await.unwrap(), d.rollout().await.unwrap())
}

async fn a_lane_release_promotes_its_member_on_one_approval<D: Driver>(mut d: D) {
    let (lr, r) = release_run(&mut d, lane_release_steps()).await;
    assert_eq!(lr["status"]["phase"], "Completed", "{:#}", lr["status"]);
    assert_eq!(lr["status"]["members"][0]["state"], "Promoted");
    assert_eq!(r["status"]["phase"], "Healthy", "{:#}", r["status"]);
    let stable = |d: &Value| d["metadata"]["name"] == WORKLOAD;
    let deployments = d.deployments().await;
    let w = deployments.iter().find(|d| stable(d)).unwrap();
    assert_eq!(
        w["spec"]["template"]["spec"]["containers"][0]["image"],
        "a:2"
    );
    assert_eq!(deployments.len(), 1, "the canary is gone");
}

async fn a_lane_release_past_its_deadline_pauses<D: Driver>(mut d: D) {
    let (lr, _) = release_run(&mut d, lane_release_deadline_steps()).await;
    assert_eq!(lr["spec"]["paused"], true, "{:#}", lr["status"]);
    let message = lr["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("not ready within progressDeadlineSeconds 5"),
        "{message}"
    );
}

#[tokio::test]
async fn a_lane_release_on_both_drivers() {
    a_lane_release_promotes_its_member_on_one_approval(Embedded::start().await).await;
    a_lane_release_promotes_its_member_on_one_approval(Operator::start()).await;
    a_lane_release_past_its_deadline_pauses(Embedded::start().await).await;
    a_lane_release_past_its_deadline_pauses(Operator::start()).await;
}

#[tokio::test]
async fn a_cluster_without_the_lane_release_crd_still_runs_rollouts() {
    let mut op = Operator::start();
    use Step::*;
    for s in [
        Apply(workload("a:1")),
        Apply(rollout()),
        Settle,
        Reconcile(0),
    ] {
        op.step(&s).await;
    }
    op.step(&SetImage("a:2")).await;
    // Every list of LaneReleases answers 404, as without their CRD.
    for _ in 0..4 {
        op.fake.fail_next("GET", "/lanereleases", 404, "NotFound");
    }
    for s in [Reconcile(1), Settle, Reconcile(2), Reconcile(3)] {
        op.step(&s).await;
    }
    let r = op.rollout().await.unwrap();
    assert_eq!(
        r["status"]["canaryStatus"]["currentStepState"], "StepPaused",
        "{:#}",
        r["status"]
    );
    // The controller met the 404s (a failed reconcile would have stopped the steps).
    assert!(
        op.fake.pending_faults() < 4,
        "no LaneRelease list was answered 404"
    );
}

#[tokio::test]
async fn the_scenarios_on_the_embedded_driver() {
    run_table("embedded", Embedded::start().await).await;
}

#[tokio::test]
async fn the_scenarios_on_the_operator_driver() {
    run_table("operator", Operator::start()).await;
}

/// The operator driver with faults in every reconcile: the first read of the Rollout
/// times out (504 `Timeout`) and the first status write loses to another writer (409
/// `Conflict`). The controller's error policy tries again and the reconcile redoes
/// itself on fresh reads, so the transitions are the table's.
struct Faulty(Operator);

impl Driver for Faulty {
    async fn step(&mut self, s: &Step) {
        let Step::Reconcile(secs) = s else {
            return self.0.step(s).await;
        };
        let f = &self.0.fake;
        if f.get("rollouts.kruise.io/v1beta1", "Rollout", NS, ROLLOUT)
            .is_some()
        {
            f.fail_next("GET", &format!("/rollouts/{ROLLOUT}"), 504, "Timeout");
            f.fail_next(
                "PATCH",
                &format!("/rollouts/{ROLLOUT}/status"),
                409,
                "Conflict",
            );
            f.fail_next(
                "PUT",
                &format!("/rollouts/{ROLLOUT}/status"),
                409,
                "Conflict",
            );
            let ctx = lanes_operator::rollouts::Context::new(self.0.client.clone());
            let now = t0() + jiff::SignedDuration::from_secs(*secs);
            let mut errors = 0;
            while let Err(e) =
                lanes_operator::rollouts::reconcile_rollout(&ctx, NS, ROLLOUT, now).await
            {
                errors += 1;
                assert!(errors < 3, "the reconcile keeps failing: {e}");
            }
            assert_eq!(errors, 1, "the injected timeout failed one reconcile");
            f.clear_faults();
        }
        lanes_operator::rollouts::sweep_orphans(&self.0.client)
            .await
            .unwrap();
    }

    async fn rollout(&self) -> Option<Value> {
        self.0.rollout().await
    }

    async fn deployments(&self) -> Vec<Value> {
        self.0.deployments().await
    }

    async fn lane_release(&self) -> Option<Value> {
        self.0.lane_release().await
    }
}

#[tokio::test]
async fn the_scenarios_on_the_operator_driver_under_timeouts_and_conflicts() {
    run_table("operator under faults", Faulty(Operator::start())).await;
}
