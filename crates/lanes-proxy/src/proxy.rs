//! The request path: the gateway, a sidecar's inbound and outbound sides, and the
//! upstream call with fallback. Every request reads the newest routing state through
//! an atomic pointer swap, never a lock.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version, uri};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use lanes_routes::RouteTable;

use crate::body::{
    BoxError, ClientBodyFault, Prepared, ProxyBody, boxed, full, prepare, watch_client_body,
};
use crate::budget;
use crate::config::{Endpoint, PodIdentity, Settings};
use crate::correlation::{CorrelationTable, same_trace, trace_id_of};
use crate::grpc;
use crate::guard::{self, OwnListeners};
use crate::istio::{Destination, ResponseFlag, Served};
use crate::local::LocalInbound;
use crate::matching::RequestView;
use crate::mesh_routes::Selected;
use crate::metrics::{
    AttemptOutcome, FallbackLabels, Label, Metrics, PodLabels, RequestLabels, SubsetKey,
};
use crate::outlier::{Outliers, is_gateway_failure};
use crate::routing::{
    Choice, FallbackReason, Group, IngressChoice, Routing, RoutingError, Service, Subset,
    endpoint_authority, traceparent_id,
};
use crate::server::ConnectionHold;
use crate::trace::{HopFallback, Hops, Span, SpanContext, TraceId};
use crate::upgrade;
use crate::upstream::{Http1Pool, PoolSettings};

/// Response header naming the lanes of a fallback: `<from>-><to>`.
pub const FALLBACK_HEADER: HeaderName = HeaderName::from_static("x-lanes-fallback");
/// Request header a sidecar's outbound side sets so the inbound side knows which
/// container port the call is for.
pub const TARGET_PORT_HEADER: HeaderName = HeaderName::from_static("x-lanes-target-port");
/// Request header a client-side proxy sets to the Service it routed a call to
/// (`name.namespace`), so the serving pod's sidecar reports it as Istio's does.
pub const SERVICE_HEADER: HeaderName = HeaderName::from_static("x-lanes-service");
/// Response header saying why a failed attempt was not retried.
pub const NO_RETRY_HEADER: HeaderName = HeaderName::from_static("x-lanes-no-retry");

/// What every gateway and sidecar of a process shares: the routing state, upstream
/// connection pools, settings and metrics.
pub struct Mesh {
    routing: ArcSwap<Routing>,
    settings: Settings,
    metrics: Arc<Metrics>,
    http1: Http1Pool,
    http2: Client<HttpConnector, ProxyBody>,
    own: OwnListeners,
    local: LocalInbound,
    outliers: Outliers,
    hops: Option<Arc<Hops>>,
}

impl std::fmt::Debug for Mesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesh")
            .field("settings", &self.settings)
            .finish()
    }
}

/// Which side of the proxy handled a request (a metric label, a hop's role).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The ingress gateway.
    Gateway,
    /// A sidecar's inbound side.
    Inbound,
    /// A sidecar's outbound side.
    Outbound,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Side {
    /// Its name, as metrics and hop records write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Gateway => "gateway",
            Side::Inbound => "inbound",
            Side::Outbound => "outbound",
        }
    }
}

fn connector(settings: &Settings) -> HttpConnector {
    let mut c = HttpConnector::new();
    c.set_connect_timeout(Some(settings.connect_timeout()));
    c.set_nodelay(true);
    c.enforce_http(true);
    c
}

