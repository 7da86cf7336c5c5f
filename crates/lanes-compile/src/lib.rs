//! The lane compiler: pure functions from lane groups, their lanes and the pods that
//! exist to (a) the Istio VirtualServices and DestinationRules that carry the lanes, in
//! ASM's flavor (what the article shows) or open-source Istio's, and (b) the
//! [`RouteTable`] the Lanes data plane runs. No I/O.

pub mod gateway_api;
pub mod release;
pub mod routes;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use lanes_model::istio::{
    Destination, DestinationRule, DestinationRuleSpec, Fallback, GeneratedMeta, HeaderOperations,
    Headers, HttpMatchRequest, HttpRoute, HttpRouteDestination, IstioObject, StringMatch, Subset,
    VirtualService, VirtualServiceSpec,
};
use lanes_model::lane::{
    DEFAULT_ROUTE_HEADER, GROUP_LABEL, IngressStrategy, LaneGroupSpec, LaneSpec,
};
use lanes_model::mesh::{
    LaneMembership, Map, PodIndex, PodView, ServiceIndex, ServiceView, parse_mesh_host,
};
use lanes_model::{Object, Typed};
use serde::Serialize;

pub use routes::*;

/// Which Istio dialect to generate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Flavor {
    /// Alibaba Cloud Service Mesh: `fallback` targets and the `$asm-label` subset.
    #[default]
    Asm,
    /// Open-source Istio: header-matched routes per lane and a default route to the
    /// fallback lane.
    Istio,
    /// Kubernetes Gateway API (mesh profile): HTTPRoutes with the service as parent and
    /// a Service per lane (see [`gateway_api`]).
    GatewayApi,
}

impl std::str::FromStr for Flavor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "asm" => Ok(Flavor::Asm),
            "istio" => Ok(Flavor::Istio),
            "gateway-api" => Ok(Flavor::GatewayApi),
            other => Err(format!(
                "unknown flavor {other:?}; use asm, istio or gateway-api"
            )),
        }
    }
}

impl Flavor {
    /// The kinds this flavor generates: the routes (which carry a release's traffic
    /// share), then what they route to.
    pub fn generated_kinds(self) -> [GeneratedKind; 2] {
        match self {
            Flavor::Asm | Flavor::Istio => [
                GeneratedKind::istio("VirtualService"),
                GeneratedKind::istio("DestinationRule"),
            ],
            Flavor::GatewayApi => [
                GeneratedKind {
                    group: lanes_model::gateway_api::GROUP,
                    version: "v1",
                    kind: "HTTPRoute",
                },
                GeneratedKind {
                    group: "",
                    version: "v1",
                    kind: "Service",
                },
            ],
        }
    }
}

/// A kind of object the compiler generates: its API group, version and kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GeneratedKind {
    /// API group, empty for the core group.
    pub group: &'static str,
    /// Version.
    pub version: &'static str,
    /// Kind.
    pub kind: &'static str,
}

impl GeneratedKind {
    /// An Istio kind, at the version generated objects carry.
    pub const fn istio(kind: &'static str) -> GeneratedKind {
        GeneratedKind {
            group: "networking.istio.io",
            version: "v1alpha3",
            kind,
        }
    }
}

/// The `apiVersion` of generated Istio objects.
pub const ISTIO_API_VERSION: &str = "networking.istio.io/v1alpha3";

/// The kinds the route table is compiled from: Services and their pods, lane groups and
/// lanes, the releases whose steps route traffic (Rollouts and their Deployments,
/// LaneReleases), and the Gateway API routes (attached to mesh Services or to Gateways)
/// and Gateways.
pub const INPUT_KINDS: [lanes_model::Kind; 10] = [
    lanes_model::Kind::Service,
    lanes_model::Kind::Pod,
    lanes_model::Kind::LaneGroup,
    lanes_model::Kind::Lane,
    lanes_model::Kind::Rollout,
    lanes_model::Kind::Deployment,
    lanes_model::Kind::LaneRelease,
    lanes_model::Kind::HttpRoute,
    lanes_model::Kind::KubeGateway,
    lanes_model::Kind::GrpcRoute,
];
/// The subset name ASM resolves to the calling request's lane.
pub const ASM_LABEL_SUBSET: &str = "$asm-label";

/// A generated Istio object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Generated {
    /// A VirtualService.
    VirtualService(VirtualService),
    /// A DestinationRule.
    DestinationRule(DestinationRule),
    /// A Gateway API HTTPRoute (the `gateway-api` flavor).
    HttpRoute(lanes_model::gateway_api::HttpRoute),
    /// A Service standing for one lane's pods of a service (the `gateway-api` flavor).
    Service(lanes_model::gateway_api::Service),
}

