//! Kruise's release labels on canary pods: a workload labelled
//! `rollouts.kruise.io/rollout-id` names its release, and each pod the canary gains is
//! labelled with that id and the step (batch) it came up in,
//! `rollouts.kruise.io/rollout-batch-id`, so a pod's batch can be told afterwards. A new
//! id on the workload while the release runs relabels the canary's pods with it (their
//! batches kept). Without a rollout id no pod is labelled, as with Kruise.

use std::collections::BTreeMap;

use crate::decision::Action;

/// The workload label naming a release.
pub const ROLLOUT_ID_LABEL: &str = "rollouts.kruise.io/rollout-id";
/// The pod label carrying the step (batch) a canary pod came up in.
pub const BATCH_ID_LABEL: &str = "rollouts.kruise.io/rollout-batch-id";

/// A canary pod's release labels, as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanaryPod {
    /// Name.
    pub name: String,
    /// Its `rollouts.kruise.io/rollout-id` label.
    pub rollout_id: Option<String>,
    /// Its `rollouts.kruise.io/rollout-batch-id` label.
    pub batch: Option<String>,
    /// All its labels.
    pub labels: BTreeMap<String, String>,
}

impl CanaryPod {
    /// Reads a pod's release labels.
    pub fn of(pod: &k8s_openapi::api::core::v1::Pod) -> CanaryPod {
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        CanaryPod {
            name: pod.metadata.name.clone().unwrap_or_default(),
            rollout_id: labels.get(ROLLOUT_ID_LABEL).cloned(),
            batch: labels.get(BATCH_ID_LABEL).cloned(),
            labels,
        }
    }

    /// Whether the pod's labels already say release `id`, with a batch.
    fn is_labelled(&self, id: &str) -> bool {
        self.rollout_id.as_deref() == Some(id) && self.batch.is_some()
    }
}

/// The labels the canary's pods need while release `id` is at step `step` (1-based): a
/// pod without a batch came up in this step; a pod of an older id keeps its batch.
pub fn batch_labels(id: &str, step: i32, pods: &[CanaryPod]) -> Vec<Action> {
    pods.iter()
        .filter(|p| !p.is_labelled(id))
        .map(|p| Action::LabelPod {
            name: p.name.clone(),
            labels: BTreeMap::from([
                (ROLLOUT_ID_LABEL.to_string(), Some(id.to_string())),
                (
                    BATCH_ID_LABEL.to_string(),
                    Some(p.batch.clone().unwrap_or_else(|| step.to_string())),
                ),
            ]),
        })
        .collect()
}

/// The canary pods a partition-style step counts: those already counted — carrying the
/// lane's labels, or a batch of one of the release's ids `ids` (its id now, and the one
/// it observed before a change) — first, then the others by name, as many as the step
/// wants (`want`) or as already count.
pub fn first_pods(
    pods: &[CanaryPod],
    lane: &BTreeMap<String, Option<String>>,
    ids: &[&str],
    want: i32,
) -> Vec<CanaryPod> {
    let counted = |p: &CanaryPod| {
        let in_lane = !lane.is_empty() && lane.iter().all(|(k, v)| p.labels.get(k) == v.as_ref());
        let in_release = ids.iter().any(|id| p.is_labelled(id));
        in_lane || in_release
    };
    let mut ordered: Vec<&CanaryPod> = pods.iter().collect();
    ordered.sort_by_key(|p| (!counted(p), p.name.clone()));
    let already = ordered.iter().filter(|p| counted(p)).count();
    let take = already.max(want.max(0) as usize);
    ordered.into_iter().take(take).cloned().collect()
}

