//! A release's steps, as Kruise runs them: each step goes `StepUpgrade` (canary replicas
//! up) → `StepTrafficRouting` → `StepMetricsAnalysis` → `StepPaused` (a duration, or
//! approval) → `StepReady`, and after the last one the release is `Completed`: the
//! stable Deployment rolls to the new template, then the canary goes. A reconcile moves
//! through as many states as are ready.

use lanes_model::rollout::{
    Analysis, AnalysisStatus, CanaryStatus, CanaryStep, CanaryStrategy, OnFailure, Rollout,
    RolloutPhase, RolloutStatus, Sample, StepState,
};

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::analysis;
use crate::decision::{Action, Decision, Failure, Reason, with_condition};
use crate::lane_release::{Gate, Order, hold_step};
use crate::observe::{Canary, Observed, Workload};
use crate::plan::{
    canary_deployment, canary_name, is_partition, lane_labels, plan_hash, step_replicas,
};

/// What a step state decided.
enum Flow {
    /// On to this state, in this reconcile.
    To(StepState),
    /// This reconcile ends here.
    Stop(Stop),
}

/// Where a reconcile of a release ends.
enum Stop {
    /// Waiting, saying why.
    Wait(String),
    /// The release failed: how it ends, and why.
    Failed(Failure, String),
    /// The stable Deployment runs the new revision: the release is over.
    Finished,
}

fn wait(message: String) -> Flow {
    Flow::Stop(Stop::Wait(message))
}

/// What a reconcile of a release reads.
struct Release<'a> {
    obs: &'a Observed<'a>,
    r: &'a Rollout,
    w: &'a Workload,
    strategy: &'a CanaryStrategy,
    revision: String,
    /// The canary Deployment's name for the current template.
    canary: String,
    /// That canary, if it exists (partition style: the workload's pods at the new
    /// template).
    current: Option<&'a Canary>,
    /// Partition style: the workload's own pods are the canary's.
    partition: bool,
    total_steps: i32,
    /// The canary's counts now, stamped with the time.
    sample_now: Option<Sample>,
}

/// What a reconcile of a release changes.
struct Progress {
    cs: CanaryStatus,
    analysis: Option<AnalysisStatus>,
    actions: Vec<Action>,
    wake_at: Option<jiff::Timestamp>,
}

impl Progress {
    /// Asks to be looked at again at `at`, at the latest.
    fn wake(&mut self, at: jiff::Timestamp) {
        self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
    }
}

