//! The lane controller's reconcile: one lane group at a time, with the lanes, Services
//! and Pods it reads, compiled exactly as the route table of `lanes up` is; every
//! generated VirtualService and DestinationRule is server-side applied (field manager
//! `lanes`, owned by its group) and the group's ones no longer generated are deleted.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};
use lanes_compile::release::{ReleaseInput, Releases, Withdrawal};
use lanes_compile::{Flavor, Generated, GeneratedKind};
use lanes_model::lane::{ASMSwimLane, ASMSwimLaneGroup, GROUP_LABEL};
use lanes_model::lane_release::LaneRelease;
use lanes_model::rollout::Rollout;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::held::{Compiled, Held};
use crate::{Error, FIELD_MANAGER, is_not_found, kube_err, to_value};

/// What one reconcile did, as `Kind namespace/name` per object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Generated objects applied because they were missing or differed.
    pub applied: Vec<String>,
    /// How many generated objects were already as generated (not written).
    pub unchanged: usize,
    /// Generated objects deleted.
    pub deleted: Vec<String>,
    /// Inputs skipped because they do not validate, with why.
    pub skipped: Vec<String>,
    /// Lane groups left as they stand because the group or one of its lanes does not
    /// validate: their objects are neither rewritten nor deleted until it is fixed.
    pub frozen: Vec<String>,
}

/// The label selector of the objects the lane controller generated.
pub const GENERATED_SELECTOR: &str = "asm-system=true,swimlane-group";

/// The label selector of what the lane controller generates for lane group `group`.
pub fn generated_for(group: &str) -> String {
    format!("{GENERATED_SELECTOR}={group}")
}

/// The API resource of a generated kind (`VirtualService`, `DestinationRule`).
pub fn istio_resource(kind: &'static str) -> ApiResource {
    generated_resource(GeneratedKind::istio(kind))
}

/// The API resource of a kind the compiler generates.
pub fn generated_resource(k: GeneratedKind) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(k.group, k.version, k.kind))
}

/// Reads the inputs (Services, Pods, lanes, Rollouts and their Deployments,
/// LaneReleases) with one LIST per kind.
pub async fn list_inputs(client: &Client, flavor: Flavor) -> Result<Held, Error> {
    let mut held = Held::new(flavor);
    held.replace::<Service, _>(list::<Service>(client).await?)?;
    held.replace::<Pod, _>(list::<Pod>(client).await?)?;
    held.replace::<ASMSwimLane, _>(list::<ASMSwimLane>(client).await?)?;
    let rollouts = list::<Rollout>(client).await?;
    let deployments = list::<Deployment>(client).await?;
    let lane_releases = lane_releases(client).await?;
    held.set_releases(releases_of(
        rollouts.iter(),
        |ns, name| {
            deployments
                .iter()
                .find(|d| d.namespace().as_deref() == Some(ns) && d.name_any() == name)
                .cloned()
        },
        lane_releases.iter(),
    ));
    Ok(held)
}

/// Whether the API server serves LaneReleases: their CRD is installed (an error other
/// than a 404 says nothing against it).
pub async fn serves_lane_releases(client: &Client) -> bool {
    let found = Api::<LaneRelease>::all(client.clone())
        .list(&ListParams::default().limit(1))
        .await;
    !matches!(found, Err(ref e) if is_not_found(e))
}

/// Every LaneRelease; none on a cluster without their CRD (a 404).
async fn lane_releases(client: &Client) -> Result<Vec<LaneRelease>, Error> {
    match Api::<LaneRelease>::all(client.clone())
        .list(&ListParams::default())
        .await
    {
        Ok(list) => Ok(list.items),
        Err(e) if is_not_found(&e) => Ok(Vec::new()),
        Err(e) => Err(kube_err("list lanereleases")(e)),
    }
}