/// The labels that put canary pods where `want` says (a value of `None`: no such label),
/// for the pods whose labels say otherwise: in a partition-style release the workload's
/// new pods take the lane labels of `patchPodTemplateMetadata`, and give them back to
/// the template's before they join the stable pods.
pub fn set_labels(want: &BTreeMap<String, Option<String>>, pods: &[CanaryPod]) -> Vec<Action> {
    pods.iter()
        .filter(|p| want.iter().any(|(k, v)| p.labels.get(k) != v.as_ref()))
        .map(|p| Action::LabelPod {
            name: p.name.clone(),
            labels: want.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, id: Option<&str>, batch: Option<&str>) -> CanaryPod {
        CanaryPod {
            name: name.into(),
            rollout_id: id.map(Into::into),
            batch: batch.map(Into::into),
            labels: BTreeMap::new(),
        }
    }

    fn labelled(actions: &[Action]) -> Vec<(String, String, String)> {
        actions
            .iter()
            .map(|a| match a {
                Action::LabelPod { name, labels } => (
                    name.clone(),
                    labels[ROLLOUT_ID_LABEL].clone().unwrap(),
                    labels[BATCH_ID_LABEL].clone().unwrap(),
                ),
                other => panic!("not a label: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn new_pods_take_the_current_step_and_labelled_ones_are_left_alone() {
        let pods = [
            pod("a", Some("r1"), Some("1")),
            pod("b", None, None),
            pod("c", Some("r1"), None),
        ];
        assert_eq!(
            labelled(&batch_labels("r1", 2, &pods)),
            vec![
                ("b".into(), "r1".into(), "2".into()),
                ("c".into(), "r1".into(), "2".into()),
            ]
        );
        assert!(batch_labels("r1", 3, &pods[..1]).is_empty());
    }

    #[test]
    fn a_new_rollout_id_relabels_the_pods_and_keeps_their_batches() {
        let pods = [
            pod("a", Some("r1"), Some("1")),
            pod("b", Some("r1"), Some("2")),
        ];
        assert_eq!(
            labelled(&batch_labels("r2", 3, &pods)),
            vec![
                ("a".into(), "r2".into(), "1".into()),
                ("b".into(), "r2".into(), "2".into()),
            ]
        );
    }

    #[test]
    fn a_step_counts_the_pods_already_in_the_release_then_others_up_to_its_share() {
        let lane = BTreeMap::from([("tag".to_string(), Some("canary".to_string()))]);
        let mut in_lane = pod("z-in-lane", None, None);
        in_lane.labels.insert("tag".into(), "canary".into());
        let old_id = pod("y-old-id", Some("r1"), Some("1"));
        let others = [pod("a", None, None), pod("b", None, None)];
        let all = [
            in_lane.clone(),
            old_id.clone(),
            others[0].clone(),
            others[1].clone(),
        ];
        let names = |ps: Vec<CanaryPod>| ps.into_iter().map(|p| p.name).collect::<Vec<_>>();
        // The pod of the lane counts first; a pod of another release does not.
        assert_eq!(
            names(first_pods(&all, &lane, &["r2"], 2)),
            ["z-in-lane", "a"]
        );
        // The id observed before a change counts too.
        assert_eq!(
            names(first_pods(&all, &lane, &["r2", "r1"], 1)),
            ["y-old-id", "z-in-lane"]
        );
        // Never fewer than already count (a jump back keeps them).
        assert_eq!(first_pods(&all, &lane, &["r1"], 0).len(), 2);
    }

    #[test]
    fn lane_labels_go_only_to_the_pods_that_lack_them() {
        let mut on = pod("on", None, None);
        on.labels.insert("tag".into(), "canary".into());
        let mut off = pod("off", None, None);
        off.labels.insert("tag".into(), "base".into());
        let want = BTreeMap::from([("tag".to_string(), Some("canary".to_string()))]);
        let actions = set_labels(&want, &[on.clone(), off.clone()]);
        assert_eq!(
            actions,
            vec![Action::LabelPod {
                name: "off".into(),
                labels: want
            }]
        );
        // Removing a label the pod has.
        let gone = BTreeMap::from([("tag".to_string(), None)]);
        assert_eq!(set_labels(&gone, &[on, off]).len(), 2);
        assert!(set_labels(&gone, &[pod("bare", None, None)]).is_empty());
    }
}