/// A plain-text error response.
pub fn error_response(status: StatusCode, message: impl Into<String>) -> Response<ProxyBody> {
    let mut text = message.into();
    text.push('\n');
    let mut resp = Response::new(full(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

/// Whether `name` is a hop-by-hop header, one a proxy never passes on.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most requests carry none: one pass over the names spares a lookup per kind.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    // `te: trailers` is the one TE an HTTP/2 peer may send, and gRPC servers ask for it:
    // as Envoy does, the proxy passes it on (even when `Connection` names it).
    let keep_te = headers
        .get(header::TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    if let Some(conn) = headers
        .get(header::CONNECTION)
        .and_then(|v| v.to_str().ok())
    {
        let named: Vec<HeaderName> = conn
            .split(',')
            .filter_map(|h| HeaderName::from_bytes(h.trim().as_bytes()).ok())
            .collect();
        for h in named {
            headers.remove(h);
        }
    }
    for h in &HOP_BY_HOP {
        headers.remove(h);
    }
    if keep_te {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// Strips a request's hop-by-hop headers but those of an upgrade it asks for, which
/// the next hop needs to switch too.
fn strip_request_hop_by_hop(parts: &mut http::request::Parts) {
    let protocol = upgrade::requested(parts.version, &parts.headers);
    strip_hop_by_hop(&mut parts.headers);
    if let Some(p) = protocol {
        upgrade::restore(&mut parts.headers, p);
    }
}

/// The authority a request names: the URI's (absolute form, HTTP/2) or the Host header.
fn authority(req: &Request<Incoming>) -> Option<String> {
    req.uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
}

/// One outcome of sending a request upstream.
enum Attempt {
    Response(Response<ProxyBody>),
    Connect(String),
    Reset(String),
    /// No answer within the try's time.
    Timeout(Duration),
    /// The client's request body failed while it was sent on.
    ClientBody(String),
}

/// A failed exchange with an endpoint as an attempt: the client's when its body failed
/// on the way, a connect failure when no connection was made, else a reset.
fn failed_attempt(
    no_connection: bool,
    e: &dyn std::error::Error,
    fault: &ClientBodyFault,
) -> Attempt {
    let text = error_chain(e);
    if fault.is_set() {
        Attempt::ClientBody(text)
    } else if no_connection {
        Attempt::Connect(text)
    } else {
        Attempt::Reset(text)
    }
}

/// The answer to a request whose body the client spoiled: a 400, and nothing held
/// against the upstream.
fn client_body_error(e: &str) -> Response<ProxyBody> {
    error_response(
        StatusCode::BAD_REQUEST,
        format!("the request body from the client is malformed or cut short: {e}"),
    )
}

/// A routed request, ready to send.
struct Routed<'a> {
    side: Side,
    service: &'a Service,
    lane: Option<Arc<str>>,
    route_header: Option<&'a HeaderName>,
    target_port: Option<u16>,
    choice: Choice<'a>,
    /// Hops the request has taken before this one.
    hops: u32,
    /// The time this hop has for the request, fallback included.
    budget: Duration,
    /// This hop's span, when hops are recorded.
    span: Option<Span>,
    /// The pod whose sidecar routes it (none at the gateway).
    pod: Option<&'a Arc<str>>,
}

impl Mesh {
    /// A mesh with empty routing, recording no hops.
    pub fn new(settings: Settings, metrics: Arc<Metrics>) -> Arc<Mesh> {
        Mesh::with_hops(settings, metrics, None)
    }

    /// A mesh with empty routing that records every routed hop to `hops`, continuing
    /// and passing on each request's W3C trace.
    pub fn with_hops(
        settings: Settings,
        metrics: Arc<Metrics>,
        hops: Option<Arc<Hops>>,
    ) -> Arc<Mesh> {
        // Idle upstream connections are dropped well before a server closes them (hyper
        // closes idle keep-alive connections at its header-read timeout, Node.js after
        // 5 s): reusing one the server is closing fails a request for nothing.
        let idle = Duration::from_secs(4);
        let http1 = Http1Pool::new(PoolSettings {
            connect_timeout: settings.connect_timeout(),
            max_idle_per_endpoint: settings.pool_max_idle_per_host,
            idle_timeout: idle,
        });
        let mut h2 = Client::builder(TokioExecutor::new());
        h2.http2_only(true).pool_idle_timeout(idle);
        Arc::new(Mesh {
            routing: ArcSwap::from_pointee(Routing::default()),
            http1,
            http2: h2.build(connector(&settings)),
            settings,
            metrics,
            own: OwnListeners::default(),
            local: LocalInbound::default(),
            outliers: Outliers::default(),
            hops,
        })
    }

    /// The addresses Lanes listens on in this process (the gateway, the API, every
    /// sidecar): pass-through calls to them are refused.
    pub fn own_listeners(&self) -> &OwnListeners {
        &self.own
    }

    /// The inbound sides of this process's sidecars, which routed calls reach in
    /// memory.
    pub fn local_inbound(&self) -> &LocalInbound {
        &self.local
    }

    /// The answer to a request that has taken `hops` hops already, when it may take no
    /// more; `at` names the proxy (only called then).
    fn refuse_loop(&self, hops: u32, at: impl FnOnce() -> String) -> Option<Response<ProxyBody>> {
        guard::is_looping(hops, self.settings.max_hops).then(|| {
            error_response(
                StatusCode::LOOP_DETECTED,
                format!(
                    "{}: the request has passed {hops} proxy hops ({} at most; header {}): refused as a loop",
                    at(),
                    self.settings.max_hops,
                    guard::HOPS_HEADER
                ),
            )
        })
    }

    /// Swaps in routing built from a new route table and endpoints. Requests in flight
    /// finish on the state they started with.
    pub fn update(&self, table: &RouteTable, endpoints: &[Endpoint]) -> Result<(), RoutingError> {
        let routing = Routing::build(table, endpoints)?;
        self.routing.store(Arc::new(routing));
        Ok(())
    }

    /// The current routing state.
    pub fn routing(&self) -> Arc<Routing> {
        self.routing.load_full()
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Where hops are recorded, when they are.
    pub fn hops(&self) -> Option<&Arc<Hops>> {
        self.hops.as_ref()
    }

    /// Begins a hop's span when hops are recorded: under `parent`, passed on to the next
    /// hop in `headers`.
    fn begin_span(&self, parent: Option<SpanContext>, headers: &mut HeaderMap) -> Option<Span> {
        self.hops.as_ref()?;
        let span = Span::begin(parent);
        span.context.propagate(headers);
        Some(span)
    }

    /// Begins the first span of a trace, `trace` or a new one, when hops are recorded.
    fn begin_trace(&self, trace: Option<TraceId>, headers: &mut HeaderMap) -> Option<Span> {
        self.hops.as_ref()?;
        let span = Span::begin_trace(trace);
        span.context.propagate(headers);
        Some(span)
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Handles a request at the ingress gateway.
    pub async fn gateway(&self, mut req: Request<Incoming>) -> Response<ProxyBody> {
        let started = Instant::now();
        let hops = guard::hops(req.headers());
        if let Some(refused) = self.refuse_loop(hops, || "gateway".into()) {
            self.count(Side::Gateway, None, None, Label::default(), 508, "none");
            return refused;
        }
        let routing = self.routing();
        let host = authority(&req).unwrap_or_default();
        // A Gateway API route on a Gateway takes the request first, when one matches.
        if !routing.gateway_routes.is_empty()
            && let Some(selected) = routing
                .gateway_routes
                .select(&host, (req.method(), req.uri(), req.headers()))
        {
            return self
                .gateway_route(req, &routing, selected, &host, hops, started)
                .await;
        }
        let view = RequestView {
            method: req.method(),
            uri: req.uri(),
            authority: &host,
            headers: req.headers(),
            source_labels: None,
        };
        let Some(IngressChoice {
            group,
            lane,
            service,
            port,
            headers: edits,
        }) = routing.ingress(&view)
        else {
            let path = req.uri().path().to_string();
            self.count(Side::Gateway, None, None, Label::default(), 404, "none");
            return error_response(
                StatusCode::NOT_FOUND,
                format!("no lane ingress rule matches host {host:?} path {path:?}"),
            );
        };
        let choice = match routing.choose(service, Some(&lane)) {
            Ok(c) => c,
            Err(e) => {
                self.count(
                    Side::Gateway,
                    Some(service),
                    Some(&lane),
                    Label::default(),
                    503,
                    "none",
                );
                self.metrics
                    .record_entry(&service.namespace, &lane, true, started.elapsed());
                return error_response(StatusCode::SERVICE_UNAVAILABLE, e.message);
            }
        };
        if let Some(edits) = edits {
            edits.apply(req.headers_mut());
        }
        let span = self.entry_span(Some(group), req.headers_mut());
        let routed = Routed {
            span,
            pod: None,
            side: Side::Gateway,
            service,
            lane: Some(lane),
            route_header: Some(&group.route_header),
            target_port: service.target_port(port),
            choice,
            hops,
            budget: budget::remaining(req.headers(), self.settings.request_timeout()),
        };
        self.forward(req, routed, started).await
    }

    /// The span of a request entering the mesh at the gateway, in `group` when its
    /// backend is in one: the group's trace header is given first, when missing, and
    /// names the trace.
    fn entry_span(&self, group: Option<&Group>, headers: &mut HeaderMap) -> Option<Span> {
        let trace_header = group.and_then(|g| g.trace_header.as_ref());
        with_trace_id(headers, trace_header);
        let parent = SpanContext::from_headers(headers);
        if parent.is_some() {
            return self.begin_span(parent, headers);
        }
        let trace = trace_header
            .and_then(|h| headers.get(h)?.to_str().ok())
            .map(trace_id_of);
        self.begin_trace(trace, headers)
    }

    /// Handles a request at the gateway that a Gateway API route on a Gateway took
    /// (`selected`): the rule's filters, then its backend Service, in the lane the
    /// request's route header names (which a filter may have set), as any call.
    async fn gateway_route(
        &self,
        mut req: Request<Incoming>,
        routing: &Routing,
        selected: Selected<'_>,
        host: &str,
        hops: u32,
        started: Instant,
    ) -> Response<ProxyBody> {
        let mut response_edits = Vec::new();
        let (service, port) = match crate::mesh_routes::carry_out(
            routing,
            selected,
            host,
            &mut req,
            &mut response_edits,
        ) {
            Ok(backend) => backend,
            Err(answer) => {
                let code = answer.status().as_u16();
                self.count(Side::Gateway, None, None, Label::default(), code, "none");
                return *answer;
            }
        };
        let group = routing.group_of(service);
        let lane = group.and_then(|g| {
            let (lane, _) = routing.resolve_lane(g, req.headers(), |_| None, None)?;
            Some(lane)
        });
        let choice = match routing.choose(service, lane.as_ref()) {
            Ok(c) => c,
            Err(e) => {
                let label = Label::default();
                self.count(
                    Side::Gateway,
                    Some(service),
                    lane.as_ref(),
                    label,
                    503,
                    "none",
                );
                return error_response(StatusCode::SERVICE_UNAVAILABLE, e.message);
            }
        };
        let span = self.entry_span(group, req.headers_mut());
        let routed = Routed {
            span,
            pod: None,
            side: Side::Gateway,
            service,
            lane,
            route_header: group.map(|g| &g.route_header),
            target_port: service.target_port(Some(port)),
            choice,
            hops,
            budget: budget::remaining(req.headers(), self.settings.request_timeout()),
        };
        let mut resp = self.forward(req, routed, started).await;
        for edits in &response_edits {
            crate::mesh_routes::edit_headers(resp.headers_mut(), edits);
        }
        resp
    }

    /// Handles an application's outbound call through its sidecar.
    pub async fn outbound(&self, sidecar: &Sidecar, req: Request<Incoming>) -> Response<ProxyBody> {
        let started = Instant::now();
        let routing = self.routing();
        let Some(host) = authority(&req) else {
            return error_response(StatusCode::BAD_REQUEST, "request names no host");
        };
        let pod = &sidecar.pod;
        // The application may not pass the hop count and the budget on: the request
        // that brought its trace into the pod remembers them (one lookup for both).
        let arrived: Option<Arrival> =
            trace_values(&routing, req.headers()).find_map(|t| sidecar.arrivals.lookup(t));
        let hops = arrived
            .map_or(0, |a| a.hops)
            .max(guard::hops(req.headers()));
        if let Some(refused) = self.refuse_loop(hops, || format!("pod {} outbound", pod.name)) {
            self.count(Side::Outbound, None, None, Label::default(), 508, "none");
            return refused;
        }
        let mut budget = budget::remaining(req.headers(), self.settings.request_timeout());
        if let Some(a) = arrived {
            // What the arriving request has left, a margin less.
            let left = a.deadline.saturating_duration_since(Instant::now());
            budget = budget.min(left.saturating_sub(budget::HOP_MARGIN));
        }
        let Some(service) = routing.service_for_host(&host, &pod.namespace) else {
            if self.settings.registry_only {
                self.count(Side::Outbound, None, None, Label::default(), 502, "none");
                return error_response(
                    StatusCode::BAD_GATEWAY,
                    format!("registry-only: host {host:?} is no mesh service"),
                );
            }
            return self.passthrough(req, &host, hops, budget).await;
        };
        let port = lanes_routes::host::strip_port(&host).len();
        let mut port: Option<u16> = host.get(port + 1..).and_then(|p| p.parse().ok());
        // Gateway API routes attached to the Service pick the backend Service.
        let mut req = req;
        let mut service = service;
        let mut response_edits = Vec::new();
        if !routing.mesh.is_empty()
            && let Some(selected) = routing.mesh.select(
                &crate::routing::key(&service.name, &service.namespace),
                &service.namespace,
                &pod.namespace,
                port.unwrap_or(80),
                (req.method(), req.uri(), req.headers()),
            )
        {
            match crate::mesh_routes::carry_out(
                &routing,
                selected,
                &host,
                &mut req,
                &mut response_edits,
            ) {
                Ok((backend, backend_port)) => {
                    service = backend;
                    port = Some(backend_port);
                }
                Err(answer) => return *answer,
            }
        }
        let group = routing.group_of(service);
        let lane = group.and_then(|g| {
            routing
                .resolve_lane(
                    g,
                    req.headers(),
                    |trace| sidecar.correlation.lookup(trace),
                    Some(&pod.labels),
                )
                .map(|(lane, _)| lane)
        });
        let choice = match routing.choose(service, lane.as_ref()) {
            Ok(c) => c,
            Err(e) => {
                self.count(
                    Side::Outbound,
                    Some(service),
                    lane.as_ref(),
                    Label::default(),
                    503,
                    "none",
                );
                return error_response(StatusCode::SERVICE_UNAVAILABLE, e.message);
            }
        };
        let trace = group
            .and_then(|g| g.trace_keys(req.headers()).next())
            .map(str::to_string);
        let parent = SpanContext::from_headers(req.headers()).or(arrived.and_then(|a| a.span));
        let span = self.begin_span(parent, req.headers_mut());
        let routed = Routed {
            span,
            pod: Some(&sidecar.pod_name),
            side: Side::Outbound,
            service,
            lane,
            route_header: group.map(|g| &g.route_header),
            target_port: service.target_port(port),
            choice,
            hops,
            budget,
        };
        let mut resp = self.forward(req, routed, started).await;
        for edits in &response_edits {
            crate::mesh_routes::edit_headers(resp.headers_mut(), edits);
        }
        // Remember a fallback on this trace, so the pod's inbound side can report it
        // to the caller even though the application does not pass the header on.
        if let (Some(trace), Some(fb)) = (trace, resp.headers().get(FALLBACK_HEADER))
            && let Ok(fb) = fb.to_str()
        {
            sidecar.fallbacks.record(&trace, fb.into());
        }
        resp
    }

    /// Handles mesh traffic arriving at a pod: records the lane of its trace for the
    /// pod's own outbound calls, then hands it to the application.
    pub async fn inbound<B>(&self, sidecar: &Sidecar, mut req: Request<B>) -> Response<ProxyBody>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let started = Instant::now();
        let routing = self.routing();
        let traces: Vec<String> = trace_values(&routing, req.headers())
            .map(str::to_string)
            .collect();
        let hops = guard::hops(req.headers());
        if let Some(refused) =
            self.refuse_loop(hops, || format!("pod {} inbound", sidecar.pod.name))
        {
            return refused;
        }
        let budget = budget::remaining(req.headers(), self.settings.request_timeout());
        let deadline = Instant::now() + budget;
        let parent = SpanContext::from_headers(req.headers());
        let span = self.begin_span(parent, req.headers_mut());
        let arrival = Arrival {
            hops,
            deadline,
            span: span.map(|s| s.context),
        };
        for trace in &traces {
            sidecar.arrivals.record(trace, arrival);
        }
        let mut asked = None;
        for group in routing.groups.iter().filter(|g| g.permissive) {
            let lane = req
                .headers()
                .get(&group.route_header)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| group.lane(v.trim()));
            if let Some(lane) = lane {
                for key in group.trace_keys(req.headers()) {
                    sidecar.correlation.record(key, lane.clone());
                }
                asked.get_or_insert(lane);
            }
        }
        let pod = &sidecar.pod;
        let mut target = pod.app_address;
        if let Some(port) = req
            .headers_mut()
            .remove(TARGET_PORT_HEADER)
            .and_then(|v| v.to_str().ok().and_then(|p| p.parse::<u16>().ok()))
            && pod.ports.contains(&port)
        {
            target.set_port(port);
        }
        let addressed = addressed_service(&routing, &mut req, &pod.namespace);
        let grpc = grpc::is_grpc(req.headers());
        let (mut parts, body) = req.into_parts();
        strip_request_hop_by_hop(&mut parts);
        let uri = match upstream_uri(endpoint_authority(target), &parts.uri) {
            Ok(u) => u,
            Err(resp) => return *resp,
        };
        parts.uri = uri;
        let version = parts.version;
        let (body, fault) = watch_client_body(body);
        let req = Request::from_parts(parts, body);
        let (resp, code, flag) = match self.send(req, target, version, &fault, budget).await {
            Attempt::ClientBody(e) => (
                client_body_error(&e),
                400,
                ResponseFlag::DownstreamTermination,
            ),
            Attempt::Response(resp) => {
                let code = resp.status().as_u16();
                (finish_response(resp, None), code, ResponseFlag::None)
            }
            Attempt::Connect(e) => (
                error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "pod {}: application at {target} is not reachable: {e}",
                        pod.name
                    ),
                ),
                503,
                ResponseFlag::ConnectFailure,
            ),
            Attempt::Reset(e) => (
                error_response(
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "pod {}: application at {target} reset the request: {e}",
                        pod.name
                    ),
                ),
                502,
                ResponseFlag::Reset,
            ),
            Attempt::Timeout(took) => (
                error_response(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!(
                        "pod {}: application at {target} did not answer within {} ms",
                        pod.name,
                        took.as_millis()
                    ),
                ),
                504,
                ResponseFlag::Timeout,
            ),
        };
        if let (Some(hops), Some(span)) = (&self.hops, &span) {
            let mut hop = span.record(Side::Inbound, code);
            hop.service = addressed.map(|s| s.name.clone());
            hop.namespace = Some(addressed.map_or_else(
                || sidecar.namespace_label.0.clone(),
                |s| s.namespace.clone(),
            ));
            hop.pod = Some(sidecar.pod_name.clone());
            hop.lane = asked.cloned();
            hop.grpc_status = grpc::status(resp.headers());
            hops.push(hop);
        }
        let report = IstioReport {
            metrics: self.metrics.clone(),
            destination: sidecar.destination.clone(),
            service: addressed.map(|s| (s.name.clone(), s.namespace.clone())),
            grpc,
            code,
            flag,
            started,
        };
        let resp = report.when_done(resp);
        self.metrics
            .requests
            .get_or_create(&RequestLabels {
                role: Side::Inbound.as_str(),
                service: Label::default(),
                namespace: sidecar.namespace_label.clone(),
                lane: Label::default(),
                subset: Label::default(),
                code,
                fallback: "none",
            })
            .inc();
        let mut resp = resp;
        if !resp.headers().contains_key(FALLBACK_HEADER)
            && let Some(fb) = traces.iter().find_map(|t| sidecar.fallbacks.lookup(t))
            && let Ok(v) = HeaderValue::from_str(&fb[..])
        {
            resp.headers_mut().insert(FALLBACK_HEADER, v);
        }
        resp
    }

    /// Sends a call for a host outside the mesh straight to that host, unless the host
    /// is one of Lanes' own listeners.
    async fn passthrough(
        &self,
        req: Request<Incoming>,
        host: &str,
        hops: u32,
        budget: Duration,
    ) -> Response<ProxyBody> {
        let resp = self.pass_to_host(req, host, hops, budget).await;
        self.count(
            Side::Outbound,
            None,
            None,
            Label::default(),
            resp.status().as_u16(),
            "none",
        );
        resp
    }

    /// The answer of a host outside the mesh (or why there is none).
    async fn pass_to_host(
        &self,
        req: Request<Incoming>,
        host: &str,
        hops: u32,
        budget: Duration,
    ) -> Response<ProxyBody> {
        let target = match self.passthrough_target(host).await {
            Ok(addr) => addr,
            Err(resp) => return resp,
        };
        let (mut parts, body) = req.into_parts();
        strip_request_hop_by_hop(&mut parts);
        guard::set_next_hop(&mut parts.headers, hops);
        budget::set(&mut parts.headers, budget::for_next_hop(budget));
        if !parts.headers.contains_key(header::HOST)
            && let Ok(v) = HeaderValue::from_str(host)
        {
            parts.headers.insert(header::HOST, v);
        }
        parts.uri = match upstream_uri(endpoint_authority(target), &parts.uri) {
            Ok(u) => u,
            Err(resp) => return *resp,
        };
        let version = parts.version;
        let (body, fault) = watch_client_body(body);
        match self
            .send(
                Request::from_parts(parts, body),
                target,
                version,
                &fault,
                budget,
            )
            .await
        {
            Attempt::Response(r) => finish_response(r, None),
            Attempt::ClientBody(e) => client_body_error(&e),
            Attempt::Connect(e) | Attempt::Reset(e) => error_response(
                StatusCode::BAD_GATEWAY,
                format!("host {host:?} outside the mesh: {e}"),
            ),
            Attempt::Timeout(took) => error_response(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "host {host:?} did not answer within {} ms",
                    took.as_millis()
                ),
            ),
        }
    }

    /// Resolves a pass-through host once (the address checked is the address used) and
    /// refuses Lanes' own listeners.
    async fn passthrough_target(&self, host: &str) -> Result<SocketAddr, Response<ProxyBody>> {
        let invalid = || error_response(StatusCode::BAD_REQUEST, format!("invalid host {host:?}"));
        let authority: http::uri::Authority = host.parse().map_err(|_| invalid())?;
        let port = authority.port_u16().unwrap_or(80);
        let name = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name, port))
            .await
            .map_err(|e| {
                error_response(
                    StatusCode::BAD_GATEWAY,
                    format!("host {host:?} outside the mesh does not resolve: {e}"),
                )
            })?
            .collect();
        if addrs.iter().any(|a| self.own.contains(*a)) {
            return Err(error_response(
                StatusCode::FORBIDDEN,
                format!(
                    "host {host:?} is one of Lanes' own listeners (API, gateway or a sidecar): not reachable through a sidecar"
                ),
            ));
        }
        addrs.first().copied().ok_or_else(invalid)
    }

    /// Sends a request to the endpoint at `addr` with the request timeout, classifying
    /// failures: one that comes of the client's body failing (`fault`) is the client's.
    async fn send(
        &self,
        mut req: Request<ProxyBody>,
        addr: SocketAddr,
        version: Version,
        fault: &ClientBodyFault,
        limit: Duration,
    ) -> Attempt {
        let sent = async {
            if version == Version::HTTP_2 {
                match self.http2.request(req).await {
                    Ok(resp) => Attempt::Response(resp.map(boxed::<Incoming>)),
                    Err(e) => failed_attempt(e.is_connect(), &e, fault),
                }
            } else {
                let client_upgrade = req.extensions_mut().remove::<OnUpgrade>();
                let hold = req.extensions_mut().remove::<ConnectionHold>();
                match self.http1.send(addr, http1_request(req)).await {
                    Ok(mut resp) => {
                        if let Some(client) = client_upgrade
                            && upgrade::is_switching(resp.status())
                        {
                            let upstream = hyper::upgrade::on(&mut resp);
                            upgrade::spawn_tunnel(
                                client,
                                upstream,
                                self.settings.tunnel_limits(),
                                hold,
                            );
                        }
                        Attempt::Response(resp)
                    }
                    Err(e) => failed_attempt(e.is_connect(), &e, fault),
                }
            }
        };
        tokio::time::timeout(limit, sent)
            .await
            .unwrap_or(Attempt::Timeout(limit))
    }

    /// Sends a routed request to `addr`: in memory when a sidecar of this process
    /// listens there (as it would arrive off the wire: HTTP/1.1 unless HTTP/2, the
    /// target in origin form), else over the wire.
    async fn send_routed(
        &self,
        mut req: Request<ProxyBody>,
        addr: SocketAddr,
        version: Version,
        fault: &ClientBodyFault,
        limit: Duration,
    ) -> Attempt {
        let Some(sidecar) = self.local.get(addr) else {
            return self.send(req, addr, version, fault, limit).await;
        };
        if version != Version::HTTP_2 {
            *req.version_mut() = Version::HTTP_11;
            *req.uri_mut() = origin_form(req.uri());
        }
        match tokio::time::timeout(limit, self.inbound(&sidecar, req)).await {
            Err(_) => Attempt::Timeout(limit),
            Ok(_) if fault.is_set() => {
                Attempt::ClientBody("the request body failed as it was sent on".into())
            }
            Ok(resp) => Attempt::Response(resp),
        }
    }

    /// Sends a routed request, retrying once on the fallback subset when the first
    /// attempt fails and the body can be replayed.
    async fn forward(
        &self,
        req: Request<Incoming>,
        routed: Routed<'_>,
        started: Instant,
    ) -> Response<ProxyBody> {
        let (mut parts, body) = req.into_parts();
        strip_request_hop_by_hop(&mut parts);
        guard::set_next_hop(&mut parts.headers, routed.hops);
        if let (Some(h), Some(lane)) = (routed.route_header, &routed.lane)
            && let Ok(v) = HeaderValue::from_str(lane)
        {
            parts.headers.insert(h.clone(), v);
        }
        if let Some(port) = routed.target_port {
            parts
                .headers
                .insert(TARGET_PORT_HEADER, HeaderValue::from(port));
        }
        if let Some(v) = &routed.service.routed_as {
            parts.headers.insert(SERVICE_HEADER, v.clone());
        }
        if parts.headers.get(header::HOST).is_none()
            && let Some(a) = parts.uri.authority()
            && let Ok(v) = HeaderValue::from_str(a.as_str())
        {
            parts.headers.insert(header::HOST, v);
        }
        let version = parts.version;
        let retry = routed.choice.retry;
        let (body, fault) = watch_client_body(body);
        let mut body = if retry.is_some() {
            match prepare(body, self.settings.max_replay_body_bytes).await {
                Ok(p) => p,
                Err(e) => {
                    return error_response(
                        StatusCode::BAD_REQUEST,
                        format!("could not read the request body: {e}"),
                    );
                }
            }
        } else {
            Prepared::Streaming(body)
        };

        let mut subset = routed.choice.primary;
        let mut fell_back = routed.choice.fell_back.clone();
        let mut tried_retry = false;
        loop {
            let now = Instant::now();
            let Some(picked) = subset.pick_healthy(|a| self.outliers.is_ejected(a, now)) else {
                return error_response(StatusCode::SERVICE_UNAVAILABLE, "no endpoint");
            };
            let addr = picked.addr;
            let uri = match upstream_uri(picked.authority.cloned(), &parts.uri) {
                Ok(u) => u,
                Err(resp) => return *resp,
            };
            let fallback_may_follow_body = body.replayable();
            let mut req = Request::new(body.take());
            // The client's side of an upgrade goes along to the hop that switches.
            if let Some(client) = parts.extensions.get::<OnUpgrade>() {
                req.extensions_mut().insert(client.clone());
                if let Some(hold) = parts.extensions.get::<ConnectionHold>() {
                    req.extensions_mut().insert(hold.clone());
                }
            }
            *req.method_mut() = parts.method.clone();
            *req.uri_mut() = uri;
            *req.version_mut() = version;
            // The headers are copied only while a retry may still need them.
            *req.headers_mut() = if retry.is_some() && !tried_retry {
                parts.headers.clone()
            } else {
                std::mem::take(&mut parts.headers)
            };
            let fallback_may_follow = retry.is_some() && !tried_retry && fallback_may_follow_body;
            let this_try = budget::per_try(
                routed.budget.saturating_sub(started.elapsed()),
                fallback_may_follow,
            );
            budget::set(req.headers_mut(), budget::for_next_hop(this_try));
            // One clock read for the pick above and the attempt's own latency.
            let attempt_started = now;
            let attempt = self.send_routed(req, addr, version, &fault, this_try).await;
            let outcome = match &attempt {
                Attempt::Response(r)
                    if r.status().is_server_error() || grpc::is_failed_call(r.headers()) =>
                {
                    AttemptOutcome::Failure
                }
                Attempt::Response(_) => AttemptOutcome::Success,
                Attempt::ClientBody(_) => AttemptOutcome::ClientError,
                _ => AttemptOutcome::Failure,
            };
            let answered = match &attempt {
                Attempt::Response(r) => Some(Some(r.status().as_u16())),
                Attempt::ClientBody(_) => None,
                _ => Some(None),
            };
            if let Some(status) = answered
                && self
                    .outliers
                    .record(addr, is_gateway_failure(status), Instant::now())
            {
                tracing::warn!(service = %routed.service.name, subset = %subset.lane, %addr,
                    "endpoint ejected after {} failures in a row", crate::outlier::CONSECUTIVE_FAILURES);
            }
            subset.series.record_attempt(
                &self.metrics,
                subset_key(routed.service, subset),
                outcome,
                attempt_started.elapsed(),
            );
            let can_retry = !tried_retry && retry.is_some() && body.replayable();
            let failure = match &attempt {
                Attempt::Response(r)
                    if self
                        .settings
                        .fallback_on_status
                        .contains(&r.status().as_u16())
                        && retry.is_some()
                        && !tried_retry =>
                {
                    Some(FallbackReason::UpstreamStatus)
                }
                Attempt::Response(r)
                    if grpc::is_unavailable(r.headers()) && retry.is_some() && !tried_retry =>
                {
                    Some(FallbackReason::GrpcUnavailable)
                }
                Attempt::Connect(_) if retry.is_some() && !tried_retry => {
                    Some(FallbackReason::ConnectError)
                }
                Attempt::Reset(_) if retry.is_some() && !tried_retry => Some(FallbackReason::Reset),
                Attempt::Timeout(_) if retry.is_some() && !tried_retry => {
                    Some(FallbackReason::Timeout)
                }
                _ => None,
            };
            if let (Some(reason), true, Some(next)) = (failure, can_retry, retry) {
                fell_back = Some((subset.lane.clone(), reason));
                subset = next;
                tried_retry = true;
                continue;
            }
            let no_retry = failure.is_some() && !body.replayable();
            let fallback = fell_back
                .as_ref()
                .map(|(from, reason)| (from.clone(), subset.lane.clone(), *reason));
            let resp = match attempt {
                Attempt::Response(r) => {
                    finish_response(r, fallback.as_ref().map(|(f, t, _)| (&**f, &**t)))
                }
                Attempt::ClientBody(e) => client_body_error(&e),
                Attempt::Connect(e) => error_response(
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "upstream connect error: service {}.{} subset {:?} at {addr}: {e}",
                        routed.service.name, routed.service.namespace, &*subset.lane
                    ),
                ),
                Attempt::Reset(e) => error_response(
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "upstream reset before response headers: service {}.{} subset {:?} at {addr}: {e}",
                        routed.service.name, routed.service.namespace, &*subset.lane
                    ),
                ),
                Attempt::Timeout(took) => error_response(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!(
                        "upstream request timeout: service {}.{} subset {:?} at {addr} did not answer within {} ms",
                        routed.service.name,
                        routed.service.namespace,
                        &*subset.lane,
                        took.as_millis()
                    ),
                ),
            };
            let mut resp = resp;
            if no_retry {
                resp.headers_mut().insert(
                    NO_RETRY_HEADER,
                    HeaderValue::from_str(&format!(
                        "request body larger than {} bytes is not replayed on the fallback lane",
                        self.settings.max_replay_body_bytes
                    ))
                    .unwrap_or(HeaderValue::from_static("request body too large to replay")),
                );
            }
            self.record(&routed, subset, &resp, fallback.as_ref(), started);
            return resp;
        }
    }

    fn record(
        &self,
        routed: &Routed<'_>,
        subset: &Subset,
        resp: &Response<ProxyBody>,
        fallback: Option<&(Arc<str>, Arc<str>, FallbackReason)>,
        started: Instant,
    ) {
        let reason = fallback.map_or("none", |f| f.2.as_str());
        self.count(
            routed.side,
            Some(routed.service),
            routed.lane.as_ref(),
            (&subset.lane).into(),
            resp.status().as_u16(),
            reason,
        );
        subset.series.observe_latency(
            &self.metrics,
            subset_key(routed.service, subset),
            started.elapsed(),
        );
        let cell_lane = routed.lane.as_ref().unwrap_or(&subset.lane);
        self.metrics.record_cell(
            &routed.service.name,
            &routed.service.namespace,
            cell_lane,
            is_failed_answer(resp),
            started.elapsed(),
        );
        if let Some(lane) = &routed.lane {
            let namespace = &routed.service.namespace;
            if routed.side == Side::Gateway {
                let failed = is_failed_answer(resp);
                self.metrics
                    .record_entry(namespace, lane, failed, started.elapsed());
            }
            if fallback.is_some_and(|f| f.2.is_failure()) {
                self.metrics.record_hidden_failure(namespace, lane);
            }
        }
        if let (Some(hops), Some(span)) = (&self.hops, &routed.span) {
            let mut hop = span.record(routed.side, resp.status().as_u16());
            hop.service = Some(routed.service.name.clone());
            hop.namespace = Some(routed.service.namespace.clone());
            hop.pod = routed.pod.cloned();
            hop.lane = routed.lane.clone();
            hop.subset = Some(subset.lane.clone());
            hop.fallback = fallback.map(|(from, to, reason)| {
                Box::new(HopFallback {
                    from: from.clone(),
                    to: to.clone(),
                    reason: reason.as_str().into(),
                })
            });
            hop.grpc_status = grpc::status(resp.headers());
            hops.push(hop);
        }
        if let Some((from, to, reason)) = fallback {
            self.metrics
                .fallbacks
                .get_or_create(&FallbackLabels {
                    service: (&routed.service.name).into(),
                    reason: reason.as_str(),
                    from: from.into(),
                    to: to.into(),
                })
                .inc();
        }
    }

    fn count(
        &self,
        side: Side,
        service: Option<&Service>,
        lane: Option<&Arc<str>>,
        subset: Label,
        code: u16,
        fallback: &'static str,
    ) {
        self.metrics
            .requests
            .get_or_create(&RequestLabels {
                role: side.as_str(),
                service: service.map(|s| (&s.name).into()).unwrap_or_default(),
                namespace: service.map(|s| (&s.namespace).into()).unwrap_or_default(),
                lane: lane.map(Label::from).unwrap_or_default(),
                subset: subset.clone(),
                code,
                fallback,
            })
            .inc();
    }
}

