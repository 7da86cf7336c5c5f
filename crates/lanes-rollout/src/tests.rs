//! Kruise's scenarios as a table: each row observes a situation and expects the
//! state, phase and actions Kruise would produce.

use super::*;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use lanes_model::rollout::{
    CanaryStep, CanaryStrategy, Rollout, RolloutPause, RolloutPhase, RolloutSpec, RolloutStrategy,
    Sample, StepState, Verdict, WorkloadRef,
};
use serde_json::{Value, json};

pub(crate) fn rollout(steps: Vec<CanaryStep>) -> Rollout {
    let mut r = Rollout::new(
        "rollouts-mocka",
        RolloutSpec {
            workload_ref: WorkloadRef {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                name: "mocka-v1".into(),
            },
            strategy: RolloutStrategy {
                canary: Some(CanaryStrategy {
                    steps,
                    enable_extra_workload_for_canary: Some(true),
                    patch_pod_template_metadata: Some(
                        lanes_model::rollout::PatchPodTemplateMetadata {
                            labels: [("ASM_TRAFFIC_TAG".to_string(), "canary".to_string())].into(),
                            annotations: Default::default(),
                        },
                    ),
                    ..Default::default()
                }),
                ..Default::default()
            },
            disabled: None,
        },
    );
    r.metadata.namespace = Some("default".into());
    r
}

pub(crate) fn step(replicas: IntOrString, pause: Option<i64>) -> CanaryStep {
    CanaryStep {
        replicas: Some(replicas),
        pause: Some(RolloutPause { duration: pause }),
        ..Default::default()
    }
}

pub(crate) fn template(image: &str) -> Value {
    json!({"metadata": {"labels": {"app": "mocka", "ASM_TRAFFIC_TAG": "base"}},
           "spec": {"containers": [{"name": "default", "image": image}]}})
}

pub(crate) fn workload(image: &str, stable: Option<&str>, paused: bool) -> Workload {
    Workload {
        name: "mocka-v1".into(),
        generation: 2,
        replicas: 4,
        selector: json!({"matchLabels": {"app": "mocka"}}),
        template: template(image),
        paused,
        min_ready_seconds: None,
        stable_template: stable.map(template),
        observed_generation: 2,
        updated: 4,
        available: 4,
        total: 4,
        rollout_id: None,
        partition: None,
    }
}

pub(crate) fn t0() -> jiff::Timestamp {
    "2026-11-26T12:00:00Z".parse().unwrap()
}

/// Runs reconciles, feeding each decision's status back, as a driver would.
fn run(
    r: &mut Rollout,
    w: Option<Workload>,
    canaries: Vec<Canary>,
    now: jiff::Timestamp,
) -> Decision {
    let d = reconcile(&Observed {
        rollout: r,
        generation: 1,
        workload: w,
        canaries,
        canary_pods: Vec::new(),
        partition: None,
        now,
        sample: None,
        canary_problem: None,
        external: Default::default(),
        routed: Vec::new(),
        gate: None,
    });
    r.status = Some(d.status.clone());
    d
}

fn st(r: &Rollout) -> (String, i32, String) {
    let s = r.status.as_ref().unwrap();
    let cs = s.canary_status.as_ref();
    (
        s.phase.map(|p| p.to_string()).unwrap_or_default(),
        cs.map_or(0, |c| c.current_step_index),
        cs.map(|c| c.current_step_state.to_string())
            .unwrap_or_default(),
    )
}

pub(crate) fn canary(image: &str, replicas: i32, ready: i32) -> Canary {
    Canary {
        name: canary_name(
            "mocka-v1",
            &lanes_model::hash::template_hash(&template(image)),
        ),
        replicas,
        ready,
        pod_hash: None,
    }
}

#[test]
fn canary_pods_are_known_by_their_deployment_or_its_replica_sets() {
    let canaries = [Canary {
        name: "a-v1-abc".into(),
        replicas: 1,
        ready: 0,
        pod_hash: None,
    }];
    let pod = |kind: &str, name: &str| -> Pod {
        serde_json::from_value(json!({"metadata": {"ownerReferences": [
            {"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": "u"}]}}))
        .unwrap()
    };
    assert!(owned_by_canary(&pod("Deployment", "a-v1-abc"), &canaries));
    assert!(owned_by_canary(
        &pod("ReplicaSet", "a-v1-abc-5d9f"),
        &canaries
    ));
    assert!(!owned_by_canary(&pod("Deployment", "a-v1"), &canaries));
    assert!(!owned_by_canary(
        &pod("ReplicaSet", "a-v1-abcdef"),
        &canaries
    ));
    assert!(!owned_by_canary(&Pod::default(), &canaries));
}

#[test]
fn an_idle_healthy_rollout_keeps_its_status_to_the_timestamp() {
    let mut r = rollout(vec![step(IntOrString::Int(1), None)]);
    let w = || Some(workload("a:1", None, false));
    let first = run(&mut r, w(), vec![], t0()).status;
    for secs in [1, 60, 3600] {
        let later = t0() + jiff::SignedDuration::from_secs(secs);
        let d = run(&mut r, w(), vec![], later);
        assert_eq!(d.status, first, "{secs} s later, nothing to write");
        assert!(d.actions.is_empty());
    }
}

