//! The lane release controller: a `Controller` over LaneReleases, woken by the Rollouts
//! they claim. Each reconcile reads the members (their Rollouts and workloads) and the
//! other LaneReleases of the namespace, and writes the release's status; the members'
//! Rollouts read their orders from it ([`lanes_rollout::lane_release::gate_for`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ObjectReference, Service};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{self, Action};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, watcher};
use kube::{Client, ResourceExt};
use lanes_model::lane::{ASMSwimLane, ASMSwimLaneGroup, GROUP_LABEL};
use lanes_model::lane_release::{LaneRelease, LaneReleasePhase, LaneReleaseStatus};
use lanes_model::mesh::parse_mesh_host;
use lanes_model::rollout::{Rollout, Sample};
use lanes_rollout::Workload;
use lanes_rollout::lane_release::{
    MemberView, ReleaseObserved, lane_problem, owner_of, reconcile, routed_canaries,
};
use tokio::sync::watch;

use crate::analysis::{LaneEntry, Samples, external_values};
use crate::backoff::Failures;
use crate::lanes::{GENERATED_SELECTOR, generated_for, generated_resource, group_of};
use crate::metrics::Metrics;
use crate::prometheus::Prometheus;
use crate::run::Config;
use crate::{Error, is_not_found, kube_err};

/// What every reconcile shares.
struct Shared {
    client: Client,
    /// The flavor of the lane controller's objects, where a lane's routes are read.
    flavor: lanes_compile::Flavor,
    /// Where the lane's requests are counted (end-to-end analysis).
    samples: Arc<dyn Samples>,
    /// The client of `prometheus` analysis metrics.
    prometheus: Prometheus,
    identity: String,
    metrics: Arc<Metrics>,
    resync: Duration,
    failures: Failures<LaneRelease>,
}

/// The longest a release under way goes unlooked at.
const ACTIVE: Duration = Duration::from_secs(2);

/// Runs the lane release controller until `stop`.
pub async fn run(
    ctx: crate::rollouts::Context,
    config: Config,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
) {
    let controller = Controller::new(
        Api::<LaneRelease>::all(ctx.client.clone()),
        watcher::Config::default(),
    )
    .with_config(controller::Config::default().debounce(Duration::from_millis(100)));
    let releases = controller.store();
    let client = ctx.client;
    let shared = Arc::new(Shared {
        client: client.clone(),
        flavor: config.flavor,
        samples: ctx.samples,
        prometheus: ctx.prometheus,
        identity: config.identity.clone(),
        metrics,
        resync: config.resync,
        failures: Failures::new(),
    });
    let finishing = releases.clone();
    let rules = generated_resource(config.flavor.generated_kinds()[1]);
    controller
        .watches(
            Api::<Rollout>::all(client.clone()),
            watcher::Config::default(),
            move |r| claiming(&releases, &r),
        )
        // A finishing release waits for its lane's routes to leave its canaries.
        .watches_with(
            Api::<DynamicObject>::all_with(client, &rules),
            rules,
            watcher::Config::default().labels(GENERATED_SELECTOR),
            move |dr| withdrawing_in(&finishing, group_of(&dr)),
        )
        .graceful_shutdown_on(crate::rollout_controller::stop_signal(stop))
        .run(reconcile_release, error_policy, shared)
        .for_each(|_| async {})
        .await;
}

/// Every lane group's name, with the names of its lanes (those labelled with it).
async fn lane_groups(client: &Client) -> Result<BTreeMap<String, Vec<String>>, Error> {
    let lp = ListParams::default();
    let groups = Api::<ASMSwimLaneGroup>::all(client.clone())
        .list(&lp)
        .await
        .map_err(kube_err("list lane groups"))?;
    let lanes = Api::<ASMSwimLane>::all(client.clone())
        .list(&lp)
        .await
        .map_err(kube_err("list lanes"))?;
    let mut out: BTreeMap<String, Vec<String>> = groups
        .items
        .iter()
        .map(|g| (g.name_any(), Vec::new()))
        .collect();
    for lane in &lanes.items {
        let group = lane.labels().get(GROUP_LABEL);
        if let Some(names) = group.and_then(|g| out.get_mut(g)) {
            names.push(lane.name_any());
        }
    }
    Ok(out)
}

