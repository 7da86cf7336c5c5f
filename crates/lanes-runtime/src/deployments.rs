//! The Deployment controller of the embedded mode: pods from a Deployment's template,
//! named `<deployment>-<template hash>-<suffix>`, rolled with Kubernetes' defaults
//! (maxSurge 25% rounded up, maxUnavailable 25% rounded down), `spec.paused` honoured,
//! and the status Kubernetes reports.

use lanes_model::{Kind, Object, ObjectKey, Typed};
use lanes_store::{StoreError, Txn};
use serde_json::{Value, json};

/// The label carrying a pod's template hash.
pub const HASH_LABEL: &str = "pod-template-hash";

pub use lanes_model::hash::template_hash;

/// What a pod looks like to the Deployment controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodState {
    /// Name.
    pub name: String,
    /// Template hash.
    pub hash: String,
    /// Ready.
    pub ready: bool,
}

/// What one reconcile of a Deployment does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// New pods of the current template to create.
    pub create: usize,
    /// Pods to delete.
    pub delete: Vec<String>,
}

/// Rolling-update bounds for `replicas`: (maxSurge, maxUnavailable).
pub fn bounds(replicas: i32) -> (i32, i32) {
    let surge = (replicas * 25 + 99) / 100;
    let unavailable = replicas * 25 / 100;
    if surge == 0 && unavailable == 0 {
        (1, 0)
    } else {
        (surge, unavailable)
    }
}

/// Plans one step of a Deployment: scale the current template's pods toward
/// `replicas` within the surge bound, and remove old pods only while enough are ready.
pub fn plan(replicas: i32, hash: &str, paused: bool, pods: &[PodState]) -> Plan {
    let mut plan = Plan::default();
    let desired = replicas.max(0) as usize;
    let (new, old): (Vec<&PodState>, Vec<&PodState>) = pods.iter().partition(|p| p.hash == hash);
    if paused {
        // A paused Deployment keeps its pods as they are; it only scales the pods it has
        // down when asked for fewer.
        if pods.len() > desired {
            let mut ordered: Vec<&PodState> = pods.iter().collect();
            ordered.sort_by_key(|p| (p.ready, p.name.clone()));
            plan.delete = ordered[..pods.len() - desired]
                .iter()
                .map(|p| p.name.clone())
                .collect();
        } else if pods.is_empty() {
            plan.create = desired;
        }
        return plan;
    }
    let (surge, unavailable) = bounds(replicas.max(0));
    let total = pods.len();
    let max_total = desired + surge as usize;
    if new.len() < desired {
        plan.create = (desired - new.len()).min(max_total.saturating_sub(total));
    }
    // Old pods that are not ready go at once; ready ones while enough stay available.
    let mut removable_old: Vec<&PodState> = old.clone();
    removable_old.sort_by_key(|p| (p.ready, p.name.clone()));
    let ready_total = pods.iter().filter(|p| p.ready).count();
    let min_available = desired.saturating_sub(unavailable as usize);
    let mut can_remove_ready = ready_total.saturating_sub(min_available);
    let new_ready = new.iter().filter(|p| p.ready).count();
    for p in removable_old {
        if !p.ready {
            plan.delete.push(p.name.clone());
        } else if can_remove_ready > 0 && (new_ready > 0 || new.len() >= desired || desired == 0) {
            plan.delete.push(p.name.clone());
            can_remove_ready -= 1;
        }
    }
    // Too many of the current template (scaled down): drop the not-ready first.
    if new.len() > desired {
        let mut extra: Vec<&PodState> = new.clone();
        extra.sort_by_key(|p| (p.ready, p.name.clone()));
        plan.delete
            .extend(extra[..new.len() - desired].iter().map(|p| p.name.clone()));
    }
    plan
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .take(5)
        .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
        .collect()
}

/// A pod name `<base>-<suffix>` that `taken` says is free; a suffix that collides is
/// drawn again (a few times: with 27^5 suffixes a second collision is all but
/// impossible), so a Deployment of many pods never fails on a name.
fn fresh_pod_name(
    base: &str,
    mut taken: impl FnMut(&str) -> Result<bool, StoreError>,
) -> Result<String, StoreError> {
    for _ in 0..8 {
        let name = format!("{base}-{}", random_suffix());
        if !taken(&name)? {
            return Ok(name);
        }
    }
    Err(StoreError::Invalid(format!(
        "no free pod name for {base}-<suffix> after 8 tries"
    )))
}

