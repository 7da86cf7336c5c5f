//! The rollout controller as kube-rs runs controllers: a `Controller` over Rollouts,
//! woken by the canary Deployments they own (`owns`) and by the workloads they target
//! (`watches`), one reconcile per Rollout, requeued for when its release next waits on
//! time, and an error policy that backs off per Rollout. Beside it, a sweep lets go of
//! workloads a release marked whose Rollout is gone (deleted or retargeted).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::runtime::controller::{self, Action};
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, watcher};
use kube::{Client, ResourceExt};
use lanes_model::lane_release::LaneRelease;
use lanes_model::rollout::{Rollout, RolloutPhase};
use lanes_rollout::CANARY_LABEL;
use tokio::sync::watch;

use crate::Error;
use crate::backoff::{Failures, back_off};
use crate::metrics::Metrics;
use crate::rollouts::{Context, Outcome};
use crate::run::{Config, Watches, next_round, ready, slim_meta, stopped};

/// What every reconcile shares.
struct Shared {
    ctx: Context,
    identity: String,
    metrics: Arc<Metrics>,
    resync: Duration,
    /// Failures in a row, for the error policy's back-off.
    failures: Failures<Rollout>,
}

/// When to look at a Rollout again, without an event: when its release next waits on
/// time (a pause's end, an analysis round, the progress deadline), no sooner than
/// [`SOONEST`] (a time just due is not polled in a tight loop); at most
/// [`PROGRESSING`] while a release is under way (a missed event must not stall it);
/// else at the resync period.
pub fn next_look(progressing: bool, wake_after: Option<Duration>, resync: Duration) -> Duration {
    let mut wait = resync;
    if progressing {
        wait = wait.min(PROGRESSING);
    }
    if let Some(w) = wake_after {
        wait = wait.min(w.max(SOONEST));
    }
    wait
}

/// The longest a release under way goes unlooked at.
pub const PROGRESSING: Duration = Duration::from_secs(5);
/// The soonest a Rollout is looked at again on time alone.
pub const SOONEST: Duration = Duration::from_millis(200);

/// Runs the rollout controller and the sweep until `stop`.
pub async fn run(
    mut ctx: Context,
    config: Config,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
) {
    let client = ctx.client.clone();
    // The generated routes, where a release's routed share is read.
    let mut w = Watches::new(&stop);
    ctx.flavor = config.flavor;
    let ar = crate::lanes::generated_resource(ctx.flavor.generated_kinds()[0]);
    let generated = w.cache_with(
        Api::<DynamicObject>::all_with(client.clone(), &ar),
        ar,
        watcher::Config::default().labels(crate::lanes::GENERATED_SELECTOR),
        slim_meta,
        |_| false,
    );
    if !ready(&generated, &mut stop.clone()).await {
        w.tasks.shutdown().await;
        return;
    }
    ctx.generated = Some(generated);
    let sweep = tokio::spawn(sweep_loop(client.clone(), config.resync, stop.clone()));
    let controller = Controller::new(
        Api::<Rollout>::all(client.clone()),
        watcher::Config::default(),
    )
    .with_config(controller::Config::default().debounce(Duration::from_millis(100)));
    let rollouts = controller.store();
    let shared = Arc::new(Shared {
        ctx,
        identity: config.identity.clone(),
        metrics,
        resync: config.resync,
        failures: Failures::new(),
    });
    controller
        .owns(
            Api::<Deployment>::all(client.clone()),
            watcher::Config::default().labels(CANARY_LABEL),
        )
        .watches(
            Api::<Deployment>::all(client.clone()),
            watcher::Config::default(),
            move |d| targeting(&rollouts, &d),
        )
        .watches(
            Api::<LaneRelease>::all(client),
            watcher::Config::default(),
            |lr| members_of(&lr),
        )
        .graceful_shutdown_on(stop_signal(stop))
        .run(reconcile, error_policy, shared)
        .for_each(|_| async {})
        .await;
    w.tasks.shutdown().await;
    let _ = sweep.await;
}

