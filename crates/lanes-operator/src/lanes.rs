//! The lane controller's reconcile: one lane group at a time, with the lanes, Services
//! and Pods it reads, compiled exactly as the route table of `lanes up` is; every
//! generated VirtualService and DestinationRule is server-side applied (field manager
//! `lanes`, owned by its group) and the group's ones no longer generated are deleted.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};
use lanes_compile::{Flavor, Generated, compile};
use lanes_model::Object;
use lanes_model::lane::{ASMSwimLane, ASMSwimLaneGroup, GROUP_LABEL};
use lanes_model::mesh::PodView;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{Error, FIELD_MANAGER, is_not_found, kube_err, to_value};

/// What one reconcile did, as `Kind namespace/name` per object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Generated objects applied because they were missing or differed.
    pub applied: Vec<String>,
    /// Generated objects already as generated (not written).
    pub unchanged: Vec<String>,
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

/// The API resource of a generated kind (`VirtualService`, `DestinationRule`).
pub fn istio_resource(kind: &str) -> ApiResource {
    let (group, version) = lanes_compile::ISTIO_API_VERSION
        .split_once('/')
        .unwrap_or(("networking.istio.io", "v1alpha3"));
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
}

/// The lane controller's inputs besides the group itself: lanes, Services and Pods as
/// validated objects, in creation order, and the ones skipped (with why).
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// Objects the compiler takes.
    pub objects: Vec<Arc<Object>>,
    /// Objects that do not validate, as `Kind name: why`.
    pub skipped: Vec<String>,
    /// Lane groups with an object that does not validate (the group, or a lane of
    /// it), each with what does not, as `Kind name: why`.
    pub frozen: BTreeMap<String, Vec<String>>,
}

/// One object as the lane controller reads it: validated, or why not.
type Converted = Result<Arc<Object>, Vec<String>>;

/// Where an object's conversion is kept: kind, namespace, name.
type ConversionKey = (String, String, String);

/// Objects converted and validated once per resourceVersion, kept across builds of the
/// inputs: after one change of the watch caches only the changed object is converted
/// again, not every cached one.
#[derive(Debug, Default)]
pub struct Conversions {
    kept: HashMap<ConversionKey, Kept>,
    /// The build under way; what a build does not meet is dropped when it ends.
    build: u64,
    /// Conversions done (not taken from what was kept), read by the tests.
    pub converted: u64,
}

/// One kept conversion.
#[derive(Debug)]
struct Kept {
    version: String,
    converted: Converted,
    /// [`lanes_compile::creation_second`] of the object.
    second: i64,
    /// The last build that met it.
    build: u64,
}

impl Conversions {
    /// The conversion of `item`, kept or made now, with its creation second.
    fn get<K: Resource<DynamicType = ()> + Serialize>(
        &mut self,
        item: &K,
    ) -> Result<(Converted, i64), Error> {
        let meta = item.meta();
        let key = (
            K::kind(&()).to_string(),
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        );
        if let Some(v) = &meta.resource_version
            && let Some(kept) = self.kept.get_mut(&key)
            && kept.version == *v
        {
            kept.build = self.build;
            return Ok((kept.converted.clone(), kept.second));
        }
        self.converted += 1;
        let converted = convert(item)?;
        let second = converted
            .as_ref()
            .map_or(i64::MIN, |o| lanes_compile::creation_second(o));
        if let Some(version) = meta.resource_version.clone() {
            let kept = Kept {
                version,
                converted: converted.clone(),
                second,
                build: self.build,
            };
            self.kept.insert(key, kept);
        }
        Ok((converted, second))
    }

    /// Ends a build: forgets the objects it did not meet (deleted from the caches).
    fn finish(&mut self) {
        let build = self.build;
        self.kept.retain(|_, k| k.build == build);
        self.build += 1;
    }
}

/// Converts and validates one object.
fn convert<K: Resource<DynamicType = ()> + Serialize>(item: &K) -> Result<Converted, Error> {
    let v = to_value(&K::kind(&()), item)?;
    Ok(Object::from_value(v)
        .map(Arc::new)
        .map_err(|errs| errs.iter().map(ToString::to_string).collect()))
}

