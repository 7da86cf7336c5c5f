//! A read-only view of the mesh that the compiler and lint share: services, pods, and
//! which lane holds which service.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};

use crate::lane::{LaneGroupSpec, LaneSpec};
use crate::object::{Object, Typed};

pub use lanes_routes::host::{parse_mesh_host, selector_matches, strip_port};

/// The mesh's indexes hash with aHash, keyed at random per map as its authors intend
/// (labels and names come from the API, so the hash must not be predictable): a compile
/// hashes a few names per pod and service, and SipHash made that a tenth of its time.
pub type Map<K, V> = HashMap<K, V, ahash::RandomState>;

/// A Service as routing sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceView {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Pod selector.
    pub selector: BTreeMap<String, String>,
    /// Service ports (`port`, `targetPort` resolved to a number where it is one).
    pub ports: Vec<ServicePort>,
}

/// One port of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// The service port.
    pub port: u16,
    /// The container port it forwards to.
    pub target_port: u16,
    /// The port's name.
    pub name: Option<String>,
    /// Its application protocol (`appProtocol`).
    pub app_protocol: Option<String>,
}

impl ServiceView {
    /// The service's fully qualified host name.
    pub fn fqdn(&self) -> String {
        format!("{}.{}.svc.cluster.local", self.name, self.namespace)
    }

    /// Whether a pod in `namespace` with `labels` is selected by this service.
    pub fn selects(&self, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
        namespace == self.namespace
            && !self.selector.is_empty()
            && selector_matches(&self.selector, labels)
    }

