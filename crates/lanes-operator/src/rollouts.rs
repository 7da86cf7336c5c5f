//! The rollout controller on a cluster: for each Rollout, holds its Deployment as the
//! Kruise webhook would (see [`lanes_rollout::admission::hold`]), observes the workload
//! and its canary Deployments, runs the state machine shared with the embedded mode, and
//! carries out its actions with API requests. The status is written last, with the
//! resourceVersion read at the start, so an approval sent meanwhile (the status patch
//! `kubectl-kruise rollout approve` sends) is never overwritten: the write fails with
//! 409 Conflict and the whole reconcile is retried on fresh reads.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use lanes_model::rollout::{Rollout, Sample};
use lanes_rollout::admission::{REST_TEMPLATE, hold};
use lanes_rollout::{
    Action, CANARY_LABEL, Canary, IN_PROGRESSING, Observed, STABLE_TEMPLATE, Workload, manages,
    reconcile, targets_deployment,
};
use serde_json::{Value, json};

use crate::{Error, FIELD_MANAGER, is_already_exists, is_not_found, kube_err, to_value};

/// How many times a reconcile that met a 409 Conflict is redone at once.
pub const CONFLICT_ATTEMPTS: usize = 5;

/// What one reconcile of a Rollout found and did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// The state machine's actions carried out, in order.
    pub actions: Vec<Action>,
    /// Whether the status was written.
    pub status_written: bool,
    /// Attempts lost to 409 Conflict before this one succeeded.
    pub conflicts: usize,
    /// Whether a release is under way (the controller should look again soon).
    pub progressing: bool,
    /// The change of state this reconcile made, if any (recorded as an Event).
    pub transition: Option<Transition>,
}

pub use lanes_rollout::events::{Transition, transition};

fn merge() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

fn post() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

fn canary_of(d: &Deployment) -> Canary {
    Canary {
        name: d.metadata.name.clone().unwrap_or_default(),
        replicas: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        ready: d
            .status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0),
    }
}

async fn canaries(deployments: &Api<Deployment>, workload: &str) -> Result<Vec<Canary>, Error> {
    let list = deployments
        .list(&ListParams::default().labels(&format!("{CANARY_LABEL}={workload}")))
        .await
        .map_err(kube_err(format!("list canary Deployments of {workload}")))?;
    Ok(list.items.iter().map(canary_of).collect())
}

/// Why the canary's pods are not ready, as their statuses say.
async fn canary_problem(
    pods: &Api<Pod>,
    workload: &Workload,
    canaries: &[Canary],
) -> Result<Option<String>, Error> {
    if canaries.iter().all(|c| c.ready >= c.replicas) {
        return Ok(None);
    }
    let selector = workload
        .selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| format!("{k}={v}")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let list = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(kube_err(format!("list pods of {}", workload.name)))?;
    for p in list.items {
        // A canary pod's owner is a ReplicaSet named after the canary Deployment.
        let owned = p.metadata.owner_references.iter().flatten().any(|o| {
            canaries.iter().any(|c| {
                o.name
                    .strip_prefix(&c.name)
                    .is_some_and(|r| r.starts_with('-'))
            })
        });
        if owned && let Some(problem) = lanes_rollout::pod_problem(&to_value("Pod", &p)?) {
            return Ok(Some(problem));
        }
    }
    Ok(None)
}

/// Reconciles one Rollout, redoing the whole reconcile on 409 Conflict (up to
/// [`CONFLICT_ATTEMPTS`] times).
pub async fn reconcile_rollout(
    client: &Client,
    namespace: &str,
    name: &str,
    now: jiff::Timestamp,
) -> Result<Outcome, Error> {
    let mut conflicts = 0;
    loop {
        match reconcile_once(client, namespace, name, now).await {
            Err(e) if e.is_conflict() && conflicts + 1 < CONFLICT_ATTEMPTS => {
                conflicts += 1;
                tracing::debug!(rollout = %name, error = %e, "conflict; reconciling again");
            }
            Ok(mut o) => {
                o.conflicts = conflicts;
                return Ok(o);
            }
            Err(e) => return Err(e),
        }
    }
}