impl Inputs {
    /// Adds objects of one kind (from a list, or a watch cache).
    pub fn add<K, T>(&mut self, items: impl IntoIterator<Item = T>) -> Result<(), Error>
    where
        K: Resource<DynamicType = ()> + Serialize,
        T: std::borrow::Borrow<K>,
    {
        for item in items {
            let item: &K = std::borrow::Borrow::borrow(&item);
            self.take(item, convert(item)?);
        }
        Ok(())
    }

    /// Adds objects of one kind, their conversions taken from `kept` where their
    /// resourceVersion has not moved; `seconds` gets the creation second of each object
    /// taken in.
    fn add_kept<K, T>(
        &mut self,
        items: impl IntoIterator<Item = T>,
        kept: &mut Conversions,
        seconds: &mut Vec<i64>,
    ) -> Result<(), Error>
    where
        K: Resource<DynamicType = ()> + Serialize,
        T: std::borrow::Borrow<K>,
    {
        for item in items {
            let item: &K = std::borrow::Borrow::borrow(&item);
            let (converted, second) = kept.get(item)?;
            if converted.is_ok() {
                seconds.push(second);
            }
            self.take(item, converted);
        }
        Ok(())
    }

    /// Takes one converted object in, or records why it is skipped.
    fn take<K: Resource<DynamicType = ()>>(&mut self, item: &K, converted: Converted) {
        let why = match converted {
            Ok(o) => return self.objects.push(o),
            Err(why) => why,
        };
        let name = item.meta().name.clone().unwrap_or_default();
        let what = format!("{} {name}: {}", K::kind(&()), why.join("; "));
        // A broken group or lane must not make its objects vanish.
        let group = match K::kind(&()).as_ref() {
            "ASMSwimLaneGroup" => Some(name.clone()),
            "ASMSwimLane" => item
                .meta()
                .labels
                .as_ref()
                .and_then(|l| l.get(GROUP_LABEL))
                .cloned(),
            _ => None,
        };
        if let Some(g) = group {
            self.frozen.entry(g).or_default().push(what.clone());
        }
        self.skipped.push(what);
    }

    /// Puts the objects in creation order ([`lanes_compile::creation_key`], the order
    /// [`lanes_compile::in_creation_order`] gives): the order the route table of
    /// `lanes up` is compiled in too.
    pub fn sorted(mut self) -> Self {
        self.objects
            .sort_by_cached_key(|o| lanes_compile::creation_key(o));
        self
    }

    /// Reads the inputs from the watch caches, converting only what changed since the
    /// last build with `kept`.
    pub fn from_caches(
        services: impl IntoIterator<Item = Arc<Service>>,
        pods: impl IntoIterator<Item = Arc<Pod>>,
        lanes: impl IntoIterator<Item = Arc<ASMSwimLane>>,
        kept: &mut Conversions,
    ) -> Result<Inputs, Error> {
        let mut inputs = Inputs::default();
        let mut seconds = Vec::new();
        inputs.add_kept::<Service, _>(services, kept, &mut seconds)?;
        inputs.add_kept::<Pod, _>(pods, kept, &mut seconds)?;
        inputs.add_kept::<ASMSwimLane, _>(lanes, kept, &mut seconds)?;
        kept.finish();
        // Creation order as `sorted` puts it, from the kept seconds: a stable sort by
        // (second, name), which is `creation_key`.
        let mut order: Vec<(i64, Arc<Object>)> = seconds.into_iter().zip(inputs.objects).collect();
        order.sort_by(|(a, x), (b, y)| (a, &x.name).cmp(&(b, &y.name)));
        inputs.objects = order.into_iter().map(|(_, o)| o).collect();
        Ok(inputs)
    }

