//! The feed of the data plane: whenever lane groups, lanes, Services or Pods change, the
//! route table is compiled from what the store holds and published to the gateway and
//! the sidecars. It writes nothing: the generated VirtualServices and DestinationRules
//! are the lane controller's (`lanes-operator`), through the API.

use std::sync::Arc;
use std::time::Duration;

use std::collections::{BTreeMap, HashMap};

use lanes_compile::{Emit, Flavor, RouteTable, compile_with, creation_key};
use lanes_model::mesh::{PodView, deployment_template_labels};
use lanes_model::{Kind, Object, ObjectKey, Typed};
use lanes_store::{EventType, Store, StoreError, WatchEvent};
use serde_json::Value;
use tokio::sync::{broadcast, watch};

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
const INPUTS: [Kind; 10] = lanes_compile::INPUT_KINDS;

fn is_input(kind: Kind) -> bool {
    INPUTS.contains(&kind)
}

/// Where an object goes in the compiler's input: by kind (in [`INPUTS`] order), then
/// in creation order, ties by namespace (the order a list gives).
type Position = (usize, (i64, String), Option<String>);

/// One input object, decoded and validated once per version.
#[derive(Debug)]
struct Entry {
    object: Object,
    pod: Option<PodView>,
}

/// The route feed's memory between changes: every input object decoded and validated
/// once, then kept in compile order, so a change costs one object's decoding and one
/// compile of the route table, not a read and validation of the whole store.
#[derive(Debug)]
pub struct RouteFeed {
    flavor: Flavor,
    entries: BTreeMap<Position, Entry>,
    positions: HashMap<ObjectKey, Position>,
    /// Per input kind, the store version its last full list reflected.
    listed: [u64; INPUTS.len()],
    resource_version: u64,
}

impl RouteFeed {
    /// An empty feed.
    pub fn new(flavor: Flavor) -> RouteFeed {
        RouteFeed {
            flavor,
            entries: BTreeMap::new(),
            positions: HashMap::new(),
            listed: [0; INPUTS.len()],
            resource_version: 0,
        }
    }

    /// Reads every input object from the store afresh.
    pub fn refresh(&mut self, store: &Store) -> Result<Snapshot, StoreError> {
        self.entries.clear();
        self.positions.clear();
        for (i, kind) in INPUTS.into_iter().enumerate() {
            let (values, rv) = store.list(kind, None)?;
            self.listed[i] = rv;
            self.resource_version = self.resource_version.max(rv);
            for v in values {
                self.put(v);
            }
        }
        Ok(self.snapshot())
    }

    /// Takes in one change from a watch; whether it concerned the route table. A change
    /// the last full list already reflected is skipped.
    pub fn apply(&mut self, event: &WatchEvent) -> bool {
        let Some(key) = event.key() else {
            return false;
        };
        let Some(i) = INPUTS.iter().position(|k| *k == key.kind) else {
            return false;
        };
        if event.resource_version <= self.listed[i] {
            return false;
        }
        self.resource_version = self.resource_version.max(event.resource_version);
        let old = self
            .positions
            .remove(&key)
            .and_then(|p| self.entries.remove(&p));
        if event.kind == EventType::Deleted {
            return true;
        }
        self.put(event.object.clone());
        // A Deployment's status, or a Rollout's between steps, changes no route.
        let new = self.positions.get(&key).and_then(|p| self.entries.get(p));
        match (old, new) {
            (Some(old), Some(new)) => !same_routes(&old.object, &new.object),
            (None, None) => false,
            _ => true,
        }
    }

    /// Stores one object, when it validates (the lane controller leaves out those that
    /// do not, and so does the route table).
    fn put(&mut self, value: Value) {
        let Ok(object) = Object::from_value(value) else {
            return;
        };
        let Some(kind) = INPUTS.iter().position(|k| *k == object.kind) else {
            return;
        };
        let position = (kind, creation_key(&object), object.namespace.clone());
        let pod = PodView::from_object(&object);
        if let Some(old) = self.positions.insert(object.key(), position.clone()) {
            self.entries.remove(&old);
        }
        self.entries.insert(position, Entry { object, pod });
    }

