//! What a reconcile decides: the actions the driver carries out, the new status, and
//! when to look again; and the `Progressing` condition that says why, in Kruise's shape.

use lanes_model::rollout::{RolloutCondition, RolloutPhase, RolloutStatus};
use serde_json::Value;

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
    /// Set labels of a canary pod (a value of `None` removes the label): its release
    /// and batch ([`crate::batch`]), and in a partition-style release its lane's labels.
    LabelPod {
        /// Pod name.
        name: String,
        /// The labels to set or remove.
        labels: std::collections::BTreeMap<String, Option<String>>,
    },
    /// Set the workload's partition (partition style): how many of its pods run the new
    /// template, a number or a percentage of its replicas; `None` removes it.
    SetPartition(Option<k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>),
}

/// The controller's decision: actions and the new status.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Actions, in order.
    pub actions: Vec<Action>,
    /// The new status.
    pub status: RolloutStatus,
    /// When something the release waits on in time comes due (a pause's end, the next
    /// analysis round, the progress deadline): the driver looks again then at the latest.
    pub wake_at: Option<jiff::Timestamp>,
}

impl Decision {
    /// A decision with nothing to do and nothing to wait for.
    pub fn settled(status: RolloutStatus) -> Decision {
        Decision {
            actions: Vec::new(),
            status,
            wake_at: None,
        }
    }

    /// How long from `now` until [`Decision::wake_at`] (zero when it has passed).
    pub fn wake_after(&self, now: jiff::Timestamp) -> Option<std::time::Duration> {
        let at = self.wake_at?;
        Some(if at <= now {
            std::time::Duration::ZERO
        } else {
            now.duration_until(at).unsigned_abs()
        })
    }
}

/// How a release ended that failed its analysis or its progress deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The stable template was written back (`onFailure: rollback`, the default).
    RolledBack,
    /// The Rollout was paused for someone to look (`onFailure: pause`).
    Paused,
}

impl Failure {
    /// How the message of a release that failed this way begins.
    pub fn prefix(self) -> &'static str {
        match self {
            Failure::RolledBack => "rolled back:",
            Failure::Paused => "paused:",
        }
    }
}

/// The reason of a Rollout's `Progressing` condition: Kruise's, and Lanes' own for what
/// Kruise has no word for (a conflict, a failed release).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The workload is missing.
    Initializing,
    /// A release is in flight.
    InRolling,
    /// The last step is through: the stable Deployment rolls to the new revision.
    Finalising,
    /// `spec.strategy.paused` holds the release.
    Paused,
    /// A cancelled release's traffic goes back to the baseline lane.
    Cancelling,
    /// The last release completed.
    Completed,
    /// The last release was cancelled (undo, or the template set back).
    Cancelled,
    /// Disabled, or a strategy Lanes does not run.
    Disabled,
    /// Another Rollout manages the workload.
    Conflict,
    /// The release failed and was rolled back.
    RolledBack,
    /// The release failed and was paused.
    PausedOnFailure,
}

impl Reason {
    /// The condition's `reason` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Initializing => "Initializing",
            Reason::InRolling => "InRolling",
            Reason::Finalising => "Finalising",
            Reason::Paused => "Paused",
            Reason::Cancelling => "Cancelling",
            Reason::Completed => "Completed",
            Reason::Cancelled => "Cancelled",
            Reason::Disabled => "Disabled",
            Reason::Conflict => "Conflict",
            Reason::RolledBack => "RolledBack",
            Reason::PausedOnFailure => "PausedOnFailure",
        }
    }

    /// The reason a failure is recorded with.
    pub fn of_failure(f: Failure) -> Reason {
        match f {
            Failure::RolledBack => Reason::RolledBack,
            Failure::Paused => Reason::PausedOnFailure,
        }
    }

    /// The failure this reason records, if it records one.
    pub fn failure(self) -> Option<Failure> {
        match self {
            Reason::RolledBack => Some(Failure::RolledBack),
            Reason::PausedOnFailure => Some(Failure::Paused),
            _ => None,
        }
    }

    /// Every reason.
    pub const ALL: [Reason; 11] = [
        Reason::Initializing,
        Reason::InRolling,
        Reason::Finalising,
        Reason::Paused,
        Reason::Cancelling,
        Reason::Completed,
        Reason::Cancelled,
        Reason::Disabled,
        Reason::Conflict,
        Reason::RolledBack,
        Reason::PausedOnFailure,
    ];

    /// The reason of `status`'s `Progressing` condition, when it is one of these.
    pub fn of(status: &RolloutStatus) -> Option<Reason> {
        let c = status.conditions.iter().find(|c| c.kind == PROGRESSING)?;
        let reason = c.reason.as_deref()?;
        Reason::ALL.into_iter().find(|r| r.as_str() == reason)
    }
}