/// The requests that entered the release's lane so far, when it has analysis and they
/// can be read.
async fn lane_sample(s: &Shared, lr: &LaneRelease, ns: &str) -> Option<Sample> {
    lr.spec.analysis.as_ref()?;
    let entry = LaneEntry {
        namespace: ns,
        lane: &lr.spec.lane,
    };
    match s.samples.lane_sample(entry).await {
        Ok(sample) => Some(sample),
        Err(e) => {
            tracing::warn!(release = %format!("{ns}/{}", lr.name_any()), error = %e,
                "cannot read the lane's requests; no analysis round this time");
            None
        }
    }
}

/// The LaneReleases a change of a generated object of lane group `group` concerns: those
/// of the group that wait for its routes to leave their canaries.
fn withdrawing_in(
    releases: &Store<LaneRelease>,
    group: Option<&str>,
) -> Vec<ObjectRef<LaneRelease>> {
    let Some(group) = group else {
        return Vec::new();
    };
    releases
        .state()
        .iter()
        .filter(|lr| lr.spec.lane_group == group && waits_for_withdrawal(lr))
        .map(|lr| ObjectRef::from_obj(lr.as_ref()))
        .collect()
}

/// Whether `lr` is finishing with its canaries still in its lane's routes.
fn waits_for_withdrawal(lr: &LaneRelease) -> bool {
    lr.phase() == LaneReleasePhase::Finishing
        && !lr.status.as_ref().is_some_and(|s| s.canaries_withdrawn)
}

/// The LaneReleases an event on Rollout `r` concerns: those that claim it.
fn claiming(releases: &Store<LaneRelease>, r: &Rollout) -> Vec<ObjectRef<LaneRelease>> {
    let ns = r.namespace();
    let name = r.name_any();
    releases
        .state()
        .iter()
        .filter(|lr| lr.namespace() == ns && lr.claims(&name, r.metadata.labels.as_ref()))
        .map(|lr| ObjectRef::from_obj(lr.as_ref()))
        .collect()
}

async fn reconcile_release(lr: Arc<LaneRelease>, s: Arc<Shared>) -> Result<Action, Error> {
    let started = tokio::time::Instant::now();
    let result = reconcile_once(&s, &lr, jiff::Timestamp::now()).await;
    s.metrics.timed("lanereleases", started.elapsed());
    let wait = result?;
    s.metrics.reconciled("lanereleases", true);
    s.failures.succeeded(&lr);
    Ok(Action::requeue(wait))
}

/// One reconcile of LaneRelease `ns/name` at `now`, as the controller makes it, for a
/// driver that runs reconciles one by one (tests, tools); how long until the next look.
pub async fn reconcile_named(
    ctx: &crate::rollouts::Context,
    ns: &str,
    name: &str,
    now: jiff::Timestamp,
) -> Result<Duration, Error> {
    // Listed, as the reconcile lists them anyway: the operator needs no `get` of them.
    let lr = Api::<LaneRelease>::namespaced(ctx.client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map_err(kube_err(format!("list LaneReleases in {ns}")))?
        .items
        .into_iter()
        .find(|lr| lr.metadata.name.as_deref() == Some(name))
        .ok_or_else(|| Error::NotFound(format!("LaneRelease {ns}/{name}")))?;
    let s = Shared {
        client: ctx.client.clone(),
        flavor: ctx.flavor,
        samples: ctx.samples.clone(),
        prometheus: ctx.prometheus.clone(),
        identity: "lanes-operator".into(),
        metrics: Arc::new(Metrics::default()),
        resync: Config::default().resync,
        failures: Failures::new(),
    };
    reconcile_once(&s, &lr, now).await
}

/// One reconcile at `now`; how long until the next look.
async fn reconcile_once(
    s: &Shared,
    lr: &LaneRelease,
    now: jiff::Timestamp,
) -> Result<Duration, Error> {
    let (ns, name) = (lr.namespace().unwrap_or_default(), lr.name_any());
    let client = &s.client;
    let lp = ListParams::default();
    let api: Api<LaneRelease> = Api::namespaced(client.clone(), &ns);
    let others = api
        .list(&lp)
        .await
        .map_err(kube_err(format!("list LaneReleases in {ns}")))?;
    let rollouts = Api::<Rollout>::namespaced(client.clone(), &ns)
        .list(&lp)
        .await
        .map_err(kube_err(format!("list Rollouts in {ns}")))?;
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns)
        .list(&lp)
        .await
        .map_err(kube_err(format!("list Deployments in {ns}")))?;
    let all: Vec<&LaneRelease> = others.items.iter().collect();
    let members = member_views(lr, &all, &rollouts.items, &deployments.items);
    let record = lr.status.as_ref().and_then(|st| st.analysis.as_ref());
    let external = external_values(&s.prometheus, lr.spec.analysis.as_ref(), record, now).await;
    let routed_canaries = still_routed(s, lr, &ns, &members).await?;
    let d = reconcile(&ReleaseObserved {
        release: lr,
        members,
        sample: lane_sample(s, lr, &ns).await,
        external,
        lane_problem: lane_problem(lr, &lane_groups(client).await?),
        routed_canaries,
        now,
    });
    if lr.status.as_ref() != Some(&d.status) {
        let mut next = lr.clone();
        next.metadata.managed_fields = None;
        next.status = Some(d.status.clone());
        api.replace_status(&name, &PostParams::default(), &next)
            .await
            .map_err(kube_err(format!("update LaneRelease {ns}/{name} status")))?;
        report(s, lr, lr.status.as_ref(), &d.status, now).await;
    }
    // After the status: a status write at the read resourceVersion would conflict with
    // this change of the spec.
    if d.pause && !lr.spec.paused.unwrap_or(false) {
        let patch = serde_json::json!({"spec": {"paused": true}});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(kube_err(format!("pause LaneRelease {ns}/{name}")))?;
    }
    let active = d.status.phase.is_some_and(|p| p.is_active());
    let mut wait = if active { ACTIVE } else { s.resync };
    if let Some(after) = d.wake_at.map(|at| now.duration_until(at).unsigned_abs()) {
        wait = wait.min(after.max(Duration::from_millis(200)));
    }
    Ok(wait)
}

