//! Where the data plane counts a canary's attempts: the Service that selects its pods
//! and the lane they join (pure: the driver passes what it read).

use lanes_model::mesh::selector_matches;
use lanes_model::object::string_map;
use lanes_model::rollout::Rollout;
use serde_json::Value;

/// The canary's pod labels: the workload's template labels with the Rollout's
/// `patchPodTemplateMetadata` laid over them.
fn canary_pod_labels(
    rollout: &Rollout,
    workload: &Value,
) -> std::collections::BTreeMap<String, String> {
    let mut labels = string_map(workload, "/spec/template/metadata/labels");
    if let Some(meta) = rollout
        .spec
        .strategy
        .canary
        .as_ref()
        .and_then(|c| c.patch_pod_template_metadata.as_ref())
    {
        labels.extend(meta.labels.clone());
    }
    labels
}

/// The first object of `candidates` whose selector at `ptr` is not empty and matches.
fn first_selecting<'a>(
    candidates: &'a [Value],
    ptr: &str,
    labels: &std::collections::BTreeMap<String, String>,
) -> Option<&'a Value> {
    candidates.iter().find(|o| {
        let sel = string_map(o, ptr);
        !sel.is_empty() && selector_matches(&sel, labels)
    })
}

/// The names of the Service (among `services`, the workload's namespace) and the lane
/// (among `lanes`) the canary's pods are part of; `None` when either is missing.
pub fn canary_target(
    rollout: &Rollout,
    workload: &Value,
    services: &[Value],
    lanes: &[Value],
) -> Option<(String, String)> {
    let labels = canary_pod_labels(rollout, workload);
    let name = |v: &Value| {
        v.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let service = first_selecting(services, "/spec/selector", &labels)?;
    let lane = first_selecting(lanes, "/spec/labelSelector", &labels)?;
    Some((name(service), name(lane)))
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
        let workload =
            json!({"spec": {"template": {"metadata": {"labels": {"app": "a", "tag": "base"}}}}});
        let services = vec![
            json!({"metadata": {"name": "other"}, "spec": {"selector": {"app": "b"}}}),
            json!({"metadata": {"name": "svc-a"}, "spec": {"selector": {"app": "a"}}}),
        ];
        let lanes = vec![
            json!({"metadata": {"name": "base"}, "spec": {"labelSelector": {"tag": "base"}}}),
            json!({"metadata": {"name": "canary"}, "spec": {"labelSelector": {"tag": "canary"}}}),
        ];
        assert_eq!(
            canary_target(&rollout, &workload, &services, &lanes),
            Some(("svc-a".into(), "canary".into()))
        );
        assert_eq!(canary_target(&rollout, &workload, &services, &[]), None);
    }
}
