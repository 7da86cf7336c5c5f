//! The release plan read from a Rollout: how many canary replicas each step wants, the
//! canary Deployment's name and shape, and a hash that notices a changed plan.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use lanes_model::rollout::{CanaryStrategy, Rollout};
use serde_json::{Value, json};

use crate::CANARY_LABEL;
use crate::observe::Workload;

/// Canary replicas a step asks for: an integer, or a percentage of the workload's
/// replicas rounded up (at least one for a non-zero percentage).
pub fn step_replicas(step: Option<&IntOrString>, workload_replicas: i32) -> i32 {
    match step {
        None => 1,
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => {
            let pct = lanes_model::validate::parse_percent(s).unwrap_or(0) as i32;
            if pct == 0 {
                0
            } else {
                ((workload_replicas * pct + 99) / 100).max(1)
            }
        }
    }
}

/// Canary replicas step `idx` (1-based) of `strategy` wants: never more than the
/// workload has (none for a workload of none).
pub(crate) fn want_at(strategy: &CanaryStrategy, w: &Workload, idx: i32) -> i32 {
    let step = strategy.steps.get((idx - 1).max(0) as usize);
    let replicas = step.and_then(|s| s.replicas.as_ref());
    step_replicas(replicas, w.replicas).min(w.replicas.max(0))
}

/// The canary strategy of `r`, if it has one.
pub(crate) fn strategy(r: &Rollout) -> Option<&CanaryStrategy> {
    r.spec.strategy.canary.as_ref()
}

/// A hash of the release plan (the canary strategy), to notice changes to it
/// mid-release. Pausing or resuming the Rollout is not a change of plan.
pub fn plan_hash(r: &Rollout) -> String {
    let v = serde_json::to_value(&r.spec.strategy.canary).unwrap_or(Value::Null);
    lanes_model::hash::template_hash(&v)
}

/// Whether `r` runs partition style (Kruise's default, `enableExtraWorkloadForCanary`
/// not true): the workload's own pods are updated in batches, no canary Deployment.
pub fn is_partition(r: &Rollout) -> bool {
    strategy(r).is_some_and(|s| s.enable_extra_workload_for_canary != Some(true))
}

/// The workload whose pods are the canary's: the canary Deployment, or in partition
/// style the workload itself.
pub fn canary_workload(r: &Rollout, w: &Workload) -> String {
    if is_partition(r) {
        w.name.clone()
    } else {
        canary_name(&w.name, &w.revision())
    }
}

/// The labels a partition-style canary pod takes: `patchPodTemplateMetadata`'s (its
/// lane's selector), or with `canary` false the template's own values for those keys
/// (`None`: the template has no such label), which it takes back when the release ends.
pub(crate) fn lane_labels(
    r: &Rollout,
    w: &Workload,
    canary: bool,
) -> std::collections::BTreeMap<String, Option<String>> {
    let Some(meta) = strategy(r).and_then(|s| s.patch_pod_template_metadata.as_ref()) else {
        return Default::default();
    };
    meta.labels
        .iter()
        .map(|(k, v)| {
            let value = if canary {
                Some(v.clone())
            } else {
                w.template
                    .pointer("/metadata/labels")
                    .and_then(|l| l.get(k))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            (k.clone(), value)
        })
        .collect()
}

/// In partition style, a label of `patchPodTemplateMetadata` that the workload's selector
/// matches on: relabelling its own pods with it would take them out of the workload.
pub(crate) fn selector_clash<'a>(r: &'a Rollout, w: &Workload) -> Option<&'a str> {
    if !is_partition(r) {
        return None;
    }
    let meta = strategy(r)?.patch_pod_template_metadata.as_ref()?;
    let selected = w.selector.get("matchLabels")?;
    meta.labels
        .keys()
        .find(|k| selected.get(k.as_str()).is_some())
        .map(String::as_str)
}

/// The name of the canary Deployment of `workload` at `revision`.
pub fn canary_name(workload: &str, revision: &str) -> String {
    format!("{workload}-{revision}")
}

/// The workload's pod template with the Rollout's `patchPodTemplateMetadata` laid over.
fn canary_template(r: &Rollout, w: &Workload) -> Value {
    let mut template = w.template.clone();
    let Some(meta) = strategy(r).and_then(|s| s.patch_pod_template_metadata.as_ref()) else {
        return template;
    };
    let m = template
        .as_object_mut()
        .map(|t| t.entry("metadata").or_insert_with(|| json!({})));
    if let Some(Value::Object(m)) = m {
        for (field, extra) in [("labels", &meta.labels), ("annotations", &meta.annotations)] {
            if extra.is_empty() {
                continue;
            }
            let entry = m.entry(field).or_insert_with(|| json!({}));
            if let Value::Object(map) = entry {
                for (k, v) in extra {
                    map.insert(k.clone(), Value::String(v.clone()));
                }
            }
        }
    }
    template
}

/// The canary Deployment `name` for the workload's current template.
pub(crate) fn canary_deployment(
    r: &Rollout,
    ns: &str,
    w: &Workload,
    name: &str,
    replicas: i32,
) -> Value {
    let mut d = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {CANARY_LABEL: w.name},
            "annotations": {"rollouts.kruise.io/rollout": r.metadata.name.clone().unwrap_or_default()},
        },
        "spec": {
            "replicas": replicas,
            "selector": w.selector,
            "template": canary_template(r, w),
        }
    });
    if let Some(secs) = w.min_ready_seconds {
        d["spec"]["minReadySeconds"] = json!(secs);
    }
    d
}
