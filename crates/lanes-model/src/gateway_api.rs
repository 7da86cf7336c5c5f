//! Typed Kubernetes Gateway API objects (`gateway.networking.k8s.io/v1`): the HTTPRoute
//! fields Lanes writes in its `gateway-api` flavor, and the Service a lane's pods are
//! reached by there. Field names and defaults follow the standard-channel CRDs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use std::sync::OnceLock;

use serde_json::Value;

use crate::Kind;
use crate::lane::LaneGroupSpec;

/// The Gateway API's group.
pub const GROUP: &str = "gateway.networking.k8s.io";
/// The `apiVersion` of the Gateway API objects Lanes writes.
pub const API_VERSION: &str = "gateway.networking.k8s.io/v1";

pub use lanes_routes::gateway::*;

/// A port of a generated Service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePortSpec {
    /// Port name (copied from the Service it stands for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The service port.
    pub port: u16,
    /// The pods' port.
    pub target_port: u16,
    /// The application protocol (copied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
}

/// The spec of a generated Service: a selector and ports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Pods selected: the Service's selector and the lane's.
    pub selector: BTreeMap<String, String>,
    /// Ports.
    pub ports: Vec<ServicePortSpec>,
}

/// A generated HTTPRoute.
pub type HttpRoute = crate::istio::IstioObject<HttpRouteSpec>;
/// A generated Service.
pub type Service = crate::istio::IstioObject<ServiceSpec>;

/// What a lane group relies on that Gateway API cannot say, as (field path, why), for
/// `lanes lint --flavor gateway-api`: ASM's fallback when a lane's pods fail
/// (permissive mode), the trace header that carries a request's lane to its downstream
/// calls, and strict mode's routing by the calling pod's lane.
pub fn unsaid(spec: &LaneGroupSpec) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let pmc = spec.permissive_mode_configuration.as_ref();
    if spec.is_permissive.unwrap_or(false) {
        out.push((
            "spec.isPermissive",
            "on a Gateway API mesh a lane without the service goes to the fallback lane, but a request whose lane's pods fail is not retried there: Gateway API has no fallback on failure".to_string(),
        ));
        if pmc.and_then(|p| p.trace_header.as_ref()).is_some() {
            out.push((
                "spec.permissiveModeConfiguration.traceHeader",
                "not carried out on a Gateway API mesh: nothing joins a request's downstream calls to its lane by trace, so every service must pass the route header on".to_string(),
            ));
        }
    } else {
        out.push((
            "spec.isPermissive",
            "strict mode routes a call by the calling pod's lane; a Gateway API mesh matches only the route header, so every service must pass it on".to_string(),
        ));
    }
    out
}

/// The `v1` OpenAPI schema of a Gateway API kind, from the CRDs Lanes carries
/// (`data/gateway-api/`, v1.6.1); `None` for other kinds.
pub fn schema(kind: Kind) -> Option<&'static Value> {
    v1_version(kind)?.pointer("/schema/openAPIV3Schema")
}

/// The printer columns (`additionalPrinterColumns`) the CRD of a Gateway API kind
/// declares for `v1`; empty for other kinds.
pub fn printer_columns(kind: Kind) -> &'static [Value] {
    v1_version(kind)
        .and_then(|v| v.get("additionalPrinterColumns"))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// The `v1` entry of `spec.versions` of a Gateway API kind's CRD.
fn v1_version(kind: Kind) -> Option<&'static Value> {
    static VERSIONS: OnceLock<[Value; 3]> = OnceLock::new();
    let [gateway, http, grpc] = VERSIONS.get_or_init(|| {
        [
            v1_of(include_str!("../data/gateway-api/gateways.yaml")),
            v1_of(include_str!("../data/gateway-api/httproutes.yaml")),
            v1_of(include_str!("../data/gateway-api/grpcroutes.yaml")),
        ]
    });
    match kind {
        Kind::KubeGateway => Some(gateway),
        Kind::HttpRoute => Some(http),
        Kind::GrpcRoute => Some(grpc),
        _ => None,
    }
}