    /// Reads the inputs (Services, Pods, lanes) with one LIST per kind.
    pub async fn list(client: &Client) -> Result<Inputs, Error> {
        let mut inputs = Inputs::default();
        inputs.add::<Service, _>(list::<Service>(client).await?)?;
        inputs.add::<Pod, _>(list::<Pod>(client).await?)?;
        inputs.add::<ASMSwimLane, _>(list::<ASMSwimLane>(client).await?)?;
        Ok(inputs.sorted())
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

/// `Kind namespace/name`, as [`Changes`] lists objects.
fn key_of(kind: &str, ns: &str, name: &str) -> String {
    format!("{kind} {ns}/{name}")
}

/// The lane controller's watch caches of the objects it generated (those with the
/// [`GENERATED_SELECTOR`] labels), and what it knows of them.
pub struct GeneratedCache {
    /// Generated VirtualServices.
    pub virtual_services: Store<DynamicObject>,
    /// Generated DestinationRules.
    pub destination_rules: Store<DynamicObject>,
    memo: Arc<Memo>,
}

/// A generated object: kind, namespace, name.
type Id = (String, String, String);

/// Per generated object: the resourceVersion it was last found up to date at, the owner
/// uid and the object desired then. While none of them moves the object is not
/// compared again. Shared, so that carrying an entry from one reconcile to the next
/// copies no object.
type Found = HashMap<Id, Finding>;

/// One entry of [`Found`]: resourceVersion, owner uid, the object desired.
type Finding = (String, Option<String>, Arc<Generated>);

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

fn id_of(kind: &str, o: &DynamicObject) -> Id {
    (
        kind.to_string(),
        o.namespace().unwrap_or_default(),
        o.name_any(),
    )
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
                .and_then(|written| written.get(&id))
                .is_some_and(|v| *v == version)
        });
        wrote
            || self.found.lock().is_ok_and(|f| {
                f.get(group)
                    .and_then(|found| found.get(&id))
                    .is_some_and(|(v, _, _)| *v == version)
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
    /// The caches of generated VirtualServices and DestinationRules, and the memo their
    /// watches consult.
    pub fn new(
        virtual_services: Store<DynamicObject>,
        destination_rules: Store<DynamicObject>,
        memo: Arc<Memo>,
    ) -> GeneratedCache {
        GeneratedCache {
            virtual_services,
            destination_rules,
            memo,
        }
    }

    fn store(&self, kind: &str) -> &Store<DynamicObject> {
        if kind == "VirtualService" {
            &self.virtual_services
        } else {
            &self.destination_rules
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
    let inputs = Inputs::list(client).await?;
    let groups = list::<ASMSwimLaneGroup>(client).await?;
    let mut all = Changes::default();
    for group in &groups {
        let c = reconcile_group(client, flavor, group, &inputs, Existing::Listed).await?;
        all.applied.extend(c.applied);
        all.unchanged.extend(c.unchanged);
        all.deleted.extend(c.deleted);
        all.frozen.extend(c.frozen);
        for s in c.skipped {
            if !all.skipped.contains(&s) {
                all.skipped.push(s);
            }
        }
    }
    let names: BTreeSet<String> = groups.iter().map(ResourceExt::name_any).collect();
    all.deleted.extend(sweep(client, &names).await?);
    Ok(all)
}

/// One reconcile of lane group `group`, from `inputs` (Services, Pods and lanes; the
/// run loop passes its watch caches): compile the group, apply each generated object
/// that is missing or differs from what `existing` holds (owned by the group, so it
/// goes with it), delete the group's objects it no longer generates, and write the
/// group's status. A group that does not validate, or has a lane that does not, is left
/// as it stands.
pub async fn reconcile_group(
    client: &Client,
    flavor: Flavor,
    group: &ASMSwimLaneGroup,
    inputs: &Inputs,
    existing: Existing<'_>,
) -> Result<Changes, Error> {
    let name = group.name_any();
    // The group as the compiler reads it: its status (every generated name) is no input.
    let spec_only = ASMSwimLaneGroup {
        metadata: group.metadata.clone(),
        spec: group.spec.clone(),
        status: None,
    };
    let mut own = Inputs::default();
    own.add::<ASMSwimLaneGroup, _>([spec_only])?;
    let mut invalid = own.frozen.remove(&name).unwrap_or_default();
    invalid.extend(inputs.frozen.get(&name).cloned().unwrap_or_default());
    let mut changes = Changes {
        skipped: inputs.skipped.iter().chain(&own.skipped).cloned().collect(),
        ..Default::default()
    };
    let refs: Vec<&Object> = inputs
        .objects
        .iter()
        .chain(&own.objects)
        .map(|o| &**o)
        .collect();
    let pods: Vec<PodView> = inputs
        .objects
        .iter()
        .filter_map(|o| PodView::from_object(o))
        .collect();
    let out = compile(&refs, &pods, flavor);
    if invalid.is_empty() {
        let owner = group.controller_owner_ref(&());
        let before = match existing {
            Existing::Cached(cache) => cache.memo.found(&name),
            Existing::Listed => Arc::default(),
        };
        let mut learned = Learned::default();
        for kind in ["VirtualService", "DestinationRule"] {
            let desired: Vec<&Generated> =
                out.objects.iter().filter(|g| g.kind() == kind).collect();
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
    crate::group_status::report(client, group, &out.objects, &invalid).await?;
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
    kind: &'a str,
    group: &'a str,
    owner: Option<&'a OwnerReference>,
}

/// The objects of the target's kind generated for its group before, by namespace and
/// name.
async fn current(
    client: &Client,
    t: &Target<'_>,
    existing: Existing<'_>,
) -> Result<BTreeMap<(String, String), Arc<DynamicObject>>, Error> {
    let objects = match existing {
        Existing::Listed => {
            let ar = istio_resource(t.kind);
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
            .store(t.kind)
            .state()
            .into_iter()
            .filter(|o| group_of(&**o) == Some(t.group))
            .collect::<Vec<_>>(),
    };
    Ok(objects
        .into_iter()
        .map(|o| ((o.namespace().unwrap_or_default(), o.name_any()), o))
        .collect())
}

/// Whether `current` already is `desired` as the target owns it: known from `was` (what
/// it was found up to date with before) while neither moved, else compared.
fn found_up_to_date(
    t: &Target<'_>,
    current: &DynamicObject,
    desired: &Generated,
    was: Option<&Finding>,
) -> Result<Option<Finding>, Error> {
    let version = current.resource_version().unwrap_or_default();
    let uid = t.owner.map(|o| o.uid.clone());
    if let Some((v, u, d)) = was
        && *v == version
        && *u == uid
        && **d == *desired
    {
        return Ok(was.cloned());
    }
    let have = to_value(t.kind, current)?;
    Ok(up_to_date(&have, &owned(desired.to_value(), t.owner))
        .then(|| (version, uid, Arc::new(desired.clone()))))
}

/// Brings the objects of the target's kind generated for its group to `desired`:
/// deletes those no longer generated, applies those missing or differing. `before` is
/// what the last reconcile found up to date; `learned` gets what this one finds and
/// writes.
async fn converge(
    client: &Client,
    t: &Target<'_>,
    desired: &[&Generated],
    existing: Existing<'_>,
    (before, learned): (&Found, &mut Learned),
    changes: &mut Changes,
) -> Result<(), Error> {
    let ar = istio_resource(t.kind);
    let kind = t.kind;
    let current = current(client, t, existing).await?;
    let wanted: BTreeSet<(&str, &str)> = desired
        .iter()
        .map(|g| (g.meta().namespace.as_str(), g.meta().name.as_str()))
        .collect();
    for (ns, name) in current.keys() {
        if wanted.contains(&(ns.as_str(), name.as_str())) {
            continue;
        }
        let api = Api::<DynamicObject>::namespaced_with(client.clone(), ns, &ar);
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => changes.deleted.push(key_of(kind, ns, name)),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(kube_err(format!("delete {kind} {ns}/{name}"))(e)),
        }
    }
    for g in desired {
        let (ns, name) = (g.meta().namespace.clone(), g.meta().name.clone());
        let id = (kind.to_string(), ns.clone(), name.clone());
        if let Some(c) = current.get(&(ns.clone(), name.clone()))
            && let Some(now) = found_up_to_date(t, c, g, before.get(&id))?
        {
            learned.found.insert(id, now);
            changes.unchanged.push(key_of(kind, &ns, &name));
            continue;
        }
        let v = owned(g.to_value(), t.owner);
        let api = Api::<DynamicObject>::namespaced_with(client.clone(), &ns, &ar);
        let applied = api
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&v),
            )
            .await
            .map_err(kube_err(format!("apply {kind} {ns}/{name}")))?;
        if let (Existing::Cached(cache), Some(version)) = (existing, applied.resource_version()) {
            cache.memo.wrote(t.group, id.clone(), version.clone());
            learned.written.insert(id, version);
        }
        let what = key_of(kind, &ns, &name);
        tracing::info!(object = %what, "lane controller: applied");
        changes.applied.push(what);
    }
    Ok(())
}

/// Deletes the generated objects of lane groups that are gone (not among `groups`):
/// those the garbage collector did not take with their group, as objects generated
/// before they carried an owner reference. Returns what it deleted.
pub async fn sweep(client: &Client, groups: &BTreeSet<String>) -> Result<Vec<String>, Error> {
    let mut orphans = Vec::new();
    for kind in ["VirtualService", "DestinationRule"] {
        let ar = istio_resource(kind);
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

    fn pod(name: &str, version: &str, lane: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": "default", "resourceVersion": version,
                             "labels": {"app": "a", "ASM_TRAFFIC_TAG": lane}},
                "spec": {"containers": [{"name": "app", "image": "x"}]},
            }))
            .unwrap(),
        )
    }

