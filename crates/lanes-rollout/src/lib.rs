//! The rollout state machine, with Kruise Rollout v1beta1 semantics: a release starts
//! when the workload's pod template changes; the stable Deployment stays paused on the
//! old version while a canary Deployment `<workload>-<hash>` runs the new one (or, in
//! partition style, a partition of the workload's own pods does), step by
//! step (`StepUpgrade` → `StepTrafficRouting` → `StepMetricsAnalysis` → `StepPaused` →
//! `StepReady`), until approval and finalising move the new version into the stable
//! Deployment. Pure: [`reconcile`] maps what is observed to actions, a status and when
//! to look again; the operator's controller carries the actions out.

pub mod admission;
pub mod analysis;
pub mod batch;
pub mod controls;
mod decision;
pub mod events;
pub mod lane_release;
mod observe;
mod ownership;
mod plan;
mod reconcile;
mod release;
pub mod status;
pub mod target;

pub use batch::{BATCH_ID_LABEL, CanaryPod, ROLLOUT_ID_LABEL};
pub use decision::{Action, Decision, Failure, Reason};
pub use observe::{Canary, Observed, Workload, owned_by_canary, pod_problem};
pub use ownership::{analysis_of, conflicting, manager_of, manages, targets_deployment};
pub use plan::{canary_name, canary_workload, is_partition, plan_hash, step_replicas};
pub use reconcile::reconcile;

pub use lanes_model::partition::STABLE_TEMPLATE;

/// Kruise's annotation on a workload under a release.
pub const IN_PROGRESSING: &str = "rollouts.kruise.io/in-progressing";
/// Label on a canary Deployment naming its workload.
pub const CANARY_LABEL: &str = "rollouts.kruise.io/canary-deployment";

#[cfg(test)]
mod tests;
