//! The merges behind `apply` and `patch`: kubectl's three-way apply, Kubernetes'
//! strategic merge patch (lists of containers, env, ports... merged by key), RFC 7386
//! JSON merge patch and RFC 6902 JSON patch.

use serde_json::{Map, Value};

/// The annotation holding the object as last applied, for three-way apply.
pub const LAST_APPLIED: &str = "lanes.dev/last-applied-configuration";

/// Three-way apply: fields in `new` are set, fields in `last` (the previous apply) but
/// not in `new` are removed, and fields set by others (controllers) are kept.
pub fn three_way(current: &Value, last: Option<&Value>, new: &Value) -> Value {
    match (current, new) {
        (Value::Object(cur), Value::Object(n)) => {
            let empty = Map::new();
            let last_map = last.and_then(Value::as_object).unwrap_or(&empty);
            let mut out = cur.clone();
            for k in last_map.keys() {
                if !n.contains_key(k) {
                    out.remove(k);
                }
            }
            for (k, v) in n {
                let merged = match out.get(k) {
                    Some(c) => three_way(c, last_map.get(k), v),
                    None => v.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        _ => new.clone(),
    }
}

/// The merge key of the list at `path` (the field names from the object's root) under
/// strategic merge and server-side apply, as Kubernetes' core types declare it; lists
/// without one are atomic (replaced whole). A Service's `spec.ports` merge by `port`,
/// a container's `ports` by `containerPort`.
pub fn list_key(path: &[String]) -> Option<&'static str> {
    let field = path.last()?.as_str();
    let parent = path.len().checked_sub(2).map(|i| path[i].as_str());
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets" => Some("name"),
        "hostAliases" => Some("ip"),
        "ports" if path.len() == 2 && path[0] == "spec" => Some("port"),
        "ports" if matches!(parent, Some("containers" | "initContainers")) => Some("containerPort"),
        "volumeMounts" => Some("mountPath"),
        "volumeDevices" => Some("devicePath"),
        "conditions" => Some("type"),
        "ownerReferences" => Some("uid"),
        _ => None,
    }
}

/// Applies a strategic merge patch to `target`: maps merge, `null` deletes, lists with
/// a known merge key merge item by item (`$patch: delete` removes an item), other lists
/// are replaced; `$patch: replace` on a map replaces it whole.
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    strategic(target, patch, &mut Vec::new());
}

fn strategic(target: &mut Value, patch: &Value, path: &mut Vec<String>) {
    match patch {
        Value::Object(p) => {
            if p.get("$patch").and_then(Value::as_str) == Some("replace") {
                let mut p = p.clone();
                p.remove("$patch");
                *target = Value::Object(p);
                return;
            }
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let Some(t) = target.as_object_mut() else {
                return;
            };
            for (k, v) in p {
                if k.starts_with('$') {
                    continue;
                }
                if v.is_null() {
                    t.remove(k);
                    continue;
                }
                path.push(k.clone());
                match t.get_mut(k) {
                    Some(existing) => strategic(existing, v, path),
                    None => {
                        let mut fresh = Value::Null;
                        strategic(&mut fresh, v, path);
                        t.insert(k.clone(), fresh);
                    }
                }
                path.pop();
            }
        }
        Value::Array(items) => {
            let key = list_key(path);
            match (key, target.as_array_mut()) {
                (Some(key), Some(list)) => {
                    for item in items {
                        let Some(id) = item.get(key) else {
                            list.push(item.clone());
                            continue;
                        };
                        let pos = list.iter().position(|e| e.get(key) == Some(id));
                        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                        match (pos, delete) {
                            (Some(i), true) => {
                                list.remove(i);
                            }
                            (None, true) => {}
                            (Some(i), false) => strategic(&mut list[i], item, path),
                            (None, false) => {
                                let mut fresh = Value::Null;
                                strategic(&mut fresh, item, path);
                                list.push(fresh);
                            }
                        }
                    }
                }
                _ => {
                    *target = Value::Array(
                        items
                            .iter()
                            .filter(|i| i.get("$patch").and_then(Value::as_str) != Some("delete"))
                            .map(|i| {
                                let mut fresh = Value::Null;
                                strategic(&mut fresh, i, path);
                                fresh
                            })
                            .collect(),
                    );
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// How a patch body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// Kubernetes strategic merge patch (kubectl's default).
    Strategic,
    /// RFC 7386 JSON merge patch.
    Merge,
    /// RFC 6902 JSON patch.
    Json,
}

impl PatchType {
    /// From a `Content-Type` as kubectl sends it.
    pub fn from_content_type(ct: &str) -> Option<PatchType> {
        match ct.split(';').next().unwrap_or("").trim() {
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/json-patch+json" => Some(PatchType::Json),
            _ => None,
        }
    }

    /// The `Content-Type` of this patch type.
    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Strategic => "application/strategic-merge-patch+json",
            PatchType::Merge => "application/merge-patch+json",
            PatchType::Json => "application/json-patch+json",
        }
    }
}

/// Applies a patch of the given type to a copy of `target`.
pub fn apply_patch(target: &Value, patch: &Value, kind: PatchType) -> Result<Value, String> {
    let mut out = target.clone();
    match kind {
        PatchType::Strategic => {
            if !patch.is_object() {
                return Err("a strategic merge patch must be a JSON object".into());
            }
            strategic_merge(&mut out, patch);
        }
        PatchType::Merge => {
            if !patch.is_object() {
                return Err("a JSON merge patch must be a JSON object".into());
            }
            json_patch::merge(&mut out, patch);
        }
        PatchType::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| format!("not a JSON patch (RFC 6902): {e}"))?;
            for op in ops.iter() {
                if tests_absent_as_null(&out, op) {
                    continue;
                }
                json_patch::patch(&mut out, std::slice::from_ref(op))
                    .map_err(|e| format!("JSON patch failed: {e}"))?;
            }
        }
    }
    Ok(out)
}

