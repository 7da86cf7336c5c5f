//! The rollout controller of the embedded mode: drives the pure state machine of
//! `lanes-rollout` against the store — one transaction per Rollout, so a release never
//! stands half-done — and stands down releases whose Rollout was deleted.

use std::sync::Arc;
use std::time::Duration;

use lanes_model::rollout::{Rollout, Sample};
use lanes_model::{Kind, Object, ObjectKey, Typed};
use lanes_rollout::{
    Action, CANARY_LABEL, Canary, IN_PROGRESSING, Observed, STABLE_TEMPLATE, Workload, reconcile,
};
use lanes_store::{Store, StoreError, Txn};
use serde_json::Value;

fn invalid(e: Vec<lanes_model::FieldError>) -> StoreError {
    StoreError::Invalid(
        e.iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; "),
    )
}

fn deployment_key(ns: &str, name: &str) -> ObjectKey {
    ObjectKey {
        kind: Kind::Deployment,
        namespace: Some(ns.to_string()),
        name: name.to_string(),
    }
}

/// Rewrites a stored Deployment with `edit` applied (spec and metadata only).
fn edit_deployment(
    txn: &mut Txn<'_, '_>,
    key: &ObjectKey,
    edit: impl FnOnce(&mut Value),
) -> Result<(), StoreError> {
    let Some(mut v) = txn.get(key)? else {
        return Ok(());
    };
    edit(&mut v);
    let object = Object::from_value(v).map_err(invalid)?;
    txn.replace(&object, None)?;
    Ok(())
}

fn canaries_of(
    txn: &Txn<'_, '_>,
    ns: &str,
    workload: &str,
) -> Result<Vec<(Canary, Value)>, StoreError> {
    Ok(txn
        .list(Kind::Deployment, Some(ns))?
        .into_iter()
        .filter(|d| {
            d.pointer(&format!(
                "/metadata/labels/{}",
                CANARY_LABEL.replace('/', "~1")
            ))
            .and_then(Value::as_str)
                == Some(workload)
        })
        .map(|d| {
            let c = Canary {
                name: d
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                replicas: d
                    .pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1) as i32,
                ready: d
                    .pointer("/status/readyReplicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(0) as i32,
            };
            (c, d)
        })
        .collect())
}

/// Carries out the state machine's actions inside `txn`.
pub fn apply_actions(
    txn: &mut Txn<'_, '_>,
    ns: &str,
    workload: &str,
    actions: &[Action],
    owner: Option<&Value>,
) -> Result<(), StoreError> {
    let wkey = deployment_key(ns, workload);
    for action in actions {
        match action {
            Action::SetWorkloadPaused(paused) => edit_deployment(txn, &wkey, |v| {
                if let Some(spec) = v.get_mut("spec").and_then(Value::as_object_mut) {
                    spec.insert("paused".into(), Value::Bool(*paused));
                }
            })?,
            Action::ClearWorkloadMarks => edit_deployment(txn, &wkey, |v| {
                if let Some(a) = v
                    .pointer_mut("/metadata/annotations")
                    .and_then(Value::as_object_mut)
                {
                    a.remove(STABLE_TEMPLATE);
                    a.remove(IN_PROGRESSING);
                }
            })?,
            Action::CreateCanary { name, deployment } => {
                if txn.get(&deployment_key(ns, name))?.is_none() {
                    let mut deployment = deployment.clone();
                    // Owned by its Rollout, as on a cluster: deleting the Rollout
                    // deletes it (garbage collection by ownerReferences).
                    if let (Some(owner), Some(meta)) = (
                        owner,
                        deployment
                            .get_mut("metadata")
                            .and_then(Value::as_object_mut),
                    ) {
                        meta.insert("ownerReferences".into(), serde_json::json!([owner]));
                    }
                    let object = Object::from_value(deployment).map_err(invalid)?;
                    txn.create(&object)?;
                }
            }
            Action::ScaleCanary { name, replicas } => {
                edit_deployment(txn, &deployment_key(ns, name), |v| {
                    if let Some(spec) = v.get_mut("spec").and_then(Value::as_object_mut) {
                        spec.insert("replicas".into(), Value::from(*replicas));
                    }
                })?
            }
            Action::DeleteCanary { name } => match txn.delete(&deployment_key(ns, name), None) {
                Ok(_) | Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            },
            Action::RestoreStableTemplate => edit_deployment(txn, &wkey, |v| {
                let stable = v
                    .pointer("/metadata/annotations")
                    .and_then(|a| a.get(STABLE_TEMPLATE))
                    .and_then(Value::as_str)
                    .and_then(|s| serde_json::from_str::<Value>(s).ok());
                if let (Some(stable), Some(spec)) =
                    (stable, v.get_mut("spec").and_then(Value::as_object_mut))
                {
                    spec.insert("template".into(), stable);
                }
            })?,
            Action::PauseRollout => {}
        }
    }
    Ok(())
}

