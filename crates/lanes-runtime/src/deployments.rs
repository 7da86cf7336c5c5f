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
    /// Pods of the old revision to create (a partition-style release only).
    pub create_old: usize,
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

/// Plans one step of a partition-style release (a paused Deployment whose annotation
/// holds a partition): `partition` pods at the current template and the others at the
/// old revision, moved within the rolling bounds as an unpaused rollout would be.
/// `old` is the old revision kept, when its template is recorded (otherwise old pods
/// are only ever fewer); pods of any third revision (a release replaced mid-way) go
/// first.
pub fn plan_partition(
    replicas: i32,
    hash: &str,
    partition: i32,
    pods: &[PodState],
    old: Option<&str>,
) -> Plan {
    let mut plan = Plan::default();
    let desired = replicas.max(0) as usize;
    let want_new = partition.clamp(0, replicas.max(0)) as usize;
    let want_old = desired - want_new;
    let (mut new, rest): (Vec<&PodState>, Vec<&PodState>) =
        pods.iter().partition(|p| p.hash == hash);
    // The old revision's pods, and those of any other (without a known old revision,
    // every old pod counts as one of it).
    let (mut kept, mut others): (Vec<&PodState>, Vec<&PodState>) = rest
        .into_iter()
        .partition(|p| old.is_none_or(|k| k == p.hash));
    let (surge, unavailable) = bounds(replicas.max(0));
    let room = (desired + surge as usize).saturating_sub(pods.len());
    plan.create = want_new.saturating_sub(new.len()).min(room);
    if old.is_some() {
        plan.create_old = want_old.saturating_sub(kept.len()).min(room - plan.create);
    }
    let ready_total = pods.iter().filter(|p| p.ready).count();
    let mut can_remove_ready =
        ready_total.saturating_sub(desired.saturating_sub(unavailable as usize));
    let new_ready = new.iter().filter(|p| p.ready).count();
    // Every pod of another revision, then old pods beyond the partition's share: the
    // not-ready at once, ready ones while enough stay available and the new pods have
    // started to come up.
    let by_readiness = |p: &&PodState| (p.ready, p.name.clone());
    others.sort_by_key(by_readiness);
    kept.sort_by_key(by_readiness);
    let beyond = kept.len().saturating_sub(want_old);
    for p in others.iter().chain(kept.iter().take(beyond)) {
        if !p.ready {
            plan.delete.push(p.name.clone());
        } else if can_remove_ready > 0 && (new_ready > 0 || new.len() >= want_new) {
            plan.delete.push(p.name.clone());
            can_remove_ready -= 1;
        }
    }
    // New pods beyond it (fewer replicas): the not-ready first.
    new.sort_by_key(by_readiness);
    let excess = new.len().saturating_sub(want_new);
    plan.delete
        .extend(new[..excess].iter().map(|p| p.name.clone()));
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
    let annotations: Option<std::collections::BTreeMap<String, String>> = deploy
        .pointer("/metadata/annotations")
        .and_then(|a| serde_json::from_value(a.clone()).ok());
    let partition = paused
        .then(|| {
            lanes_model::partition::active_partition(annotations.as_ref(), &template, replicas)
        })
        .flatten();
    let mut old_hash = String::new();
    let step = match &partition {
        Some((n, stable)) => {
            let kept = template_hash(stable);
            let step = plan_partition(replicas, &hash, *n, &states, Some(&kept));
            for _ in 0..step.create_old {
                make_pod(txn, &object, deploy, stable, &kept)?;
            }
            old_hash = kept;
            step
        }
        None => plan(replicas, &hash, paused, &states),
    };
    for name in &step.delete {
        let key = ObjectKey {
            kind: Kind::Pod,
            namespace: Some(ns.clone()),
            name: name.clone(),
        };
        txn.delete(&key, None)?;
    }
    for _ in 0..step.create {
        if !make_pod(txn, &object, deploy, &template, &hash)? {
            break;
        }
    }
    // Status, from the pods after this step.
    let remaining: Vec<&PodState> = states
        .iter()
        .filter(|p| !step.delete.contains(&p.name))
        .collect();
    let updated = remaining.iter().filter(|p| p.hash == hash).count() + step.create;
    let ready = remaining.iter().filter(|p| p.ready).count();
    let total = remaining.len() + step.create + step.create_old;
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
    after.extend((0..step.create_old).map(|_| PodState {
        name: String::new(),
        hash: old_hash.clone(),
        ready: false,
    }));
    let wanted = partition.as_ref().map_or(replicas, |(n, _)| *n);
    crate::revisions::record(txn, deploy, &hash, &after, wanted)
}