/// The releases whose steps route traffic: each Rollout with the pod labels of the
/// Deployment it names (`deployment` finds it by namespace and name), in creation order;
/// then each LaneRelease whose steps route traffic now, in creation order. And the
/// canaries each LaneRelease withdraws from its lane now.
pub fn releases_of<'a>(
    rollouts: impl Iterator<Item = &'a Rollout>,
    deployment: impl Fn(&str, &str) -> Option<Deployment>,
    lane_releases: impl Iterator<Item = &'a LaneRelease>,
) -> Releases {
    let rollouts: Vec<&Rollout> = rollouts.collect();
    let template = |r: &Rollout| {
        let ns = r.namespace().unwrap_or_default();
        deployment(&ns, &r.spec.workload_ref.name)?
            .spec?
            .template
            .metadata?
            .labels
    };
    let mut found: Vec<(Option<Time>, String, ReleaseInput)> = rollouts
        .iter()
        .filter(|r| r.routes_traffic())
        .filter_map(|r| {
            let release = ReleaseInput::of(r, &template(r)?)?;
            Some((r.creation_timestamp(), r.name_any(), release))
        })
        .collect();
    found.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let mut lane_releases: Vec<&LaneRelease> = lane_releases.collect();
    lane_releases.sort_by_key(|lr| (lr.creation_timestamp(), lr.name_any()));
    let pinned = lane_releases
        .iter()
        .filter_map(|lr| ReleaseInput::of_lane_release(lr));
    let withdrawn = lane_releases
        .iter()
        .filter_map(|lr| {
            let ns = lr.namespace();
            Withdrawal::of_lane_release(lr, |name| {
                let r = rollouts
                    .iter()
                    .find(|r| r.namespace() == ns && r.name_any() == name)?;
                Some(r.canary_pod_labels(&template(r)?))
            })
        })
        .collect();
    Releases {
        routed: found.into_iter().map(|(_, _, r)| r).chain(pinned).collect(),
        withdrawn,
    }
}

async fn list<K>(client: &Client) -> Result<Vec<K>, Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let api: Api<K> = Api::all(client.clone());
    Ok(api
        .list(&ListParams::default())
        .await
        .map_err(kube_err(format!("list {}", K::plural(&()))))?
        .items)
}

/// `Kind namespace/name`, as [`Changes`] lists objects (and as `converge` writes it).
fn key_of(kind: &str, ns: &str, name: &str) -> String {
    format!("{kind} {ns}/{name}")
}

