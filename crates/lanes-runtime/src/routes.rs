//! The feed of the data plane: whenever lane groups, lanes, Services or Pods change, the
//! route table is compiled from what the store holds and published to the gateway and
//! the sidecars. It writes nothing: the generated VirtualServices and DestinationRules
//! are the lane controller's (`lanes-operator`), through the API.

use std::sync::Arc;
use std::time::Duration;

use lanes_compile::{Flavor, RouteTable, compile, in_creation_order};
use lanes_model::mesh::PodView;
use lanes_model::{Kind, Object};
use lanes_store::{Store, StoreError};
use tokio::sync::watch;

/// What the data plane needs: the route table and the pods it was compiled with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// The route table.
    pub routes: RouteTable,
    /// Every pod, with readiness and address.
    pub pods: Vec<PodView>,
    /// The store version the snapshot reflects.
    pub resource_version: u64,
}

/// The kinds the route table is compiled from.
const INPUTS: [Kind; 4] = [Kind::Service, Kind::Pod, Kind::LaneGroup, Kind::Lane];

fn is_input(kind: Kind) -> bool {
    INPUTS.contains(&kind)
}

/// Compiles the route table from the store (objects that do not validate are left out,
/// as the lane controller leaves them out).
pub fn snapshot(store: &Store, flavor: Flavor) -> Result<Snapshot, StoreError> {
    let mut all = Vec::new();
    let mut resource_version = 0;
    for kind in INPUTS {
        let (values, rv) = store.list(kind, None)?;
        resource_version = resource_version.max(rv);
        let mut objects: Vec<Object> = values
            .into_iter()
            .filter_map(|v| Object::from_value(v).ok())
            .collect();
        in_creation_order(&mut objects);
        all.extend(objects);
    }
    let pods: Vec<PodView> = all.iter().filter_map(PodView::from_object).collect();
    let refs: Vec<&Object> = all.iter().collect();
    let out = compile(&refs, &pods, flavor);
    Ok(Snapshot {
        routes: out.routes,
        pods,
        resource_version,
    })
}

/// Publishes a fresh snapshot on `publish` at start and after every change of an input,
/// until `shutdown`.
pub async fn run(
    store: Arc<Store>,
    flavor: Flavor,
    publish: watch::Sender<Arc<Snapshot>>,
    shutdown: watch::Receiver<bool>,
) {
    crate::controller::run(
        "routes",
        store,
        is_input,
        Duration::from_secs(30),
        move |store: &Store| {
            let snapshot = snapshot(store, flavor)?;
            publish.send_if_modified(|current| {
                let changed = current.routes != snapshot.routes || current.pods != snapshot.pods;
                if changed {
                    *current = Arc::new(snapshot);
                }
                changed
            });
            Ok(())
        },
        shutdown,
    )
    .await;
}
