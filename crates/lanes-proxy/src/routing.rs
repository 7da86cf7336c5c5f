//! The routing state the proxy runs, compiled from the route table and the endpoints:
//! lookups by host, lane resolution, subset choice with fallback, and ingress lane
//! choice. Pure: no I/O; one `Routing` is built per config change and swapped in whole.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::uri::Authority;
use http::{HeaderMap, HeaderName, HeaderValue};
use lanes_routes::host::{parse_mesh_host, selector_matches};
use lanes_routes::{IngressRoutes, PortMap, RouteTable};

use crate::config::Endpoint;
use crate::matching::{MatchError, RequestMatcher, RequestView, host_matches};
use crate::metrics::SubsetSeries;
use crate::release::{HeaderEdits, Release, ReleaseError};

/// A problem building the routing state.
#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    /// A header name of a group is not valid.
    #[error("lane group {group:?}: invalid header name {name:?}")]
    Header {
        /// Group.
        group: String,
        /// Header.
        name: String,
    },
    /// An ingress condition does not compile.
    #[error("lane group {group:?}, lane {lane:?}: {source}")]
    Match {
        /// Group.
        group: String,
        /// Lane.
        lane: String,
        /// Why.
        source: MatchError,
    },
    /// A release's route does not build.
    #[error("lane group {group:?}, release of Rollout {rollout}: {why}")]
    Release {
        /// Group.
        group: String,
        /// Rollout (`namespace/name`).
        rollout: String,
        /// Why.
        why: String,
    },
}

/// The endpoints of one lane's subset of a service.
#[derive(Debug)]
pub struct Subset {
    /// Lane (and subset) name.
    pub lane: Arc<str>,
    /// Ready endpoints.
    pub endpoints: Vec<SocketAddr>,
    /// Each endpoint's `ip:port` as an upstream URI's authority, formatted once here
    /// rather than on every request (same order as `endpoints`).
    authorities: Vec<Option<Authority>>,
    /// Handles to the subset's metric series, taken on first use.
    pub(crate) series: SubsetSeries,
    rr: AtomicUsize,
}

/// One endpoint of a subset, as picked for a request.
#[derive(Debug, Clone, Copy)]
pub struct Picked<'a> {
    /// Its address.
    pub addr: SocketAddr,
    /// The authority an upstream request to it names (formatted when the routing was
    /// built; `None` only if that failed).
    pub authority: Option<&'a Authority>,
}

impl Subset {
    /// The index of the next endpoint, round robin; `None` when there is none ready.
    fn next(&self) -> Option<usize> {
        if self.endpoints.is_empty() {
            return None;
        }
        Some(self.rr.fetch_add(1, Ordering::Relaxed) % self.endpoints.len())
    }

    fn picked(&self, i: usize) -> Picked<'_> {
        Picked {
            addr: self.endpoints[i],
            authority: self.authorities.get(i).and_then(Option::as_ref),
        }
    }

    /// The next endpoint that `is_ejected` does not rule out, round robin; when every
    /// one is ejected, the next one regardless (better a try than no endpoint).
    pub fn pick_healthy(&self, is_ejected: impl Fn(SocketAddr) -> bool) -> Option<Picked<'_>> {
        let first = self.next()?;
        if !is_ejected(self.endpoints[first]) {
            return Some(self.picked(first));
        }
        let healthy = (1..self.endpoints.len())
            .filter_map(|_| self.next())
            .find(|i| !is_ejected(self.endpoints[*i]));
        Some(self.picked(healthy.unwrap_or(first)))
    }
}

/// `addr` as a URI authority: `ip:port`, an IPv6 address in brackets.
pub fn endpoint_authority(addr: SocketAddr) -> Option<Authority> {
    Authority::try_from(addr.to_string()).ok()
}

/// A mesh service.
#[derive(Debug)]
pub struct Service {
    /// Name.
    pub name: Arc<str>,
    /// Namespace.
    pub namespace: Arc<str>,
    /// Ports.
    pub ports: Vec<PortMap>,
    /// Every ready endpoint, whatever its lane.
    pub all: Subset,
    /// The lane group holding the service, as an index into [`Routing::groups`].
    pub group: Option<usize>,
    /// Fallback lane of the service (permissive groups only).
    pub fallback: Option<Arc<str>>,
    /// Subsets of the lanes holding the service, fallback first.
    pub subsets: Vec<Subset>,
    /// `name.namespace`, as the header a client-side proxy names the service it routed a
    /// call to in (built once, not per request).
    pub routed_as: Option<HeaderValue>,
}

impl Service {
    /// The subset of `lane`, if the lane holds the service.
    pub fn subset(&self, lane: &str) -> Option<&Subset> {
        self.subsets.iter().find(|s| &*s.lane == lane)
    }

    /// The container port behind service port `port` (the first port when unknown).
    pub fn target_port(&self, port: Option<u16>) -> Option<u16> {
        match port {
            Some(p) => self
                .ports
                .iter()
                .find(|m| m.port == p)
                .map(|m| m.target_port)
                .or(Some(p)),
            None => self.ports.first().map(|m| m.target_port),
        }
    }
}