/// The `v1` version of the CRD in `text` (null were the carried file unreadable; a
/// unit test reads each).
fn v1_of(text: &str) -> Value {
    let crd: Value = serde_saphyr::from_str(text).unwrap_or(Value::Null);
    crd.pointer("/spec/versions")
        .and_then(Value::as_array)
        .and_then(|vs| vs.iter().find(|v| v["name"] == "v1"))
        .cloned()
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_carried_crd_gives_its_v1_schema() {
        for kind in [Kind::KubeGateway, Kind::HttpRoute, Kind::GrpcRoute] {
            let s = schema(kind).unwrap();
            assert_eq!(s["type"], "object", "{kind:?}");
            assert!(
                s.pointer("/properties/spec/properties").is_some(),
                "{kind:?}"
            );
            assert!(!printer_columns(kind).is_empty(), "{kind:?}");
        }
        assert!(schema(Kind::VirtualService).is_none());
    }

    struct Mesh;
    impl Refs for Mesh {
        fn service_ports(&self, ns: &str, name: &str) -> Option<Vec<u16>> {
            (ns == "m" && ["echo", "echo-v1"].contains(&name)).then(|| vec![80, 8080])
        }
        fn gateway(&self, ns: &str, name: &str) -> Option<crate::gateway_listeners::GatewaySpec> {
            let listeners = serde_json::json!({"listeners": [
                {"name": "web", "port": 80, "protocol": "HTTP",
                 "allowedRoutes": {"namespaces": {"from": "All"}}},
                {"name": "own", "port": 8080, "protocol": "HTTP"}]});
            ((ns, name) == ("infra", "gw")).then(|| serde_json::from_value(listeners).unwrap())
        }
    }

    fn route(backends: serde_json::Value) -> Value {
        serde_json::json!({
            "apiVersion": API_VERSION, "kind": "HTTPRoute",
            "metadata": {"name": "r", "namespace": "m", "generation": 3},
            "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "echo", "port": 80},
                                    {"group": GROUP, "kind": "Gateway", "name": "gw", "namespace": "infra"},
                                    {"group": "", "kind": "Service", "name": "nope"}],
                     "rules": [{"backendRefs": backends}]}})
    }

    #[test]
    fn a_routes_status_names_each_parent_and_the_backend_that_does_not_resolve() {
        let good = route(serde_json::json!([{"name": "echo-v1", "port": 8080}]));
        let status = route_status(&good, &Mesh, "2026-12-05T00:00:00Z");
        let parents = status["parents"].as_array().unwrap();
        assert_eq!(parents.len(), 3);
        let cond = |p: usize, t: &str| {
            parents[p]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == t)
                .unwrap()
                .clone()
        };
        assert_eq!(parents[0]["controllerName"], CONTROLLER_NAME);
        assert_eq!(cond(0, "Accepted")["reason"], "Accepted");
        assert_eq!(cond(0, "Accepted")["status"], "True");
        assert_eq!(cond(1, "Accepted")["reason"], "Accepted");
        assert_eq!(cond(1, "Accepted")["message"], "routed by Lanes' gateway");
        assert_eq!(cond(2, "Accepted")["reason"], "NoMatchingParent");
        assert_eq!(cond(0, "ResolvedRefs")["status"], "True");
        assert_eq!(cond(0, "ResolvedRefs")["observedGeneration"], 3);

        for (backends, message) in [
            (
                serde_json::json!([{"name": "echo-v3", "port": 80}]),
                "Service m/echo-v3 not found",
            ),
            (
                serde_json::json!([{"name": "echo-v1", "namespace": "other", "port": 80}]),
                "takes a ReferenceGrant",
            ),
            (
                serde_json::json!([{"name": "echo-v1", "port": 9}]),
                "has no port 9",
            ),
        ] {
            let s = route_status(&route(backends), &Mesh, "2026-12-05T00:00:00Z");
            let c = &s["parents"][0]["conditions"][1];
            assert_eq!(
                (c["type"].as_str(), c["status"].as_str()),
                (Some("ResolvedRefs"), Some("False"))
            );
            let reason = if message.contains("ReferenceGrant") {
                "RefNotPermitted"
            } else {
                "BackendNotFound"
            };
            assert_eq!(c["reason"], reason);
            assert!(c["message"].as_str().unwrap().contains(message), "{c}");
        }

        // A listener that does not take the route: named, with why.
        let mut own = good.clone();
        own["spec"]["parentRefs"][1]["sectionName"] = serde_json::json!("own");
        let s = route_status(&own, &Mesh, "2026-12-05T00:00:00Z");
        let c = &s["parents"][1]["conditions"][0];
        assert_eq!(
            (c["status"].as_str(), c["reason"].as_str()),
            (Some("False"), Some("NotAllowedByListeners"))
        );
        assert!(
            c["message"]
                .as_str()
                .unwrap()
                .contains("namespace infra only"),
            "{c}"
        );

        // A field the sidecars do not carry out is named.
        let mut timed = good.clone();
        timed["spec"]["rules"][0]["timeouts"] = serde_json::json!({"request": "1s"});
        let s = route_status(&timed, &Mesh, "2026-12-05T00:00:00Z");
        let c = &s["parents"][0]["conditions"][0];
        assert_eq!(
            (c["status"].as_str(), c["reason"].as_str()),
            (Some("False"), Some("UnsupportedValue"))
        );
        assert!(
            c["message"]
                .as_str()
                .unwrap()
                .contains("spec.rules[0].timeouts"),
            "{c}"
        );
        let mut bad_value = good.clone();
        bad_value["spec"]["rules"][0]["filters"] = serde_json::json!([{"type": "RequestHeaderModifier",
            "requestHeaderModifier": {"add": [{"name": "x", "value": "a\r\nb"}]}}]);
        let s = route_status(&bad_value, &Mesh, "2026-12-05T00:00:00Z");
        let c = &s["parents"][0]["conditions"][0];
        assert_eq!(c["reason"], "UnsupportedValue");
        assert!(
            c["message"].as_str().unwrap().contains(
                "spec.rules[0].filters[0].requestHeaderModifier.add[0].value (a control character)"
            ),
            "{c}"
        );
        let mut named = good.clone();
        named["spec"]["parentRefs"][0]["sectionName"] = serde_json::json!("http");
        let s = route_status(&named, &Mesh, "2026-12-05T00:00:00Z");
        let c = &s["parents"][0]["conditions"][0];
        assert_eq!(c["reason"], "UnsupportedValue");
        let message = c["message"].as_str().unwrap();
        assert!(message.contains("spec.parentRefs[0].sectionName"), "{c}");

        // Written again with nothing changed, the transition times stay.
        let mut again = good.clone();
        again["status"] = status.clone();
        assert_eq!(route_status(&again, &Mesh, "2026-12-06T00:00:00Z"), status);
    }
}

