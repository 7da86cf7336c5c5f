//! Kubernetes Gateway API HTTPRoute specs (`gateway.networking.k8s.io/v1`), as serde
//! types: what Lanes writes in its `gateway-api` flavor, and the mesh routes (GAMMA:
//! routes whose parent is a Service) the data plane runs. Field names and defaults
//! follow the standard-channel CRD.

use serde::{Deserialize, Serialize};

/// A Gateway API route attached to mesh Services, as the route table carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshRoute {
    /// The route's name.
    pub name: String,
    /// Its namespace: a Service's own (a producer route) or a caller's (a consumer route).
    pub namespace: String,
    /// The route.
    pub spec: HttpRouteSpec,
}

/// What a route attaches to: a Gateway (ingress) or, in the mesh profile (GAMMA), a
/// Service. `group` and `kind` are written out, since their defaults mean a Gateway.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentReference {
    /// `gateway.networking.k8s.io` for a Gateway, empty (core) for a Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// `Gateway` or `Service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Namespace of the parent; the route's own when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name of the parent.
    pub name: String,
    /// A listener of the Gateway, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    /// A port of the parent (for a Service: the service port the route applies to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

impl ParentReference {
    /// A mesh (GAMMA) parent: the Service `name` in `namespace`, at `port`.
    pub fn service(name: &str, namespace: Option<&str>, port: Option<u16>) -> Self {
        ParentReference {
            group: Some(String::new()),
            kind: Some("Service".to_string()),
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
            section_name: None,
            port,
        }
    }

    /// An ingress parent: the Gateway `namespace/name`.
    pub fn gateway(name: &str, namespace: &str) -> Self {
        ParentReference {
            group: Some("gateway.networking.k8s.io".to_string()),
            kind: Some("Gateway".to_string()),
            namespace: Some(namespace.to_string()),
            name: name.to_string(),
            section_name: None,
            port: None,
        }
    }
}

/// How a path is matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PathMatchType {
    /// The whole path.
    Exact,
    /// Whole path segments from the start.
    PathPrefix,
    /// A regular expression.
    RegularExpression,
}

/// A path condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathMatch {
    /// How `value` is matched.
    #[serde(rename = "type")]
    pub kind: PathMatchType,
    /// The path or pattern.
    pub value: String,
}

/// How a header or query value is matched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ValueMatchType {
    /// The whole value.
    #[default]
    Exact,
    /// A regular expression.
    RegularExpression,
}

/// A header or query-parameter condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueMatch {
    /// How `value` is matched.
    #[serde(rename = "type", default)]
    pub kind: ValueMatchType,
    /// Header or parameter name.
    pub name: String,
    /// The value or pattern.
    pub value: String,
}

/// One match of a rule: every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteMatch {
    /// Path condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathMatch>,
    /// Header conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<ValueMatch>,
    /// Query-parameter conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_params: Vec<ValueMatch>,
    /// Method condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// A header name and value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderValue {
    /// Name.
    pub name: String,
    /// Value.
    pub value: String,
}

/// Header edits of a `RequestHeaderModifier` or `ResponseHeaderModifier` filter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderModifier {
    /// Headers set, replacing any value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<HeaderValue>,
    /// Headers added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<HeaderValue>,
    /// Headers removed, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// A filter of a rule or backend; Lanes writes the header modifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteFilter {
    /// `RequestHeaderModifier`, `ResponseHeaderModifier`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The request's header edits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_header_modifier: Option<HeaderModifier>,
    /// The response's header edits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_header_modifier: Option<HeaderModifier>,
    /// Answer with a redirect instead of forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_redirect: Option<RequestRedirect>,
    /// Rewrite the host or path before forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_rewrite: Option<UrlRewrite>,
}