    /// Reads a Service object.
    pub fn from_object(object: &Object) -> Option<ServiceView> {
        let Typed::Service(svc) = &object.typed else {
            return None;
        };
        let spec = svc.spec.as_ref();
        let ports = spec
            .and_then(|s| s.ports.as_ref())
            .map(|ports| {
                ports
                    .iter()
                    .filter_map(|p| {
                        let port = u16::try_from(p.port).ok()?;
                        let target_port = match &p.target_port {
                            Some(
                                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(t),
                            ) => u16::try_from(*t).ok()?,
                            _ => port,
                        };
                        Some(ServicePort {
                            port,
                            target_port,
                            name: p.name.clone(),
                            app_protocol: p.app_protocol.clone(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(ServiceView {
            name: object.name.clone(),
            namespace: object.namespace_or_empty().to_string(),
            selector: spec.and_then(|s| s.selector.clone()).unwrap_or_default(),
            ports,
        })
    }
}

/// A pod as routing sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Whether the pod is ready to serve.
    pub ready: bool,
    /// The pod's address, when it has one.
    pub ip: Option<String>,
}

impl PodView {
    /// Reads a Pod object; ready when its `Ready` condition is `True`.
    pub fn from_object(object: &Object) -> Option<PodView> {
        let Typed::Pod(pod) = &object.typed else {
            return None;
        };
        let status = pod.status.as_ref();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        Some(PodView {
            name: object.name.clone(),
            namespace: object.namespace_or_empty().to_string(),
            labels: object.labels(),
            ready,
            ip: status.and_then(|s| s.pod_ip.clone()),
        })
    }
}

/// The replicas a Deployment asks for (1 when unset).
pub fn deployment_replicas(object: &Object) -> Option<i32> {
    match &object.typed {
        Typed::Deployment(d) => Some(d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)),
        _ => None,
    }
}

/// The pod-template labels of a Deployment.
pub fn deployment_template_labels(object: &Object) -> Option<BTreeMap<String, String>> {
    match &object.typed {
        Typed::Deployment(d) => Some(
            d.spec
                .as_ref()
                .and_then(|s| s.template.metadata.as_ref())
                .and_then(|m| m.labels.clone())
                .unwrap_or_default(),
        ),
        _ => None,
    }
}

/// The pods an offline render assumes: one ready pod per Deployment with replicas > 0,
/// carrying its template labels, plus the Pod objects given.
pub fn assumed_pods<'a>(objects: impl IntoIterator<Item = &'a Object>) -> Vec<PodView> {
    let mut pods = Vec::new();
    for object in objects {
        if let Some(pod) = PodView::from_object(object) {
            pods.push(pod);
        } else if deployment_replicas(object).is_some_and(|r| r > 0) {
            pods.push(PodView {
                name: format!("{}-pod", object.name),
                namespace: object.namespace_or_empty().to_string(),
                labels: deployment_template_labels(object).unwrap_or_default(),
                ready: true,
                ip: None,
            });
        }
    }
    pods
}

/// Pods indexed by namespace and label, so the pods a service selects are found without
/// scanning every pod.
///
/// The pods carrying one label are a chain of a [`ChainMap`] rather than a list of
/// their own, which saves an allocation per label: about one per service.
#[derive(Debug, Clone)]
pub struct PodIndex<'a> {
    pods: &'a [PodView],
    by_label: ChainMap<(&'a str, &'a str, &'a str)>,
    /// The label keys indexed, sorted; `None`: every key.
    keys: Option<Vec<&'a str>>,
}

impl<'a> PodIndex<'a> {
    /// Indexes `pods` by every label.
    pub fn new(pods: &'a [PodView]) -> PodIndex<'a> {
        // Most pods carry a label of their own (`app`, a hash): about one entry per pod.
        PodIndex::indexing(pods, None, pods.len())
    }

    /// Indexes `pods` by the label keys `keys` only: the first keys of the selectors it
    /// will be asked about (a pod's other labels, such as its lane or template hash, are
    /// never looked up). A selector whose first key is not among them is answered by a
    /// scan of every pod, so the answers are the same as [`PodIndex::new`]'s.
    ///
    /// `keys` names one key per selector (repeats allowed): the index is sized for as
    /// many entries as selectors, since pods that share a selector's label share an entry.
    pub fn on_keys<I>(pods: &'a [PodView], keys: I) -> PodIndex<'a>
    where
        I: IntoIterator<Item = &'a str>,
    {
        let mut keys: Vec<&str> = keys.into_iter().collect();
        let selectors = keys.len();
        keys.sort_unstable();
        keys.dedup();
        PodIndex::indexing(pods, Some(keys), selectors.min(pods.len()))
    }

    /// Indexes `pods` by `keys`, in a table sized for `entries`.
    fn indexing(pods: &'a [PodView], keys: Option<Vec<&'a str>>, entries: usize) -> PodIndex<'a> {
        let mut by_label = ChainMap::with_capacity(entries, pods.len());
        for (pod, p) in pods.iter().enumerate() {
            let labels = p.labels.iter();
            for (k, v) in labels.filter(|(k, _)| is_indexed(keys.as_deref(), k)) {
                by_label.push((p.namespace.as_str(), k.as_str(), v.as_str()), pod);
            }
        }
        PodIndex {
            pods,
            by_label,
            keys,
        }
    }

    /// The pods `service` selects, ready or not, in the order given.
    pub fn selected_by<'s>(
        &'s self,
        service: &'s ServiceView,
    ) -> impl Iterator<Item = &'a PodView> + 's {
        self.matching(&service.namespace, &service.selector)
    }

    /// The pods in `namespace` that a non-empty `selector` matches, in the order given.
    pub fn matching<'s>(
        &'s self,
        namespace: &'s str,
        selector: &'s BTreeMap<String, String>,
    ) -> impl Iterator<Item = &'a PodView> + 's {
        // Every matching pod carries the selector's first label: start from those, or
        // from every pod when that label is not indexed.
        let first = selector.iter().next();
        let indexed = first.filter(|(k, _)| is_indexed(self.keys.as_deref(), k));
        let candidates = indexed
            .map(|(k, v)| self.by_label.get(&(namespace, k.as_str(), v.as_str())))
            .unwrap_or_default();
        let scan = if first.is_some() && indexed.is_none() {
            self.pods
        } else {
            &[]
        };
        // The index holds pods by namespace and label, so for a one-label selector its
        // entry is the answer: checking each pod again would read every pod's labels a
        // second time.
        let settled = indexed.is_some() && selector.len() == 1;
        candidates
            .map(|i| &self.pods[i])
            .chain(scan)
            .filter(move |p| {
                settled || (p.namespace == namespace && selector_matches(selector, &p.labels))
            })
    }

    /// The ready pods `service` selects.
    pub fn ready_for<'s>(&'s self, service: &'s ServiceView) -> Vec<&'a PodView> {
        self.selected_by(service).filter(|p| p.ready).collect()
    }
}

/// A map from keys to lists of positions (of pods, of lanes), each list kept in the
/// order pushed. The lists are chains through one shared vector of links, where a list
/// of its own per key would cost an allocation per key (per service, in the indexes
/// that use it).
#[derive(Debug, Clone)]
struct ChainMap<K> {
    chains: Map<K, Chain>,
    links: Vec<Link>,
}

/// The first and last link of one key's list.
#[derive(Debug, Clone, Copy)]
struct Chain {
    first: usize,
    last: usize,
}

/// One position of a list, and the link after it.
#[derive(Debug, Clone, Copy)]
struct Link {
    at: usize,
    next: Option<usize>,
}

impl<K: std::hash::Hash + Eq> ChainMap<K> {
    /// An empty map with room for `keys` keys and `links` positions.
    fn with_capacity(keys: usize, links: usize) -> ChainMap<K> {
        ChainMap {
            chains: Map::with_capacity_and_hasher(keys, ahash::RandomState::new()),
            links: Vec::with_capacity(links),
        }
    }

    /// Appends `at` to the list of `key`.
    fn push(&mut self, key: K, at: usize) {
        let link = self.links.len();
        self.links.push(Link { at, next: None });
        match self.chains.entry(key) {
            Entry::Occupied(mut chain) => {
                let chain = chain.get_mut();
                self.links[chain.last].next = Some(link);
                chain.last = link;
            }
            Entry::Vacant(slot) => {
                slot.insert(Chain {
                    first: link,
                    last: link,
                });
            }
        }
    }

    /// The last position pushed for `key`.
    fn last(&self, key: &K) -> Option<usize> {
        let chain = self.chains.get(key)?;
        self.links.get(chain.last).map(|l| l.at)
    }

    /// The positions pushed for `key`, in the order pushed.
    fn get(&self, key: &K) -> Positions<'_> {
        Positions {
            links: &self.links,
            next: self.chains.get(key).map(|c| c.first),
        }
    }
}

impl<K> Default for ChainMap<K> {
    fn default() -> ChainMap<K> {
        ChainMap {
            chains: Map::default(),
            links: Vec::new(),
        }
    }
}

/// The positions of one key of a [`ChainMap`].
#[derive(Debug, Clone, Default)]
struct Positions<'m> {
    links: &'m [Link],
    next: Option<usize>,
}

impl Iterator for Positions<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let link = self.links.get(self.next?)?;
        self.next = link.next;
        Some(link.at)
    }
}

