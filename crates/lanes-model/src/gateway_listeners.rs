//! How an HTTPRoute attaches to a Gateway API Gateway: which of the Gateway's listeners
//! take it (by `sectionName`, `port`, protocol and `allowedRoutes`) and the host names
//! it answers for there (the route's, narrowed by each listener's). Pure: the status
//! writer and the route table both ask it.

use serde::Deserialize;

use crate::gateway_api::ParentReference;
use lanes_routes::gateway::hostname_intersection;

/// The fields of a Gateway's spec that decide what attaches to it (the stored object is
/// checked against the CRD's schema; the rest of it is not read here).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// The listeners.
    #[serde(default)]
    pub listeners: Vec<Listener>,
    /// Addresses asked for: Lanes' gateway has the one it listens on and takes no
    /// other, so a Gateway that asks for any is not served.
    #[serde(default)]
    pub addresses: Vec<serde_json::Value>,
}

impl GatewaySpec {
    /// The spec of a stored Gateway (`spec` of `object`). Stored objects passed the
    /// CRD's schema; one that still does not read is a Gateway with no listener.
    pub fn of(object: &serde_json::Value) -> GatewaySpec {
        object
            .get("spec")
            .cloned()
            .and_then(|s| serde_json::from_value(s).ok())
            .unwrap_or_default()
    }
}

/// One listener of a Gateway.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    /// Its name (what a parent's `sectionName` names).
    pub name: String,
    /// The host names it takes; none means every host.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Its port.
    pub port: u16,
    /// `HTTP`, `HTTPS`, `TLS`, `TCP` or `UDP`.
    pub protocol: String,
    /// Which routes may attach.
    #[serde(default)]
    pub allowed_routes: Option<AllowedRoutes>,
}

/// A listener's `allowedRoutes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllowedRoutes {
    /// From which namespaces.
    #[serde(default)]
    pub namespaces: Option<RouteNamespaces>,
    /// Of which kinds; none means the kinds of the listener's protocol.
    #[serde(default)]
    pub kinds: Vec<RouteGroupKind>,
}

/// `allowedRoutes.namespaces`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteNamespaces {
    /// `Same` (the default), `All` or `Selector`.
    #[serde(default)]
    pub from: Option<String>,
}

/// A kind of route a listener allows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RouteGroupKind {
    /// The group; the Gateway API's when unsaid.
    #[serde(default)]
    pub group: Option<String>,
    /// The kind.
    pub kind: String,
}

/// Why a route does not attach to a Gateway, as the Gateway API's reasons say it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotAttached {
    /// No listener is the one the parent names (by `sectionName` or `port`), or none
    /// serves HTTP.
    NoMatchingParent(String),
    /// The listeners do not allow the route's namespace or kind.
    NotAllowedByListeners(String),
    /// No host name of the route is one a listener takes.
    NoMatchingListenerHostname(String),
}

impl NotAttached {
    /// The condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            NotAttached::NoMatchingParent(_) => "NoMatchingParent",
            NotAttached::NotAllowedByListeners(_) => "NotAllowedByListeners",
            NotAttached::NoMatchingListenerHostname(_) => "NoMatchingListenerHostname",
        }
    }

    /// For people.
    pub fn message(&self) -> &str {
        match self {
            NotAttached::NoMatchingParent(m)
            | NotAttached::NotAllowedByListeners(m)
            | NotAttached::NoMatchingListenerHostname(m) => m,
        }
    }
}

/// Why a Gateway that asks for `spec.addresses` is not served.
const UNSUPPORTED_ADDRESS: &str =
    "spec.addresses is not carried out: Lanes' gateway has the one address it listens on";

/// Whether `listener` is the one `parent` names, when it names one.
fn is_named(listener: &Listener, parent: &ParentReference) -> bool {
    parent
        .section_name
        .as_deref()
        .is_none_or(|s| s == listener.name)
        && parent.port.is_none_or(|p| p == listener.port)
}

