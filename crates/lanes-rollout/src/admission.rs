//! What Kruise's workload webhook does, as a pure function the API server calls on
//! every write of a Deployment: when a Rollout manages the Deployment and its pod
//! template changes, the Deployment is paused (its pods stay on the stable version) and
//! the stable template is recorded, so the rollout controller can run a canary of the
//! new one — and `undo` can write the stable one back.

use serde_json::{Value, json};

use crate::{IN_PROGRESSING, STABLE_TEMPLATE};

/// Adjusts a Deployment about to be written. `old` is the stored one (none on create);
/// `managed` says whether an enabled Rollout targets it.
pub fn admit_deployment(old: Option<&Value>, new: &mut Value, managed: bool) {
    let Some(old) = old else { return };
    // Release marks survive writes that do not carry them (apply, replace).
    let old_ann = old
        .pointer("/metadata/annotations")
        .and_then(Value::as_object);
    for key in [STABLE_TEMPLATE, IN_PROGRESSING] {
        if let Some(v) = old_ann.and_then(|a| a.get(key))
            && new
                .pointer(&format!("/metadata/annotations/{}", key.replace('/', "~1")))
                .is_none()
            && managed
        {
            set_annotation(new, key, v.clone());
        }
    }
    if !managed {
        return;
    }
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
            Value::String(json!({"rolloutName": "", "createdBy": "lanes"}).to_string()),
        );
    }
    if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("paused".into(), Value::Bool(true));
    }
}

/// Annotation on a Deployment the operator holds between releases: the template it was
/// last rolled out to, as JSON. A template that differs from it is a release.
pub const REST_TEMPLATE: &str = "lanes.dev/rest-template";

/// What the Kubernetes operator does in place of Kruise's workload webhook: a Deployment
/// a Rollout manages is held paused between releases, with the template it rolled out to
/// recorded, so a new template never starts a rolling update; the next reconcile sees
/// the difference and marks the release (stable template, in-progressing) exactly as
/// [`admit_deployment`] does in the embedded mode. Returns the merge patch to send, if
/// any. `rollout` names the enabled Rollout that manages the Deployment; `None` lets go.
pub fn hold(deployment: &Value, rollout: Option<&str>) -> Option<Value> {
    let ann = deployment
        .pointer("/metadata/annotations")
        .and_then(Value::as_object);
    let get = |k: &str| ann.and_then(|a| a.get(k)).and_then(Value::as_str);
    let releasing = get(STABLE_TEMPLATE).is_some();
    let rest = get(REST_TEMPLATE).and_then(|s| serde_json::from_str::<Value>(s).ok());
    let paused = deployment
        .pointer("/spec/paused")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let template = deployment
        .pointer("/spec/template")
        .cloned()
        .unwrap_or(Value::Null);
    let Some(rollout) = rollout else {
        // No longer managed: let go of a Deployment held at rest.
        return (get(REST_TEMPLATE).is_some() && !releasing).then(|| {
            json!({"metadata": {"annotations": {REST_TEMPLATE: null}},
                   "spec": {"paused": false}})
        });
    };
    if releasing {
        return None;
    }
    match (paused, rest) {
        (true, Some(rest)) if rest == template => None,
        (true, Some(rest)) => Some(json!({"metadata": {"annotations": {
            STABLE_TEMPLATE: rest.to_string(),
            IN_PROGRESSING: json!({"rolloutName": rollout, "createdBy": "lanes"}).to_string(),
        }}})),
        // Paused by someone else before a Rollout took it: what it runs is the rest point.
        (true, None) => Some(json!({"metadata": {"annotations": {
            REST_TEMPLATE: template.to_string(),
        }}})),
        (false, _) if rolled_out(deployment) => Some(json!({
            "metadata": {"annotations": {REST_TEMPLATE: template.to_string()}},
            "spec": {"paused": true},
        })),
        // A plain rolling update is under way (one that began before the hold): held
        // once it is done.
        (false, _) => None,
    }
}

/// Whether a Deployment's status says it runs its current template everywhere.
fn rolled_out(d: &Value) -> bool {
    let int = |p: &str| d.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    let replicas = d
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    int("/status/observedGeneration") >= int("/metadata/generation")
        && int("/status/updatedReplicas") == replicas
        && int("/status/availableReplicas") == replicas
        && int("/status/replicas") == replicas
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
        admit_deployment(Some(&old), &mut new, true);
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
        admit_deployment(Some(&new), &mut newer, true);
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
        admit_deployment(Some(&old), &mut free, false);
        assert!(free["spec"].get("paused").is_none());
    }

    fn deployment(image: &str, paused: bool, rest: Option<&str>, stable: bool) -> Value {
        let template = |i: &str| json!({"spec": {"containers": [{"image": i}]}});
        let mut ann = serde_json::Map::new();
        if let Some(r) = rest {
            ann.insert(REST_TEMPLATE.into(), template(r).to_string().into());
        }
        if stable {
            ann.insert(STABLE_TEMPLATE.into(), template("old").to_string().into());
        }
        json!({"metadata": {"name": "d", "generation": 3, "annotations": ann},
               "spec": {"replicas": 2, "paused": paused, "template": template(image)},
               "status": {"observedGeneration": 3, "updatedReplicas": 2,
                          "availableReplicas": 2, "replicas": 2}})
    }

    #[test]
    fn the_operator_holds_a_managed_deployment_and_marks_a_new_template_as_a_release() {
        // Rolled out and free: held paused at its template.
        let p = hold(&deployment("a:1", false, None, false), Some("r")).unwrap();
        assert_eq!(p["spec"]["paused"], true);
        let rest: Value = serde_json::from_str(
            p["metadata"]["annotations"][REST_TEMPLATE]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(rest["spec"]["containers"][0]["image"], "a:1");
        // Held at rest: nothing to do.
        assert_eq!(
            hold(&deployment("a:1", true, Some("a:1"), false), Some("r")),
            None
        );
        // A new template while held: the release is marked with the rest template.
        let p = hold(&deployment("a:2", true, Some("a:1"), false), Some("r")).unwrap();
        let ann = &p["metadata"]["annotations"];
        let stable: Value = serde_json::from_str(ann[STABLE_TEMPLATE].as_str().unwrap()).unwrap();
        assert_eq!(stable["spec"]["containers"][0]["image"], "a:1");
        assert!(
            ann[IN_PROGRESSING]
                .as_str()
                .unwrap()
                .contains("\"rolloutName\":\"r\"")
        );
        // A release runs: the state machine owns the Deployment.
        assert_eq!(
            hold(&deployment("a:2", false, Some("a:1"), true), Some("r")),
            None
        );
        // A rolling update under way is not frozen mid-way.
        let mut rolling = deployment("a:2", false, Some("a:1"), false);
        rolling["status"]["updatedReplicas"] = json!(1);
        assert_eq!(hold(&rolling, Some("r")), None);
        // Unmanaged: a held Deployment is let go; a free one is left alone.
        let p = hold(&deployment("a:1", true, Some("a:1"), false), None).unwrap();
        assert_eq!(p["spec"]["paused"], false);
        assert_eq!(p["metadata"]["annotations"][REST_TEMPLATE], Value::Null);
        assert_eq!(hold(&deployment("a:1", false, None, false), None), None);
    }
}