/// A lane of a group.
#[derive(Debug)]
pub struct Lane {
    /// Name.
    pub name: Arc<str>,
    /// Pod labels of the lane.
    pub selector: BTreeMap<String, String>,
}

/// An online ingress rule.
#[derive(Debug)]
pub struct IngressRule {
    /// Lane the rule sends traffic into.
    pub lane: Arc<str>,
    /// Rule name.
    pub name: String,
    /// Host patterns.
    pub hosts: Vec<String>,
    /// Conditions.
    pub matcher: RequestMatcher,
    /// Destination service key.
    pub service: String,
    /// Destination port.
    pub port: Option<u16>,
}

/// Ingress lane choice of a group.
#[derive(Debug)]
pub enum Ingress {
    /// First matching online rule wins.
    RuleBased(Vec<IngressRule>),
    /// The group rule, split by weight.
    Weighted {
        /// Host patterns.
        hosts: Vec<String>,
        /// Conditions (any).
        matchers: Vec<RequestMatcher>,
        /// (lane, weight, destination service key).
        targets: Vec<WeightedTarget>,
        /// Sum of the weights.
        total: u32,
    },
}

/// One lane of a weighted split: (lane, weight, destination service key).
pub type WeightedTarget = (Arc<str>, u32, String);

/// A lane group.
#[derive(Debug)]
pub struct Group {
    /// Name.
    pub name: String,
    /// Header carrying the lane.
    pub route_header: HeaderName,
    /// Header carrying the trace id.
    pub trace_header: Option<HeaderName>,
    /// Permissive mode.
    pub permissive: bool,
    /// Group fallback lane.
    pub fallback: Option<Arc<str>>,
    /// Lanes in creation order.
    pub lanes: Vec<Lane>,
    /// Ingress.
    pub ingress: Ingress,
    /// Releases holding a share of the ingress, after the lanes' own rules.
    pub releases: Vec<Release>,
    weighted_rr: AtomicUsize,
}

impl Group {
    /// The lane named `name`, if the group has it.
    pub fn lane(&self, name: &str) -> Option<&Arc<str>> {
        self.lanes.iter().map(|l| &l.name).find(|l| &***l == name)
    }

    /// The keys a request's trace is known by, in order: the group's trace header value,
    /// then the trace id of its W3C `traceparent` unless that names the same trace.
    pub fn trace_keys<'h>(&self, headers: &'h HeaderMap) -> impl Iterator<Item = &'h str> {
        let own = self
            .trace_header
            .as_ref()
            .and_then(|h| headers.get(h))
            .and_then(|v| v.to_str().ok());
        // Read only when the caller goes past the group's own header (a lookup that
        // found the lane by it does not).
        let w3c = std::iter::once_with(move || {
            traceparent_id(headers)
                .filter(|id| !own.is_some_and(|o| crate::correlation::same_trace(o, id)))
        });
        own.into_iter().chain(w3c.flatten())
    }

    /// The lane whose selector a pod's labels match.
    pub fn lane_of_pod(&self, labels: &BTreeMap<String, String>) -> Option<&Arc<str>> {
        self.lanes
            .iter()
            .find(|l| !l.selector.is_empty() && selector_matches(&l.selector, labels))
            .map(|l| &l.name)
    }
}

/// How the lane of a request was found (for logs and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaneSource {
    /// The route header.
    RouteHeader,
    /// A W3C baggage member named like the route header.
    Baggage,
    /// The correlation table (permissive mode).
    Correlation,
    /// The calling pod's own lane.
    PodLane,
    /// The fallback target.
    Fallback,
    /// An ingress rule.
    Ingress,
}

/// Why a request was served by the fallback subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallbackReason {
    /// The lane does not hold the service.
    LaneLacksService,
    /// The lane's subset has no ready endpoint.
    NoEndpoints,
    /// Connecting to the lane's endpoint failed.
    ConnectError,
    /// The connection was reset before the response head.
    Reset,
    /// The lane's endpoint answered a failure status (500, 502, 503, 504 by default).
    UpstreamStatus,
    /// The lane's endpoint answered a gRPC call `UNAVAILABLE` in a trailers-only answer.
    GrpcUnavailable,
    /// The lane's endpoint did not answer within the try's share of the budget.
    Timeout,
}

impl FallbackReason {
    /// Metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FallbackReason::LaneLacksService => "lane_lacks_service",
            FallbackReason::NoEndpoints => "no_endpoints",
            FallbackReason::ConnectError => "connect_error",
            FallbackReason::Reset => "reset",
            FallbackReason::UpstreamStatus => "upstream_status",
            FallbackReason::GrpcUnavailable => "grpc_unavailable",
            FallbackReason::Timeout => "timeout",
        }
    }

    /// Whether the lane's try failed (the fallback hid a failure from the caller), as
    /// opposed to the lane having nothing to try.
    pub fn is_failure(self) -> bool {
        !matches!(
            self,
            FallbackReason::LaneLacksService | FallbackReason::NoEndpoints
        )
    }
}

