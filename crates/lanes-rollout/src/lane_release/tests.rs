//! A lane release of three members, driven round by round as the controllers drive it:
//! each member's Rollout reconciled with the gate its LaneRelease sets, the actions
//! carried out on its workload and canary, then the LaneRelease reconciled.

use super::*;
use crate::tests::{canary, rollout, step, t0, workload};
use crate::{Action, Canary, Observed};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use lanes_model::lane_release::{LaneReleaseSpec, LaneReleaseStep};
use lanes_model::rollout::{RolloutPause, Verdict};

struct Member {
    rollout: Rollout,
    workload: Workload,
    canaries: Vec<Canary>,
    actions: Vec<Action>,
}

struct World {
    lr: LaneRelease,
    members: Vec<Member>,
    /// The requests that entered the lane at the gateway so far.
    lane: Sample,
    /// The members whose canaries the lane's routes still hold.
    routed: Vec<String>,
    now: jiff::Timestamp,
}

fn lane_release(steps: Vec<LaneReleaseStep>) -> LaneRelease {
    let mut lr = LaneRelease::new(
        "checkout-v2",
        LaneReleaseSpec {
            lane_group: "rollout".into(),
            lane: "canary".into(),
            rollouts: vec!["ro-a".into(), "ro-b".into(), "ro-c".into()],
            steps,
            ..Default::default()
        },
    );
    lr.metadata.namespace = Some("default".into());
    lr.metadata.creation_timestamp = Some(Time(t0()));
    lr
}

fn approval() -> LaneReleaseStep {
    LaneReleaseStep {
        traffic: None,
        pause: Some(RolloutPause { duration: None }),
    }
}

impl World {
    /// Three members, each with steps `1 replica, wait for approval` and `100%`, whose
    /// workloads just got `v2`.
    fn new(steps: Vec<LaneReleaseStep>) -> World {
        let members = ["ro-a", "ro-b", "ro-c"]
            .into_iter()
            .map(|name| {
                let mut r = rollout(vec![
                    step(IntOrString::Int(1), None),
                    step(IntOrString::String("100%".into()), None),
                ]);
                r.metadata.name = Some(name.into());
                Member {
                    rollout: r,
                    workload: workload("a:2", Some("a:1"), false),
                    canaries: Vec::new(),
                    actions: Vec::new(),
                }
            })
            .collect();
        World {
            lr: lane_release(steps),
            members,
            lane: Sample::default(),
            routed: Vec::new(),
            now: t0(),
        }
    }

    /// One round: every member's Rollout, then the LaneRelease.
    fn round(&mut self) {
        self.now += jiff::SignedDuration::from_secs(1);
        for m in &mut self.members {
            let gate = gate_for(
                &[&self.lr],
                m.rollout.metadata.name.as_deref().unwrap_or(""),
                None,
                &m.workload.revision(),
            );
            let d = crate::reconcile(&Observed {
                rollout: &m.rollout,
                generation: 1,
                workload: Some(m.workload.clone()),
                canaries: m.canaries.clone(),
                canary_pods: Vec::new(),
                partition: None,
                now: self.now,
                sample: None,
                canary_problem: None,
                external: Default::default(),
                routed: Vec::new(),
                gate,
            });
            m.rollout.status = Some(d.status);
            for a in &d.actions {
                carry_out(m, a);
            }
            m.actions.extend(d.actions);
        }
        let views = self
            .members
            .iter()
            .map(|m| MemberView {
                name: m.rollout.metadata.name.clone().unwrap_or_default(),
                rollout: Some(&m.rollout),
                workload: Some(m.workload.clone()),
                held_by: None,
            })
            .collect();
        let d = reconcile(&ReleaseObserved {
            release: &self.lr,
            members: views,
            sample: Some(self.lane.clone()),
            external: Default::default(),
            lane_problem: None,
            routed_canaries: self.routed.clone(),
            now: self.now,
        });
        self.lr.status = Some(d.status);
    }

    /// `n` more requests entered the lane, `failed` of them failed.
    fn entered(&mut self, n: u64, failed: u64) {
        self.lane.total += n;
        self.lane.failures += failed;
    }

    fn rounds(&mut self, n: usize) {
        for _ in 0..n {
            self.round();
        }
    }