impl Generated {
    /// The object's metadata.
    pub fn meta(&self) -> &GeneratedMeta {
        match self {
            Generated::VirtualService(o) => &o.metadata,
            Generated::DestinationRule(o) => &o.metadata,
            Generated::HttpRoute(o) => &o.metadata,
            Generated::Service(o) => &o.metadata,
        }
    }

    /// `VirtualService`, `DestinationRule`, `HTTPRoute` or `Service`.
    pub fn kind(&self) -> &str {
        match self {
            Generated::VirtualService(o) => &o.kind,
            Generated::DestinationRule(o) => &o.kind,
            Generated::HttpRoute(o) => &o.kind,
            Generated::Service(o) => &o.kind,
        }
    }

    /// The object as JSON.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// What the compiler produces for a set of objects.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Output {
    /// Generated objects: per group, the ingress VirtualServices in lane order, then the
    /// per-service VirtualServices in the group's service order, then the
    /// DestinationRules in the same order.
    pub objects: Vec<Generated>,
    /// The route table.
    pub routes: RouteTable,
    /// Things that compiled but are likely wrong.
    pub warnings: Vec<String>,
}

/// A lane group and its lanes, ready to compile.
#[derive(Debug, Clone)]
pub struct GroupInput<'a> {
    /// Group name.
    pub name: &'a str,
    /// Group spec.
    pub spec: &'a LaneGroupSpec,
    /// Lanes of the group, in creation order: (name, spec).
    pub lanes: Vec<(&'a str, &'a LaneSpec)>,
    /// Releases whose steps route traffic, in Rollout creation order; those of the
    /// group's services take a share of its ingress.
    pub releases: &'a release::Releases,
}

/// Where an object sits in creation order: `creationTimestamp` to the second (all a
/// cluster records), then the name.
pub fn creation_key(object: &Object) -> (i64, String) {
    (creation_second(object), object.name.clone())
}

/// The first part of [`creation_key`]: `creationTimestamp` in seconds (the earliest
/// possible when it is missing or unreadable), for drivers that keep it per object.
pub fn creation_second(object: &Object) -> i64 {
    object
        .raw
        .pointer("/metadata/creationTimestamp")
        .and_then(serde_json::Value::as_str)
        .and_then(|s| s.parse::<jiff::Timestamp>().ok())
        .map_or(i64::MIN, |t| t.as_second())
}

/// Puts objects in creation order ([`creation_key`]; ties keep the order given), the
/// order [`compile`] takes lanes and groups in. Every driver sorts with this one
/// definition, so the objects generated and the route table the data plane runs agree.
pub fn in_creation_order(objects: &mut [Object]) {
    objects.sort_by_cached_key(creation_key);
}

/// What a compile produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    /// The Istio objects and the route table.
    Everything,
    /// The route table alone (what the data plane runs); `Output::objects` stays empty.
    RoutesOnly,
}

/// Compiles every lane group among `objects`, with `pods` as the pods that exist.
/// Lanes join their group by the `swimlane-group` label; lanes and groups are taken
/// in the order given (creation order).
pub fn compile(objects: &[&Object], pods: &[PodView], flavor: Flavor) -> Output {
    compile_with(objects, pods, flavor, Emit::Everything)
}

/// [`compile`], producing what `emit` asks for.
pub fn compile_with(objects: &[&Object], pods: &[PodView], flavor: Flavor, emit: Emit) -> Output {
    let inputs = Inputs::of(objects);
    let mut services = Vec::with_capacity(inputs.services.len());
    services.extend(
        inputs
            .services
            .iter()
            .filter_map(|o| ServiceView::from_object(o)),
    );
    let mesh = Mesh {
        services: ServiceIndex::new(&services),
        // Only services' selectors are asked about.
        pods: PodIndex::on_keys(
            pods,
            services
                .iter()
                .filter_map(|s| s.selector.keys().next().map(String::as_str)),
        ),
    };
    let mut out = Output::default();
    let releases = release::releases(&inputs.workloads);
    // Each group's lanes, in the order given.
    let mut lanes: HashMap<&str, Vec<(&str, &LaneSpec)>> = HashMap::new();
    for o in &inputs.lanes {
        if let Typed::Lane(l) = &o.typed
            && let Some(group) = o.label(GROUP_LABEL)
        {
            lanes
                .entry(group)
                .or_default()
                .push((o.name.as_str(), &l.spec));
        }
    }
    for object in &inputs.groups {
        let Typed::LaneGroup(group) = &object.typed else {
            continue;
        };
        let input = GroupInput {
            name: &object.name,
            spec: &group.spec,
            lanes: lanes.remove(object.name.as_str()).unwrap_or_default(),
            releases: &releases,
        };
        compile_group(&input, &mesh, flavor, emit, &mut out);
    }
    out.routes.mesh_routes = gateway_api::mesh_routes(&inputs.routes);
    out.routes.ingress_routes = gateway_api::ingress_routes(&inputs.routes);
    // The route table takes the services over once the groups are compiled.
    drop(mesh);
    out.routes.services = services.into_iter().map(mesh_service).collect();
    out
}

