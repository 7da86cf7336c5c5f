//! Typed Istio networking resources: Gateway, VirtualService, DestinationRule, with
//! ASM's `fallback` extension on HTTP route destinations.
//!
//! Only what Lanes reads or writes is typed; a decoded object keeps every other field
//! in its raw form (see [`crate::Object`]).

use std::borrow::Cow;
use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use lanes_routes::SharedLabels;
pub use lanes_routes::matching::{HttpMatchRequest, StringMatch};

/// A route destination: a host and optionally a subset and port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    /// Service host, short or fully qualified.
    #[serde(default)]
    pub host: String,
    /// Subset of the host's DestinationRule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    /// Port on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortSelector>,
}

/// A port by number.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PortSelector {
    /// Port number.
    pub number: u32,
}

/// ASM's fallback on a route destination: where a request goes when the destination
/// subset has no endpoint or fails.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Fallback {
    /// The fallback destination.
    pub target: Destination,
}

/// Header operations on a request or response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HeaderOperations {
    /// Headers to set, overwriting.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    /// Headers to append.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add: BTreeMap<String, String>,
    /// Headers to remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// Request and response header operations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Headers {
    /// Operations on the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<HeaderOperations>,
    /// Operations on the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<HeaderOperations>,
}

/// One weighted destination of an HTTP route.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteDestination {
    /// Where the request goes.
    pub destination: Destination,
    /// Share of traffic, 0..=100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
    /// ASM fallback target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Fallback>,
    /// Header operations for this destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Box<Headers>>,
}

/// One HTTP route rule of a VirtualService.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpRoute {
    /// Conditions, any of which selects this rule; none means every request.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<HttpMatchRequest>,
    /// Rule name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Destinations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route: Vec<HttpRouteDestination>,
    /// Header operations for the whole rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Box<Headers>>,
    /// Request timeout, as a duration string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// VirtualService spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualServiceSpec {
    /// Gateways (`ns/name`, or `mesh`) the routes apply to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    /// Hosts the routes apply to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// HTTP route rules, first match wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<HttpRoute>,
}

/// A subset of a service's endpoints, by pod labels.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Subset {
    /// Pod labels the subset selects (shared with the lane's selector).
    #[serde(default)]
    pub labels: SharedLabels,
    /// Subset name.
    pub name: String,
}

/// DestinationRule spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DestinationRuleSpec {
    /// The service host.
    #[serde(default)]
    pub host: String,
    /// Named subsets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subsets: Vec<Subset>,
}

/// A port of a Gateway server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GatewayPort {
    /// Port number.
    pub number: u32,
    /// Port name.
    #[serde(default)]
    pub name: String,
    /// Protocol: HTTP, HTTPS, GRPC, HTTP2, TCP, TLS...
    #[serde(default)]
    pub protocol: String,
}

/// One server of a Gateway.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GatewayServer {
    /// The listening port.
    pub port: GatewayPort,
    /// Hosts served.
    #[serde(default)]
    pub hosts: Vec<String>,
}

/// Gateway spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GatewaySpec {
    /// Labels of the gateway workload.
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    /// Servers.
    #[serde(default)]
    pub servers: Vec<GatewayServer>,
}

/// Metadata of a generated Istio object (only what Lanes sets).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GeneratedMeta {
    /// Labels (one set shared by every object of a lane group).
    #[serde(default, skip_serializing_if = "no_labels")]
    pub labels: SharedLabels,
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
}

fn no_labels(labels: &SharedLabels) -> bool {
    labels.is_empty()
}

/// An Istio object as Lanes generates it, in the field order the article prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IstioObject<S> {
    /// `networking.istio.io/v1alpha3` (a constant where Lanes generates the object).
    pub api_version: Cow<'static, str>,
    /// `VirtualService` or `DestinationRule`.
    pub kind: Cow<'static, str>,
    /// Name, namespace and labels.
    pub metadata: GeneratedMeta,
    /// The spec.
    pub spec: S,
}

/// A generated VirtualService.
pub type VirtualService = IstioObject<VirtualServiceSpec>;
/// A generated DestinationRule.
pub type DestinationRule = IstioObject<DestinationRuleSpec>;
