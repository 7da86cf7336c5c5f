//! The `gateway-api` flavor: a lane group as Kubernetes Gateway API objects, for any
//! mesh that implements its mesh profile (GAMMA). Per service of the group, a Service
//! `<svc>-<lane>` per lane holding it (the lane's pods, as a backend) and an HTTPRoute
//! whose parent is the service: a rule per lane matching the route header, then the
//! default rule to the fallback lane. The ingress becomes HTTPRoutes on the group's
//! Gateway, the route header set by a `RequestHeaderModifier` filter.
//!
//! Built from the route table the group compiled to, so this flavor routes exactly as
//! the others do, up to what Gateway API cannot say
//! ([`lanes_model::gateway_api::unsaid`]).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use lanes_model::gateway_api::{
    API_VERSION, BackendRef, HeaderModifier, HeaderValue, HttpRouteSpec, ParentReference,
    PathMatch, PathMatchType, RouteFilter, RouteMatch, RouteRule, ServicePortSpec, ServiceSpec,
    ValueMatch, ValueMatchType,
};
use lanes_model::istio::{GeneratedMeta, HttpMatchRequest, IstioObject, StringMatch};
use lanes_model::mesh::ServiceView;

use crate::{
    Generated, GroupCtx, HeaderChanges, IngressRouteRule, IngressRoutes, Mesh, Output,
    ReleaseRoute, ServiceName, ServiceRoutes, WeightedTarget,
};

/// The most rules one HTTPRoute holds (the CRD's `maxItems`); more go in a second route.
pub const MAX_RULES: usize = 16;

/// The longest Service name Kubernetes takes (a DNS label).
const MAX_SERVICE_NAME: usize = 63;

/// What a group compiled to, as the route table holds it.
pub(crate) struct GroupRoutesRef<'a> {
    pub group: &'a str,
    pub lanes: &'a [(&'a str, &'a lanes_model::lane::LaneSpec)],
    pub services: &'a [ServiceRoutes],
    pub ingress: &'a IngressRoutes,
    pub releases: &'a [ReleaseRoute],
}

/// The Service that stands for `lane`'s pods of service `svc`.
pub fn lane_service_name(svc: &str, lane: &str) -> String {
    format!("{svc}-{lane}")
}

/// Appends the group's Gateway API objects to `out`: the ingress routes, then per
/// service its lane Services and mesh routes.
pub(crate) fn objects(
    ctx: &GroupCtx<'_>,
    mesh: &Mesh<'_>,
    g: &GroupRoutesRef<'_>,
    out: &mut Output,
) {
    let emit = Emitter { ctx, mesh, g };
    let mut ingress = Vec::new();
    let mut services = Vec::new();
    let mut routes = Vec::new();
    emit.ingress(&mut ingress, &mut out.warnings);
    for r in g.releases {
        emit.release(r, &mut ingress, &mut out.warnings);
    }
    for svc in g.services {
        let Some(view) = mesh.services.get(&svc.name, &svc.namespace) else {
            out.warnings.push(format!(
                "lane group {:?}: Service {}/{} not found; no Gateway API route is written for it",
                g.group, svc.namespace, svc.name
            ));
            continue;
        };
        services.extend(emit.lane_services(view, svc, &mut out.warnings));
        routes.extend(emit.mesh_routes(view, svc));
    }
    out.objects.extend(ingress);
    out.objects.extend(services);
    out.objects.extend(routes);
}

/// One lane's ingress routes into one namespace, being gathered.
struct LaneIngress<'a> {
    lane: &'a str,
    namespace: &'a str,
    hosts: Vec<String>,
    rules: Vec<RouteRule>,
}

struct Emitter<'a> {
    ctx: &'a GroupCtx<'a>,
    mesh: &'a Mesh<'a>,
    g: &'a GroupRoutesRef<'a>,
}

