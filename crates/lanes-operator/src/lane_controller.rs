//! The lane controller as kube-rs runs controllers: a `Controller` over lane groups,
//! one reconcile per group. A group is looked at again when it changes, when one of the
//! objects generated for it is edited or deleted by someone else (`watches`, by its
//! `swimlane-group` label), when a Service, Pod or lane changes (their watch caches are
//! what a reconcile reads, and a change there may concern any group), and at the resync
//! period; a reconcile compares with the generated objects in their own watch caches
//! (no LIST). An error policy backs off per group. Beside it, a sweep deletes what was
//! generated for groups that are gone and that the garbage collector did not take.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, DynamicObject};
use kube::runtime::controller::{self, Action};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, watcher};
use kube::{Client, ResourceExt};
use lanes_compile::Flavor;
use lanes_model::lane::{ASMSwimLane, ASMSwimLaneGroup};
use tokio::sync::{Notify, watch};

use crate::Error;
use crate::backoff::{Failures, back_off};
use crate::lanes::{
    Conversions, Existing, GENERATED_SELECTOR, GeneratedCache, Inputs, Memo, group_of,
    istio_resource,
};
use crate::metrics::Metrics;
use crate::rollout_controller::stop_signal;
use crate::run::{Config, Watches, next_round, ready, slim_meta, slim_pod};

/// What every reconcile shares: the watch caches of its inputs.
struct Shared {
    client: Client,
    flavor: Flavor,
    services: Store<Service>,
    pods: Store<Pod>,
    lanes: Store<ASMSwimLane>,
    /// Moves on with every change to the three caches above.
    epoch: Arc<AtomicU64>,
    /// The inputs last built from the caches, and the epoch they were built at: the
    /// reconciles of all groups after one change share them.
    built: Mutex<Option<(u64, Arc<Inputs>)>>,
    /// Each cached object converted once per version, across builds of the inputs.
    conversions: Mutex<Conversions>,
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
    // Every change to the caches moves the epoch on, after the cache took it.
    let epoch = Arc::new(AtomicU64::new(0));
    let services = w.cache(
        Api::<Service>::all(client.clone()),
        slim_meta,
        moves_on(&epoch),
    );
    let pods = w.cache(Api::<Pod>::all(client.clone()), slim_pod, moves_on(&epoch));
    let lanes = w.cache(
        Api::<ASMSwimLane>::all(client.clone()),
        slim_meta,
        moves_on(&epoch),
    );
    // The generated objects: a change this controller did not make itself (an edit or
    // delete by someone else, or a re-list) wakes every group, in case the per-group
    // watch below woke its group before this cache held the change.
    let memo = Arc::new(Memo::default());
    let [virtual_services, destination_rules] = ["VirtualService", "DestinationRule"].map(|kind| {
        let ar = istio_resource(kind);
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
        && ready(&virtual_services, &mut stop_wait).await
        && ready(&destination_rules, &mut stop_wait).await;
    if !cached {
        w.tasks.shutdown().await;
        return;
    }
    let controller = Controller::new(
        Api::<ASMSwimLaneGroup>::all(client.clone()),
        watcher::Config::default(),
    )
    .with_config(controller::Config::default().debounce(Duration::from_millis(100)));
    let sweep = tokio::spawn(sweep_loop(client.clone(), config.resync, stop.clone()));
    let shared = Arc::new(Shared {
        client: client.clone(),
        flavor: config.flavor,
        services,
        pods,
        lanes,
        epoch,
        built: Mutex::new(None),
        conversions: Mutex::new(Conversions::default()),
        groups: controller.store(),
        existing: GeneratedCache::new(virtual_services, destination_rules, memo),
        metrics,
        resync: config.resync,
        generated: Mutex::new(BTreeMap::new()),
        failures: Failures::new(),
    });
    let mut controller = controller.reconcile_all_on(notified(w.notify.clone()));
    for kind in ["VirtualService", "DestinationRule"] {
        let ar = istio_resource(kind);
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

/// A cache's `wanted`: every change moves `epoch` on and wakes the controller.
fn moves_on<K>(epoch: &Arc<AtomicU64>) -> impl Fn(&K) -> bool + Send + 'static {
    let epoch = epoch.clone();
    move |_| {
        epoch.fetch_add(1, Ordering::SeqCst);
        true
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

/// The inputs every group compiles from, out of the watch caches, in creation order:
/// built once per change of the caches, not once per group.
fn inputs(s: &Shared) -> Result<Arc<Inputs>, Error> {
    // Read the epoch before the caches: what is built is at least that new.
    let epoch = s.epoch.load(Ordering::SeqCst);
    if let Ok(built) = s.built.lock()
        && let Some((at, inputs)) = built.as_ref()
        && *at == epoch
    {
        return Ok(inputs.clone());
    }
    let inputs = {
        // A cache keyed by version stays right even if a panic poisoned its lock.
        let mut kept = s
            .conversions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::new(Inputs::from_caches(
            s.services.state(),
            s.pods.state(),
            s.lanes.state(),
            &mut kept,
        )?)
    };
    if let Ok(mut built) = s.built.lock() {
        *built = Some((epoch, inputs.clone()));
    }
    Ok(inputs)
}

async fn reconcile(g: Arc<ASMSwimLaneGroup>, s: Arc<Shared>) -> Result<Action, Error> {
    let started = tokio::time::Instant::now();
    let result = match inputs(&s) {
        Ok(inputs) => {
            let existing = Existing::Cached(&s.existing);
            crate::lanes::reconcile_group(&s.client, s.flavor, &g, &inputs, existing).await
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
        let count = changes.applied.len() + changes.unchanged.len();
        generated.insert(g.name_any(), count);
        generated.retain(|name, _| s.groups.get(&ObjectRef::new(name)).is_some());
        s.existing
            .retain(|name| s.groups.get(&ObjectRef::new(name)).is_some());
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
async fn sweep_loop(client: Client, resync: Duration, mut stop: watch::Receiver<bool>) {
    let mut w = Watches::new(&stop);
    let groups = w.cache(
        Api::<ASMSwimLaneGroup>::all(client.clone()),
        slim_meta,
        |_| true,
    );
    for kind in ["VirtualService", "DestinationRule"] {
        let ar = istio_resource(kind);
        w.trigger(
            Api::<DynamicObject>::all_with(client.clone(), &ar),
            watcher::Config::default().labels(GENERATED_SELECTOR),
        );
    }
    let cached = ready(&groups, &mut stop).await;
    let mut wait = Duration::ZERO;
    while cached && next_round(&w.notify, wait, &mut stop).await {
        let names: BTreeSet<String> = groups.state().iter().map(|g| g.name_any()).collect();
        wait = match crate::lanes::sweep(&client, &names).await {
            Ok(_) => resync,
            Err(e) => {
                tracing::warn!(error = %e, "lane controller: objects of groups that are gone");
                back_off(1)
            }
        };
    }
    w.tasks.shutdown().await;
}
