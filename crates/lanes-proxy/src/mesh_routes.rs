//! Gateway API mesh routes (GAMMA) in the data plane: an HTTPRoute whose parent is a
//! Service decides, for a call to that Service, which rule applies (by the Gateway API's
//! precedence among every match of every route attached), what its filters do, and
//! which backend Service takes the request, by weight. The lane is chosen afterwards,
//! within the backend, as for any call.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use lanes_routes::gateway::{
    HeaderModifier, HttpRouteSpec, MeshRoute, PathMatchType, PathModifier, PathModifierType,
    RequestRedirect, RouteFilter, RouteMatch, UrlRewrite, ValueMatchType, backend_permitted,
};
use regex::Regex;

use crate::body::{ProxyBody, full};
use crate::proxy::error_response;
use crate::routing::{Routing, Service, key};

/// A path condition.
#[derive(Debug, Clone)]
enum PathCond {
    Exact(String),
    /// Whole segments: `/v2` matches `/v2` and `/v2/x`, not `/v2x`.
    Prefix(String),
    Regex(Regex),
}

/// A header or query-parameter condition.
#[derive(Debug, Clone)]
enum ValueCond {
    Exact(String),
    Regex(Regex),
}

impl ValueCond {
    fn holds(&self, v: &str) -> bool {
        match self {
            ValueCond::Exact(e) => v == e,
            ValueCond::Regex(r) => r.is_match(v),
        }
    }
}

/// One match of a rule, compiled.
#[derive(Debug, Clone)]
pub(crate) struct Cond {
    path: PathCond,
    headers: Vec<(HeaderName, ValueCond)>,
    query: Vec<(String, ValueCond)>,
    method: Option<Method>,
}

/// What a rule's or a backend's filters do.
#[derive(Debug, Default, Clone)]
pub struct Filters {
    /// Request header edits.
    pub request: Option<HeaderModifier>,
    /// Response header edits.
    pub response: Option<HeaderModifier>,
    /// Answer with a redirect.
    pub redirect: Option<RequestRedirect>,
    /// Rewrite the host or path.
    pub rewrite: Option<UrlRewrite>,
}

impl Filters {
    fn of(filters: &[RouteFilter]) -> Filters {
        let mut out = Filters::default();
        for f in filters {
            out.request = out.request.or_else(|| f.request_header_modifier.clone());
            out.response = out.response.or_else(|| f.response_header_modifier.clone());
            out.redirect = out.redirect.or_else(|| f.request_redirect.clone());
            out.rewrite = out.rewrite.or_else(|| f.url_rewrite.clone());
        }
        out
    }
}

/// A backend of a rule: a Service (by key) at a port.
#[derive(Debug)]
pub struct Backend {
    /// The Service, `name.namespace`.
    pub service: String,
    /// Whether the route may reference it ([`backend_permitted`]); one it may not gets
    /// nothing (calls that pick it are answered 500).
    pub permitted: bool,
    /// The service port.
    pub port: u16,
    weight: u32,
    /// Filters for requests sent to this backend.
    pub filters: Filters,
}

/// A rule of a mesh route, compiled.
#[derive(Debug)]
pub struct Rule {
    /// The rule's filters.
    pub filters: Filters,
    backends: Vec<Backend>,
}

impl Rule {
    /// A backend by weight; `None` when every weight is 0 (the request gets a 500).
    pub fn pick(&self) -> Option<&Backend> {
        let total: u32 = self.backends.iter().map(|b| b.weight).sum();
        if total == 0 {
            return None;
        }
        let mut at = fastrand::u32(0..total);
        self.backends.iter().find(|b| {
            if at < b.weight {
                true
            } else {
                at -= b.weight;
                false
            }
        })
    }
}

/// One match of one rule of one route, attached to one Service.
#[derive(Debug)]
struct Entry {
    route_ns: Arc<str>,
    port: Option<u16>,
    cond: Cond,
    rule: Arc<Rule>,
}

/// The mesh routes, by the Service they attach to, each Service's matches in precedence
/// order.
#[derive(Debug, Default)]
pub struct MeshRules {
    by_service: HashMap<String, Vec<Entry>>,
}

