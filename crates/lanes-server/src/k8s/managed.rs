//! Field ownership and server-side apply: `metadata.managedFields` in the `FieldsV1`
//! form (`f:spec`, `k:{"name":"app"}`, `v:"x"`, `.`), conflicts between managers, and
//! the merge of an applied configuration into the live object.

use serde_json::{Map, Value, json};

use crate::merge::list_key;

/// One path step, as `FieldsV1` writes it.
type Step = String;
/// A field path.
type FieldPath = Vec<Step>;

/// Fields no manager owns: identity and server-set metadata.
fn is_unowned(path: &[String]) -> bool {
    match path {
        [one] => matches!(one.as_str(), "apiVersion" | "kind" | "status"),
        [meta, field] if meta == "metadata" => !matches!(
            field.as_str(),
            "labels" | "annotations" | "ownerReferences" | "finalizers"
        ),
        _ => false,
    }
}

/// The leaf paths an object sets: maps descend, lists with a merge key descend by item
/// key, other lists and scalars are leaves.
pub fn leaves(value: &Value) -> Vec<FieldPath> {
    let mut out = Vec::new();
    walk(value, &mut Vec::new(), &mut Vec::new(), &mut out);
    out
}

fn walk(value: &Value, names: &mut Vec<String>, path: &mut FieldPath, out: &mut Vec<FieldPath>) {
    if is_unowned(names) {
        return;
    }
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                names.push(k.clone());
                path.push(format!("f:{k}"));
                walk(v, names, path, out);
                path.pop();
                names.pop();
            }
        }
        Value::Array(items) if list_key(names).is_some() && !items.is_empty() => {
            let key = list_key(names).unwrap_or_default();
            for item in items {
                let Some(id) = item.get(key) else { continue };
                path.push(format!("k:{}", json!({ key: id })));
                out.push({
                    let mut p = path.clone();
                    p.push(".".into());
                    p
                });
                if let Some(map) = item.as_object() {
                    for (k, v) in map {
                        names.push(k.clone());
                        path.push(format!("f:{k}"));
                        walk(v, names, path, out);
                        path.pop();
                        names.pop();
                    }
                }
                path.pop();
            }
        }
        _ if !path.is_empty() => out.push(path.clone()),
        _ => {}
    }
}

/// The value at `path` in `object` (`None` when absent); a `.` step names the item.
fn value_at<'a>(object: &'a Value, path: &[Step]) -> Option<&'a Value> {
    let mut cur = object;
    for step in path {
        if step == "." {
            return Some(cur);
        }
        cur = if let Some(field) = step.strip_prefix("f:") {
            cur.get(field)?
        } else if let Some(key) = step.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(key).ok()?;
            cur.as_array()?
                .iter()
                .find(|item| key.iter().all(|(k, v)| item.get(k) == Some(v)))?
        } else {
            return None;
        };
    }
    Some(cur)
}

/// `FieldsV1` of a set of paths.
pub fn to_fields_v1(paths: &[FieldPath]) -> Value {
    let mut root = Map::new();
    for path in paths {
        let mut node = &mut root;
        for step in path {
            let entry = node
                .entry(step.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(next) = entry else { break };
            node = next;
        }
    }
    Value::Object(root)
}

/// The leaf paths of a `FieldsV1` tree.
pub fn from_fields_v1(fields: &Value) -> Vec<FieldPath> {
    fn go(v: &Value, path: &mut FieldPath, out: &mut Vec<FieldPath>) {
        match v.as_object() {
            Some(map) if !map.is_empty() => {
                for (k, child) in map {
                    path.push(k.clone());
                    go(child, path, out);
                    path.pop();
                }
            }
            _ => out.push(path.clone()),
        }
    }
    let mut out = Vec::new();
    go(fields, &mut Vec::new(), &mut out);
    out
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The manager.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// The API version the fields are in.
    pub api_version: String,
    /// When.
    pub time: String,
    /// The paths it owns.
    pub fields: Vec<FieldPath>,
    /// The subresource written through (`status`), if any.
    pub subresource: Option<String>,
}

/// The entries of an object's `metadata.managedFields`.
pub fn entries(object: &Value) -> Vec<Entry> {
    object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| Entry {
            manager: e["manager"].as_str().unwrap_or_default().to_string(),
            operation: e["operation"].as_str().unwrap_or("Update").to_string(),
            api_version: e["apiVersion"].as_str().unwrap_or_default().to_string(),
            time: e["time"].as_str().unwrap_or_default().to_string(),
            fields: from_fields_v1(&e["fieldsV1"]),
            subresource: e["subresource"].as_str().map(str::to_string),
        })
        .collect()
}