#[test]
fn kruise_scenarios() {
    let two_steps = || {
        vec![
            step(IntOrString::Int(1), None),
            step(IntOrString::String("50%".into()), Some(30)),
        ]
    };
    // (name, steps, situation, expected (phase, index, state), expected actions kinds)
    type Setup = fn(&mut Rollout) -> (Option<Workload>, Vec<Canary>, jiff::Timestamp);
    type Row = (
        &'static str,
        Setup,
        (&'static str, i32, &'static str),
        Vec<&'static str>,
    );
    let rows: Vec<Row> = vec![
        (
            "no workload",
            |_| (None, vec![], t0()),
            ("Initial", 0, ""),
            vec![],
        ),
        (
            "steady: healthy",
            |_| (Some(workload("a:1", None, false)), vec![], t0()),
            ("Healthy", 2, "Completed"),
            vec![],
        ),
        (
            "release starts: canary created for step 1",
            |_| (Some(workload("a:2", Some("a:1"), true)), vec![], t0()),
            ("Progressing", 1, "StepUpgrade"),
            vec!["CreateCanary"],
        ),
        (
            "canary ready: traffic, analysis, then paused for approval",
            |_| {
                (
                    Some(workload("a:2", Some("a:1"), true)),
                    vec![canary("a:2", 1, 1)],
                    t0(),
                )
            },
            ("Progressing", 1, "StepPaused"),
            vec![],
        ),
        (
            "workload found unpaused mid-release: paused again",
            |_| {
                (
                    Some(workload("a:2", Some("a:1"), false)),
                    vec![canary("a:2", 1, 0)],
                    t0(),
                )
            },
            ("Progressing", 1, "StepUpgrade"),
            vec!["SetWorkloadPaused(true)"],
        ),
    ];
    for (name, setup, want, actions) in rows {
        let mut r = rollout(two_steps());
        let (w, c, now) = setup(&mut r);
        let d = run(&mut r, w, c, now);
        let (phase, idx, state) = st(&r);
        assert_eq!(
            (phase.as_str(), idx, state.as_str()),
            want,
            "{name}: {:?}",
            r.status
        );
        let kinds: Vec<String> = d
            .actions
            .iter()
            .map(|a| match a {
                Action::SetWorkloadPaused(p) => format!("SetWorkloadPaused({p})"),
                other => format!("{other:?}")
                    .split([' ', '{', '('])
                    .next()
                    .unwrap_or("")
                    .to_string(),
            })
            .collect();
        assert_eq!(kinds, actions, "{name}");
    }
}

#[test]
fn a_whole_release_with_approval_a_timed_pause_and_finalising() {
    let mut r = rollout(vec![
        step(IntOrString::Int(1), None),
        step(IntOrString::String("50%".into()), Some(30)),
    ]);
    let w = workload("a:2", Some("a:1"), true);
    run(&mut r, Some(w.clone()), vec![], t0());
    run(&mut r, Some(w.clone()), vec![canary("a:2", 1, 1)], t0());
    assert_eq!(st(&r), ("Progressing".into(), 1, "StepPaused".into()));
    // Waits for approval.
    run(
        &mut r,
        Some(w.clone()),
        vec![canary("a:2", 1, 1)],
        t0() + jiff::SignedDuration::from_secs(3600),
    );
    assert_eq!(st(&r).2, "StepPaused");
    // Approve (the status patch kubectl-kruise sends).
    r.status
        .as_mut()
        .unwrap()
        .canary_status
        .as_mut()
        .unwrap()
        .current_step_state = StepState::Ready;
    let d = run(&mut r, Some(w.clone()), vec![canary("a:2", 1, 1)], t0());
    assert_eq!(st(&r), ("Progressing".into(), 2, "StepUpgrade".into()));
    // 50% of 4 replicas: the canary scales to 2.
    assert!(
        d.actions
            .iter()
            .any(|a| matches!(a, Action::ScaleCanary { replicas: 2, .. })),
        "{:?}",
        d.actions
    );
    run(&mut r, Some(w.clone()), vec![canary("a:2", 2, 2)], t0());
    assert_eq!(st(&r).2, "StepPaused");
    // The timed pause ends by itself, counted from entering it.
    run(
        &mut r,
        Some(w.clone()),
        vec![canary("a:2", 2, 2)],
        t0() + jiff::SignedDuration::from_secs(10),
    );
    assert_eq!(st(&r).2, "StepPaused");
    let d = run(
        &mut r,
        Some(w.clone()),
        vec![canary("a:2", 2, 2)],
        t0() + jiff::SignedDuration::from_secs(31),
    );
    assert_eq!(st(&r), ("Progressing".into(), 2, "Completed".into()));
    assert_eq!(d.actions, vec![Action::SetWorkloadPaused(false)]);
    // Finalising: the stable Deployment rolls; until it is done the canary stays.
    let mut rolling = workload("a:2", Some("a:1"), false);
    rolling.updated = 2;
    let d = run(&mut r, Some(rolling), vec![canary("a:2", 2, 2)], t0());
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    assert_eq!(st(&r).0, "Progressing");
    let done = workload("a:2", Some("a:1"), false);
    let d = run(&mut r, Some(done), vec![canary("a:2", 2, 2)], t0());
    assert_eq!(st(&r).0, "Healthy");
    assert!(matches!(d.actions[0], Action::DeleteCanary { .. }));
    assert_eq!(d.actions[1], Action::ClearWorkloadMarks);
}

