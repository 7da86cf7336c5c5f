//! The lane controller as kube-rs runs controllers: a `Controller` over lane groups,
//! one reconcile per group. A group is looked at again when it changes, when one of the
//! objects generated for it is edited or deleted by someone else (`watches`, by its
//! `swimlane-group` label), when a Service, Pod or lane changes (their watch caches are
//! what a reconcile reads, and a change there may concern any group), and at the resync
//! period; a reconcile compares with the generated objects in their own watch caches
//! (no LIST). An error policy backs off per group. Beside it, a sweep deletes what was
//! generated for groups that are gone and that the garbage collector did not take.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, DynamicObject};
use kube::runtime::controller::{self, Action};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, watcher};
use kube::{Client, ResourceExt};
use lanes_model::lane::{ASMSwimLane, ASMSwimLaneGroup};
use lanes_model::lane_release::LaneRelease;
use lanes_model::rollout::Rollout;
use tokio::sync::{Notify, watch};

use crate::Error;
use crate::backoff::{Failures, back_off};
use crate::held::{Compiled, Held};
use crate::lanes::{
    Existing, GENERATED_SELECTOR, GeneratedCache, Memo, generated_resource, group_of, releases_of,
    serves_lane_releases,
};
use crate::metrics::Metrics;
use crate::rollout_controller::stop_signal;
use crate::run::{Config, Watches, next_round, ready, slim_meta, slim_pod};

/// What every reconcile shares: the watch caches of its inputs.
struct Shared {
    client: Client,
    services: Store<Service>,
    pods: Store<Pod>,
    lanes: Store<ASMSwimLane>,
    /// Rollouts and Deployments: the releases whose steps route traffic.
    rollouts: Store<Rollout>,
    deployments: Store<Deployment>,
    /// LaneReleases: their traffic steps route a share of a group's ingress.
    lane_releases: Store<LaneRelease>,
    /// What changed in the three caches above since the inputs last took it in.
    dirty: Arc<Mutex<Dirty>>,
    /// The inputs, held between reconciles, and what each group last compiled to.
    held: Mutex<Held>,
    groups: Store<ASMSwimLaneGroup>,
    /// The objects generated before, as a reconcile compares them.
    existing: GeneratedCache,
    metrics: Arc<Metrics>,
    resync: Duration,
    /// Objects generated per group, for the `generated_objects` gauge.
    generated: Mutex<BTreeMap<String, usize>>,
    /// Failures in a row, for the error policy's back-off.
    failures: Failures<ASMSwimLaneGroup>,
}