/// Whether `op` tests that a member `doc` lacks is null: it passes, as on the
/// Kubernetes API server (a controller adding the first finalizer tests
/// `/metadata/finalizers` against null before it adds the list).
fn tests_absent_as_null(doc: &Value, op: &json_patch::PatchOperation) -> bool {
    matches!(op, json_patch::PatchOperation::Test(t)
        if t.value.is_null() && doc.pointer(t.path.as_str()).is_none())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_articles_patch_merges_containers_by_name() {
        let deploy = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "default", "image": "go-http-sample:1.0", "env": [{"name": "app", "value": "mocka"}]},
            {"name": "side", "image": "x"}
        ]}}}});
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "default", "image": "go-http-sample:2.0"}]}}}});
        let out = apply_patch(&deploy, &patch, PatchType::Strategic).unwrap();
        let cs = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(cs.as_array().unwrap().len(), 2);
        assert_eq!(cs[0]["image"], "go-http-sample:2.0");
        assert_eq!(cs[0]["env"][0]["value"], "mocka");
        // A JSON merge patch replaces the list instead.
        let out = apply_patch(&deploy, &patch, PatchType::Merge).unwrap();
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn strategic_deletes_and_json_patch() {
        let v = json!({"a": {"b": 1, "c": 2}, "env": [{"name": "x", "value": "1"}, {"name": "y"}]});
        let mut t = v.clone();
        strategic_merge(
            &mut t,
            &json!({"a": {"b": null}, "env": [{"name": "x", "$patch": "delete"}]}),
        );
        assert_eq!(t, json!({"a": {"c": 2}, "env": [{"name": "y"}]}));
        let out = apply_patch(
            &v,
            &json!([{"op": "replace", "path": "/a/b", "value": 5}]),
            PatchType::Json,
        )
        .unwrap();
        assert_eq!(out["a"]["b"], 5);
        assert!(
            apply_patch(
                &v,
                &json!([{"op": "test", "path": "/a/b", "value": 9}]),
                PatchType::Json
            )
            .is_err()
        );
        // A member that is absent tests as null (the first finalizer's patch), and
        // only then.
        let first = json!([{"op": "test", "path": "/a/f", "value": null},
                           {"op": "add", "path": "/a/f", "value": ["x/y"]}]);
        let out = apply_patch(&v, &first, PatchType::Json).unwrap();
        assert_eq!(out["a"]["f"], json!(["x/y"]));
        assert!(apply_patch(&out, &first, PatchType::Json).is_err());
    }

    #[test]
    fn three_way_keeps_what_others_set() {
        let last = json!({"spec": {"replicas": 1, "x": 1}});
        let current = json!({"spec": {"replicas": 1, "x": 1, "paused": true}, "status": {"r": 1}});
        let new = json!({"spec": {"replicas": 2}});
        let out = three_way(&current, Some(&last), &new);
        assert_eq!(
            out,
            json!({"spec": {"replicas": 2, "paused": true}, "status": {"r": 1}})
        );
    }
}