    /// The route table compiled from what the feed holds.
    pub fn snapshot(&self) -> Snapshot {
        let refs: Vec<&Object> = self.entries.values().map(|e| &e.object).collect();
        let pods: Vec<PodView> = self
            .entries
            .values()
            .filter_map(|e| e.pod.clone())
            .collect();
        let out = compile_with(&refs, &pods, self.flavor, Emit::RoutesOnly);
        Snapshot {
            routes: out.routes,
            pods,
            resource_version: self.resource_version,
        }
    }
}

/// Whether two versions of an object route alike: a Deployment with the same pod
/// template labels, a Rollout with the same spec at the same routed step, a LaneRelease
/// with the same spec and share that withdraws the same canaries. Other kinds are taken
/// as changed.
fn same_routes(old: &Object, new: &Object) -> bool {
    match (&old.typed, &new.typed) {
        (Typed::Deployment(_), Typed::Deployment(_)) => {
            deployment_template_labels(old) == deployment_template_labels(new)
        }
        (Typed::Rollout(a), Typed::Rollout(b)) => {
            a.spec == b.spec && a.routed_step().map(|(i, _)| i) == b.routed_step().map(|(i, _)| i)
        }
        (Typed::LaneRelease(a), Typed::LaneRelease(b)) => {
            a.spec == b.spec
                && a.traffic_percent() == b.traffic_percent()
                && a.withdrawn_members() == b.withdrawn_members()
        }
        _ => false,
    }
}

/// Compiles the route table from the store (objects that do not validate are left out,
/// as the lane controller leaves them out).
pub fn snapshot(store: &Store, flavor: Flavor) -> Result<Snapshot, StoreError> {
    RouteFeed::new(flavor).refresh(store)
}

/// Publishes `snapshot` unless it routes as the current one does.
fn publish_if_changed(publish: &watch::Sender<Arc<Snapshot>>, snapshot: Snapshot) {
    publish.send_if_modified(|current| {
        let changed = current.routes != snapshot.routes || current.pods != snapshot.pods;
        if changed {
            *current = Arc::new(snapshot);
        }
        changed
    });
}

/// Publishes a fresh snapshot on `publish` at start and after every change of an input
/// (changes arriving together are taken in at once), and reads the store afresh every
/// `RESYNC` and whenever the watch falls behind, until `shutdown`.
pub async fn run(
    store: Arc<Store>,
    flavor: Flavor,
    publish: watch::Sender<Arc<Snapshot>>,
    mut shutdown: watch::Receiver<bool>,
) {
    const RESYNC: Duration = Duration::from_secs(30);
    let mut feed = RouteFeed::new(flavor);
    loop {
        let subscribed = store.resource_version().and_then(|rv| store.watch(rv));
        let refreshed = match subscribed {
            Ok((_, rx)) => blocking(feed, {
                let store = store.clone();
                move |f| f.refresh(&store)
            })
            .await
            .map(|(f, r)| (f, r, rx)),
            Err(e) => Err((RouteFeed::new(flavor), e)),
        };
        let mut rx = match refreshed {
            Ok((f, snapshot, rx)) => {
                feed = f;
                publish_if_changed(&publish, snapshot);
                rx
            }
            Err((f, e)) => {
                feed = f;
                tracing::error!(controller = "routes", error = %e, "reading the store failed");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = shutdown.changed() => return,
                }
            }
        };
        let resync = tokio::time::sleep(RESYNC);
        tokio::pin!(resync);
        loop {
            let event = tokio::select! {
                e = rx.recv() => e,
                _ = &mut resync => break,
                _ = shutdown.changed() => return,
            };
            let Ok(event) = event else {
                break; // Fell behind: read the store afresh.
            };
            if !event.key().is_some_and(|k| is_input(k.kind)) {
                continue;
            }
            // Changes that arrive together (a rollout step, an apply) compile once.
            tokio::time::sleep(Duration::from_millis(20)).await;
            let mut changed = feed.apply(&event);
            let mut behind = false;
            loop {
                match rx.try_recv() {
                    Ok(e) => changed |= feed.apply(&e),
                    Err(broadcast::error::TryRecvError::Empty) => break,
                    Err(_) => {
                        behind = true;
                        break;
                    }
                }
            }
            if behind {
                break;
            }
            if changed {
                match blocking(feed, |f| Ok::<_, StoreError>(f.snapshot())).await {
                    Ok((f, snapshot)) => {
                        feed = f;
                        publish_if_changed(&publish, snapshot);
                    }
                    Err((f, _)) => feed = f,
                }
            }
        }
    }
}

