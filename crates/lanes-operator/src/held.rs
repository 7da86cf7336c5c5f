//! The lane controller's inputs held between reconciles, and what it last compiled for
//! each lane group. Services, Pods and lanes are converted and validated once per
//! version as their watches deliver them; a group is compiled whole when it or one of
//! its lanes changed, and otherwise only for the services that changed since (a Service
//! edited, or a pod it selects), whose generated objects take the place of the ones kept.
//! The result is the whole-group compile's, object for object (the tests hold both side
//! by side).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use kube::{Resource, ResourceExt};
use lanes_compile::release::Releases;
use lanes_compile::{
    Emit, Flavor, Generated, GeneratedKind, GroupInput, Mesh, Output, compile_group,
    creation_second, ingress_services,
};
use lanes_model::lane::{ASMSwimLaneGroup, GROUP_LABEL, LaneGroupSpec, LaneSpec};
use lanes_model::mesh::{PodIndex, PodView, ServiceIndex, ServiceView};
use lanes_model::{Object, Typed};
use serde::Serialize;

use crate::{Error, to_value};

/// The kinds held, in the order the compiler's input lists them.
const KINDS: [&str; 3] = ["Service", "Pod", "ASMSwimLane"];

/// A held object: kind (its place in [`KINDS`]), namespace, name.
type Key = (usize, String, String);

/// Where a valid object goes in the compiler's input: creation second, name, kind,
/// namespace (creation order, as `lanes up` compiles its route table).
type Order = (i64, String, usize, String);

/// How many changes are remembered for the groups to catch up on; a group further
/// behind is compiled whole.
const LOG_CAP: usize = 8_192;

/// One held object: its resourceVersion, and its place in creation order when it
/// validates or why it does not.
#[derive(Debug)]
struct Entry {
    version: Option<String>,
    state: State,
}

#[derive(Debug)]
enum State {
    /// Validated, at this place in creation order.
    Valid(Order),
    /// Does not validate: why (as `Kind name: why`), and the lane group it freezes.
    Invalid {
        why: String,
        freezes: Option<String>,
    },
}

/// A valid object and what routing reads of it.
#[derive(Debug)]
struct Valid {
    object: Arc<Object>,
    view: View,
}

#[derive(Debug)]
enum View {
    Service(ServiceView),
    Pod(PodView),
    Lane,
}

/// A change a compiled group may need to take in.
#[derive(Debug)]
enum Touch {
    /// A Service changed: the services of that name.
    Service { namespace: String, name: String },
    /// A pod with these labels came, went or changed: the services selecting it.
    Pod {
        namespace: String,
        labels: BTreeMap<String, String>,
    },
    /// A lane changed: every group is compiled whole.
    Lane,
}

/// What was last compiled for one group.
#[derive(Debug)]
struct GroupMemo {
    /// The group's resourceVersion it was converted at, and the group converted.
    version: Option<String>,
    spec: Arc<LaneGroupSpec>,
    /// The last change taken in.
    seq: u64,
    objects: Vec<Arc<Generated>>,
    /// Where each object is in `objects`, by kind and name.
    index: HashMap<(String, String), usize>,
}

/// What a group compiles to.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The kinds the flavor generates (those the objects below are of).
    pub kinds: [GeneratedKind; 2],
    /// The objects generated, in the compiler's order.
    pub objects: Vec<Arc<Generated>>,
    /// What keeps the group from compiling (it or one of its lanes does not validate),
    /// as `Kind name: why`; empty when it compiles.
    pub invalid: Vec<String>,
    /// Inputs left out because they do not validate, as `Kind name: why`.
    pub skipped: Vec<String>,
}