/// What the mesh routes say of a call.
#[derive(Debug)]
pub enum Selected<'a> {
    /// Routes attach to the Service but none matches: 404.
    NoMatch,
    /// This rule applies; `prefix` is the path prefix it matched, for a prefix rewrite.
    Rule {
        /// The rule.
        rule: &'a Rule,
        /// The matched `PathPrefix` value.
        prefix: Option<&'a str>,
    },
}

/// The precedence of a match: exact paths, then longer prefixes, then regular
/// expressions; then a method; then more headers; then more query parameters; then the
/// older route, and the earlier rule.
pub(crate) type Rank = (
    u8,
    Reverse<usize>,
    bool,
    Reverse<usize>,
    Reverse<usize>,
    usize,
    usize,
);

fn compile(m: &RouteMatch) -> Option<Cond> {
    let path = match &m.path {
        None => PathCond::Prefix("/".into()),
        Some(p) => match p.kind {
            PathMatchType::Exact => PathCond::Exact(p.value.clone()),
            PathMatchType::PathPrefix => PathCond::Prefix(p.value.clone()),
            PathMatchType::RegularExpression => {
                PathCond::Regex(Regex::new(&format!("^(?:{})$", p.value)).ok()?)
            }
        },
    };
    let value = |kind: ValueMatchType, v: &str| -> Option<ValueCond> {
        Some(match kind {
            ValueMatchType::Exact => ValueCond::Exact(v.to_string()),
            ValueMatchType::RegularExpression => {
                ValueCond::Regex(Regex::new(&format!("^(?:{v})$")).ok()?)
            }
        })
    };
    Some(Cond {
        path,
        headers: m
            .headers
            .iter()
            .map(|h| {
                let name = HeaderName::from_bytes(h.name.to_ascii_lowercase().as_bytes()).ok()?;
                Some((name, value(h.kind, &h.value)?))
            })
            .collect::<Option<_>>()?,
        query: m
            .query_params
            .iter()
            .map(|q| Some((q.name.clone(), value(q.kind, &q.value)?)))
            .collect::<Option<_>>()?,
        method: m.method.as_deref().and_then(|x| x.parse().ok()),
    })
}

pub(crate) fn rank(c: &Cond, route: usize, rule: usize) -> Rank {
    let (class, len) = match &c.path {
        PathCond::Exact(p) => (0, p.len()),
        PathCond::Prefix(p) => (1, p.len()),
        PathCond::Regex(_) => (2, 0),
    };
    (
        class,
        Reverse(len),
        c.method.is_none(),
        Reverse(c.headers.len()),
        Reverse(c.query.len()),
        route,
        rule,
    )
}

/// Whether `path` starts with `prefix` in whole segments.
fn segment_prefix(path: &str, prefix: &str) -> bool {
    let p = prefix.trim_end_matches('/');
    p.is_empty()
        || (path.starts_with(p) && (path.len() == p.len() || path[p.len()..].starts_with('/')))
}

impl Cond {
    /// The rule this match selects, with the prefix it matched (for a prefix rewrite).
    pub(crate) fn selects<'a>(&'a self, rule: &'a Rule) -> Selected<'a> {
        Selected::Rule {
            rule,
            prefix: match &self.path {
                PathCond::Prefix(p) => Some(p.as_str()),
                _ => None,
            },
        }
    }