/// Whether the answer a client gets is a failure: a 5xx, or a failed gRPC call.
fn is_failed_answer(resp: &Response<ProxyBody>) -> bool {
    resp.status().is_server_error() || grpc::is_failed_call(resp.headers())
}

/// The labels of `subset`'s series, a subset of `service`.
fn subset_key<'a>(service: &'a Service, subset: &'a Subset) -> SubsetKey<'a> {
    SubsetKey {
        service: &service.name,
        namespace: &service.namespace,
        subset: &subset.lane,
    }
}

/// Gives a request entering the mesh its lane group's trace header when it has none: a
/// random id (as Envoy does for `x-request-id`), so the lane can be found again by trace
/// at a baseline hop although the client sent no id.
fn with_trace_id(headers: &mut HeaderMap, trace_header: Option<&HeaderName>) {
    if let Some(h) = trace_header
        && !headers.contains_key(h)
    {
        // Random from a fast per-thread generator, as span ids are: an id, not a secret.
        let id = uuid::Builder::from_random_bytes(fastrand::u128(..).to_ne_bytes()).into_uuid();
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let text = id.hyphenated().encode_lower(&mut text);
        if let Ok(v) = HeaderValue::from_str(text) {
            headers.insert(h.clone(), v);
        }
    }
}

/// The values of every lane group's trace header a request carries, then the trace id
/// of its W3C `traceparent` unless one of those names the same trace.
fn trace_values<'h>(routing: &'h Routing, headers: &'h HeaderMap) -> impl Iterator<Item = &'h str> {
    let own = routing
        .groups
        .iter()
        .filter_map(|g| g.trace_header.as_ref())
        .filter_map(|h| headers.get(h))
        .filter_map(|v| v.to_str().ok());
    // Read only when the caller goes past the trace headers (a lookup that found its
    // entry by one does not).
    let others = own.clone();
    let w3c = std::iter::once_with(move || {
        traceparent_id(headers).filter(|id| !others.clone().any(|o| same_trace(o, id)))
    });
    own.chain(w3c.flatten())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        let msg = inner.to_string();
        if !s.contains(&msg) {
            s.push_str(": ");
            s.push_str(&msg);
        }
        cur = inner.source();
    }
    s
}