#[test]
fn a_reconcile_redone_after_its_status_write_was_lost_does_not_pause_again() {
    let mut r = rollout(vec![step(IntOrString::Int(2), Some(30))]);
    let paused = workload("a:2", Some("a:1"), true);
    run(&mut r, Some(paused.clone()), vec![], t0());
    run(&mut r, Some(paused), vec![canary("a:2", 2, 2)], t0());
    assert_eq!(st(&r).2, "StepPaused");
    // The pause is over: finalising unpauses the workload. Its status write is lost to
    // a conflict, so the redo reads the old status and the unpaused workload.
    let over = t0() + jiff::SignedDuration::from_secs(31);
    let before = r.clone();
    let d = run(
        &mut r,
        Some(workload("a:2", Some("a:1"), true)),
        vec![canary("a:2", 2, 2)],
        over,
    );
    assert_eq!(d.actions, vec![Action::SetWorkloadPaused(false)]);
    let mut redo = before;
    // Unpaused, the stable Deployment has begun to roll.
    let mut unpaused = workload("a:2", Some("a:1"), false);
    unpaused.updated = 2;
    let d = run(
        &mut redo,
        Some(unpaused.clone()),
        vec![canary("a:2", 2, 2)],
        over,
    );
    assert_eq!(st(&redo), ("Progressing".into(), 1, "Completed".into()));
    assert!(
        d.actions.is_empty(),
        "nothing pauses it again: {:?}",
        d.actions
    );
    // A workload someone unpaused mid-step is paused again.
    let mut early = redo.clone();
    early.status = None;
    run(
        &mut early,
        Some(workload("a:2", Some("a:1"), true)),
        vec![],
        t0(),
    );
    let d = run(&mut early, Some(unpaused), vec![canary("a:2", 2, 2)], t0());
    assert_eq!(st(&early).2, "StepPaused");
    assert_eq!(d.actions.first(), Some(&Action::SetWorkloadPaused(true)));
}

#[test]
fn undo_continuous_release_plan_change_disable_and_pause() {
    let steps = || vec![step(IntOrString::Int(1), None)];
    // Undo: the stable template is back; the release is cancelled.
    let mut r = rollout(steps());
    run(
        &mut r,
        Some(workload("a:2", Some("a:1"), true)),
        vec![canary("a:2", 1, 1)],
        t0(),
    );
    let d = run(
        &mut r,
        Some(workload("a:1", Some("a:1"), true)),
        vec![canary("a:2", 1, 1)],
        t0(),
    );
    assert_eq!(st(&r).0, "Healthy");
    assert!(d.actions.contains(&Action::ClearWorkloadMarks));
    assert!(d.actions.contains(&Action::SetWorkloadPaused(false)));
    assert!(
        d.actions
            .iter()
            .any(|a| matches!(a, Action::DeleteCanary { .. }))
    );
    assert!(
        r.status
            .as_ref()
            .unwrap()
            .message
            .as_deref()
            .unwrap()
            .contains("cancelled")
    );

    // Continuous release: v2 in its pause, then v3: the v2 canary goes, step 1 again.
    let mut r = rollout(steps());
    run(
        &mut r,
        Some(workload("a:2", Some("a:1"), true)),
        vec![canary("a:2", 1, 1)],
        t0(),
    );
    assert_eq!(st(&r).2, "StepPaused");
    let d = run(
        &mut r,
        Some(workload("a:3", Some("a:1"), true)),
        vec![canary("a:2", 1, 1)],
        t0(),
    );
    assert_eq!(st(&r), ("Progressing".into(), 1, "StepUpgrade".into()));
    assert_eq!(
        d.actions[0],
        Action::DeleteCanary {
            name: canary("a:2", 1, 1).name
        }
    );
    assert!(
        matches!(&d.actions[1], Action::CreateCanary { name, .. } if *name == canary("a:3", 1, 0).name)
    );

    // Plan change mid-release: the current step is redone under the new plan.
    let mut r = rollout(vec![
        step(IntOrString::Int(1), None),
        step(IntOrString::Int(2), None),
    ]);
    run(
        &mut r,
        Some(workload("a:2", Some("a:1"), true)),
        vec![canary("a:2", 1, 1)],
        t0(),
    );
    r.spec.strategy.canary.as_mut().unwrap().steps = vec![step(IntOrString::Int(3), None)];
    let d = run(
        &mut r,
        Some(workload("a:2", Some("a:1"), true)),
        vec![canary("a:2", 1, 1)],
        t0(),
    );
    assert_eq!(st(&r), ("Progressing".into(), 1, "StepUpgrade".into()));
    assert!(
        d.actions
            .iter()
            .any(|a| matches!(a, Action::ScaleCanary { replicas: 3, .. }))
    );

    // Disabled mid-release: the release stands down.
    let mut r = rollout(steps());
    run(
        &mut r,
        Some(workload("a:2", Some("a:1"), true)),
        vec![canary("a:2", 1, 1)],
        t0(),
    );
    r.spec.disabled = Some(true);
    let d = run(
        &mut r,
        Some(workload("a:2", Some("a:1"), true)),
        vec![canary("a:2", 1, 1)],
        t0(),
    );
    assert_eq!(
        r.status.as_ref().unwrap().phase,
        Some(RolloutPhase::Disabled)
    );
    assert!(d.actions.contains(&Action::SetWorkloadPaused(false)));

    // strategy.paused holds the release where it stands.
    let mut r = rollout(steps());
    run(
        &mut r,
        Some(workload("a:2", Some("a:1"), true)),
        vec![],
        t0(),
    );
    r.spec.strategy.paused = Some(true);
    let d = run(
        &mut r,
        Some(workload("a:2", Some("a:1"), true)),
        vec![canary("a:2", 1, 1)],
        t0(),
    );
    assert_eq!(st(&r).2, "StepUpgrade");
    assert!(d.actions.is_empty());
    assert!(
        r.status
            .as_ref()
            .unwrap()
            .message
            .as_deref()
            .unwrap()
            .contains("paused")
    );
}

fn with_analysis(r: &mut Rollout, on_failure: &str) {
    r.spec.strategy.canary.as_mut().unwrap().analysis = Some(
        serde_json::from_value(json!({
            "interval": "5s", "failureLimit": 1, "minRequests": 10, "onFailure": on_failure,
            "metrics": [{"name": "success-rate", "successRate": {"min": 0.95}}]
        }))
        .unwrap(),
    );
}