/// Runs the lane controller and its sweep until `stop`.
pub async fn run(
    client: Client,
    config: Config,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
) {
    let mut stop_wait = stop.clone();
    let mut w = Watches::new(&stop);
    // Every change to the caches is noted, after the cache took it: the first
    // reconcile reads them whole.
    let dirty = Arc::new(Mutex::new(Dirty {
        relisted: true,
        ..Dirty::default()
    }));
    let services = w.cache_with(
        Api::<Service>::all(client.clone()),
        (),
        watcher::Config::default(),
        slim_meta,
        notes(&dirty, |d| &mut d.services),
    );
    let pods = w.cache_with(
        Api::<Pod>::all(client.clone()),
        (),
        watcher::Config::default(),
        slim_pod,
        notes(&dirty, |d| &mut d.pods),
    );
    let lanes = w.cache_with(
        Api::<ASMSwimLane>::all(client.clone()),
        (),
        watcher::Config::default(),
        slim_meta,
        notes(&dirty, |d| &mut d.lanes),
    );
    // A Rollout's change (a release step) wakes every group; a Deployment's does not
    // (its template changes start a release, which the Rollout's status shows).
    let rollouts = w.cache(Api::<Rollout>::all(client.clone()), slim_meta, |_| true);
    let deployments = w.cache(Api::<Deployment>::all(client.clone()), slim_meta, |_| false);
    // A change of a LaneRelease (a traffic step, its canaries withdrawn from the lane)
    // wakes every group too.
    let lane_releases = w.cache(Api::<LaneRelease>::all(client.clone()), slim_meta, |_| true);
    // The generated objects: a change this controller did not make itself (an edit or
    // delete by someone else, or a re-list) wakes every group, in case the per-group
    // watch below woke its group before this cache held the change.
    let memo = Arc::new(Memo::default());
    let kinds = config.flavor.generated_kinds();
    let [routes, backends] = kinds.map(|generated| {
        let (kind, ar) = (generated.kind, generated_resource(generated));
        let memo = memo.clone();
        w.cache_with(
            Api::<DynamicObject>::all_with(client.clone(), &ar),
            ar,
            watcher::Config::default().labels(GENERATED_SELECTOR),
            slim_meta,
            move |e| match e {
                watcher::Event::Apply(o) | watcher::Event::InitApply(o) => !memo.knows(kind, o),
                watcher::Event::Delete(_) | watcher::Event::InitDone => true,
                watcher::Event::Init => false,
            },
        )
    });
    let cached = ready(&services, &mut stop_wait).await
        && ready(&pods, &mut stop_wait).await
        && ready(&lanes, &mut stop_wait).await
        && ready(&rollouts, &mut stop_wait).await
        && ready(&deployments, &mut stop_wait).await
        && (!serves_lane_releases(&client).await || ready(&lane_releases, &mut stop_wait).await)
        && ready(&routes, &mut stop_wait).await
        && ready(&backends, &mut stop_wait).await;
    if !cached {
        w.tasks.shutdown().await;
        return;
    }
    let controller = Controller::new(
        Api::<ASMSwimLaneGroup>::all(client.clone()),
        watcher::Config::default(),
    )
    .with_config(controller::Config::default().debounce(Duration::from_millis(100)));
    let sweep = tokio::spawn(sweep_loop(
        client.clone(),
        config.resync,
        config.flavor,
        stop.clone(),
    ));
    let shared = Arc::new(Shared {
        client: client.clone(),
        services,
        pods,
        lanes,
        rollouts,
        deployments,
        lane_releases,
        dirty,
        held: Mutex::new(Held::new(config.flavor)),
        groups: controller.store(),
        existing: GeneratedCache::new([(kinds[0].kind, routes), (kinds[1].kind, backends)], memo),
        metrics,
        resync: config.resync,
        generated: Mutex::new(BTreeMap::new()),
        failures: Failures::new(),
    });
    let mut controller = controller.reconcile_all_on(notified(w.notify.clone()));
    for generated in kinds {
        let ar = generated_resource(generated);
        controller = controller.watches_with(
            Api::<DynamicObject>::all_with(client.clone(), &ar),
            ar,
            watcher::Config::default().labels(GENERATED_SELECTOR),
            |o| group_of(&o).map(ObjectRef::new),
        );
    }
    controller
        .graceful_shutdown_on(stop_signal(stop))
        .run(reconcile, error_policy, shared)
        .for_each(|_| async {})
        .await;
    w.tasks.shutdown().await;
    let _ = sweep.await;
}

/// The changes of the input caches not yet taken into the held inputs.
#[derive(Default)]
struct Dirty {
    services: HashSet<ObjectRef<Service>>,
    pods: HashSet<ObjectRef<Pod>>,
    lanes: HashSet<ObjectRef<ASMSwimLane>>,
    /// A cache was listed afresh (or nothing was taken in yet): read them whole.
    relisted: bool,
}

/// An input cache's `wanted`: notes each change in `dirty` (in the set `pick` gives)
/// and wakes the controller.
fn notes<K>(
    dirty: &Arc<Mutex<Dirty>>,
    pick: fn(&mut Dirty) -> &mut HashSet<ObjectRef<K>>,
) -> impl Fn(&watcher::Event<K>) -> bool + Send + 'static
where
    K: kube::Resource<DynamicType = ()> + 'static,
{
    let dirty = dirty.clone();
    move |e| {
        let mut d = dirty.lock().unwrap_or_else(PoisonError::into_inner);
        match e {
            watcher::Event::Apply(o) | watcher::Event::Delete(o) => {
                pick(&mut d).insert(ObjectRef::from_obj(o));
                true
            }
            watcher::Event::InitDone => {
                d.relisted = true;
                true
            }
            watcher::Event::Init | watcher::Event::InitApply(_) => false,
        }
    }
}

/// A stream that yields each time `notify` is woken (wakes that come together count
/// once).
fn notified(notify: Arc<Notify>) -> impl futures_util::Stream<Item = ()> + Send + 'static {
    futures_util::stream::unfold(notify, |n| async move {
        n.notified().await;
        Some(((), n))
    })
}