/// The absolute URI of a request sent on to the endpoint `authority` names: the request's
/// path and query (shared, not copied), at that `ip:port`.
fn upstream_uri(
    authority: Option<uri::Authority>,
    uri: &Uri,
) -> Result<Uri, Box<Response<ProxyBody>>> {
    let mut parts = uri::Parts::default();
    parts.scheme = Some(uri::Scheme::HTTP);
    parts.authority = authority;
    parts.path_and_query = Some(
        uri.path_and_query()
            .cloned()
            .unwrap_or_else(|| uri::PathAndQuery::from_static("/")),
    );
    Uri::from_parts(parts).map_err(|_| {
        Box::new(error_response(
            StatusCode::BAD_REQUEST,
            "invalid request target",
        ))
    })
}

/// `req` as it goes over an HTTP/1.1 connection to its endpoint: HTTP/1.1, the target in
/// origin form, a Host header (the endpoint's authority when the client sent none).
fn http1_request(mut req: Request<ProxyBody>) -> Request<ProxyBody> {
    *req.version_mut() = Version::HTTP_11;
    if !req.headers().contains_key(header::HOST)
        && let Some(a) = req.uri().authority()
        && let Ok(v) = HeaderValue::from_str(a.as_str())
    {
        req.headers_mut().insert(header::HOST, v);
    }
    *req.uri_mut() = origin_form(req.uri());
    req
}

