//! When a Rollout's status is worth writing: a reconcile recomputes the whole status,
//! and timestamps it refreshes say nothing new. Comparing without them is what keeps a
//! settled system from writing (and waking every watcher) on each pass.

use lanes_model::rollout::RolloutStatus;

/// The status with every timestamp cleared.
fn without_times(s: &RolloutStatus) -> RolloutStatus {
    let mut s = s.clone();
    for c in &mut s.conditions {
        c.last_update_time = None;
        c.last_transition_time = None;
    }
    if let Some(cs) = s.canary_status.as_mut() {
        cs.last_update_time = None;
    }
    s
}

/// Whether `new` says something the stored status `old` does not (timestamps aside).
pub fn status_changed(old: Option<&RolloutStatus>, new: &RolloutStatus) -> bool {
    old.is_none_or(|old| without_times(old) != without_times(new))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lanes_model::rollout::{CanaryStatus, RolloutCondition, RolloutPhase, StepState};

    fn status(state: StepState, time: &str) -> RolloutStatus {
        RolloutStatus {
            phase: Some(RolloutPhase::Progressing),
            canary_status: Some(CanaryStatus {
                current_step_state: state,
                last_update_time: Some(time.into()),
                ..Default::default()
            }),
            conditions: vec![RolloutCondition {
                kind: "Progressing".into(),
                status: "True".into(),
                last_update_time: Some(time.into()),
                last_transition_time: Some(time.into()),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn only_newer_timestamps_are_no_change_and_anything_else_is() {
        let old = status(StepState::Paused, "2026-12-01T10:00:00Z");
        assert!(!status_changed(
            Some(&old),
            &status(StepState::Paused, "2026-12-01T10:00:05Z")
        ));
        assert!(status_changed(
            Some(&old),
            &status(StepState::Ready, "2026-12-01T10:00:05Z")
        ));
        assert!(status_changed(None, &old), "a first status is written");
    }
}