    pub(crate) fn holds(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> bool {
        let path = uri.path();
        let path_ok = match &self.path {
            PathCond::Exact(p) => path == p,
            PathCond::Prefix(p) => segment_prefix(path, p),
            PathCond::Regex(r) => r.is_match(path),
        };
        path_ok
            && self.method.as_ref().is_none_or(|m| m == method)
            && self.headers.iter().all(|(n, c)| {
                headers
                    .get_all(n)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .any(|v| c.holds(v))
            })
            && self.query.iter().all(|(n, c)| {
                let query = uri.query().unwrap_or_default();
                // The first value of the parameter is the one matched.
                query
                    .split('&')
                    .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
                    .find(|(k, _)| k == n)
                    .is_some_and(|(_, v)| c.holds(v))
            })
    }
}

/// The rules of a route in `route_ns`, compiled: each with its index and its matches
/// (a rule without matches has the one that takes every request). A match that cannot
/// compile (admission checked them; only a regular expression Rust's engine refuses)
/// is `None`, and matches nothing.
pub(crate) fn compiled_rules(
    spec: &HttpRouteSpec,
    route_ns: &str,
) -> Vec<(usize, Arc<Rule>, Vec<Option<Cond>>)> {
    spec.rules
        .iter()
        .enumerate()
        .map(|(ui, r)| {
            let rule = Arc::new(Rule {
                filters: Filters::of(&r.filters),
                backends: r
                    .backend_refs
                    .iter()
                    .map(|b| Backend {
                        service: key(&b.name, b.namespace.as_deref().unwrap_or(route_ns)),
                        permitted: backend_permitted(
                            route_ns,
                            &spec.parent_refs,
                            b.namespace.as_deref().unwrap_or(route_ns),
                            &b.name,
                        ),
                        port: b.port.unwrap_or(80),
                        weight: b.weight.unwrap_or(1),
                        filters: Filters::of(&b.filters),
                    })
                    .collect(),
            });
            let conds = if r.matches.is_empty() {
                vec![compile(&RouteMatch::default())]
            } else {
                r.matches.iter().map(compile).collect()
            };
            (ui, rule, conds)
        })
        .collect()
}

impl MeshRules {
    /// Compiles the table's mesh routes. A match that cannot compile (admission checked
    /// them; only a regular expression Rust's engine refuses) matches nothing.
    pub fn build(routes: &[MeshRoute]) -> MeshRules {
        let mut ranked: HashMap<String, Vec<(Rank, Entry)>> = HashMap::new();
        for (ri, route) in routes.iter().enumerate() {
            let route_ns: Arc<str> = route.namespace.as_str().into();
            for (ui, rule, conds) in compiled_rules(&route.spec, &route.namespace) {
                for parent in route.spec.parent_refs.iter().filter(|p| {
                    p.group.as_deref() == Some("") && p.kind.as_deref() == Some("Service")
                }) {
                    let svc = key(
                        &parent.name,
                        parent.namespace.as_deref().unwrap_or(&route.namespace),
                    );
                    for cond in &conds {
                        let Some(cond) = cond.clone() else { continue };
                        let entry = Entry {
                            route_ns: route_ns.clone(),
                            port: parent.port,
                            rule: rule.clone(),
                            cond,
                        };
                        ranked
                            .entry(svc.clone())
                            .or_default()
                            .push((rank(&entry.cond, ri, ui), entry));
                    }
                }
            }
        }
        let by_service = ranked
            .into_iter()
            .map(|(k, mut v)| {
                v.sort_by_key(|a| a.0);
                (k, v.into_iter().map(|(_, e)| e).collect())
            })
            .collect();
        MeshRules { by_service }
    }

    /// Whether no route attaches to any Service (the call path then skips them).
    pub fn is_empty(&self) -> bool {
        self.by_service.is_empty()
    }

    /// What the routes attached to Service `service` (in `service_ns`) say of a call
    /// from a pod in `caller_ns` to its `port`: `None` when none attach. A consumer
    /// route (in the caller's namespace) takes the place of the Service's own routes.
    pub fn select(
        &self,
        service: &str,
        service_ns: &str,
        caller_ns: &str,
        port: u16,
        (method, uri, headers): (&Method, &Uri, &HeaderMap),
    ) -> Option<Selected<'_>> {
        let entries = self.by_service.get(service)?;
        let at_port = |e: &&Entry| e.port.is_none_or(|p| p == port);
        let consumer = caller_ns != service_ns
            && entries
                .iter()
                .filter(at_port)
                .any(|e| &*e.route_ns == caller_ns);
        let ns = if consumer { caller_ns } else { service_ns };
        let mut applicable = entries
            .iter()
            .filter(at_port)
            .filter(|e| &*e.route_ns == ns)
            .peekable();
        applicable.peek()?;
        Some(
            match applicable.find(|e| e.cond.holds(method, uri, headers)) {
                None => Selected::NoMatch,
                Some(e) => e.cond.selects(&e.rule),
            },
        )
    }
}