/// The lane controller's watch caches of the objects it generated (those with the
/// [`GENERATED_SELECTOR`] labels), and what it knows of them.
pub struct GeneratedCache {
    /// Per generated kind (by name), its cache.
    stores: [(&'static str, Store<DynamicObject>); 2],
    memo: Arc<Memo>,
}

/// A generated object, as `Kind namespace/name` ([`key_of`]); shared, so that carrying
/// it from one reconcile to the next copies nothing.
type Id = Arc<str>;

/// Per generated object: the resourceVersion it was last found up to date at, the owner
/// uid and the object desired then. While none of them moves the object is not
/// compared again. Shared, so that carrying an entry from one reconcile to the next
/// copies no object.
type Found = HashMap<Id, Finding>;

/// One entry of [`Found`]: resourceVersion, owner uid, the object desired.
type Finding = Arc<(String, Option<String>, Arc<Generated>)>;

/// The versions a reconcile's own writes made, per generated object.
type Written = HashMap<Id, String>;

/// What the lane controller knows of the objects it generated: per lane group, what it
/// last found up to date, and the versions its latest reconcile's writes made.
#[derive(Default)]
pub struct Memo {
    found: Mutex<HashMap<String, Arc<Found>>>,
    written: Mutex<HashMap<String, Written>>,
}

/// What one reconcile of a group learns for the [`Memo`].
#[derive(Default)]
struct Learned {
    found: Found,
    written: Written,
}

fn id_of(kind: &str, o: &DynamicObject) -> String {
    let ns = o.metadata.namespace.as_deref().unwrap_or_default();
    key_of(kind, ns, o.metadata.name.as_deref().unwrap_or_default())
}

impl Memo {
    /// Whether `o`, as a watch cache now holds it, is as this controller last found or
    /// wrote it: a change it does not know (an edit by someone else) needs a reconcile.
    pub fn knows(&self, kind: &str, o: &DynamicObject) -> bool {
        let (Some(version), Some(group)) = (o.resource_version(), group_of(o)) else {
            return false;
        };
        let id = id_of(kind, o);
        let wrote = self.written.lock().is_ok_and(|w| {
            w.get(group)
                .and_then(|written| written.get(id.as_str()))
                .is_some_and(|v| *v == version)
        });
        wrote
            || self.found.lock().is_ok_and(|f| {
                f.get(group)
                    .and_then(|found| found.get(id.as_str()))
                    .is_some_and(|f| f.0 == version)
            })
    }

    fn found(&self, group: &str) -> Arc<Found> {
        self.found
            .lock()
            .ok()
            .and_then(|all| all.get(group).cloned())
            .unwrap_or_default()
    }

    /// Keeps what a reconcile of `group` learned, in place of what the one before did:
    /// an object an earlier reconcile wrote is now found, written again or gone.
    fn keep(&self, group: &str, learned: Learned) {
        if let Ok(mut all) = self.written.lock() {
            all.insert(group.to_string(), learned.written);
        }
        if let Ok(mut all) = self.found.lock() {
            all.insert(group.to_string(), Arc::new(learned.found));
        }
    }

    /// Records a write as soon as it is made: its watch event may come before the
    /// reconcile ends.
    fn wrote(&self, group: &str, id: Id, version: String) {
        if let Ok(mut all) = self.written.lock() {
            all.entry(group.to_string())
                .or_default()
                .insert(id, version);
        }
    }
}

impl GeneratedCache {
    /// The caches of the two generated kinds (VirtualServices and DestinationRules,
    /// or HTTPRoutes and Services), and the memo their watches consult.
    pub fn new(
        stores: [(&'static str, Store<DynamicObject>); 2],
        memo: Arc<Memo>,
    ) -> GeneratedCache {
        GeneratedCache { stores, memo }
    }

    /// The cache of generated objects of `kind`.
    pub fn store(&self, kind: &str) -> &Store<DynamicObject> {
        match &self.stores {
            [(k, s), _] if *k == kind => s,
            [_, (_, s)] => s,
        }
    }

    /// Forgets what is known of the lane groups not among `groups`.
    pub fn retain(&self, groups: impl Fn(&str) -> bool) {
        if let Ok(mut found) = self.memo.found.lock() {
            found.retain(|g, _| groups(g));
        }
        if let Ok(mut written) = self.memo.written.lock() {
            written.retain(|g, _| groups(g));
        }
    }
}

/// Where a reconcile reads the objects generated for its group before.
#[derive(Clone, Copy)]
pub enum Existing<'a> {
    /// One LIST per kind, by the group's label.
    Listed,
    /// The lane controller's watch caches. They may lag the writes a reconcile just
    /// made; the next reconcile then applies an object again as it stands, or finds one
    /// deleted already, and the result is the same.
    Cached(&'a GeneratedCache),
}

/// Whether `current` already carries everything `desired` sets (spec, labels and owner).
fn up_to_date(current: &Value, desired: &Value) -> bool {
    let labels_kept = desired
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .is_none_or(|want| {
            want.iter()
                .all(|(k, v)| current.pointer("/metadata/labels").and_then(|l| l.get(k)) == Some(v))
        });
    let owners_kept = desired
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_none_or(|want| {
            let have = current
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array);
            want.iter()
                .all(|w| have.is_some_and(|h| h.iter().any(|o| o.get("uid") == w.get("uid"))))
        });
    labels_kept && owners_kept && current.get("spec") == desired.get("spec")
}

/// The label selector of the objects generated for lane group `group`.
pub fn generated_by(group: &str) -> String {
    format!("asm-system=true,{GROUP_LABEL}={group}")
}

/// The lane group an object was generated for, by its `swimlane-group` label.
pub fn group_of<K: Resource>(o: &K) -> Option<&str> {
    o.meta()
        .labels
        .as_ref()
        .and_then(|l| l.get(GROUP_LABEL))
        .map(String::as_str)
}

/// One reconcile of every lane group in the cluster, reading the inputs with LISTs:
/// each group as [`reconcile_group`] does it, then [`sweep`] for groups that are gone.
pub async fn reconcile(client: &Client, flavor: Flavor) -> Result<Changes, Error> {
    let mut inputs = list_inputs(client, flavor).await?;
    let groups = list::<ASMSwimLaneGroup>(client).await?;
    let mut all = Changes::default();
    for group in &groups {
        let compiled = inputs.compile(group)?;
        let c = reconcile_group(client, group, &compiled, Existing::Listed).await?;
        all.applied.extend(c.applied);
        all.unchanged += c.unchanged;
        all.deleted.extend(c.deleted);
        all.frozen.extend(c.frozen);
        for s in c.skipped {
            if !all.skipped.contains(&s) {
                all.skipped.push(s);
            }
        }
    }
    let names: BTreeSet<String> = groups.iter().map(ResourceExt::name_any).collect();
    all.deleted.extend(sweep(client, &names, flavor).await?);
    Ok(all)
}

/// One reconcile of lane group `group`, as compiled from its inputs ([`Held::compile`]):
/// apply each generated object that is missing or differs from what `existing` holds
/// (owned by the group, so it goes with it), delete the group's objects it no longer
/// generates, and write the group's status. A group that does not validate, or has a
/// lane that does not, is left as it stands.
pub async fn reconcile_group(
    client: &Client,
    group: &ASMSwimLaneGroup,
    compiled: &Compiled,
    existing: Existing<'_>,
) -> Result<Changes, Error> {
    let name = group.name_any();
    let invalid = &compiled.invalid;
    let mut changes = Changes {
        skipped: compiled.skipped.clone(),
        ..Default::default()
    };
    if invalid.is_empty() {
        let owner = group.controller_owner_ref(&());
        let before = match existing {
            Existing::Cached(cache) => cache.memo.found(&name),
            Existing::Listed => Arc::default(),
        };
        let mut learned = Learned::default();
        for kind in compiled.kinds {
            let desired: Vec<&Arc<Generated>> = compiled
                .objects
                .iter()
                .filter(|g| g.kind() == kind.kind)
                .collect();
            let target = Target {
                kind,
                group: &name,
                owner: owner.as_ref(),
            };
            let memo = (&*before, &mut learned);
            converge(client, &target, &desired, existing, memo, &mut changes).await?;
        }
        if let Existing::Cached(cache) = existing {
            cache.memo.keep(&name, learned);
        }
    } else {
        changes.frozen.push(name.clone());
        tracing::warn!(group = %name, why = %invalid.join("; "),
            "lane controller: group left as it stands until its objects validate");
    }
    crate::group_status::report(client, group, &compiled.objects, invalid).await?;
    Ok(changes)
}

/// `v` with `owner` as its controller owner reference (when the group has a uid).
fn owned(mut v: Value, owner: Option<&OwnerReference>) -> Value {
    if let (Some(meta), Some(owner)) = (v.get_mut("metadata").and_then(Value::as_object_mut), owner)
        && let Ok(o) = serde_json::to_value(owner)
    {
        meta.insert("ownerReferences".into(), Value::Array(vec![o]));
    }
    v
}

/// What one [`converge`] brings to its desired state: the objects of `kind` generated
/// for `group`, owned by `owner`.
struct Target<'a> {
    kind: GeneratedKind,
    group: &'a str,
    owner: Option<&'a OwnerReference>,
}

/// The objects of the target's kind generated for its group before.
async fn current(
    client: &Client,
    t: &Target<'_>,
    existing: Existing<'_>,
) -> Result<Vec<Arc<DynamicObject>>, Error> {
    Ok(match existing {
        Existing::Listed => {
            let ar = generated_resource(t.kind);
            Api::<DynamicObject>::all_with(client.clone(), &ar)
                .list(&ListParams::default().labels(&generated_by(t.group)))
                .await
                .map_err(kube_err(format!("list {}", ar.plural)))?
                .items
                .into_iter()
                .map(Arc::new)
                .collect()
        }
        Existing::Cached(cache) => cache
            .store(t.kind.kind)
            .state()
            .into_iter()
            .filter(|o| group_of(&**o) == Some(t.group))
            .collect(),
    })
}

/// Namespace and name of an object.
fn ns_name(o: &DynamicObject) -> (&str, &str) {
    (
        o.metadata.namespace.as_deref().unwrap_or_default(),
        o.metadata.name.as_deref().unwrap_or_default(),
    )
}

/// Whether `current` already is `desired` as the target owns it: known from `was` (what
/// it was found up to date with before) while neither moved, else compared.
fn found_up_to_date(
    t: &Target<'_>,
    current: &DynamicObject,
    desired: &Arc<Generated>,
    was: Option<&Finding>,
) -> Result<Option<Finding>, Error> {
    let version = current
        .metadata
        .resource_version
        .as_deref()
        .unwrap_or_default();
    let uid = t.owner.map(|o| o.uid.as_str());
    if let Some(was) = was
        && was.0 == version
        && was.1.as_deref() == uid
        && (Arc::ptr_eq(&was.2, desired) || *was.2 == **desired)
    {
        return Ok(Some(was.clone()));
    }
    let have = to_value(t.kind.kind, current)?;
    let now = (
        version.to_string(),
        uid.map(str::to_string),
        desired.clone(),
    );
    Ok(up_to_date(&have, &owned(desired.to_value(), t.owner)).then(|| Arc::new(now)))
}

/// Brings the objects of the target's kind generated for its group to `desired`:
/// deletes those no longer generated, applies those missing or differing. `before` is
/// what the last reconcile found up to date; `learned` gets what this one finds and
/// writes.
async fn converge(
    client: &Client,
    t: &Target<'_>,
    desired: &[&Arc<Generated>],
    existing: Existing<'_>,
    (before, learned): (&Found, &mut Learned),
    changes: &mut Changes,
) -> Result<(), Error> {
    let ar = generated_resource(t.kind);
    let kind = t.kind.kind;
    let objects = current(client, t, existing).await?;
    let current: HashMap<(&str, &str), &DynamicObject> =
        objects.iter().map(|o| (ns_name(o), &**o)).collect();
    let wanted: HashSet<(&str, &str)> = desired
        .iter()
        .map(|g| (g.meta().namespace.as_str(), g.meta().name.as_str()))
        .collect();
    let mut gone: Vec<(&str, &str)> = current
        .keys()
        .filter(|k| !wanted.contains(*k))
        .copied()
        .collect();
    gone.sort_unstable();
    for (ns, name) in gone {
        let api = Api::<DynamicObject>::namespaced_with(client.clone(), ns, &ar);
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => changes.deleted.push(key_of(kind, ns, name)),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(kube_err(format!("delete {kind} {ns}/{name}"))(e)),
        }
    }
    let mut key = String::new();
    for g in desired {
        let (ns, name) = (g.meta().namespace.as_str(), g.meta().name.as_str());
        key.clear();
        let _ = write!(key, "{kind} {ns}/{name}");
        let was = before.get_key_value(key.as_str());
        if let Some(c) = current.get(&(ns, name))
            && let Some(now) = found_up_to_date(t, c, g, was.map(|(_, f)| f))?
        {
            let id = was.map_or_else(|| Id::from(key.as_str()), |(id, _)| id.clone());
            learned.found.insert(id, now);
            changes.unchanged += 1;
            continue;
        }
        let v = owned(g.to_value(), t.owner);
        let api = Api::<DynamicObject>::namespaced_with(client.clone(), ns, &ar);
        let applied = api
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&v),
            )
            .await
            .map_err(kube_err(format!("apply {kind} {ns}/{name}")))?;
        if let (Existing::Cached(cache), Some(version)) = (existing, applied.resource_version()) {
            let id = Id::from(key.as_str());
            cache.memo.wrote(t.group, id.clone(), version.clone());
            learned.written.insert(id, version);
        }
        tracing::info!(object = %key, "lane controller: applied");
        changes.applied.push(key.clone());
    }
    Ok(())
}

