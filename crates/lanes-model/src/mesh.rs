//! A read-only view of the mesh that the compiler and lint share: services, pods, and
//! which lane holds which service.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::lane::{LaneGroupSpec, LaneSpec};
use crate::object::{Object, Typed};

pub use lanes_routes::host::{parse_mesh_host, selector_matches, strip_port};

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
#[derive(Debug, Clone)]
pub struct PodIndex<'a> {
    pods: &'a [PodView],
    by_label: HashMap<(&'a str, &'a str, &'a str), Vec<usize>>,
}

impl<'a> PodIndex<'a> {
    /// Indexes `pods`.
    pub fn new(pods: &'a [PodView]) -> PodIndex<'a> {
        let mut by_label: HashMap<(&str, &str, &str), Vec<usize>> = HashMap::new();
        for (i, pod) in pods.iter().enumerate() {
            for (k, v) in &pod.labels {
                by_label
                    .entry((pod.namespace.as_str(), k.as_str(), v.as_str()))
                    .or_default()
                    .push(i);
            }
        }
        PodIndex { pods, by_label }
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
        // Every matching pod carries the selector's first label: start from those.
        let candidates = selector
            .iter()
            .next()
            .and_then(|(k, v)| self.by_label.get(&(namespace, k.as_str(), v.as_str())))
            .map_or(&[][..], Vec::as_slice);
        candidates
            .iter()
            .map(|&i| &self.pods[i])
            .filter(move |p| p.namespace == namespace && selector_matches(selector, &p.labels))
    }

    /// The ready pods `service` selects.
    pub fn ready_for<'s>(&'s self, service: &'s ServiceView) -> Vec<&'a PodView> {
        self.selected_by(service).filter(|p| p.ready).collect()
    }
}

/// Services indexed by namespace and name.
#[derive(Debug, Clone, Default)]
pub struct ServiceIndex<'a> {
    by_name: HashMap<(&'a str, &'a str), &'a ServiceView>,
}

impl<'a> ServiceIndex<'a> {
    /// Indexes `services`; of two with one name, the first counts.
    pub fn new(services: &'a [ServiceView]) -> ServiceIndex<'a> {
        let mut by_name = HashMap::with_capacity(services.len());
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

/// A lane with the services it lists indexed.
#[derive(Debug, Clone)]
pub struct LaneView<'a> {
    /// The lane.
    pub spec: &'a LaneSpec,
    listed: HashSet<(&'a str, &'a str)>,
}

impl<'a> LaneView<'a> {
    /// Indexes the services `spec` lists.
    pub fn new(spec: &'a LaneSpec) -> LaneView<'a> {
        LaneView {
            spec,
            listed: spec
                .services
                .iter()
                .map(|s| (s.namespace(), s.name.as_str()))
                .collect(),
        }
    }

    /// Whether the lane lists `service`.
    pub fn lists(&self, service: &ServiceView) -> bool {
        self.listed
            .contains(&(service.namespace.as_str(), service.name.as_str()))
    }
}

/// Whether `lane` holds `service`: the lane lists it, or (with `autoUpdate`) one of the
/// service's ready pods, `ready_pods`, matches the lane's label selector.
pub fn lane_contains(
    group: &LaneGroupSpec,
    lane: &LaneView<'_>,
    service: &ServiceView,
    ready_pods: &[&PodView],
) -> bool {
    if lane.lists(service) {
        return true;
    }
    let selector = &lane.spec.label_selector;
    group.auto_update.unwrap_or(false)
        && !selector.is_empty()
        && ready_pods
            .iter()
            .any(|p| p.ready && selector_matches(selector, &p.labels))
}