/// A request target as an HTTP/1.1 client sends it: the path and query alone.
fn origin_form(uri: &Uri) -> Uri {
    uri.path_and_query()
        .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()))
}

fn finish_response(
    resp: Response<ProxyBody>,
    fallback: Option<(&str, &str)>,
) -> Response<ProxyBody> {
    let (mut parts, body) = resp.into_parts();
    let switched_to = upgrade::is_switching(parts.status)
        .then(|| parts.headers.get(header::UPGRADE).cloned())
        .flatten();
    strip_hop_by_hop(&mut parts.headers);
    if let Some(p) = switched_to {
        upgrade::restore(&mut parts.headers, p);
    }
    if let Some((from, to)) = fallback
        && let Ok(v) = HeaderValue::from_str(&format!("{from}->{to}"))
    {
        parts.headers.insert(FALLBACK_HEADER, v);
    }
    Response::from_parts(parts, body)
}

/// What a sidecar remembers of a request that came into its pod: how many hops it had
/// taken and when its time runs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    /// Hops before the pod.
    pub hops: u32,
    /// When its budget runs out.
    pub deadline: Instant,
    /// The span of its inbound hop, when hops are recorded: the parent of the pod's
    /// outbound calls of the same trace that carry no `traceparent`.
    pub span: Option<SpanContext>,
}

