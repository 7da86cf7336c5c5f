//! The loop every embedded controller runs: reconcile at start, then again whenever the
//! store changes an object of a kind it cares about (changes arriving together are
//! handled once), and every `resync` regardless. Level-triggered: a reconcile reads what
//! is, not what changed, so a missed event costs nothing but time.

use std::sync::Arc;
use std::time::Duration;

use lanes_model::Kind;
use lanes_store::{Store, StoreError};
use tokio::sync::watch;

/// Runs `reconcile` on the store's changes until `shutdown`.
pub async fn run<F>(
    name: &'static str,
    store: Arc<Store>,
    relevant: fn(Kind) -> bool,
    resync: Duration,
    reconcile: F,
    mut shutdown: watch::Receiver<bool>,
) where
    F: Fn(&Store) -> Result<(), StoreError> + Send + Sync + 'static,
{
    let reconcile = Arc::new(reconcile);
    let once = |store: Arc<Store>, reconcile: Arc<F>| async move {
        match tokio::task::spawn_blocking(move || reconcile(&store)).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::error!(controller = name, error = %e, "reconcile failed");
                false
            }
            Err(_) => false,
        }
    };
    loop {
        let Ok(mut rx) = store
            .resource_version()
            .and_then(|rv| store.watch(rv))
            .map(|(_, rx)| rx)
        else {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                _ = shutdown.changed() => return,
            }
        };
        once(store.clone(), reconcile.clone()).await;
        loop {
            let event = tokio::select! {
                e = rx.recv() => e,
                _ = tokio::time::sleep(resync) => {
                    once(store.clone(), reconcile.clone()).await;
                    continue;
                }
                _ = shutdown.changed() => return,
            };
            match event {
                Ok(e) if e.key().is_some_and(|k| relevant(k.kind)) => {}
                Ok(_) => continue,
                // Fell behind: start over with a fresh watch and a full reconcile.
                Err(_) => break,
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            while rx.try_recv().is_ok() {}
            if !once(store.clone(), reconcile.clone()).await {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    }
}