/// The held inputs and compiled groups.
#[derive(Debug)]
pub struct Held {
    flavor: Flavor,
    entries: HashMap<Key, Entry>,
    /// Valid objects in creation order.
    order: BTreeMap<Order, Valid>,
    log: VecDeque<(u64, Touch)>,
    /// The last change recorded.
    seq: u64,
    /// The last change dropped from `log`.
    forgotten: u64,
    groups: HashMap<String, GroupMemo>,
    /// Releases whose steps route traffic (Rollouts with their workloads' labels), and
    /// the canaries lane releases withdraw.
    releases: Releases,
    /// Objects converted so far (read by the tests and benchmarks).
    pub converted: u64,
    /// Whole-group compiles so far.
    pub full_compiles: u64,
}

fn kind_index<K: Resource<DynamicType = ()>>() -> usize {
    let kind = K::kind(&());
    KINDS.iter().position(|k| *k == kind).unwrap_or(KINDS.len())
}

impl Held {
    /// Nothing held yet.
    pub fn new(flavor: Flavor) -> Held {
        Held {
            flavor,
            entries: HashMap::new(),
            order: BTreeMap::new(),
            log: VecDeque::new(),
            seq: 0,
            forgotten: 0,
            groups: HashMap::new(),
            releases: Releases::default(),
            converted: 0,
            full_compiles: 0,
        }
    }

    /// Takes in one object as it now stands (converted unless its resourceVersion is
    /// the one held).
    pub fn put<K: Resource<DynamicType = ()> + Serialize>(
        &mut self,
        item: &K,
    ) -> Result<(), Error> {
        let meta = item.meta();
        let key = (
            kind_index::<K>(),
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        );
        if let Some(v) = &meta.resource_version
            && self.entries.get(&key).and_then(|e| e.version.as_ref()) == Some(v)
        {
            return Ok(());
        }
        self.converted += 1;
        let (state, valid) = match Object::from_value(to_value(&K::kind(&()), item)?) {
            Ok(object) => {
                let order = (
                    creation_second(&object),
                    object.name.clone(),
                    key.0,
                    key.1.clone(),
                );
                let view = match &object.typed {
                    Typed::Pod(_) => PodView::from_object(&object).map(View::Pod),
                    Typed::Service(_) => ServiceView::from_object(&object).map(View::Service),
                    _ => None,
                };
                let valid = Valid {
                    object: Arc::new(object),
                    view: view.unwrap_or(View::Lane),
                };
                (State::Valid(order.clone()), Some((order, valid)))
            }
            Err(errs) => {
                let why: Vec<String> = errs.iter().map(ToString::to_string).collect();
                let freezes = match KINDS.get(key.0) {
                    Some(&"ASMSwimLane") => item.labels().get(GROUP_LABEL).cloned(),
                    _ => None,
                };
                let why = format!("{} {}: {}", K::kind(&()), key.2, why.join("; "));
                (State::Invalid { why, freezes }, None)
            }
        };
        self.take(&key);
        self.touch(&key, valid.as_ref().map(|(_, v)| &v.view));
        if let Some((order, valid)) = valid {
            self.order.insert(order, valid);
        }
        let version = meta.resource_version.clone();
        self.entries.insert(key, Entry { version, state });
        Ok(())
    }

    /// Takes in the releases as they now stand; a change recompiles every group whole
    /// (a release step, or a lane release withdrawing its canaries, is rare beside pod
    /// churn).
    pub fn set_releases(&mut self, releases: Releases) {
        if releases == self.releases {
            return;
        }
        self.releases = releases;
        self.seq += 1;
        self.log.push_back((self.seq, Touch::Lane));
    }

    /// Forgets one object (deleted).
    pub fn remove<K: Resource<DynamicType = ()>>(&mut self, namespace: &str, name: &str) {
        let key = (kind_index::<K>(), namespace.to_string(), name.to_string());
        self.take(&key);
    }

