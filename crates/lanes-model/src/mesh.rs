//! A read-only view of the mesh that the compiler and lint share: services, pods, and
//! which lane holds which service.

use std::collections::BTreeMap;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServicePort {
    /// The service port.
    pub port: u16,
    /// The container port it forwards to.
    pub target_port: u16,
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
                        Some(ServicePort { port, target_port })
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

/// Whether `lane` holds `service`: the lane lists it, or (with `autoUpdate`) a ready pod
/// of the service matches the lane's label selector.
pub fn lane_contains(
    group: &LaneGroupSpec,
    lane: &LaneSpec,
    service: &ServiceView,
    pods: &[PodView],
) -> bool {
    let listed = lane
        .services
        .iter()
        .any(|s| s.name == service.name && s.namespace() == service.namespace);
    if listed {
        return true;
    }
    group.auto_update.unwrap_or(false)
        && !lane.label_selector.is_empty()
        && pods.iter().any(|p| {
            p.ready
                && service.selects(&p.namespace, &p.labels)
                && selector_matches(&lane.label_selector, &p.labels)
        })
}