async fn reconcile_once(
    client: &Client,
    ns: &str,
    name: &str,
    now: jiff::Timestamp,
) -> Result<Outcome, Error> {
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let Some(mut rollout) = rollouts
        .get_opt(name)
        .await
        .map_err(kube_err(format!("get Rollout {ns}/{name}")))?
    else {
        return Ok(Outcome::default());
    };
    let wname = rollout.spec.workload_ref.name.clone();
    let mut workload_value = None;
    if rollout.spec.workload_ref.kind == "Deployment"
        && let Some(d) = deployments
            .get_opt(&wname)
            .await
            .map_err(kube_err(format!("get Deployment {ns}/{wname}")))?
    {
        let mut v = to_value("Deployment", &d)?;
        if let Some(patch) = hold(&v, manages(&rollout).then_some(name)) {
            let d = deployments
                .patch(&wname, &merge(), &Patch::Merge(&patch))
                .await
                .map_err(kube_err(format!("hold Deployment {ns}/{wname}")))?;
            v = to_value("Deployment", &d)?;
        }
        workload_value = Some(v);
    }
    let workload = workload_value.as_ref().and_then(Workload::from_value);
    let canaries = canaries(&deployments, &wname).await?;
    let canary_problem = match &workload {
        Some(w) => canary_problem(&Api::namespaced(client.clone(), ns), w, &canaries).await?,
        None => None,
    };
    let analysed = lanes_rollout::analysis_of(&rollout).is_some();
    let external = if analysed {
        let value = to_value("Rollout", &rollout)?;
        // Prometheus is queried off the async runtime (the client blocks).
        tokio::task::spawn_blocking(move || lanes_runtime::rollouts::external_values(&value, now))
            .await
            .unwrap_or_default()
    } else {
        BTreeMap::new()
    };
    let decision = reconcile(&Observed {
        rollout: &rollout,
        generation: rollout.metadata.generation.unwrap_or(1),
        workload,
        canaries,
        now,
        // On a cluster the mesh's own proxies carry the traffic: Lanes' built-in
        // metrics see no attempts; `prometheus` metrics are measured.
        sample: analysed.then(Sample::default),
        canary_problem,
        external,
    });
    let mut rv = rollout.metadata.resource_version.clone();
    let held = manages(&rollout) && decision.actions.contains(&Action::ClearWorkloadMarks);
    let mut carried = Vec::new();
    for action in &decision.actions {
        if held && *action == Action::SetWorkloadPaused(false) {
            // Held again at once instead (see ClearWorkloadMarks).
            continue;
        }
        carried.push(action.clone());
        let done = act(
            &deployments,
            &rollouts,
            &rollout,
            &wname,
            workload_value.as_ref(),
            action,
        )
        .await?;
        if let Some(r) = done {
            rv = r.metadata.resource_version;
        }
    }
    let progressing = decision.status.phase.as_deref() == Some("Progressing");
    let status_written = rollout.status.as_ref() != Some(&decision.status);
    let transition = transition(
        rollout.metadata.uid.clone().unwrap_or_default(),
        rollout.status.as_ref(),
        &decision.status,
    );
    if status_written {
        rollout.status = Some(decision.status);
        rollout.metadata.resource_version = rv;
        rollout.metadata.managed_fields = None;
        rollouts
            .replace_status(name, &post(), &rollout)
            .await
            .map_err(kube_err(format!("update Rollout {ns}/{name} status")))?;
    }
    Ok(Outcome {
        actions: carried,
        status_written,
        conflicts: 0,
        progressing,
        transition,
    })
}

/// Carries out one action; returns the Rollout when the action rewrote it.
async fn act(
    deployments: &Api<Deployment>,
    rollouts: &Api<Rollout>,
    rollout: &Rollout,
    wname: &str,
    workload: Option<&Value>,
    action: &Action,
) -> Result<Option<Rollout>, Error> {
    let patch_deployment = |name: String, patch: Value, what: &'static str| async move {
        deployments
            .patch(&name, &merge(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
            .map_err(kube_err(format!("{what} Deployment {name}")))
    };
    match action {
        Action::SetWorkloadPaused(paused) => {
            patch_deployment(
                wname.to_string(),
                json!({"spec": {"paused": paused}}),
                "pause",
            )
            .await?
        }
        Action::ClearWorkloadMarks if manages(rollout) => {
            // The release ended (finalised: the Deployment runs the new template; or
            // cancelled: the template is the stable one its paused pods never left).
            // The Deployment is held at once at the template it runs, so no edit can
            // slip through as a plain rolling update before the next reconcile.
            let template = workload
                .and_then(|w| w.pointer("/spec/template"))
                .cloned()
                .unwrap_or(Value::Null);
            patch_deployment(
                wname.to_string(),
                json!({
                    "metadata": {"annotations": {STABLE_TEMPLATE: null, IN_PROGRESSING: null,
                                                 REST_TEMPLATE: template.to_string()}},
                    "spec": {"paused": true},
                }),
                "unmark",
            )
            .await?
        }
        Action::ClearWorkloadMarks => {
            patch_deployment(
                wname.to_string(),
                json!({"metadata": {"annotations": {STABLE_TEMPLATE: null, IN_PROGRESSING: null}}}),
                "unmark",
            )
            .await?
        }
        Action::CreateCanary { name, deployment } => {
            let mut d = deployment.clone();
            // The canary belongs to the Rollout: the garbage collector removes it with it.
            let owner = rollout.controller_owner_ref(&());
            if let (Some(meta), Some(owner)) =
                (d.get_mut("metadata").and_then(Value::as_object_mut), owner)
            {
                meta.insert("ownerReferences".into(), json!([owner]));
            }
            let d: Deployment = serde_json::from_value(d).map_err(|source| Error::Json {
                what: format!("canary Deployment {name}"),
                source,
            })?;
            match deployments.create(&post(), &d).await {
                Ok(_) => {}
                Err(e) if is_already_exists(&e) => {}
                Err(e) => return Err(kube_err(format!("create Deployment {name}"))(e)),
            }
        }
        Action::ScaleCanary { name, replicas } => {
            patch_deployment(
                name.clone(),
                json!({"spec": {"replicas": replicas}}),
                "scale",
            )
            .await?
        }
        Action::DeleteCanary { name } => {
            match deployments.delete(name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(kube_err(format!("delete Deployment {name}"))(e)),
            }
        }
        Action::RestoreStableTemplate => {
            // A replace, not a merge: the stable template must come back whole (a merge
            // patch would keep labels the new template added). The resourceVersion of
            // the read makes a concurrent edit a 409, and the reconcile is redone.
            let stable = workload
                .and_then(|w| w.pointer("/metadata/annotations"))
                .and_then(|a| a.get(STABLE_TEMPLATE))
                .and_then(Value::as_str)
                .and_then(|s| serde_json::from_str::<Value>(s).ok());
            if let (Some(stable), Some(w)) = (stable, workload) {
                let mut w = w.clone();
                w["spec"]["template"] = stable;
                if let Some(meta) = w.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.remove("managedFields");
                }
                let d: Deployment = serde_json::from_value(w).map_err(|source| Error::Json {
                    what: format!("Deployment {wname}"),
                    source,
                })?;
                deployments
                    .replace(wname, &post(), &d)
                    .await
                    .map_err(kube_err(format!("roll back Deployment {wname}")))?;
            }
        }
        Action::PauseRollout => {
            let name = rollout.metadata.name.clone().unwrap_or_default();
            let r = rollouts
                .patch(
                    &name,
                    &merge(),
                    &Patch::Merge(json!({"spec": {"strategy": {"paused": true}}})),
                )
                .await
                .map_err(kube_err(format!("pause Rollout {name}")))?;
            return Ok(Some(r));
        }
    }
    Ok(None)
}