/// The controller name Lanes writes in a route's `status.parents`.
pub const CONTROLLER_NAME: &str = "lanes.dev/gateway-controller";

/// What a route's references are checked against: the Services (their ports) and the
/// Gateways that exist.
pub trait Refs {
    /// The ports of Service `namespace/name`, or `None` when there is no such Service.
    fn service_ports(&self, namespace: &str, name: &str) -> Option<Vec<u16>>;
    /// The spec of Gateway `namespace/name` (`gateway.networking.k8s.io`), or `None`
    /// when there is no such Gateway.
    fn gateway(&self, namespace: &str, name: &str)
    -> Option<crate::gateway_listeners::GatewaySpec>;
}

/// One condition of a route's parent status, before its timestamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// `Accepted` or `ResolvedRefs`.
    pub kind: &'static str,
    /// `True`, `False` or `Unknown`.
    pub status: &'static str,
    /// Why, as one of the Gateway API's reasons.
    pub reason: &'static str,
    /// For people.
    pub message: String,
}

impl Condition {
    /// The condition as status says it: with its `lastTransitionTime` kept from
    /// `before` (the conditions written last) while it holds, else `now`, and the
    /// object's `generation`.
    pub fn stamped(
        &self,
        before: Option<&Vec<Value>>,
        generation: Option<&Value>,
        now: &str,
    ) -> Value {
        let before = before.and_then(|cs| cs.iter().find(|x| x["type"] == self.kind));
        let same = before.is_some_and(|b| {
            b["status"] == self.status
                && b["reason"] == self.reason
                && b["message"] == self.message.as_str()
        });
        let since = match before {
            Some(b) if same => b["lastTransitionTime"].clone(),
            _ => Value::String(now.to_string()),
        };
        serde_json::json!({
            "type": self.kind, "status": self.status, "reason": self.reason,
            "message": self.message, "lastTransitionTime": since,
            "observedGeneration": generation.cloned().unwrap_or(Value::from(1)),
        })
    }
}

