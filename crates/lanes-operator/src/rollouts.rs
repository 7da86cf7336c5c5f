//! The rollout controller: for each Rollout, observes the workload (whose release the
//! admission of Deployments marked, as Kruise's webhook does), its canary Deployments and
//! the canary's traffic, runs the state machine of `lanes-rollout`, and carries out its
//! actions with API requests — the same on a cluster and in `lanes up`. The status is written last, with the
//! resourceVersion read at the start, so an approval sent meanwhile (the status patch
//! `kubectl-kruise rollout approve` sends) is never overwritten: the write fails with
//! 409 Conflict and the whole reconcile is retried on fresh reads.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, Service};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};
use lanes_model::lane::ASMSwimLane;
use lanes_model::lane_release::LaneRelease;
use lanes_model::partition::{DEPLOYMENT_STRATEGY, DeploymentStrategy};
use lanes_model::rollout::{Rollout, RolloutPhase, Sample};
use lanes_rollout::{
    Action, CANARY_LABEL, Canary, CanaryPod, IN_PROGRESSING, Observed, STABLE_TEMPLATE, Workload,
    reconcile, targets_deployment,
};
use serde_json::{Value, json};

use crate::analysis::{Measured, NoSamples, Samples, external_values};
use crate::prometheus::Prometheus;
use crate::{Error, FIELD_MANAGER, is_already_exists, is_not_found, kube_err};

/// What the rollout controller works with.
#[derive(Clone)]
pub struct Context {
    /// The API server.
    pub client: Client,
    /// Where the canary's attempts are counted (built-in analysis).
    pub samples: Arc<dyn Samples>,
    /// The client of `prometheus` analysis metrics.
    pub prometheus: Prometheus,
    /// The flavor of the generated objects: their routes (VirtualServices, or
    /// HTTPRoutes) are where the canary's routed share is read.
    pub flavor: lanes_compile::Flavor,
    /// A watch cache of those routes (none: each reconcile lists them).
    pub generated: Option<Store<DynamicObject>>,
}

impl Context {
    /// A context with no data plane to ask (built-in metrics see no attempts) and a
    /// Prometheus client without a token.
    pub fn new(client: Client) -> Context {
        Context {
            client,
            samples: Arc::new(NoSamples),
            prometheus: Prometheus::new(None),
            flavor: lanes_compile::Flavor::default(),
            generated: None,
        }
    }
}

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
    /// Whether a release is under way.
    pub progressing: bool,
    /// When the release waits on time (a pause, an analysis round, the progress
    /// deadline): how soon to look again at the latest.
    pub wake_after: Option<std::time::Duration>,
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

/// The canary's share in each ingress route generated for the release of `rollout` (one
/// per lane group routing it); empty when its steps route no traffic or none does. Read
/// from the watch cache when there is one.
async fn routed_shares(ctx: &Context, rollout: &Rollout) -> Result<Vec<u32>, Error> {
    if !rollout.routes_traffic() {
        return Ok(Vec::new());
    }
    let route = format!(
        "release-{}-{}",
        rollout.metadata.namespace.as_deref().unwrap_or("default"),
        rollout.metadata.name.as_deref().unwrap_or("")
    );
    let listed: Vec<DynamicObject> = match &ctx.generated {
        Some(cache) => cache.state().iter().map(|o| o.as_ref().clone()).collect(),
        None => {
            let ar = crate::lanes::generated_resource(ctx.flavor.generated_kinds()[0]);
            let api: Api<DynamicObject> = Api::all_with(ctx.client.clone(), &ar);
            api.list(&ListParams::default().labels(crate::lanes::GENERATED_SELECTOR))
                .await
                .map_err(kube_err(format!("list generated {}", ar.plural)))?
                .items
        }
    };
    Ok(shares_of(&listed, &route))
}