/// Whether `listener` lets a route of `route_kind` (`HTTPRoute`, `GRPCRoute`: the
/// kinds an HTTP listener allows when it names none) in `route_ns` attach (the Gateway
/// in `gateway_ns`); `Err` says why not.
fn allows(
    listener: &Listener,
    route_kind: &str,
    route_ns: &str,
    gateway_ns: &str,
) -> Result<(), String> {
    let allowed = listener.allowed_routes.clone().unwrap_or_default();
    let is_kind = |k: &RouteGroupKind| {
        k.kind == route_kind
            && k.group
                .as_deref()
                .is_none_or(|g| g == crate::gateway_api::GROUP)
    };
    if !allowed.kinds.is_empty() && !allowed.kinds.iter().any(is_kind) {
        return Err(format!(
            "listener {} does not allow {route_kind}s",
            listener.name
        ));
    }
    let from = allowed.namespaces.and_then(|n| n.from);
    match from.as_deref().unwrap_or("Same") {
        "All" => Ok(()),
        "Same" if route_ns == gateway_ns => Ok(()),
        "Same" => Err(format!(
            "listener {} allows routes from namespace {gateway_ns} only",
            listener.name
        )),
        other => Err(format!(
            "listener {}: allowedRoutes.namespaces.from {other} is not carried out by Lanes' gateway (Same and All are)",
            listener.name
        )),
    }
}