    /// Takes in every object of one kind, as a full list gives them: those held and not
    /// listed are forgotten.
    pub fn replace<K, T>(&mut self, items: impl IntoIterator<Item = T>) -> Result<(), Error>
    where
        K: Resource<DynamicType = ()> + Serialize,
        T: std::borrow::Borrow<K>,
    {
        let kind = kind_index::<K>();
        let mut listed = HashSet::new();
        for item in items {
            let item: &K = item.borrow();
            listed.insert((item.namespace().unwrap_or_default(), item.name_any()));
            self.put(item)?;
        }
        let gone: Vec<Key> = self
            .entries
            .keys()
            .filter(|(k, ns, name)| *k == kind && !listed.contains(&(ns.clone(), name.clone())))
            .cloned()
            .collect();
        for key in gone {
            self.take(&key);
        }
        Ok(())
    }

    /// Removes what is held of `key`, recording what that touches.
    fn take(&mut self, key: &Key) {
        let Some(old) = self.entries.remove(key) else {
            return;
        };
        let old = match old.state {
            State::Valid(order) => self.order.remove(&order),
            State::Invalid { .. } => None,
        };
        self.touch(key, old.as_ref().map(|v| &v.view));
    }

    /// Records that `key` came or went (valid, with `view`).
    fn touch(&mut self, key: &Key, view: Option<&View>) {
        let touch = match (view, KINDS.get(key.0)) {
            (Some(View::Pod(p)), _) => Touch::Pod {
                namespace: p.namespace.clone(),
                labels: p.labels.clone(),
            },
            (_, Some(&"Service")) => Touch::Service {
                namespace: key.1.clone(),
                name: key.2.clone(),
            },
            (_, Some(&"ASMSwimLane")) => Touch::Lane,
            _ => return,
        };
        self.seq += 1;
        self.log.push_back((self.seq, touch));
        if self.log.len() > LOG_CAP
            && let Some((seq, _)) = self.log.pop_front()
        {
            self.forgotten = seq;
        }
    }

    /// The inputs left out because they do not validate.
    fn skipped(&self) -> Vec<String> {
        let mut invalid: Vec<(&Key, &str)> = self
            .entries
            .iter()
            .filter_map(|(k, e)| match &e.state {
                State::Invalid { why, .. } => Some((k, why.as_str())),
                State::Valid { .. } => None,
            })
            .collect();
        invalid.sort_unstable();
        invalid
            .into_iter()
            .map(|(_, why)| why.to_string())
            .collect()
    }