/// How a redirect or rewrite changes the path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PathModifier {
    /// `ReplaceFullPath` or `ReplacePrefixMatch`.
    #[serde(rename = "type")]
    pub kind: PathModifierType,
    /// The new path (`ReplaceFullPath`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_full_path: Option<String>,
    /// What the matched prefix becomes (`ReplacePrefixMatch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_prefix_match: Option<String>,
}

/// The kinds of path change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PathModifierType {
    /// The whole path is replaced.
    ReplaceFullPath,
    /// The prefix the rule matched is replaced.
    ReplacePrefixMatch,
}

/// A `RequestRedirect` filter: the parts of the location that change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRedirect {
    /// `http` or `https`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// The host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathModifier>,
    /// The port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// 301, 302 (the default), 303, 307 or 308.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
}

/// A `URLRewrite` filter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UrlRewrite {
    /// The new Host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The path change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathModifier>,
}

impl RouteFilter {
    /// A `RequestHeaderModifier` making `edits`.
    pub fn request_headers(edits: HeaderModifier) -> Self {
        RouteFilter {
            kind: "RequestHeaderModifier".to_string(),
            request_header_modifier: Some(edits),
            response_header_modifier: None,
            request_redirect: None,
            url_rewrite: None,
        }
    }
}

impl HeaderValue {
    /// A header `name: value`.
    pub fn new(name: &str, value: &str) -> Self {
        HeaderValue {
            name: name.to_string(),
            value: value.to_string(),
        }
    }
}

/// Where a rule sends requests: a Service (the default kind) at a port, with a weight.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendRef {
    /// Name of the Service.
    pub name: String,
    /// Its namespace; the route's own when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The service port (required for a Service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Share among the rule's backends (1 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// Filters applied to requests sent to this backend only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<RouteFilter>,
}

/// One rule of an HTTPRoute: any match selects it, then its filters run and a backend
/// is picked by weight.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteRule {
    /// Rule name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Conditions; none means every request (the CRD's default, `PathPrefix /`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<RouteMatch>,
    /// Filters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<RouteFilter>,
    /// Backends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backend_refs: Vec<BackendRef>,
}

/// HTTPRoute spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteSpec {
    /// What the route attaches to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parent_refs: Vec<ParentReference>,
    /// Host names the route applies to; none means every host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    /// Rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RouteRule>,
}

/// An HTTPRoute attached to a Gateway that Lanes' gateway serves, with the host names
/// it answers for there (its own, narrowed by the listeners that take it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressRoute {
    /// The route's name.
    pub name: String,
    /// The route's namespace.
    pub namespace: String,
    /// The host names; `None` is every host.
    pub hostnames: Vec<Option<String>>,
    /// The route.
    pub spec: HttpRouteSpec,
}

/// Whether a route in `route_ns` with `parents` may send traffic to Service
/// `backend_ns/backend`: one in its own namespace, or the very Service it attaches to
/// (a consumer route to the producer's Service, as the mesh profile has it). Another
/// namespace's Service takes a ReferenceGrant, which Lanes does not store: not
/// permitted.
pub fn backend_permitted(
    route_ns: &str,
    parents: &[ParentReference],
    backend_ns: &str,
    backend: &str,
) -> bool {
    backend_ns == route_ns
        || parents.iter().any(|p| {
            p.kind.as_deref() == Some("Service")
                && p.group.as_deref().is_none_or(str::is_empty)
                && p.name == backend
                && p.namespace.as_deref().unwrap_or(route_ns) == backend_ns
        })
}

/// Whether host-name `pattern` (exact, or `*.suffix`: one or more labels before the
/// suffix) covers `name`, itself exact or a wildcard. Case-insensitive.
pub fn hostname_covers(pattern: &str, name: &str) -> bool {
    let (pattern, name) = (pattern.to_ascii_lowercase(), name.to_ascii_lowercase());
    match pattern.strip_prefix('*') {
        None => pattern == name,
        Some(suffix) => pattern == name || (name.ends_with(suffix) && name.len() > suffix.len()),
    }
}

