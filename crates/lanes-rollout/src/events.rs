//! A Rollout's transitions as Kubernetes Events: what `kubectl describe rollout` and
//! `kubectl get events` show of a release's course, for the operator and `lanes up`
//! alike.

use lanes_model::rollout::RolloutPhase;
use serde_json::{Value, json};

use crate::Failure;

/// A Rollout's move to another phase or step state, as `kubectl describe` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The Rollout's uid.
    pub uid: String,
    /// A failure (rollback, pause on failed analysis) rather than progress.
    pub warning: bool,
    /// The new phase; while progressing, the new step state (`StepPaused`, ...), or
    /// `RolledBack` / `Paused` when the release failed.
    pub reason: String,
    /// The Rollout's message.
    pub note: String,
}

/// The transition from `old` to `new`, if phase, step or step state changed.
pub fn transition(
    uid: String,
    old: Option<&lanes_model::rollout::RolloutStatus>,
    new: &lanes_model::rollout::RolloutStatus,
) -> Option<Transition> {
    let key = |s: Option<&lanes_model::rollout::RolloutStatus>| {
        s.map(|s| (s.phase, s.current_step_index, s.current_step_state))
    };
    let note = new.message.clone().unwrap_or_default();
    let failure = crate::Reason::of(new).and_then(crate::Reason::failure);
    let new_failure =
        failure.is_some() && old.and_then(|o| o.message.as_deref()) != Some(note.as_str());
    if key(old) == key(Some(new)) && !new_failure {
        return None;
    }
    let reason = match (new.phase, new.current_step_state, failure) {
        (Some(RolloutPhase::Progressing), _, Some(Failure::RolledBack)) => "RolledBack",
        (Some(RolloutPhase::Progressing), _, Some(Failure::Paused)) => "Paused",
        (Some(RolloutPhase::Progressing), Some(state), None) => state.as_str(),
        (phase, _, _) => phase.map_or("Initial", RolloutPhase::as_str),
    };
    Some(Transition {
        uid,
        warning: failure.is_some(),
        reason: reason.to_string(),
        note,
    })
}

/// The `reportingController` of Lanes' Events.
pub const REPORTING_CONTROLLER: &str = "lanes.dev/operator";

/// The most bytes of note (message) the API server takes.
pub const NOTE_BYTES: usize = 1024;

/// `s` cut to at most `max` bytes, at a character boundary.
pub fn truncated(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The core `v1` Event of transition `t` of Rollout `namespace/name`, at `now`, as
/// stored (and served as `events.k8s.io/v1` too).
pub fn core_event(
    namespace: &str,
    name: &str,
    t: &Transition,
    instance: &str,
    now: jiff::Timestamp,
) -> Value {
    let at = now.to_string();
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": format!("{name}.{:x}", now.as_nanosecond()), "namespace": namespace},
        "involvedObject": {"apiVersion": "rollouts.kruise.io/v1beta1", "kind": "Rollout",
                           "name": name, "namespace": namespace, "uid": t.uid},
        "reason": t.reason,
        "message": truncated(&t.note, NOTE_BYTES),
        "type": if t.warning { "Warning" } else { "Normal" },
        "source": {"component": REPORTING_CONTROLLER},
        "reportingComponent": REPORTING_CONTROLLER,
        "reportingInstance": instance,
        "action": "Reconcile",
        "firstTimestamp": at,
        "lastTimestamp": at,
        "count": 1,
    })
}