/// The condition type Lanes keeps.
const PROGRESSING: &str = "Progressing";

/// Kruise's condition that a release succeeded.
const SUCCEEDED: &str = "Succeeded";

/// `status` in `phase`, with `message` and a `Progressing` condition for `reason`. The
/// condition's times move only when it changes (its transition time only when its
/// status or reason does), so an unchanged status stays equal to the timestamp.
pub(crate) fn with_condition(
    mut status: RolloutStatus,
    phase: RolloutPhase,
    reason: Reason,
    message: String,
    now: jiff::Timestamp,
) -> RolloutStatus {
    let now = now.to_string();
    status.phase = Some(phase);
    status.message = Some(message.clone());
    let progressing = if phase == RolloutPhase::Progressing {
        "True"
    } else {
        "False"
    };
    let mut c = RolloutCondition {
        kind: PROGRESSING.into(),
        status: progressing.into(),
        reason: Some(reason.as_str().into()),
        message: Some(message),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    };
    if let Some(p) = status.conditions.iter().find(|p| p.kind == PROGRESSING)
        && p.status == c.status
        && p.reason == c.reason
    {
        c.last_transition_time = p.last_transition_time.clone();
        if p.message == c.message {
            c.last_update_time = p.last_update_time.clone();
        }
    }
    status.conditions.retain(|c| c.kind != PROGRESSING);
    status.conditions.push(c);
    // Kruise's `Succeeded`: true once a release completed, false while one runs or
    // after one failed or was cancelled.
    let succeeded = match reason {
        Reason::Completed => Some("True"),
        Reason::InRolling
        | Reason::Finalising
        | Reason::Paused
        | Reason::Cancelling
        | Reason::Cancelled
        | Reason::RolledBack
        | Reason::PausedOnFailure => Some("False"),
        Reason::Initializing | Reason::Disabled | Reason::Conflict => None,
    };
    if let Some(value) = succeeded {
        let kept = status
            .conditions
            .iter()
            .find(|c| c.kind == SUCCEEDED)
            .filter(|c| c.status == value && c.reason.as_deref() == Some(reason.as_str()))
            .cloned();
        status.conditions.retain(|c| c.kind != SUCCEEDED);
        status
            .conditions
            .push(kept.unwrap_or_else(|| RolloutCondition {
                kind: SUCCEEDED.into(),
                status: value.into(),
                reason: Some(reason.as_str().into()),
                message: None,
                last_update_time: Some(now.clone()),
                last_transition_time: Some(now.clone()),
            }));
    }
    match &status.canary_status {
        Some(cs) => {
            status.current_step_index = Some(cs.current_step_index);
            status.current_step_state = Some(cs.current_step_state);
        }
        None => {
            status.current_step_index = None;
            status.current_step_state = None;
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_reads_back_from_its_condition() {
        for reason in Reason::ALL {
            let t: jiff::Timestamp = "2026-12-01T10:00:00Z".parse().unwrap();
            let s = with_condition(
                RolloutStatus::default(),
                RolloutPhase::Healthy,
                reason,
                "m".into(),
                t,
            );
            assert_eq!(Reason::of(&s), Some(reason));
        }
        assert_eq!(Reason::of(&RolloutStatus::default()), None);
        assert_eq!(
            Reason::of_failure(Failure::Paused).failure(),
            Some(Failure::Paused)
        );
    }

    #[test]
    fn wake_after_counts_from_now_and_never_goes_negative() {
        let t: jiff::Timestamp = "2026-12-01T10:00:00Z".parse().unwrap();
        let mut d = Decision::settled(RolloutStatus::default());
        assert_eq!(d.wake_after(t), None);
        d.wake_at = Some(t + jiff::SignedDuration::from_secs(30));
        assert_eq!(d.wake_after(t), Some(std::time::Duration::from_secs(30)));
        d.wake_at = Some(t - jiff::SignedDuration::from_secs(5));
        assert_eq!(d.wake_after(t), Some(std::time::Duration::ZERO));
    }
}