/// The host names a route with `route` names answers for on a listener with
/// `listener` (`None`: every host): each of the route's that the listener's covers, or
/// the listener's where it is the narrower. `None` in the answer is every host.
pub fn hostname_intersection(listener: Option<&str>, route: &[String]) -> Vec<Option<String>> {
    match (listener, route.is_empty()) {
        (None, true) => vec![None],
        (None, false) => route.iter().cloned().map(Some).collect(),
        (Some(l), true) => vec![Some(l.to_string())],
        (Some(l), false) => route
            .iter()
            .filter_map(|r| {
                if hostname_covers(l, r) {
                    Some(Some(r.clone()))
                } else if hostname_covers(r, l) {
                    Some(Some(l.to_string()))
                } else {
                    None
                }
            })
            .collect(),
    }
}

/// GRPCRoute spec: what Lanes reads of it (the rest is refused by the status writer or
/// checked by the CRD's schema).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrpcRouteSpec {
    /// What the route attaches to.
    #[serde(default)]
    pub parent_refs: Vec<ParentReference>,
    /// Host names the route applies to; none means every host.
    #[serde(default)]
    pub hostnames: Vec<String>,
    /// Rules.
    #[serde(default)]
    pub rules: Vec<GrpcRouteRule>,
}

/// A GRPCRoute rule: its filters and backends read as an HTTPRoute's (the same fields).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrpcRouteRule {
    /// Matches; none takes every call.
    #[serde(default)]
    pub matches: Vec<GrpcRouteMatch>,
    /// Filters.
    #[serde(default)]
    pub filters: Vec<RouteFilter>,
    /// Backends.
    #[serde(default)]
    pub backend_refs: Vec<BackendRef>,
}

/// A GRPCRoute match: the method called and headers (metadata).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrpcRouteMatch {
    /// The method.
    #[serde(default)]
    pub method: Option<GrpcMethodMatch>,
    /// Headers.
    #[serde(default)]
    pub headers: Vec<ValueMatch>,
}

/// A method match: a service, a method, or both, exactly or as regular expressions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrpcMethodMatch {
    /// `Exact` (the default) or `RegularExpression`.
    #[serde(rename = "type", default)]
    pub kind: ValueMatchType,
    /// The fully qualified service, e.g. `grpc.health.v1.Health`.
    #[serde(default)]
    pub service: Option<String>,
    /// The method, e.g. `Check`.
    #[serde(default)]
    pub method: Option<String>,
}

impl GrpcMethodMatch {
    /// The request path (`/service/method`) condition this is: an exact path, a path
    /// prefix (a service alone), or a regular expression.
    fn path(&self) -> PathMatch {
        let (service, method) = (self.service.as_deref(), self.method.as_deref());
        let (kind, value) = match (self.kind, service, method) {
            (ValueMatchType::Exact, Some(s), Some(m)) => {
                (PathMatchType::Exact, format!("/{s}/{m}"))
            }
            (ValueMatchType::Exact, Some(s), None) => (PathMatchType::PathPrefix, format!("/{s}")),
            (ValueMatchType::Exact, None, m) => (
                PathMatchType::RegularExpression,
                format!("/[^/]+/{}", m.unwrap_or("[^/]+").replace('.', "\\.")),
            ),
            (ValueMatchType::RegularExpression, s, m) => (
                PathMatchType::RegularExpression,
                format!("/(?:{})/(?:{})", s.unwrap_or("[^/]+"), m.unwrap_or("[^/]+")),
            ),
        };
        PathMatch { kind, value }
    }
}

