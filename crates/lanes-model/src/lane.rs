//! ASM traffic lanes: the lane group (`ASMSwimLaneGroup`) and its lanes (`ASMSwimLane`).

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::istio::{Destination, HttpMatchRequest};

/// The label that joins a lane to its group.
pub const GROUP_LABEL: &str = "swimlane-group";

/// The route header ASM uses when a group names none.
pub const DEFAULT_ROUTE_HEADER: &str = "x-asm-prefer-tag";

/// A lane group: the services that take part in lanes, how ingress traffic picks a
/// lane, and how requests fall back.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    derive = "PartialEq",
    group = "istio.alibabacloud.com",
    version = "v1",
    kind = "ASMSwimLaneGroup",
    plural = "asmswimlanegroups",
    shortname = "slg",
    status = "LaneGroupStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct LaneGroupSpec {
    /// Ingress gateway and the routing strategy at the ingress.
    #[serde(default)]
    pub ingress: GroupIngress,
    /// Permissive mode: the lane travels in the route header or by trace correlation,
    /// and a service missing from a lane is served by the fallback lane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_permissive: Option<bool>,
    /// Headers and fallback of permissive mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissive_mode_configuration: Option<PermissiveModeConfiguration>,
    /// Whether lanes gain services from the pods their label selector matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_update: Option<bool>,
    /// The services of the group.
    #[serde(default)]
    pub services: Vec<ServiceRef>,
}

/// Status of a lane group, written by the lane controller.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LaneGroupStatus {
    /// Names of the generated objects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub generated: Vec<String>,
    /// Last message of the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `Ready`: whether the group compiles (`False` names the object, field and reason
    /// that stop it; its generated objects are then left as they stand).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<crate::schema::ConditionSchema>")]
    pub conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
}

/// The ingress of a lane group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupIngress {
    /// The Istio Gateway the ingress VirtualServices bind to.
    #[serde(default)]
    pub gateway: GatewayRef,
    /// How a request entering the mesh picks a lane.
    #[serde(default)]
    pub ingress_routing: IngressRouting,
}

/// A reference to an Istio Gateway.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GatewayRef {
    /// Gateway name.
    #[serde(default)]
    pub name: String,
    /// Gateway namespace (default `istio-system`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Gateway type, `ASM` for ASM's ingress gateway.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// Ingress routing of a lane group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressRouting {
    /// `rule_based` (each lane's ingress rules) or `weighted` (one group rule, split by
    /// lane weights).
    #[serde(default)]
    pub ingress_routing_strategy: IngressStrategy,
    /// The group rule of the `weighted` strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weighted_routing_rule: Option<WeightedRoutingRule>,
}

/// How ingress traffic picks a lane.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum IngressStrategy {
    /// The first online lane whose ingress rule matches.
    #[default]
    #[serde(rename = "rule_based", alias = "rule-based")]
    RuleBased,
    /// Requests matching the group rule are split by lane weight.
    #[serde(rename = "weighted")]
    Weighted,
}

/// The group-wide ingress rule of the `weighted` strategy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WeightedRoutingRule {
    /// Hosts the rule applies to.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Request conditions, any of which selects the rule.
    #[serde(default)]
    pub request_matches: Vec<HttpMatchRequest>,
}

/// Permissive-mode settings of a lane group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PermissiveModeConfiguration {
    /// The lane that serves requests whose lane lacks a service (the baseline).
    #[serde(default)]
    pub fallback_target: String,
    /// The header that carries the lane name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_header: Option<String>,
    /// The header that carries the trace id the applications forward.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_header: Option<String>,
    /// Per-service fallback lanes, keyed by `namespace/name`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub service_level_fallback_target: BTreeMap<String, String>,
}

/// A service of a lane group or lane.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ServiceRef {
    /// The cluster the service lives in (informational in Lanes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterRef>,
    /// Service name.
    #[serde(default)]
    pub name: String,
    /// Service namespace (default `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl ServiceRef {
    /// The namespace, `default` when unset.
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or("default")
    }
}

/// A cluster reference.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ClusterRef {
    /// Cluster id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Cluster name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A lane: the pods that belong to it, the ingress rules that send traffic into it, and
/// the services it holds.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    derive = "PartialEq",
    group = "istio.alibabacloud.com",
    version = "v1",
    kind = "ASMSwimLane",
    plural = "asmswimlanes",
    shortname = "sl"
)]
#[serde(rename_all = "camelCase")]
pub struct LaneSpec {
    /// Rules that send ingress traffic into this lane (`rule_based` strategy).
    #[serde(default)]
    pub ingress_rules: Vec<IngressRule>,
    /// This lane's share of the group rule (`weighted` strategy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_weight: Option<IngressWeight>,
    /// Pod labels of the lane's workloads.
    #[serde(default)]
    pub label_selector: BTreeMap<String, String>,
    /// Services the lane holds whatever pods exist.
    #[serde(default)]
    pub services: Vec<ServiceRef>,
}

/// One ingress rule of a lane.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressRule {
    /// Hosts the rule applies to.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Request conditions.
    #[serde(default, rename = "match")]
    pub matches: HttpMatchRequest,
    /// Rule name.
    #[serde(default)]
    pub name: String,
    /// Whether the rule is in force.
    #[serde(default)]
    pub online: bool,
    /// Where matching requests go.
    #[serde(default)]
    pub route: IngressRoute,
}

/// The route of an ingress rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IngressRoute {
    /// The destination service.
    #[serde(default)]
    pub destination: Destination,
}

/// A lane's weight under the `weighted` strategy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IngressWeight {
    /// The destination service.
    #[serde(default)]
    pub destination: Destination,
    /// Share of the group rule's traffic, 0..=100.
    #[serde(default)]
    pub weight: i32,
}

/// The fallback targets of a group that name no lane of it, as (field, message): a
/// request falling back there would find no lane. `lanes` are the names of the group's
/// lanes.
pub fn unknown_fallback_targets(
    group: &LaneGroupSpec,
    lanes: &std::collections::BTreeSet<&str>,
) -> Vec<(String, String)> {
    let Some(p) = &group.permissive_mode_configuration else {
        return Vec::new();
    };
    let not_a_lane = |target: &str| format!("lane {target:?} is not a lane of this group");
    let mut out = Vec::new();
    if !p.fallback_target.is_empty() && !lanes.contains(p.fallback_target.as_str()) {
        out.push((
            "spec.permissiveModeConfiguration.fallbackTarget".to_string(),
            not_a_lane(&p.fallback_target),
        ));
    }
    for (key, target) in &p.service_level_fallback_target {
        if !lanes.contains(target.as_str()) {
            out.push((
                format!("spec.permissiveModeConfiguration.serviceLevelFallbackTarget.{key}"),
                not_a_lane(target),
            ));
        }
    }
    out
}