/// A sidecar: the pod it serves and its correlation tables.
#[derive(Debug)]
pub struct Sidecar {
    /// The pod.
    pub pod: PodIdentity,
    /// Trace → lane, recorded inbound, read outbound.
    pub correlation: CorrelationTable,
    /// Trace → `from->to` of a fallback on one of the pod's outbound calls, reported on
    /// the inbound response of the same trace.
    pub fallbacks: CorrelationTable,
    /// Trace → the hops and deadline of the request that brought it into the pod, so
    /// the pod's outbound calls count on from there even when the application drops
    /// `x-lanes-hops` and `x-lanes-budget-ms`.
    pub arrivals: CorrelationTable<Arrival>,
    /// The pod's namespace as a metric label.
    pub namespace_label: Label,
    /// The pod as Istio's destination labels name it.
    pub destination: Destination,
    /// The pod's name, shared by its hop records.
    pub pod_name: Arc<str>,
    /// The pod's series of the correlation metrics, removed with the sidecar so pod
    /// churn does not grow the registry.
    series: (PodLabels, PodSeries),
}

/// The mesh Service a request arriving at a pod was addressed to: the one the calling
/// proxy routed it to, else the one its authority or `Host` names. Only Services the
/// route table knows are named, so no request can make up metric labels.
fn addressed_service<'r, B>(
    routing: &'r Routing,
    req: &mut Request<B>,
    namespace: &str,
) -> Option<&'r Service> {
    let routed = req.headers_mut().remove(SERVICE_HEADER);
    if let Some(s) = routed
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .and_then(|k| routing.service(k))
    {
        return Some(s);
    }
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers().get(header::HOST)?.to_str().ok())?;
    routing.service_for_host(host, namespace)
}

