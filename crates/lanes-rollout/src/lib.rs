//! The rollout state machine, with Kruise Rollout v1beta1 semantics: a release starts
//! when the workload's pod template changes; the stable Deployment stays paused on the
//! old version while a canary Deployment `<workload>-<hash>` runs the new one, step by
//! step (`StepUpgrade` → `StepTrafficRouting` → `StepMetricsAnalysis` → `StepPaused` →
//! `StepReady`), until approval and finalising move the new version into the stable
//! Deployment. Pure: [`reconcile`] maps what is observed to actions and a status; the
//! embedded and Kubernetes drivers carry the actions out.

pub mod admission;
pub mod analysis;
pub mod events;
pub mod status;
pub mod target;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use lanes_model::rollout::{
    AnalysisStatus, CanaryStatus, CanaryStrategy, OnFailure, Rollout, RolloutCondition,
    RolloutStatus, Sample,
};
use serde_json::{Value, json};

/// Annotation on the workload holding the stable pod template while a release runs.
pub const STABLE_TEMPLATE: &str = "lanes.dev/stable-template";
/// How the message of a release the controller rolled back begins.
pub const ROLLED_BACK: &str = "rolled back:";

/// Kruise's annotation on a workload under a release.
pub const IN_PROGRESSING: &str = "rollouts.kruise.io/in-progressing";
/// Label on a canary Deployment naming its workload.
pub const CANARY_LABEL: &str = "rollouts.kruise.io/canary-deployment";

/// Step states, as Kruise names them.
pub mod state {
    /// Canary replicas being brought up.
    pub const UPGRADE: &str = "StepUpgrade";
    /// Traffic being routed (lanes route by label: immediate).
    pub const TRAFFIC_ROUTING: &str = "StepTrafficRouting";
    /// Metrics being analysed.
    pub const METRICS_ANALYSIS: &str = "StepMetricsAnalysis";
    /// Waiting for the pause duration or for approval.
    pub const PAUSED: &str = "StepPaused";
    /// Approved: on to the next step.
    pub const READY: &str = "StepReady";
    /// Every step done: finalising.
    pub const COMPLETED: &str = "Completed";
}

/// The workload as the controller sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// Name.
    pub name: String,
    /// Generation.
    pub generation: i64,
    /// `spec.replicas`.
    pub replicas: i32,
    /// `spec.selector.matchLabels`.
    pub selector: Value,
    /// `spec.template`.
    pub template: Value,
    /// `spec.paused`.
    pub paused: bool,
    /// The stable template recorded when the release started.
    pub stable_template: Option<Value>,
    /// `status.observedGeneration`.
    pub observed_generation: i64,
    /// `status.updatedReplicas`.
    pub updated: i32,
    /// `status.availableReplicas`.
    pub available: i32,
    /// `status.replicas`.
    pub total: i32,
}

impl Workload {
    /// Reads a Deployment's JSON.
    pub fn from_value(v: &Value) -> Option<Workload> {
        let int = |p: &str| v.pointer(p).and_then(Value::as_i64).unwrap_or(0);
        let stable = v
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(STABLE_TEMPLATE))
            .and_then(Value::as_str)
            .and_then(|s| serde_json::from_str(s).ok());
        Some(Workload {
            name: v.pointer("/metadata/name")?.as_str()?.to_string(),
            generation: int("/metadata/generation"),
            replicas: v
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1) as i32,
            selector: v.pointer("/spec/selector").cloned().unwrap_or(Value::Null),
            template: v.pointer("/spec/template").cloned().unwrap_or(Value::Null),
            paused: v
                .pointer("/spec/paused")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            stable_template: stable,
            observed_generation: int("/status/observedGeneration"),
            updated: int("/status/updatedReplicas") as i32,
            available: int("/status/availableReplicas") as i32,
            total: int("/status/replicas") as i32,
        })
    }

    /// The hash of the current template.
    pub fn revision(&self) -> String {
        lanes_model::hash::template_hash(&self.template)
    }

    /// The hash of the stable template (the current one when no release runs).
    pub fn stable_revision(&self) -> String {
        self.stable_template
            .as_ref()
            .map_or_else(|| self.revision(), lanes_model::hash::template_hash)
    }

    /// Whether the Deployment finished rolling to its current template.
    pub fn rolled_out(&self) -> bool {
        self.observed_generation >= self.generation
            && self.updated == self.replicas
            && self.available == self.replicas
            && self.total == self.replicas
    }
}