/// Whether an index over label keys `keys` (sorted; `None`: every key) holds `key`.
fn is_indexed(keys: Option<&[&str]>, key: &str) -> bool {
    keys.is_none_or(|keys| keys.binary_search(&key).is_ok())
}

/// Services indexed by namespace and name.
#[derive(Debug, Clone, Default)]
pub struct ServiceIndex<'a> {
    by_name: Map<(&'a str, &'a str), &'a ServiceView>,
}

impl<'a> ServiceIndex<'a> {
    /// Indexes `services`; of two with one name, the first counts.
    pub fn new(services: &'a [ServiceView]) -> ServiceIndex<'a> {
        let mut by_name = Map::with_capacity_and_hasher(services.len(), ahash::RandomState::new());
        for s in services {
            by_name
                .entry((s.namespace.as_str(), s.name.as_str()))
                .or_insert(s);
        }
        ServiceIndex { by_name }
    }

    /// Service `namespace/name`.
    pub fn get(&self, name: &str, namespace: &str) -> Option<&'a ServiceView> {
        self.by_name.get(&(namespace, name)).copied()
    }
}

/// A lane group's lanes indexed for membership, built once per group. A lane holds a
/// service when it lists the service, or (with the group's `autoUpdate`) when one of the
/// service's ready pods matches the lane's label selector.
///
/// Which lanes list a service is one lookup; which selectors a pod can match is found by
/// each selector's first label, so a service costs a lookup per ready pod and distinct
/// first key rather than a selector check per lane and pod (the compile of a large group
/// spent a third of its time in those checks).
#[derive(Debug, Clone, Default)]
pub struct LaneMembership<'a> {
    lanes: usize,
    /// Per service `(namespace, name)`, the lanes that list it.
    listed: ChainMap<(&'a str, &'a str)>,
    /// Per first selector key, per its value: the lanes with that first label, and their
    /// whole selectors. Empty without `autoUpdate`.
    by_first_label: Vec<(&'a str, SelectorsByValue<'a>)>,
}