/// Where a request goes, before it is sent.
#[derive(Debug)]
pub struct Choice<'a> {
    /// The subset to try first.
    pub primary: &'a Subset,
    /// The subset to retry on when the first attempt fails (permissive mode, and only
    /// when it differs from the primary).
    pub retry: Option<&'a Subset>,
    /// Set when routing already fell back: (requested lane, reason).
    pub fell_back: Option<(Arc<str>, FallbackReason)>,
}

/// Why no subset could be chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoRoute {
    /// What to tell the client.
    pub message: String,
}

/// The routing state.
#[derive(Debug, Default)]
pub struct Routing {
    services: HashMap<String, Service>,
    /// Lane groups, in creation order.
    pub groups: Vec<Group>,
    /// Gateway API routes attached to mesh Services.
    pub mesh: crate::mesh_routes::MeshRules,
    /// Gateway API routes attached to the Gateways the ingress gateway serves.
    pub gateway_routes: crate::gateway_routes::GatewayRules,
}

/// A service's key, `name.namespace` (built on every routed request: no formatter).
pub(crate) fn key(name: &str, namespace: &str) -> String {
    let mut k = String::with_capacity(name.len() + 1 + namespace.len());
    k.push_str(name);
    k.push('.');
    k.push_str(namespace);
    k
}

fn subset(lane: Arc<str>, endpoints: Vec<SocketAddr>) -> Subset {
    Subset {
        lane,
        authorities: endpoints.iter().map(|a| endpoint_authority(*a)).collect(),
        endpoints,
        series: SubsetSeries::default(),
        rr: AtomicUsize::new(0),
    }
}

fn header(group: &str, name: &str) -> Result<HeaderName, RoutingError> {
    HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).map_err(|_| RoutingError::Header {
        group: group.to_string(),
        name: name.to_string(),
    })
}