/// A canary Deployment as the controller sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canary {
    /// Name.
    pub name: String,
    /// `spec.replicas`.
    pub replicas: i32,
    /// `status.readyReplicas`.
    pub ready: i32,
}

/// What the controller observed.
#[derive(Debug, Clone)]
pub struct Observed<'a> {
    /// The Rollout.
    pub rollout: &'a Rollout,
    /// Its generation.
    pub generation: i64,
    /// The workload, if it exists.
    pub workload: Option<Workload>,
    /// Canary Deployments of the workload.
    pub canaries: Vec<Canary>,
    /// Now.
    pub now: jiff::Timestamp,
    /// Cumulative counts of the canary's attempts now (for analysis).
    pub sample: Option<Sample>,
    /// Why canary pods are not ready, when the runtime says (for the progress deadline).
    pub canary_problem: Option<String>,
    /// Values of the `prometheus` metrics, by metric name, when the driver queried them.
    pub external: std::collections::BTreeMap<String, Result<f64, String>>,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Set the workload's `spec.paused`.
    SetWorkloadPaused(bool),
    /// Remove the release marks (stable template, in-progressing) from the workload.
    ClearWorkloadMarks,
    /// Create a canary Deployment.
    CreateCanary {
        /// Name.
        name: String,
        /// The whole Deployment.
        deployment: Value,
    },
    /// Set a canary Deployment's replicas.
    ScaleCanary {
        /// Name.
        name: String,
        /// Replicas.
        replicas: i32,
    },
    /// Delete a canary Deployment.
    DeleteCanary {
        /// Name.
        name: String,
    },
    /// Write the stable template back to the workload (a rollback, as `undo`).
    RestoreStableTemplate,
    /// Set the Rollout's `spec.strategy.paused`.
    PauseRollout,
}

/// The controller's decision: actions and the new status.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Actions, in order.
    pub actions: Vec<Action>,
    /// The new status.
    pub status: RolloutStatus,
}

/// Canary replicas a step asks for: an integer, or a percentage of the workload's
/// replicas rounded up (at least one for a non-zero percentage).
pub fn step_replicas(step: Option<&IntOrString>, workload_replicas: i32) -> i32 {
    match step {
        None => 1,
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => {
            let pct = lanes_model::validate::parse_percent(s).unwrap_or(0) as i32;
            if pct == 0 {
                0
            } else {
                ((workload_replicas * pct + 99) / 100).max(1)
            }
        }
    }
}

fn strategy(r: &Rollout) -> Option<&CanaryStrategy> {
    r.spec.strategy.canary.as_ref()
}

/// Whether Rollout `r` targets Deployment `namespace/name`.
pub fn targets_deployment(r: &Rollout, namespace: &str, name: &str) -> bool {
    r.metadata.namespace.as_deref().unwrap_or("default") == namespace
        && r.spec.workload_ref.kind == "Deployment"
        && r.spec.workload_ref.name == name
}

/// Whether Rollout `r` runs releases of its workload: enabled, with a canary strategy.
pub fn manages(r: &Rollout) -> bool {
    !r.spec.disabled.unwrap_or(false) && r.spec.strategy.canary.is_some()
}

/// The Rollout among `rollouts` that manages Deployment `namespace/name`: of the enabled
/// ones targeting it, the oldest (by creation time, then name), as only one Rollout may
/// run a workload's releases.
pub fn manager_of<'a>(rollouts: &'a [Rollout], namespace: &str, name: &str) -> Option<&'a Rollout> {
    let created = |r: &Rollout| {
        r.metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_second())
            .unwrap_or(i64::MIN)
    };
    rollouts
        .iter()
        .filter(|r| targets_deployment(r, namespace, name) && manages(r))
        .min_by(|a, b| {
            created(a)
                .cmp(&created(b))
                .then_with(|| a.metadata.name.cmp(&b.metadata.name))
        })
}