/// Whether a pod value is ready.
pub fn pod_ready(v: &Value) -> bool {
    v.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// The Deployment owning a pod, by owner reference.
pub fn owner(v: &Value) -> Option<String> {
    v.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)?
        .iter()
        .find(|o| o["kind"] == "Deployment" && o["controller"] == true)
        .and_then(|o| o["name"].as_str())
        .map(str::to_string)
}

/// Reconciles one Deployment inside a write transaction.
pub fn reconcile(txn: &mut Txn<'_, '_>, deploy: &Value) -> Result<(), StoreError> {
    let Ok(object) = Object::from_value(deploy.clone()) else {
        return Ok(());
    };
    let Typed::Deployment(d) = &object.typed else {
        return Ok(());
    };
    let ns = object.namespace_or_empty().to_string();
    let Some(spec) = &d.spec else { return Ok(()) };
    let template = deploy
        .pointer("/spec/template")
        .cloned()
        .unwrap_or(Value::Null);
    let hash = template_hash(&template);
    let replicas = spec.replicas.unwrap_or(1);
    let paused = spec.paused.unwrap_or(false);
    let pods: Vec<Value> = txn
        .list(Kind::Pod, Some(&ns))?
        .into_iter()
        .filter(|p| owner(p).as_deref() == Some(object.name.as_str()))
        .collect();
    let states: Vec<PodState> = pods
        .iter()
        .map(|p| PodState {
            name: p
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            hash: p
                .pointer(&format!("/metadata/labels/{HASH_LABEL}"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            ready: pod_ready(p),
        })
        .collect();
    let step = plan(replicas, &hash, paused, &states);
    for name in &step.delete {
        let key = ObjectKey {
            kind: Kind::Pod,
            namespace: Some(ns.clone()),
            name: name.clone(),
        };
        txn.delete(&key, None)?;
    }
    let uid = deploy
        .pointer("/metadata/uid")
        .cloned()
        .unwrap_or(Value::Null);
    for _ in 0..step.create {
        let mut meta = template
            .get("metadata")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let labels = meta
            .as_object_mut()
            .map(|m| m.entry("labels").or_insert_with(|| json!({})).clone())
            .unwrap_or_else(|| json!({}));
        let mut labels = labels;
        labels[HASH_LABEL] = Value::String(hash.clone());
        let name = fresh_pod_name(&format!("{}-{hash}", object.name), |n| {
            Ok(txn
                .get(&ObjectKey {
                    kind: Kind::Pod,
                    namespace: Some(ns.to_string()),
                    name: n.to_string(),
                })?
                .is_some())
        })?;
        let pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": labels,
                "annotations": meta.get("annotations").cloned().unwrap_or_else(|| json!({})),
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                    "name": object.name, "uid": uid, "controller": true}],
            },
            "spec": template.get("spec").cloned().unwrap_or_else(|| json!({})),
        });
        match Object::from_value(pod) {
            Ok(p) => {
                txn.create(&p)?;
            }
            Err(errs) => {
                tracing::warn!(deployment = %object.name, ?errs, "cannot make a pod from the template");
                break;
            }
        }
    }
    // Status, from the pods after this step.
    let remaining: Vec<&PodState> = states
        .iter()
        .filter(|p| !step.delete.contains(&p.name))
        .collect();
    let updated = remaining.iter().filter(|p| p.hash == hash).count() + step.create;
    let ready = remaining.iter().filter(|p| p.ready).count();
    let total = remaining.len() + step.create;
    let generation = deploy
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let mut status = json!({
        "observedGeneration": generation,
        "replicas": total,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": ready,
        "unavailableReplicas": (replicas.max(0) as usize).saturating_sub(ready),
    });
    let complete = updated == replicas.max(0) as usize && total == updated && ready == total;
    status["conditions"] = json!([
        {"type": "Available", "status": if ready >= (replicas.max(0) as usize).saturating_sub(bounds(replicas).1 as usize) { "True" } else { "False" }},
        {"type": "Progressing", "status": "True",
         "reason": if paused { "DeploymentPaused" } else if complete { "NewReplicaSetAvailable" } else { "ReplicaSetUpdated" }},
    ]);
    if deploy.get("status") != Some(&status) {
        txn.replace_status(&object.key(), status, None)?;
    }
    let mut after: Vec<PodState> = remaining.into_iter().cloned().collect();
    after.extend((0..step.create).map(|_| PodState {
        name: String::new(),
        hash: hash.clone(),
        ready: false,
    }));
    crate::revisions::record(txn, deploy, &hash, &after, replicas)
}

fn relevant(kind: Kind) -> bool {
    matches!(kind, Kind::Deployment | Kind::Pod)
}