/// Takes what changed in the input caches into the held inputs (all of them after a
/// fresh list), then compiles group `g` from them.
fn compile(s: &Shared, g: &ASMSwimLaneGroup) -> Result<Compiled, Error> {
    let dirty = std::mem::take(&mut *s.dirty.lock().unwrap_or_else(PoisonError::into_inner));
    let mut held = s.held.lock().unwrap_or_else(PoisonError::into_inner);
    let taken = take_in(s, &mut held, dirty);
    if taken.is_err() {
        // Read the caches whole next time: nothing noted is lost.
        s.dirty
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .relisted = true;
    }
    taken?;
    let lane_releases = s.lane_releases.state();
    held.set_releases(releases_of(
        s.rollouts.state().iter().map(|r| &**r),
        |ns, name| {
            s.deployments
                .get(&ObjectRef::new(name).within(ns))
                .map(|d| (*d).clone())
        },
        lane_releases.iter().map(|lr| &**lr),
    ));
    held.compile(g)
}

fn take_in(s: &Shared, held: &mut Held, dirty: Dirty) -> Result<(), Error> {
    if dirty.relisted {
        held.replace::<Service, _>(s.services.state())?;
        held.replace::<Pod, _>(s.pods.state())?;
        return held.replace::<ASMSwimLane, _>(s.lanes.state());
    }
    for r in dirty.services {
        match s.services.get(&r) {
            Some(o) => held.put(&*o)?,
            None => held.remove::<Service>(r.namespace.as_deref().unwrap_or_default(), &r.name),
        }
    }
    for r in dirty.pods {
        match s.pods.get(&r) {
            Some(o) => held.put(&*o)?,
            None => held.remove::<Pod>(r.namespace.as_deref().unwrap_or_default(), &r.name),
        }
    }
    for r in dirty.lanes {
        match s.lanes.get(&r) {
            Some(o) => held.put(&*o)?,
            None => held.remove::<ASMSwimLane>(r.namespace.as_deref().unwrap_or_default(), &r.name),
        }
    }
    Ok(())
}

async fn reconcile(g: Arc<ASMSwimLaneGroup>, s: Arc<Shared>) -> Result<Action, Error> {
    let started = tokio::time::Instant::now();
    let result = match compile(&s, &g) {
        Ok(compiled) => {
            let existing = Existing::Cached(&s.existing);
            crate::lanes::reconcile_group(&s.client, &g, &compiled, existing).await
        }
        Err(e) => Err(e),
    };
    s.metrics.timed("lanes", started.elapsed());
    let changes = result?;
    s.metrics.reconciled("lanes", true);
    s.failures.succeeded(&g);
    if changes.frozen.is_empty()
        && let Ok(mut generated) = s.generated.lock()
    {
        let count = changes.applied.len() + changes.unchanged;
        generated.insert(g.name_any(), count);
        generated.retain(|name, _| s.groups.get(&ObjectRef::new(name)).is_some());
        s.existing
            .retain(|name| s.groups.get(&ObjectRef::new(name)).is_some());
        s.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain_groups(|name| s.groups.get(&ObjectRef::new(name)).is_some());
        s.metrics
            .generated
            .set(generated.values().sum::<usize>() as i64);
    }
    Ok(Action::requeue(s.resync))
}

fn error_policy(g: Arc<ASMSwimLaneGroup>, e: &Error, s: Arc<Shared>) -> Action {
    s.metrics.reconciled("lanes", false);
    let (failures, wait) = s.failures.failed(&g);
    tracing::warn!(group = %g.name_any(), error = %e, failures, retry_in = ?wait, "lane controller");
    Action::requeue(wait)
}

/// Deletes what was generated for lane groups that are gone: woken by changes of
/// groups and of generated objects (a reconcile that raced its group's deletion may
/// apply an object after the group went), and at the resync period.
async fn sweep_loop(
    client: Client,
    resync: Duration,
    flavor: lanes_compile::Flavor,
    mut stop: watch::Receiver<bool>,
) {
    let mut w = Watches::new(&stop);
    let groups = w.cache(
        Api::<ASMSwimLaneGroup>::all(client.clone()),
        slim_meta,
        |_| true,
    );
    for generated in flavor.generated_kinds() {
        let ar = generated_resource(generated);
        w.trigger(
            Api::<DynamicObject>::all_with(client.clone(), &ar),
            watcher::Config::default().labels(GENERATED_SELECTOR),
        );
    }
    let cached = ready(&groups, &mut stop).await;
    let mut wait = Duration::ZERO;
    while cached && next_round(&w.notify, wait, &mut stop).await {
        let names: BTreeSet<String> = groups.state().iter().map(|g| g.name_any()).collect();
        wait = match crate::lanes::sweep(&client, &names, flavor).await {
            Ok(_) => resync,
            Err(e) => {
                tracing::warn!(error = %e, "lane controller: objects of groups that are gone");
                back_off(1)
            }
        };
    }
    w.tasks.shutdown().await;
}
