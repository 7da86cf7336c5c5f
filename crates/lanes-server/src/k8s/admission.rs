//! What every write passes before it is stored, whichever verb carries it: the replica
//! bound, the Kruise-style pause of a Deployment a Rollout manages, the lane group's
//! fallback targets, a status that keeps the object decodable, and a namespace that
//! exists.

use lanes_model::{Kind, Object, ObjectKey};
use lanes_store::{StoreError, Txn};
use serde_json::Value;

use super::catalog::Resource;
use super::error::{ApiError, ApiResult, Reason};

/// The default of `ApiState::max_replicas`: every replica is a process here.
pub const DEFAULT_MAX_REPLICAS: i64 = 1_000;

/// Refuses a Deployment that asks for more replicas than `max`.
pub fn check_replicas(value: &Value, max: i64) -> Result<(), StoreError> {
    if value.get("kind").and_then(Value::as_str) != Some("Deployment") {
        return Ok(());
    }
    match value.pointer("/spec/replicas").and_then(Value::as_i64) {
        Some(n) if n > max => Err(StoreError::Invalid(format!(
            "spec.replicas: {n} is more than the {max} replicas a Deployment may have here (each is a process; lanes up --max-replicas raises the bound)"
        ))),
        _ => Ok(()),
    }
}

/// Kruise's workload webhook, in the write path: a Deployment managed by an enabled
/// Rollout is paused when its template changes, and its stable template recorded.
pub fn admit(
    txn: &Txn<'_, '_>,
    current: Option<&Value>,
    value: &mut Value,
    max_replicas: i64,
) -> Result<(), StoreError> {
    if value.get("kind").and_then(Value::as_str) != Some("Deployment") {
        return Ok(());
    }
    check_replicas(value, max_replicas)?;
    let ns = value
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let rollouts: Vec<lanes_model::rollout::Rollout> = txn
        .list(Kind::Rollout, Some(&ns))?
        .into_iter()
        .filter_map(|r| serde_json::from_value(r).ok())
        .collect();
    let managing = lanes_rollout::admission::managing(&rollouts, &ns, &name);
    lanes_rollout::admission::admit_deployment(current, value, managing);
    Ok(())
}

/// Refuses a lane group whose fallback targets name no lane of it, once it has lanes (a
/// group is written before its lanes, which name it; until then there is nothing to
/// check against).
pub fn check_fallback_targets(txn: &Txn<'_, '_>, object: &Object) -> Result<(), StoreError> {
    let lanes_model::Typed::LaneGroup(group) = &object.typed else {
        return Ok(());
    };
    let lanes = txn.list(Kind::Lane, None)?;
    let names: std::collections::BTreeSet<&str> = lanes
        .iter()
        .filter(|l| {
            l.pointer("/metadata/labels")
                .and_then(|m| m.get(lanes_model::lane::GROUP_LABEL))
                .and_then(Value::as_str)
                == Some(object.name.as_str())
        })
        .filter_map(|l| l.pointer("/metadata/name").and_then(Value::as_str))
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    let errors = lanes_model::lane::unknown_fallback_targets(&group.spec, &names);
    if errors.is_empty() {
        return Ok(());
    }
    Err(StoreError::Invalid(
        errors
            .iter()
            .map(|(field, message)| format!("{field}: {message}"))
            .collect::<Vec<_>>()
            .join(", "),
    ))
}

/// Kruise's Rollout webhook, in the write path: one Rollout per workload, and the
/// workload and step count of a release in flight unchanged.
pub fn check_rollout(
    txn: &Txn<'_, '_>,
    current: Option<&Value>,
    object: &Object,
) -> Result<(), StoreError> {
    let lanes_model::Typed::Rollout(new) = &object.typed else {
        return Ok(());
    };
    let others: Vec<lanes_model::rollout::Rollout> = txn
        .list(Kind::Rollout, object.namespace.as_deref())?
        .into_iter()
        .filter_map(|r| serde_json::from_value(r).ok())
        .collect();
    let old: Option<lanes_model::rollout::Rollout> =
        current.and_then(|c| serde_json::from_value(c.clone()).ok());
    let errors = lanes_rollout::admission::check_rollout(old.as_ref(), new, &others);
    if errors.is_empty() {
        return Ok(());
    }
    Err(StoreError::Invalid(
        errors
            .iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect::<Vec<_>>()
            .join(", "),
    ))
}

/// A status must keep the object decodable (its typed status has the right shape).
pub fn check_status(resource: &Resource, current: &Value, status: &Value) -> ApiResult<()> {
    let mut candidate = current.clone();
    if let Some(o) = candidate.as_object_mut() {
        o.insert("status".into(), status.clone());
    }
    let name = current
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    Object::from_value(candidate)
        .map(|_| ())
        .map_err(|errs| ApiError::from_fields(resource, name, &errs))
}

/// Refuses an object in a namespace that does not exist, as the API server does.
pub fn namespace_exists(txn: &Txn<'_, '_>, namespace: Option<&str>) -> ApiResult<()> {
    let Some(ns) = namespace else {
        return Ok(());
    };
    let key = ObjectKey {
        kind: Kind::Namespace,
        namespace: None,
        name: ns.to_string(),
    };
    match txn.get(&key)? {
        Some(_) => Ok(()),
        None => {
            Err(
                ApiError::new(Reason::NotFound, format!("namespaces {ns:?} not found"))
                    .with_details(ns, "", "namespaces"),
            )
        }
    }
}

/// The namespaces an API server has from the start.
pub const INITIAL_NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "istio-system"];

/// Creates the namespaces an API server has from the start, where missing (and a
/// namespace for every namespace objects already live in, for stores written before
/// Lanes kept namespaces).
pub fn ensure_namespaces(store: &lanes_store::Store) -> Result<(), StoreError> {
    let mut wanted: Vec<String> = INITIAL_NAMESPACES.iter().map(|s| s.to_string()).collect();
    for kind in Kind::ALL.into_iter().filter(|k| k.namespaced()) {
        for o in store.list(kind, None)?.0 {
            if let Some(ns) = o.pointer("/metadata/namespace").and_then(Value::as_str)
                && !wanted.iter().any(|w| w == ns)
            {
                wanted.push(ns.to_string());
            }
        }
    }
    store.write(|t| {
        for name in &wanted {
            let key = ObjectKey {
                kind: Kind::Namespace,
                namespace: None,
                name: name.clone(),
            };
            if t.get(&key)?.is_none() {
                let value = namespace_object(name);
                let object = Object::from_value(value)
                    .map_err(|e| StoreError::Invalid(format!("namespace {name:?}: {}", e[0])))?;
                t.create(&object)?;
            }
        }
        Ok(())
    })
}

/// A new Namespace object, `Active`.
pub fn namespace_object(name: &str) -> Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    })
}