/// What the Istio series of one request a pod served need, kept until its outcome is
/// known: at once for plain HTTP, at the trailers for a gRPC call that streams.
struct IstioReport {
    metrics: Arc<Metrics>,
    destination: Destination,
    service: Option<(Arc<str>, Arc<str>)>,
    grpc: bool,
    code: u16,
    flag: ResponseFlag,
    started: Instant,
}

impl IstioReport {
    /// Reports now when the answer's head says how it ended, else when its body ends.
    fn when_done(self, resp: Response<ProxyBody>) -> Response<ProxyBody> {
        let in_head = grpc::status(resp.headers());
        if !self.grpc || in_head.is_some() || self.flag != ResponseFlag::None {
            self.record(in_head);
            return resp;
        }
        resp.map(|body| {
            boxed(grpc::Outcome::new(body, move |ended| {
                self.record(match ended {
                    grpc::Ended::Trailers(s) => s,
                    grpc::Ended::Cut => None,
                });
            }))
        })
    }

    fn record(&self, grpc_status: Option<u32>) {
        self.metrics.istio.record(
            &self.destination,
            &Served {
                service: self.service.as_ref().map(|(n, ns)| (&**n, &**ns)),
                grpc: self.grpc,
                code: self.code,
                grpc_status,
                flag: self.flag,
            },
            self.started.elapsed().as_secs_f64() * 1000.0,
        );
    }
}