/// Runs the Deployment controller until `shutdown`.
pub async fn run(
    store: std::sync::Arc<lanes_store::Store>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    crate::controller::run(
        "deployments",
        store,
        relevant,
        std::time::Duration::from_secs(2),
        |store: &lanes_store::Store| {
            let (deploys, _) = store.list(Kind::Deployment, None)?;
            for d in &deploys {
                let done = store.write(|t| {
                    // Read again inside the transaction: the Deployment may have changed.
                    let Some(key) = lanes_store::key_of_value(d) else {
                        return Ok(());
                    };
                    match t.get(&key)? {
                        Some(current) => reconcile(t, &current),
                        None => Ok(()),
                    }
                });
                // A Deployment that cannot make progress stalls only itself; a store
                // that fails stops the pass.
                match done {
                    Ok(()) => {}
                    Err(
                        e @ (StoreError::Db(_) | StoreError::InUse(_) | StoreError::Damaged(_)),
                    ) => {
                        return Err(e);
                    }
                    Err(e) => tracing::warn!(
                        deployment = %lanes_model::object::describe_value(d).unwrap_or_default(),
                        error = %e,
                        "cannot reconcile this Deployment; the others go on"
                    ),
                }
            }
            // Pods whose Deployment is gone go too (garbage collection).
            let (pods, _) = store.list(Kind::Pod, None)?;
            let orphans: Vec<ObjectKey> = pods
                .iter()
                .filter(|p| {
                    owner(p).is_some_and(|o| {
                        let ns = p.pointer("/metadata/namespace").and_then(Value::as_str);
                        !deploys.iter().any(|d| {
                            d.pointer("/metadata/name").and_then(Value::as_str) == Some(o.as_str())
                                && d.pointer("/metadata/namespace").and_then(Value::as_str) == ns
                        })
                    })
                })
                .filter_map(lanes_store::key_of_value)
                .collect();
            if !orphans.is_empty() {
                store.write(|t| {
                    for k in &orphans {
                        match t.delete(k, None) {
                            Ok(_) | Err(StoreError::NotFound(_)) => {}
                            Err(e) => return Err(e),
                        }
                    }
                    Ok(())
                })?;
            }
            Ok(())
        },
        shutdown,
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_colliding_pod_name_is_drawn_again() {
        let mut tries = 0;
        let name = fresh_pod_name("web-abc", |_| {
            tries += 1;
            Ok(tries < 3)
        })
        .unwrap_or_default();
        assert_eq!(tries, 3);
        assert!(name.starts_with("web-abc-") && name.len() == "web-abc-".len() + 5);
        assert!(
            fresh_pod_name("web-abc", |_| Ok(true)).is_err(),
            "gives up, never loops"
        );
    }

    fn pods(spec: &[(&str, &str, bool)]) -> Vec<PodState> {
        spec.iter()
            .map(|(n, h, r)| PodState {
                name: n.to_string(),
                hash: h.to_string(),
                ready: *r,
            })
            .collect()
    }

    #[test]
    fn bounds_follow_kubernetes_defaults() {
        assert_eq!(bounds(1), (1, 0));
        assert_eq!(bounds(4), (1, 1));
        assert_eq!(bounds(10), (3, 2));
        assert_eq!(bounds(0), (1, 0));
    }

    #[test]
    fn a_rolling_update_of_one_replica_never_drops_below_one_ready() {
        // Start: one old ready pod.
        let p = plan(1, "new", false, &pods(&[("a", "old", true)]));
        assert_eq!(
            p,
            Plan {
                create: 1,
                delete: vec![]
            }
        );
        // The new pod exists but is not ready: keep the old one.
        let p = plan(
            1,
            "new",
            false,
            &pods(&[("a", "old", true), ("b", "new", false)]),
        );
        assert_eq!(p, Plan::default());
        // New ready: the old one goes.
        let p = plan(
            1,
            "new",
            false,
            &pods(&[("a", "old", true), ("b", "new", true)]),
        );
        assert_eq!(
            p,
            Plan {
                create: 0,
                delete: vec!["a".into()]
            }
        );
    }

    #[test]
    fn scaling_and_pausing() {
        assert_eq!(plan(3, "h", false, &[]).create, 3);
        let p = plan(
            1,
            "h",
            false,
            &pods(&[("a", "h", true), ("b", "h", false), ("c", "h", true)]),
        );
        assert_eq!(p.delete, ["b", "a"]);
        // Paused: a new template rolls nothing.
        let p = plan(1, "new", true, &pods(&[("a", "old", true)]));
        assert_eq!(p, Plan::default());
        // Scale to zero.
        let p = plan(0, "h", false, &pods(&[("a", "h", true)]));
        assert_eq!(p.delete, ["a"]);
    }
}