impl GrpcRouteSpec {
    /// The HTTPRoute this GRPCRoute routes as: a gRPC call is a request for the path
    /// `/service/method`, so a method match is a path match; headers, filters and
    /// backends are the same fields.
    pub fn as_http(&self) -> HttpRouteSpec {
        HttpRouteSpec {
            parent_refs: self.parent_refs.clone(),
            hostnames: self.hostnames.clone(),
            rules: self
                .rules
                .iter()
                .map(|r| RouteRule {
                    matches: r
                        .matches
                        .iter()
                        .map(|m| RouteMatch {
                            path: m.method.as_ref().map(GrpcMethodMatch::path),
                            headers: m.headers.clone(),
                            ..RouteMatch::default()
                        })
                        .collect(),
                    filters: r.filters.clone(),
                    backend_refs: r.backend_refs.clone(),
                    ..RouteRule::default()
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grpc_method_match_is_a_path_match() {
        let spec: GrpcRouteSpec = serde_json::from_value(serde_json::json!({
            "rules": [{"matches": [
                {"method": {"service": "pkg.Svc", "method": "Get"}},
                {"method": {"service": "pkg.Svc"}},
                {"method": {"method": "Get"}, "headers": [{"name": "v", "value": "2"}]},
                {"method": {"type": "RegularExpression", "service": "pkg\\..*"}},
                {"headers": [{"name": "v", "value": "1"}]}],
              "backendRefs": [{"name": "b", "port": 7070, "weight": 3}]}]}))
        .unwrap();
        let http = spec.as_http();
        let paths: Vec<Option<(PathMatchType, String)>> = http.rules[0]
            .matches
            .iter()
            .map(|m| m.path.clone().map(|p| (p.kind, p.value)))
            .collect();
        assert_eq!(
            paths,
            [
                Some((PathMatchType::Exact, "/pkg.Svc/Get".to_string())),
                Some((PathMatchType::PathPrefix, "/pkg.Svc".to_string())),
                Some((PathMatchType::RegularExpression, "/[^/]+/Get".to_string())),
                Some((
                    PathMatchType::RegularExpression,
                    "/(?:pkg\\..*)/(?:[^/]+)".to_string()
                )),
                None,
            ]
        );
        assert_eq!(http.rules[0].matches[2].headers[0].value, "2");
        assert_eq!(http.rules[0].backend_refs[0].weight, Some(3));
    }

    #[test]
    fn another_namespaces_backend_is_permitted_only_as_the_parent_service() {
        let parents = [ParentReference::service("echo", Some("producer"), Some(80))];
        assert!(backend_permitted("consumer", &parents, "consumer", "local"));
        assert!(backend_permitted("consumer", &parents, "producer", "echo"));
        assert!(!backend_permitted(
            "consumer", &parents, "producer", "other"
        ));
        assert!(!backend_permitted("consumer", &[], "producer", "echo"));
    }

    #[test]
    fn wildcards_cover_one_or_more_labels_and_narrower_wildcards() {
        assert!(hostname_covers("*.example.com", "a.example.com"));
        assert!(hostname_covers("*.example.com", "a.b.example.com"));
        assert!(hostname_covers("*.example.com", "*.b.example.com"));
        assert!(hostname_covers("*.Example.com", "A.example.COM"));
        assert!(!hostname_covers("*.example.com", "example.com"));
        assert!(!hostname_covers("*.b.example.com", "*.example.com"));
        assert!(!hostname_covers("a.example.com", "b.example.com"));
        assert!(hostname_covers("a.example.com", "a.example.com"));
    }

    #[test]
    fn a_listener_narrows_a_routes_host_names() {
        let route = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(hostname_intersection(None, &[]), vec![None]);
        assert_eq!(
            hostname_intersection(Some("*.example.com"), &[]),
            vec![Some("*.example.com".to_string())]
        );
        assert_eq!(
            hostname_intersection(
                Some("*.example.com"),
                &route(&["a.example.com", "x.org", "*.com"])
            ),
            vec![
                Some("a.example.com".to_string()),
                Some("*.example.com".to_string())
            ]
        );
        assert_eq!(
            hostname_intersection(Some("a.example.com"), &route(&["*.example.com"])),
            vec![Some("a.example.com".to_string())]
        );
        assert!(
            hostname_intersection(Some("a.example.com"), &route(&["b.example.com"])).is_empty()
        );
    }
}