/// Applies header edits: set replaces, add appends, remove drops.
pub fn edit_headers(headers: &mut HeaderMap, m: &HeaderModifier) {
    let pair = |name: &str, value: &str| {
        Some((
            HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).ok()?,
            HeaderValue::from_bytes(value.as_bytes()).ok()?,
        ))
    };
    for h in &m.set {
        if let Some((n, v)) = pair(&h.name, &h.value) {
            headers.insert(n, v);
        }
    }
    for h in &m.add {
        let Some((n, v)) = pair(&h.name, &h.value) else {
            continue;
        };
        // As the suite reads it: one header, every value it had and the new one joined
        // by commas.
        let mut joined: Vec<u8> = Vec::new();
        for old in headers.get_all(&n) {
            joined.extend_from_slice(old.as_bytes());
            joined.push(b',');
        }
        if joined.is_empty() {
            headers.insert(n, v);
            continue;
        }
        joined.extend_from_slice(v.as_bytes());
        if let Ok(joined) = HeaderValue::from_bytes(&joined) {
            headers.insert(n, joined);
        }
    }
    for name in &m.remove {
        headers.remove(name.to_ascii_lowercase().as_str());
    }
}

/// `path` with `modifier` applied (`prefix`: what the rule's prefix match matched).
pub fn modified_path(path: &str, modifier: &PathModifier, prefix: Option<&str>) -> String {
    match modifier.kind {
        PathModifierType::ReplaceFullPath => modifier.replace_full_path.clone().unwrap_or_default(),
        PathModifierType::ReplacePrefixMatch => {
            let with = modifier.replace_prefix_match.as_deref().unwrap_or("/");
            let p = prefix.unwrap_or("/").trim_end_matches('/');
            let rest = path.get(p.len()..).unwrap_or_default();
            let joined = match (with.ends_with('/'), rest.starts_with('/')) {
                (true, true) => format!("{with}{}", &rest[1..]),
                (false, false) if !rest.is_empty() => format!("{with}/{rest}"),
                _ => format!("{with}{rest}"),
            };
            if joined.is_empty() {
                "/".into()
            } else {
                joined
            }
        }
    }
}

/// The `Location` and status of a redirect of a request to `host` (`authority`, no
/// scheme: `http`) at `uri`.
pub fn redirect(
    r: &RequestRedirect,
    authority: &str,
    uri: &Uri,
    prefix: Option<&str>,
) -> (StatusCode, String) {
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => (h, p.parse::<u16>().ok()),
        _ => (authority, None),
    };
    let scheme = r.scheme.as_deref().unwrap_or("http");
    let host = r.hostname.as_deref().unwrap_or(host);
    let default_port = if scheme == "https" { 443 } else { 80 };
    // A new scheme without a port takes the scheme's; otherwise the port stays.
    let port = match (r.port, &r.scheme) {
        (Some(p), _) => Some(p),
        (None, Some(_)) => None,
        (None, None) => port,
    }
    .filter(|p| *p != default_port);
    let path = match &r.path {
        Some(m) => modified_path(uri.path(), m, prefix),
        None => uri.path().to_string(),
    };
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    let location = match port {
        Some(p) => format!("{scheme}://{host}:{p}{path}{query}"),
        None => format!("{scheme}://{host}{path}{query}"),
    };
    let status = r
        .status_code
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::FOUND);
    (status, location)
}

