//! Where the map comes from: the Kubernetes API (the kinds the route table is compiled
//! from), compiled as the data plane's route table is, and published when it changes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, ListParams, TypeMeta};
use kube::core::GroupVersionKind;
use lanes_compile::{Emit, Flavor, compile_with};
use lanes_model::mesh::PodView;
use lanes_model::{Object, Typed};
use tokio::sync::{Notify, watch};

use k8s_openapi::api::core::v1::Event;

use crate::map::{LanesMap, MapPod, lanes_map};
use crate::releases::EventLine;
use crate::traffic::{History, TrafficSource};

/// The map now, read from the API (a kind the API does not serve, a CRD not installed,
/// counts as none; an object that does not validate is left out, as the controllers
/// leave it out).
pub async fn read(client: &kube::Client) -> Result<LanesMap, kube::Error> {
    let mut objects = Vec::new();
    for kind in lanes_compile::INPUT_KINDS {
        let info = kind.info();
        let gvk = GroupVersionKind::gvk(info.group, info.version, info.name);
        let ar = ApiResource::from_gvk_with_plural(&gvk, info.plural);
        let listed = Api::<DynamicObject>::all_with(client.clone(), &ar)
            .list(&ListParams::default())
            .await;
        let items = match listed {
            Ok(list) => list.items,
            Err(kube::Error::Api(s)) if s.code == 404 => continue,
            Err(e) => return Err(e),
        };
        for mut item in items {
            item.types = Some(TypeMeta {
                api_version: ar.api_version.clone(),
                kind: ar.kind.clone(),
            });
            if let Some(o) = serde_json::to_value(&item)
                .ok()
                .and_then(|v| Object::from_value(v).ok())
            {
                objects.push(o);
            }
        }
    }
    let events = release_events(client).await?;
    Ok(map_of(&objects, &events))
}

/// The Events about Rollouts and LaneReleases (none where the API keeps no Events).
async fn release_events(client: &kube::Client) -> Result<Vec<EventLine>, kube::Error> {
    let listed = Api::<Event>::all(client.clone())
        .list(&ListParams::default())
        .await;
    let items = match listed {
        Ok(list) => list.items,
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(items
        .into_iter()
        .filter_map(|e| {
            let about = &e.involved_object;
            let kind = about.kind.clone()?;
            if kind != "Rollout" && kind != "LaneRelease" {
                return None;
            }
            let time = e
                .last_timestamp
                .map(|t| t.0.to_string())
                .or_else(|| e.event_time.map(|t| t.0.to_string()))
                .or_else(|| e.metadata.creation_timestamp.map(|t| t.0.to_string()))
                .unwrap_or_default();
            Some(EventLine {
                kind,
                namespace: about.namespace.clone().unwrap_or_default(),
                name: about.name.clone().unwrap_or_default(),
                kind_of: e.type_.unwrap_or_default(),
                reason: e.reason.unwrap_or_default(),
                message: e.message.unwrap_or_default(),
                time,
            })
        })
        .collect())
}

/// The map of `objects`, its releases with `events`.
pub fn map_of(objects: &[Object], events: &[EventLine]) -> LanesMap {
    let views: Vec<PodView> = objects.iter().filter_map(PodView::from_object).collect();
    let pods: Vec<MapPod> = objects.iter().filter_map(map_pod).collect();
    let refs: Vec<&Object> = objects.iter().collect();
    let table = compile_with(&refs, &views, Flavor::default(), Emit::RoutesOnly).routes;
    let mut map = lanes_map(&table, &pods);
    map.releases = crate::releases::release_rows(objects, events);
    map
}

fn map_pod(o: &Object) -> Option<MapPod> {
    let Typed::Pod(p) = &o.typed else {
        return None;
    };
    let view = PodView::from_object(o)?;
    let images = p
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .filter_map(|c| c.image.clone())
        .collect();
    Some(MapPod {
        namespace: view.namespace,
        labels: view.labels,
        ready: view.ready,
        images,
    })
}

/// The map as JSON, for the page.
pub type MapJson = Arc<str>;

/// How many pages follow the maps; a new one wakes the reader at once.
#[derive(Debug, Clone, Default)]
pub struct Followers(Arc<FollowersInner>);

/// The count of followers, and the wake-up of a new one.
#[derive(Debug, Default)]
struct FollowersInner {
    count: AtomicUsize,
    arrived: Notify,
}

impl Followers {
    /// One more follows, until the guard is dropped.
    pub fn follow(&self) -> Following {
        self.0.count.fetch_add(1, Ordering::Relaxed);
        self.0.arrived.notify_one();
        Following(self.0.clone())
    }

    /// Whether any page follows.
    pub fn any(&self) -> bool {
        self.0.count.load(Ordering::Relaxed) > 0
    }
}

/// A page following the maps; it stops when this is dropped.
#[derive(Debug)]
pub struct Following(Arc<FollowersInner>);

impl Drop for Following {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::Relaxed);
    }
}

/// While a page follows the maps, reads the map every `every` (and the live traffic
/// from `traffic`, when there is a source) and publishes it (as JSON) on `publish` when
/// it changed, until `stop` turns true. Nothing is read while no page is open.
pub async fn run(
    client: kube::Client,
    every: Duration,
    traffic: Option<Arc<dyn TrafficSource>>,
    publish: watch::Sender<MapJson>,
    followers: Followers,
    mut stop: watch::Receiver<bool>,
) {
    let mut history = History::default();
    // A page that just arrived is sent the map read for it, changed or not.
    let mut arrived = false;
    loop {
        if followers.any() {
            if let Some(t) = &traffic {
                // Unix time: a client can line its own counts up with the window.
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                history.push(now, t.cells());
            }
            refresh(&client, &history, &publish, arrived).await;
        }
        arrived = tokio::select! {
            _ = tokio::time::sleep(every) => false,
            _ = followers.0.arrived.notified() => true,
            _ = stop.wait_for(|s| *s) => return,
        };
    }
}

/// Reads the map, with the traffic in `history`, and publishes it if it changed (or
/// `always`).
async fn refresh(
    client: &kube::Client,
    history: &History,
    publish: &watch::Sender<MapJson>,
    always: bool,
) {
    let read = read(client).await;
    let json = match read.map(|m| serde_json::to_string(&m.with_traffic(history))) {
        Ok(Ok(json)) => json,
        Ok(Err(e)) => return tracing::warn!(error = %e, "cannot encode the lanes map"),
        Err(e) => return tracing::warn!(error = %e, "cannot read the lanes map from the API"),
    };
    publish.send_if_modified(|cur| {
        let changed = **cur != *json;
        if changed {
            *cur = json.into();
        }
        changed || always
    });
}
