//! What a user may ask of a release — approve, pause, resume, undo — and how each is
//! carried out on a Rollout or a LaneRelease: when it is refused (and why, in words
//! that name the object), and the merge patch that does it. Pure: the CLI and the
//! dashboard send the patch.

use lanes_model::lane_release::{LaneRelease, LaneReleasePhase};
use lanes_model::rollout::{Rollout, RolloutPhase, StepState};
use serde_json::{Value, json};

/// What a user asks of a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Go on from a step waiting for approval.
    Approve,
    /// Hold the release where it is.
    Pause,
    /// Let a paused release go on.
    Resume,
    /// Go back to the stable version.
    Undo,
}

impl Control {
    /// Its name, as the CLI and the dashboard say it.
    pub fn as_str(self) -> &'static str {
        match self {
            Control::Approve => "approve",
            Control::Pause => "pause",
            Control::Resume => "resume",
            Control::Undo => "undo",
        }
    }
}

impl std::str::FromStr for Control {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "approve" => Ok(Control::Approve),
            "pause" => Ok(Control::Pause),
            "resume" => Ok(Control::Resume),
            "undo" => Ok(Control::Undo),
            other => Err(format!(
                "unknown action {other:?}: use approve, pause, resume or undo"
            )),
        }
    }
}

/// How a control is carried out.
#[derive(Debug, Clone, PartialEq)]
pub enum ControlPatch {
    /// A merge patch of the object (its spec).
    Spec(Value),
    /// A merge patch of its status, sent only if the object is unchanged since read.
    Status(Value),
    /// The Rollout's workload goes back to its stable template (the driver reads it
    /// from the workload).
    RestoreWorkload,
    /// Nothing to do: it is so already (what to say).
    AlreadySo(String),
}

/// Why a control is refused, naming the object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or("")
}

/// `control` of Rollout `r`, which LaneRelease `held_by` holds (if one does), at `now`.
pub fn rollout_control(
    r: &Rollout,
    held_by: Option<&str>,
    control: Control,
    now: jiff::Timestamp,
) -> Result<ControlPatch, Refused> {
    let name = name_of(&r.metadata);
    let status = r.status.as_ref();
    match control {
        Control::Approve => {
            if let Some(release) = held_by {
                return Err(Refused(format!(
                    "rollout/{name} cannot be approved on its own: it is a member of LaneRelease {release}, whose members are approved together (lanes release approve {release})"
                )));
            }
            let phase = status.and_then(|s| s.phase);
            let state = status
                .and_then(|s| s.canary_status.as_ref())
                .map(|c| c.current_step_state);
            if phase != Some(RolloutPhase::Progressing) || state != Some(StepState::Paused) {
                return Err(Refused(format!(
                    "rollout/{name} cannot be approved: it is {} ({}), and only a release waiting in {} can be approved",
                    phase.map_or("Initial", RolloutPhase::as_str),
                    state.map_or("no step", StepState::as_str),
                    StepState::Paused
                )));
            }
            Ok(ControlPatch::Status(json!({"canaryStatus": {
                "currentStepState": StepState::Ready,
                "lastUpdateTime": now.to_string(),
            }})))
        }
        Control::Pause | Control::Resume => {
            let paused = control == Control::Pause;
            if r.spec.strategy.paused.unwrap_or(false) == paused {
                return Ok(ControlPatch::AlreadySo(format!(
                    "rollout/{name} is already {}",
                    past(control)
                )));
            }
            Ok(ControlPatch::Spec(
                json!({"spec": {"strategy": {"paused": paused}}}),
            ))
        }
        Control::Undo => Ok(ControlPatch::RestoreWorkload),
    }
}

/// `control` of LaneRelease `lr` at `now`.
pub fn lane_release_control(
    lr: &LaneRelease,
    control: Control,
    now: jiff::Timestamp,
) -> Result<ControlPatch, Refused> {
    let name = name_of(&lr.metadata);
    let st = lr.status.clone().unwrap_or_default();
    let stamped = |mut status: Value| {
        status["lastUpdateTime"] = json!(now.to_string());
        ControlPatch::Status(status)
    };
    match control {
        Control::Approve => {
            let waiting = lr.phase() == LaneReleasePhase::Progressing
                && st.current_step_index >= 1
                && st.current_step_state == Some(StepState::Paused);
            if !waiting {
                return Err(Refused(format!(
                    "lanerelease/{name} cannot be approved: it is {} (step {}), and only a release whose members' canaries are ready and that waits in a step can be approved",
                    lr.phase().as_str(),
                    st.current_step_index
                )));
            }
            Ok(stamped(json!({"currentStepState": StepState::Ready})))
        }
        Control::Undo => {
            if lr.phase() != LaneReleasePhase::Progressing {
                return Err(Refused(format!(
                    "lanerelease/{name} cannot be undone: it is {}, and only a release under way before promotion can be",
                    lr.phase().as_str()
                )));
            }
            Ok(stamped(json!({"phase": LaneReleasePhase::RollingBack,
                              "message": "rolling back: undone (lanes release undo)"})))
        }
        Control::Pause | Control::Resume => {
            let paused = control == Control::Pause;
            if lr.spec.paused.unwrap_or(false) == paused {
                return Ok(ControlPatch::AlreadySo(format!(
                    "lanerelease/{name} is already {}",
                    past(control)
                )));
            }
            Ok(ControlPatch::Spec(json!({"spec": {"paused": paused}})))
        }
    }
}