/// The objects a compile reads, sorted by kind in one pass over its input, in the
/// order given. Every later pass walks only its own kinds: a large input is mostly Pods,
/// which the compiler sees through [`PodView`]s alone, and walking all of them once per
/// pass made the compile of 5,000 services cost more per service than that of 1,000.
#[derive(Debug, Default)]
struct Inputs<'a> {
    services: Vec<&'a Object>,
    lanes: Vec<&'a Object>,
    groups: Vec<&'a Object>,
    /// Deployments, Rollouts and lane releases: what [`release::releases`] reads.
    workloads: Vec<&'a Object>,
    /// HTTPRoutes, GRPCRoutes and Gateway API Gateways.
    routes: Vec<&'a Object>,
}

impl<'a> Inputs<'a> {
    fn of(objects: &[&'a Object]) -> Inputs<'a> {
        let mut inputs = Inputs::default();
        for &o in objects {
            let list = match &o.typed {
                Typed::Service(_) => &mut inputs.services,
                Typed::Lane(_) => &mut inputs.lanes,
                Typed::LaneGroup(_) => &mut inputs.groups,
                Typed::Deployment(_) | Typed::Rollout(_) | Typed::LaneRelease(_) => {
                    &mut inputs.workloads
                }
                Typed::HttpRoute(_) | Typed::GrpcRoute(_) | Typed::KubeGateway(_) => {
                    &mut inputs.routes
                }
                _ => continue,
            };
            list.push(o);
        }
        inputs
    }
}

/// The services and pods a group compiles against, indexed.
#[derive(Debug, Clone)]
pub struct Mesh<'a> {
    /// Services by namespace and name.
    pub services: ServiceIndex<'a>,
    /// Pods by label.
    pub pods: PodIndex<'a>,
}

fn mesh_service(s: ServiceView) -> MeshService {
    MeshService {
        name: s.name,
        namespace: s.namespace,
        ports: s
            .ports
            .iter()
            .map(|p| PortMap {
                port: p.port,
                target_port: p.target_port,
            })
            .collect(),
        selector: s.selector,
    }
}

pub(crate) fn fqdn(name: &str, namespace: &str) -> String {
    format!("{name}.{namespace}.svc.cluster.local")
}

/// The group's settings that every generated object depends on.
pub(crate) struct GroupCtx<'a> {
    gateway_ns: String,
    gateway: String,
    route_header: String,
    permissive: bool,
    fallback: Option<String>,
    service_fallback: &'a BTreeMap<String, String>,
    flavor: Flavor,
    /// The labels of every object the group generates.
    labels: SharedLabels,
}

/// The labels of the objects a group generates.
fn generated_labels(group: &str, flavor: Flavor) -> SharedLabels {
    let provider = match flavor {
        Flavor::Asm => "asm",
        Flavor::Istio | Flavor::GatewayApi => "lanes",
    };
    Arc::new(BTreeMap::from([
        ("asm-system".to_string(), "true".to_string()),
        ("provider".to_string(), provider.to_string()),
        (GROUP_LABEL.to_string(), group.to_string()),
    ]))
}