/// While `lr` finishes with its canaries still in the lane: the members whose canaries
/// the lane's generated objects still route to (a DestinationRule with a subset named
/// the lane, or a lane Service `<svc>-<lane>`, for a Service of theirs).
async fn still_routed(
    s: &Shared,
    lr: &LaneRelease,
    ns: &str,
    members: &[MemberView<'_>],
) -> Result<Vec<String>, Error> {
    if !waits_for_withdrawal(lr) {
        return Ok(Vec::new());
    }
    let client = &s.client;
    let ar = generated_resource(s.flavor.generated_kinds()[1]);
    let lp = ListParams::default().labels(&generated_for(&lr.spec.lane_group));
    let generated = match Api::<DynamicObject>::all_with(client.clone(), &ar)
        .list(&lp)
        .await
    {
        Ok(list) => list.items,
        // No such kind on the cluster: nothing routes to the canaries.
        Err(e) if is_not_found(&e) => Vec::new(),
        Err(e) => return Err(kube_err(format!("list generated {}", ar.plural))(e)),
    };
    let lane = lr.spec.lane.as_str();
    let held: Vec<String> = generated
        .iter()
        .filter_map(|o| lane_service_of(o, lane))
        .filter(|(_, namespace)| namespace == ns)
        .map(|(name, _)| name)
        .collect();
    if held.is_empty() {
        return Ok(Vec::new());
    }
    let services = Api::<Service>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map_err(kube_err(format!("list Services in {ns}")))?;
    Ok(routed_canaries(members, &services.items, &held))
}

/// The members of `lr`: the Rollouts it names (missing ones too), then those its
/// selector takes, each with its workload and the older LaneRelease holding it, if any.
fn member_views<'a>(
    lr: &LaneRelease,
    all: &[&LaneRelease],
    rollouts: &'a [Rollout],
    deployments: &[Deployment],
) -> Vec<MemberView<'a>> {
    let mut names: Vec<String> = lr.spec.rollouts.clone();
    for r in rollouts {
        let name = r.name_any();
        if !names.contains(&name) && lr.claims(&name, r.metadata.labels.as_ref()) {
            names.push(name);
        }
    }
    names
        .into_iter()
        .map(|name| {
            let rollout = rollouts.iter().find(|r| r.name_any() == name);
            let labels = rollout.and_then(|r| r.metadata.labels.as_ref());
            let held_by = owner_of(all, &name, labels)
                .map(|o| o.name_any())
                .filter(|o| *o != lr.name_any());
            let workload = rollout.and_then(|r| {
                let w = &r.spec.workload_ref;
                deployments
                    .iter()
                    .filter(|_| w.kind == "Deployment")
                    .find(|d| d.metadata.name.as_deref() == Some(w.name.as_str()))
                    .and_then(Workload::from_deployment)
            });
            MemberView {
                name,
                rollout,
                workload,
                held_by,
            }
        })
        .collect()
}