/// Handles on the per-pod metric families.
#[derive(Debug)]
struct PodSeries {
    entries: prometheus_client::metrics::family::Family<
        PodLabels,
        prometheus_client::metrics::gauge::Gauge,
    >,
    evictions: prometheus_client::metrics::family::Family<
        PodLabels,
        prometheus_client::metrics::counter::Counter,
    >,
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let (labels, families) = &self.series;
        families.entries.remove(labels);
        families.evictions.remove(labels);
    }
}

impl Sidecar {
    /// A sidecar for `pod`, reporting its correlation table into `metrics`.
    pub fn new(pod: PodIdentity, settings: &Settings, metrics: &Metrics) -> Sidecar {
        let labels = PodLabels {
            pod: pod.name.clone(),
            namespace: pod.namespace.clone(),
        };
        let correlation = CorrelationTable::with_metrics(
            settings.correlation_capacity,
            settings.correlation_ttl(),
            metrics.correlation_entries.get_or_create_owned(&labels),
            metrics.correlation_evictions.get_or_create_owned(&labels),
        );
        let fallbacks = CorrelationTable::new(
            (settings.correlation_capacity / 10).max(1_000),
            settings.correlation_ttl(),
        );
        let arrivals = CorrelationTable::new(
            (settings.correlation_capacity / 10).max(1_000),
            settings.correlation_ttl(),
        );
        Sidecar {
            namespace_label: pod.namespace.as_str().into(),
            destination: Destination::new(pod.workload(), &pod.namespace, &pod.labels),
            pod_name: pod.name.as_str().into(),
            pod,
            correlation,
            fallbacks,
            arrivals,
            series: (
                labels,
                PodSeries {
                    entries: metrics.correlation_entries.clone(),
                    evictions: metrics.correlation_evictions.clone(),
                },
            ),
        }
    }

    /// The pod's labels.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.pod.labels
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v)))
            .collect()
    }

    #[test]
    fn a_request_without_its_groups_trace_header_gets_a_random_one_and_keeps_its_own() {
        let h = HeaderName::from_static("my-request-id");
        let mut none = HeaderMap::new();
        with_trace_id(&mut none, Some(&h));
        let mut other = HeaderMap::new();
        with_trace_id(&mut other, Some(&h));
        let (a, b) = (&none[&h], &other[&h]);
        assert_eq!(a.len(), 36, "{a:?}");
        assert!(uuid::Uuid::parse_str(a.to_str().unwrap()).is_ok(), "{a:?}");
        assert_ne!(a, b, "each request its own id");
        let mut own = headers(&[("my-request-id", "client-1")]);
        with_trace_id(&mut own, Some(&h));
        assert_eq!(own[&h], "client-1");
        let mut no_group_header = HeaderMap::new();
        with_trace_id(&mut no_group_header, None);
        assert!(no_group_header.is_empty());
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_stripped_and_no_other() {
        let mut h = headers(&[
            ("host", "svc"),
            ("connection", "x-private, keep-alive"),
            ("keep-alive", "timeout=5"),
            ("x-private", "1"),
            ("te", "gzip"),
            ("proxy-connection", "keep-alive"),
            ("x-request-id", "r1"),
        ]);
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["host", "x-request-id"]);
        // gRPC's `te: trailers` is the one TE passed on.
        let mut h = headers(&[("te", "trailers"), ("connection", "te")]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h, headers(&[("te", "trailers")]));

        let plain = headers(&[("host", "svc"), ("x-lane", "canary")]);
        let mut h = plain.clone();
        strip_hop_by_hop(&mut h);
        assert_eq!(h, plain);
    }

    #[test]
    fn the_upstream_uri_keeps_path_and_query_and_names_the_endpoint() {
        let addr = SocketAddr::from(([127, 0, 0, 7], 8080));
        let uri: Uri = "http://svc.default:8000/a/b?x=1&y=%20".parse().unwrap();
        let up = upstream_uri(endpoint_authority(addr), &uri).unwrap();
        assert_eq!(up.to_string(), "http://127.0.0.7:8080/a/b?x=1&y=%20");
        let up = upstream_uri(endpoint_authority(addr), &Uri::from_static("/only/path")).unwrap();
        assert_eq!(up.to_string(), "http://127.0.0.7:8080/only/path");
        let v6 = SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], 9));
        let up = upstream_uri(endpoint_authority(v6), &Uri::from_static("svc:8000")).unwrap();
        assert_eq!(up.to_string(), "http://[::1]:9/");
        // Without an authority there is no absolute URI to send: refused, not guessed.
        let refused = upstream_uri(None, &uri).unwrap_err();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn a_dropped_sidecar_takes_its_series_with_it() {
        let metrics = Metrics::new();
        let pod = PodIdentity {
            name: "p1".into(),
            namespace: "default".into(),
            labels: BTreeMap::new(),
            app_address: SocketAddr::from(([127, 0, 0, 1], 9)),
            ports: vec![9],
            workload: None,
        };
        let sidecar = Sidecar::new(pod, &Settings::default(), &metrics);
        sidecar.correlation.record("t", "canary".into());
        assert!(
            metrics
                .encode()
                .contains("lanes_correlation_entries{pod=\"p1\"")
        );
        drop(sidecar);
        assert!(!metrics.encode().contains("pod=\"p1\""));
    }
}
