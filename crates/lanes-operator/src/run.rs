//! The operator's main loop: stand by until this replica holds the Lease, then run both
//! controllers (each woken by watches of the kinds it reads, with a periodic resync)
//! while renewing it; stop them when the lease is lost or on shutdown, and give the
//! lease up on the way out.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Resource;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use lanes_compile::Flavor;
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::lease::LeaseLock;
use crate::metrics::Metrics;
use crate::rollouts::Context;

/// How the operator runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The flavor of the generated objects.
    pub flavor: Flavor,
    /// This replica's identity in the lease.
    pub identity: String,
    /// Namespace of the Lease.
    pub lease_namespace: String,
    /// Name of the Lease.
    pub lease_name: String,
    /// How long a lease stays valid after each renewal (renewed every third of it).
    pub lease_duration: Duration,
    /// Reconcile everything this often even without events.
    pub resync: Duration,
    /// Whether to stand by until this replica holds the Lease (off where there is only
    /// ever one replica, as in `lanes up`: no lease renewals to write).
    pub leader_election: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            flavor: Flavor::Asm,
            identity: "lanes-operator".into(),
            lease_namespace: "lanes-system".into(),
            lease_name: "lanes-operator".into(),
            lease_duration: Duration::from_secs(15),
            resync: Duration::from_secs(30),
            leader_election: true,
        }
    }
}

/// Runs until `shutdown` turns true: leader election (when configured), then both
/// controllers.
pub async fn run(
    ctx: Context,
    config: Config,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    if !config.leader_election {
        metrics.set_ready();
        metrics.leader.set(1);
        let mut tasks = controllers(&ctx, &config, &metrics, &shutdown);
        while tasks.join_next().await.is_some() {}
        return;
    }
    let client = ctx.client.clone();
    let lock = LeaseLock::new(
        client.clone(),
        &config.lease_namespace,
        &config.lease_name,
        &config.identity,
        config.lease_duration,
    );
    let period = config.lease_duration / 3;
    while !*shutdown.borrow() {
        // Stand by until the lease is ours.
        match lock.try_acquire(jiff::Timestamp::now()).await {
            Ok(true) => {}
            Ok(false) => {
                metrics.set_ready();
                if sleep_or_shutdown(period, &mut shutdown).await {
                    break;
                }
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "leader election");
                if sleep_or_shutdown(period, &mut shutdown).await {
                    break;
                }
                continue;
            }
        }
        metrics.set_ready();
        metrics.leader.set(1);
        tracing::info!(identity = %lock.identity(), lease = %config.lease_name, "leading: controllers start");
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = controllers(&ctx, &config, &metrics, &stop_rx);
        // Renew; a lease not renewed within its duration is lost.
        let mut renewed = tokio::time::Instant::now();
        loop {
            if sleep_or_shutdown(period, &mut shutdown).await {
                break;
            }
            // A renewal that hangs counts as failed: past the lease's duration another
            // replica may lead, and this one must have stopped by then.
            let attempt = tokio::time::timeout(period, lock.try_acquire(jiff::Timestamp::now()));
            let attempt = match attempt.await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err(format!("no answer within {period:?}")),
            };
            match attempt {
                Ok(true) => renewed = tokio::time::Instant::now(),
                Ok(false) => {
                    tracing::warn!("lease taken by another replica: standing by");
                    break;
                }
                Err(e) if renewed.elapsed() < config.lease_duration => {
                    tracing::warn!(error = %e, "lease renewal failed; retrying")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "lease not renewed in time: standing by");
                    break;
                }
            }
        }
        stop_tx.send_replace(true);
        while tasks.join_next().await.is_some() {}
        metrics.leader.set(0);
        tracing::info!("controllers stopped");
    }
    if let Err(e) = lock.release().await {
        tracing::warn!(error = %e, "releasing the lease");
    }
}

/// Starts both controllers, to run until `stop`.
fn controllers(
    ctx: &Context,
    config: &Config,
    metrics: &Arc<Metrics>,
    stop: &watch::Receiver<bool>,
) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    tasks.spawn(crate::lane_controller::run(
        ctx.client.clone(),
        config.clone(),
        metrics.clone(),
        stop.clone(),
    ));
    tasks.spawn(crate::lane_release_controller::run(
        ctx.clone(),
        config.clone(),
        metrics.clone(),
        stop.clone(),
    ));
    tasks.spawn(crate::rollout_controller::run(
        ctx.clone(),
        config.clone(),
        metrics.clone(),
        stop.clone(),
    ));
    tasks
}

/// Resolves once `rx` says stop (or its sender is gone).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, not held across an await.
    let _ = rx.wait_for(|s| *s).await;
}

/// Sleeps `d`; returns true if shutdown came first.
async fn sleep_or_shutdown(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    let stopped = tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stopped(shutdown) => true,
    };
    stopped || *shutdown.borrow()
}

/// The watches of one controller: each wakes `notify` on changes, and all stop on
/// `stop`.
pub(crate) struct Watches {
    pub(crate) notify: Arc<Notify>,
    pub(crate) tasks: JoinSet<()>,
    stop: watch::Receiver<bool>,
}

impl Watches {
    pub(crate) fn new(stop: &watch::Receiver<bool>) -> Self {
        Watches {
            notify: Arc::new(Notify::new()),
            tasks: JoinSet::new(),
            stop: stop.clone(),
        }
    }