/// The values of a Rollout's `prometheus` metrics, queried when a measurement is due.
/// (Blocking: call it off the async runtime.)
pub fn external_values(
    rollout: &Value,
    now: jiff::Timestamp,
) -> std::collections::BTreeMap<String, Result<f64, String>> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(object) = Object::from_value(rollout.clone()) else {
        return out;
    };
    let Typed::Rollout(r) = &object.typed else {
        return out;
    };
    let Some(cfg) = lanes_rollout::analysis_of(r) else {
        return out;
    };
    let last = r
        .status
        .as_ref()
        .and_then(|s| s.analysis.as_ref())
        .and_then(|a| a.last_sample.as_ref())
        .and_then(|s| s.time.parse::<jiff::Timestamp>().ok());
    let interval =
        jiff::SignedDuration::from_millis(cfg.interval.millis().unwrap_or(60_000) as i64);
    if last.is_some_and(|t| now < t + interval) {
        return out;
    }
    for m in &cfg.metrics {
        if let Some(p) = &m.prometheus {
            let v = crate::prometheus::query(&p.address, &p.query, Duration::from_secs(2));
            out.insert(m.name.clone(), v);
        }
    }
    out
}

/// Reads the cumulative attempts on a subset of a service: (service, namespace, subset).
pub type SampleSource = dyn Fn(&str, &str, &str) -> Sample + Send + Sync;

/// The Service of a workload and the lane its canary pods join: where the data plane
/// counts the canary's attempts.
fn canary_target(
    txn: &Txn<'_, '_>,
    ns: &str,
    rollout: &Rollout,
    workload: &Value,
) -> Result<Option<(String, String)>, StoreError> {
    let mut pod_labels =
        lanes_model::object::string_map(workload, "/spec/template/metadata/labels");
    if let Some(meta) = rollout
        .spec
        .strategy
        .canary
        .as_ref()
        .and_then(|c| c.patch_pod_template_metadata.as_ref())
    {
        pod_labels.extend(meta.labels.clone());
    }
    let name = |v: &Value| {
        v.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let service = txn.list(Kind::Service, Some(ns))?.into_iter().find(|s| {
        let sel = lanes_model::object::string_map(s, "/spec/selector");
        !sel.is_empty() && lanes_model::mesh::selector_matches(&sel, &pod_labels)
    });
    let lane = txn.list(Kind::Lane, None)?.into_iter().find(|l| {
        let sel = lanes_model::object::string_map(l, "/spec/labelSelector");
        !sel.is_empty() && lanes_model::mesh::selector_matches(&sel, &pod_labels)
    });
    Ok(service.zip(lane).map(|(s, l)| (name(&s), name(&l))))
}

/// Why the canary's pods are not ready, as their statuses say.
fn canary_problem(
    txn: &Txn<'_, '_>,
    ns: &str,
    canaries: &[Canary],
) -> Result<Option<String>, StoreError> {
    for p in txn.list(Kind::Pod, Some(ns))? {
        let owner = crate::deployments::owner(&p);
        if !owner.is_some_and(|o| canaries.iter().any(|c| c.name == o)) {
            continue;
        }
        if let Some(problem) = lanes_rollout::pod_problem(&p) {
            return Ok(Some(problem));
        }
    }
    Ok(None)
}

/// Reconciles one Rollout (by key) in one transaction.
pub fn reconcile_one(
    store: &Store,
    key: &ObjectKey,
    now: jiff::Timestamp,
    source: &SampleSource,
) -> Result<(), StoreError> {
    // Prometheus queries run before the transaction, never while holding the store.
    let external = match store.get(key)? {
        Some(v) => external_values(&v, now),
        None => Default::default(),
    };
    store.write(|txn| {
        let Some(value) = txn.get(key)? else {
            return Ok(());
        };
        let Ok(object) = Object::from_value(value.clone()) else {
            return Ok(());
        };
        let Typed::Rollout(rollout) = &object.typed else {
            return Ok(());
        };
        let rollout: &Rollout = rollout;
        let ns = object.namespace_or_empty().to_string();
        let wname = rollout.spec.workload_ref.name.clone();
        let workload_value = if rollout.spec.workload_ref.kind == "Deployment" {
            txn.get(&deployment_key(&ns, &wname))?
        } else {
            None
        };
        let workload = workload_value.as_ref().and_then(Workload::from_value);
        let canaries: Vec<Canary> = canaries_of(txn, &ns, &wname)?
            .into_iter()
            .map(|(c, _)| c)
            .collect();
        let analysed = lanes_rollout::analysis_of(rollout).is_some();
        let sample = match &workload_value {
            // With analysis there is always a sample: a canary the data plane cannot
            // place (no Service or lane selects it) has seen no traffic.
            Some(w) if analysed => Some(
                canary_target(txn, &ns, rollout, w)?
                    .map(|(svc, lane)| source(&svc, &ns, &lane))
                    .unwrap_or_default(),
            ),
            _ => None,
        };
        let obs = Observed {
            rollout,
            generation: value
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1),
            workload,
            canary_problem: canary_problem(txn, &ns, &canaries)?,
            canaries,
            now,
            sample,
            external: external.clone(),
        };
        let decision = reconcile(&obs);
        let owner = value.pointer("/metadata/uid").map(|uid| {
            serde_json::json!({
                "apiVersion": "rollouts.kruise.io/v1beta1", "kind": "Rollout",
                "name": object.name, "uid": uid, "controller": true, "blockOwnerDeletion": true,
            })
        });
        apply_actions(txn, &ns, &wname, &decision.actions, owner.as_ref())?;
        if decision.actions.contains(&Action::PauseRollout) {
            let mut paused = value.clone();
            if let Some(strategy) = paused
                .pointer_mut("/spec/strategy")
                .and_then(Value::as_object_mut)
            {
                strategy.insert("paused".into(), Value::Bool(true));
            }
            txn.replace(&Object::from_value(paused).map_err(invalid)?, None)?;
        }
        let status = serde_json::to_value(&decision.status)?;
        if value.get("status") != Some(&status) {
            txn.replace_status(key, status, None)?;
            record_transition(txn, &object, rollout, &decision.status, now)?;
        }
        Ok(())
    })
}