/// A parent's `Accepted` condition. The parent must exist. Lanes' sidecars carry out
/// an HTTPRoute attached to a Service (the mesh profile), and its gateway one attached
/// to a Gateway that a listener takes ([`crate::gateway_listeners::attach`]), so it is
/// `Accepted` unless it uses a field they do not carry out (`UnsupportedValue`, naming
/// it). A GRPCRoute is carried out as the HTTPRoute it is read as
/// ([`GrpcRouteSpec::as_http`]).
pub fn accepted(route: &Value, parent: &Value, route_ns: &str, refs: &dyn Refs) -> Condition {
    let name = parent["name"].as_str().unwrap_or_default();
    let ns = parent["namespace"].as_str().unwrap_or(route_ns);
    let condition = |status, reason, message: String| Condition {
        kind: "Accepted",
        status,
        reason,
        message,
    };
    let gateway = || refs.gateway(ns, name);
    let (kind, found) = match (parent["group"].as_str(), parent["kind"].as_str()) {
        (Some(""), Some("Service")) => ("Service", refs.service_ports(ns, name).is_some()),
        (Some(GROUP) | None, Some("Gateway") | None) => ("Gateway", gateway().is_some()),
        _ => {
            let why = "a route attaches to a Service or a Gateway only".into();
            return condition("False", "NoMatchingParent", why);
        }
    };
    if !found {
        return condition(
            "False",
            "NoMatchingParent",
            format!("no {kind} {ns}/{name}"),
        );
    }
    let by = if kind == "Gateway" {
        let parent = serde_json::from_value::<ParentReference>(parent.clone());
        let gw = gateway().unwrap_or_default();
        let route_kind = route["kind"].as_str().unwrap_or("HTTPRoute");
        let hostnames = route_hostnames(route);
        let attached = parent.as_ref().map(|p| {
            crate::gateway_listeners::attach(route_kind, route_ns, &hostnames, p, ns, &gw)
        });
        if let Ok(Err(not)) = attached {
            return condition("False", not.reason(), not.message().to_string());
        }
        "gateway"
    } else {
        "sidecars"
    };
    match unsupported(route) {
        Some(field) => condition(
            "False",
            "UnsupportedValue",
            format!("{field} is not carried out by Lanes' {by}"),
        ),
        None => condition("True", "Accepted", format!("routed by Lanes' {by}")),
    }
}

/// A route's `spec.hostnames`.
fn route_hostnames(route: &Value) -> Vec<String> {
    route
        .pointer("/spec/hostnames")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|h| Some(h.as_str()?.to_string()))
        .collect()
}

/// The filter types Lanes' sidecars carry out.
const FILTERS: [&str; 4] = [
    "RequestHeaderModifier",
    "ResponseHeaderModifier",
    "RequestRedirect",
    "URLRewrite",
];

/// What of a filter Lanes' data plane does not carry out, as the rest of its path and
/// why: a type it does not run, or a header value no HTTP header can hold (a control
/// character; the CRD bounds only its length).
fn unsupported_filter(f: &Value) -> Option<String> {
    let kind = f["type"].as_str().unwrap_or_default();
    if !FILTERS.contains(&kind) {
        return Some(format!(" ({})", f["type"]));
    }
    for modifier in ["requestHeaderModifier", "responseHeaderModifier"] {
        for op in ["set", "add"] {
            let values = f[modifier][op].as_array().into_iter().flatten();
            for (k, h) in values.enumerate() {
                let value = h["value"].as_str().unwrap_or_default();
                if value.chars().any(|c| c.is_control() && c != '\t') {
                    return Some(format!(".{modifier}.{op}[{k}].value (a control character)"));
                }
            }
        }
    }
    None
}

/// The first field of an HTTPRoute that Lanes' sidecars do not carry out, as its path.
/// A Service parent's `sectionName` (a port by name) is one: the sidecars select a
/// Service's port by number (`port`).
pub fn unsupported(route: &Value) -> Option<String> {
    let parents = route.pointer("/spec/parentRefs").and_then(Value::as_array);
    for (i, p) in parents.into_iter().flatten().enumerate() {
        if p["kind"] == "Service" && p.get("sectionName").is_some() {
            return Some(format!("spec.parentRefs[{i}].sectionName"));
        }
    }
    let rules = route.pointer("/spec/rules").and_then(Value::as_array);
    for (i, rule) in rules.into_iter().flatten().enumerate() {
        for field in ["timeouts", "retry", "sessionPersistence"] {
            if rule.get(field).is_some() {
                return Some(format!("spec.rules[{i}].{field}"));
            }
        }
        let filters = |v: &Value| v["filters"].as_array().cloned().unwrap_or_default();
        for (j, f) in filters(rule).iter().enumerate() {
            if let Some(why) = unsupported_filter(f) {
                return Some(format!("spec.rules[{i}].filters[{j}]{why}"));
            }
        }
        let backends = rule["backendRefs"].as_array().cloned().unwrap_or_default();
        for (j, b) in backends.iter().enumerate() {
            for (k, f) in filters(b).iter().enumerate() {
                if let Some(why) = unsupported_filter(f) {
                    return Some(format!(
                        "spec.rules[{i}].backendRefs[{j}].filters[{k}]{why}"
                    ));
                }
            }
        }
    }
    None
}