/// Runs `f` on the feed off the async threads, and hands the feed back.
async fn blocking<T: Send + 'static>(
    mut feed: RouteFeed,
    f: impl FnOnce(&mut RouteFeed) -> Result<T, StoreError> + Send + 'static,
) -> Result<(RouteFeed, T), (RouteFeed, StoreError)> {
    let flavor = feed.flavor;
    match tokio::task::spawn_blocking(move || {
        let r = f(&mut feed);
        (feed, r)
    })
    .await
    {
        Ok((feed, Ok(t))) => Ok((feed, t)),
        Ok((feed, Err(e))) => Err((feed, e)),
        Err(join) => Err((
            RouteFeed::new(flavor),
            StoreError::Invalid(format!("route feed task failed: {join}")),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lanes_model::synthetic::{NAMESPACE, Shape};
    use serde_json::json;

    fn key(kind: Kind, name: &str) -> ObjectKey {
        ObjectKey {
            kind,
            namespace: Some(NAMESPACE.to_string()),
            name: name.to_string(),
        }
    }

    fn loaded_store(dir: &tempfile::TempDir) -> Store {
        let store = Store::open(&dir.path().join("lanes.redb")).unwrap();
        let shape = Shape {
            services: 6,
            lanes: 4,
            pods: true,
        };
        crate::synthetic::load(&store, shape).unwrap();
        store
    }

    /// Every change a watch delivered since `rx` was made, applied to `feed`.
    fn drain(feed: &mut RouteFeed, rx: &mut broadcast::Receiver<WatchEvent>) -> usize {
        let mut applied = 0;
        while let Ok(e) = rx.try_recv() {
            applied += usize::from(feed.apply(&e));
        }
        applied
    }

    #[test]
    fn changes_applied_one_by_one_route_as_a_fresh_read_of_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = loaded_store(&dir);
        let (_, mut rx) = store.watch(store.resource_version().unwrap()).unwrap();
        let mut feed = RouteFeed::new(Flavor::Asm);
        let first = feed.refresh(&store).unwrap();
        assert_eq!(first, snapshot(&store, Flavor::Asm).unwrap());

        // A canary pod turns unready, another goes, a lane goes, a Service becomes
        // invalid, a new pod arrives in a lane that had none of its service.
        let unready = json!({"phase": "Running", "podIP": "10.0.0.2",
            "conditions": [{"type": "Ready", "status": "False"}]});
        store
            .write(|txn| {
                txn.replace_status(&key(Kind::Pod, "svc-00000-lane-01-2"), unready, None)?;
                txn.delete(&key(Kind::Pod, "svc-00001-lane-02-2"), None)?;
                let lane = ObjectKey {
                    namespace: None,
                    ..key(Kind::Lane, "lane-03")
                };
                txn.delete(&lane, None)?;
                Ok(())
            })
            .unwrap();
        let pod = lanes_model::synthetic::pod(4, "lane-02", 7);
        let (added, diags) = lanes_model::decode_str("new", &pod);
        assert!(diags.is_empty(), "{diags:?}");
        store.write(|txn| txn.create(&added[0].object)).unwrap();
        let applied = drain(&mut feed, &mut rx);
        assert_eq!(applied, 4);
        let after = feed.snapshot();
        assert_eq!(after, snapshot(&store, Flavor::Asm).unwrap());
        assert_ne!(after.routes, first.routes);
        let svc4 = &after.routes.groups[0].services[4];
        assert!(svc4.subsets.iter().any(|s| s.name == "lane-02"), "{svc4:?}");
        assert!(
            after.routes.groups[0]
                .lanes
                .iter()
                .all(|l| l.name != "lane-03")
        );
    }

    #[test]
    fn changes_the_last_list_reflected_are_not_applied_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = loaded_store(&dir);
        let (_, mut rx) = store.watch(store.resource_version().unwrap()).unwrap();
        store
            .write(|txn| txn.delete(&key(Kind::Pod, "svc-00002-base-0"), None))
            .unwrap();
        let mut feed = RouteFeed::new(Flavor::Asm);
        let listed = feed.refresh(&store).unwrap();
        assert_eq!(drain(&mut feed, &mut rx), 0);
        assert_eq!(feed.snapshot(), listed);
        assert!(listed.pods.iter().all(|p| p.name != "svc-00002-base-0"));
    }
}