/// Writes `entries` into the object's metadata (dropping entries that own nothing).
pub fn set_entries(object: &mut Value, entries: &[Entry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&e.fields),
            });
            if let Some(sub) = &e.subresource {
                v["subresource"] = sub.clone().into();
            }
            v
        })
        .collect();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        if list.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(list));
        }
    }
}

fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn upsert(list: &mut Vec<Entry>, manager: &str, operation: &str, api_version: &str) -> usize {
    match list
        .iter()
        .position(|e| e.manager == manager && e.operation == operation && e.subresource.is_none())
    {
        Some(i) => {
            list[i].time = now();
            list[i].api_version = api_version.to_string();
            i
        }
        None => {
            list.push(Entry {
                manager: manager.to_string(),
                operation: operation.to_string(),
                api_version: api_version.to_string(),
                time: now(),
                fields: Vec::new(),
                subresource: None,
            });
            list.len() - 1
        }
    }
}

/// Records a write that is no apply (create, update, patch) by `manager`: the fields it
/// changed become its own and no other manager's.
pub fn record_update(old: Option<&Value>, new: &mut Value, manager: &str, api_version: &str) {
    let mut list = old.map(entries).unwrap_or_default();
    let changed: Vec<FieldPath> = leaves(new)
        .into_iter()
        .filter(|p| old.is_none_or(|o| value_at(o, p) != value_at(new, p)))
        .collect();
    let live = leaves(new);
    for e in &mut list {
        e.fields
            .retain(|p| live.contains(p) && !changed.contains(p));
    }
    if !changed.is_empty() {
        let i = upsert(&mut list, manager, "Update", api_version);
        for p in changed {
            if !list[i].fields.contains(&p) {
                list[i].fields.push(p);
            }
        }
    }
    set_entries(new, &list);
}

/// Whether `a` and `b` differ in nothing but the times of their managed fields (an
/// apply that changes nothing is no write).
pub fn same_but_times(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(list) = v
            .pointer_mut("/metadata/managedFields")
            .and_then(Value::as_array_mut)
        {
            for e in list {
                if let Some(o) = e.as_object_mut() {
                    o.remove("time");
                }
            }
        }
        v
    };
    strip(a) == strip(b)
}

/// A field another manager owns with another value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The manager that owns it.
    pub manager: String,
    /// The field, as `.spec.replicas` or `.spec.template.spec.containers[name="default"].image`.
    pub field: String,
}

/// A field path as conflict messages print it.
pub fn display(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        if let Some(f) = step.strip_prefix("f:") {
            out.push('.');
            out.push_str(f);
        } else if let Some(k) = step.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = key.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("[{}]", parts.join(",")));
        }
    }
    out
}

/// Server-side apply of `applied` by `manager` onto `live` (`None`: the object is new).
/// Returns the merged object with its managed fields, or the conflicts (none when
/// `force`, which takes the fields over).
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    api_version: &str,
    force: bool,
) -> Result<Value, Vec<Conflict>> {
    let mut list = live.map(entries).unwrap_or_default();
    let wanted = leaves(applied);
    let mut conflicts = Vec::new();
    if let Some(live) = live {
        for e in list.iter_mut().filter(|e| e.manager != manager) {
            let mut taken = Vec::new();
            for p in e.fields.iter().filter(|p| wanted.contains(p)) {
                if value_at(live, p) != value_at(applied, p) {
                    if force {
                        taken.push(p.clone());
                    } else {
                        conflicts.push(Conflict {
                            manager: e.manager.clone(),
                            field: display(p),
                        });
                    }
                }
            }
            e.fields.retain(|p| !taken.contains(p));
        }
    }
    if !conflicts.is_empty() {
        return Err(conflicts);
    }
    let mut merged = live.cloned().unwrap_or_else(|| json!({}));
    let me = upsert(&mut list, manager, "Apply", api_version);
    let before = std::mem::take(&mut list[me].fields);
    let others: Vec<FieldPath> = list.iter().flat_map(|e| e.fields.clone()).collect();
    for p in before
        .iter()
        .filter(|p| !wanted.contains(p) && !others.contains(p))
    {
        remove_at(&mut merged, p);
    }
    merge_into(&mut merged, applied, &mut Vec::new());
    list[me].fields = wanted;
    set_entries(&mut merged, &list);
    Ok(merged)
}