    fn phase(&self) -> LaneReleasePhase {
        self.lr.phase()
    }

    fn message(&self) -> String {
        self.lr
            .status
            .as_ref()
            .and_then(|s| s.message.clone())
            .unwrap_or_default()
    }

    fn member_message(&self, i: usize) -> String {
        let s = self.members[i].rollout.status.as_ref().unwrap();
        s.message.clone().unwrap_or_default()
    }

    fn approve(&mut self) {
        let s = self.lr.status.as_mut().unwrap();
        assert_eq!(s.current_step_state, Some(StepState::Paused));
        s.current_step_state = Some(StepState::Ready);
    }
}

/// The driver's part: an action on the member's workload and canaries (canaries come up
/// ready at once; a workload rolls out as soon as it is unpaused).
fn carry_out(m: &mut Member, a: &Action) {
    match a {
        Action::SetWorkloadPaused(p) => m.workload.paused = *p,
        Action::ClearWorkloadMarks => m.workload.stable_template = None,
        Action::RestoreStableTemplate => {
            if let Some(t) = m.workload.stable_template.clone() {
                m.workload.template = t;
            }
        }
        Action::CreateCanary { .. } => m.canaries = vec![canary("a:2", 1, 1)],
        Action::ScaleCanary { replicas, .. } => {
            m.canaries = vec![canary("a:2", *replicas, *replicas)]
        }
        Action::DeleteCanary { .. } => m.canaries.clear(),
        _ => {}
    }
}

#[test]
fn members_wait_at_their_gates_and_one_approval_promotes_them_together() {
    let mut w = World::new(vec![approval()]);
    w.rounds(4);
    assert_eq!(w.phase(), LaneReleasePhase::Progressing);
    let st = w.lr.status.clone().unwrap();
    assert_eq!(st.member_list.as_deref(), Some("ro-a,ro-b,ro-c"));
    assert!(
        st.members.iter().all(|m| m.state == MemberState::Ready),
        "{st:?}"
    );
    assert_eq!(
        (st.current_step_index, st.current_step_state),
        (1, Some(StepState::Paused))
    );
    assert!(
        w.message().contains("approve the release"),
        "{}",
        w.message()
    );
    for i in 0..3 {
        assert!(
            w.member_message(i)
                .contains("waits for LaneRelease checkout-v2"),
            "{}",
            w.member_message(i)
        );
        assert!(
            w.members[i].workload.paused,
            "the stable Deployment is held"
        );
    }
    // Nothing moves without the release's approval.
    w.rounds(3);
    assert_eq!(w.phase(), LaneReleasePhase::Progressing);
    w.approve();
    w.round();
    assert_eq!(w.phase(), LaneReleasePhase::Promoting);
    w.round();
    // Every member went to finalising in the same round, its canary kept until all roll.
    for m in &w.members {
        assert!(!m.workload.paused);
        assert_eq!(m.canaries.len(), 1);
    }
    w.rounds(4);
    assert_eq!(w.phase(), LaneReleasePhase::Completed, "{}", w.message());
    for m in &w.members {
        assert!(m.canaries.is_empty(), "the canary went");
        assert_eq!(
            m.rollout.status.as_ref().unwrap().phase,
            Some(RolloutPhase::Healthy)
        );
        let deletes: Vec<usize> = m
            .actions
            .iter()
            .enumerate()
            .filter(|(_, a)| matches!(a, Action::DeleteCanary { .. }))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(deletes.len(), 1, "{:?}", m.actions);
    }
}

#[test]
fn a_member_approved_alone_is_held_back_naming_its_release() {
    let mut w = World::new(vec![approval()]);
    w.rounds(4);
    let cs = w.members[1]
        .rollout
        .status
        .as_mut()
        .unwrap()
        .canary_status
        .as_mut()
        .unwrap();
    cs.current_step_state = StepState::Ready;
    w.round();
    let cs = w.members[1].rollout.status.as_ref().unwrap();
    assert_eq!(
        cs.canary_status.as_ref().unwrap().current_step_state,
        StepState::Paused
    );
    assert!(
        w.member_message(1)
            .contains("member of LaneRelease checkout-v2"),
        "{}",
        w.member_message(1)
    );
    assert!(w.members[1].workload.paused);
}