/// Stands down releases whose Rollout is gone (or no longer targets the Deployment):
/// canaries deleted, release marks removed, the Deployment let go. Returns the
/// Deployments released, as `namespace/name`.
pub async fn sweep_orphans(client: &Client) -> Result<Vec<String>, Error> {
    let deployments = Api::<Deployment>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(kube_err("list Deployments"))?;
    let rollouts = Api::<Rollout>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(kube_err("list Rollouts"))?;
    sweep(
        client,
        &deployments.items.iter().collect::<Vec<_>>(),
        &rollouts.items.iter().collect::<Vec<_>>(),
    )
    .await
}

/// [`sweep_orphans`] over Deployments and Rollouts already read (the run loop passes
/// its watch caches).
pub async fn sweep(
    client: &Client,
    deployments: &[&Deployment],
    rollouts: &[&Rollout],
) -> Result<Vec<String>, Error> {
    let mut released = Vec::new();
    for d in deployments {
        let ns = d.metadata.namespace.clone().unwrap_or_default();
        let name = d.metadata.name.clone().unwrap_or_default();
        let ann = d.metadata.annotations.clone().unwrap_or_default();
        if ![STABLE_TEMPLATE, REST_TEMPLATE]
            .iter()
            .any(|k| ann.contains_key(*k))
        {
            continue;
        }
        let managed = rollouts.iter().any(|r| targets_deployment(r, &ns, &name));
        if managed {
            continue;
        }
        // What was read may lag (a Rollout just created): confirm before letting go.
        let fresh = Api::<Rollout>::namespaced(client.clone(), &ns)
            .list(&ListParams::default())
            .await
            .map_err(kube_err(format!("list Rollouts in {ns}")))?;
        if fresh
            .items
            .iter()
            .any(|r| targets_deployment(r, &ns, &name))
        {
            continue;
        }
        let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        for c in canaries(&api, &name).await? {
            match api.delete(&c.name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(kube_err(format!("delete Deployment {ns}/{}", c.name))(e)),
            }
        }
        let patch = json!({
            "metadata": {"annotations": {STABLE_TEMPLATE: null, IN_PROGRESSING: null, REST_TEMPLATE: null}},
            "spec": {"paused": false},
        });
        api.patch(&name, &merge(), &Patch::Merge(&patch))
            .await
            .map_err(kube_err(format!("release Deployment {ns}/{name}")))?;
        tracing::info!(deployment = %format!("{ns}/{name}"), "no Rollout manages it: canaries removed, Deployment released");
        released.push(format!("{ns}/{name}"));
    }
    Ok(released)
}

/// Whether an event on Deployment `d` concerns the rollout controller: a canary, a
/// Deployment held or mid-release, or one a Rollout targets (`targeted(namespace, name)`
/// says, looked up only when the Deployment itself shows no sign).
pub fn concerns(d: &Deployment, targeted: impl FnOnce(&str, &str) -> bool) -> bool {
    let labelled = d
        .metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(CANARY_LABEL));
    let marked = d.metadata.annotations.as_ref().is_some_and(|a| {
        [STABLE_TEMPLATE, REST_TEMPLATE]
            .iter()
            .any(|k| a.contains_key(*k))
    });
    labelled
        || marked
        || targeted(
            d.metadata.namespace.as_deref().unwrap_or("default"),
            d.metadata.name.as_deref().unwrap_or(""),
        )
}