/// Deletes the generated objects of lane groups that are gone (not among `groups`):
/// those the garbage collector did not take with their group, as objects generated
/// before they carried an owner reference. Returns what it deleted.
pub async fn sweep(
    client: &Client,
    groups: &BTreeSet<String>,
    flavor: Flavor,
) -> Result<Vec<String>, Error> {
    let mut orphans = Vec::new();
    for generated in flavor.generated_kinds() {
        let (kind, ar) = (generated.kind, generated_resource(generated));
        let existing = Api::<DynamicObject>::all_with(client.clone(), &ar)
            .list(&ListParams::default().labels(GENERATED_SELECTOR))
            .await
            .map_err(kube_err(format!("list {}", ar.plural)))?;
        orphans.extend(
            existing
                .items
                .into_iter()
                .filter(|o| !group_of(o).is_some_and(|g| groups.contains(g)))
                .map(|o| (kind, ar.clone(), o)),
        );
    }
    if orphans.is_empty() {
        return Ok(Vec::new());
    }
    // What was read of the groups may lag (a group just created): confirm first.
    let fresh: BTreeSet<String> = list::<ASMSwimLaneGroup>(client)
        .await?
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    let mut deleted = Vec::new();
    for (kind, ar, o) in orphans {
        if group_of(&o).is_some_and(|g| fresh.contains(g)) {
            continue;
        }
        let (ns, name) = (
            o.metadata.namespace.clone().unwrap_or_default(),
            o.name_any(),
        );
        let api = Api::<DynamicObject>::namespaced_with(client.clone(), &ns, &ar);
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {
                let what = format!("{kind} {ns}/{name}");
                tracing::info!(object = %what, "lane controller: deleted, its group is gone");
                deleted.push(what);
            }
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(kube_err(format!("delete {kind} {ns}/{name}"))(e)),
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn generated_dr(version: &str) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "networking.istio.io/v1alpha3", "kind": "DestinationRule",
            "metadata": {"name": "dr-a", "namespace": "istio-system", "resourceVersion": version,
                         "labels": {"asm-system": "true", "swimlane-group": "g"}},
            "spec": {"host": "a.default.svc.cluster.local"},
        }))
        .unwrap()
    }

    #[test]
    fn the_memo_knows_only_the_versions_this_controller_found_or_wrote() {
        let memo = Memo::default();
        let kind = "DestinationRule";
        assert!(!memo.knows(kind, &generated_dr("5")), "nothing known yet");
        let id = Id::from(id_of(kind, &generated_dr("5")));
        memo.wrote("g", id.clone(), "5".into());
        assert!(memo.knows(kind, &generated_dr("5")), "its own write");
        assert!(
            !memo.knows(kind, &generated_dr("6")),
            "someone else's edit after it"
        );
        let desired = lanes_compile::Generated::DestinationRule(lanes_model::istio::IstioObject {
            api_version: "networking.istio.io/v1alpha3".into(),
            kind: kind.into(),
            metadata: Default::default(),
            spec: Default::default(),
        });
        let found = Found::from([(id, Arc::new(("7".to_string(), None, Arc::new(desired))))]);
        memo.keep(
            "g",
            Learned {
                found,
                written: Written::new(),
            },
        );
        assert!(memo.knows(kind, &generated_dr("7")), "found up to date");
        assert!(
            !memo.knows(kind, &generated_dr("5")),
            "the next reconcile found it: the earlier write is forgotten"
        );
        assert!(
            !memo.knows("VirtualService", &generated_dr("7")),
            "another kind"
        );
    }
}