/// Carries out the rule a call selected: `Err` is the answer (a redirect, a 404 when no
/// rule matches, a 500 when the backend cannot be reached); `Ok` the backend Service
/// and port, with the request edited by the rule's and the backend's filters and the
/// response edits to make added to `response_edits`.
pub fn carry_out<'r, B>(
    routing: &'r Routing,
    selected: Selected<'r>,
    host: &str,
    req: &mut http::Request<B>,
    response_edits: &mut Vec<HeaderModifier>,
) -> Result<(&'r Service, u16), Box<http::Response<ProxyBody>>> {
    let (rule, prefix) = match selected {
        Selected::NoMatch => {
            return Err(Box::new(error_response(
                StatusCode::NOT_FOUND,
                "no rule of the Service's HTTPRoutes matches",
            )));
        }
        Selected::Rule { rule, prefix } => (rule, prefix),
    };
    if let Some(r) = &rule.filters.redirect {
        let (status, location) = redirect(r, host, req.uri(), prefix);
        let mut resp = http::Response::new(full(String::new()));
        *resp.status_mut() = status;
        if let Ok(v) = HeaderValue::from_str(&location) {
            resp.headers_mut().insert(http::header::LOCATION, v);
        }
        return Err(Box::new(resp));
    }
    let Some(backend) = rule.pick() else {
        return Err(Box::new(error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "every backend of the rule has weight 0",
        )));
    };
    if !backend.permitted {
        return Err(Box::new(error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "backend Service {} is in another namespace and no ReferenceGrant allows it",
                backend.service
            ),
        )));
    }
    let Some(service) = routing.service(&backend.service) else {
        return Err(Box::new(error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("backend Service {} not found", backend.service),
        )));
    };
    for f in [&rule.filters, &backend.filters] {
        if let Some(m) = &f.request {
            edit_headers(req.headers_mut(), m);
        }
        if let Some(m) = &f.response {
            response_edits.push(m.clone());
        }
        if let Some(rw) = &f.rewrite {
            rewrite(req, rw, prefix);
        }
    }
    Ok((service, backend.port))
}