impl GroupCtx<'_> {
    fn meta(&self, name: String) -> GeneratedMeta {
        GeneratedMeta {
            labels: Arc::clone(&self.labels),
            name,
            namespace: self.gateway_ns.clone(),
        }
    }

    fn virtual_service(&self, name: String, spec: VirtualServiceSpec) -> Generated {
        Generated::VirtualService(IstioObject {
            api_version: Cow::Borrowed(ISTIO_API_VERSION),
            kind: Cow::Borrowed("VirtualService"),
            metadata: self.meta(name),
            spec,
        })
    }

    fn destination_rule(&self, name: String, spec: DestinationRuleSpec) -> Generated {
        Generated::DestinationRule(IstioObject {
            api_version: Cow::Borrowed(ISTIO_API_VERSION),
            kind: Cow::Borrowed("DestinationRule"),
            metadata: self.meta(name),
            spec,
        })
    }

    pub(crate) fn fallback_for(&self, name: &str, namespace: &str) -> Option<String> {
        let own = (!self.service_fallback.is_empty())
            .then(|| self.service_fallback.get(&format!("{namespace}/{name}")))
            .flatten();
        own.or(self.fallback.as_ref()).cloned()
    }

    pub(crate) fn set_lane_header(&self, lane: &str) -> Box<Headers> {
        Box::new(Headers {
            request: Some(HeaderOperations {
                set: BTreeMap::from([(self.route_header.clone(), lane.to_string())]),
                ..Default::default()
            }),
            response: None,
        })
    }

    /// A route destination into `lane` of a service, with ASM's fallback when the
    /// group is permissive. In the Istio flavor a lane that lacks the service is routed
    /// straight to the fallback subset, since Istio has no fallback.
    pub(crate) fn lane_destination(
        &self,
        host: &str,
        svc: Option<&ServiceRoutes>,
        lane: &str,
        fallback: Option<&str>,
    ) -> HttpRouteDestination {
        let has_lane = svc.is_some_and(|s| s.subset(lane).is_some());
        let (subset, fallback) = match self.flavor {
            Flavor::Asm => (
                lane.to_string(),
                fallback.filter(|_| self.permissive).map(|f| Fallback {
                    target: Destination {
                        host: host.to_string(),
                        subset: Some(f.to_string()),
                        port: None,
                    },
                }),
            ),
            Flavor::Istio | Flavor::GatewayApi => {
                let subset = if has_lane || !self.permissive {
                    lane.to_string()
                } else {
                    fallback.unwrap_or(lane).to_string()
                };
                (subset, None)
            }
        };
        HttpRouteDestination {
            destination: Destination {
                host: host.to_string(),
                subset: Some(subset),
                port: None,
            },
            weight: None,
            fallback,
            headers: None,
        }
    }
}

/// The services (name, namespace) a group's ingress routes to, as its lanes' online
/// ingress rules and ingress weights name them: the ingress objects read the routes of
/// these services and of no other, so a change elsewhere leaves them as they are.
pub fn ingress_services<'a>(lanes: &[(&'a str, &'a LaneSpec)]) -> Vec<(&'a str, &'a str)> {
    let rules = lanes.iter().flat_map(|(_, l)| {
        l.ingress_rules
            .iter()
            .filter(|r| r.online)
            .map(|r| r.route.destination.host.as_str())
    });
    let weights = lanes
        .iter()
        .filter_map(|(_, l)| l.ingress_weight.as_ref())
        .map(|w| w.destination.host.as_str());
    let mut out: Vec<(&str, &str)> = rules
        .chain(weights)
        .filter_map(|h| parse_mesh_host(h, "default"))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Compiles one lane group into `out`. Destination hosts are written fully qualified:
/// the generated objects live in the gateway's namespace, where a short name would
/// mean another service.
pub fn compile_group(
    input: &GroupInput<'_>,
    mesh: &Mesh<'_>,
    flavor: Flavor,
    emit: Emit,
    out: &mut Output,
) {
    let spec = input.spec;
    let pmc = spec
        .permissive_mode_configuration
        .clone()
        .unwrap_or_default();
    let empty = BTreeMap::new();
    let ctx = GroupCtx {
        gateway_ns: spec
            .ingress
            .gateway
            .namespace
            .clone()
            .unwrap_or_else(|| "istio-system".to_string()),
        gateway: spec.ingress.gateway.name.clone(),
        route_header: pmc
            .route_header
            .clone()
            .unwrap_or_else(|| DEFAULT_ROUTE_HEADER.to_string()),
        permissive: spec.is_permissive.unwrap_or(false),
        fallback: (!pmc.fallback_target.is_empty()).then(|| pmc.fallback_target.clone()),
        service_fallback: spec
            .permissive_mode_configuration
            .as_ref()
            .map_or(&empty, |p| &p.service_level_fallback_target),
        flavor,
        labels: generated_labels(input.name, flavor),
    };

    // Which lane holds which service: the subsets, fallback lane first.
    let lanes: Vec<(&str, SharedLabels)> = input
        .lanes
        .iter()
        .map(|(name, lspec)| (*name, Arc::new(lspec.label_selector.clone())))
        .collect();
    let membership = LaneMembership::new(spec, input.lanes.iter().map(|(_, l)| *l));
    let mut service_routes = Vec::with_capacity(spec.services.len());
    let mut by_name: Map<(&str, &str), usize> =
        Map::with_capacity_and_hasher(spec.services.len(), Default::default());
    for sref in &spec.services {
        let ns = sref.namespace();
        let absent;
        let view = match mesh.services.get(&sref.name, ns) {
            Some(v) => v,
            None => {
                absent = ServiceView {
                    name: sref.name.clone(),
                    namespace: ns.to_string(),
                    selector: BTreeMap::new(),
                    ports: Vec::new(),
                };
                &absent
            }
        };
        let mut ready = mesh.pods.ready_for(view);
        ready.retain(|p| !input.releases.withdraws(input.name, p));
        let fallback = ctx.fallback_for(&sref.name, ns);
        let held = membership.holding(view, &ready);
        let mut subsets: Vec<SubsetRoute> = lanes
            .iter()
            .zip(held)
            .filter(|((lane, _), held)| *held || fallback.as_deref() == Some(*lane))
            .map(|((lane, labels), _)| SubsetRoute {
                name: (*lane).to_string(),
                labels: Arc::clone(labels),
            })
            .collect();
        if let Some(f) = &fallback
            && let Some(pos) = subsets.iter().position(|s| &s.name == f)
        {
            let base = subsets.remove(pos);
            subsets.insert(0, base);
        } else if let Some(f) = &fallback {
            out.warnings.push(format!(
                "lane group {:?}: fallback lane {f:?} of service {ns}/{} is not a lane of the group",
                input.name, sref.name
            ));
        }
        by_name
            .entry((sref.name.as_str(), ns))
            .or_insert(service_routes.len());
        service_routes.push(ServiceRoutes {
            name: sref.name.clone(),
            namespace: ns.to_string(),
            fallback: fallback.filter(|_| ctx.permissive),
            subsets,
        });
    }
    let find_service = |host: &str| -> Option<(String, String, Option<&ServiceRoutes>)> {
        let (name, ns) = parse_mesh_host(host, "default")?;
        let routes = by_name.get(&(name, ns)).map(|&i| &service_routes[i]);
        Some((name.to_string(), ns.to_string(), routes))
    };

    // Ingress. The group rule: the weighted split's, and the one releases take a share of.
    let rule = spec
        .ingress
        .ingress_routing
        .weighted_routing_rule
        .clone()
        .unwrap_or_default();
    let mut ingress_objects = Vec::new();
    let strategy = spec.ingress.ingress_routing.ingress_routing_strategy;
    let ingress = match strategy {
        IngressStrategy::RuleBased => {
            let mut rules = Vec::new();
            for (lane, lspec) in &input.lanes {
                let mut hosts: Vec<String> = Vec::new();
                let mut http = Vec::new();
                for rule in lspec.ingress_rules.iter().filter(|r| r.online) {
                    let Some((name, ns, svc)) = find_service(&rule.route.destination.host) else {
                        out.warnings.push(format!(
                            "lane {lane:?}: ingress rule {:?} routes to {:?}, which is no mesh service",
                            rule.name, rule.route.destination.host
                        ));
                        continue;
                    };
                    for h in &rule.hosts {
                        if !hosts.contains(h) {
                            hosts.push(h.clone());
                        }
                    }
                    let host = fqdn(&name, &ns);
                    let fallback = ctx.fallback_for(&name, &ns);
                    let mut dest = ctx.lane_destination(&host, svc, lane, fallback.as_deref());
                    dest.destination.port = rule.route.destination.port.clone();
                    dest.headers = Some(ctx.set_lane_header(lane));
                    http.push(HttpRoute {
                        matches: vec![rule.matches.clone()],
                        name: Some(rule.name.clone()),
                        route: vec![dest],
                        ..Default::default()
                    });
                    rules.push(IngressRouteRule {
                        lane: (*lane).to_string(),
                        name: rule.name.clone(),
                        hosts: rule.hosts.clone(),
                        matches: rule.matches.clone(),
                        destination: ServiceName {
                            name,
                            namespace: ns,
                            port: rule
                                .route
                                .destination
                                .port
                                .as_ref()
                                .and_then(|p| u16::try_from(p.number).ok()),
                        },
                    });
                }
                if !http.is_empty() {
                    ingress_objects.push(ctx.virtual_service(
                        format!("swimlane-ingress-vs-{}-{lane}", input.name),
                        VirtualServiceSpec {
                            gateways: vec![format!("{}/{}", ctx.gateway_ns, ctx.gateway)],
                            hosts,
                            http,
                        },
                    ));
                }
            }
            IngressRoutes::RuleBased { rules }
        }
        IngressStrategy::Weighted => {
            let mut http = Vec::new();
            let mut targets = Vec::new();
            let mut weighted = Vec::new();
            for (lane, lspec) in &input.lanes {
                let Some(w) = &lspec.ingress_weight else {
                    continue;
                };
                let Some((name, ns, svc)) = find_service(&w.destination.host) else {
                    out.warnings.push(format!(
                        "lane {lane:?}: ingressWeight.destination.host {:?} is no mesh service; the lane takes no weighted traffic",
                        w.destination.host
                    ));
                    continue;
                };
                let host = fqdn(&name, &ns);
                let fallback = ctx.fallback_for(&name, &ns);
                let mut dest = ctx.lane_destination(&host, svc, lane, fallback.as_deref());
                dest.headers = Some(ctx.set_lane_header(lane));
                // A request that already names this lane keeps it.
                let matches = if rule.request_matches.is_empty() {
                    vec![HttpMatchRequest::default()]
                } else {
                    rule.request_matches.clone()
                };
                http.push(HttpRoute {
                    matches: matches
                        .into_iter()
                        .map(|mut m| {
                            m.headers
                                .insert(ctx.route_header.clone(), StringMatch::exact(*lane));
                            m
                        })
                        .collect(),
                    name: Some((*lane).to_string()),
                    route: vec![dest.clone()],
                    ..Default::default()
                });
                let weight = u32::try_from(w.weight).unwrap_or(0);
                if weight > 0 {
                    let mut d = dest;
                    d.weight = Some(w.weight);
                    weighted.push(d);
                }
                targets.push(WeightedTarget {
                    lane: (*lane).to_string(),
                    weight,
                    destination: ServiceName {
                        name,
                        namespace: ns,
                        port: None,
                    },
                });
            }
            if !weighted.is_empty() {
                http.push(HttpRoute {
                    matches: rule.request_matches.clone(),
                    name: Some("weighted".to_string()),
                    route: weighted,
                    ..Default::default()
                });
            }
            if !http.is_empty() {
                ingress_objects.push(ctx.virtual_service(
                    format!("swimlane-ingress-vs-{}", input.name),
                    VirtualServiceSpec {
                        gateways: vec![format!("{}/{}", ctx.gateway_ns, ctx.gateway)],
                        hosts: rule.hosts.clone(),
                        http,
                    },
                ));
            }
            IngressRoutes::Weighted {
                hosts: rule.hosts.clone(),
                matches: rule.request_matches.clone(),
                targets,
            }
        }
    };

    let istio = emit == Emit::Everything && flavor != Flavor::GatewayApi;
    // Releases whose steps route traffic into a lane of the group.
    let mut releases = Vec::new();
    let hosts = if rule.hosts.is_empty() {
        vec!["*".to_string()]
    } else {
        rule.hosts.clone()
    };
    for r in &input.releases.routed {
        let ours = match &r.pinned {
            Some(pin) => pin.group == input.name,
            None => spec.services.iter().any(|s| {
                mesh.services
                    .get(&s.name, s.namespace())
                    .is_some_and(|v| r.selected_by(v))
            }),
        };
        if !ours || (matches!(strategy, IngressStrategy::Weighted) && !r.is_routing()) {
            continue;
        }
        let (baseline, canary) =
            match release_entries(input, ctx.fallback.as_deref(), r, &find_service) {
                Ok(entries) => entries,
                Err(why) => {
                    out.warnings.push(release::unroutable(input.name, r, &why));
                    continue;
                }
            };
        if istio {
            ingress_objects.push(ctx.virtual_service(
                format!(
                    "swimlane-ingress-vs-{}-release-{}",
                    input.name,
                    r.route_name()
                ),
                VirtualServiceSpec {
                    gateways: vec![format!("{}/{}", ctx.gateway_ns, ctx.gateway)],
                    hosts: hosts.clone(),
                    http: release::istio_routes(&ctx, r, &rule.request_matches, &baseline, &canary),
                },
            ));
        }
        let entry = |e: &release::Entry<'_>| LaneEntry {
            lane: e.lane.to_string(),
            destination: ServiceName {
                name: e.name.clone(),
                namespace: e.namespace.clone(),
                port: e.port,
            },
        };
        releases.push(ReleaseRoute {
            rollout: r.rollout.clone(),
            hosts: hosts.clone(),
            matches: rule.request_matches.clone(),
            baseline: entry(&baseline),
            canary: entry(&canary),
            percent: r.percent.min(100),
            canary_matches: r.matches.clone(),
            canary_headers: r.headers.clone(),
        });
    }
    if istio {
        // Written straight into the output, in its order: a large group's objects are
        // megabytes, and moving them from per-kind lists into it cost a copy of each.
        out.objects
            .reserve(ingress_objects.len() + 2 * service_routes.len());
        out.objects.append(&mut ingress_objects);
        let mut hosts = Vec::with_capacity(service_routes.len());
        for svc in &service_routes {
            let host = fqdn(&svc.name, &svc.namespace);
            out.objects
                .push(service_virtual_service(&ctx, input, svc, host.clone()));
            hosts.push(host);
        }
        for (svc, host) in service_routes.iter().zip(hosts) {
            out.objects
                .push(service_destination_rule(&ctx, input.name, svc, host));
        }
    }
    if emit == Emit::Everything && flavor == Flavor::GatewayApi {
        let g = gateway_api::GroupRoutesRef {
            group: input.name,
            lanes: &input.lanes,
            services: &service_routes,
            ingress: &ingress,
            releases: &releases,
        };
        gateway_api::objects(&ctx, mesh, &g, out);
    }
    out.routes.groups.push(GroupRoutes {
        name: input.name.to_string(),
        route_header: ctx.route_header.clone(),
        trace_header: pmc.trace_header.clone(),
        permissive: ctx.permissive,
        fallback: ctx.fallback.clone().filter(|_| ctx.permissive),
        lanes: input
            .lanes
            .iter()
            .map(|(name, l)| LaneRoutes {
                name: (*name).to_string(),
                selector: l.label_selector.clone(),
            })
            .collect(),
        services: service_routes,
        ingress,
        releases,
    });
}

