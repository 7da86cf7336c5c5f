//! The rollout scenarios as one table, run against both drivers — the embedded mode
//! (store, API server with its admission, embedded controller) and the operator (mocked
//! Kubernetes API server, the operator's reconcile) — expecting the same transitions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use lanes_rollout::STABLE_TEMPLATE;
use serde_json::Value;

/// What a row expects after its steps.
#[derive(Debug, Clone, PartialEq)]
struct Expect {
    /// Rollout phase, step index and step state (`None`: the Rollout is gone).
    rollout: Option<(&'static str, i32, &'static str)>,
    /// Replicas of each canary Deployment.
    canaries: Vec<i64>,
    /// Whether the workload is paused (`None`: either; between releases the operator
    /// holds it paused where the embedded mode's admission needs no hold).
    paused: Option<bool>,
    /// Whether the workload carries the release's stable template.
    marked: bool,
}

fn rows() -> Vec<(&'static str, Vec<Step>, Expect)> {
    use Step::*;
    let e = |rollout, canaries: Vec<i64>, paused, marked| Expect {
        rollout,
        canaries,
        paused,
        marked,
    };
    vec![
        (
            "steady: the workload runs, the Rollout is healthy",
            vec![
                Apply(workload("a:1")),
                Apply(rollout()),
                Settle,
                Reconcile(0),
                Reconcile(0),
            ],
            e(Some(("Healthy", 2, "Completed")), vec![], None, false),
        ),
        (
            "new image: the workload is paused and a 1-replica canary created",
            vec![SetImage("a:2"), Reconcile(0)],
            e(
                Some(("Progressing", 1, "StepUpgrade")),
                vec![1],
                Some(true),
                true,
            ),
        ),
        (
            "canary ready: waits in step 1 for approval",
            vec![Settle, Reconcile(0), Reconcile(5)],
            e(
                Some(("Progressing", 1, "StepPaused")),
                vec![1],
                Some(true),
                true,
            ),
        ),
        (
            "approved: step 2 scales the canary to 50% of 4",
            vec![Approve, Reconcile(10)],
            e(
                Some(("Progressing", 2, "StepUpgrade")),
                vec![2],
                Some(true),
                true,
            ),
        ),
        (
            "step 2 ready: a timed pause of 30 s",
            vec![Settle, Reconcile(10), Reconcile(30)],
            e(
                Some(("Progressing", 2, "StepPaused")),
                vec![2],
                Some(true),
                true,
            ),
        ),
        (
            "pause over: finalising, the stable Deployment rolls",
            vec![Reconcile(41)],
            e(
                Some(("Progressing", 2, "Completed")),
                vec![2],
                Some(false),
                true,
            ),
        ),
        (
            "stable rolled: canary deleted, marks removed, healthy",
            vec![Settle, Reconcile(42)],
            e(Some(("Healthy", 2, "Completed")), vec![], None, false),
        ),
        (
            "a second release starts",
            vec![SetImage("a:3"), Reconcile(50), Settle, Reconcile(51)],
            e(
                Some(("Progressing", 1, "StepPaused")),
                vec![1],
                Some(true),
                true,
            ),
        ),
        (
            "undo (the stable image back): the release is cancelled",
            vec![SetImage("a:2"), Reconcile(52)],
            e(Some(("Healthy", 2, "Completed")), vec![], None, false),
        ),
        (
            "a third release",
            vec![SetImage("a:5"), Reconcile(60), Settle, Reconcile(61)],
            e(
                Some(("Progressing", 1, "StepPaused")),
                vec![1],
                Some(true),
                true,
            ),
        ),
        (
            "the Rollout deleted mid-release: canary gone, workload released",
            vec![DeleteRollout, Reconcile(70)],
            e(None, vec![], Some(false), false),
        ),
    ]
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
    let mut canaries: Vec<i64> = deployments
        .iter()
        .filter(|d| {
            d.pointer("/metadata/labels/rollouts.kruise.io~1canary-deployment")
                .is_some()
        })
        .map(|d| d["spec"]["replicas"].as_i64().unwrap_or(1))
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

#[tokio::test]
async fn the_scenarios_on_the_embedded_driver() {
    run_table("embedded", Embedded::start().await).await;
}

#[tokio::test]
async fn the_scenarios_on_the_operator_driver() {
    run_table("operator", Operator::start()).await;
}
