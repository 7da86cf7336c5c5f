//! One reconcile of a Rollout: what holds before a release can run (a workload, a
//! canary strategy, not disabled), the settled state between releases, and the hand-off
//! to the release's steps ([`crate::release`]).

use lanes_model::rollout::{CanaryStatus, RolloutPhase, RolloutStatus, StepState};

use crate::decision::{Action, Decision, Reason, with_condition};
use crate::observe::{Observed, Workload};
use crate::plan::strategy;

/// One reconcile of a Rollout.
pub fn reconcile(obs: &Observed<'_>) -> Decision {
    let r = obs.rollout;
    let mut status = r.status.clone().unwrap_or_default();
    status.observed_generation = Some(obs.generation);
    let Some(w) = obs.workload.as_ref() else {
        let ns = r.metadata.namespace.as_deref().unwrap_or("default");
        let message = format!(
            "spec.workloadRef: Deployment {ns}/{} not found",
            r.spec.workload_ref.name
        );
        return Decision::settled(with_condition(
            status,
            RolloutPhase::Initial,
            Reason::Initializing,
            message,
            obs.now,
        ));
    };
    // What the API's admission refuses, a Rollout written past it (on a cluster without
    // the operator's webhook) is not run either, and says why.
    let mut refused = Vec::new();
    lanes_model::rollout_rules::check(&mut refused, &r.spec);
    lanes_model::rollout_rules::check_annotations(&mut refused, r.metadata.annotations.as_ref());
    let canary_strategy = strategy(r).filter(|_| refused.is_empty());
    let Some(canary_strategy) = canary_strategy else {
        let message = match refused.first() {
            Some(e) => format!("not run: {}: {}", e.path, e.message),
            None => "Lanes runs canary strategies only; this Rollout is not run".to_string(),
        };
        return Decision::settled(with_condition(
            status,
            RolloutPhase::Disabled,
            Reason::Disabled,
            message,
            obs.now,
        ));
    };
    if let Some(key) = crate::plan::selector_clash(r, w) {
        let message = format!(
            "not run: spec.strategy.canary.patchPodTemplateMetadata.labels: {key:?} is in the \
             selector of Deployment {:?}; a partition-style release relabels the workload's own \
             pods, which would take them out of it (use another label for the lane, or \
             enableExtraWorkloadForCanary: true)",
            w.name
        );
        // Anything of a release already begun stands down: the workload rolls on.
        return Decision {
            actions: stand_down(obs, w),
            ..Decision::settled(with_condition(
                status,
                RolloutPhase::Disabled,
                Reason::Disabled,
                message,
                obs.now,
            ))
        };
    }
    if r.spec.disabled.unwrap_or(false) {
        status.canary_status = None;
        return Decision {
            actions: stand_down(obs, w),
            ..Decision::settled(with_condition(
                status,
                RolloutPhase::Disabled,
                Reason::Disabled,
                "Rollout is disabled".into(),
                obs.now,
            ))
        };
    }
    if w.is_releasing() || is_finalising(&status, w) || is_id_release(&status, w) {
        let step_pods = |idx| crate::plan::want_at(canary_strategy, w, idx);
        let d = crate::release::run(obs, w, canary_strategy, status);
        with_release_labels(obs, w, step_pods, d)
    } else {
        settle(obs, w, canary_strategy.steps.len(), status)
    }
}

/// Whether a release of the workload's current template was started by a new
/// `rollouts.kruise.io/rollout-id` alone (the template unchanged, as Kruise starts one):
/// the id differs from the one the settled Rollout observed (none, or another), or such
/// a release is under way. An id the workload has when the Rollout first settles is
/// observed without a release.
fn is_id_release(status: &RolloutStatus, w: &Workload) -> bool {
    let (Some(id), Some(cs)) = (w.rollout_id.as_deref(), status.canary_status.as_ref()) else {
        return false;
    };
    let revision = w.revision();
    match status.phase {
        Some(RolloutPhase::Healthy) => {
            cs.current_step_state == StepState::Completed
                && cs.observed_rollout_id.as_deref() != Some(id)
        }
        Some(RolloutPhase::Progressing) => {
            !w.is_releasing() && cs.canary_revision.as_deref() == Some(revision.as_str())
        }
        _ => false,
    }
}