type SelectorsByValue<'a> = Map<&'a str, Vec<(usize, &'a BTreeMap<String, String>)>>;

impl<'a> LaneMembership<'a> {
    /// Indexes `lanes`, numbered in the order given, of `group`.
    pub fn new<I>(group: &LaneGroupSpec, lanes: I) -> LaneMembership<'a>
    where
        I: IntoIterator<Item = &'a LaneSpec>,
    {
        let auto_update = group.auto_update.unwrap_or(false);
        let lanes: Vec<&LaneSpec> = lanes.into_iter().collect();
        // Sized for every listing at once: a lane that lists every service of a large
        // group would otherwise grow the table a dozen times.
        let listings = lanes.iter().map(|l| l.services.len()).sum();
        let mut index = LaneMembership {
            listed: ChainMap::with_capacity(listings, listings),
            ..LaneMembership::default()
        };
        for (i, lane) in lanes.into_iter().enumerate() {
            index.lanes = i + 1;
            for s in &lane.services {
                let service = (s.namespace(), s.name.as_str());
                if index.listed.last(&service) != Some(i) {
                    index.listed.push(service, i);
                }
            }
            let first = lane.label_selector.iter().next();
            if let Some((key, value)) = first.filter(|_| auto_update) {
                let pos = match index.by_first_label.iter().position(|(k, _)| k == key) {
                    Some(pos) => pos,
                    None => {
                        index.by_first_label.push((key.as_str(), Map::default()));
                        index.by_first_label.len() - 1
                    }
                };
                index.by_first_label[pos]
                    .1
                    .entry(value.as_str())
                    .or_default()
                    .push((i, &lane.label_selector));
            }
        }
        index
    }

    /// Which lanes hold `service`, whose ready pods are `ready_pods`: one flag per lane,
    /// in the order the lanes were given.
    pub fn holding(&self, service: &ServiceView, ready_pods: &[&PodView]) -> Vec<bool> {
        let mut held = vec![false; self.lanes];
        let key = (service.namespace.as_str(), service.name.as_str());
        for i in self.listed.get(&key) {
            held[i] = true;
        }
        for pod in ready_pods.iter().filter(|p| p.ready) {
            for (key, by_value) in &self.by_first_label {
                let Some(candidates) = pod.labels.get(*key).and_then(|v| by_value.get(v.as_str()))
                else {
                    continue;
                };
                for &(i, selector) in candidates {
                    if !held[i] && selector_matches(selector, &pod.labels) {
                        held[i] = true;
                    }
                }
            }
        }
        held
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lane::ServiceRef;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn service(name: &str) -> ServiceView {
        ServiceView {
            name: name.to_string(),
            namespace: "ns".to_string(),
            selector: labels(&[("app", name)]),
            ports: Vec::new(),
        }
    }

    fn pod(app: &str, tag: &str, ready: bool) -> PodView {
        PodView {
            name: format!("{app}-{tag}"),
            namespace: "ns".to_string(),
            labels: labels(&[("app", app), ("tag", tag), ("zone", "a")]),
            ready,
            ip: None,
        }
    }

    fn lane(selector: &[(&str, &str)], lists: &[&str]) -> LaneSpec {
        LaneSpec {
            label_selector: labels(selector),
            services: lists
                .iter()
                .map(|name| ServiceRef {
                    name: name.to_string(),
                    namespace: Some("ns".to_string()),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn group(auto_update: bool) -> LaneGroupSpec {
        LaneGroupSpec {
            auto_update: Some(auto_update),
            ..Default::default()
        }
    }

    #[test]
    fn a_chain_map_keeps_each_keys_positions_in_the_order_pushed() {
        let mut map = ChainMap::with_capacity(2, 5);
        for (key, at) in [("a", 0), ("b", 1), ("a", 2), ("a", 5), ("b", 3)] {
            map.push(key, at);
        }
        assert_eq!(map.get(&"a").collect::<Vec<_>>(), [0, 2, 5]);
        assert_eq!(map.get(&"b").collect::<Vec<_>>(), [1, 3]);
        assert_eq!(map.get(&"c").count(), 0);
        assert_eq!(map.last(&"a"), Some(5));
        assert_eq!(map.last(&"c"), None);
    }

    #[test]
    fn a_lane_listing_a_service_twice_holds_it_once() {
        let twice = lane(&[], &["reviews", "reviews"]);
        let membership = LaneMembership::new(&group(false), [&twice]);
        assert_eq!(membership.listed.get(&("ns", "reviews")).count(), 1);
        assert_eq!(membership.holding(&service("reviews"), &[]), [true]);
    }

    #[test]
    fn a_pod_index_on_some_keys_answers_as_one_on_every_key() {
        let mut pods = vec![
            pod("a", "base", true),
            pod("a", "canary", false),
            pod("b", "base", true),
        ];
        let mut elsewhere = pod("a", "base", true);
        elsewhere.namespace = "elsewhere".to_string();
        pods.push(elsewhere);
        let full = PodIndex::new(&pods);
        let partial = PodIndex::on_keys(&pods, ["app"]);
        let names = |index: &PodIndex<'_>, selector: &[(&str, &str)]| -> Vec<String> {
            index
                .matching("ns", &labels(selector))
                .map(|p| p.name.clone())
                .collect()
        };
        let selectors: [&[(&str, &str)]; 5] = [
            &[("app", "a")],
            // "tag" is not indexed by the partial index: answered by a scan.
            &[("tag", "base")],
            &[("app", "a"), ("tag", "canary")],
            &[("zone", "b")],
            &[],
        ];
        for selector in selectors {
            assert_eq!(
                names(&partial, selector),
                names(&full, selector),
                "{selector:?}"
            );
            // Both agree with a scan of every pod, one-label selectors included.
            let wanted = labels(selector);
            let scanned: Vec<String> = pods
                .iter()
                .filter(|p| {
                    !wanted.is_empty()
                        && p.namespace == "ns"
                        && selector_matches(&wanted, &p.labels)
                })
                .map(|p| p.name.clone())
                .collect();
            assert_eq!(names(&full, selector), scanned, "{selector:?}");
        }
        assert_eq!(names(&partial, &[("tag", "base")]), ["a-base", "b-base"]);
        assert_eq!(names(&partial, &[]), Vec::<String>::new());
        assert_eq!(partial.ready_for(&service("a")).len(), 1);
    }

    #[test]
    fn a_lane_holds_the_services_it_lists() {
        let lanes = [lane(&[("tag", "base")], &["a", "b"]), lane(&[], &["b"])];
        let index = LaneMembership::new(&group(false), &lanes);
        assert_eq!(index.holding(&service("a"), &[]), [true, false]);
        assert_eq!(index.holding(&service("b"), &[]), [true, true]);
        assert_eq!(index.holding(&service("c"), &[]), [false, false]);
        // The same name in another namespace is another service.
        let mut other = service("a");
        other.namespace = "elsewhere".to_string();
        assert_eq!(index.holding(&other, &[]), [false, false]);
    }

    #[test]
    fn with_auto_update_a_ready_pod_matching_the_whole_selector_brings_its_service_in() {
        let lanes = [
            lane(&[("tag", "base")], &[]),
            lane(&[("tag", "canary")], &[]),
            // First label shared with the canary lane, second one no pod has.
            lane(&[("tag", "canary"), ("zone", "b")], &[]),
            // A first key other lanes do not use.
            lane(&[("app", "a"), ("zone", "a")], &[]),
            // An empty selector matches no pod.
            lane(&[], &[]),
        ];
        let index = LaneMembership::new(&group(true), &lanes);
        let canary = pod("a", "canary", true);
        let base = pod("a", "base", true);
        assert_eq!(
            index.holding(&service("a"), &[&canary]),
            [false, true, false, true, false]
        );
        assert_eq!(
            index.holding(&service("a"), &[&base, &canary]),
            [true, true, false, true, false]
        );
        // A pod that is not ready brings nothing in.
        let unready = pod("a", "canary", false);
        assert_eq!(
            index.holding(&service("a"), &[&unready]),
            [false, false, false, false, false]
        );
    }

    #[test]
    fn without_auto_update_only_the_listing_counts() {
        let lanes = [
            lane(&[("tag", "canary")], &[]),
            lane(&[("tag", "base")], &["a"]),
        ];
        let index = LaneMembership::new(&group(false), &lanes);
        let canary = pod("a", "canary", true);
        assert_eq!(index.holding(&service("a"), &[&canary]), [false, true]);
    }
}