/// Records the Rollout's move to another phase or step state as an Event, as the
/// operator does on a cluster.
fn record_transition(
    txn: &mut lanes_store::Txn<'_, '_>,
    object: &Object,
    rollout: &Rollout,
    new: &lanes_model::rollout::RolloutStatus,
    now: jiff::Timestamp,
) -> Result<(), StoreError> {
    let uid = object
        .raw
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let Some(t) = lanes_rollout::events::transition(uid, rollout.status.as_ref(), new) else {
        return Ok(());
    };
    let event = lanes_rollout::events::core_event(
        object.namespace_or_empty(),
        &object.name,
        &t,
        "lanes-up",
        now,
    );
    let event = Object::from_value(event).map_err(invalid)?;
    match txn.create(&event) {
        Ok(_) | Err(StoreError::AlreadyExists(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Stands down releases whose Rollout is gone: canaries deleted, workloads resumed.
pub fn sweep_orphans(store: &Store) -> Result<(), StoreError> {
    store.write(|txn| {
        let rollouts = txn.list(Kind::Rollout, None)?;
        let rollouts: Vec<Rollout> = rollouts
            .into_iter()
            .filter_map(|r| serde_json::from_value(r).ok())
            .collect();
        let managed = |ns: &str, name: &str| {
            rollouts
                .iter()
                .any(|r| lanes_rollout::targets_deployment(r, ns, name))
        };
        for d in txn.list(Kind::Deployment, None)? {
            let ns = d.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("").to_string();
            let name = d.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
            let marked = d.pointer("/metadata/annotations").and_then(|a| a.get(STABLE_TEMPLATE)).is_some();
            if !marked || managed(&ns, &name) {
                continue;
            }
            let mut actions: Vec<Action> = canaries_of(txn, &ns, &name)?
                .into_iter()
                .map(|(c, _)| Action::DeleteCanary { name: c.name })
                .collect();
            actions.push(Action::ClearWorkloadMarks);
            actions.push(Action::SetWorkloadPaused(false));
            tracing::info!(deployment = %name, "rollout deleted mid-release: canary removed, Deployment resumed");
            apply_actions(txn, &ns, &name, &actions, None)?;
        }
        Ok(())
    })
}

fn relevant(kind: Kind) -> bool {
    matches!(kind, Kind::Rollout | Kind::Deployment)
}

/// Runs the rollout controller until `shutdown`; `source` reads the data plane's counts
/// of canary attempts for analysis.
pub async fn run(
    store: Arc<Store>,
    source: Arc<SampleSource>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    crate::controller::run(
        "rollouts",
        store,
        relevant,
        Duration::from_secs(1),
        move |store: &Store| {
            let (rollouts, _) = store.list(Kind::Rollout, None)?;
            let now = jiff::Timestamp::now();
            for r in &rollouts {
                if let Some(key) = lanes_store::key_of_value(r) {
                    reconcile_one(store, &key, now, &*source)?;
                }
            }
            sweep_orphans(store)
        },
        shutdown,
    )
    .await;
}