/// FNV-1a, for sticky weighted choice.
fn hash(s: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Routing {
    /// Builds the routing state from a route table and the endpoints that exist.
    pub fn build(table: &RouteTable, endpoints: &[Endpoint]) -> Result<Routing, RoutingError> {
        let mut by_service: HashMap<String, Vec<&Endpoint>> = HashMap::new();
        for e in endpoints.iter().filter(|e| e.ready) {
            by_service
                .entry(key(&e.service, &e.namespace))
                .or_default()
                .push(e);
        }
        let mut services = HashMap::new();
        for s in &table.services {
            let k = key(&s.name, &s.namespace);
            let eps: Vec<SocketAddr> = by_service
                .get(&k)
                .map(|v| v.iter().map(|e| e.address).collect())
                .unwrap_or_default();
            services.insert(
                k.clone(),
                Service {
                    name: s.name.as_str().into(),
                    namespace: s.namespace.as_str().into(),
                    ports: s.ports.clone(),
                    all: subset("".into(), eps),
                    group: None,
                    fallback: None,
                    subsets: Vec::new(),
                    routed_as: HeaderValue::from_str(&k).ok(),
                },
            );
        }
        let mut groups = Vec::new();
        for (gi, g) in table.groups.iter().enumerate() {
            let lanes: Vec<Lane> = g
                .lanes
                .iter()
                .map(|l| Lane {
                    name: l.name.as_str().into(),
                    selector: l.selector.clone(),
                })
                .collect();
            let lane_arc = |name: &str| -> Arc<str> {
                lanes
                    .iter()
                    .find(|l| &*l.name == name)
                    .map(|l| l.name.clone())
                    .unwrap_or_else(|| name.into())
            };
            for gs in &g.services {
                let k = key(&gs.name, &gs.namespace);
                let eps = by_service.get(&k).cloned().unwrap_or_default();
                let routed_as = HeaderValue::from_str(&k).ok();
                let service = services.entry(k).or_insert_with(|| Service {
                    name: gs.name.as_str().into(),
                    namespace: gs.namespace.as_str().into(),
                    ports: Vec::new(),
                    all: subset("".into(), eps.iter().map(|e| e.address).collect()),
                    group: None,
                    fallback: None,
                    subsets: Vec::new(),
                    routed_as,
                });
                if service.group.is_some() {
                    continue; // The first group that holds a service routes it.
                }
                service.group = Some(gi);
                service.fallback = gs.fallback.as_deref().map(lane_arc);
                service.subsets = gs
                    .subsets
                    .iter()
                    .map(|s| {
                        let members = eps
                            .iter()
                            .filter(|e| selector_matches(&s.labels, &e.labels))
                            .map(|e| e.address)
                            .collect();
                        subset(lane_arc(&s.name), members)
                    })
                    .collect();
            }
            let compile = |lane: &str, m| {
                RequestMatcher::compile(m).map_err(|source| RoutingError::Match {
                    group: g.name.clone(),
                    lane: lane.to_string(),
                    source,
                })
            };
            let ingress = match &g.ingress {
                IngressRoutes::RuleBased { rules } => Ingress::RuleBased(
                    rules
                        .iter()
                        .map(|r| {
                            Ok(IngressRule {
                                lane: lane_arc(&r.lane),
                                name: r.name.clone(),
                                hosts: r.hosts.clone(),
                                matcher: compile(&r.lane, &r.matches)?,
                                service: key(&r.destination.name, &r.destination.namespace),
                                port: r.destination.port,
                            })
                        })
                        .collect::<Result<_, RoutingError>>()?,
                ),
                IngressRoutes::Weighted {
                    hosts,
                    matches,
                    targets,
                } => {
                    let targets: Vec<(Arc<str>, u32, String)> = targets
                        .iter()
                        .filter(|t| t.weight > 0)
                        .map(|t| {
                            (
                                lane_arc(&t.lane),
                                t.weight,
                                key(&t.destination.name, &t.destination.namespace),
                            )
                        })
                        .collect();
                    Ingress::Weighted {
                        hosts: hosts.clone(),
                        matchers: matches
                            .iter()
                            .map(|m| compile("", m))
                            .collect::<Result<_, _>>()?,
                        total: targets.iter().map(|t| t.1).sum(),
                        targets,
                    }
                }
            };
            let releases = g
                .releases
                .iter()
                .map(|r| {
                    Release::build(r, lane_arc).map_err(|e| RoutingError::Release {
                        group: g.name.clone(),
                        rollout: r.rollout.clone(),
                        why: match e {
                            ReleaseError::Match(m) => m.to_string(),
                            ReleaseError::Header(h) => format!("invalid header change {h}"),
                        },
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            groups.push(Group {
                name: g.name.clone(),
                route_header: header(&g.name, &g.route_header)?,
                trace_header: g
                    .trace_header
                    .as_deref()
                    .map(|h| header(&g.name, h))
                    .transpose()?,
                permissive: g.permissive,
                fallback: g.fallback.as_deref().map(lane_arc),
                lanes,
                ingress,
                releases,
                weighted_rr: AtomicUsize::new(0),
            });
        }
        Ok(Routing {
            services,
            groups,
            mesh: crate::mesh_routes::MeshRules::build(&table.mesh_routes),
            gateway_routes: crate::gateway_routes::GatewayRules::build(&table.ingress_routes),
        })
    }

    /// The mesh service a host names, relative to `namespace` (`svc`, `svc.ns`,
    /// `svc.ns.svc`, `svc.ns.svc.cluster.local`, with or without port).
    pub fn service_for_host(&self, host: &str, namespace: &str) -> Option<&Service> {
        let (name, ns) = parse_mesh_host(host, namespace)?;
        self.services.get(&key(name, ns))
    }

    /// A service by key (`name.namespace`).
    pub fn service(&self, key: &str) -> Option<&Service> {
        self.services.get(key)
    }

    /// Every service.
    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.services.values()
    }

    /// The group of a service.
    pub fn group_of(&self, service: &Service) -> Option<&Group> {
        service.group.and_then(|g| self.groups.get(g))
    }

    /// Picks the subset for `lane` of `service`, falling back at routing time when the
    /// lane lacks the service or its subset has no ready endpoint (permissive mode).
    pub fn choose<'a>(
        &self,
        service: &'a Service,
        lane: Option<&Arc<str>>,
    ) -> Result<Choice<'a>, NoRoute> {
        let group = self.group_of(service);
        let (Some(group), Some(lane)) = (group, lane) else {
            if service.all.endpoints.is_empty() {
                return Err(NoRoute {
                    message: format!(
                        "no ready endpoint for service {}.{}",
                        service.name, service.namespace
                    ),
                });
            }
            return Ok(Choice {
                primary: &service.all,
                retry: None,
                fell_back: None,
            });
        };
        let fallback = service
            .fallback
            .as_ref()
            .filter(|_| group.permissive)
            .and_then(|f| service.subset(f));
        match service.subset(lane) {
            Some(s) if !s.endpoints.is_empty() => {
                let retry = fallback.filter(|f| !std::ptr::eq(*f, s) && !f.endpoints.is_empty());
                Ok(Choice {
                    primary: s,
                    retry,
                    fell_back: None,
                })
            }
            found => {
                let reason = if found.is_some() {
                    FallbackReason::NoEndpoints
                } else {
                    FallbackReason::LaneLacksService
                };
                match fallback.filter(|f| !f.endpoints.is_empty()) {
                    Some(f) => Ok(Choice {
                        primary: f,
                        retry: None,
                        fell_back: (*f.lane != **lane).then(|| (lane.clone(), reason)),
                    }),
                    None => {
                        let tried = match (&service.fallback, group.permissive) {
                            (Some(f), true) => format!("; fallback lane {f:?} has none either"),
                            (_, false) => "; strict mode has no fallback".to_string(),
                            (None, true) => "; the service has no fallback lane".to_string(),
                        };
                        Err(NoRoute {
                            message: format!(
                                "no ready endpoint for service {}.{} in lane {lane:?}{tried}",
                                service.name, service.namespace
                            ),
                        })
                    }
                }
            }
        }
    }

    /// The lane of an outbound call from a pod, by design §4: the route header, the
    /// baggage member named like it, the correlation table (permissive), the pod's own
    /// lane, the fallback target. Values that name no lane of the group are ignored.
    pub fn resolve_lane(
        &self,
        group: &Group,
        headers: &HeaderMap,
        correlate: impl Fn(&str) -> Option<Arc<str>>,
        pod_labels: Option<&BTreeMap<String, String>>,
    ) -> Option<(Arc<str>, LaneSource)> {
        if let Some(lane) = headers
            .get(&group.route_header)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| group.lane(v.trim()))
        {
            return Some((lane.clone(), LaneSource::RouteHeader));
        }
        if let Some(lane) =
            baggage_member(headers, group.route_header.as_str()).and_then(|v| group.lane(&v))
        {
            return Some((lane.clone(), LaneSource::Baggage));
        }
        if group.permissive
            && let Some(lane) = group
                .trace_keys(headers)
                .find_map(|key| correlate(key).and_then(|lane| group.lane(&lane)))
        {
            return Some((lane.clone(), LaneSource::Correlation));
        }
        if let Some(lane) = pod_labels.and_then(|l| group.lane_of_pod(l)) {
            return Some((lane.clone(), LaneSource::PodLane));
        }
        group
            .fallback
            .as_ref()
            .map(|f| (f.clone(), LaneSource::Fallback))
    }

    /// Ingress lane choice: the first group that takes the request picks the lane and
    /// the destination service — by a lane's own rule (or, under `weighted`, the lane
    /// the request names), then by a release's share, then by the weighted split.
    pub fn ingress(&self, req: &RequestView<'_>) -> Option<IngressChoice<'_>> {
        self.groups.iter().find_map(|group| match &group.ingress {
            Ingress::RuleBased(rules) => self
                .lane_rule(group, rules, req)
                .or_else(|| self.release_share(group, req)),
            Ingress::Weighted { targets, total, .. } => {
                // The group rule is read once: a lane named, else a release, else the split.
                let split = *total > 0 && weighted_rule_matches(&group.ingress, req);
                let named = split.then(|| self.named_target(group, targets, req));
                named
                    .flatten()
                    .or_else(|| self.release_share(group, req))
                    .or_else(|| split.then(|| self.weighted_split(group, targets, *total, req))?)
            }
        })
    }

    fn choice<'a>(
        &'a self,
        group: &'a Group,
        lane: &Arc<str>,
        service: &str,
        port: Option<u16>,
        headers: Option<&'a HeaderEdits>,
    ) -> Option<IngressChoice<'a>> {
        let service = self.services.get(service)?;
        Some(IngressChoice {
            group,
            lane: lane.clone(),
            service,
            port,
            headers: headers.filter(|h| !h.is_empty()),
        })
    }

    /// The lane whose own rule (rule-based ingress) the request matches.
    fn lane_rule<'a>(
        &'a self,
        group: &'a Group,
        rules: &'a [IngressRule],
        req: &RequestView<'_>,
    ) -> Option<IngressChoice<'a>> {
        rules.iter().find_map(|rule| {
            let hit = rule.hosts.iter().any(|h| host_matches(h, req.authority))
                && rule.matcher.matches(req);
            hit.then(|| self.choice(group, &rule.lane, &rule.service, rule.port, None))
                .flatten()
        })
    }

    /// The lane of a weighted split that the request names with the route header.
    fn named_target<'a>(
        &'a self,
        group: &'a Group,
        targets: &'a [WeightedTarget],
        req: &RequestView<'_>,
    ) -> Option<IngressChoice<'a>> {
        let named = req
            .headers
            .get(&group.route_header)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| targets.iter().find(|t| &*t.0 == v.trim()))?;
        self.choice(group, &named.0, &named.2, None, None)
    }

    /// The first release whose group rule the request falls under: the canary lane for
    /// its share, else the baseline lane.
    fn release_share<'a>(
        &'a self,
        group: &'a Group,
        req: &RequestView<'_>,
    ) -> Option<IngressChoice<'a>> {
        // A request that names a lane is the lanes' own, whatever rule it missed.
        if req
            .headers
            .get(&group.route_header)
            .is_some_and(|v| !v.is_empty())
        {
            return None;
        }
        let release = group.releases.iter().find(|r| r.applies_to(req))?;
        let ticket = (self.ticket(group, req) % 100) as u32;
        if release.is_canary(req, ticket) {
            let c = &release.canary;
            self.choice(
                group,
                &c.lane,
                &c.service,
                c.port,
                Some(&release.canary_headers),
            )
        } else {
            let b = &release.baseline;
            self.choice(group, &b.lane, &b.service, b.port, None)
        }
    }

    /// The weighted split of the group rule, sticky per trace-header value.
    fn weighted_split<'a>(
        &'a self,
        group: &'a Group,
        targets: &'a [WeightedTarget],
        total: u32,
        req: &RequestView<'_>,
    ) -> Option<IngressChoice<'a>> {
        let ticket = (self.ticket(group, req) % u64::from(total)) as u32;
        let mut acc = 0;
        let (lane, _, service) = targets.iter().find(|t| {
            acc += t.1;
            ticket < acc
        })?;
        self.choice(group, lane, service, None, None)
    }

    /// A request's draw for a split: the hash of its trace-header value (sticky), or
    /// the next in turn when it has none.
    fn ticket(&self, group: &Group, req: &RequestView<'_>) -> u64 {
        match group.trace_header.as_ref().and_then(|h| req.headers.get(h)) {
            Some(trace) => hash(trace.as_bytes()),
            None => group.weighted_rr.fetch_add(1, Ordering::Relaxed) as u64,
        }
    }
}