    /// The lanes of group `name` that do not validate.
    fn frozen_by(&self, name: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .entries
            .values()
            .filter_map(|e| match &e.state {
                State::Invalid {
                    why,
                    freezes: Some(g),
                } if g == name => Some(why.clone()),
                _ => None,
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// Compiles lane group `group` from what is held: in part when only services it
    /// lists (or pods they select) changed since its last compile, else whole.
    pub fn compile(&mut self, group: &ASMSwimLaneGroup) -> Result<Compiled, Error> {
        let name = group.name_any();
        let mut compiled = Compiled {
            kinds: self.flavor.generated_kinds(),
            objects: Vec::new(),
            invalid: Vec::new(),
            skipped: self.skipped(),
        };
        let memo = self.groups.remove(&name);
        let version = group.resource_version();
        let spec = match memo
            .as_ref()
            .filter(|m| version.is_some() && m.version == version)
        {
            Some(m) => Ok(m.spec.clone()),
            None => group_spec(group)?,
        };
        let spec = match spec {
            Ok(spec) => spec,
            Err(why) => {
                compiled.skipped.push(why.clone());
                compiled.invalid.push(why);
                Arc::default()
            }
        };
        compiled.invalid.extend(self.frozen_by(&name));
        if !compiled.invalid.is_empty() {
            return Ok(compiled);
        }
        let memo = match memo.filter(|m| Arc::ptr_eq(&m.spec, &spec) || *m.spec == *spec) {
            Some(m) => self.catch_up(&name, m),
            None => None,
        };
        let memo = match memo {
            Some(m) => m,
            None => self.compile_whole(&name, spec),
        };
        compiled.objects = memo.objects.clone();
        self.groups.insert(
            name,
            GroupMemo {
                version,
                seq: self.seq,
                ..memo
            },
        );
        Ok(compiled)
    }

    /// Forgets the groups `keep` says are gone.
    pub fn retain_groups(&mut self, keep: impl Fn(&str) -> bool) {
        self.groups.retain(|g, _| keep(g));
    }

    /// The valid lanes of group `name`, in creation order.
    fn lanes_of(&self, name: &str) -> Vec<(&str, &LaneSpec)> {
        self.order
            .values()
            .filter_map(|v| match &v.object.typed {
                Typed::Lane(l) if v.object.label(GROUP_LABEL) == Some(name) => {
                    Some((v.object.name.as_str(), &l.spec))
                }
                _ => None,
            })
            .collect()
    }

    fn services(&self) -> impl Iterator<Item = &ServiceView> {
        self.order.values().filter_map(|v| match &v.view {
            View::Service(s) => Some(s),
            _ => None,
        })
    }

    fn pods(&self) -> impl Iterator<Item = &PodView> {
        self.order.values().filter_map(|v| match &v.view {
            View::Pod(p) => Some(p),
            _ => None,
        })
    }

    fn service(&self, namespace: &str, name: &str) -> Option<&ServiceView> {
        let key = (0, namespace.to_string(), name.to_string());
        let Some(State::Valid(order)) = self.entries.get(&key).map(|e| &e.state) else {
            return None;
        };
        match self.order.get(order).map(|v| &v.view) {
            Some(View::Service(s)) => Some(s),
            _ => None,
        }
    }

    /// Compiles group `name` with `services` of its spec only (all: `None`).
    fn compile_services(
        &self,
        name: &str,
        spec: &LaneGroupSpec,
        only: Option<&HashSet<(&str, &str)>>,
    ) -> Output {
        let lanes = self.lanes_of(name);
        let (services, pods): (Vec<ServiceView>, Vec<PodView>) = match only {
            None => (
                self.services().cloned().collect(),
                self.pods().cloned().collect(),
            ),
            Some(only) => {
                let services: Vec<ServiceView> = only
                    .iter()
                    .filter_map(|(name, ns)| self.service(ns, name).cloned())
                    .collect();
                let pods = self
                    .pods()
                    .filter(|p| services.iter().any(|s| s.selects(&p.namespace, &p.labels)))
                    .cloned()
                    .collect();
                (services, pods)
            }
        };
        let mesh = Mesh {
            services: ServiceIndex::new(&services),
            pods: PodIndex::new(&pods),
        };
        let input = GroupInput {
            name,
            spec,
            lanes,
            releases: &self.releases,
        };
        let mut out = Output::default();
        compile_group(&input, &mesh, self.flavor, Emit::Everything, &mut out);
        out
    }

    fn compile_whole(&mut self, name: &str, spec: Arc<LaneGroupSpec>) -> GroupMemo {
        self.full_compiles += 1;
        let out = self.compile_services(name, &spec, None);
        let objects: Vec<Arc<Generated>> = out.objects.into_iter().map(Arc::new).collect();
        let index = objects
            .iter()
            .enumerate()
            .map(|(i, g)| ((g.kind().to_string(), g.meta().name.clone()), i))
            .collect();
        GroupMemo {
            version: None,
            spec,
            seq: self.seq,
            objects,
            index,
        }
    }

    /// Brings `memo` up to what is held by compiling the services changed since; `None`
    /// when it cannot (a lane changed, or the changes are no longer all remembered).
    fn catch_up(&self, name: &str, mut memo: GroupMemo) -> Option<GroupMemo> {
        if memo.seq < self.forgotten {
            return None;
        }
        let mut touched: HashSet<(&str, &str)> = HashSet::new();
        let since = self.log.iter().skip_while(|(seq, _)| *seq <= memo.seq);
        for (_, touch) in since {
            match touch {
                Touch::Lane => return None,
                Touch::Service { namespace, name } => {
                    touched.insert((name.as_str(), namespace.as_str()));
                }
                Touch::Pod { namespace, labels } => {
                    let selecting = self
                        .services()
                        .filter(|s| s.selects(namespace, labels))
                        .map(|s| (s.name.as_str(), s.namespace.as_str()));
                    touched.extend(selecting);
                }
            }
        }
        let listed = memo
            .spec
            .services
            .iter()
            .any(|s| touched.contains(&(s.name.as_str(), s.namespace())));
        if !listed {
            return Some(memo);
        }
        let lanes = self.lanes_of(name);
        touched.extend(ingress_services(&lanes));
        drop(lanes);
        // A release's route needs the Service of its workload beside the ingress ones.
        touched.extend(
            self.services()
                .filter(|s| self.releases.routed.iter().any(|r| r.selected_by(s)))
                .map(|s| (s.name.as_str(), s.namespace.as_str())),
        );
        let spec = &*memo.spec;
        let part = LaneGroupSpec {
            ingress: spec.ingress.clone(),
            is_permissive: spec.is_permissive,
            permissive_mode_configuration: spec.permissive_mode_configuration.clone(),
            auto_update: spec.auto_update,
            services: spec
                .services
                .iter()
                .filter(|s| touched.contains(&(s.name.as_str(), s.namespace())))
                .cloned()
                .collect(),
        };
        let out = self.compile_services(name, &part, Some(&touched));
        for g in out.objects {
            let at = *memo
                .index
                .get(&(g.kind().to_string(), g.meta().name.clone()))?;
            if *memo.objects[at] != g {
                memo.objects[at] = Arc::new(g);
            }
        }
        Some(memo)
    }
}

/// A lane group's spec as the compiler reads it (converted and validated), or why it
/// does not validate.
fn group_spec(group: &ASMSwimLaneGroup) -> Result<Result<Arc<LaneGroupSpec>, String>, Error> {
    // Its status (every generated name) is no input.
    let spec_only = ASMSwimLaneGroup {
        metadata: group.metadata.clone(),
        spec: group.spec.clone(),
        status: None,
    };
    let v = to_value("ASMSwimLaneGroup", &spec_only)?;
    Ok(match Object::from_value(v) {
        Ok(Object {
            typed: Typed::LaneGroup(g),
            ..
        }) => Ok(Arc::new(g.spec)),
        Ok(_) => Err(format!(
            "ASMSwimLaneGroup {}: not a lane group",
            group.name_any()
        )),
        Err(errs) => {
            let why: Vec<String> = errs.iter().map(ToString::to_string).collect();
            Err(format!(
                "ASMSwimLaneGroup {}: {}",
                group.name_any(),
                why.join("; ")
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Pod, Service};
    use lanes_model::lane::ASMSwimLane;
    use lanes_model::synthetic::{GROUP, NAMESPACE, Shape, canary_lane_of, mesh, pod};
    use serde::de::DeserializeOwned;
    use serde_json::{Value, json};

    const SERVICES: usize = 12;
    const LANES: usize = 4;

    /// The cluster as it stands: every object by kind and name, each write a new version.
    struct World {
        objects: BTreeMap<(String, String), Value>,
        version: u64,
    }

    fn typed<K: DeserializeOwned>(v: &Value) -> K {
        serde_json::from_value(v.clone()).unwrap()
    }

    impl World {
        fn new() -> World {
            let shape = Shape {
                services: SERVICES,
                lanes: LANES,
                pods: true,
            };
            let (loaded, diags) = lanes_model::decode_str("synthetic", &mesh(shape));
            assert!(diags.is_empty(), "{diags:?}");
            let mut w = World {
                objects: BTreeMap::new(),
                version: 0,
            };
            for l in loaded {
                w.write(l.object.raw);
            }
            w
        }

        fn write(&mut self, mut v: Value) -> Value {
            self.version += 1;
            v["metadata"]["resourceVersion"] = json!(self.version.to_string());
            let key = (
                v["kind"].as_str().unwrap().to_string(),
                v["metadata"]["name"].as_str().unwrap().to_string(),
            );
            self.objects.insert(key, v.clone());
            v
        }

        fn get(&self, kind: &str, name: &str) -> Value {
            self.objects[&(kind.to_string(), name.to_string())].clone()
        }

        fn delete(&mut self, kind: &str, name: &str) {
            self.objects.remove(&(kind.to_string(), name.to_string()));
        }

        fn of<K: DeserializeOwned>(&self, kind: &str) -> Vec<K> {
            let ours = self.objects.iter().filter(|((k, _), _)| k == kind);
            ours.map(|(_, v)| typed(v)).collect()
        }

        fn group(&self) -> ASMSwimLaneGroup {
            typed(&self.get("ASMSwimLaneGroup", GROUP))
        }

        /// Everything read afresh, nothing compiled yet.
        fn read(&self, flavor: Flavor) -> Held {
            let mut held = Held::new(flavor);
            held.replace::<Service, _>(self.of::<Service>("Service"))
                .unwrap();
            held.replace::<Pod, _>(self.of::<Pod>("Pod")).unwrap();
            held.replace::<ASMSwimLane, _>(self.of::<ASMSwimLane>("ASMSwimLane"))
                .unwrap();
            held
        }

        /// What a controller that read everything afresh compiles.
        fn fresh(&self, flavor: Flavor) -> Compiled {
            self.read(flavor).compile(&self.group()).unwrap()
        }
    }

    fn objects(c: &Compiled) -> Vec<Generated> {
        c.objects.iter().map(|o| (**o).clone()).collect()
    }

    /// Whether `after` holds every object of `before` as it was (the same allocation:
    /// nothing was compiled again).
    fn all_kept(before: &Compiled, after: &Compiled) -> bool {
        before.objects.len() == after.objects.len()
            && before
                .objects
                .iter()
                .zip(&after.objects)
                .all(|(a, b)| Arc::ptr_eq(a, b))
    }

    fn canary_pod(i: usize) -> String {
        format!("svc-{i:05}-{}-2", canary_lane_of(i, LANES))
    }

    /// Compiles after a change and checks it against a fresh read; returns whether the
    /// group was compiled whole.
    fn step(world: &World, held: &mut Held, flavor: Flavor) -> (Compiled, bool) {
        let wholes = held.full_compiles;
        let compiled = held.compile(&world.group()).unwrap();
        let fresh = world.fresh(flavor);
        assert_eq!(objects(&compiled), objects(&fresh));
        assert_eq!(compiled.invalid, fresh.invalid);
        assert_eq!(compiled.skipped, fresh.skipped);
        (compiled, held.full_compiles > wholes)
    }

    #[test]
    fn a_group_compiled_in_part_is_what_a_fresh_whole_compile_gives() {
        for flavor in [Flavor::Asm, Flavor::Istio] {
            let mut world = World::new();
            let mut held = world.read(flavor);
            let (first, whole) = step(&world, &mut held, flavor);
            assert!(whole, "the first compile is whole");
            assert_eq!(first.objects.len(), 2 * SERVICES + LANES);

            // A canary pod turns unready: its service leaves the canary lane.
            let mut p = world.get("Pod", &canary_pod(3));
            p["status"]["conditions"][0]["status"] = json!("False");
            held.put::<Pod>(&typed(&world.write(p))).unwrap();
            let (after, whole) = step(&world, &mut held, flavor);
            assert!(!whole, "a pod change compiles its services alone");
            assert_ne!(objects(&after), objects(&first));
            let same = first.objects.iter().zip(&after.objects);
            let kept = same.filter(|(a, b)| Arc::ptr_eq(a, b)).count();
            assert!(
                kept >= 2 * SERVICES + LANES - 4,
                "{kept} objects kept as they were"
            );

            // The canary pod of the service the ingress routes to goes.
            world.delete("Pod", &canary_pod(0));
            held.remove::<Pod>(NAMESPACE, &canary_pod(0));
            assert!(!step(&world, &mut held, flavor).1);

            // A new pod puts a service in another lane.
            let (added, _) = lanes_model::decode_str("new", &pod(5, "lane-02", 7));
            let added = world.write(added[0].object.raw.clone());
            held.put::<Pod>(&typed(&added)).unwrap();
            assert!(!step(&world, &mut held, flavor).1);

            // A Service selects nothing any more; another is deleted.
            let mut s = world.get("Service", "svc-00007");
            s["spec"]["selector"] = json!({"app": "nothing"});
            held.put::<Service>(&typed(&world.write(s))).unwrap();
            world.delete("Service", "svc-00008");
            held.remove::<Service>(NAMESPACE, "svc-00008");
            assert!(!step(&world, &mut held, flavor).1);

            // A lane changes: the group is compiled whole.
            let mut l = world.get("ASMSwimLane", "lane-02");
            l["spec"]["labelSelector"] = json!({"ASM_TRAFFIC_TAG": "lane-03"});
            held.put::<ASMSwimLane>(&typed(&world.write(l))).unwrap();
            assert!(step(&world, &mut held, flavor).1);

            // Nothing changed: nothing compiled, the same objects.
            let (again, whole) = step(&world, &mut held, flavor);
            let (last, _) = step(&world, &mut held, flavor);
            assert!(!whole);
            assert!(all_kept(&again, &last));

            // A lane that no longer validates freezes the group.
            let mut l = world.get("ASMSwimLane", "lane-01");
            l["spec"]["labelSelector"] = json!({});
            held.put::<ASMSwimLane>(&typed(&world.write(l))).unwrap();
            let (frozen, _) = step(&world, &mut held, flavor);
            assert_eq!(frozen.invalid.len(), 1, "{:?}", frozen.invalid);
            assert!(frozen.invalid[0].starts_with("ASMSwimLane lane-01: "));
            assert_eq!(frozen.skipped, frozen.invalid);
        }
    }

    #[test]
    fn an_object_is_converted_once_per_version_and_a_relist_forgets_what_went() {
        let mut world = World::new();
        let mut held = Held::new(Flavor::Asm);
        let pods = world.of::<Pod>("Pod");
        held.replace::<Pod, _>(pods.clone()).unwrap();
        assert_eq!(held.converted, 3 * SERVICES as u64);
        held.replace::<Pod, _>(pods).unwrap();
        assert_eq!(held.converted, 3 * SERVICES as u64, "nothing new");

        let mut p = world.get("Pod", &canary_pod(1));
        p["metadata"]["labels"]["extra"] = json!("x");
        world.write(p);
        world.delete("Pod", &canary_pod(2));
        held.replace::<Pod, _>(world.of::<Pod>("Pod")).unwrap();
        assert_eq!(
            held.converted,
            3 * SERVICES as u64 + 1,
            "the one changed pod"
        );
        assert_eq!(
            held.pods().count(),
            3 * SERVICES - 1,
            "the deleted pod is gone"
        );
    }

    #[test]
    fn a_pod_no_listed_service_selects_compiles_nothing() {
        let world = World::new();
        let mut held = Held::new(Flavor::Asm);
        held.replace::<Service, _>(world.of::<Service>("Service"))
            .unwrap();
        held.replace::<ASMSwimLane, _>(world.of::<ASMSwimLane>("ASMSwimLane"))
            .unwrap();
        let before = held.compile(&world.group()).unwrap();
        let stray: Pod = typed(&json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "stray", "namespace": "elsewhere", "resourceVersion": "1",
                         "labels": {"app": "svc-00001"}},
            "spec": {"containers": [{"name": "app", "image": "x"}]},
        }));
        held.put(&stray).unwrap();
        let after = held.compile(&world.group()).unwrap();
        assert_eq!(held.full_compiles, 1);
        assert!(all_kept(&before, &after));
    }
}