/// A future that resolves once `stop` says so (`Send + Sync`, as the controller wants).
pub(crate) fn stop_signal(
    mut stop: watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send + Sync {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        stopped(&mut stop).await;
        let _ = tx.send(());
    });
    async move {
        let _ = rx.await;
    }
}

/// The Rollouts an event on workload `d` concerns: those that target it, when the
/// Deployment is one a release may act on.
fn targeting(rollouts: &Store<Rollout>, d: &Deployment) -> Vec<ObjectRef<Rollout>> {
    let ns = d.metadata.namespace.as_deref().unwrap_or("default");
    let name = d.metadata.name.as_deref().unwrap_or("");
    rollouts
        .state()
        .iter()
        .filter(|r| lanes_rollout::targets_deployment(r, ns, name))
        .map(|r| ObjectRef::from_obj(r.as_ref()))
        .collect()
}

/// The Rollouts a change of LaneRelease `lr` concerns (its orders to them): those it
/// names and those in its release.
fn members_of(lr: &LaneRelease) -> Vec<ObjectRef<Rollout>> {
    let ns = lr.namespace().unwrap_or_default();
    let listed = lr
        .status
        .iter()
        .flat_map(|s| s.members.iter().map(|m| &m.rollout));
    let mut names: Vec<&String> = lr.spec.rollouts.iter().chain(listed).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|n| ObjectRef::new(n).within(&ns))
        .collect()
}

/// The finalizer on every Rollout (Kruise's name): a deleted Rollout stays until its
/// release is stood down.
pub const FINALIZER: &str = "rollouts.kruise.io/rollout";