fn observe(r: &mut Rollout, canaries: Vec<Canary>, at: i64, total: u64, failures: u64) -> Decision {
    let sample = Sample {
        time: String::new(),
        total,
        failures,
        buckets: vec![0; 15],
    };
    let d = reconcile(&Observed {
        rollout: r,
        generation: 1,
        workload: Some(workload("a:2", Some("a:1"), true)),
        canaries,
        canary_pods: Vec::new(),
        partition: None,
        now: t0() + jiff::SignedDuration::from_secs(at),
        sample: Some(sample),
        canary_problem: Some("ImageNotMapped: no local command".into()),
        external: Default::default(),
        routed: Vec::new(),
        gate: None,
    });
    r.status = Some(d.status.clone());
    d
}

#[test]
fn analysis_gates_the_step_and_fails_the_release() {
    let mut r = rollout(vec![step(IntOrString::Int(1), None)]);
    with_analysis(&mut r, "rollback");
    observe(&mut r, vec![], 0, 0, 0);
    // Canary ready: analysis starts; no traffic yet → inconclusive, no advance.
    observe(&mut r, vec![canary("a:2", 1, 1)], 1, 0, 0);
    assert_eq!(st(&r).2, "StepMetricsAnalysis");
    observe(&mut r, vec![canary("a:2", 1, 1)], 7, 3, 0);
    assert_eq!(st(&r).2, "StepMetricsAnalysis");
    let a = r.status.as_ref().unwrap().analysis.clone().unwrap();
    assert_eq!(
        a.measurements.last().unwrap().verdict,
        Verdict::Inconclusive
    );
    assert!(
        r.status
            .as_ref()
            .unwrap()
            .message
            .as_deref()
            .unwrap()
            .contains("fewer than minRequests")
    );
    // Healthy traffic: a pass moves on to the pause.
    observe(&mut r, vec![canary("a:2", 1, 1)], 13, 103, 1);
    assert_eq!(st(&r).2, "StepPaused");
    // Failing traffic while paused: one failure is tolerated, the second rolls back.
    let d = observe(&mut r, vec![canary("a:2", 1, 1)], 19, 203, 51);
    assert!(d.actions.is_empty());
    let d = observe(&mut r, vec![canary("a:2", 1, 1)], 25, 303, 101);
    assert_eq!(d.actions, vec![Action::RestoreStableTemplate]);
    assert!(
        r.status
            .as_ref()
            .unwrap()
            .message
            .as_deref()
            .unwrap()
            .starts_with(Failure::RolledBack.prefix())
    );
    // Then the workload is back on the stable template: the release stands down and
    // the reason stays in the message.
    let d = reconcile(&Observed {
        rollout: &r,
        generation: 1,
        workload: Some(workload("a:1", Some("a:1"), true)),
        canaries: vec![canary("a:2", 1, 1)],
        canary_pods: Vec::new(),
        partition: None,
        now: t0(),
        sample: None,
        canary_problem: None,
        external: Default::default(),
        routed: Vec::new(),
        gate: None,
    });
    assert_eq!(d.status.phase, Some(RolloutPhase::Healthy));
    assert!(
        d.status
            .message
            .as_deref()
            .unwrap()
            .contains("analysis failed 2 times")
    );
    // onFailure: pause.
    let mut r = rollout(vec![step(IntOrString::Int(1), None)]);
    with_analysis(&mut r, "pause");
    observe(&mut r, vec![], 0, 0, 0);
    observe(&mut r, vec![canary("a:2", 1, 1)], 1, 0, 0);
    observe(&mut r, vec![canary("a:2", 1, 1)], 7, 100, 90);
    let d = observe(&mut r, vec![canary("a:2", 1, 1)], 13, 200, 180);
    assert_eq!(d.actions, vec![Action::PauseRollout]);
}

#[test]
fn a_canary_never_ready_fails_at_the_progress_deadline() {
    let mut r = rollout(vec![step(IntOrString::Int(1), None)]);
    r.spec
        .strategy
        .canary
        .as_mut()
        .unwrap()
        .progress_deadline_seconds = Some(30);
    observe(&mut r, vec![], 0, 0, 0);
    let d = observe(&mut r, vec![canary("a:2", 1, 0)], 20, 0, 0);
    assert!(d.actions.is_empty());
    let d = observe(&mut r, vec![canary("a:2", 1, 0)], 31, 0, 0);
    assert_eq!(d.actions, vec![Action::RestoreStableTemplate]);
    let msg = r.status.as_ref().unwrap().message.clone().unwrap();
    assert!(
        msg.contains("progressDeadlineSeconds 30") && msg.contains("ImageNotMapped"),
        "{msg}"
    );
}

#[test]
fn pausing_is_not_a_plan_change_and_an_approval_sent_while_paused_holds() {
    let mut r = rollout(vec![
        step(IntOrString::Int(1), None),
        step(IntOrString::Int(2), None),
    ]);
    let hash = plan_hash(&r);
    let w = workload("a:2", Some("a:1"), true);
    run(&mut r, Some(w.clone()), vec![], t0());
    run(&mut r, Some(w.clone()), vec![canary("a:2", 1, 1)], t0());
    assert_eq!(st(&r).2, "StepPaused");
    r.spec.strategy.paused = Some(true);
    assert_eq!(plan_hash(&r), hash);
    r.status
        .as_mut()
        .unwrap()
        .canary_status
        .as_mut()
        .unwrap()
        .current_step_state = StepState::Ready;
    run(&mut r, Some(w.clone()), vec![canary("a:2", 1, 1)], t0());
    assert_eq!(st(&r), ("Progressing".into(), 1, "StepReady".into()));
    assert!(
        r.status
            .as_ref()
            .unwrap()
            .message
            .as_deref()
            .unwrap()
            .contains("paused")
    );
    r.spec.strategy.paused = Some(false);
    let d = run(&mut r, Some(w), vec![canary("a:2", 1, 1)], t0());
    assert_eq!(st(&r), ("Progressing".into(), 2, "StepUpgrade".into()));
    assert!(
        d.actions
            .iter()
            .any(|a| matches!(a, Action::ScaleCanary { replicas: 2, .. }))
    );
}