impl Emitter<'_> {
    fn meta(&self, name: String, namespace: &str) -> GeneratedMeta {
        GeneratedMeta {
            labels: Arc::clone(&self.ctx.labels),
            name,
            namespace: namespace.to_string(),
        }
    }

    /// HTTPRoutes `name` (then `name-2`, ...) holding `rules`, at most [`MAX_RULES`] each.
    fn http_routes(
        &self,
        name: &str,
        namespace: &str,
        spec: &HttpRouteSpec,
        rules: Vec<RouteRule>,
    ) -> Vec<Generated> {
        let chunks: Vec<Vec<RouteRule>> = rules.chunks(MAX_RULES).map(<[_]>::to_vec).collect();
        chunks
            .into_iter()
            .enumerate()
            .map(|(i, rules)| {
                let name = match i {
                    0 => name.to_string(),
                    n => format!("{name}-{}", n + 1),
                };
                Generated::HttpRoute(IstioObject {
                    api_version: Cow::Borrowed(API_VERSION),
                    kind: Cow::Borrowed("HTTPRoute"),
                    metadata: self.meta(name, namespace),
                    spec: HttpRouteSpec {
                        rules,
                        ..spec.clone()
                    },
                })
            })
            .collect()
    }

    /// Per lane holding the service, the Service selecting that lane's pods of it.
    fn lane_services(
        &self,
        view: &ServiceView,
        svc: &ServiceRoutes,
        warnings: &mut Vec<String>,
    ) -> Vec<Generated> {
        let ports: Vec<ServicePortSpec> = view
            .ports
            .iter()
            .map(|p| ServicePortSpec {
                name: p.name.clone(),
                port: p.port,
                target_port: p.target_port,
                app_protocol: p.app_protocol.clone(),
            })
            .collect();
        let mut out = Vec::with_capacity(svc.subsets.len());
        for subset in &svc.subsets {
            let name = lane_service_name(&svc.name, &subset.name);
            if name.len() > MAX_SERVICE_NAME {
                warnings.push(format!(
                    "lane group {:?}: Service name {name:?} is longer than {MAX_SERVICE_NAME} characters; Kubernetes refuses it",
                    self.g.group
                ));
            }
            let mut selector = view.selector.clone();
            selector.extend(subset.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
            out.push(Generated::Service(IstioObject {
                api_version: Cow::Borrowed("v1"),
                kind: Cow::Borrowed("Service"),
                metadata: self.meta(name, &svc.namespace),
                spec: ServiceSpec {
                    selector,
                    ports: ports.clone(),
                },
            }));
        }
        out
    }

    /// The lane a request for `lane` of `svc` is served from: the lane itself when it
    /// holds the service or the group is strict, else the fallback lane.
    fn serving_lane<'l>(&self, svc: Option<&'l ServiceRoutes>, lane: &'l str) -> &'l str {
        let held = svc.is_some_and(|s| s.subset(lane).is_some());
        match svc.and_then(|s| s.fallback.as_deref()) {
            Some(fallback) if !held && self.ctx.permissive => fallback,
            _ => lane,
        }
    }

    /// The mesh (GAMMA) routes of one service, one per service port: a rule per lane
    /// holding it for requests whose route header names the lane, then the default
    /// rule to the fallback lane (else the first lane holding it).
    fn mesh_routes(&self, view: &ServiceView, svc: &ServiceRoutes) -> Vec<Generated> {
        let default_lane = self
            .ctx
            .fallback_for(&svc.name, &svc.namespace)
            .or_else(|| svc.subsets.first().map(|s| s.name.clone()));
        let mut out = Vec::new();
        for port in &view.ports {
            let backend = |lane: &str| BackendRef {
                name: lane_service_name(&svc.name, lane),
                port: Some(port.port),
                ..Default::default()
            };
            let mut rules = Vec::new();
            for (lane, _) in self.g.lanes {
                if Some(*lane) == default_lane.as_deref() || svc.subset(lane).is_none() {
                    continue;
                }
                rules.push(RouteRule {
                    name: Some((*lane).to_string()).filter(|n| is_section_name(n)),
                    matches: vec![RouteMatch {
                        headers: vec![exact_header(&self.ctx.route_header, lane)],
                        ..Default::default()
                    }],
                    backend_refs: vec![backend(lane)],
                    ..Default::default()
                });
            }
            if let Some(lane) = &default_lane {
                rules.push(RouteRule {
                    name: Some("default".to_string()),
                    backend_refs: vec![backend(lane)],
                    ..Default::default()
                });
            }
            let spec = HttpRouteSpec {
                parent_refs: vec![ParentReference::service(&svc.name, None, Some(port.port))],
                ..Default::default()
            };
            let name = format!(
                "trafficlabel-route-{}-{}-{}",
                self.g.group, svc.name, port.port
            );
            out.extend(self.http_routes(&name, &svc.namespace, &spec, rules));
        }
        out
    }

    fn gateway_parent(&self) -> ParentReference {
        ParentReference::gateway(&self.ctx.gateway, &self.ctx.gateway_ns)
    }

    fn find(&self, d: &ServiceName) -> Option<&ServiceRoutes> {
        self.g
            .services
            .iter()
            .find(|s| s.name == d.name && s.namespace == d.namespace)
    }

    /// A backend into `lane` of the service `d` names, with the route header set to
    /// `lane` (and `extra` edits) on the way.
    fn lane_backend(
        &self,
        d: &ServiceName,
        lane: &str,
        extra: &HeaderChanges,
    ) -> Result<BackendRef, String> {
        let serving = self.serving_lane(self.find(d), lane);
        let port = d
            .port
            .or_else(|| {
                let view = self.mesh.services.get(&d.name, &d.namespace)?;
                view.ports.first().map(|p| p.port)
            })
            .ok_or_else(|| format!("Service {}/{} has no port to route to", d.namespace, d.name))?;
        Ok(BackendRef {
            name: lane_service_name(&d.name, serving),
            namespace: None,
            port: Some(port),
            weight: None,
            filters: vec![self.header_filter(lane, extra)],
        })
    }

    fn header_filter(&self, lane: &str, extra: &HeaderChanges) -> RouteFilter {
        let pairs = |v: &[(String, String)]| -> Vec<HeaderValue> {
            v.iter().map(|(k, v)| HeaderValue::new(k, v)).collect()
        };
        let mut set = vec![HeaderValue::new(&self.ctx.route_header, lane)];
        set.extend(pairs(&extra.set));
        RouteFilter::request_headers(HeaderModifier {
            set,
            add: pairs(&extra.add),
            remove: extra.remove.clone(),
        })
    }

    fn ingress(&self, out: &mut Vec<Generated>, warnings: &mut Vec<String>) {
        match self.g.ingress {
            IngressRoutes::RuleBased { rules } => self.rule_based(rules, out, warnings),
            IngressRoutes::Weighted {
                hosts,
                matches,
                targets,
            } => self.weighted(hosts, matches, targets, out, warnings),
        }
    }

    /// Rule-based ingress: per lane and backend namespace, one route on the Gateway
    /// holding the lane's online rules.
    fn rule_based(
        &self,
        rules: &[IngressRouteRule],
        out: &mut Vec<Generated>,
        warnings: &mut Vec<String>,
    ) {
        let mut routes: Vec<LaneIngress<'_>> = Vec::new();
        for r in rules {
            let backend = self.lane_backend(&r.destination, &r.lane, &HeaderChanges::default());
            let at = format!("lane {:?}, ingress rule {:?}", r.lane, r.name);
            let rule =
                match self.match_rule(&at, &r.name, std::slice::from_ref(&r.matches), backend) {
                    Ok(rule) => rule,
                    Err(w) => {
                        warnings.push(w);
                        continue;
                    }
                };
            let (lane, ns) = (r.lane.as_str(), r.destination.namespace.as_str());
            let at = match routes
                .iter()
                .position(|l| l.lane == lane && l.namespace == ns)
            {
                Some(at) => at,
                None => {
                    routes.push(LaneIngress {
                        lane,
                        namespace: ns,
                        hosts: Vec::new(),
                        rules: Vec::new(),
                    });
                    routes.len() - 1
                }
            };
            routes[at].hosts.extend(r.hosts.iter().cloned());
            routes[at].rules.push(rule);
        }
        for l in routes {
            let spec = HttpRouteSpec {
                parent_refs: vec![self.gateway_parent()],
                hostnames: hostnames(&l.hosts),
                rules: Vec::new(),
            };
            let name = format!("swimlane-ingress-route-{}-{}", self.g.group, l.lane);
            out.extend(self.http_routes(&name, l.namespace, &spec, l.rules));
        }
    }

    /// Weighted ingress: one route on the Gateway; a rule per lane keeping requests
    /// that already name it, then the weighted split.
    fn weighted(
        &self,
        hosts: &[String],
        matches: &[HttpMatchRequest],
        targets: &[WeightedTarget],
        out: &mut Vec<Generated>,
        warnings: &mut Vec<String>,
    ) {
        let Some(first) = targets.first() else {
            return;
        };
        let ns = first.destination.namespace.as_str();
        let mut rules = Vec::new();
        let mut weighted = Vec::new();
        for t in targets {
            let at = format!("lane {:?}, ingressWeight", t.lane);
            let backend = self.lane_backend(&t.destination, &t.lane, &HeaderChanges::default());
            let backend = match backend {
                Ok(b) => self.in_namespace(b, &t.destination, ns),
                Err(w) => {
                    warnings.push(format!("{at}: {w}"));
                    continue;
                }
            };
            // A request that already names this lane keeps it.
            let mut own: Vec<HttpMatchRequest> = if matches.is_empty() {
                vec![HttpMatchRequest::default()]
            } else {
                matches.to_vec()
            };
            for m in &mut own {
                m.headers
                    .insert(self.ctx.route_header.clone(), StringMatch::exact(&t.lane));
            }
            match self.match_rule(&at, &t.lane, &own, Ok(backend.clone())) {
                Ok(rule) => rules.push(rule),
                Err(w) => warnings.push(w),
            }
            if t.weight > 0 {
                weighted.push(BackendRef {
                    weight: Some(t.weight),
                    ..backend
                });
            }
        }
        if let Some(one) = weighted.first().cloned() {
            match self.match_rule("the weighted rule", "weighted", matches, Ok(one)) {
                Ok(mut rule) => {
                    rule.backend_refs = weighted;
                    rules.push(rule);
                }
                Err(w) => warnings.push(w),
            }
        }
        let spec = HttpRouteSpec {
            parent_refs: vec![self.gateway_parent()],
            hostnames: hostnames(hosts),
            rules: Vec::new(),
        };
        let name = format!("swimlane-ingress-route-{}", self.g.group);
        out.extend(self.http_routes(&name, ns, &spec, rules));
    }

    /// `b`, naming its Service's namespace when that is not the route's (`ns`).
    fn in_namespace(&self, mut b: BackendRef, d: &ServiceName, ns: &str) -> BackendRef {
        if d.namespace != ns {
            b.namespace = Some(d.namespace.clone());
        }
        b
    }

    /// A release's share of the ingress: requests its steps match go to the canary
    /// lane, the rest split by its percentage between canary and baseline lanes.
    fn release(&self, r: &ReleaseRoute, out: &mut Vec<Generated>, warnings: &mut Vec<String>) {
        let at = format!("release {:?}", r.rollout);
        let ns = r.canary.destination.namespace.as_str();
        let none = HeaderChanges::default();
        let canary = self.lane_backend(&r.canary.destination, &r.canary.lane, &r.canary_headers);
        let baseline = self.lane_backend(&r.baseline.destination, &r.baseline.lane, &none);
        let (canary, baseline) = match (canary, baseline) {
            (Ok(c), Ok(b)) => (
                self.in_namespace(c, &r.canary.destination, ns),
                self.in_namespace(b, &r.baseline.destination, ns),
            ),
            (Err(w), _) | (_, Err(w)) => {
                warnings.push(format!("{at}: {w}"));
                return;
            }
        };
        let name = r.rollout.replace('/', "-");
        let group: Vec<HttpMatchRequest> = if r.matches.is_empty() {
            vec![HttpMatchRequest::default()]
        } else {
            r.matches.clone()
        };
        let mut rules = Vec::new();
        if !r.canary_matches.is_empty() {
            let merged: Vec<HttpMatchRequest> = group
                .iter()
                .flat_map(|g| {
                    r.canary_matches
                        .iter()
                        .map(move |m| crate::release::merged(g, m))
                })
                .collect();
            match self.match_rule(
                &at,
                &format!("release-{name}-matches"),
                &merged,
                Ok(canary.clone()),
            ) {
                Ok(rule) => rules.push(rule),
                Err(w) => warnings.push(w),
            }
        }
        let share = r.percent.min(100);
        match self.match_rule(
            &at,
            &format!("release-{name}"),
            &r.matches,
            Ok(canary.clone()),
        ) {
            Ok(mut rule) => {
                rule.backend_refs = vec![
                    BackendRef {
                        weight: Some(share),
                        ..canary
                    },
                    BackendRef {
                        weight: Some(100 - share),
                        ..baseline
                    },
                ];
                rules.push(rule);
            }
            Err(w) => warnings.push(w),
        }
        let spec = HttpRouteSpec {
            parent_refs: vec![self.gateway_parent()],
            hostnames: hostnames(&r.hosts),
            rules: Vec::new(),
        };
        let route = format!("swimlane-ingress-route-{}-release-{name}", self.g.group);
        out.extend(self.http_routes(&route, ns, &spec, rules));
    }

    /// A rule named `name` (when that is a valid rule name) for `matches`, to `backend`;
    /// `Err` says, at `at`, what Gateway API cannot express.
    fn match_rule(
        &self,
        at: &str,
        name: &str,
        matches: &[HttpMatchRequest],
        backend: Result<BackendRef, String>,
    ) -> Result<RouteRule, String> {
        let backend = backend.map_err(|w| format!("{at}: {w}"))?;
        let matches = matches
            .iter()
            .map(route_match)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|w| {
                format!("{at}: {w}; Gateway API cannot say it, so the rule is left out")
            })?;
        Ok(RouteRule {
            name: Some(name.to_string()).filter(|n| is_section_name(n)),
            matches: matches
                .into_iter()
                .filter(|m| *m != RouteMatch::default())
                .collect(),
            filters: Vec::new(),
            backend_refs: vec![backend],
        })
    }
}