/// Whether the request falls under a weighted group's rule (hosts and any condition).
fn weighted_rule_matches(ingress: &Ingress, req: &RequestView<'_>) -> bool {
    let Ingress::Weighted {
        hosts, matchers, ..
    } = ingress
    else {
        return false;
    };
    hosts.iter().any(|h| host_matches(h, req.authority))
        && (matchers.is_empty() || matchers.iter().any(|m| m.matches(req)))
}

/// Where the gateway sends a request: the group, the lane, the destination service and
/// port, and the header changes a release asks of it.
#[derive(Debug)]
pub struct IngressChoice<'a> {
    /// The group that took the request.
    pub group: &'a Group,
    /// The lane it enters.
    pub lane: Arc<str>,
    /// The destination service.
    pub service: &'a Service,
    /// The destination port, when the route names one.
    pub port: Option<u16>,
    /// Header changes to make to the request (a release step's).
    pub headers: Option<&'a HeaderEdits>,
}

/// The trace id of a valid W3C `traceparent` header: a second trace key, for
/// applications that forward only it.
pub fn traceparent_id(headers: &HeaderMap) -> Option<&str> {
    crate::trace::traceparent_fields(headers).map(|(trace, _)| trace)
}

/// W3C baggage, where a lane may travel as a member named like the route header.
const BAGGAGE: HeaderName = HeaderName::from_static("baggage");

