//! What Kruise's workload webhook does, as a pure function called on every write of a
//! Deployment (in-process by `lanes up`'s API server, over TLS by the operator's
//! mutating webhook on a cluster): when a Rollout manages the Deployment and its pod
//! template changes, the Deployment is paused (its pods stay on the stable version) and
//! the stable template is recorded, so the rollout controller can run a canary of the
//! new one — and `undo` can write the stable one back.

use serde_json::{Value, json};

use crate::{IN_PROGRESSING, STABLE_TEMPLATE};

/// Adjusts a Deployment about to be written. `old` is the stored one (none on create);
/// `rollout` names the enabled Rollout that targets it, if one does.
///
/// The release marks are the rollout controller's: a write that drops them (the
/// controller's own, at the end of a release) is taken as it is, as Kruise's webhook
/// takes it.
pub fn admit_deployment(old: Option<&Value>, new: &mut Value, rollout: Option<&str>) {
    let (Some(old), Some(rollout)) = (old, rollout) else {
        return;
    };
    let old_t = old.pointer("/spec/template");
    let new_t = new.pointer("/spec/template");
    if old_t == new_t {
        return;
    }
    let releasing = new
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(STABLE_TEMPLATE))
        .is_some();
    if !releasing {
        let stable = old_t.cloned().unwrap_or(Value::Null);
        set_annotation(new, STABLE_TEMPLATE, Value::String(stable.to_string()));
        set_annotation(
            new,
            IN_PROGRESSING,
            Value::String(json!({"rolloutName": rollout, "createdBy": "lanes"}).to_string()),
        );
    }
    if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("paused".into(), Value::Bool(true));
    }
}

/// The name of the Rollout among `rollouts` that manages Deployment `namespace/name`
/// ([`crate::manager_of`]), if any.
pub fn managing<'a>(
    rollouts: &'a [lanes_model::rollout::Rollout],
    namespace: &str,
    name: &str,
) -> Option<&'a str> {
    crate::manager_of(rollouts, namespace, name).and_then(|r| r.metadata.name.as_deref())
}

/// Kruise's Rollout webhook, the rules that look beyond the one object: a workload has
/// one Rollout (`others` are the other Rollouts of the namespace), and while a release
/// is in flight (`old`'s phase `Progressing` or `Terminating`) the workload it releases
/// and the number of its steps stay as they are. Each refusal names its field.
pub fn check_rollout(
    old: Option<&lanes_model::rollout::Rollout>,
    new: &lanes_model::rollout::Rollout,
    others: &[lanes_model::rollout::Rollout],
) -> Vec<lanes_model::FieldError> {
    use lanes_model::FieldError;
    use lanes_model::rollout::RolloutPhase;
    let mut errs = Vec::new();
    let name = new.metadata.name.as_deref().unwrap_or("");
    if let Some(other) = others.iter().find(|o| {
        o.metadata.name.as_deref() != Some(name) && o.spec.workload_ref == new.spec.workload_ref
    }) {
        errs.push(FieldError::new(
            "spec.workloadRef",
            format!(
                "Rollout {:?} already releases {} {:?}; a workload has one Rollout",
                other.metadata.name.as_deref().unwrap_or(""),
                new.spec.workload_ref.kind,
                new.spec.workload_ref.name
            ),
        ));
    }
    let Some(old) = old else {
        return errs;
    };
    let phase = old.status.as_ref().and_then(|s| s.phase);
    if !matches!(
        phase,
        Some(RolloutPhase::Progressing | RolloutPhase::Terminating)
    ) {
        return errs;
    }
    if old.spec.workload_ref != new.spec.workload_ref {
        errs.push(FieldError::new(
            "spec.workloadRef",
            "is immutable while a release is in flight (phase Progressing)",
        ));
    }
    let steps = |r: &lanes_model::rollout::Rollout| {
        r.spec.strategy.canary.as_ref().map_or(0, |c| c.steps.len())
    };
    if steps(old) != steps(new) {
        errs.push(FieldError::new(
            "spec.strategy.canary.steps",
            format!(
                "the number of steps ({}) is immutable while a release is in flight (phase \
                 Progressing); a step may change, not be added or removed",
                steps(old)
            ),
        ));
    }
    errs
}

fn set_annotation(v: &mut Value, key: &str, value: Value) {
    let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let ann = meta.entry("annotations").or_insert_with(|| json!({}));
    if let Some(a) = ann.as_object_mut() {
        a.insert(key.into(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_change_under_a_rollout_pauses_and_records_the_stable_template() {
        let old =
            json!({"metadata": {"name": "d"}, "spec": {"template": {"spec": {"image": "1"}}}});
        let mut new =
            json!({"metadata": {"name": "d"}, "spec": {"template": {"spec": {"image": "2"}}}});
        admit_deployment(Some(&old), &mut new, Some("r"));
        assert_eq!(new["spec"]["paused"], true);
        let stable: Value = serde_json::from_str(
            new["metadata"]["annotations"][STABLE_TEMPLATE]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(stable["spec"]["image"], "1");
        // A second change keeps the first stable template.
        let mut newer = new.clone();
        newer["spec"]["template"]["spec"]["image"] = json!("3");
        admit_deployment(Some(&new), &mut newer, Some("r"));
        let stable: Value = serde_json::from_str(
            newer["metadata"]["annotations"][STABLE_TEMPLATE]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(stable["spec"]["image"], "1");
        // Unmanaged: nothing happens.
        let mut free =
            json!({"metadata": {"name": "d"}, "spec": {"template": {"spec": {"image": "2"}}}});
        admit_deployment(Some(&old), &mut free, None);
        assert!(free["spec"].get("paused").is_none());
    }
}