/// Logs a change of phase or step and records it as an Event on the LaneRelease.
async fn report(
    s: &Shared,
    lr: &LaneRelease,
    old: Option<&LaneReleaseStatus>,
    new: &LaneReleaseStatus,
    now: jiff::Timestamp,
) {
    let key = |st: Option<&LaneReleaseStatus>| {
        st.map(|st| (st.phase, st.current_step_index, st.current_step_state))
    };
    if key(old) == key(Some(new)) {
        return;
    }
    let (ns, name) = (lr.namespace().unwrap_or_default(), lr.name_any());
    let reason = new.phase.map_or("Waiting", |p| p.as_str());
    let note = new.message.clone().unwrap_or_default();
    tracing::info!(lanerelease = %format!("{ns}/{name}"), %reason, %note, "lane release transition");
    let regarding = ObjectReference {
        api_version: Some("lanes.dev/v1alpha1".into()),
        kind: Some("LaneRelease".into()),
        name: Some(name),
        namespace: Some(ns.clone()),
        uid: lr.metadata.uid.clone(),
        ..Default::default()
    };
    let warning = matches!(
        new.phase,
        Some(
            lanes_model::lane_release::LaneReleasePhase::RollingBack
                | lanes_model::lane_release::LaneReleasePhase::RolledBack
                | lanes_model::lane_release::LaneReleasePhase::Invalid
        )
    );
    let result = crate::events::emit(
        &s.client,
        &ns,
        regarding,
        reason,
        &note,
        warning,
        &s.identity,
        now,
    )
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "event not recorded");
    }
}

fn error_policy(lr: Arc<LaneRelease>, e: &Error, s: Arc<Shared>) -> Action {
    s.metrics.reconciled("lanereleases", false);
    let (failures, wait) = s.failures.failed(&lr);
    tracing::warn!(lanerelease = %format!("{}/{}", lr.namespace().unwrap_or_default(), lr.name_any()),
        error = %e, failures, retry_in = ?wait, "lane release controller");
    Action::requeue(wait)
}

/// The Service (name, namespace) whose pods in `lane` a generated object routes to: a
/// DestinationRule's host when it has a subset named the lane; the service a lane
/// Service `<svc>-<lane>` stands for.
fn lane_service_of(o: &DynamicObject, lane: &str) -> Option<(String, String)> {
    let at = o.metadata.namespace.as_deref().unwrap_or("default");
    if let Some(subsets) = o.data.pointer("/spec/subsets") {
        let has_lane = subsets
            .as_array()
            .is_some_and(|subsets| subsets.iter().any(|s| s["name"] == lane));
        let host = o.data.pointer("/spec/host")?.as_str()?;
        let (name, namespace) = parse_mesh_host(host, at)?;
        return has_lane.then(|| (name.to_string(), namespace.to_string()));
    }
    let name = o.metadata.name.as_deref()?;
    let svc = name.strip_suffix(lane)?.strip_suffix('-')?;
    Some((svc.to_string(), at.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(v: serde_json::Value) -> DynamicObject {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_lanes_service_is_read_from_a_destination_rule_or_a_lane_service() {
        let dr = object(serde_json::json!({
            "apiVersion": "networking.istio.io/v1alpha3", "kind": "DestinationRule",
            "metadata": {"name": "trafficlabel-dr-g-default-mocka", "namespace": "istio-system"},
            "spec": {"host": "mocka.default.svc.cluster.local",
                     "subsets": [{"name": "base"}, {"name": "canary"}]}}));
        assert_eq!(
            lane_service_of(&dr, "canary"),
            Some(("mocka".into(), "default".into()))
        );
        assert_eq!(lane_service_of(&dr, "dev"), None);
        let svc = object(serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "mock-a-canary", "namespace": "shop"},
            "spec": {"selector": {"app": "mock-a"}}}));
        assert_eq!(
            lane_service_of(&svc, "canary"),
            Some(("mock-a".into(), "shop".into()))
        );
        assert_eq!(lane_service_of(&svc, "base"), None);
    }
}
