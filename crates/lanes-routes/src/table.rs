//! The route table: what the data plane runs. One table holds every mesh service and,
//! per lane group, its lanes, subsets, ingress rules and fallbacks.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::matching::HttpMatchRequest;
use serde::{Deserialize, Serialize};

/// Labels shared by the many objects that carry the same set: a lane's selector is the
/// labels of its subset in every service it holds, and a group's labels are on every
/// object it generates. Shared, a 1,000-service group holds one copy of each, not one
/// per object.
pub type SharedLabels = Arc<BTreeMap<String, String>>;

/// Everything a gateway or sidecar needs to pick a lane and a destination.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteTable {
    /// Every Service of the mesh, whether or not a lane group holds it.
    #[serde(default)]
    pub services: Vec<MeshService>,
    /// Lane groups, in creation order.
    #[serde(default)]
    pub groups: Vec<GroupRoutes>,
    /// Gateway API routes whose parent is a mesh Service, in creation order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mesh_routes: Vec<crate::gateway::MeshRoute>,
    /// Gateway API routes attached to a Gateway, which Lanes' gateway serves, in
    /// creation order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress_routes: Vec<crate::gateway::IngressRoute>,
}

/// A Service of the mesh.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshService {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Ports: service port → container port.
    #[serde(default)]
    pub ports: Vec<PortMap>,
    /// Pod selector.
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
}

/// A service port and the container port behind it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMap {
    /// Service port.
    pub port: u16,
    /// Container port.
    pub target_port: u16,
}

/// The routes of one lane group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupRoutes {
    /// Group name.
    pub name: String,
    /// Header that carries the lane.
    pub route_header: String,
    /// Header that carries the trace id, for permissive correlation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_header: Option<String>,
    /// Permissive (fallback allowed) or strict mode.
    pub permissive: bool,
    /// The group's fallback lane (the baseline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// Lanes in creation order.
    #[serde(default)]
    pub lanes: Vec<LaneRoutes>,
    /// The group's services with their subsets.
    #[serde(default)]
    pub services: Vec<ServiceRoutes>,
    /// How ingress traffic picks a lane.
    pub ingress: IngressRoutes,
    /// Releases whose steps route traffic into a lane, in Rollout creation order:
    /// after the lanes' own rules, before a weighted split.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub releases: Vec<ReleaseRoute>,
}

/// A lane of a group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LaneRoutes {
    /// Lane name (also the subset name).
    pub name: String,
    /// Pod labels of the lane.
    pub selector: BTreeMap<String, String>,
}

/// A service of a lane group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRoutes {
    /// Service name.
    pub name: String,
    /// Service namespace.
    pub namespace: String,
    /// Fallback lane for this service (per-service override, else the group's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// Subsets of the lanes that hold the service, fallback first.
    #[serde(default)]
    pub subsets: Vec<SubsetRoute>,
}

impl ServiceRoutes {
    /// The subset of `lane`, if the lane holds this service.
    pub fn subset(&self, lane: &str) -> Option<&SubsetRoute> {
        self.subsets.iter().find(|s| s.name == lane)
    }
}

/// A subset: a lane's pods of a service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubsetRoute {
    /// Subset name (the lane's).
    pub name: String,
    /// Pod labels of the subset.
    pub labels: SharedLabels,
}

/// A service addressed by a route.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceName {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Port, when the route names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// Ingress lane choice of a group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "strategy")]
pub enum IngressRoutes {
    /// The first online lane whose rule matches wins.
    RuleBased {
        /// Rules in lane order, then rule order.
        rules: Vec<IngressRouteRule>,
    },
    /// Requests matching the group rule keep a lane they name, or are split by weight.
    Weighted {
        /// Hosts of the group rule.
        hosts: Vec<String>,
        /// Conditions of the group rule, any of which matches.
        matches: Vec<HttpMatchRequest>,
        /// Lanes and their weights.
        targets: Vec<WeightedTarget>,
    },
}

impl Default for IngressRoutes {
    fn default() -> Self {
        IngressRoutes::RuleBased { rules: Vec::new() }
    }
}

/// One online ingress rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressRouteRule {
    /// The lane the rule sends traffic into.
    pub lane: String,
    /// Rule name.
    pub name: String,
    /// Hosts the rule applies to (`*` for any).
    pub hosts: Vec<String>,
    /// Request conditions.
    #[serde(rename = "match")]
    pub matches: HttpMatchRequest,
    /// The destination service.
    pub destination: ServiceName,
}

/// A lane's share under the weighted strategy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WeightedTarget {
    /// Lane.
    pub lane: String,
    /// Weight, 0..=100.
    pub weight: u32,
    /// The destination service.
    pub destination: ServiceName,
}

/// A release's hold on a group's ingress (a Kruise Rollout step's `traffic`, `matches`
/// and `requestHeaderModifier`): of the requests that match the group rule and name no
/// lane, those matching `canary_matches`, and `percent` of the rest (sticky per
/// trace-header value), enter the canary lane; the others enter the baseline lane.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseRoute {
    /// The Rollout, as `namespace/name`.
    pub rollout: String,
    /// Hosts of the group rule (`*` for any).
    pub hosts: Vec<String>,
    /// Conditions of the group rule, any of which matches; none matches every request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<HttpMatchRequest>,
    /// The lane the other requests enter, and the service they go to.
    pub baseline: LaneEntry,
    /// The lane the release's share enters, and the service it goes to.
    pub canary: LaneEntry,
    /// Share of the requests that enter the canary lane, 0..=100.
    pub percent: u32,
    /// Requests that enter the canary lane whatever the share.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub canary_matches: Vec<HttpMatchRequest>,
    /// Header changes of the requests the release sends into the canary lane.
    #[serde(default, skip_serializing_if = "HeaderChanges::is_empty")]
    pub canary_headers: HeaderChanges,
}

/// A lane and the service a request entering it goes to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LaneEntry {
    /// Lane.
    pub lane: String,
    /// The destination service.
    pub destination: ServiceName,
}

/// Changes to a request's headers (lower-case names).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeaderChanges {
    /// Set, replacing any value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<(String, String)>,
    /// Appended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<(String, String)>,
    /// Removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

impl HeaderChanges {
    /// Whether there is nothing to change.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}