/// Removes the field or list item at `path`.
fn remove_at(object: &mut Value, path: &[Step]) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    let (target, parent) = if last == "." {
        match parent.split_last() {
            Some((item, up)) => (item, up),
            None => return,
        }
    } else {
        (last, parent)
    };
    let mut cur = object;
    for step in parent {
        let next = if let Some(f) = step.strip_prefix("f:") {
            cur.get_mut(f)
        } else if let Some(k) = step.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            cur.as_array_mut().and_then(|l| {
                l.iter_mut()
                    .find(|i| key.iter().all(|(k, v)| i.get(k) == Some(v)))
            })
        } else {
            None
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(f) = target.strip_prefix("f:") {
        if let Some(m) = cur.as_object_mut() {
            m.remove(f);
        }
    } else if let Some(k) = target.strip_prefix("k:") {
        let key: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
        if let Some(l) = cur.as_array_mut() {
            l.retain(|i| !key.iter().all(|(k, v)| i.get(k) == Some(v)));
        }
    }
}

/// Merges `applied` into `target`: maps by key, keyed lists by item, the rest replaced.
fn merge_into(target: &mut Value, applied: &Value, names: &mut Vec<String>) {
    match applied {
        Value::Object(a) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let Some(t) = target.as_object_mut() else {
                return;
            };
            for (k, v) in a {
                names.push(k.clone());
                let slot = t.entry(k.clone()).or_insert(Value::Null);
                merge_into(slot, v, names);
                names.pop();
            }
        }
        Value::Array(items) => match (list_key(names), target.as_array_mut()) {
            (Some(key), Some(list)) => {
                for item in items {
                    let found = item
                        .get(key)
                        .and_then(|id| list.iter_mut().find(|e| e.get(key) == Some(id)));
                    match found {
                        Some(existing) => merge_into(existing, item, names),
                        None => list.push(item.clone()),
                    }
                }
            }
            _ => *target = applied.clone(),
        },
        other => *target = other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy(replicas: i64, image: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "labels": {"app": "d"}},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [
                {"name": "default", "image": image}]}}}})
    }

    #[test]
    fn apply_twice_is_unchanged_and_others_conflict() {
        let first = apply(None, &deploy(1, "a"), "kubectl", "apps/v1", false).unwrap();
        let fields = &first["metadata"]["managedFields"][0]["fieldsV1"];
        assert!(
            fields["f:spec"]["f:template"]["f:spec"]["f:containers"]
                .get("k:{\"name\":\"default\"}")
                .is_some(),
            "{fields}"
        );
        let again = apply(Some(&first), &deploy(1, "a"), "kubectl", "apps/v1", false).unwrap();
        let strip = |v: &Value| {
            let mut v = v.clone();
            v["metadata"]["managedFields"][0]["time"] = Value::Null;
            v
        };
        assert_eq!(strip(&again), strip(&first));
        let err = apply(Some(&first), &deploy(3, "a"), "other", "apps/v1", false).unwrap_err();
        assert_eq!(
            err,
            vec![Conflict {
                manager: "kubectl".into(),
                field: ".spec.replicas".into()
            }]
        );
        // Same value: shared ownership, no conflict.
        assert!(apply(Some(&first), &deploy(1, "a"), "other", "apps/v1", false).is_ok());
        let forced = apply(Some(&first), &deploy(3, "a"), "other", "apps/v1", true).unwrap();
        assert_eq!(forced["spec"]["replicas"], 3);
    }

    #[test]
    fn dropping_a_field_from_the_applied_set_removes_it() {
        let first = apply(None, &deploy(1, "a"), "m", "apps/v1", false).unwrap();
        let mut less = deploy(1, "a");
        less["metadata"]["labels"] = json!({});
        less["metadata"].as_object_mut().unwrap().remove("labels");
        let out = apply(Some(&first), &less, "m", "apps/v1", false).unwrap();
        assert!(out.pointer("/metadata/labels/app").is_none(), "{out}");
        assert_eq!(out["spec"]["replicas"], 1);
    }

    #[test]
    fn updates_take_the_fields_they_change() {
        let first = apply(None, &deploy(1, "a"), "kubectl", "apps/v1", false).unwrap();
        let mut patched = first.clone();
        patched["spec"]["replicas"] = json!(2);
        record_update(Some(&first), &mut patched, "kubectl-patch", "apps/v1");
        let err = apply(Some(&patched), &deploy(1, "a"), "kubectl", "apps/v1", false).unwrap_err();
        assert_eq!(err[0].manager, "kubectl-patch");
    }
}