    /// A watch cache of `api` (objects passed through `slim` first, to hold only what the
    /// controllers read), waking the controller on every change `wanted` says matters.
    pub(crate) fn cache<K>(
        &mut self,
        api: Api<K>,
        slim: fn(&mut K),
        wanted: impl Fn(&K) -> bool + Send + 'static,
    ) -> reflector::Store<K>
    where
        K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
        K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
    {
        let wanted = move |e: &watcher::Event<K>| match e {
            watcher::Event::Apply(o) | watcher::Event::InitApply(o) | watcher::Event::Delete(o) => {
                wanted(o)
            }
            watcher::Event::Init | watcher::Event::InitDone => false,
        };
        self.cache_with(
            api,
            Default::default(),
            watcher::Config::default(),
            slim,
            wanted,
        )
    }

    /// [`Watches::cache`] of a kind known at run time (`dyntype`), with `config`
    /// (a label selector), waking the controller on the events `wanted` says matter.
    pub(crate) fn cache_with<K>(
        &mut self,
        api: Api<K>,
        dyntype: K::DynamicType,
        config: watcher::Config,
        slim: fn(&mut K),
        wanted: impl Fn(&watcher::Event<K>) -> bool + Send + 'static,
    ) -> reflector::Store<K>
    where
        K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
        K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
    {
        let writer = reflector::store::Writer::new(dyntype);
        let reader = writer.as_reader();
        let events = watcher(api, config)
            .default_backoff()
            .modify(slim)
            .reflect(writer)
            .map(move |e| e.map(|e| wanted(&e)));
        self.spawn(events);
        reader
    }

    /// A watch that only wakes the controller (no cache).
    pub(crate) fn trigger<K>(&mut self, api: Api<K>, config: watcher::Config)
    where
        K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    {
        let events = watcher(api, config)
            .default_backoff()
            .map(|e| e.map(|_| true));
        self.spawn(events);
    }

    fn spawn<E: std::fmt::Display>(
        &mut self,
        events: impl futures_util::Stream<Item = Result<bool, E>> + Send + 'static,
    ) {
        let notify = self.notify.clone();
        let mut stop = self.stop.clone();
        self.tasks.spawn(async move {
            let mut events = std::pin::pin!(events);
            loop {
                tokio::select! {
                    e = events.next() => match e {
                        Some(Ok(true)) => notify.notify_one(),
                        Some(Ok(false)) => {}
                        Some(Err(e)) => tracing::debug!(error = %e, "watch"),
                        None => break,
                    },
                    _ = stopped(&mut stop) => break,
                }
            }
        });
    }
}

/// Drops what no controller reads from a cached object.
pub(crate) fn slim_meta<K: Resource>(o: &mut K) {
    o.meta_mut().managed_fields = None;
}

/// Pods are the bulk of a cluster: keep labels, containers, addresses and readiness only.
pub(crate) fn slim_pod(p: &mut Pod) {
    p.metadata.managed_fields = None;
    p.metadata.annotations = None;
    // Containers by name and image only (validation wants one at least).
    if let Some(spec) = p.spec.take() {
        p.spec = Some(k8s_openapi::api::core::v1::PodSpec {
            containers: spec
                .containers
                .into_iter()
                .map(|c| k8s_openapi::api::core::v1::Container {
                    name: c.name,
                    image: c.image,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        });
    }
    if let Some(st) = p.status.as_mut() {
        *st = k8s_openapi::api::core::v1::PodStatus {
            pod_ip: st.pod_ip.take(),
            conditions: st.conditions.take(),
            phase: st.phase.take(),
            ..Default::default()
        };
    }
}

/// Waits until every cache has its first full list; false on stop.
pub(crate) async fn ready<K>(store: &reflector::Store<K>, stop: &mut watch::Receiver<bool>) -> bool
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    let done = tokio::select! {
        r = store.wait_until_ready() => r.is_ok(),
        _ = stopped(stop) => false,
    };
    done && !*stop.borrow()
}

/// Waits for an event (then a short settle, so bursts become one reconcile), the resync
/// period, or stop; returns false on stop.
pub(crate) async fn next_round(
    notify: &Notify,
    wait: Duration,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let stopped = tokio::select! {
        _ = notify.notified() => {
            tokio::time::sleep(Duration::from_millis(100)).await;
            false
        }
        _ = tokio::time::sleep(wait) => false,
        _ = stopped(stop) => true,
    };
    !stopped && !*stop.borrow()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_slimmed_pod_still_validates_and_keeps_what_routing_reads() {
        let mut pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default", "labels": {"app": "a"},
                         "annotations": {"big": "x".repeat(1000)},
                         "managedFields": [{"manager": "kubelet"}]},
            "spec": {"containers": [{"name": "c", "image": "i:1",
                                      "env": [{"name": "E", "value": "v"}]}]},
            "status": {"podIP": "10.0.0.9", "phase": "Running", "hostIP": "10.1.1.1",
                       "conditions": [{"type": "Ready", "status": "True"}]},
        }))
        .unwrap();
        slim_pod(&mut pod);
        let v = serde_json::to_value(&pod).unwrap();
        assert!(v["metadata"].get("annotations").is_none());
        assert!(v["metadata"].get("managedFields").is_none());
        assert!(v["spec"]["containers"][0].get("env").is_none());
        assert!(v["status"].get("hostIP").is_none());
        let object = lanes_model::Object::from_value(v).unwrap();
        let view = lanes_model::mesh::PodView::from_object(&object).unwrap();
        assert!(view.ready);
        assert_eq!(view.ip.as_deref(), Some("10.0.0.9"));
        assert_eq!(view.labels.get("app").map(String::as_str), Some("a"));
    }
}
