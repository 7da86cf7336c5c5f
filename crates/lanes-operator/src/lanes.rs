//! The lane controller on a cluster: reads lane groups, lanes, Services and Pods,
//! compiles them exactly as the embedded mode does, server-side applies every generated
//! VirtualService and DestinationRule (field manager `lanes`), and deletes the generated
//! ones it no longer produces.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::{Client, Resource};
use lanes_compile::{Flavor, compile};
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

/// The lane controller's inputs: lane groups, lanes, Services and Pods as validated
/// objects, in creation order, and the ones skipped (with why).
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// Objects the compiler takes.
    pub objects: Vec<Object>,
    /// Objects that do not validate, as `Kind name: why`.
    pub skipped: Vec<String>,
    /// Lane groups with an object that does not validate (the group, or a lane of
    /// it), each with what does not, as `Kind name: why`.
    pub frozen: BTreeMap<String, Vec<String>>,
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
            let v = to_value(&K::kind(&()), item)?;
            match Object::from_value(v) {
                Ok(o) => self.objects.push(o),
                Err(errs) => {
                    let name = item.meta().name.clone().unwrap_or_default();
                    let why: Vec<String> = errs.iter().map(ToString::to_string).collect();
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
            }
        }
        Ok(())
    }

    /// Puts the objects in creation order ([`lanes_compile::in_creation_order`]): the
    /// order the route table of `lanes up` is compiled in too.
    fn sorted(mut self) -> Self {
        lanes_compile::in_creation_order(&mut self.objects);
        self
    }

    /// Reads the inputs with one LIST per kind.
    pub async fn list(client: &Client) -> Result<Inputs, Error> {
        let mut inputs = Inputs::default();
        inputs.add::<Service, _>(list::<Service>(client).await?)?;
        inputs.add::<Pod, _>(list::<Pod>(client).await?)?;
        inputs.add::<ASMSwimLaneGroup, _>(list::<ASMSwimLaneGroup>(client).await?)?;
        inputs.add::<ASMSwimLane, _>(list::<ASMSwimLane>(client).await?)?;
        Ok(inputs)
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

fn key_of(v: &Value) -> String {
    let s = |p: &str| v.pointer(p).and_then(Value::as_str).unwrap_or("");
    format!(
        "{} {}/{}",
        s("/kind"),
        s("/metadata/namespace"),
        s("/metadata/name")
    )
}

/// Whether `current` already carries everything `desired` sets (spec and labels).
fn up_to_date(current: &Value, desired: &Value) -> bool {
    let labels_kept = desired
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .is_none_or(|want| {
            want.iter()
                .all(|(k, v)| current.pointer("/metadata/labels").and_then(|l| l.get(k)) == Some(v))
        });
    labels_kept && current.get("spec") == desired.get("spec")
}

/// One reconcile of every lane group in the cluster, reading the inputs with LISTs.
pub async fn reconcile(client: &Client, flavor: Flavor) -> Result<Changes, Error> {
    reconcile_inputs(client, flavor, Inputs::list(client).await?).await
}

/// One reconcile from given inputs (the run loop passes its watch caches): compile,
/// apply what differs, delete what is no longer generated.
pub async fn reconcile_inputs(
    client: &Client,
    flavor: Flavor,
    inputs: Inputs,
) -> Result<Changes, Error> {
    let inputs = inputs.sorted();
    let frozen = inputs.frozen;
    let mut changes = Changes {
        skipped: inputs.skipped,
        frozen: frozen.keys().cloned().collect(),
        ..Default::default()
    };
    let of_frozen = |v: &Value| {
        v.pointer("/metadata/labels")
            .and_then(|l| l.get(GROUP_LABEL))
            .and_then(Value::as_str)
            .is_some_and(|g| frozen.contains_key(g))
    };
    let all = inputs.objects;
    let pods: Vec<PodView> = all.iter().filter_map(PodView::from_object).collect();
    let refs: Vec<&Object> = all.iter().collect();
    let out = compile(&refs, &pods, flavor);

    for kind in ["VirtualService", "DestinationRule"] {
        let ar = istio_resource(kind);
        let desired: BTreeMap<(String, String), Value> = out
            .objects
            .iter()
            .map(|g| g.to_value())
            .filter(|v| v["kind"] == kind && !of_frozen(v))
            .map(|v| {
                let ns = v["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("default")
                    .to_string();
                let name = v["metadata"]["name"].as_str().unwrap_or("").to_string();
                ((ns, name), v)
            })
            .collect();
        let existing = Api::<DynamicObject>::all_with(client.clone(), &ar)
            .list(&ListParams::default().labels(GENERATED_SELECTOR))
            .await
            .map_err(kube_err(format!("list {}", ar.plural)))?;
        let mut current: BTreeMap<(String, String), Value> = BTreeMap::new();
        for o in existing.items {
            let v = to_value(kind, &o)?;
            let ns = o.metadata.namespace.clone().unwrap_or_default();
            let name = o.metadata.name.clone().unwrap_or_default();
            current.insert((ns, name), v);
        }
        for ((ns, name), v) in &current {
            if desired.contains_key(&(ns.clone(), name.clone())) || of_frozen(v) {
                continue;
            }
            let api = Api::<DynamicObject>::namespaced_with(client.clone(), ns, &ar);
            match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => changes.deleted.push(key_of(v)),
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(kube_err(format!("delete {kind} {ns}/{name}"))(e)),
            }
        }
        for ((ns, name), v) in &desired {
            if current
                .get(&(ns.clone(), name.clone()))
                .is_some_and(|c| up_to_date(c, v))
            {
                changes.unchanged.push(key_of(v));
                continue;
            }
            let api = Api::<DynamicObject>::namespaced_with(client.clone(), ns, &ar);
            api.patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(v),
            )
            .await
            .map_err(kube_err(format!("apply {kind} {ns}/{name}")))?;
            changes.applied.push(key_of(v));
        }
    }
    crate::group_status::report(client, &out.objects, &frozen).await?;
    for s in &changes.skipped {
        tracing::warn!(object = %s, "lane controller: input skipped");
    }
    for g in &changes.frozen {
        tracing::warn!(group = %g, "lane controller: group left as it stands until its objects validate");
    }
    Ok(changes)
}