/// The decision for a Rollout whose workload another Rollout (`owner`) already manages:
/// no action at all, and a status saying which and where.
pub fn conflicting(obs: &Observed<'_>, owner: &str) -> Decision {
    let r = obs.rollout;
    let ns = r.metadata.namespace.as_deref().unwrap_or("default");
    let mut status = r.status.clone().unwrap_or_default();
    status.observed_generation = Some(obs.generation);
    status.canary_status = None;
    let message = format!(
        "spec.workloadRef: Deployment {ns}/{} is already managed by Rollout {ns}/{owner}; this Rollout does nothing until that one is gone",
        r.spec.workload_ref.name
    );
    Decision {
        actions: Vec::new(),
        status: with_message(status, "Initial", message, "Conflict", &obs.now.to_string()),
    }
}

/// The metric analysis of Rollout `r`'s canary strategy, if it has one.
pub fn analysis_of(r: &Rollout) -> Option<&lanes_model::rollout::Analysis> {
    r.spec.strategy.canary.as_ref()?.analysis.as_ref()
}

/// Why a pod is not running, as its first container's status says (`pod NAME: REASON:
/// MESSAGE`), for the progress deadline's message; `None` when it is not waiting.
pub fn pod_problem(pod: &Value) -> Option<String> {
    let w = pod.pointer("/status/containerStatuses/0/state/waiting")?;
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    Some(format!(
        "pod {name}: {}: {}",
        s(w, "reason"),
        s(w, "message")
    ))
}

/// Whether a pod belongs to one of the canary Deployments: its controller is the
/// Deployment itself (pods as `lanes up` runs them) or one of its ReplicaSets,
/// `<deployment>-<hash>` (pods as a cluster runs them).
pub fn owned_by_canary(pod: &Value, canaries: &[Canary]) -> bool {
    let owners = pod
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array);
    owners.into_iter().flatten().any(|o| {
        let name = o.get("name").and_then(Value::as_str).unwrap_or("");
        canaries
            .iter()
            .any(|c| match o.get("kind").and_then(Value::as_str) {
                Some("Deployment") => name == c.name,
                Some("ReplicaSet") => name
                    .strip_prefix(c.name.as_str())
                    .is_some_and(|rest| rest.starts_with('-')),
                _ => false,
            })
    })
}

/// A hash of the release plan (the canary strategy), to notice changes to it
/// mid-release. Pausing or resuming the Rollout is not a change of plan.
pub fn plan_hash(r: &Rollout) -> String {
    let v = serde_json::to_value(&r.spec.strategy.canary).unwrap_or(Value::Null);
    lanes_model::hash::template_hash(&v)
}

/// The name of the canary Deployment of `workload` at `revision`.
pub fn canary_name(workload: &str, revision: &str) -> String {
    format!("{workload}-{revision}")
}

fn condition(kind: &str, status: &str, reason: &str, message: &str, now: &str) -> RolloutCondition {
    RolloutCondition {
        kind: kind.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_update_time: Some(now.into()),
        last_transition_time: Some(now.into()),
    }
}

fn with_message(
    mut status: RolloutStatus,
    phase: &str,
    message: String,
    reason: &str,
    now: &str,
) -> RolloutStatus {
    status.phase = Some(phase.into());
    status.message = Some(message.clone());
    let progressing = if phase == "Progressing" {
        "True"
    } else {
        "False"
    };
    let prev = status
        .conditions
        .iter()
        .find(|c| c.kind == "Progressing")
        .cloned();
    let mut c = condition("Progressing", progressing, reason, &message, now);
    if let Some(p) = prev
        && p.status == c.status
        && p.reason == c.reason
    {
        c.last_transition_time = p.last_transition_time.clone();
        if p.message == c.message {
            c.last_update_time = p.last_update_time;
        }
    }
    status.conditions.retain(|c| c.kind != "Progressing");
    status.conditions.push(c);
    if let Some(cs) = &status.canary_status {
        status.current_step_index = Some(cs.current_step_index);
        status.current_step_state = Some(cs.current_step_state.clone());
    } else {
        status.current_step_index = None;
        status.current_step_state = None;
    }
    status
}