fn exact_header(name: &str, value: &str) -> ValueMatch {
    ValueMatch {
        kind: ValueMatchType::Exact,
        name: name.to_string(),
        value: value.to_string(),
    }
}

/// Host names as an HTTPRoute takes them: none (every host) when any is `*`.
fn hostnames(hosts: &[String]) -> Vec<String> {
    if hosts.iter().any(|h| h == "*") {
        return Vec::new();
    }
    let mut out: Vec<String> = Vec::new();
    for h in hosts {
        if !out.contains(h) {
            out.push(h.clone());
        }
    }
    out
}

/// Whether `name` is a valid rule name (a DNS label, as the CRD's `SectionName`).
fn is_section_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 253
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// The HTTP methods an HTTPRoute matches on.
const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// An Istio match as a Gateway API one; `Err` names the part that has no counterpart.
pub fn route_match(m: &HttpMatchRequest) -> Result<RouteMatch, String> {
    let unsaid = [
        (m.authority.is_some(), "an authority match"),
        (!m.without_headers.is_empty(), "withoutHeaders"),
        (!m.source_labels.is_empty(), "sourceLabels"),
        (m.ignore_uri_case == Some(true), "ignoreUriCase"),
    ];
    if let Some((_, what)) = unsaid.iter().find(|(has, _)| *has) {
        return Err(format!("{what} has no Gateway API match"));
    }
    let path = m
        .uri
        .as_ref()
        .map(|u| match (&u.exact, &u.prefix, &u.regex) {
            (Some(v), ..) => Ok(PathMatch {
                kind: PathMatchType::Exact,
                value: v.clone(),
            }),
            (_, Some(v), _) => Ok(PathMatch {
                kind: PathMatchType::PathPrefix,
                value: v.clone(),
            }),
            (.., Some(v)) => Ok(PathMatch {
                kind: PathMatchType::RegularExpression,
                value: v.clone(),
            }),
            _ => Err("an empty uri match".to_string()),
        })
        .transpose()?;
    let values = |all: &BTreeMap<String, StringMatch>| -> Result<Vec<ValueMatch>, String> {
        all.iter().map(|(name, s)| value_match(name, s)).collect()
    };
    let method = match &m.method {
        None => None,
        Some(StringMatch { exact: Some(v), .. }) if METHODS.contains(&v.as_str()) => {
            Some(v.clone())
        }
        Some(other) => return Err(format!("method match {other:?} is no exact HTTP method")),
    };
    Ok(RouteMatch {
        path,
        headers: values(&m.headers)?,
        query_params: values(&m.query_params)?,
        method,
    })
}