/// The canary's share in each generated route routing release route `route`: its rule
/// of that name's first destination (a VirtualService's `http` route, an HTTPRoute's
/// `rules` backend).
fn shares_of(routes: &[DynamicObject], route: &str) -> Vec<u32> {
    routes
        .iter()
        .filter(|vs| {
            vs.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.ends_with(&format!("-{route}")))
        })
        .filter_map(|o| {
            let (rules, first) = match o.data.pointer("/spec/http") {
                Some(http) => (http, "/route/0/weight"),
                None => (o.data.pointer("/spec/rules")?, "/backendRefs/0/weight"),
            };
            let split = rules.as_array()?.iter().find(|h| h["name"] == route)?;
            let weight = split.pointer(first)?.as_u64()?;
            u32::try_from(weight).ok()
        })
        .collect()
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
        pod_hash: None,
    }
}

async fn canaries(deployments: &Api<Deployment>, workload: &str) -> Result<Vec<Canary>, Error> {
    let list = deployments
        .list(&ListParams::default().labels(&format!("{CANARY_LABEL}={workload}")))
        .await
        .map_err(kube_err(format!("list canary Deployments of {workload}")))?;
    Ok(list.items.iter().map(canary_of).collect())
}

/// The canary's pods, while there is a canary: why they are not ready (for the progress
/// deadline), the `pod-template-hash` they carry, their release labels.
async fn canary_pods(
    pods: &Api<Pod>,
    workload: &Workload,
    canaries: &[Canary],
) -> Result<Vec<Pod>, Error> {
    if canaries.is_empty() {
        return Ok(Vec::new());
    }
    Ok(workload_pods(pods, workload)
        .await?
        .into_iter()
        .filter(|p| lanes_rollout::owned_by_canary(p, canaries))
        .collect())
}

/// The pods the workload's selector selects.
async fn workload_pods(pods: &Api<Pod>, workload: &Workload) -> Result<Vec<Pod>, Error> {
    let selector = lanes_model::object::match_labels_query(&workload.selector);
    let list = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(kube_err(format!("list pods of {}", workload.name)))?;
    Ok(list.items)
}

/// The workload's own pods at its current template (a partition-style release's canary):
/// those its selector selects whose `pod-template-hash` is the template's, not going.
async fn own_new_pods(pods: &Api<Pod>, workload: &Workload) -> Result<Vec<Pod>, Error> {
    let revision = workload.revision();
    Ok(workload_pods(pods, workload)
        .await?
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("pod-template-hash"))
                == Some(&revision)
        })
        .collect())
}

/// A partition-style release's canary: the workload's pods at the new template.
fn partition_canary(w: &Workload, own: &[Pod]) -> Canary {
    let ready = own.iter().filter(|p| is_pod_ready(p)).count();
    Canary {
        name: w.name.clone(),
        replicas: own.len() as i32,
        ready: ready as i32,
        pod_hash: Some(w.revision()),
    }
}

/// Whether a pod's `Ready` condition is true.
fn is_pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The `pod-template-hash` of canary `c`'s pods.
fn pod_hash_of(c: &Canary, pods: &[Pod]) -> Option<String> {
    pods.iter()
        .filter(|p| lanes_rollout::owned_by_canary(p, std::slice::from_ref(c)))
        .find_map(|p| {
            p.metadata
                .labels
                .as_ref()?
                .get("pod-template-hash")
                .cloned()
        })
}