/// The canary Deployment for the workload's current template.
fn canary_deployment(r: &Rollout, ns: &str, w: &Workload, name: &str, replicas: i32) -> Value {
    let mut template = w.template.clone();
    if let Some(meta) = strategy(r).and_then(|s| s.patch_pod_template_metadata.as_ref()) {
        let m = template
            .as_object_mut()
            .map(|t| t.entry("metadata").or_insert_with(|| json!({})));
        if let Some(Value::Object(m)) = m {
            for (field, extra) in [("labels", &meta.labels), ("annotations", &meta.annotations)] {
                if extra.is_empty() {
                    continue;
                }
                let entry = m.entry(field).or_insert_with(|| json!({}));
                if let Value::Object(map) = entry {
                    for (k, v) in extra {
                        map.insert(k.clone(), Value::String(v.clone()));
                    }
                }
            }
        }
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {CANARY_LABEL: w.name},
            "annotations": {"rollouts.kruise.io/rollout": r.metadata.name.clone().unwrap_or_default()},
        },
        "spec": {
            "replicas": replicas,
            "selector": w.selector,
            "template": template,
        }
    })
}

/// The reason to end a release when its failed measurements exceed the limit.
fn failed_beyond_limit(
    cfg: Option<&lanes_model::rollout::Analysis>,
    a: Option<&AnalysisStatus>,
    failed: Option<String>,
) -> Option<String> {
    let (cfg, a, reason) = (cfg?, a?, failed?);
    (a.failures > cfg.failure_limit).then(|| {
        format!(
            "analysis failed {} times (failureLimit {}), last {reason}",
            a.failures, cfg.failure_limit
        )
    })
}

/// Ends a release per `onFailure`; returns the message.
fn fail_release(
    actions: &mut Vec<Action>,
    cfg: Option<&lanes_model::rollout::Analysis>,
    reason: &str,
) -> String {
    match cfg.map(|c| c.on_failure).unwrap_or_default() {
        OnFailure::Rollback => {
            actions.push(Action::RestoreStableTemplate);
            format!("{ROLLED_BACK} {reason}")
        }
        OnFailure::Pause => {
            actions.push(Action::PauseRollout);
            format!("paused: {reason}")
        }
    }
}