/// One reconcile of a release in flight (or finalising).
pub(crate) fn run(
    obs: &Observed<'_>,
    w: &Workload,
    strategy: &CanaryStrategy,
    mut status: RolloutStatus,
) -> Decision {
    let rel = Release::new(obs, w, strategy);
    let mut p = Progress {
        cs: rel.canary_status(&status),
        analysis: rel.analysis_status(&status),
        actions: Vec::new(),
        wake_at: None,
    };
    for c in obs.canaries.iter().filter(|c| c.name != rel.canary) {
        p.actions.push(Action::DeleteCanary {
            name: c.name.clone(),
        });
    }
    // A new revision (a release replaced mid-way) starts its partition afresh at step 1.
    let fresh = status
        .canary_status
        .as_ref()
        .and_then(|c| c.canary_revision.as_deref())
        != Some(rel.revision.as_str());
    if rel.partition && fresh && w.partition.is_some() {
        p.actions
            .push(Action::SetPartition(Some(rel.partition_at(1))));
    }
    let before_steps = p.actions.len();
    // What the canary has (Kruise's canaryReplicas), not what the step wants.
    p.cs.canary_replicas = rel.current.map_or(0, |c| c.replicas);
    p.cs.canary_ready_replicas = rel.current.map_or(0, |c| c.ready);
    if let Some(hash) = rel.current.and_then(|c| c.pod_hash.clone()) {
        p.cs.pod_template_hash = Some(hash);
    }
    let rolled_back = match obs.gate.as_ref() {
        Some(Gate {
            release,
            order: Order::RollBack(why),
        }) if p.cs.current_step_state != StepState::Completed => Some(format!(
            "LaneRelease {release} rolls back every member: {why}"
        )),
        _ => None,
    };
    let stop = if let Some(why) = rolled_back {
        Stop::Failed(Failure::RolledBack, why)
    } else if rel.r.spec.strategy.paused.unwrap_or(false) {
        Stop::Wait(format!(
            "Rollout is paused in step {}/{} ({})",
            p.cs.current_step_index, rel.total_steps, p.cs.current_step_state
        ))
    } else {
        rel.advance(&mut p)
    };
    // The workload stays paused until the release finalises — judged on the state this
    // reconcile ends in, so a reconcile redone after its status write lost a conflict
    // does not pause again a workload that the lost write's finalising unpaused.
    if !w.paused && p.cs.current_step_state != StepState::Completed {
        p.actions
            .insert(before_steps, Action::SetWorkloadPaused(true));
    }
    let (reason, message) = match stop {
        Stop::Finished => return rel.finished(p.actions, status),
        Stop::Failed(failure, why) => {
            (Reason::of_failure(failure), rel.fail(&mut p, failure, &why))
        }
        Stop::Wait(message) if rel.r.spec.strategy.paused.unwrap_or(false) => {
            (Reason::Paused, message)
        }
        Stop::Wait(message) if p.cs.current_step_state == StepState::Completed => {
            (Reason::Finalising, message)
        }
        Stop::Wait(message) => (Reason::InRolling, message),
    };
    p.cs.message = Some(message.clone());
    status.canary_status = Some(p.cs);
    status.analysis = p.analysis;
    Decision {
        actions: p.actions,
        status: with_condition(status, RolloutPhase::Progressing, reason, message, obs.now),
        wake_at: p.wake_at,
    }
}

impl<'a> Release<'a> {
    fn new(obs: &'a Observed<'a>, w: &'a Workload, strategy: &'a CanaryStrategy) -> Self {
        let revision = w.revision();
        let canary = canary_name(&w.name, &revision);
        let partition = is_partition(obs.rollout);
        let current = match partition {
            true => obs.partition.as_ref(),
            false => obs.canaries.iter().find(|c| c.name == canary),
        };
        let sample_now = obs.sample.clone().map(|mut s| {
            s.time = obs.now.to_string();
            s
        });
        Release {
            obs,
            r: obs.rollout,
            w,
            strategy,
            revision,
            canary,
            current,
            partition,
            total_steps: strategy.steps.len().max(1) as i32,
            sample_now,
        }
    }

    fn now(&self) -> String {
        self.obs.now.to_string()
    }