/// Creates one pod of `template` (hash `hash`) for the Deployment `object`; false when
/// the template makes no valid pod (said in the log).
fn make_pod(
    txn: &mut Txn<'_, '_>,
    object: &Object,
    deploy: &Value,
    template: &Value,
    hash: &str,
) -> Result<bool, StoreError> {
    let ns = object.namespace_or_empty().to_string();
    let uid = deploy
        .pointer("/metadata/uid")
        .cloned()
        .unwrap_or(Value::Null);
    let meta = template
        .get("metadata")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let mut labels = meta.get("labels").cloned().unwrap_or_else(|| json!({}));
    if let Some(map) = labels.as_object_mut() {
        map.insert(HASH_LABEL.into(), Value::String(hash.to_string()));
    }
    let name = fresh_pod_name(&format!("{}-{hash}", object.name), |n| {
        Ok(txn
            .get(&ObjectKey {
                kind: Kind::Pod,
                namespace: Some(ns.clone()),
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
            Ok(true)
        }
        Err(errs) => {
            tracing::warn!(deployment = %object.name, ?errs, "cannot make a pod from the template");
            Ok(false)
        }
    }
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
                ..Plan::default()
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
                delete: vec!["a".into()],
                ..Plan::default()
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

    /// Runs the partition plan to a fixed point, pods becoming ready at once.
    fn settle(replicas: i32, partition: i32, mut now: Vec<PodState>) -> Vec<PodState> {
        for round in 0..20 {
            let p = plan_partition(replicas, "new", partition, &now, Some("old"));
            if p == Plan::default() {
                return now;
            }
            now.retain(|s| !p.delete.contains(&s.name));
            for i in 0..p.create {
                now.push(PodState {
                    name: format!("n{round}-{i}"),
                    hash: "new".into(),
                    ready: true,
                });
            }
            for i in 0..p.create_old {
                now.push(PodState {
                    name: format!("o{round}-{i}"),
                    hash: "old".into(),
                    ready: true,
                });
            }
        }
        panic!("no fixed point: {now:?}");
    }

    fn count(pods: &[PodState], hash: &str) -> usize {
        pods.iter().filter(|p| p.hash == hash).count()
    }

    #[test]
    fn a_partition_keeps_that_many_new_pods_and_the_rest_old() {
        let five: Vec<PodState> = (0..5)
            .map(|i| PodState {
                name: format!("o{i}"),
                hash: "old".into(),
                ready: true,
            })
            .collect();
        // The first round adds a new pod and removes no old one before it is up.
        let first = plan_partition(5, "new", 1, &five, Some("old"));
        assert_eq!((first.create, first.create_old), (1, 0));
        assert!(first.delete.is_empty());
        let one = settle(5, 1, five);
        assert_eq!((count(&one, "new"), count(&one, "old")), (1, 4));
        let three = settle(5, 3, one);
        assert_eq!((count(&three, "new"), count(&three, "old")), (3, 2));
        // More replicas mid-release: old pods come back at the old revision.
        let seven = settle(7, 3, three.clone());
        assert_eq!((count(&seven, "new"), count(&seven, "old")), (3, 4));
        // Without the old revision's template, no old pod is made.
        let p = plan_partition(7, "new", 3, &three, None);
        assert_eq!(p.create_old, 0);
        // A lower partition (a rollback to fewer) removes new pods, the not-ready first.
        let mut mixed = three;
        mixed[4].ready = false;
        let p = plan_partition(5, "new", 2, &mixed, Some("old"));
        assert!(p.delete.contains(&mixed[4].name), "{p:?} {mixed:?}");
        // A release replaced mid-way: the pods of the replaced revision go before the
        // old revision's.
        let mut replaced = settle(
            4,
            1,
            (0..4)
                .map(|i| PodState {
                    name: format!("o{i}"),
                    hash: "old".into(),
                    ready: true,
                })
                .collect(),
        );
        for p in replaced.iter_mut().filter(|p| p.hash == "new") {
            p.hash = "mid".into();
            p.name = "z-mid".into();
        }
        let after = settle(4, 1, replaced);
        assert_eq!(
            (
                count(&after, "new"),
                count(&after, "old"),
                count(&after, "mid")
            ),
            (1, 3, 0)
        );
    }
}