/// The baseline and canary lanes of a release in a group, with the service a request
/// entering each goes to; or why the release cannot route there. The canary lane is the
/// first whose selector the canary's pods satisfy and the workload's own do not; the
/// baseline lane the first the workload's pods satisfy, else the group's fallback.
fn release_entries<'s>(
    input: &GroupInput<'s>,
    fallback: Option<&str>,
    r: &release::ReleaseInput,
    find_service: &impl Fn(&str) -> Option<(String, String, Option<&'s ServiceRoutes>)>,
) -> Result<(release::Entry<'s>, release::Entry<'s>), String> {
    let (canary, baseline) = match &r.pinned {
        Some(pin) => pinned_lanes(input, fallback, pin)?,
        None => labelled_lanes(input, fallback, r)?,
    };
    let canary_host = release::entry_host(canary.1);
    let baseline_host = release::entry_host(baseline.1);
    let entry = |lane: &'s str, host: Option<(&str, Option<u16>)>| {
        let (host, port) = host
            .or(canary_host)
            .or(baseline_host)
            .ok_or_else(|| format!("lane {lane:?} has no ingress destination"))?;
        let (name, namespace, routes) = find_service(host)
            .ok_or_else(|| format!("lane {lane:?} routes to {host:?}, which is no mesh service"))?;
        Ok::<_, String>(release::Entry {
            lane,
            name,
            namespace,
            port,
            routes,
        })
    };
    Ok((
        entry(baseline.0, baseline_host)?,
        entry(canary.0, canary_host)?,
    ))
}