#[test]
fn a_failed_member_rolls_every_member_back_naming_it() {
    let mut w = World::new(vec![approval()]);
    w.rounds(4);
    // ro-c's own analysis fails its release: its Rollout rolls it back.
    let c = &mut w.members[2];
    c.workload.template = c.workload.stable_template.clone().unwrap();
    let st = c.rollout.status.as_mut().unwrap();
    st.message = Some(
        "rolled back: analysis failed 1 times (failureLimit 0), last success: 0.50 < 0.99".into(),
    );
    let progressing = st
        .conditions
        .iter_mut()
        .find(|c| c.kind == "Progressing")
        .unwrap();
    progressing.reason = Some("RolledBack".into());
    progressing.message = st.message.clone();
    // Refresh the LaneRelease first so the others see its order this round.
    w.round();
    assert_eq!(w.phase(), LaneReleasePhase::RollingBack, "{}", w.message());
    assert!(
        w.message().contains("member ro-c failed"),
        "{}",
        w.message()
    );
    w.rounds(3);
    for i in 0..2 {
        let m = &w.members[i];
        assert!(
            m.actions.contains(&Action::RestoreStableTemplate),
            "member {i}: {:?}",
            m.actions
        );
    }
    assert!(
        w.members
            .iter()
            .all(|m| m.workload.revision() == m.workload.stable_revision())
    );
    let rolled = w.members[0].rollout.status.as_ref().unwrap();
    let why = rolled
        .conditions
        .iter()
        .find(|c| c.kind == "Progressing")
        .unwrap();
    assert!(
        why.message
            .as_deref()
            .unwrap_or("")
            .contains("member ro-c failed"),
        "{why:?}"
    );
    w.rounds(3);
    assert_eq!(w.phase(), LaneReleasePhase::RolledBack, "{}", w.message());
    let st = w.lr.status.as_ref().unwrap();
    let states: Vec<MemberState> = st.members.iter().map(|m| m.state).collect();
    assert_eq!(
        states,
        [
            MemberState::RolledBack,
            MemberState::RolledBack,
            MemberState::Failed
        ]
    );
}

#[test]
fn a_missing_member_or_one_claimed_twice_makes_the_release_invalid_and_free() {
    let mut w = World::new(vec![approval()]);
    w.lr.spec.rollouts.push("ro-missing".into());
    let views = vec![MemberView {
        name: "ro-missing".into(),
        rollout: None,
        workload: None,
        held_by: None,
    }];
    let d = reconcile(&ReleaseObserved {
        release: &w.lr,
        members: views,
        sample: None,
        external: Default::default(),
        lane_problem: None,
        routed_canaries: Vec::new(),
        now: t0(),
    });
    assert_eq!(d.status.phase, Some(LaneReleasePhase::Invalid));
    assert!(
        d.status
            .message
            .as_deref()
            .unwrap()
            .contains("ro-missing not found"),
        "{:?}",
        d.status.message
    );
    w.lr.status = Some(d.status);
    assert_eq!(
        gate_for(&[&w.lr], "ro-a", None, "x"),
        None,
        "touches nothing"
    );

    // Two claimants: the older holds the member, the newer is invalid.
    let older = lane_release(vec![]);
    let mut newer = lane_release(vec![]);
    newer.metadata.name = Some("newer".into());
    newer.metadata.creation_timestamp = Some(Time(t0() + jiff::SignedDuration::from_secs(5)));
    let owner = owner_of(&[&newer, &older], "ro-a", None).unwrap();
    assert_eq!(owner.metadata.name.as_deref(), Some("checkout-v2"));
    let r = rollout(vec![]);
    let d = reconcile(&ReleaseObserved {
        release: &newer,
        members: vec![MemberView {
            name: "ro-a".into(),
            rollout: Some(&r),
            workload: None,
            held_by: Some("checkout-v2".into()),
        }],
        sample: None,
        external: Default::default(),
        lane_problem: None,
        routed_canaries: Vec::new(),
        now: t0(),
    });
    assert_eq!(d.status.phase, Some(LaneReleasePhase::Invalid));
    assert!(
        d.status
            .message
            .unwrap()
            .contains("LaneRelease checkout-v2")
    );
}