/// The stable pod template a workload keeps while its release is under way (the
/// [`crate::STABLE_TEMPLATE`] annotation), which an undo writes back; `None` when no
/// release is under way.
pub fn stable_template(
    annotations: Option<&std::collections::BTreeMap<String, String>>,
) -> Option<Value> {
    let text = annotations?.get(crate::STABLE_TEMPLATE)?;
    serde_json::from_str(text).ok()
}

/// `paused`, `resumed`, ….
pub fn past(control: Control) -> &'static str {
    match control {
        Control::Approve => "approved",
        Control::Pause => "paused",
        Control::Resume => "resumed",
        Control::Undo => "undone",
    }
}

/// The controls that apply to a Rollout now (what the dashboard offers).
pub fn rollout_controls(r: &Rollout, held: bool) -> Vec<Control> {
    let status = r.status.as_ref();
    let progressing = status.and_then(|s| s.phase) == Some(RolloutPhase::Progressing);
    let paused_step = status
        .and_then(|s| s.canary_status.as_ref())
        .is_some_and(|c| c.current_step_state == StepState::Paused);
    let mut out = Vec::new();
    if progressing && paused_step && !held {
        out.push(Control::Approve);
    }
    out.push(match r.spec.strategy.paused.unwrap_or(false) {
        true => Control::Resume,
        false => Control::Pause,
    });
    if progressing {
        out.push(Control::Undo);
    }
    out
}

/// The controls that apply to a LaneRelease now.
pub fn lane_release_controls(lr: &LaneRelease) -> Vec<Control> {
    let now = jiff::Timestamp::UNIX_EPOCH;
    [
        Control::Approve,
        Control::Pause,
        Control::Resume,
        Control::Undo,
    ]
    .into_iter()
    .filter(|c| {
        matches!(
            lane_release_control(lr, *c, now),
            Ok(ControlPatch::Spec(_) | ControlPatch::Status(_))
        )
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lanes_model::lane_release::LaneReleaseStatus;

    fn release(phase: LaneReleasePhase, step: i32, state: Option<StepState>) -> LaneRelease {
        let mut lr: LaneRelease = serde_json::from_value(json!({
            "apiVersion": "lanes.dev/v1alpha1", "kind": "LaneRelease",
            "metadata": {"name": "checkout-v2", "namespace": "default"},
            "spec": {"laneGroup": "rollout", "lane": "canary", "rollouts": ["a"]},
        }))
        .unwrap();
        lr.status = Some(LaneReleaseStatus {
            phase: Some(phase),
            current_step_index: step,
            current_step_state: state,
            ..Default::default()
        });
        lr
    }

    #[test]
    fn a_lane_release_is_approved_only_while_it_waits_in_a_step() {
        let now = jiff::Timestamp::UNIX_EPOCH;
        let waiting = release(LaneReleasePhase::Progressing, 1, Some(StepState::Paused));
        assert_eq!(
            lane_release_control(&waiting, Control::Approve, now),
            Ok(ControlPatch::Status(json!({
                "currentStepState": "StepReady",
                "lastUpdateTime": "1970-01-01T00:00:00Z"
            })))
        );
        let coming_up = release(LaneReleasePhase::Progressing, 0, None);
        let refused = lane_release_control(&coming_up, Control::Approve, now).unwrap_err();
        assert!(
            refused.0.starts_with(
                "lanerelease/checkout-v2 cannot be approved: it is Progressing (step 0)"
            ),
            "{refused}"
        );
        assert_eq!(
            lane_release_controls(&waiting),
            [Control::Approve, Control::Pause, Control::Undo]
        );
        let done = release(LaneReleasePhase::Completed, 1, None);
        assert_eq!(lane_release_controls(&done), [Control::Pause]);
    }

    #[test]
    fn a_rollout_member_is_not_approved_on_its_own_and_pausing_twice_does_nothing() {
        let r: Rollout = serde_json::from_value(json!({
            "apiVersion": "rollouts.kruise.io/v1beta1", "kind": "Rollout",
            "metadata": {"name": "rollouts-mocka", "namespace": "default"},
            "spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "mocka-v1"},
                     "strategy": {"paused": true, "canary": {"steps": [{"replicas": 1}]}}},
            "status": {"phase": "Progressing", "canaryStatus": {"currentStepIndex": 1, "currentStepState": "StepPaused"}},
        }))
        .unwrap();
        let now = jiff::Timestamp::UNIX_EPOCH;
        let held = rollout_control(&r, Some("checkout-v2"), Control::Approve, now).unwrap_err();
        assert!(
            held.0.contains("member of LaneRelease checkout-v2"),
            "{held}"
        );
        assert!(matches!(
            rollout_control(&r, None, Control::Approve, now),
            Ok(ControlPatch::Status(_))
        ));
        assert_eq!(
            rollout_control(&r, None, Control::Pause, now),
            Ok(ControlPatch::AlreadySo(
                "rollout/rollouts-mocka is already paused".into()
            ))
        );
        assert_eq!(
            rollout_controls(&r, false),
            [Control::Approve, Control::Resume, Control::Undo]
        );
        assert_eq!(rollout_controls(&r, true), [Control::Resume, Control::Undo]);
    }
}