/// The host names a route of `route_kind` (in `route_ns`, with `hostnames`) answers
/// for on the Gateway `gateway` (in `gateway_ns`) through `parent`: per listener that
/// takes it, the route's names narrowed by the listener's (`None`: every host). Lanes'
/// gateway serves HTTP listeners only. `Err` when no listener takes it, and why.
pub fn attach(
    route_kind: &str,
    route_ns: &str,
    hostnames: &[String],
    parent: &ParentReference,
    gateway_ns: &str,
    gateway: &GatewaySpec,
) -> Result<Vec<Option<String>>, NotAttached> {
    if !gateway.addresses.is_empty() {
        return Err(NotAttached::NoMatchingParent(UNSUPPORTED_ADDRESS.into()));
    }
    let named: Vec<&Listener> = gateway
        .listeners
        .iter()
        .filter(|l| is_named(l, parent))
        .collect();
    if named.is_empty() {
        return Err(NotAttached::NoMatchingParent(
            "no listener of the Gateway is the one the parent names".into(),
        ));
    }
    let http: Vec<&Listener> = named.into_iter().filter(|l| l.protocol == "HTTP").collect();
    if http.is_empty() {
        return Err(NotAttached::NoMatchingParent(
            "no HTTP listener: Lanes' gateway serves HTTP listeners only".into(),
        ));
    }
    let mut refusals = Vec::new();
    let allowed: Vec<&Listener> = http
        .into_iter()
        .filter(|l| match allows(l, route_kind, route_ns, gateway_ns) {
            Ok(()) => true,
            Err(why) => {
                refusals.push(why);
                false
            }
        })
        .collect();
    if allowed.is_empty() {
        return Err(NotAttached::NotAllowedByListeners(refusals.join("; ")));
    }
    let mut names: Vec<Option<String>> = Vec::new();
    for l in allowed {
        for name in hostname_intersection(l.hostname.as_deref(), hostnames) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    if names.is_empty() {
        return Err(NotAttached::NoMatchingListenerHostname(format!(
            "no host name of the route ({}) is one a listener takes",
            hostnames.join(", ")
        )));
    }
    Ok(names)
}

/// A route as a Gateway's status counts it: its kind, namespace, host names, and one
/// of its parents (which may or may not be the Gateway).
#[derive(Debug, Clone)]
pub struct RouteParent {
    /// `HTTPRoute` or `GRPCRoute`.
    pub kind: String,
    /// The route's namespace.
    pub namespace: String,
    /// The route's host names.
    pub hostnames: Vec<String>,
    /// The parent.
    pub parent: ParentReference,
}

/// The route kinds an HTTP listener of Lanes' gateway serves.
const ROUTE_KINDS: [&str; 2] = ["HTTPRoute", "GRPCRoute"];

/// How many of `routes` attach to the Gateway `gateway_ns/gateway_name` through
/// `listener`.
fn attached_routes(
    listener: &Listener,
    gateway_ns: &str,
    gateway_name: &str,
    gateway: &GatewaySpec,
    routes: &[RouteParent],
) -> usize {
    routes
        .iter()
        .filter(|r| {
            let p = &r.parent;
            let is_this = p.kind.as_deref().is_none_or(|k| k == "Gateway")
                && p.group
                    .as_deref()
                    .is_none_or(|g| g == crate::gateway_api::GROUP)
                && p.name == gateway_name
                && p.namespace.as_deref().unwrap_or(&r.namespace) == gateway_ns;
            let through_it = ParentReference {
                section_name: Some(listener.name.clone()),
                ..p.clone()
            };
            is_this
                && p.section_name.as_deref().is_none_or(|s| s == listener.name)
                && attach(
                    &r.kind,
                    &r.namespace,
                    &r.hostnames,
                    &through_it,
                    gateway_ns,
                    gateway,
                )
                .is_ok()
        })
        .count()
}

/// A Gateway's `status` as Lanes' gateway (which serves every Gateway of `lanes up`)
/// writes it: `Accepted` and `Programmed`, the `address` it is reached at, and per
/// listener its supported kinds, the routes attached through it and its conditions (an
/// HTTP listener is served; any other protocol is not, `UnsupportedProtocol`). Each
/// condition keeps its `lastTransitionTime` from the status written before while it
/// holds.
pub fn gateway_status(
    gateway: &serde_json::Value,
    routes: &[RouteParent],
    address: Option<&str>,
    now: &str,
) -> serde_json::Value {
    use crate::gateway_api::Condition;
    use serde_json::{Value, json};
    let ns = gateway
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let name = gateway
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let generation = gateway.pointer("/metadata/generation");
    let spec = GatewaySpec::of(gateway);
    let cond = |kind, ok: bool, reason, message: String| Condition {
        kind,
        status: if ok { "True" } else { "False" },
        reason,
        message,
    };
    let previous = gateway
        .pointer("/status/listeners")
        .and_then(Value::as_array);
    let listeners: Vec<Value> = spec
        .listeners
        .iter()
        .map(|l| {
            let served = l.protocol == "HTTP";
            let conditions = if served {
                [
                    cond("Accepted", true, "Accepted", "served by Lanes' gateway".into()),
                    cond("Programmed", true, "Programmed", "served by Lanes' gateway".into()),
                    cond("ResolvedRefs", true, "ResolvedRefs", "no references to resolve".into()),
                ]
            } else {
                let why = format!("Lanes' gateway serves HTTP listeners, not {}", l.protocol);
                [
                    cond("Accepted", false, "UnsupportedProtocol", why.clone()),
                    cond("Programmed", false, "Invalid", why),
                    cond("ResolvedRefs", true, "ResolvedRefs", "no references to resolve".into()),
                ]
            };
            let before = previous
                .and_then(|p| p.iter().find(|x| x["name"] == l.name.as_str()))
                .and_then(|x| x["conditions"].as_array());
            let kinds: Vec<Value> = if served {
                ROUTE_KINDS
                    .iter()
                    .map(|k| json!({"group": crate::gateway_api::GROUP, "kind": k}))
                    .collect()
            } else {
                Vec::new()
            };
            json!({
                "name": l.name,
                "supportedKinds": kinds,
                "attachedRoutes": if served { attached_routes(l, ns, name, &spec, routes) } else { 0 },
                "conditions": conditions.iter().map(|c| c.stamped(before, generation, now)).collect::<Vec<_>>(),
            })
        })
        .collect();
    let served = spec
        .listeners
        .iter()
        .filter(|l| l.protocol == "HTTP")
        .count();
    let all = served == spec.listeners.len();
    let conditions = if !spec.addresses.is_empty() {
        [
            cond(
                "Accepted",
                false,
                "UnsupportedAddress",
                UNSUPPORTED_ADDRESS.into(),
            ),
            cond(
                "Programmed",
                false,
                "AddressNotAssigned",
                UNSUPPORTED_ADDRESS.into(),
            ),
        ]
    } else {
        [
            cond(
                "Accepted",
                true,
                if all { "Accepted" } else { "ListenersNotValid" },
                format!(
                    "{served} of {} listeners served by Lanes' gateway",
                    spec.listeners.len()
                ),
            ),
            cond(
                "Programmed",
                served > 0,
                if served > 0 { "Programmed" } else { "Invalid" },
                format!(
                    "{served} of {} listeners served by Lanes' gateway",
                    spec.listeners.len()
                ),
            ),
        ]
    };
    let before = gateway
        .pointer("/status/conditions")
        .and_then(Value::as_array);
    let mut status = json!({
        "conditions": conditions.iter().map(|c| c.stamped(before, generation, now)).collect::<Vec<_>>(),
        "listeners": listeners,
    });
    if let Some(a) = address {
        status["addresses"] = json!([{"type": "IPAddress", "value": a}]);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway() -> GatewaySpec {
        serde_json::from_value(serde_json::json!({"listeners": [
            {"name": "web", "port": 80, "protocol": "HTTP", "hostname": "*.example.com",
             "allowedRoutes": {"namespaces": {"from": "All"}}},
            {"name": "own", "port": 8080, "protocol": "HTTP"},
            {"name": "tls", "port": 443, "protocol": "HTTPS"}]}))
        .unwrap()
    }

    fn parent(section: Option<&str>, port: Option<u16>) -> ParentReference {
        ParentReference {
            section_name: section.map(str::to_string),
            port,
            ..ParentReference::gateway("gw", "infra")
        }
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_route_takes_the_host_names_its_listeners_narrow_it_to() {
        let gw = gateway();
        // From another namespace: only the listener that allows All takes it.
        assert_eq!(
            attach("HTTPRoute", "shop", &[], &parent(None, None), "infra", &gw),
            Ok(vec![Some("*.example.com".to_string())])
        );
        assert_eq!(
            attach(
                "HTTPRoute",
                "shop",
                &names(&["a.example.com", "other.org", "*.b.example.com"]),
                &parent(None, None),
                "infra",
                &gw
            ),
            Ok(vec![
                Some("a.example.com".to_string()),
                Some("*.b.example.com".to_string())
            ])
        );
        // From the Gateway's namespace the listener without a host name takes any.
        assert_eq!(
            attach(
                "HTTPRoute",
                "infra",
                &[],
                &parent(Some("own"), None),
                "infra",
                &gw
            ),
            Ok(vec![None])
        );
        assert_eq!(
            attach(
                "HTTPRoute",
                "infra",
                &names(&["x.org"]),
                &parent(None, Some(8080)),
                "infra",
                &gw
            ),
            Ok(vec![Some("x.org".to_string())])
        );
    }

    #[test]
    fn a_gateways_status_counts_the_routes_each_listener_takes() {
        let gw = serde_json::json!({
            "metadata": {"name": "gw", "namespace": "infra", "generation": 2},
            "spec": {"gatewayClassName": "lanes", "listeners": [
                {"name": "web", "port": 80, "protocol": "HTTP", "hostname": "*.example.com",
                 "allowedRoutes": {"namespaces": {"from": "All"}}},
                {"name": "own", "port": 8080, "protocol": "HTTP"},
                {"name": "tls", "port": 443, "protocol": "HTTPS"}]}});
        let route = |ns: &str, hostnames: &[&str], section: Option<&str>| RouteParent {
            kind: "HTTPRoute".into(),
            namespace: ns.into(),
            hostnames: names(hostnames),
            parent: parent(section, None),
        };
        let routes = [
            route("shop", &[], None),
            route("shop", &["other.org"], Some("web")),
            route("infra", &[], None),
            route("shop", &[], Some("own")),
        ];
        let s = gateway_status(&gw, &routes, Some("127.0.0.1"), "2026-12-06T00:00:00Z");
        let attached: Vec<u64> = s["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["attachedRoutes"].as_u64().unwrap())
            .collect();
        assert_eq!(attached, [2, 1, 0]);
        assert_eq!(
            s["listeners"][2]["conditions"][0]["reason"],
            "UnsupportedProtocol"
        );
        assert_eq!(s["conditions"][0]["reason"], "ListenersNotValid");
        assert_eq!(s["conditions"][1]["status"], "True");
        assert_eq!(s["conditions"][1]["observedGeneration"], 2);
        assert_eq!(s["addresses"][0]["value"], "127.0.0.1");
        // A Gateway asking for an address is neither accepted nor served.
        let mut addressed = gw.clone();
        addressed["spec"]["addresses"] =
            serde_json::json!([{"type": "IPAddress", "value": "10.1.2.3"}]);
        let a = gateway_status(
            &addressed,
            &routes,
            Some("127.0.0.1"),
            "2026-12-06T00:00:00Z",
        );
        assert_eq!(a["conditions"][0]["reason"], "UnsupportedAddress");
        assert_eq!(a["conditions"][1]["status"], "False");
        let spec = GatewaySpec::of(&addressed);
        let refused = attach(
            "HTTPRoute",
            "infra",
            &[],
            &parent(None, None),
            "infra",
            &spec,
        );
        assert_eq!(refused.unwrap_err().reason(), "NoMatchingParent");
        // Written again with nothing changed, it is the same.
        let mut again = gw.clone();
        again["status"] = s.clone();
        assert_eq!(
            gateway_status(&again, &routes, Some("127.0.0.1"), "2026-12-07T00:00:00Z"),
            s
        );
    }

    #[test]
    fn a_route_no_listener_takes_is_told_why() {
        let gw = gateway();
        let reason = |r: Result<Vec<Option<String>>, NotAttached>| r.unwrap_err().reason();
        assert_eq!(
            reason(attach(
                "HTTPRoute",
                "shop",
                &[],
                &parent(Some("nope"), None),
                "infra",
                &gw
            )),
            "NoMatchingParent"
        );
        assert_eq!(
            reason(attach(
                "HTTPRoute",
                "shop",
                &[],
                &parent(Some("tls"), None),
                "infra",
                &gw
            )),
            "NoMatchingParent"
        );
        assert_eq!(
            reason(attach(
                "HTTPRoute",
                "shop",
                &[],
                &parent(Some("own"), None),
                "infra",
                &gw
            )),
            "NotAllowedByListeners"
        );
        assert_eq!(
            reason(attach(
                "HTTPRoute",
                "shop",
                &names(&["other.org"]),
                &parent(Some("web"), None),
                "infra",
                &gw
            )),
            "NoMatchingListenerHostname"
        );
        let selector: GatewaySpec = serde_json::from_value(serde_json::json!({"listeners": [
            {"name": "sel", "port": 80, "protocol": "HTTP",
             "allowedRoutes": {"namespaces": {"from": "Selector"}}}]}))
        .unwrap();
        let refused = attach(
            "HTTPRoute",
            "infra",
            &[],
            &parent(None, None),
            "infra",
            &selector,
        )
        .unwrap_err();
        assert_eq!(refused.reason(), "NotAllowedByListeners");
        assert!(refused.message().contains("Selector"), "{refused:?}");
        // A listener naming its kinds takes those only.
        let grpc_only: GatewaySpec = serde_json::from_value(serde_json::json!({"listeners": [
            {"name": "grpc", "port": 80, "protocol": "HTTP",
             "allowedRoutes": {"kinds": [{"kind": "GRPCRoute"}]}}]}))
        .unwrap();
        let at = |kind| attach(kind, "infra", &[], &parent(None, None), "infra", &grpc_only);
        assert_eq!(at("GRPCRoute"), Ok(vec![None]));
        let refused = at("HTTPRoute").unwrap_err();
        assert_eq!(refused.message(), "listener grpc does not allow HTTPRoutes");
    }
}