/// One reconcile of a Rollout.
pub fn reconcile(obs: &Observed<'_>) -> Decision {
    let r = obs.rollout;
    let now = obs.now.to_string();
    let ns = r
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let mut status = r.status.clone().unwrap_or_default();
    status.observed_generation = Some(obs.generation);
    let mut actions = Vec::new();

    // Tears down a release: canaries deleted, the workload resumed and unmarked.
    let stand_down = |actions: &mut Vec<Action>, w: &Workload| {
        for c in &obs.canaries {
            actions.push(Action::DeleteCanary {
                name: c.name.clone(),
            });
        }
        if w.stable_template.is_some() {
            actions.push(Action::ClearWorkloadMarks);
            if w.paused {
                actions.push(Action::SetWorkloadPaused(false));
            }
        }
    };

    let Some(w) = obs.workload.clone() else {
        let name = &r.spec.workload_ref.name;
        return Decision {
            actions,
            status: with_message(
                status,
                "Initial",
                format!("spec.workloadRef: Deployment {ns}/{name} not found"),
                "Initializing",
                &now,
            ),
        };
    };
    let Some(canary_strategy) = strategy(r) else {
        return Decision {
            actions,
            status: with_message(
                status,
                "Disabled",
                "Lanes runs canary strategies only; this Rollout is not run".into(),
                "Disabled",
                &now,
            ),
        };
    };
    if r.spec.disabled.unwrap_or(false) {
        stand_down(&mut actions, &w);
        status.canary_status = None;
        return Decision {
            actions,
            status: with_message(
                status,
                "Disabled",
                "Rollout is disabled".into(),
                "Disabled",
                &now,
            ),
        };
    }

    let revision = w.revision();
    let stable = w.stable_revision();
    let releasing = w.stable_template.is_some() && revision != stable;
    let finalising = status.canary_status.as_ref().is_some_and(|c| {
        c.current_step_state == state::COMPLETED
            && c.canary_revision.as_deref() == Some(revision.as_str())
    });

    if !releasing && !finalising {
        // No release, or one that was cancelled (undo: the template is the stable one).
        let cancelled = w.stable_template.is_some() || !obs.canaries.is_empty();
        stand_down(&mut actions, &w);
        let previous_cs = status.canary_status.take();
        let previous = status.message.clone().unwrap_or_default();
        let message = if previous.starts_with(ROLLED_BACK) {
            previous
        } else if cancelled {
            "release cancelled: the workload is back on the stable revision".to_string()
        } else {
            "workload deployment is completed".to_string()
        };
        // A settled status is kept as it is (its time included): an idle Rollout is
        // never rewritten.
        let settled = previous_cs.as_ref().is_some_and(|c| {
            c.canary_revision.is_none()
                && c.stable_revision.as_deref() == Some(revision.as_str())
                && c.current_step_state == state::COMPLETED
                && c.finalising_step.is_none()
        });
        if settled {
            status.canary_status = previous_cs;
        } else {
            status.canary_status = Some(CanaryStatus {
                stable_revision: Some(revision.clone()),
                current_step_state: state::COMPLETED.into(),
                current_step_index: canary_strategy.steps.len() as i32,
                last_update_time: Some(now.clone()),
                ..Default::default()
            });
        }
        let s = with_message(
            status,
            "Healthy",
            message,
            if cancelled { "Cancelled" } else { "Completed" },
            &now,
        );
        return Decision { actions, status: s };
    }

    let steps = &canary_strategy.steps;
    let total_steps = steps.len().max(1) as i32;
    let canary = canary_name(&w.name, &revision);
    let plan = plan_hash(r);
    let mut cs = status.canary_status.clone().unwrap_or_default();
    let fresh = cs.canary_revision.as_deref() != Some(revision.as_str());
    if fresh {
        // A new release, or a newer template during one (continuous release): start over
        // at step 1 on the newest template.
        cs = CanaryStatus {
            stable_revision: Some(stable.clone()),
            canary_revision: Some(revision.clone()),
            pod_template_hash: Some(revision.clone()),
            current_step_index: 1,
            current_step_state: state::UPGRADE.into(),
            rollout_hash: Some(plan.clone()),
            last_update_time: Some(now.clone()),
            ..Default::default()
        };
    } else if cs.rollout_hash.as_deref() != Some(plan.as_str())
        && cs.current_step_state != state::COMPLETED
    {
        // The plan changed mid-release: redo the current step (clamped) under the new plan.
        cs.rollout_hash = Some(plan.clone());
        cs.current_step_index = cs.current_step_index.clamp(1, total_steps);
        cs.current_step_state = state::UPGRADE.into();
        cs.last_update_time = Some(now.clone());
    }
    cs.observed_workload_generation = Some(w.generation);
    let analysis_cfg = canary_strategy.analysis.clone();
    let sample_now = obs.sample.clone().map(|mut s| {
        s.time = now.clone();
        s
    });
    let mut analysis = status.analysis.clone().filter(|a| a.revision == revision);
    if analysis_cfg.is_some() && analysis.is_none() {
        analysis = Some(AnalysisStatus {
            revision: revision.clone(),
            last_sample: sample_now.clone(),
            ..Default::default()
        });
    }
    // One analysis round when its interval has passed: a verdict per metric.
    let round = |analysis: &mut Option<AnalysisStatus>| -> Option<String> {
        let (cfg, a, cur) = (
            analysis_cfg.as_ref()?,
            analysis.as_mut()?,
            sample_now.as_ref()?,
        );
        let Some(prev) = a.last_sample.clone() else {
            a.last_sample = Some(cur.clone());
            return None;
        };
        let since = prev.time.parse::<jiff::Timestamp>().unwrap_or(obs.now);
        let interval =
            jiff::SignedDuration::from_millis(cfg.interval.millis().unwrap_or(60_000) as i64);
        if obs.now < since + interval {
            return None;
        }
        let mut failed = None;
        let mut all_passed = true;
        for metric in &cfg.metrics {
            let external = obs.external.get(&metric.name).cloned();
            let m = analysis::judge(metric, &prev, cur, cfg.min_requests, external, &now);
            if m.verdict == analysis::verdict::FAILED && failed.is_none() {
                failed = Some(format!(
                    "{}: {}",
                    m.metric,
                    m.message.clone().unwrap_or_default()
                ));
            }
            all_passed &= m.verdict == analysis::verdict::PASSED;
            a.measurements.push(m);
        }
        let excess = a.measurements.len().saturating_sub(20);
        a.measurements.drain(..excess);
        a.last_sample = Some(cur.clone());
        if failed.is_some() {
            a.failures += 1;
        } else if all_passed {
            a.passes += 1;
        }
        failed
    };
    for c in obs.canaries.iter().filter(|c| c.name != canary) {
        actions.push(Action::DeleteCanary {
            name: c.name.clone(),
        });
    }
    if !w.paused && cs.current_step_state != state::COMPLETED {
        actions.push(Action::SetWorkloadPaused(true));
    }
    let current = obs.canaries.iter().find(|c| c.name == canary);
    let step_at = |idx: i32| steps.get((idx - 1).max(0) as usize);
    let want_at =
        |idx: i32| step_replicas(step_at(idx).and_then(|s| s.replicas.as_ref()), w.replicas);
    cs.canary_replicas = want_at(cs.current_step_index);
    cs.canary_ready_replicas = current.map_or(0, |c| c.ready);

    let paused_by_user = r.spec.strategy.paused.unwrap_or(false);
    let message;
    let advance = |cs: &mut CanaryStatus, to: &str| {
        cs.current_step_state = to.to_string();
        cs.last_update_time = Some(now.clone());
    };
    if paused_by_user {
        let idx = cs.current_step_index;
        message = format!(
            "Rollout is paused in step {idx}/{total_steps} ({})",
            cs.current_step_state
        );
    } else {
        // Move through as many states as are ready in this reconcile.
        loop {
            let idx = cs.current_step_index;
            let step = step_at(idx);
            let want = want_at(idx);
            cs.canary_replicas = want;
            match cs.current_step_state.as_str() {
                state::UPGRADE => {
                    match current {
                        None => actions.push(Action::CreateCanary {
                            name: canary.clone(),
                            deployment: canary_deployment(r, &ns, &w, &canary, want),
                        }),
                        Some(c) if c.replicas != want => actions.push(Action::ScaleCanary {
                            name: canary.clone(),
                            replicas: want,
                        }),
                        Some(_) => {}
                    }
                    let tolerated = match &canary_strategy.failure_threshold {
                        Some(t) => step_replicas(Some(t), want).min(want),
                        None => 0,
                    };
                    let ready = current.map_or(0, |c| c.ready);
                    if current.is_some_and(|c| c.replicas == want) && ready >= want - tolerated {
                        advance(&mut cs, state::TRAFFIC_ROUTING);
                        continue;
                    }
                    let since = cs
                        .last_update_time
                        .as_deref()
                        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                        .unwrap_or(obs.now);
                    if let Some(deadline) = canary_strategy.progress_deadline_seconds
                        && obs.now > since + jiff::SignedDuration::from_secs(deadline)
                    {
                        let why = obs
                            .canary_problem
                            .clone()
                            .unwrap_or_else(|| "its pods are not ready".into());
                        actions.push(Action::RestoreStableTemplate);
                        message = format!(
                            "{ROLLED_BACK} the canary was not ready within progressDeadlineSeconds {deadline} ({ready}/{want} ready): {why}"
                        );
                        break;
                    }
                    message = format!(
                        "Rollout is in step({idx}/{total_steps}), and upgrading the canary: {ready}/{want} ready"
                    );
                }
                state::TRAFFIC_ROUTING => {
                    // Lanes route canary pods by their lane label: nothing to wait for.
                    if let Some(a) = analysis.as_mut() {
                        a.passes = 0;
                    }
                    advance(&mut cs, state::METRICS_ANALYSIS);
                    continue;
                }
                state::METRICS_ANALYSIS => {
                    if analysis_cfg.is_none() {
                        advance(&mut cs, state::PAUSED);
                        continue;
                    }
                    let failed = round(&mut analysis);
                    if let Some(reason) =
                        failed_beyond_limit(analysis_cfg.as_ref(), analysis.as_ref(), failed)
                    {
                        message = fail_release(&mut actions, analysis_cfg.as_ref(), &reason);
                    } else if analysis.as_ref().is_some_and(|a| a.passes >= 1) {
                        advance(&mut cs, state::PAUSED);
                        continue;
                    } else {
                        let last = analysis
                            .as_ref()
                            .and_then(|a| a.measurements.last())
                            .and_then(|m| m.message.clone())
                            .unwrap_or_else(|| "waiting for the first measurement".into());
                        message = format!(
                            "Rollout is in step({idx}/{total_steps}), analysing the canary: {last}"
                        );
                    }
                }
                state::PAUSED => {
                    let failed = round(&mut analysis);
                    if let Some(reason) =
                        failed_beyond_limit(analysis_cfg.as_ref(), analysis.as_ref(), failed)
                    {
                        message = fail_release(&mut actions, analysis_cfg.as_ref(), &reason);
                        break;
                    }
                    match step.and_then(|s| s.pause.as_ref()).and_then(|p| p.duration) {
                        Some(secs) => {
                            // The pause counts from when the step entered it.
                            let since = cs
                                .last_update_time
                                .as_deref()
                                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                                .unwrap_or(obs.now);
                            let until = since + jiff::SignedDuration::from_secs(secs);
                            if obs.now >= until {
                                advance(&mut cs, state::READY);
                                continue;
                            }
                            message = format!(
                                "Rollout is in step({idx}/{total_steps}), paused until {until}"
                            );
                        }
                        None => {
                            message = format!(
                                "Rollout is in step({idx}/{total_steps}), and you need manually confirm to enter the next step"
                            );
                        }
                    }
                }
                state::READY => {
                    if cs.current_step_index < total_steps {
                        cs.current_step_index += 1;
                        advance(&mut cs, state::UPGRADE);
                        continue;
                    }
                    advance(&mut cs, state::COMPLETED);
                    continue;
                }
                state::COMPLETED => {
                    // Finalising: the stable Deployment rolls to the new template; once it
                    // has, the canary goes and the release marks are removed.
                    if w.paused {
                        actions.push(Action::SetWorkloadPaused(false));
                        cs.finalising_step = Some("RestoreStableDeployment".into());
                        message = "Rollout is finalising: the stable Deployment rolls to the new revision".into();
                    } else if w.rolled_out() && w.revision() == revision {
                        for c in &obs.canaries {
                            actions.push(Action::DeleteCanary {
                                name: c.name.clone(),
                            });
                        }
                        actions.push(Action::ClearWorkloadMarks);
                        status.canary_status = Some(CanaryStatus {
                            stable_revision: Some(revision.clone()),
                            current_step_state: state::COMPLETED.into(),
                            current_step_index: total_steps,
                            finalising_step: Some("DeleteCanaryDeployment".into()),
                            last_update_time: Some(now.clone()),
                            ..Default::default()
                        });
                        let s = with_message(
                            status,
                            "Healthy",
                            "workload deployment is completed".into(),
                            "Completed",
                            &now,
                        );
                        return Decision { actions, status: s };
                    } else {
                        cs.finalising_step = Some("WaitStableDeploymentReady".into());
                        message = format!(
                            "Rollout is finalising: stable Deployment {}/{} updated, {}/{} available",
                            w.updated, w.replicas, w.available, w.replicas
                        );
                    }
                }
                other => {
                    // An unknown state (a bad status patch): start the step over.
                    message = format!("unknown step state {other:?}; restarting step {idx}");
                    advance(&mut cs, state::UPGRADE);
                }
            }
            break;
        }
    }
    cs.message = Some(message.clone());
    status.canary_status = Some(cs);
    status.analysis = analysis;
    Decision {
        actions,
        status: with_message(status, "Progressing", message, "InRolling", &now),
    }
}

