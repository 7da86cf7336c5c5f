//! Which Rollout runs which workload's releases: only one may, the oldest.

use lanes_model::rollout::{Rollout, RolloutPhase};

use crate::decision::{Decision, Reason, with_condition};
use crate::observe::Observed;

/// Whether Rollout `r` targets Deployment `namespace/name`.
pub fn targets_deployment(r: &Rollout, namespace: &str, name: &str) -> bool {
    r.metadata.namespace.as_deref().unwrap_or("default") == namespace
        && r.spec.workload_ref.kind == "Deployment"
        && r.spec.workload_ref.name == name
}

/// Whether Rollout `r` runs releases of its workload: enabled, with a canary strategy,
/// and not being deleted.
pub fn manages(r: &Rollout) -> bool {
    !r.spec.disabled.unwrap_or(false)
        && r.spec.strategy.canary.is_some()
        && r.metadata.deletion_timestamp.is_none()
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
    Decision::settled(with_condition(
        status,
        RolloutPhase::Initial,
        Reason::Conflict,
        message,
        obs.now,
    ))
}

/// The metric analysis of Rollout `r`'s canary strategy, if it has one.
pub fn analysis_of(r: &Rollout) -> Option<&lanes_model::rollout::Analysis> {
    r.spec.strategy.canary.as_ref()?.analysis.as_ref()
}