/// Approves the release and runs rounds until it is finishing, with the lane's routes
/// still holding every member's canary.
fn finishing_with_canaries_routed(w: &mut World) {
    w.routed = vec!["ro-a".into(), "ro-b".into(), "ro-c".into()];
    w.rounds(4);
    w.approve();
    w.rounds(2);
    assert_eq!(w.phase(), LaneReleasePhase::Finishing, "{}", w.message());
    // The canaries stay while the lane's routes hold them.
    w.rounds(5);
    assert_eq!(w.phase(), LaneReleasePhase::Finishing, "{}", w.message());
    assert!(
        w.message()
            .contains("waiting for the lane's routes to leave the canaries of ro-a, ro-b, ro-c"),
        "{}",
        w.message()
    );
    for m in &w.members {
        assert_eq!(m.canaries.len(), 1, "the canary stays while routed");
    }
}

#[test]
fn the_canaries_go_only_once_the_lanes_routes_have_left_them() {
    let mut w = World::new(vec![approval()]);
    finishing_with_canaries_routed(&mut w);
    // The lane controller compiled the lane without them: all go in the next round.
    w.routed.clear();
    w.round();
    assert!(w.lr.status.as_ref().unwrap().canaries_withdrawn);
    w.round();
    for m in &w.members {
        assert!(m.canaries.is_empty(), "the canary went");
    }
    w.rounds(2);
    assert_eq!(w.phase(), LaneReleasePhase::Completed, "{}", w.message());
}

#[test]
fn the_canaries_go_anyway_when_the_lanes_routes_never_leave_them() {
    let mut w = World::new(vec![approval()]);
    finishing_with_canaries_routed(&mut w);
    let st = w.lr.status.clone().unwrap();
    let since: jiff::Timestamp = st.last_update_time.unwrap().parse().unwrap();
    while !w.lr.status.as_ref().unwrap().canaries_withdrawn {
        w.round();
        assert_eq!(w.phase(), LaneReleasePhase::Finishing);
        assert!(
            w.now <= since + WITHDRAW_TIMEOUT,
            "still waiting at {}",
            w.now
        );
    }
    assert_eq!(w.now, since + WITHDRAW_TIMEOUT);
    assert!(
        w.message().contains("the canaries go anyway"),
        "{}",
        w.message()
    );
    w.rounds(2);
    assert_eq!(w.phase(), LaneReleasePhase::Completed, "{}", w.message());
}

#[test]
fn a_timed_pause_of_the_release_passes_on_its_own() {
    let mut w = World::new(vec![LaneReleaseStep {
        traffic: None,
        pause: Some(RolloutPause { duration: Some(5) }),
    }]);
    w.rounds(4);
    assert_eq!(w.phase(), LaneReleasePhase::Progressing);
    assert!(w.message().contains("paused until"), "{}", w.message());
    w.rounds(6);
    assert!(
        matches!(
            w.phase(),
            LaneReleasePhase::Promoting | LaneReleasePhase::Finishing | LaneReleasePhase::Completed
        ),
        "{:?}: {}",
        w.phase(),
        w.message()
    );
}

#[test]
fn a_member_waits_at_its_first_approval_step_else_its_last() {
    let mut r = rollout(vec![
        step(IntOrString::Int(1), Some(10)),
        step(IntOrString::Int(2), None),
        step(IntOrString::Int(4), None),
    ]);
    let s = crate::plan::strategy(&r).unwrap().clone();
    assert_eq!(hold_step(&s), 2);
    r.spec.strategy.canary.as_mut().unwrap().steps = vec![
        step(IntOrString::Int(1), Some(10)),
        step(IntOrString::Int(2), Some(10)),
    ];
    assert_eq!(hold_step(crate::plan::strategy(&r).unwrap()), 2);
}

fn lane_analysis(failure_limit: u32) -> lanes_model::rollout::Analysis {
    serde_json::from_value(serde_json::json!({
        "interval": "2s",
        "failureLimit": failure_limit,
        "minRequests": 10,
        "metrics": [{"name": "lane-success", "successRate": {"min": 0.95}}],
    }))
    .unwrap()
}