/// The route's `ResolvedRefs` condition: every backend is a Service the route may
/// reference ([`backend_permitted`]) that exists and has the port named; else the first
/// that is not, and why.
pub fn resolved_refs(route: &Value, route_ns: &str, refs: &dyn Refs) -> Condition {
    let parents: Vec<ParentReference> = route
        .pointer("/spec/parentRefs")
        .and_then(|p| serde_json::from_value(p.clone()).ok())
        .unwrap_or_default();
    let rules = route.pointer("/spec/rules").and_then(Value::as_array);
    for (i, rule) in rules.into_iter().flatten().enumerate() {
        let backends = rule["backendRefs"].as_array().into_iter().flatten();
        for (j, b) in backends.enumerate() {
            let at = format!("spec.rules[{i}].backendRefs[{j}]");
            let group = b["group"].as_str().unwrap_or_default();
            let kind = b["kind"].as_str().unwrap_or("Service");
            if !group.is_empty() || kind != "Service" {
                return Condition {
                    kind: "ResolvedRefs",
                    status: "False",
                    reason: "InvalidKind",
                    message: format!("{at}: {kind} ({group}) is no Service"),
                };
            }
            let name = b["name"].as_str().unwrap_or_default();
            let ns = b["namespace"].as_str().unwrap_or(route_ns);
            if !backend_permitted(route_ns, &parents, ns, name) {
                return Condition {
                    kind: "ResolvedRefs",
                    status: "False",
                    reason: "RefNotPermitted",
                    message: format!(
                        "{at}: Service {ns}/{name} is in another namespace, which takes a ReferenceGrant (Lanes stores none)"
                    ),
                };
            }
            let port = b["port"].as_u64();
            let message = match refs.service_ports(ns, name) {
                None => format!("{at}: Service {ns}/{name} not found"),
                Some(ports) if port.is_some_and(|p| !ports.iter().any(|q| u64::from(*q) == p)) => {
                    format!(
                        "{at}: Service {ns}/{name} has no port {}",
                        port.unwrap_or_default()
                    )
                }
                Some(_) => continue,
            };
            return Condition {
                kind: "ResolvedRefs",
                status: "False",
                reason: "BackendNotFound",
                message,
            };
        }
    }
    Condition {
        kind: "ResolvedRefs",
        status: "True",
        reason: "ResolvedRefs",
        message: "every backend is a Service with the port named".into(),
    }
}

/// A route's `status` as a Gateway API implementation writes it: per parent, its
/// conditions, each keeping its `lastTransitionTime` from `previous` while it holds.
pub fn route_status(route: &Value, refs: &dyn Refs, now: &str) -> Value {
    let ns = route
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let generation = route.pointer("/metadata/generation").cloned();
    let previous = route.pointer("/status/parents").and_then(Value::as_array);
    let resolved = resolved_refs(route, ns, refs);
    let parents = route.pointer("/spec/parentRefs").and_then(Value::as_array);
    let parents: Vec<Value> = parents
        .into_iter()
        .flatten()
        .map(|parent| {
            let was = previous.and_then(|p| p.iter().find(|s| s["parentRef"] == *parent));
            let before = was.and_then(|w| w["conditions"].as_array());
            let conditions: Vec<Value> = [accepted(route, parent, ns, refs), resolved.clone()]
                .iter()
                .map(|c| c.stamped(before, generation.as_ref(), now))
                .collect();
            serde_json::json!({
                "parentRef": parent,
                "controllerName": CONTROLLER_NAME,
                "conditions": conditions,
            })
        })
        .collect();
    serde_json::json!({ "parents": parents })
}
