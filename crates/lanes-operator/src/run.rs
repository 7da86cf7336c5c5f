//! The operator's main loop: stand by until this replica holds the Lease, then run both
//! controllers (each woken by watches of the kinds it reads, with a periodic resync)
//! while renewing it; stop them when the lease is lost or on shutdown, and give the
//! lease up on the way out.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use lanes_compile::Flavor;
use lanes_model::lane::{ASMSwimLane, ASMSwimLaneGroup};
use lanes_model::rollout::Rollout;
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::lease::LeaseLock;
use crate::metrics::Metrics;

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
        }
    }
}

/// Runs until `shutdown` turns true: leader election, then both controllers.
pub async fn run(
    client: Client,
    config: Config,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
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
        let mut tasks = JoinSet::new();
        tasks.spawn(lanes_loop(
            client.clone(),
            config.clone(),
            metrics.clone(),
            stop_rx.clone(),
        ));
        tasks.spawn(rollouts_loop(
            client.clone(),
            config.clone(),
            metrics.clone(),
            stop_rx,
        ));
        // Renew; a lease not renewed within its duration is lost.
        let mut renewed = tokio::time::Instant::now();
        loop {
            if sleep_or_shutdown(period, &mut shutdown).await {
                break;
            }
            match lock.try_acquire(jiff::Timestamp::now()).await {
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

/// Resolves once `rx` says stop (or its sender is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
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

/// Wakes `notify` on every event (or watch error) of `api`, until `stop`.
fn trigger<K>(
    api: Api<K>,
    notify: Arc<Notify>,
    tasks: &mut JoinSet<()>,
    mut stop: watch::Receiver<bool>,
) where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    tasks.spawn(async move {
        let mut events = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        loop {
            tokio::select! {
                e = events.next() => match e {
                    Some(_) => notify.notify_one(),
                    None => break,
                },
                _ = stopped(&mut stop) => break,
            }
        }
    });
}

/// Waits for an event (then a short settle, so bursts become one reconcile), the resync
/// period, or stop; returns false on stop.
async fn next_round(notify: &Notify, wait: Duration, stop: &mut watch::Receiver<bool>) -> bool {
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

async fn lanes_loop(
    client: Client,
    config: Config,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let notify = Arc::new(Notify::new());
    let mut tasks = JoinSet::new();
    trigger(
        Api::<Service>::all(client.clone()),
        notify.clone(),
        &mut tasks,
        stop.clone(),
    );
    trigger(
        Api::<Pod>::all(client.clone()),
        notify.clone(),
        &mut tasks,
        stop.clone(),
    );
    trigger(
        Api::<ASMSwimLaneGroup>::all(client.clone()),
        notify.clone(),
        &mut tasks,
        stop.clone(),
    );
    trigger(
        Api::<ASMSwimLane>::all(client.clone()),
        notify.clone(),
        &mut tasks,
        stop.clone(),
    );
    for kind in ["VirtualService", "DestinationRule"] {
        let ar = crate::lanes::istio_resource(kind);
        trigger(
            Api::<DynamicObject>::all_with(client.clone(), &ar),
            notify.clone(),
            &mut tasks,
            stop.clone(),
        );
    }
    let mut wait = Duration::ZERO;
    while next_round(&notify, wait, &mut stop).await {
        match crate::lanes::reconcile(&client, config.flavor).await {
            Ok(c) => {
                metrics.reconciled("lanes", true);
                metrics
                    .generated
                    .set((c.applied.len() + c.unchanged.len()) as i64);
                for k in &c.applied {
                    tracing::info!(object = %k, "lane controller: applied");
                }
                for k in &c.deleted {
                    tracing::info!(object = %k, "lane controller: deleted");
                }
                wait = config.resync;
            }
            Err(e) => {
                metrics.reconciled("lanes", false);
                tracing::warn!(error = %e, "lane controller");
                wait = Duration::from_secs(2);
            }
        }
    }
    tasks.shutdown().await;
}

async fn rollouts_loop(
    client: Client,
    config: Config,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let notify = Arc::new(Notify::new());
    let mut tasks = JoinSet::new();
    trigger(
        Api::<Rollout>::all(client.clone()),
        notify.clone(),
        &mut tasks,
        stop.clone(),
    );
    trigger(
        Api::<Deployment>::all(client.clone()),
        notify.clone(),
        &mut tasks,
        stop.clone(),
    );
    let mut wait = Duration::ZERO;
    while next_round(&notify, wait, &mut stop).await {
        let (ok, progressing) = rollouts_round(&client, &metrics).await;
        // Timed pauses and analysis need a look soon even without events.
        wait = if !ok || progressing {
            Duration::from_secs(2)
        } else {
            config.resync
        };
    }
    tasks.shutdown().await;
}

/// Reconciles every Rollout, then stands down orphaned releases. Returns (all ok, any
/// release progressing).
async fn rollouts_round(client: &Client, metrics: &Metrics) -> (bool, bool) {
    let list = match Api::<Rollout>::all(client.clone())
        .list(&Default::default())
        .await
    {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "rollout controller: list Rollouts");
            metrics.reconciled("rollouts", false);
            return (false, false);
        }
    };
    let (mut ok, mut progressing) = (true, false);
    let now = jiff::Timestamp::now();
    for r in &list.items {
        let ns = r.metadata.namespace.clone().unwrap_or_default();
        let name = r.metadata.name.clone().unwrap_or_default();
        match crate::rollouts::reconcile_rollout(client, &ns, &name, now).await {
            Ok(o) => {
                metrics.reconciled("rollouts", true);
                metrics.conflicts.inc_by(o.conflicts as u64);
                progressing |= o.progressing;
                for a in &o.actions {
                    tracing::info!(rollout = %format!("{ns}/{name}"), action = ?a, "rollout controller");
                }
            }
            Err(e) => {
                ok = false;
                metrics.reconciled("rollouts", false);
                tracing::warn!(rollout = %format!("{ns}/{name}"), error = %e, "rollout controller");
            }
        }
    }
    if let Err(e) = crate::rollouts::sweep_orphans(client).await {
        ok = false;
        tracing::warn!(error = %e, "rollout controller: orphaned releases");
    }
    (ok, progressing)
}