/// A release under way observes the workload's rollout id and labels the canary's pods
/// with it and their batch ([`crate::batch`]); in partition style, until its steps are
/// through, the canary's pods take their lane's labels. In partition style only as many
/// pods as the step wants are labelled (`step_pods(step)`; more when more already are):
/// a release started by a rollout id alone has every pod on its revision already.
fn with_release_labels(
    obs: &Observed<'_>,
    w: &Workload,
    step_pods: impl Fn(i32) -> i32,
    mut d: Decision,
) -> Decision {
    let Some(cs) = d.status.canary_status.as_mut() else {
        return d;
    };
    let step = cs.current_step_index.max(1);
    let partition = crate::plan::is_partition(obs.rollout);
    let lane = crate::plan::lane_labels(obs.rollout, w, true);
    let ids: Vec<&str> = [w.rollout_id.as_deref(), cs.observed_rollout_id.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    let pods = match partition {
        true => crate::batch::first_pods(&obs.canary_pods, &lane, &ids, step_pods(step)),
        false => obs.canary_pods.clone(),
    };
    if partition && cs.current_step_state != StepState::Completed {
        d.actions.extend(crate::batch::set_labels(&lane, &pods));
    }
    let Some(id) = w.rollout_id.as_deref() else {
        return d;
    };
    if d.status.phase == Some(RolloutPhase::Progressing) {
        cs.observed_rollout_id = Some(id.to_string());
    }
    d.actions
        .extend(crate::batch::batch_labels(id, step, &pods));
    d
}

/// Whether the release of the workload's current template went through its steps and
/// the stable Deployment is being moved onto it (the release marks may be gone).
fn is_finalising(status: &RolloutStatus, w: &Workload) -> bool {
    status.phase == Some(RolloutPhase::Progressing)
        && status.canary_status.as_ref().is_some_and(|c| {
            c.current_step_state == StepState::Completed
                && c.canary_revision.as_deref() == Some(w.revision().as_str())
        })
}

/// Tears down a release: canaries deleted, the workload resumed and unmarked.
pub(crate) fn stand_down(obs: &Observed<'_>, w: &Workload) -> Vec<Action> {
    let mut actions: Vec<Action> = obs
        .canaries
        .iter()
        .map(|c| Action::DeleteCanary {
            name: c.name.clone(),
        })
        .collect();
    if w.stable_template.is_some() {
        actions.push(Action::ClearWorkloadMarks);
        if w.paused {
            actions.push(Action::SetWorkloadPaused(false));
        }
    }
    actions
}

/// A cancelled release whose traffic still goes to the canary lane: the canary stays
/// until the lanes' ingress routes all of it back to the baseline (Kruise's
/// `Cancelling`); the step state `Completed` takes the release's share away.
fn cancelling(obs: &Observed<'_>, mut status: RolloutStatus) -> Decision {
    let mut cs = status.canary_status.take().unwrap_or_default();
    if cs.current_step_state != StepState::Completed {
        cs.current_step_state = StepState::Completed;
        cs.last_update_time = Some(obs.now.to_string());
    }
    cs.finalising_step = Some("RestoreStableService".into());
    status.canary_status = Some(cs);
    let message = format!(
        "release cancelled: routing all traffic back to the baseline lane (canary share now {:?})",
        obs.routed
    );
    Decision {
        wake_at: Some(obs.now + jiff::SignedDuration::from_secs(1)),
        ..Decision::settled(with_condition(
            status,
            RolloutPhase::Progressing,
            Reason::Cancelling,
            message,
            obs.now,
        ))
    }
}

/// No release, or one that was cancelled (undo, a rollback: the template is the stable
/// one again): anything left of a release goes, and the status says how it ended.
fn settle(obs: &Observed<'_>, w: &Workload, steps: usize, mut status: RolloutStatus) -> Decision {
    let revision = w.revision();
    let cancelled = w.stable_template.is_some() || !obs.canaries.is_empty();
    if cancelled && obs.rollout.routes_traffic() && obs.routed.iter().any(|w| *w > 0) {
        return cancelling(obs, status);
    }
    let previous = status.canary_status.take();
    // A failed release keeps saying how it failed until the next one starts.
    let (reason, message) = match Reason::of(&status).filter(|r| r.failure().is_some()) {
        Some(failed) => (failed, status.message.clone().unwrap_or_default()),
        None if cancelled => (
            Reason::Cancelled,
            "release cancelled: the workload is back on the stable revision".to_string(),
        ),
        None => (
            Reason::Completed,
            "workload deployment is completed".to_string(),
        ),
    };
    // A settled status is kept as it is (its time included): an idle Rollout is never
    // rewritten. A completed release's is kept as Kruise keeps it (its revision, the
    // workload generation and rollout id it observed), its finalising step done.
    status.canary_status = match previous {
        Some(mut c)
            if c.stable_revision.as_deref() == Some(revision.as_str())
                && c.current_step_state == StepState::Completed =>
        {
            if c.finalising_step.take().is_some() {
                c.last_update_time = Some(obs.now.to_string());
            }
            // As Kruise: the workload generation observed follows the workload (scaled
            // after the release, say).
            c.observed_workload_generation = Some(w.generation);
            Some(c)
        }
        _ => Some(CanaryStatus {
            stable_revision: Some(revision),
            observed_workload_generation: Some(w.generation),
            observed_rollout_id: w.rollout_id.clone(),
            current_step_state: StepState::Completed,
            current_step_index: steps as i32,
            last_update_time: Some(obs.now.to_string()),
            ..Default::default()
        }),
    };
    Decision {
        actions: stand_down(obs, w),
        ..Decision::settled(with_condition(
            status,
            RolloutPhase::Healthy,
            reason,
            message,
            obs.now,
        ))
    }
}