    fn step_at(&self, idx: i32) -> Option<&'a CanaryStep> {
        self.strategy.steps.get((idx - 1).max(0) as usize)
    }

    /// Canary replicas step `idx` wants ([`crate::plan::want_at`]).
    fn want_at(&self, idx: i32) -> i32 {
        crate::plan::want_at(self.strategy, self.w, idx)
    }

    fn analysis_cfg(&self) -> Option<&'a Analysis> {
        self.strategy.analysis.as_ref()
    }

    /// The canary status to go on from: a fresh one for a new release (or a newer
    /// template during one: start over at step 1; or a new rollout id once a release is
    /// through), the current step redone when the plan changed mid-release.
    fn canary_status(&self, status: &RolloutStatus) -> CanaryStatus {
        let plan = plan_hash(self.r);
        let mut cs = status.canary_status.clone().unwrap_or_default();
        let new_id = cs.current_step_state == StepState::Completed
            && status.phase == Some(RolloutPhase::Healthy)
            && self.w.rollout_id.is_some()
            && cs.observed_rollout_id != self.w.rollout_id;
        if cs.canary_revision.as_deref() != Some(self.revision.as_str()) || new_id {
            cs = CanaryStatus {
                stable_revision: Some(self.w.stable_revision()),
                canary_revision: Some(self.revision.clone()),
                pod_template_hash: Some(self.revision.clone()),
                current_step_index: 1,
                current_step_state: StepState::Upgrade,
                next_step_index: Some(self.after(1)),
                rollout_hash: Some(plan),
                last_update_time: Some(self.now()),
                ..Default::default()
            };
        } else if cs.rollout_hash.as_deref() != Some(plan.as_str())
            && cs.current_step_state != StepState::Completed
        {
            cs.rollout_hash = Some(plan);
            cs.current_step_index = cs.current_step_index.clamp(1, self.total_steps);
            cs.next_step_index = Some(self.after(cs.current_step_index));
            cs.current_step_state = StepState::Upgrade;
            cs.last_update_time = Some(self.now());
        }
        cs.observed_workload_generation = Some(self.w.generation);
        cs
    }

    /// The analysis record of this revision (a new one when the release has analysis).
    fn analysis_status(&self, status: &RolloutStatus) -> Option<AnalysisStatus> {
        let kept = status
            .analysis
            .clone()
            .filter(|a| a.revision == self.revision);
        match (kept, self.analysis_cfg()) {
            (Some(a), _) => Some(a),
            (None, Some(_)) => Some(AnalysisStatus {
                revision: self.revision.clone(),
                last_sample: self.sample_now.clone(),
                ..Default::default()
            }),
            (None, None) => None,
        }
    }

    /// Moves through as many step states as are ready in this reconcile.
    fn advance(&self, p: &mut Progress) -> Stop {
        loop {
            let flow = match p.cs.current_step_state {
                StepState::Upgrade => self.upgrade(p),
                StepState::TrafficRouting => match self.unrouted(p) {
                    Some(why) => wait(why),
                    None => {
                        if let Some(a) = p.analysis.as_mut() {
                            a.passes = 0;
                        }
                        Flow::To(StepState::MetricsAnalysis)
                    }
                },
                StepState::MetricsAnalysis => self.metrics_analysis(p),
                StepState::Paused => self.paused(p),
                StepState::Ready if self.held(&p.cs).is_some() => {
                    // Approved on its own: a member moves on with its release only.
                    p.cs.current_step_state = StepState::Paused;
                    let release = self.held(&p.cs).unwrap_or_default();
                    return Stop::Wait(format!(
                        "approval of this Rollout alone is refused: it is a member of LaneRelease {release}; approve the release (lanes release approve {release})"
                    ));
                }
                StepState::Ready => match self.next_step(&p.cs) {
                    Ok(Some(next)) => {
                        p.cs.current_step_index = next;
                        p.cs.next_step_index = Some(self.after(next));
                        Flow::To(StepState::BeforeUpgrade)
                    }
                    Ok(None) => Flow::To(StepState::Completed),
                    Err(why) => wait(why),
                },
                StepState::BeforeUpgrade => Flow::To(StepState::Upgrade),
                StepState::Completed => self.finalise(p),
            };
            match flow {
                Flow::To(state) => {
                    p.cs.current_step_state = state;
                    p.cs.last_update_time = Some(self.now());
                }
                Flow::Stop(stop) => return stop,
            }
        }
    }

    /// Kruise's `nextStepIndex` after step `idx`: the next step, or -1 after the last.
    fn after(&self, idx: i32) -> i32 {
        if idx < self.total_steps { idx + 1 } else { -1 }
    }

    /// The step a ready step goes on to: `nextStepIndex` as published, or as a status
    /// patch set it (Kruise's step jump, back or forward); `None` when the release is
    /// through its steps.
    fn next_step(&self, cs: &CanaryStatus) -> Result<Option<i32>, String> {
        let next = cs
            .next_step_index
            .unwrap_or_else(|| self.after(cs.current_step_index));
        match next {
            -1 => Ok(None),
            n if (1..=self.total_steps).contains(&n) => Ok(Some(n)),
            n => Err(format!(
                "status.canaryStatus.nextStepIndex {n} names no step: steps are 1 to {} (or -1 to finish)",
                self.total_steps
            )),
        }
    }

    /// Why the lanes' ingress does not carry the step's share yet, if it does not: a
    /// Rollout whose steps route traffic waits until every generated ingress route of
    /// the release gives the canary the step's share (none: no lane group routes it).
    fn unrouted(&self, p: &mut Progress) -> Option<String> {
        if !self.r.routes_traffic() {
            return None;
        }
        let want = self.routed_share(p.cs.current_step_index);
        let routed = &self.obs.routed;
        if !routed.is_empty() && routed.iter().all(|w| *w == want) {
            return None;
        }
        p.wake(self.obs.now + jiff::SignedDuration::from_secs(1));
        Some(if routed.is_empty() {
            format!(
                "Rollout is in step({}/{}), waiting for a lane group to route its traffic: none holds the workload's Service with a lane selecting the canary's pods",
                p.cs.current_step_index, self.total_steps
            )
        } else {
            format!(
                "Rollout is in step({}/{}), waiting for the lanes' ingress to route {want}% to the canary (now {routed:?})",
                p.cs.current_step_index, self.total_steps
            )
        })
    }

    /// The share step `idx` routes: its traffic, or the last one named before it.
    fn routed_share(&self, idx: i32) -> u32 {
        self.strategy
            .steps
            .iter()
            .take(idx.max(0) as usize)
            .rev()
            .find(|s| s.traffic.is_some() || !s.matches.is_empty())
            .and_then(CanaryStep::traffic_percent)
            .unwrap_or(0)
    }

    /// When the current step state was entered.
    fn since(&self, cs: &CanaryStatus) -> jiff::Timestamp {
        cs.last_update_time
            .as_deref()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .unwrap_or(self.obs.now)
    }

    /// `StepUpgrade`: the canary Deployment at the step's replicas, and enough of them
    /// ready (within `failureThreshold`) before the progress deadline.
    fn upgrade(&self, p: &mut Progress) -> Flow {
        let idx = p.cs.current_step_index;
        let want = self.want_at(idx);
        match self.current {
            // Partition style: the workload's controller brings the step's share of its
            // pods to the new template (never fewer, as a canary is never scaled down:
            // a jump back keeps the larger partition; a percentage follows the
            // workload's replicas).
            _ if self.partition => {
                if self.w.partitioned() < want {
                    p.actions
                        .push(Action::SetPartition(Some(self.partition_at(idx))));
                }
            }
            None => p.actions.push(Action::CreateCanary {
                name: self.canary.clone(),
                deployment: canary_deployment(self.r, self.ns(), self.w, &self.canary, want),
            }),
            // As in Kruise, a release never scales its canary down (a jump back, or a
            // step changed to fewer pods, keeps the pods it has).
            Some(c) if c.replicas < want => p.actions.push(Action::ScaleCanary {
                name: self.canary.clone(),
                replicas: want,
            }),
            Some(_) => {}
        }
        let tolerated = match &self.strategy.failure_threshold {
            Some(t) => step_replicas(Some(t), want).min(want),
            None => 0,
        };
        let ready = self.current.map_or(0, |c| c.ready);
        // The threshold tolerates unavailable pods, never a step without a ready one.
        let needed = (want - tolerated).max(want.min(1));
        if self.current.is_some_and(|c| c.replicas >= want) && ready >= needed {
            return Flow::To(StepState::TrafficRouting);
        }
        if let Some(deadline) = self.strategy.progress_deadline_seconds {
            let due = self.since(&p.cs) + jiff::SignedDuration::from_secs(deadline);
            if self.obs.now > due {
                let why = self
                    .obs
                    .canary_problem
                    .clone()
                    .unwrap_or_else(|| "its pods are not ready".into());
                return Flow::Stop(Stop::Failed(
                    Failure::RolledBack,
                    format!(
                        "the canary was not ready within progressDeadlineSeconds {deadline} ({ready}/{want} ready): {why}"
                    ),
                ));
            }
            p.wake(due + jiff::SignedDuration::from_secs(1));
        }
        wait(format!(
            "Rollout is in step({idx}/{}), and upgrading the canary: {ready}/{want} ready",
            self.total_steps
        ))
    }

    /// The partition step `idx` sets: its replicas as written (a percentage stays one),
    /// capped at the workload's replicas.
    fn partition_at(&self, idx: i32) -> IntOrString {
        match self.step_at(idx).and_then(|s| s.replicas.clone()) {
            Some(IntOrString::String(s)) => IntOrString::String(s),
            _ => IntOrString::Int(self.want_at(idx)),
        }
    }

    /// Whether step `idx` runs the canary at 100% of the workload's pods.
    fn is_whole(&self, idx: i32) -> bool {
        matches!(
            self.step_at(idx).and_then(|s| s.replicas.as_ref()),
            Some(IntOrString::String(s)) if lanes_model::validate::parse_percent(s) == Some(100)
        )
    }

    fn ns(&self) -> &'a str {
        self.r.metadata.namespace.as_deref().unwrap_or("default")
    }

    /// `StepMetricsAnalysis`: a passed round moves on; failures beyond the limit end
    /// the release.
    fn metrics_analysis(&self, p: &mut Progress) -> Flow {
        if self.analysis_cfg().is_none() {
            return Flow::To(StepState::Paused);
        }
        if let Some((failure, why)) = self.analysis_round(p) {
            return Flow::Stop(Stop::Failed(failure, why));
        }
        if p.analysis.as_ref().is_some_and(|a| a.passes >= 1) {
            return Flow::To(StepState::Paused);
        }
        let last = p
            .analysis
            .as_ref()
            .and_then(|a| a.measurements.last())
            .and_then(|m| m.message.clone())
            .unwrap_or_else(|| "waiting for the first measurement".into());
        wait(format!(
            "Rollout is in step({}/{}), analysing the canary: {last}",
            p.cs.current_step_index, self.total_steps
        ))
    }

    /// The LaneRelease holding the release at its gate now, if one does: the member has
    /// reached its hold step and the release has not ordered it on.
    fn held(&self, cs: &CanaryStatus) -> Option<String> {
        let gate = self.obs.gate.as_ref()?;
        (gate.order == Order::Hold && cs.current_step_index >= hold_step(self.strategy))
            .then(|| gate.release.clone())
    }

    /// `StepPaused`: analysis goes on; a member of a LaneRelease waits at its gate for
    /// the release, and goes straight through once the release promotes it; else the
    /// step waits out its pause duration, or for approval when it has none.
    fn paused(&self, p: &mut Progress) -> Flow {
        if let Some((failure, why)) = self.analysis_round(p) {
            return Flow::Stop(Stop::Failed(failure, why));
        }
        let idx = p.cs.current_step_index;
        if let Some(release) = self.held(&p.cs) {
            return wait(format!(
                "Rollout is in step({idx}/{}), its canary ready, and waits for LaneRelease {release} to promote its members together",
                self.total_steps
            ));
        }
        if self
            .obs
            .gate
            .as_ref()
            .is_some_and(|g| matches!(g.order, Order::Promote | Order::Finish))
        {
            // Promoted with the release: on to finalising, past any further steps.
            p.cs.next_step_index = Some(-1);
            return Flow::To(StepState::Ready);
        }
        if idx == self.total_steps && self.is_whole(idx) {
            // Kruise: a last step of every pod needs no approval.
            return Flow::To(StepState::Ready);
        }
        let Some(secs) = self
            .step_at(idx)
            .and_then(|s| s.pause.as_ref())
            .and_then(|p| p.duration)
        else {
            return wait(format!(
                "Rollout is in step({idx}/{}), and you need manually confirm to enter the next step",
                self.total_steps
            ));
        };
        // The pause counts from when the step entered it.
        let until = self.since(&p.cs) + jiff::SignedDuration::from_secs(secs);
        if self.obs.now >= until {
            return Flow::To(StepState::Ready);
        }
        p.wake(until);
        wait(format!(
            "Rollout is in step({idx}/{}), paused until {until}",
            self.total_steps
        ))
    }

    /// `Completed`: the stable Deployment rolls to the new template; once it has, the
    /// canary goes and the release marks are removed.
    fn finalise(&self, p: &mut Progress) -> Flow {
        let w = self.w;
        if w.paused && self.r.routes_traffic() && self.obs.routed.iter().any(|w| *w > 0) {
            // Traffic goes back to the baseline before it rolls.
            p.cs.finalising_step = Some("RestoreStableService".into());
            p.wake(self.obs.now + jiff::SignedDuration::from_secs(1));
            return wait(format!(
                "Rollout is finalising: routing all traffic back to the baseline lane (canary share now {:?})",
                self.obs.routed
            ));
        }
        if self.partition {
            // The canary's pods take back the template's labels before the workload
            // rolls the rest of its pods onto their revision.
            let back = lane_labels(self.r, w, false);
            p.actions
                .extend(crate::batch::set_labels(&back, &self.obs.canary_pods));
        }
        if w.paused {
            p.actions.push(Action::SetWorkloadPaused(false));
            if w.partition.is_some() {
                p.actions.push(Action::SetPartition(None));
            }
            p.cs.finalising_step = Some("RestoreStableDeployment".into());
            return wait(
                "Rollout is finalising: the stable Deployment rolls to the new revision".into(),
            );
        }
        let promoted_alone = self.obs.gate.as_ref().filter(|g| g.order == Order::Promote);
        if let Some(g) = promoted_alone.filter(|_| w.rolled_out()) {
            p.cs.finalising_step = Some("WaitLaneRelease".into());
            p.wake(self.obs.now + jiff::SignedDuration::from_secs(1));
            return wait(format!(
                "Rollout is finalising: the stable Deployment runs the new revision; the canary stays until every member of LaneRelease {} does",
                g.release
            ));
        }
        if w.rolled_out() {
            for c in &self.obs.canaries {
                p.actions.push(Action::DeleteCanary {
                    name: c.name.clone(),
                });
            }
            p.actions.push(Action::ClearWorkloadMarks);
            return Flow::Stop(Stop::Finished);
        }
        p.cs.finalising_step = Some("WaitStableDeploymentReady".into());
        wait(format!(
            "Rollout is finalising: stable Deployment {}/{} updated, {}/{} available",
            w.updated, w.replicas, w.available, w.replicas
        ))
    }

    /// The decision once the stable Deployment runs the new revision.
    fn finished(&self, actions: Vec<Action>, mut status: RolloutStatus) -> Decision {
        let before = status.canary_status.take().unwrap_or_default();
        // What Kruise keeps at rest: the release's revision, the workload generation and
        // rollout id it observed, the plan's hash.
        status.canary_status = Some(CanaryStatus {
            observed_rollout_id: before.observed_rollout_id,
            observed_workload_generation: Some(self.w.generation),
            rollout_hash: before.rollout_hash,
            stable_revision: Some(self.revision.clone()),
            canary_revision: Some(self.revision.clone()),
            pod_template_hash: before.pod_template_hash,
            current_step_state: StepState::Completed,
            current_step_index: self.total_steps,
            next_step_index: Some(-1),
            finalising_step: Some("DeleteCanaryDeployment".into()),
            last_update_time: Some(self.now()),
            ..Default::default()
        });
        Decision {
            actions,
            ..Decision::settled(with_condition(
                status,
                RolloutPhase::Healthy,
                Reason::Completed,
                "workload deployment is completed".into(),
                self.obs.now,
            ))
        }
    }

    /// Ends the release as `failure` says; returns the message.
    fn fail(&self, p: &mut Progress, failure: Failure, why: &str) -> String {
        p.actions.push(match failure {
            Failure::RolledBack => Action::RestoreStableTemplate,
            Failure::Paused => Action::PauseRollout,
        });
        format!("{} {why}", failure.prefix())
    }

    /// One analysis round when its interval has passed (a verdict per metric); the
    /// release's failure when failed rounds now exceed `failureLimit`.
    fn analysis_round(&self, p: &mut Progress) -> Option<(Failure, String)> {
        let (cfg, a, cur) = (
            self.analysis_cfg()?,
            p.analysis.as_mut()?,
            self.sample_now.as_ref()?,
        );
        let round = analysis::round(cfg, a, cur, &self.obs.external, self.obs.now);
        p.wake(round.next);
        let failure = match cfg.on_failure {
            OnFailure::Rollback => Failure::RolledBack,
            OnFailure::Pause => Failure::Paused,
        };
        Some((failure, round.failed?))
    }
}