/// A lane as the compiler holds it: its name and spec.
type LaneRef<'s> = (&'s str, &'s LaneSpec);

/// A lane release's lanes (canary, baseline): the lane it names, and the group's
/// fallback lane.
fn pinned_lanes<'s>(
    input: &GroupInput<'s>,
    fallback: Option<&str>,
    pin: &release::LanePin,
) -> Result<(LaneRef<'s>, LaneRef<'s>), String> {
    let find = |name: &str| input.lanes.iter().copied().find(|(n, _)| *n == name);
    let canary = find(&pin.lane).ok_or_else(|| format!("no lane {:?}", pin.lane))?;
    let baseline = fallback
        .and_then(find)
        .filter(|(n, _)| *n != pin.lane)
        .ok_or("no fallback lane other than the release's to split the ingress with")?;
    Ok((canary, baseline))
}

/// A Rollout's lanes (canary, baseline), from its pods' labels.
fn labelled_lanes<'s>(
    input: &GroupInput<'s>,
    fallback: Option<&str>,
    r: &release::ReleaseInput,
) -> Result<(LaneRef<'s>, LaneRef<'s>), String> {
    let canary = release::lane_of(&input.lanes, &r.canary_labels, Some(&r.stable_labels))
        .ok_or_else(|| {
            format!(
                "no lane selects its canary pods ({})",
                r.canary_labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            )
        })?;
    let baseline = release::lane_of(&input.lanes, &r.stable_labels, None)
        .or_else(|| {
            let f = fallback?;
            input.lanes.iter().copied().find(|(n, _)| *n == f)
        })
        .ok_or("neither a lane selecting the workload's pods nor a fallback lane")?;
    Ok((canary, baseline))
}

