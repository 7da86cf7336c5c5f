//! Where the data plane counts a canary's attempts: the Service that selects its pods
//! and the lane they join (pure: the driver passes what it read).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;
use lanes_model::lane::ASMSwimLane;
use lanes_model::mesh::selector_matches;
use lanes_model::object::string_map;
use lanes_model::rollout::Rollout;

use crate::observe::Workload;

/// The canary's pod labels: the workload's template labels with the Rollout's
/// `patchPodTemplateMetadata` laid over them.
pub fn canary_pod_labels(rollout: &Rollout, workload: &Workload) -> BTreeMap<String, String> {
    rollout.canary_pod_labels(&string_map(&workload.template, "/metadata/labels"))
}

/// Whether a selector is not empty and matches `labels`.
fn selects(selector: Option<&BTreeMap<String, String>>, labels: &BTreeMap<String, String>) -> bool {
    selector.is_some_and(|s| !s.is_empty() && selector_matches(s, labels))
}

/// The names of the Services (among `services`, the workload's namespace) that select
/// the canary's pods.
pub fn canary_services<'s>(
    rollout: &Rollout,
    workload: &Workload,
    services: &'s [Service],
) -> impl Iterator<Item = &'s str> {
    let labels = canary_pod_labels(rollout, workload);
    services
        .iter()
        .filter(move |s| selects(s.spec.as_ref().and_then(|s| s.selector.as_ref()), &labels))
        .filter_map(|s| s.metadata.name.as_deref())
}

/// The names of the Service (among `services`, the workload's namespace) and the lane
/// (among `lanes`) the canary's pods are part of; `None` when either is missing.
pub fn canary_target(
    rollout: &Rollout,
    workload: &Workload,
    services: &[Service],
    lanes: &[ASMSwimLane],
) -> Option<(String, String)> {
    let labels = canary_pod_labels(rollout, workload);
    let service = services
        .iter()
        .find(|s| selects(s.spec.as_ref().and_then(|s| s.selector.as_ref()), &labels))?;
    let lane = lanes
        .iter()
        .find(|l| selects(Some(&l.spec.label_selector), &labels))?;
    Some((service.metadata.name.clone()?, lane.metadata.name.clone()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_canary_is_counted_on_the_service_and_lane_its_patched_labels_select() {
        let rollout: Rollout = serde_json::from_value(json!({
            "metadata": {"name": "r"},
            "spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "a"},
                     "strategy": {"canary": {"steps": [], "patchPodTemplateMetadata":
                                  {"labels": {"tag": "canary"}}}}}
        }))
        .unwrap();
        let deployment = serde_json::from_value(json!({
            "metadata": {"name": "a"},
            "spec": {"selector": {"matchLabels": {"app": "a"}},
                     "template": {"metadata": {"labels": {"app": "a", "tag": "base"}}}}
        }))
        .unwrap();
        let workload = Workload::from_deployment(&deployment).unwrap();
        let services: Vec<Service> = serde_json::from_value(json!([
            {"metadata": {"name": "other"}, "spec": {"selector": {"app": "b"}}},
            {"metadata": {"name": "svc-a"}, "spec": {"selector": {"app": "a"}}},
        ]))
        .unwrap();
        let lanes: Vec<ASMSwimLane> = serde_json::from_value(json!([
            {"apiVersion": "istio.alibabacloud.com/v1", "kind": "ASMSwimLane",
             "metadata": {"name": "base"}, "spec": {"labelSelector": {"tag": "base"}}},
            {"apiVersion": "istio.alibabacloud.com/v1", "kind": "ASMSwimLane",
             "metadata": {"name": "canary"}, "spec": {"labelSelector": {"tag": "canary"}}},
        ]))
        .unwrap();
        assert_eq!(
            canary_target(&rollout, &workload, &services, &lanes),
            Some(("svc-a".into(), "canary".into()))
        );
        assert_eq!(canary_target(&rollout, &workload, &services, &[]), None);
    }
}