#[test]
fn the_lane_failing_end_to_end_rolls_every_member_back() {
    let mut w = World::new(vec![approval()]);
    w.lr.spec.analysis = Some(lane_analysis(1));
    w.rounds(4);
    assert_eq!(w.lr.status.as_ref().unwrap().current_step_index, 1);
    // Each member's canary is healthy on its own; what entered the lane fails.
    for _ in 0..8 {
        w.entered(20, 10);
        w.round();
        if w.phase() != LaneReleasePhase::Progressing {
            break;
        }
    }
    assert_eq!(w.phase(), LaneReleasePhase::RollingBack, "{}", w.message());
    assert!(
        w.message()
            .contains("lane \"canary\" failed its end-to-end analysis: analysis failed 2 times (failureLimit 1)"),
        "{}",
        w.message()
    );
    let a = w.lr.status.as_ref().unwrap().analysis.clone().unwrap();
    assert_eq!(a.failures, 2);
    let failed = a
        .measurements
        .iter()
        .filter(|m| m.verdict == Verdict::Failed);
    assert_eq!(failed.count(), 2, "{a:?}");
    assert!(a.measurements.iter().all(|m| m.verdict != Verdict::Passed));
    w.rounds(6);
    assert_eq!(w.phase(), LaneReleasePhase::RolledBack, "{}", w.message());
    for m in &w.members {
        assert!(m.actions.contains(&Action::RestoreStableTemplate));
        assert_eq!(m.workload.revision(), m.workload.stable_revision());
    }
    // No member failed: the lane did.
    let st = w.lr.status.as_ref().unwrap();
    assert!(
        st.members
            .iter()
            .all(|m| m.state == MemberState::RolledBack)
    );
}

#[test]
fn a_healthy_lane_is_promoted_only_after_a_passed_round() {
    let mut w = World::new(vec![approval()]);
    w.lr.spec.analysis = Some(lane_analysis(0));
    w.rounds(4);
    w.approve();
    w.round();
    // Approved, but no round of the lane's analysis has passed yet.
    assert_eq!(w.phase(), LaneReleasePhase::Progressing);
    assert!(
        w.message()
            .contains("waiting for a round of the lane's analysis"),
        "{}",
        w.message()
    );
    // Too few requests: inconclusive, never a pass (nor a failure).
    w.entered(3, 0);
    w.rounds(3);
    assert_eq!(w.phase(), LaneReleasePhase::Progressing);
    for _ in 0..4 {
        w.entered(50, 1);
        w.round();
        if w.phase() != LaneReleasePhase::Progressing {
            break;
        }
    }
    assert_eq!(w.phase(), LaneReleasePhase::Promoting, "{}", w.message());
    let a = w.lr.status.as_ref().unwrap().analysis.clone().unwrap();
    assert!(a.passes >= 1 && a.failures == 0, "{a:?}");
}

#[test]
fn a_release_whose_lane_names_nothing_is_invalid_and_says_which_field() {
    let w = World::new(vec![approval()]);
    let groups: BTreeMap<String, Vec<String>> = [(
        "rollout".to_string(),
        vec!["base".to_string(), "canary".to_string()],
    )]
    .into();
    assert_eq!(lane_problem(&w.lr, &groups), None);
    let mut lr = w.lr.clone();
    lr.spec.lane = "canry".into();
    let why = lane_problem(&lr, &groups).unwrap();
    assert!(
        why.starts_with(
            "spec.lane: lane group \"rollout\" has no lane \"canry\" (it has base, canary)"
        ),
        "{why}"
    );
    lr.spec.lane_group = "other".into();
    let why = lane_problem(&lr, &groups).unwrap();
    assert!(
        why.starts_with("spec.laneGroup: no lane group \"other\""),
        "{why}"
    );
    let d = reconcile(&ReleaseObserved {
        release: &lr,
        members: Vec::new(),
        sample: None,
        external: Default::default(),
        lane_problem: Some(why.clone()),
        routed_canaries: Vec::new(),
        now: t0(),
    });
    assert_eq!(d.status.phase, Some(LaneReleasePhase::Invalid));
    assert_eq!(d.status.message.as_deref(), Some(why.as_str()));
}