/// One reconcile of a Rollout, behind its finalizer: the release goes on while the
/// Rollout lives, and is stood down before a deleted one goes.
async fn reconcile(r: Arc<Rollout>, s: Arc<Shared>) -> Result<Action, Error> {
    let api: Api<Rollout> =
        Api::namespaced(s.ctx.client.clone(), &r.namespace().unwrap_or_default());
    finalizer(&api, FINALIZER, r, |event| async {
        match event {
            finalizer::Event::Apply(r) => release(r, &s).await,
            finalizer::Event::Cleanup(r) => stand_down(r, &s).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// A deleted Rollout's cleanup: its workload's release is stood down (canaries deleted,
/// marks removed, the Deployment let go) unless another Rollout runs its releases.
async fn stand_down(r: Arc<Rollout>, s: &Shared) -> Result<Action, Error> {
    let ns = r.namespace().unwrap_or_default();
    terminating(&r, s).await?;
    let workload = &r.spec.workload_ref;
    if workload.kind == "Deployment"
        && crate::rollouts::let_go(&s.ctx.client, &ns, &workload.name).await?
    {
        tracing::info!(rollout = %format!("{ns}/{}", r.name_any()), deployment = %workload.name,
            "rollout deleted: its release is stood down");
    }
    Ok(Action::await_change())
}

/// Kruise's status of a Rollout being deleted: phase `Terminating` while its release is
/// stood down (shown until the finalizer lets the Rollout go).
async fn terminating(r: &Rollout, s: &Shared) -> Result<(), Error> {
    let phase = r.status.as_ref().and_then(|st| st.phase);
    if phase == Some(RolloutPhase::Terminating) {
        return Ok(());
    }
    let (ns, name) = (r.namespace().unwrap_or_default(), r.name_any());
    let api: Api<Rollout> = Api::namespaced(s.ctx.client.clone(), &ns);
    let patch = serde_json::json!({"status": {
        "phase": "Terminating",
        "message": "Rollout is being deleted: its release is stood down",
    }});
    let params = PatchParams {
        field_manager: Some(crate::FIELD_MANAGER.into()),
        ..Default::default()
    };
    match api
        .patch_status(&name, &params, &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if crate::is_not_found(&e) => Ok(()),
        Err(e) => Err(crate::kube_err(format!(
            "mark Rollout {ns}/{name} Terminating"
        ))(e)),
    }
}

/// The release a live Rollout runs.
async fn release(r: Arc<Rollout>, s: &Shared) -> Result<Action, Error> {
    let (ns, name) = (r.namespace().unwrap_or_default(), r.name_any());
    let started = tokio::time::Instant::now();
    let outcome =
        crate::rollouts::reconcile_rollout(&s.ctx, &ns, &name, jiff::Timestamp::now()).await;
    s.metrics.timed("rollouts", started.elapsed());
    let o = outcome?;
    s.metrics.reconciled("rollouts", true);
    s.metrics.conflicts.inc_by(o.conflicts as u64);
    s.failures.succeeded(&r);
    report(s, &ns, &name, &o).await;
    Ok(Action::requeue(next_look(
        o.progressing,
        o.wake_after,
        s.resync,
    )))
}

/// Logs what a reconcile did and records its transition as an Event.
async fn report(s: &Shared, ns: &str, name: &str, o: &Outcome) {
    for a in &o.actions {
        tracing::info!(rollout = %format!("{ns}/{name}"), action = ?a, "rollout controller");
    }
    let Some(t) = &o.transition else {
        return;
    };
    tracing::info!(rollout = %format!("{ns}/{name}"), reason = %t.reason, note = %t.note, "rollout transition");
    let client = &s.ctx.client;
    let now = jiff::Timestamp::now();
    if let Err(e) = crate::events::record(client, ns, name, t, &s.identity, now).await {
        tracing::warn!(error = %e, "event not recorded");
    }
}

fn error_policy(r: Arc<Rollout>, e: &Error, s: Arc<Shared>) -> Action {
    s.metrics.reconciled("rollouts", false);
    let (failures, wait) = s.failures.failed(&r);
    tracing::warn!(rollout = %format!("{}/{}", r.namespace().unwrap_or_default(), r.name_any()),
        error = %e, failures, retry_in = ?wait, "rollout controller");
    Action::requeue(wait)
}

/// Lets go of workloads a release marked whose Rollout is gone: woken by changes of
/// Rollouts and of marked Deployments, and at the resync period.
async fn sweep_loop(client: Client, resync: Duration, mut stop: watch::Receiver<bool>) {
    let mut w = Watches::new(&stop);
    let rollouts = w.cache(Api::<Rollout>::all(client.clone()), slim_meta, |_| true);
    let deployments = w.cache(Api::<Deployment>::all(client.clone()), slim_meta, |d| {
        crate::rollouts::concerns(d, |_, _| false)
    });
    let cached = ready(&rollouts, &mut stop).await && ready(&deployments, &mut stop).await;
    let mut wait = Duration::ZERO;
    while cached && next_round(&w.notify, wait, &mut stop).await {
        let (ds, rs) = (deployments.state(), rollouts.state());
        let result = crate::rollouts::sweep(
            &client,
            &ds.iter().map(|d| d.as_ref()).collect::<Vec<_>>(),
            &rs.iter().map(|r| r.as_ref()).collect::<Vec<_>>(),
        )
        .await;
        wait = match result {
            Ok(_) => resync,
            Err(e) => {
                tracing::warn!(error = %e, "rollout controller: orphaned releases");
                back_off(1)
            }
        };
    }
    w.tasks.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_look_comes_when_a_release_waits_on_time_and_no_sooner_than_needed() {
        let resync = Duration::from_secs(30);
        assert_eq!(next_look(false, None, resync), resync);
        assert_eq!(next_look(true, None, resync), PROGRESSING);
        let soon = Duration::from_millis(1_500);
        assert_eq!(next_look(true, Some(soon), resync), soon);
        assert_eq!(next_look(false, Some(Duration::ZERO), resync), SOONEST);
        assert_eq!(
            next_look(false, Some(Duration::from_secs(3_600)), resync),
            resync
        );
    }
}