/// The VirtualService of one service of a group; `host` is the service's FQDN.
fn service_virtual_service(
    ctx: &GroupCtx<'_>,
    input: &GroupInput<'_>,
    svc: &ServiceRoutes,
    host: String,
) -> Generated {
    let fallback = ctx.fallback_for(&svc.name, &svc.namespace);
    let http = match ctx.flavor {
        Flavor::Asm => vec![HttpRoute {
            name: Some("default".to_string()),
            route: vec![HttpRouteDestination {
                destination: Destination {
                    host: host.clone(),
                    subset: Some(ASM_LABEL_SUBSET.to_string()),
                    port: None,
                },
                fallback: fallback
                    .as_ref()
                    .filter(|_| ctx.permissive)
                    .map(|f| Fallback {
                        target: Destination {
                            host: host.clone(),
                            subset: Some(f.clone()),
                            port: None,
                        },
                    }),
                ..Default::default()
            }],
            ..Default::default()
        }],
        Flavor::Istio | Flavor::GatewayApi => {
            istio_service_routes(ctx, input, svc, &host, fallback.as_deref())
        }
    };
    ctx.virtual_service(
        format!(
            "trafficlabel-vs-{}-{}-{}",
            input.name, svc.namespace, svc.name
        ),
        VirtualServiceSpec {
            gateways: Vec::new(),
            hosts: vec![host],
            http,
        },
    )
}

/// The DestinationRule of one service of group `group` (`host`, its FQDN): a subset per
/// lane holding it.
fn service_destination_rule(
    ctx: &GroupCtx<'_>,
    group: &str,
    svc: &ServiceRoutes,
    host: String,
) -> Generated {
    ctx.destination_rule(
        format!("trafficlabel-dr-{group}-{}-{}", svc.namespace, svc.name),
        DestinationRuleSpec {
            host,
            subsets: svc
                .subsets
                .iter()
                .map(|s| Subset {
                    labels: Arc::clone(&s.labels),
                    name: s.name.clone(),
                })
                .collect(),
        },
    )
}

/// Open-source Istio routes of one service: per lane holding the service, a route for
/// requests whose route header names the lane (and, in strict mode, for calls from the
/// lane's pods); then a default route to the fallback lane.
fn istio_service_routes(
    ctx: &GroupCtx<'_>,
    input: &GroupInput<'_>,
    svc: &ServiceRoutes,
    host: &str,
    fallback: Option<&str>,
) -> Vec<HttpRoute> {
    let default_lane = fallback
        .map(str::to_string)
        .or_else(|| svc.subsets.first().map(|s| s.name.clone()));
    let mut http = Vec::new();
    for (lane, lspec) in &input.lanes {
        if Some(*lane) == default_lane.as_deref() || svc.subset(lane).is_none() {
            continue;
        }
        let mut matches = vec![HttpMatchRequest {
            headers: BTreeMap::from([(ctx.route_header.clone(), StringMatch::exact(*lane))]),
            ..Default::default()
        }];
        if !ctx.permissive {
            matches.push(HttpMatchRequest {
                source_labels: lspec.label_selector.clone(),
                ..Default::default()
            });
        }
        http.push(HttpRoute {
            matches,
            name: Some((*lane).to_string()),
            route: vec![HttpRouteDestination {
                destination: Destination {
                    host: host.to_string(),
                    subset: Some((*lane).to_string()),
                    port: None,
                },
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    if let Some(lane) = default_lane {
        http.push(HttpRoute {
            name: Some("default".to_string()),
            route: vec![HttpRouteDestination {
                destination: Destination {
                    host: host.to_string(),
                    subset: Some(lane),
                    port: None,
                },
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    http
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane(yaml: &str) -> LaneSpec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn the_ingress_reads_the_services_its_online_rules_and_weights_name() {
        let rules = lane(
            "ingressRules:\n\
             - {name: a, hosts: ['*'], online: true, route: {destination: {host: web.shop.svc.cluster.local}}}\n\
             - {name: b, hosts: ['*'], online: false, route: {destination: {host: old}}}\n\
             - {name: c, hosts: ['*'], online: true, route: {destination: {host: web.shop}}}\n\
             labelSelector: {tag: a}\n",
        );
        let weighted = lane(
            "ingressWeight: {weight: 10, destination: {host: api}}\nlabelSelector: {tag: b}\n",
        );
        let lanes = [("a", &rules), ("b", &weighted)];
        assert_eq!(
            ingress_services(&lanes),
            [("api", "default"), ("web", "shop")],
            "offline rules left out, one entry per service"
        );
    }
}