/// The value of the W3C `baggage` member named `key`, if present.
pub fn baggage_member(headers: &HeaderMap, key: &str) -> Option<String> {
    for value in headers.get_all(BAGGAGE) {
        let Ok(value) = value.to_str() else { continue };
        for member in value.split(',') {
            let kv = member.split(';').next().unwrap_or("");
            if let Some((k, v)) = kv.split_once('=')
                && k.trim().eq_ignore_ascii_case(key)
            {
                return Some(v.trim().to_string());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_gives_its_trace_id_and_a_malformed_one_nothing() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(crate::trace::TRACEPARENT, HeaderValue::from_str(v).unwrap());
            h
        };
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        let ok = with(&format!("00-{id}-00f067aa0ba902b7-01"));
        assert_eq!(traceparent_id(&ok), Some(id));
        // A later version may add fields.
        let later = with(&format!("01-{id}-00f067aa0ba902b7-01-extra"));
        assert_eq!(traceparent_id(&later), Some(id));
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01".to_string(),
            format!("00-{}-00f067aa0ba902b7-01", id.to_uppercase()),
            format!("00-{id}-00f067aa0ba902b7"),
            format!("00-{id}-00f067aa0ba902b7-01-extra"),
            format!("ff-{id}-00f067aa0ba902b7-01"),
            format!("00-{id}x-00f067aa0ba902b7-01"),
            "garbage".to_string(),
        ] {
            assert_eq!(traceparent_id(&with(&bad)), None, "{bad}");
        }
        assert_eq!(traceparent_id(&HeaderMap::new()), None);
    }
    use lanes_routes::{
        GroupRoutes, IngressRouteRule, LaneRoutes, MeshService, ServiceName, ServiceRoutes,
        SubsetRoute,
    };

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn table(permissive: bool) -> RouteTable {
        let svc = |name: &str, canary: bool| {
            let mut subsets = vec![SubsetRoute {
                name: "base".into(),
                labels: labels(&[("tag", "base")]).into(),
            }];
            if canary {
                subsets.push(SubsetRoute {
                    name: "canary".into(),
                    labels: labels(&[("tag", "canary")]).into(),
                });
            }
            ServiceRoutes {
                name: name.into(),
                namespace: "default".into(),
                fallback: permissive.then(|| "base".into()),
                subsets,
            }
        };
        RouteTable {
            services: ["a", "b"]
                .iter()
                .map(|n| MeshService {
                    name: (*n).into(),
                    namespace: "default".into(),
                    ports: vec![PortMap {
                        port: 8000,
                        target_port: 8000,
                    }],
                    selector: labels(&[("app", n)]),
                })
                .collect(),
            groups: vec![GroupRoutes {
                name: "g".into(),
                route_header: "x-lane".into(),
                trace_header: Some("x-trace".into()),
                permissive,
                fallback: permissive.then(|| "base".into()),
                lanes: vec![
                    LaneRoutes {
                        name: "base".into(),
                        selector: labels(&[("tag", "base")]),
                    },
                    LaneRoutes {
                        name: "canary".into(),
                        selector: labels(&[("tag", "canary")]),
                    },
                ],
                services: vec![svc("a", true), svc("b", false)],
                ingress: IngressRoutes::RuleBased {
                    rules: vec![IngressRouteRule {
                        lane: "canary".into(),
                        name: "canary".into(),
                        hosts: vec!["*".into()],
                        matches: serde_json::from_value(
                            serde_json::json!({"headers": {"x-lane": {"exact": "canary"}}}),
                        )
                        .unwrap(),
                        destination: ServiceName {
                            name: "a".into(),
                            namespace: "default".into(),
                            port: None,
                        },
                    }],
                },
                releases: Vec::new(),
            }],
            mesh_routes: Vec::new(),
            ingress_routes: Vec::new(),
        }
    }

    /// The table with a release holding `percent` of `/mock` (and every request with
    /// header `x-beta: yes`), whose canary requests get `x-canary: 1`.
    fn released(percent: u32) -> RouteTable {
        let mut t = table(true);
        let entry = |lane: &str| lanes_routes::LaneEntry {
            lane: lane.into(),
            destination: ServiceName {
                name: "a".into(),
                namespace: "default".into(),
                port: None,
            },
        };
        t.groups[0].releases.push(lanes_routes::ReleaseRoute {
            rollout: "default/r".into(),
            hosts: vec!["*".into()],
            matches: vec![
                serde_json::from_value(serde_json::json!({"uri": {"exact": "/mock"}})).unwrap(),
            ],
            baseline: entry("base"),
            canary: entry("canary"),
            percent,
            canary_matches: vec![
                serde_json::from_value(
                    serde_json::json!({"headers": {"x-beta": {"exact": "yes"}}}),
                )
                .unwrap(),
            ],
            canary_headers: lanes_routes::HeaderChanges {
                set: vec![("x-canary".into(), "1".into())],
                ..Default::default()
            },
        });
        t
    }

    #[test]
    fn a_release_takes_its_share_of_the_requests_that_name_no_lane_sticky_per_trace() {
        let uri: http::Uri = "/mock".parse().unwrap();
        let lane_of = |r: &Routing, h: &HeaderMap| {
            let v = RequestView {
                method: &http::Method::GET,
                uri: &uri,
                authority: "x",
                headers: h,
                source_labels: None,
            };
            r.ingress(&v)
                .map(|c| (c.lane.to_string(), c.headers.is_some()))
        };
        let trace = |i: usize| {
            let mut h = HeaderMap::new();
            h.insert("x-trace", format!("order-{i}").parse().unwrap());
            h
        };
        let mut canary_at = Vec::new();
        for percent in [0, 10, 50, 100] {
            let r = Routing::build(&released(percent), &[]).unwrap();
            let lanes: Vec<(String, bool)> =
                (0..2000).map(|i| lane_of(&r, &trace(i)).unwrap()).collect();
            let canary: Vec<usize> = (0..2000).filter(|i| lanes[*i].0 == "canary").collect();
            // Canary requests carry the step's header change; the others do not.
            assert!(lanes.iter().all(|(l, edited)| (l == "canary") == *edited));
            let share = canary.len() as f64 / 20.0;
            assert!(
                (share - f64::from(percent)).abs() <= 3.0,
                "{percent}%: {share}% entered the canary lane"
            );
            // Sticky: the same trace lands in the same lane again.
            for i in [0, 7, 1999] {
                assert_eq!(lane_of(&r, &trace(i)).unwrap(), lanes[i]);
            }
            canary_at.push(canary);
        }
        // A growing share keeps every trace already in the canary lane there.
        for pair in canary_at.windows(2) {
            assert!(pair[0].iter().all(|i| pair[1].contains(i)));
        }
        let r = Routing::build(&released(0), &[]).unwrap();
        // The step's matches enter the canary lane whatever the share.
        let mut beta = trace(1);
        beta.insert("x-beta", "yes".parse().unwrap());
        assert_eq!(lane_of(&r, &beta), Some(("canary".into(), true)));
        // A request naming a lane keeps to the lanes' rules.
        let mut named = trace(1);
        named.insert("x-lane", "base".parse().unwrap());
        assert_eq!(lane_of(&r, &named), None);
        // Outside the group rule, the release takes nothing.
        let other: http::Uri = "/other".parse().unwrap();
        let v = RequestView {
            method: &http::Method::GET,
            uri: &other,
            authority: "x",
            headers: &beta,
            source_labels: None,
        };
        assert!(r.ingress(&v).is_none());
    }

    fn ep(svc: &str, port: u16, tag: &str) -> Endpoint {
        Endpoint {
            service: svc.into(),
            namespace: "default".into(),
            address: SocketAddr::from(([127, 0, 0, 1], port)),
            labels: labels(&[("app", svc), ("tag", tag)]),
            ready: true,
            pod: None,
        }
    }

    #[test]
    fn lane_resolution_order() {
        let r = Routing::build(&table(true), &[]).unwrap();
        let g = &r.groups[0];
        let none = |_: &str| None;
        let mut h = HeaderMap::new();
        assert_eq!(
            r.resolve_lane(g, &h, none, None).map(|l| l.1),
            Some(LaneSource::Fallback)
        );
        let canary_pod = labels(&[("tag", "canary")]);
        assert_eq!(
            r.resolve_lane(g, &h, none, Some(&canary_pod)).map(|l| l.1),
            Some(LaneSource::PodLane)
        );
        h.insert("x-trace", "t1".parse().unwrap());
        let (lane, src) = r
            .resolve_lane(g, &h, |t| (t == "t1").then(|| "canary".into()), None)
            .unwrap();
        assert_eq!((&*lane, src), ("canary", LaneSource::Correlation));
        h.insert("baggage", "k=v, x-lane=base;p=1".parse().unwrap());
        let (lane, src) = r
            .resolve_lane(g, &h, |_| Some("canary".into()), None)
            .unwrap();
        assert_eq!((&*lane, src), ("base", LaneSource::Baggage));
        h.insert("x-lane", "canary".parse().unwrap());
        let (lane, src) = r.resolve_lane(g, &h, none, None).unwrap();
        assert_eq!((&*lane, src), ("canary", LaneSource::RouteHeader));
        // A value that names no lane is ignored.
        h.insert("x-lane", "bogus".parse().unwrap());
        assert_eq!(
            r.resolve_lane(g, &h, none, None).map(|l| l.1),
            Some(LaneSource::Baggage)
        );
    }

    #[test]
    fn each_picked_endpoint_comes_with_its_authority_round_robin() {
        let eps = [ep("a", 1, "base"), ep("a", 2, "base")];
        let r = Routing::build(&table(true), &eps).unwrap();
        let base = r
            .service_for_host("a:8000", "default")
            .unwrap()
            .subset("base")
            .unwrap();
        let mut seen = Vec::new();
        for _ in 0..4 {
            let p = base.pick_healthy(|_| false).unwrap();
            assert_eq!(
                p.authority.map(|a| a.as_str().to_string()),
                Some(p.addr.to_string())
            );
            seen.push(p.addr.port());
        }
        assert!(seen == [1, 2, 1, 2] || seen == [2, 1, 2, 1], "{seen:?}");
        // An ejected endpoint is passed over while another is healthy.
        let ejected = SocketAddr::from(([127, 0, 0, 1], 1));
        for _ in 0..3 {
            assert_eq!(base.pick_healthy(|a| a == ejected).unwrap().addr.port(), 2);
        }
        // With every endpoint ejected, one is still tried.
        assert!(base.pick_healthy(|_| true).is_some());
        let v6 = SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], 80));
        assert_eq!(endpoint_authority(v6).unwrap().as_str(), "[::1]:80");
    }

    #[test]
    fn choice_falls_back_when_the_lane_lacks_the_service_or_endpoints() {
        let eps = [ep("a", 1, "base"), ep("a", 2, "canary"), ep("b", 3, "base")];
        let r = Routing::build(&table(true), &eps).unwrap();
        let canary: Arc<str> = "canary".into();
        let a = r.service_for_host("a:8000", "default").unwrap();
        let c = r.choose(a, Some(&canary)).unwrap();
        assert_eq!(c.primary.endpoints, [SocketAddr::from(([127, 0, 0, 1], 2))]);
        assert_eq!(c.retry.map(|s| &*s.lane), Some("base"));
        assert!(c.fell_back.is_none());
        let b = r
            .service_for_host("b.default.svc.cluster.local", "x")
            .unwrap();
        let c = r.choose(b, Some(&canary)).unwrap();
        assert_eq!(&*c.primary.lane, "base");
        assert_eq!(
            c.fell_back.map(|f| f.1),
            Some(FallbackReason::LaneLacksService)
        );

        let r = Routing::build(&table(true), &[ep("a", 1, "base")]).unwrap();
        let a = r.service_for_host("a", "default").unwrap();
        let c = r.choose(a, Some(&canary)).unwrap();
        assert_eq!(c.fell_back.map(|f| f.1), Some(FallbackReason::NoEndpoints));
        let r = Routing::build(&table(true), &[]).unwrap();
        let a = r.service_for_host("a", "default").unwrap();
        let err = r.choose(a, Some(&canary)).unwrap_err();
        assert!(
            err.message.contains("service a.default in lane \"canary\""),
            "{}",
            err.message
        );
        assert!(
            err.message.contains("fallback lane \"base\""),
            "{}",
            err.message
        );
    }

    #[test]
    fn strict_mode_never_falls_back() {
        let r = Routing::build(&table(false), &[ep("b", 3, "base")]).unwrap();
        let canary: Arc<str> = "canary".into();
        let b = r.service_for_host("b", "default").unwrap();
        let err = r.choose(b, Some(&canary)).unwrap_err();
        assert!(err.message.contains("strict mode"), "{}", err.message);
    }

    #[test]
    fn ingress_rules_pick_lane_and_service() {
        let r = Routing::build(&table(true), &[]).unwrap();
        let mut h = HeaderMap::new();
        let uri: http::Uri = "/mock".parse().unwrap();
        let view = |h: &HeaderMap| {
            let v = RequestView {
                method: &http::Method::GET,
                uri: &uri,
                authority: "x",
                headers: h,
                source_labels: None,
            };
            r.ingress(&v).map(|c| {
                (
                    c.group.name.clone(),
                    c.lane.to_string(),
                    c.service.name.to_string(),
                )
            })
        };
        assert_eq!(view(&h), None);
        h.insert("x-lane", "canary".parse().unwrap());
        assert_eq!(view(&h), Some(("g".into(), "canary".into(), "a".into())));
    }
}