/// A header or query condition; a prefix becomes the regular expression it means.
fn value_match(name: &str, s: &StringMatch) -> Result<ValueMatch, String> {
    let (kind, value) = match (&s.exact, &s.prefix, &s.regex) {
        (Some(v), ..) => (ValueMatchType::Exact, v.clone()),
        (_, Some(p), _) => (
            ValueMatchType::RegularExpression,
            format!("{}.*", regex::escape(p)),
        ),
        (.., Some(r)) => (ValueMatchType::RegularExpression, r.clone()),
        _ => return Err(format!("an empty match on {name:?}")),
    };
    Ok(ValueMatch {
        kind,
        name: name.to_string(),
        value,
    })
}

/// A user's route as the data plane runs it: an HTTPRoute's spec, or the HTTPRoute a
/// GRPCRoute is read as, with its kind. `None` for other objects, for a route a lane
/// group generated (the `gateway-api` flavor's: the lane routes it says are the route
/// table's own, which the data plane runs with the fallbacks Gateway API cannot say),
/// and for one using a field the data plane does not carry out (its status says
/// `UnsupportedValue`).
fn user_route(o: &lanes_model::Object) -> Option<(&'static str, HttpRouteSpec)> {
    let (kind, spec) = match &o.typed {
        lanes_model::Typed::HttpRoute(r) => ("HTTPRoute", r.spec.clone()),
        lanes_model::Typed::GrpcRoute(r) => {
            let grpc: lanes_model::gateway_api::GrpcRouteSpec =
                serde_json::from_value(r.spec.clone()).ok()?;
            ("GRPCRoute", grpc.as_http())
        }
        _ => return None,
    };
    let generated = o.label(lanes_model::lane::GROUP_LABEL).is_some();
    (!generated && lanes_model::gateway_api::unsupported(&o.raw).is_none()).then_some((kind, spec))
}