#[cfg(test)]
mod tests {
    //! Kruise's scenarios as a table: each row observes a situation and expects the
    //! state, phase and actions Kruise would produce.

    use super::*;
    use lanes_model::rollout::{
        CanaryStep, RolloutPause, RolloutSpec, RolloutStrategy, WorkloadRef,
    };

    fn rollout(steps: Vec<CanaryStep>) -> Rollout {
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
                                labels: [("ASM_TRAFFIC_TAG".to_string(), "canary".to_string())]
                                    .into(),
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

    fn step(replicas: IntOrString, pause: Option<i64>) -> CanaryStep {
        CanaryStep {
            replicas: Some(replicas),
            pause: Some(RolloutPause { duration: pause }),
            ..Default::default()
        }
    }

    fn template(image: &str) -> Value {
        json!({"metadata": {"labels": {"app": "mocka", "ASM_TRAFFIC_TAG": "base"}},
               "spec": {"containers": [{"name": "default", "image": image}]}})
    }

    fn workload(image: &str, stable: Option<&str>, paused: bool) -> Workload {
        Workload {
            name: "mocka-v1".into(),
            generation: 2,
            replicas: 4,
            selector: json!({"matchLabels": {"app": "mocka"}}),
            template: template(image),
            paused,
            stable_template: stable.map(template),
            observed_generation: 2,
            updated: 4,
            available: 4,
            total: 4,
        }
    }

    fn t0() -> jiff::Timestamp {
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
            now,
            sample: None,
            canary_problem: None,
            external: Default::default(),
        });
        r.status = Some(d.status.clone());
        d
    }

    fn st(r: &Rollout) -> (String, i32, String) {
        let s = r.status.as_ref().unwrap();
        let cs = s.canary_status.clone().unwrap_or_default();
        (
            s.phase.clone().unwrap_or_default(),
            cs.current_step_index,
            cs.current_step_state,
        )
    }

    fn canary(image: &str, replicas: i32, ready: i32) -> Canary {
        Canary {
            name: canary_name(
                "mocka-v1",
                &lanes_model::hash::template_hash(&template(image)),
            ),
            replicas,
            ready,
        }
    }

    #[test]
    fn canary_pods_are_known_by_their_deployment_or_its_replica_sets() {
        let canaries = [Canary {
            name: "a-v1-abc".into(),
            replicas: 1,
            ready: 0,
        }];
        let pod = |kind: &str, name: &str| json!({"metadata": {"ownerReferences": [{"kind": kind, "name": name}]}});
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
        assert!(!owned_by_canary(&json!({"metadata": {}}), &canaries));
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
            .current_step_state = state::READY.into();
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
            r.status.as_ref().unwrap().phase.as_deref(),
            Some("Disabled")
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

    fn observe(
        r: &mut Rollout,
        canaries: Vec<Canary>,
        at: i64,
        total: u64,
        failures: u64,
    ) -> Decision {
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
            now: t0() + jiff::SignedDuration::from_secs(at),
            sample: Some(sample),
            canary_problem: Some("ImageNotMapped: no local command".into()),
            external: Default::default(),
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
        assert_eq!(a.measurements.last().unwrap().verdict, "Inconclusive");
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
                .starts_with(ROLLED_BACK)
        );
        // Then the workload is back on the stable template: the release stands down and
        // the reason stays in the message.
        let d = reconcile(&Observed {
            rollout: &r,
            generation: 1,
            workload: Some(workload("a:1", Some("a:1"), true)),
            canaries: vec![canary("a:2", 1, 1)],
            now: t0(),
            sample: None,
            canary_problem: None,
            external: Default::default(),
        });
        assert_eq!(d.status.phase.as_deref(), Some("Healthy"));
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
            .current_step_state = state::READY.into();
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
        let waiting = json!({"metadata": {"name": "p"}, "status": {"containerStatuses": [
            {"state": {"waiting": {"reason": "ImagePullBackOff", "message": "no such image"}}}]}});
        assert_eq!(
            pod_problem(&waiting).as_deref(),
            Some("pod p: ImagePullBackOff: no such image")
        );
        assert_eq!(
            pod_problem(&json!({"metadata": {"name": "p"}, "status": {}})),
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
}