    fn service() -> Arc<Service> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "a", "namespace": "default", "resourceVersion": "1"},
                "spec": {"selector": {"app": "a"}, "ports": [{"port": 8000}]},
            }))
            .unwrap(),
        )
    }

    fn lane(version: &str, selector: Value) -> Arc<ASMSwimLane> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "istio.alibabacloud.com/v1", "kind": "ASMSwimLane",
                "metadata": {"name": "canary", "resourceVersion": version,
                             "labels": {"swimlane-group": "g"}},
                "spec": {"labelSelector": selector},
            }))
            .unwrap(),
        )
    }

    fn fresh(pods: &[Arc<Pod>], lanes: &[Arc<ASMSwimLane>]) -> Inputs {
        let mut inputs = Inputs::default();
        inputs.add::<Service, _>([service()]).unwrap();
        inputs.add::<Pod, _>(pods.iter().cloned()).unwrap();
        inputs.add::<ASMSwimLane, _>(lanes.iter().cloned()).unwrap();
        inputs.sorted()
    }

    fn same(a: &Inputs, b: &Inputs) {
        let objects = |i: &Inputs| i.objects.iter().map(|o| (**o).clone()).collect::<Vec<_>>();
        assert_eq!(objects(a), objects(b));
        assert_eq!(a.skipped, b.skipped);
        assert_eq!(a.frozen, b.frozen);
    }

    #[test]
    fn only_what_changed_is_converted_again_and_the_inputs_match_a_fresh_read() {
        let mut kept = Conversions::default();
        let mut pods = vec![pod("p1", "5", "base"), pod("p2", "6", "canary")];
        let lanes = vec![lane("7", json!({"ASM_TRAFFIC_TAG": "canary"}))];
        let build = |pods: &[Arc<Pod>], lanes: &[Arc<ASMSwimLane>], kept: &mut Conversions| {
            Inputs::from_caches([service()], pods.to_vec(), lanes.to_vec(), kept).unwrap()
        };
        same(&build(&pods, &lanes, &mut kept), &fresh(&pods, &lanes));
        assert_eq!(kept.converted, 4);

        same(&build(&pods, &lanes, &mut kept), &fresh(&pods, &lanes));
        assert_eq!(kept.converted, 4, "nothing changed, nothing converted");

        pods[1] = pod("p2", "9", "base");
        let after = build(&pods, &lanes, &mut kept);
        same(&after, &fresh(&pods, &lanes));
        assert_eq!(kept.converted, 5, "the one changed pod");

        pods.remove(0);
        same(&build(&pods, &lanes, &mut kept), &fresh(&pods, &lanes));
        assert_eq!(kept.kept.len(), 3, "the deleted pod is forgotten");
    }

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
        let id = id_of(kind, &generated_dr("5"));
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
        let found = Found::from([(id, ("7".to_string(), None, Arc::new(desired)))]);
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

    #[test]
    fn a_kept_invalid_lane_still_freezes_its_group() {
        let mut kept = Conversions::default();
        let bad = vec![lane("3", json!({}))];
        for _ in 0..2 {
            let inputs =
                Inputs::from_caches([service()], Vec::new(), bad.clone(), &mut kept).unwrap();
            same(&inputs, &fresh(&[], &bad));
            assert!(inputs.frozen.contains_key("g"), "{:?}", inputs.frozen);
        }
        assert_eq!(kept.converted, 2);
    }
}