#[test]
fn which_rollouts_manage_which_deployments_and_what_a_waiting_pod_says() {
    let mut r = rollout(vec![step(IntOrString::Int(1), None)]);
    assert!(targets_deployment(&r, "default", "mocka-v1"));
    assert!(!targets_deployment(&r, "other", "mocka-v1"));
    assert!(!targets_deployment(&r, "default", "mockb-v1"));
    assert!(manages(&r));
    r.spec.disabled = Some(true);
    assert!(!manages(&r));
    r.spec.workload_ref.kind = "StatefulSet".into();
    assert!(!targets_deployment(&r, "default", "mocka-v1"));
    let waiting: Pod = serde_json::from_value(
        json!({"metadata": {"name": "p"}, "status": {"containerStatuses": [
        {"name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
         "state": {"waiting": {"reason": "ImagePullBackOff", "message": "no such image"}}}]}}),
    )
    .unwrap();
    assert_eq!(
        pod_problem(&waiting).as_deref(),
        Some("pod p: ImagePullBackOff: no such image")
    );
    assert_eq!(
        pod_problem(
            &serde_json::from_value(json!({"metadata": {"name": "p"}, "status": {}})).unwrap()
        ),
        None
    );
}

#[test]
fn step_replicas_round_up_percentages() {
    assert_eq!(
        step_replicas(Some(&IntOrString::String("20%".into())), 4),
        1
    );
    assert_eq!(
        step_replicas(Some(&IntOrString::String("50%".into())), 5),
        3
    );
    assert_eq!(
        step_replicas(Some(&IntOrString::String("100%".into())), 5),
        5
    );
    assert_eq!(step_replicas(Some(&IntOrString::String("0%".into())), 5), 0);
    assert_eq!(step_replicas(Some(&IntOrString::Int(2)), 5), 2);
    assert_eq!(step_replicas(None, 5), 1);
}

#[test]
fn a_success_rate_is_never_below_zero_when_failures_outrun_requests() {
    let mut r = rollout(vec![step(IntOrString::Int(1), None)]);
    with_analysis(&mut r, "pause");
    observe(&mut r, vec![], 0, 0, 0);
    observe(&mut r, vec![canary("a:2", 1, 1)], 1, 0, 0);
    // A source that read its failure counter after a later scrape than its total.
    let d = observe(&mut r, vec![canary("a:2", 1, 1)], 7, 26, 70);
    let last = d
        .status
        .analysis
        .as_ref()
        .unwrap()
        .measurements
        .last()
        .unwrap();
    assert_eq!(last.value, Some(0.0), "{last:?}");
    assert!(
        last.message
            .as_deref()
            .is_some_and(|m| m.contains("success rate 0.000 over 26")),
        "{last:?}"
    );
}

/// Kruise's step jump (a status patch of `nextStepIndex`, then approval), the last step
/// of every pod needing no approval, and what a completed release keeps at rest.
#[test]
fn a_step_jump_the_last_step_shortcut_and_the_status_kept_at_rest() {
    let mut r = rollout(vec![
        step(IntOrString::Int(1), None),
        step(IntOrString::Int(2), None),
        step(IntOrString::String("100%".into()), None),
    ]);
    let w = workload("a:2", Some("a:1"), true);
    run(&mut r, Some(w.clone()), vec![canary("a:2", 1, 1)], t0());
    assert_eq!(st(&r), ("Progressing".into(), 1, "StepPaused".into()));
    let cs = |r: &Rollout| r.status.clone().unwrap().canary_status.unwrap();
    assert_eq!(cs(&r).next_step_index, Some(2));
    // Jump over step 2: the patch sets nextStepIndex, the approval moves on to it.
    {
        let c = r.status.as_mut().unwrap().canary_status.as_mut().unwrap();
        c.next_step_index = Some(3);
        c.current_step_state = StepState::Ready;
    }
    let d = run(&mut r, Some(w.clone()), vec![canary("a:2", 1, 1)], t0());
    assert_eq!(st(&r), ("Progressing".into(), 3, "StepUpgrade".into()));
    assert_eq!(cs(&r).next_step_index, Some(-1));
    assert!(
        d.actions
            .iter()
            .any(|a| matches!(a, Action::ScaleCanary { replicas: 4, .. })),
        "{:?}",
        d.actions
    );
    // canaryReplicas says what the canary has, not what the step wants.
    assert_eq!(cs(&r).canary_replicas, 1);
    // The last step runs every pod: no approval, straight to finalising.
    let d = run(&mut r, Some(w.clone()), vec![canary("a:2", 4, 4)], t0());
    assert_eq!(st(&r), ("Progressing".into(), 3, "Completed".into()));
    assert_eq!(d.actions, vec![Action::SetWorkloadPaused(false)]);
    let reason = |r: &Rollout, kind: &str| {
        let c = r
            .status
            .as_ref()
            .unwrap()
            .conditions
            .iter()
            .find(|c| c.kind == kind);
        c.map(|c| (c.status.clone(), c.reason.clone().unwrap_or_default()))
    };
    assert_eq!(
        reason(&r, "Progressing"),
        Some(("True".into(), "Finalising".into()))
    );
    assert_eq!(
        reason(&r, "Succeeded"),
        Some(("False".into(), "Finalising".into()))
    );
    let done = workload("a:2", Some("a:1"), false);
    run(&mut r, Some(done), vec![canary("a:2", 4, 4)], t0());
    run(&mut r, Some(workload("a:2", None, false)), vec![], t0());
    assert_eq!(st(&r), ("Healthy".into(), 3, "Completed".into()));
    assert_eq!(
        reason(&r, "Succeeded"),
        Some(("True".into(), "Completed".into()))
    );
    let rest = cs(&r);
    let revision = lanes_model::hash::template_hash(&template("a:2"));
    assert_eq!(rest.canary_revision.as_deref(), Some(revision.as_str()));
    assert_eq!(rest.stable_revision.as_deref(), Some(revision.as_str()));
    assert_eq!(rest.observed_workload_generation, Some(2));
    assert_eq!(rest.finalising_step, None);
    // At rest the status stays as it is.
    let before = r.status.clone();
    run(
        &mut r,
        Some(workload("a:2", None, false)),
        vec![],
        t0() + jiff::SignedDuration::from_secs(60),
    );
    assert_eq!(r.status, before);
    // A nextStepIndex that names no step holds the release and says why.
    let mut r = rollout(vec![
        step(IntOrString::Int(1), None),
        step(IntOrString::Int(2), None),
    ]);
    run(&mut r, Some(w.clone()), vec![canary("a:2", 1, 1)], t0());
    {
        let c = r.status.as_mut().unwrap().canary_status.as_mut().unwrap();
        c.next_step_index = Some(7);
        c.current_step_state = StepState::Ready;
    }
    run(&mut r, Some(w), vec![canary("a:2", 1, 1)], t0());
    assert_eq!(st(&r), ("Progressing".into(), 1, "StepReady".into()));
    assert!(
        r.status
            .unwrap()
            .message
            .unwrap()
            .contains("nextStepIndex 7 names no step")
    );
}