/// A `URLRewrite`: the Host header and the path (the query kept).
fn rewrite<B>(req: &mut http::Request<B>, rw: &UrlRewrite, prefix: Option<&str>) {
    if let Some(h) = rw
        .hostname
        .as_deref()
        .and_then(|h| HeaderValue::from_str(h).ok())
    {
        req.headers_mut().insert(http::header::HOST, h);
    }
    if let Some(m) = &rw.path {
        let uri = req.uri();
        let mut path = modified_path(uri.path(), m, prefix);
        if let Some(q) = uri.query() {
            path = format!("{path}?{q}");
        }
        let mut parts = uri.clone().into_parts();
        if let Ok(pq) = path.parse() {
            parts.path_and_query = Some(pq);
            if let Ok(new) = Uri::from_parts(parts) {
                *req.uri_mut() = new;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(yaml: &str) -> Vec<MeshRoute> {
        let spec: lanes_routes::gateway::HttpRouteSpec = serde_json::from_str(yaml).unwrap();
        vec![MeshRoute {
            name: "r".into(),
            namespace: "mesh".into(),
            spec,
        }]
    }

    fn backend<'a>(rules: &'a MeshRules, path: &str, headers: &[(&str, &str)]) -> Option<&'a str> {
        let uri: Uri = path.parse().unwrap();
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        match rules.select("echo.mesh", "mesh", "mesh", 80, (&Method::GET, &uri, &h))? {
            Selected::NoMatch => Some("404"),
            Selected::Rule { rule, .. } => rule.pick().map(|b| b.service.as_str()),
        }
    }

    #[test]
    fn a_backend_in_another_namespace_is_not_permitted_and_gets_a_500() {
        let rules = MeshRules::build(&routes(
            r#"{"parentRefs": [{"group": "", "kind": "Service", "name": "echo", "port": 80}],
                "rules": [{"backendRefs": [{"name": "db", "namespace": "vault", "port": 80}]}]}"#,
        ));
        let uri: Uri = "/".parse().unwrap();
        let get = (&Method::GET, &uri, &HeaderMap::new());
        let Some(Selected::Rule { rule, .. }) = rules.select("echo.mesh", "mesh", "mesh", 80, get)
        else {
            panic!("the rule applies");
        };
        let picked = rule.pick().unwrap();
        assert_eq!(picked.service, "db.vault");
        assert!(!picked.permitted);
        let mut req = http::Request::new(());
        let answer = carry_out(
            &Routing::default(),
            Selected::Rule { rule, prefix: None },
            "echo",
            &mut req,
            &mut Vec::new(),
        )
        .unwrap_err();
        assert_eq!(answer.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn the_matching_case_routes_by_precedence_and_whole_segments() {
        let rules = MeshRules::build(&routes(
            r#"{"parentRefs": [{"group": "", "kind": "Service", "name": "echo", "port": 80}],
                "rules": [
                  {"matches": [{"path": {"type": "PathPrefix", "value": "/"}},
                               {"path": {"type": "PathPrefix", "value": "/"}, "headers": [{"type": "Exact", "name": "version", "value": "one"}]}],
                   "backendRefs": [{"name": "echo-v1", "port": 8080}]},
                  {"matches": [{"path": {"type": "PathPrefix", "value": "/v2"}},
                               {"path": {"type": "PathPrefix", "value": "/"}, "headers": [{"type": "Exact", "name": "version", "value": "two"}]}],
                   "backendRefs": [{"name": "echo-v2", "port": 8080}]}]}"#,
        ));
        for (path, headers, want) in [
            ("/", &[][..], "echo-v1.mesh"),
            ("/example", &[], "echo-v1.mesh"),
            ("/", &[("version", "one")], "echo-v1.mesh"),
            ("/v2", &[], "echo-v2.mesh"),
            ("/v2/example", &[], "echo-v2.mesh"),
            ("/", &[("version", "two")], "echo-v2.mesh"),
            ("/v2/", &[], "echo-v2.mesh"),
            ("/v2example", &[], "echo-v1.mesh"),
            ("/foo/v2/example", &[], "echo-v1.mesh"),
        ] {
            assert_eq!(
                backend(&rules, path, headers),
                Some(want),
                "{path} {headers:?}"
            );
        }
        assert!(!rules.by_service.contains_key("other.mesh"));
    }

    #[test]
    fn weights_split_and_headers_edit_and_paths_rewrite() {
        let rules = MeshRules::build(&routes(
            r#"{"parentRefs": [{"group": "", "kind": "Service", "name": "echo"}],
                "rules": [{"backendRefs": [{"name": "a", "port": 80, "weight": 70},
                                           {"name": "b", "port": 80, "weight": 30}]}]}"#,
        ));
        let a = (0..2000)
            .filter(|_| backend(&rules, "/", &[]) == Some("a.mesh"))
            .count();
        assert!((1300..1500).contains(&a), "{a} of 2000");

        let mut h = HeaderMap::new();
        h.insert("x-header-add", "x".parse().unwrap());
        h.insert("x-header-remove", "x".parse().unwrap());
        let m: HeaderModifier = serde_json::from_str(
            r#"{"set": [{"name": "X-Header-Set", "value": "s"}], "add": [{"name": "X-Header-Add", "value": "y"}], "remove": ["X-Header-Remove"]}"#,
        )
        .unwrap();
        edit_headers(&mut h, &m);
        assert_eq!(h["x-header-set"], "s");
        assert_eq!(h["x-header-add"], "x,y");
        assert!(h.get("x-header-remove").is_none());
        // Every value the header had is kept, bytes beyond ASCII too.
        let mut h = HeaderMap::new();
        h.append("x-header-add", "a".parse().unwrap());
        h.append(
            "x-header-add",
            HeaderValue::from_bytes("caf\u{e9}".as_bytes()).unwrap(),
        );
        edit_headers(&mut h, &m);
        assert_eq!(h.get_all("x-header-add").iter().count(), 1);
        assert_eq!(h["x-header-add"].as_bytes(), "a,caf\u{e9},y".as_bytes());

        let prefix = PathModifier {
            kind: PathModifierType::ReplacePrefixMatch,
            replace_full_path: None,
            replace_prefix_match: Some("/one".into()),
        };
        assert_eq!(
            modified_path("/prefix/one/two", &prefix, Some("/prefix/one")),
            "/one/two"
        );
        assert_eq!(
            modified_path("/prefix/one", &prefix, Some("/prefix/one")),
            "/one"
        );
        let r = RequestRedirect {
            scheme: Some("https".into()),
            status_code: Some(301),
            ..Default::default()
        };
        let uri: Uri = "/x?y=1".parse().unwrap();
        assert_eq!(
            redirect(&r, "echo:80", &uri, None),
            (
                StatusCode::MOVED_PERMANENTLY,
                "https://echo/x?y=1".to_string()
            )
        );
    }
}