/// Reconciles one Rollout, redoing the whole reconcile on 409 Conflict (up to
/// [`CONFLICT_ATTEMPTS`] times).
pub async fn reconcile_rollout(
    ctx: &Context,
    namespace: &str,
    name: &str,
    now: jiff::Timestamp,
) -> Result<Outcome, Error> {
    let mut conflicts = 0;
    loop {
        match reconcile_once(ctx, namespace, name, now).await {
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

/// The canary's requests, when the Rollout is analysed: counted on the Service and lane
/// its pods join (none seen when either is missing). When they cannot be read now (the
/// cluster's Prometheus does not answer), no round is judged: said in the log, and
/// tried again at the next reconcile.
async fn sample_of(
    ctx: &Context,
    ns: &str,
    rollout: &Rollout,
    workload: Option<&Workload>,
) -> Result<Option<Sample>, Error> {
    let (Some(workload), true) = (workload, lanes_rollout::analysis_of(rollout).is_some()) else {
        return Ok(None);
    };
    let services = Api::<Service>::namespaced(ctx.client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map_err(kube_err(format!("list Services in {ns}")))?;
    let lanes = Api::<ASMSwimLane>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await
        .map_err(kube_err("list lanes"))?;
    let Some((service, lane)) =
        lanes_rollout::target::canary_target(rollout, workload, &services.items, &lanes.items)
    else {
        return Ok(Some(Sample::default()));
    };
    let canary = lanes_rollout::canary_workload(rollout, workload);
    let measured = Measured {
        service: &service,
        namespace: ns,
        lane: &lane,
        workload: &canary,
    };
    match ctx.samples.sample(measured).await {
        Ok(sample) => Ok(Some(sample)),
        Err(e) => {
            tracing::warn!(rollout = %format!("{ns}/{}", kube::ResourceExt::name_any(rollout)), error = %e,
                "cannot read the canary's requests; no analysis round this time");
            Ok(None)
        }
    }
}

/// The gate of the LaneRelease that holds `rollout`'s release of `w`'s template, if one
/// does.
async fn gate_of(
    client: &Client,
    ns: &str,
    rollout: &Rollout,
    w: &Workload,
) -> Result<Option<lanes_rollout::lane_release::Gate>, Error> {
    // A cluster without the LaneRelease CRD (a 404) has none.
    let all = match Api::<LaneRelease>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
    {
        Ok(list) => list.items,
        Err(e) if is_not_found(&e) => Vec::new(),
        Err(e) => return Err(kube_err(format!("list LaneReleases in {ns}"))(e)),
    };
    let refs: Vec<&LaneRelease> = all.iter().collect();
    Ok(lanes_rollout::lane_release::gate_for(
        &refs,
        &rollout.name_any(),
        rollout.metadata.labels.as_ref(),
        &w.revision(),
    ))
}

/// The name of another Rollout that manages the workload `ns/wname` before `rollout`
/// does, if one does.
async fn other_manager(
    rollouts: &Api<Rollout>,
    rollout: &Rollout,
    ns: &str,
    wname: &str,
) -> Result<Option<String>, Error> {
    if !lanes_rollout::manages(rollout) {
        return Ok(None);
    }
    let all = rollouts
        .list(&ListParams::default())
        .await
        .map_err(kube_err(format!("list Rollouts in {ns}")))?;
    let owner = lanes_rollout::manager_of(&all.items, ns, wname)
        .and_then(|r| r.metadata.name.clone())
        .filter(|owner| Some(owner) != rollout.metadata.name.as_ref());
    Ok(owner)
}

async fn reconcile_once(
    ctx: &Context,
    ns: &str,
    name: &str,
    now: jiff::Timestamp,
) -> Result<Outcome, Error> {
    let client = &ctx.client;
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
    let deployment = match rollout.spec.workload_ref.kind.as_str() {
        "Deployment" => deployments
            .get_opt(&wname)
            .await
            .map_err(kube_err(format!("get Deployment {ns}/{wname}")))?,
        _ => None,
    };
    let workload = deployment.as_ref().and_then(Workload::from_deployment);
    let canaries = canaries(&deployments, &wname).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let canary_pods = match &workload {
        Some(w) => canary_pods(&pods, w, &canaries).await?,
        None => Vec::new(),
    };
    let (partition, canary_pods) = match workload.as_ref() {
        Some(w) if lanes_rollout::is_partition(&rollout) => {
            let own = own_new_pods(&pods, w).await?;
            (Some(partition_canary(w, &own)), own)
        }
        _ => (None, canary_pods),
    };
    let canary_problem = canary_pods.iter().find_map(lanes_rollout::pod_problem);
    let canaries: Vec<Canary> = canaries
        .into_iter()
        .map(|c| Canary {
            pod_hash: pod_hash_of(&c, &canary_pods),
            ..c
        })
        .collect();
    // A Rollout on a workload another one manages measures nothing and acts on nothing.
    let owner = other_manager(&rollouts, &rollout, ns, &wname).await?;
    let (sample, external) = match owner {
        Some(_) => (None, Default::default()),
        None => (
            sample_of(ctx, ns, &rollout, workload.as_ref()).await?,
            external_values(
                &ctx.prometheus,
                lanes_rollout::analysis_of(&rollout),
                rollout.status.as_ref().and_then(|s| s.analysis.as_ref()),
                now,
            )
            .await,
        ),
    };
    let routed = routed_shares(ctx, &rollout).await?;
    let gate = match workload.as_ref() {
        Some(w) => gate_of(client, ns, &rollout, w).await?,
        None => None,
    };
    let observed = Observed {
        routed,
        gate,
        rollout: &rollout,
        generation: rollout.metadata.generation.unwrap_or(1),
        canary_pods: match workload.as_ref().and_then(|w| w.rollout_id.as_ref()) {
            Some(_) => canary_pods.iter().map(CanaryPod::of).collect(),
            None if partition.is_some() => canary_pods.iter().map(CanaryPod::of).collect(),
            None => Vec::new(),
        },
        partition,
        workload,
        canaries,
        now,
        sample,
        canary_problem,
        external,
    };
    let decision = match owner {
        Some(owner) => lanes_rollout::conflicting(&observed, &owner),
        None => reconcile(&observed),
    };
    let mut rv = rollout.metadata.resource_version.clone();
    for action in &decision.actions {
        let done = act(
            &deployments,
            &pods,
            &rollouts,
            &rollout,
            &wname,
            deployment.as_ref(),
            action,
        )
        .await?;
        if let Some(r) = done {
            rv = r.metadata.resource_version;
        }
    }
    let progressing = decision.status.phase == Some(RolloutPhase::Progressing);
    let wake_after = decision.wake_after(jiff::Timestamp::now());
    let status_written =
        lanes_rollout::status::status_changed(rollout.status.as_ref(), &decision.status);
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
        actions: decision.actions,
        status_written,
        conflicts: 0,
        progressing,
        wake_after,
        transition,
    })
}

/// Carries out one action; returns the Rollout when the action rewrote it.
async fn act(
    deployments: &Api<Deployment>,
    pods: &Api<Pod>,
    rollouts: &Api<Rollout>,
    rollout: &Rollout,
    wname: &str,
    workload: Option<&Deployment>,
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
        Action::ClearWorkloadMarks => {
            patch_deployment(
                wname.to_string(),
                json!({"metadata": {"annotations": {
                    STABLE_TEMPLATE: null, IN_PROGRESSING: null, DEPLOYMENT_STRATEGY: null,
                }}}),
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
                .and_then(|w| w.metadata.annotations.as_ref()?.get(STABLE_TEMPLATE))
                .and_then(|s| serde_json::from_str::<PodTemplateSpec>(s).ok());
            if let (Some(stable), Some(w)) = (stable, workload) {
                let mut d = w.clone();
                if let Some(spec) = d.spec.as_mut() {
                    spec.template = stable;
                }
                d.metadata.managed_fields = None;
                deployments
                    .replace(wname, &post(), &d)
                    .await
                    .map_err(kube_err(format!("roll back Deployment {wname}")))?;
            }
        }
        Action::LabelPod { name, labels } => {
            let patch = json!({"metadata": {"labels": labels}});
            match pods.patch(name, &merge(), &Patch::Merge(&patch)).await {
                Ok(_) => {}
                // A pod gone meanwhile (scaled down, replaced) needs no label.
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(kube_err(format!("label pod {name}"))(e)),
            }
        }
        Action::SetPartition(partition) => {
            let value = partition
                .clone()
                .map(|n| DeploymentStrategy::partition(n).to_annotation());
            patch_deployment(
                wname.to_string(),
                json!({"metadata": {"annotations": {DEPLOYMENT_STRATEGY: value}}}),
                "set the partition of",
            )
            .await?
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
        if !is_marked(d) || rollouts.iter().any(|r| runs_releases_of(r, &ns, &name)) {
            continue;
        }
        if let_go(client, &ns, &name).await? {
            released.push(format!("{ns}/{name}"));
        }
    }
    Ok(released)
}

/// Whether a release marked Deployment `d` (it holds the stable template).
fn is_marked(d: &Deployment) -> bool {
    d.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(STABLE_TEMPLATE))
}

/// Whether Rollout `r` targets Deployment `namespace/name` and is not being deleted.
fn runs_releases_of(r: &Rollout, namespace: &str, name: &str) -> bool {
    r.metadata.deletion_timestamp.is_none() && targets_deployment(r, namespace, name)
}

/// Stands down the release of Deployment `namespace/name` when no Rollout runs its
/// releases any more (confirmed on a fresh read): its canaries are deleted, its release
/// marks removed, and it is let go (unpaused, to roll on as an ordinary Deployment).
/// Returns whether it let go of a marked Deployment.
pub async fn let_go(client: &Client, ns: &str, name: &str) -> Result<bool, Error> {
    let fresh = Api::<Rollout>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map_err(kube_err(format!("list Rollouts in {ns}")))?;
    if fresh.items.iter().any(|r| runs_releases_of(r, ns, name)) {
        return Ok(false);
    }
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let marked = match api.get(name).await {
        Ok(d) => is_marked(&d),
        Err(e) if is_not_found(&e) => false,
        Err(e) => return Err(kube_err(format!("get Deployment {ns}/{name}"))(e)),
    };
    if !marked {
        return Ok(false);
    }
    for c in canaries(&api, name).await? {
        match api.delete(&c.name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(kube_err(format!("delete Deployment {ns}/{}", c.name))(e)),
        }
    }
    let patch = json!({
        "metadata": {"annotations": {STABLE_TEMPLATE: null, IN_PROGRESSING: null, DEPLOYMENT_STRATEGY: null}},
        "spec": {"paused": false},
    });
    api.patch(name, &merge(), &Patch::Merge(&patch))
        .await
        .map_err(kube_err(format!("release Deployment {ns}/{name}")))?;
    tracing::info!(deployment = %format!("{ns}/{name}"), "no Rollout manages it: canaries removed, Deployment released");
    Ok(true)
}

/// Whether an event on Deployment `d` concerns the rollout controller: a canary, a
/// Deployment mid-release, or one a Rollout targets (`targeted(namespace, name)`
/// says, looked up only when the Deployment itself shows no sign).
pub fn concerns(d: &Deployment, targeted: impl FnOnce(&str, &str) -> bool) -> bool {
    let labelled = d
        .metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(CANARY_LABEL));
    let marked = d
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(STABLE_TEMPLATE));
    labelled
        || marked
        || targeted(
            d.metadata.namespace.as_deref().unwrap_or("default"),
            d.metadata.name.as_deref().unwrap_or(""),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vs(name: &str, http: Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": "istio-system"},
            "spec": {"http": http},
        }))
        .unwrap()
    }

    #[test]
    fn the_routed_share_is_the_canary_weight_of_the_release_route_in_each_group() {
        let route = "release-default-rollouts-mocka";
        let split = |w: u64| {
            json!([{"name": route, "route": [{"weight": w}, {"weight": 100 - w}]},
                   {"name": "other", "route": [{"weight": 100}]}])
        };
        let listed = [
            vs(
                "swimlane-ingress-vs-a-release-default-rollouts-mocka",
                split(20),
            ),
            vs(
                "swimlane-ingress-vs-b-release-default-rollouts-mocka",
                split(0),
            ),
            vs(
                "swimlane-ingress-vs-a-release-default-rollouts-mockb",
                split(50),
            ),
            vs("swimlane-ingress-vs-a-base", split(70)),
        ];
        assert_eq!(shares_of(&listed, route), vec![20, 0]);
        assert!(shares_of(&listed[3..], route).is_empty());
    }

    #[test]
    fn an_httproutes_release_rule_gives_the_share_too() {
        let route = "release-default-rollouts-mocka";
        let http_route: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "swimlane-ingress-route-a-release-default-rollouts-mocka",
                         "namespace": "default"},
            "spec": {"rules": [
                {"name": "release-default-rollouts-mocka-matches",
                 "backendRefs": [{"name": "mocka-canary", "port": 8000}]},
                {"name": route, "backendRefs": [
                    {"name": "mocka-canary", "port": 8000, "weight": 30},
                    {"name": "mocka-base", "port": 8000, "weight": 70}]}]},
        }))
        .unwrap();
        assert_eq!(shares_of(&[http_route], route), vec![30]);
    }
}