/// A step's count is capped at the workload's, a jump back keeps the canary's pods (as
/// Kruise: "won't scale down"), `failureThreshold` never passes a step with no ready
/// pod, and the canary inherits `minReadySeconds`.
#[test]
fn canary_counts_as_kruise_keeps_them() {
    let mut r = rollout(vec![
        step(IntOrString::Int(9), None),
        step(IntOrString::Int(9), None),
    ]);
    r.spec.strategy.canary.as_mut().unwrap().failure_threshold =
        Some(IntOrString::String("100%".into()));
    let mut w = workload("a:2", Some("a:1"), true);
    w.min_ready_seconds = Some(7);
    let d = run(&mut r, Some(w.clone()), vec![], t0());
    let Some(Action::CreateCanary { deployment, .. }) = d
        .actions
        .iter()
        .find(|a| matches!(a, Action::CreateCanary { .. }))
    else {
        panic!("{:?}", d.actions)
    };
    assert_eq!(
        deployment["spec"]["replicas"], 4,
        "capped at the workload's 4"
    );
    assert_eq!(deployment["spec"]["minReadySeconds"], 7);
    // Four pods, none ready: a threshold of 100% still wants one ready.
    run(&mut r, Some(w.clone()), vec![canary("a:2", 4, 0)], t0());
    assert_eq!(st(&r).2, "StepUpgrade");
    run(&mut r, Some(w.clone()), vec![canary("a:2", 4, 1)], t0());
    assert_eq!(st(&r), ("Progressing".into(), 1, "StepPaused".into()));
    // Step 2 asks for fewer pods than the canary has: it keeps them.
    r.spec.strategy.canary.as_mut().unwrap().steps[1].replicas = Some(IntOrString::Int(1));
    r.status
        .as_mut()
        .unwrap()
        .canary_status
        .as_mut()
        .unwrap()
        .current_step_state = StepState::Ready;
    let d = run(&mut r, Some(w), vec![canary("a:2", 4, 4)], t0());
    assert!(
        !d.actions
            .iter()
            .any(|a| matches!(a, Action::ScaleCanary { .. })),
        "{:?}",
        d.actions
    );
}

/// A step that routes traffic waits in `StepTrafficRouting` until the lanes' ingress gives
/// the canary its share; finalising waits until the share is back to 0.
#[test]
fn traffic_routing_waits_for_the_lanes_ingress() {
    let mut r = rollout(vec![CanaryStep {
        traffic: Some("30%".into()),
        ..step(IntOrString::Int(1), None)
    }]);
    let w = workload("a:2", Some("a:1"), true);
    let at = |r: &mut Rollout, routed: Vec<u32>, w: &Workload| {
        let d = reconcile(&Observed {
            rollout: r,
            generation: 1,
            workload: Some(w.clone()),
            canaries: vec![canary("a:2", 1, 1)],
            canary_pods: Vec::new(),
            partition: None,
            now: t0(),
            sample: None,
            canary_problem: None,
            external: Default::default(),
            routed,
            gate: None,
        });
        r.status = Some(d.status.clone());
        d
    };
    let d = at(&mut r, vec![], &w);
    assert_eq!(st(&r).2, "StepTrafficRouting");
    assert!(
        d.status
            .message
            .unwrap()
            .contains("waiting for a lane group to route")
    );
    assert!(d.wake_at.is_some());
    at(&mut r, vec![0], &w);
    assert_eq!(st(&r).2, "StepTrafficRouting");
    at(&mut r, vec![30], &w);
    assert_eq!(st(&r), ("Progressing".into(), 1, "StepPaused".into()));
    // Approved: finalising holds the workload until the share is back to 0.
    r.status
        .as_mut()
        .unwrap()
        .canary_status
        .as_mut()
        .unwrap()
        .current_step_state = StepState::Ready;
    let d = at(&mut r, vec![30], &w);
    assert_eq!(st(&r).2, "Completed");
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    let d = at(&mut r, vec![0], &w);
    assert_eq!(d.actions, vec![Action::SetWorkloadPaused(false)]);
}