/// The routes (HTTPRoutes and GRPCRoutes) among `objects` (in the order given:
/// creation order) that attach to a mesh Service, as the data plane runs them
/// ([`user_route`]).
pub fn mesh_routes(objects: &[&lanes_model::Object]) -> Vec<lanes_model::gateway_api::MeshRoute> {
    objects
        .iter()
        .filter_map(|o| {
            let (_, spec) = user_route(o)?;
            spec.parent_refs.iter().any(is_service_parent).then(|| {
                lanes_model::gateway_api::MeshRoute {
                    name: o.name.clone(),
                    namespace: o.namespace_or_empty().to_string(),
                    spec,
                }
            })
        })
        .collect()
}

/// The routes (HTTPRoutes and GRPCRoutes) among `objects` (in creation order) attached
/// to a Gateway among them, as Lanes' gateway serves them ([`user_route`]): each with
/// the host names the Gateway's listeners take it for
/// ([`lanes_model::gateway_listeners::attach`]). One no listener takes is left out.
pub fn ingress_routes(
    objects: &[&lanes_model::Object],
) -> Vec<lanes_model::gateway_api::IngressRoute> {
    use lanes_model::gateway_listeners::{GatewaySpec, attach};
    let gateways: BTreeMap<(&str, &str), GatewaySpec> = objects
        .iter()
        .filter_map(|o| match &o.typed {
            lanes_model::Typed::KubeGateway(g) => {
                let spec = serde_json::from_value(g.spec.clone()).ok()?;
                Some(((o.namespace_or_empty(), o.name.as_str()), spec))
            }
            _ => None,
        })
        .collect();
    let mut out = Vec::new();
    for o in objects {
        let Some((kind, spec)) = user_route(o) else {
            continue;
        };
        let ns = o.namespace_or_empty();
        let mut hostnames: Vec<Option<String>> = Vec::new();
        for p in spec.parent_refs.iter().filter(|p| is_gateway_parent(p)) {
            let gw_ns = p.namespace.as_deref().unwrap_or(ns);
            let Some(gw) = gateways.get(&(gw_ns, p.name.as_str())) else {
                continue;
            };
            for h in attach(kind, ns, &spec.hostnames, p, gw_ns, gw).unwrap_or_default() {
                if !hostnames.contains(&h) {
                    hostnames.push(h);
                }
            }
        }
        if !hostnames.is_empty() {
            out.push(lanes_model::gateway_api::IngressRoute {
                name: o.name.clone(),
                namespace: ns.to_string(),
                hostnames,
                spec,
            });
        }
    }
    out
}