#[test]
fn a_release_with_a_rollout_id_observes_it_and_labels_the_canarys_pods_with_their_batch() {
    let mut r = rollout(vec![step(IntOrString::Int(1), None)]);
    let mut w = workload("a:2", Some("a:1"), true);
    w.rollout_id = Some("r7".into());
    let obs = |r: &Rollout, w: &Workload, pods: Vec<CanaryPod>| {
        reconcile(&Observed {
            rollout: r,
            generation: 1,
            workload: Some(w.clone()),
            canaries: vec![canary("a:2", 1, 1)],
            canary_pods: pods,
            partition: None,
            now: t0(),
            sample: None,
            canary_problem: None,
            external: Default::default(),
            routed: Vec::new(),
            gate: None,
        })
    };
    let d = obs(&r, &w, Vec::new());
    r.status = Some(d.status.clone());
    let pod = CanaryPod {
        name: "mocka-v1-x-1".into(),
        rollout_id: None,
        batch: None,
        labels: Default::default(),
    };
    let d = obs(&r, &w, vec![pod]);
    let cs = d.status.canary_status.as_ref().unwrap();
    assert_eq!(cs.observed_rollout_id.as_deref(), Some("r7"));
    assert!(
        d.actions.contains(&Action::LabelPod {
            name: "mocka-v1-x-1".into(),
            labels: [
                (crate::ROLLOUT_ID_LABEL.to_string(), Some("r7".to_string())),
                (crate::BATCH_ID_LABEL.to_string(), Some("1".to_string())),
            ]
            .into(),
        }),
        "{:?}",
        d.actions
    );
    // Without a rollout id, no pod is labelled.
    w.rollout_id = None;
    let unlabelled = CanaryPod {
        name: "p".into(),
        rollout_id: None,
        batch: None,
        labels: Default::default(),
    };
    let d = obs(&r, &w, vec![unlabelled]);
    assert!(
        !d.actions
            .iter()
            .any(|a| matches!(a, Action::LabelPod { .. }))
    );
}

/// Partition style: the workload's own pods, counted as its partition canary.
fn own_pods(replicas: i32, ready: i32) -> Canary {
    Canary {
        name: "mocka-v1".into(),
        replicas,
        ready,
        pod_hash: Some("h2".into()),
    }
}

fn labelled_pod(name: &str, tag: &str) -> CanaryPod {
    CanaryPod {
        name: name.into(),
        rollout_id: None,
        batch: None,
        labels: [("ASM_TRAFFIC_TAG".to_string(), tag.to_string())].into(),
    }
}

/// The one action of setting the partition to `pct`.
fn set_partition(pct: &str) -> Vec<Action> {
    vec![Action::SetPartition(Some(IntOrString::String(pct.into())))]
}

fn partition_run(
    r: &mut Rollout,
    w: &Workload,
    own: Canary,
    pods: Vec<CanaryPod>,
    now: jiff::Timestamp,
) -> Decision {
    let d = reconcile(&Observed {
        rollout: r,
        generation: 1,
        workload: Some(w.clone()),
        canaries: Vec::new(),
        canary_pods: pods,
        partition: Some(own),
        now,
        sample: None,
        canary_problem: None,
        external: Default::default(),
        routed: Vec::new(),
        gate: None,
    });
    r.status = Some(d.status.clone());
    d
}

#[test]
fn a_partition_style_release_updates_the_workloads_own_pods_in_batches() {
    let mut r = rollout(vec![
        step(IntOrString::String("25%".into()), None),
        step(IntOrString::String("50%".into()), None),
    ]);
    if let Some(c) = r.spec.strategy.canary.as_mut() {
        c.enable_extra_workload_for_canary = None;
    }
    let mut w = workload("a:2", Some("a:1"), true);
    // Step 1: the partition asks for one pod (25% of 4); no canary Deployment.
    let d = partition_run(&mut r, &w, own_pods(0, 0), Vec::new(), t0());
    assert_eq!(d.actions, set_partition("25%"));
    assert_eq!(st(&r), ("Progressing".into(), 1, "StepUpgrade".into()));
    // The new pod comes up with the template's lane label: it takes the canary lane's.
    w.partition = Some(IntOrString::String("25%".into()));
    let d = partition_run(
        &mut r,
        &w,
        own_pods(1, 1),
        vec![labelled_pod("p1", "base")],
        t0(),
    );
    assert_eq!(st(&r), ("Progressing".into(), 1, "StepPaused".into()));
    let lane = [("ASM_TRAFFIC_TAG".to_string(), Some("canary".to_string()))].into();
    assert_eq!(
        d.actions,
        vec![Action::LabelPod {
            name: "p1".into(),
            labels: lane
        }]
    );
    // Approved: step 2 raises the partition to two; a jump back never lowers it.
    let mut status = r.status.clone().unwrap();
    status.canary_status.as_mut().unwrap().current_step_state = StepState::Ready;
    r.status = Some(status);
    let d = partition_run(
        &mut r,
        &w,
        own_pods(1, 1),
        vec![labelled_pod("p1", "canary")],
        t0(),
    );
    assert_eq!(d.actions, set_partition("50%"));
    w.partition = Some(IntOrString::String("50%".into()));
    partition_run(
        &mut r,
        &w,
        own_pods(2, 2),
        vec![labelled_pod("p1", "canary"), labelled_pod("p2", "canary")],
        t0(),
    );
    assert_eq!(st(&r), ("Progressing".into(), 2, "StepPaused".into()));
    let mut status = r.status.clone().unwrap();
    status.canary_status.as_mut().unwrap().current_step_state = StepState::Ready;
    r.status = Some(status);
    // A jump back to step 1 keeps the larger partition.
    let mut back = r.clone();
    let mut status = back.status.clone().unwrap();
    status.canary_status.as_mut().unwrap().next_step_index = Some(1);
    back.status = Some(status);
    let d = partition_run(&mut back, &w, own_pods(2, 2), Vec::new(), t0());
    assert_eq!(st(&back), ("Progressing".into(), 1, "StepPaused".into()));
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    // A newer template mid-release starts its partition afresh at step 1.
    let mut newer = r.clone();
    let v3 = workload("a:3", Some("a:1"), true);
    let v3 = Workload {
        partition: w.partition.clone(),
        ..v3
    };
    let d = partition_run(&mut newer, &v3, own_pods(0, 0), Vec::new(), t0());
    assert_eq!(d.actions, set_partition("25%"));
    assert_eq!(st(&newer), ("Progressing".into(), 1, "StepUpgrade".into()));
    // Through the steps: the canary's pods take back the template's label, then the
    // workload resumes without its partition and rolls the rest.
    let d = partition_run(
        &mut r,
        &w,
        own_pods(2, 2),
        vec![labelled_pod("p1", "canary"), labelled_pod("p2", "canary")],
        t0(),
    );
    let base: std::collections::BTreeMap<_, _> =
        [("ASM_TRAFFIC_TAG".to_string(), Some("base".to_string()))].into();
    assert_eq!(
        d.actions,
        vec![
            Action::LabelPod {
                name: "p1".into(),
                labels: base.clone()
            },
            Action::LabelPod {
                name: "p2".into(),
                labels: base
            },
            Action::SetWorkloadPaused(false),
            Action::SetPartition(None),
        ]
    );
    assert_eq!(st(&r), ("Progressing".into(), 2, "Completed".into()));
    // Rolled out: healthy, the marks gone, and no canary Deployment to delete.
    let mut done = workload("a:2", Some("a:1"), false);
    done.partition = None;
    let d = partition_run(&mut r, &done, own_pods(4, 4), Vec::new(), t0());
    assert_eq!(st(&r).0, "Healthy");
    assert_eq!(d.actions, vec![Action::ClearWorkloadMarks]);
}