/// Whether a parent is a Gateway API Gateway (the group and kind default to it).
pub fn is_gateway_parent(p: &ParentReference) -> bool {
    p.group
        .as_deref()
        .is_none_or(|g| g == lanes_model::gateway_api::GROUP)
        && p.kind.as_deref().is_none_or(|k| k == "Gateway")
}

/// Whether a parent is a Service (the mesh profile), not a Gateway.
pub fn is_service_parent(p: &ParentReference) -> bool {
    p.group.as_deref() == Some("") && p.kind.as_deref() == Some("Service")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(
        name: &str,
        labels: serde_json::Value,
        rule: serde_json::Value,
    ) -> lanes_model::Object {
        lanes_model::Object::from_value(serde_json::json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": "shop", "labels": labels},
            "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "web", "port": 80}],
                     "rules": [rule]}}))
        .unwrap()
    }

    #[test]
    fn the_gateway_serves_routes_its_listeners_take_for_the_host_names_they_take() {
        let gateway = lanes_model::Object::from_value(serde_json::json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": "shop"},
            "spec": {"gatewayClassName": "lanes", "listeners": [
                {"name": "web", "port": 80, "protocol": "HTTP", "hostname": "*.example.com"}]}}))
        .unwrap();
        let on_gateway = |name: &str, hostnames: serde_json::Value, labels| {
            let backend = serde_json::json!({"backendRefs": [{"name": "web", "port": 80}]});
            let mut raw = route(name, labels, backend).raw;
            raw["spec"]["parentRefs"] = serde_json::json!([{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"}]);
            raw["spec"]["hostnames"] = hostnames;
            lanes_model::Object::from_value(raw).unwrap()
        };
        let objects = [
            gateway,
            on_gateway("any", serde_json::json!([]), serde_json::json!({})),
            on_gateway(
                "named",
                serde_json::json!(["a.example.com", "b.org"]),
                serde_json::json!({}),
            ),
            on_gateway(
                "elsewhere",
                serde_json::json!(["b.org"]),
                serde_json::json!({}),
            ),
            on_gateway(
                "generated",
                serde_json::json!([]),
                serde_json::json!({"swimlane-group": "g"}),
            ),
            route(
                "mesh",
                serde_json::json!({}),
                serde_json::json!({"backendRefs": [{"name": "web", "port": 80}]}),
            ),
        ];
        let refs: Vec<&lanes_model::Object> = objects.iter().collect();
        let served: Vec<(String, Vec<Option<String>>)> = ingress_routes(&refs)
            .into_iter()
            .map(|r| (r.name, r.hostnames))
            .collect();
        assert_eq!(
            served,
            [
                ("any".to_string(), vec![Some("*.example.com".to_string())]),
                ("named".to_string(), vec![Some("a.example.com".to_string())]),
            ]
        );
    }

    #[test]
    fn the_data_plane_runs_users_mesh_routes_only_when_it_can_carry_them_out() {
        let backend = serde_json::json!({"backendRefs": [{"name": "web-v2", "port": 80}]});
        let mut timed = backend.clone();
        timed["timeouts"] = serde_json::json!({"request": "1s"});
        let objects = [
            route("users", serde_json::json!({}), backend.clone()),
            route(
                "generated",
                serde_json::json!({"swimlane-group": "g"}),
                backend,
            ),
            route("timed", serde_json::json!({}), timed),
        ];
        let refs: Vec<&lanes_model::Object> = objects.iter().collect();
        let names: Vec<String> = mesh_routes(&refs).into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["users"]);
    }

    #[test]
    fn a_grpc_route_runs_as_the_http_route_it_is_read_as() {
        let grpc = |name: &str, filter: serde_json::Value| {
            lanes_model::Object::from_value(serde_json::json!({
                "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GRPCRoute",
                "metadata": {"name": name, "namespace": "shop"},
                "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "web", "port": 7070}],
                         "rules": [{"matches": [{"method": {"service": "pkg.Svc", "method": "Get"}}],
                                    "filters": [filter],
                                    "backendRefs": [{"name": "web-v2", "port": 7070, "weight": 3}]}]}}))
            .unwrap()
        };
        let objects = [
            grpc(
                "runs",
                serde_json::json!({"type": "RequestHeaderModifier",
                                   "requestHeaderModifier": {"set": [{"name": "v", "value": "2"}]}}),
            ),
            grpc(
                "mirrors",
                serde_json::json!({"type": "RequestMirror",
                                   "requestMirror": {"backendRef": {"name": "web-v3", "port": 7070}}}),
            ),
        ];
        let refs: Vec<&lanes_model::Object> = objects.iter().collect();
        let routes = mesh_routes(&refs);
        assert_eq!(routes.len(), 1, "a RequestMirror filter is not carried out");
        let rule = &routes[0].spec.rules[0];
        let path = rule.matches[0].path.as_ref().unwrap();
        assert_eq!(path.value, "/pkg.Svc/Get");
        assert_eq!(rule.backend_refs[0].weight, Some(3));
    }
}