#[test]
fn a_new_rollout_id_alone_starts_a_release_of_the_same_template() {
    let mut r = rollout(vec![
        step(IntOrString::String("25%".into()), None),
        step(IntOrString::String("100%".into()), Some(0)),
    ]);
    if let Some(c) = r.spec.strategy.canary.as_mut() {
        c.enable_extra_workload_for_canary = None;
    }
    let mut w = workload("a:1", None, false);
    w.rollout_id = Some("1".into());
    let pods: Vec<CanaryPod> = ["p1", "p2", "p3", "p4"]
        .iter()
        .map(|n| labelled_pod(n, "base"))
        .collect();
    // The id the workload has when the Rollout first settles: observed, no release.
    let d = partition_run(&mut r, &w, own_pods(4, 4), pods.clone(), t0());
    assert_eq!(st(&r).0, "Healthy");
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    let cs = r.status.as_ref().unwrap().canary_status.clone().unwrap();
    assert_eq!(cs.observed_rollout_id.as_deref(), Some("1"));
    // A new id: a release of the same template; the first step counts one pod of four,
    // which alone takes the lane's labels and the batch.
    w.rollout_id = Some("2".into());
    let d = partition_run(&mut r, &w, own_pods(4, 4), pods.clone(), t0());
    assert_eq!(st(&r), ("Progressing".into(), 1, "StepPaused".into()));
    assert!(d.actions.contains(&Action::SetWorkloadPaused(true)));
    let labelled: Vec<&str> = d
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::LabelPod { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(labelled, ["p1", "p1"], "{:?}", d.actions);
    let cs = r.status.as_ref().unwrap().canary_status.clone().unwrap();
    assert_eq!(cs.observed_rollout_id.as_deref(), Some("2"));
}

#[test]
fn a_first_rollout_id_on_a_settled_workload_starts_a_release() {
    let mut r = rollout(vec![step(IntOrString::String("25%".into()), None)]);
    if let Some(c) = r.spec.strategy.canary.as_mut() {
        c.enable_extra_workload_for_canary = Some(false);
    }
    let mut w = workload("a:1", None, false);
    partition_run(&mut r, &w, own_pods(4, 4), Vec::new(), t0());
    assert_eq!(st(&r).0, "Healthy");
    w.rollout_id = Some("1".into());
    partition_run(&mut r, &w, own_pods(4, 4), Vec::new(), t0());
    assert_eq!(st(&r), ("Progressing".into(), 1, "StepPaused".into()));
}

#[test]
fn a_partition_style_lane_label_in_the_workloads_selector_is_not_run() {
    let mut r = rollout(vec![step(IntOrString::Int(1), None)]);
    if let Some(c) = r.spec.strategy.canary.as_mut() {
        c.enable_extra_workload_for_canary = Some(false);
    }
    let mut w = workload("a:2", Some("a:1"), true);
    w.selector = json!({"matchLabels": {"app": "mocka", "ASM_TRAFFIC_TAG": "base"}});
    let d = partition_run(&mut r, &w, own_pods(0, 0), Vec::new(), t0());
    assert_eq!(st(&r).0, "Disabled");
    // The release the admission began stands down: the workload is let go.
    assert_eq!(
        d.actions,
        vec![Action::ClearWorkloadMarks, Action::SetWorkloadPaused(false)]
    );
    let message = r.status.as_ref().unwrap().message.clone().unwrap();
    assert!(
        message.contains("\"ASM_TRAFFIC_TAG\" is in the selector of Deployment \"mocka-v1\""),
        "{message}"
    );
}
