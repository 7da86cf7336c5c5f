//! Gateway API routes in Lanes' gateway: an HTTPRoute attached to a Gateway decides, for
//! a request arriving at the gateway, which rule applies (by the Gateway API's
//! precedence: the most specific matching host name first, then as among mesh routes),
//! what its filters do and which backend Service takes it. The lane is chosen
//! afterwards, within the backend, from the request's route header (which a filter may
//! set), as for any call.

use std::cmp::Reverse;

use http::{HeaderMap, Method, Uri};
use lanes_routes::gateway::IngressRoute;

use crate::mesh_routes::{Cond, Rank, Selected, compiled_rules, rank};

/// Which request host names a route answers for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostCond {
    /// One host name, lowercase.
    Exact(String),
    /// `*.suffix`: one or more labels before `.suffix` (stored with its dot).
    Wildcard(String),
    /// Every host.
    Any,
}

impl HostCond {
    fn of(hostname: Option<&str>) -> HostCond {
        match hostname.map(str::to_ascii_lowercase) {
            None => HostCond::Any,
            Some(h) => match h.strip_prefix('*') {
                Some(suffix) => HostCond::Wildcard(suffix.to_string()),
                None => HostCond::Exact(h),
            },
        }
    }

    /// Whether the request's host name (lowercase, no port) is one this takes.
    fn holds(&self, host: &str) -> bool {
        match self {
            HostCond::Exact(h) => h == host,
            HostCond::Wildcard(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
            HostCond::Any => true,
        }
    }

    /// Precedence: exact names before wildcards, longer before shorter, any host last.
    fn rank(&self) -> (u8, Reverse<usize>) {
        match self {
            HostCond::Exact(h) => (0, Reverse(h.len())),
            HostCond::Wildcard(s) => (1, Reverse(s.len())),
            HostCond::Any => (2, Reverse(0)),
        }
    }
}

/// One match of one rule of one route, for one host name.
#[derive(Debug)]
struct Entry {
    host: HostCond,
    cond: Cond,
    rule: std::sync::Arc<crate::mesh_routes::Rule>,
}

/// The routes on the Gateways Lanes' gateway serves, in precedence order.
#[derive(Debug, Default)]
pub struct GatewayRules {
    entries: Vec<Entry>,
}

impl GatewayRules {
    /// Compiles the table's ingress routes.
    pub fn build(routes: &[IngressRoute]) -> GatewayRules {
        let mut ranked: Vec<((u8, Reverse<usize>), Rank, Entry)> = Vec::new();
        for (ri, route) in routes.iter().enumerate() {
            for (ui, rule, conds) in compiled_rules(&route.spec, &route.namespace) {
                for hostname in &route.hostnames {
                    let host = HostCond::of(hostname.as_deref());
                    for cond in conds.iter().flatten() {
                        ranked.push((
                            host.rank(),
                            rank(cond, ri, ui),
                            Entry {
                                host: host.clone(),
                                cond: cond.clone(),
                                rule: rule.clone(),
                            },
                        ));
                    }
                }
            }
        }
        ranked.sort_by_key(|a| (a.0, a.1));
        GatewayRules {
            entries: ranked.into_iter().map(|(_, _, e)| e).collect(),
        }
    }

    /// Whether no route is served (the gateway then skips the lookup).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The rule that takes a request for `host` (its `Host`, a port allowed), if any:
    /// `None` leaves the request to the lane groups' ingress.
    pub fn select(
        &self,
        host: &str,
        (method, uri, headers): (&Method, &Uri, &HeaderMap),
    ) -> Option<Selected<'_>> {
        let name = lanes_routes::host::strip_port(host).to_ascii_lowercase();
        self.entries
            .iter()
            .find(|e| e.host.holds(&name) && e.cond.holds(method, uri, headers))
            .map(|e| e.cond.selects(&e.rule))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(yaml: &str) -> Vec<IngressRoute> {
        serde_saphyr::from_str(yaml).unwrap()
    }

    /// The first backend of the rule a GET for `host` and `path` selects.
    fn backend(rules: &GatewayRules, host: &str, path: &str) -> Option<String> {
        let uri: Uri = path.parse().unwrap();
        match rules.select(host, (&Method::GET, &uri, &HeaderMap::new()))? {
            Selected::Rule { rule, .. } => Some(rule.pick()?.service.clone()),
            Selected::NoMatch => None,
        }
    }

    #[test]
    fn the_most_specific_host_name_wins_then_the_longest_path() {
        let rules = GatewayRules::build(&routes(
            r#"
- name: any
  namespace: shop
  hostnames: [null]
  spec:
    rules:
    - matches: [{path: {type: PathPrefix, value: /api}}]
      backendRefs: [{name: any-api, port: 80}]
    - backendRefs: [{name: any, port: 80}]
- name: wild
  namespace: shop
  hostnames: ["*.example.com"]
  spec:
    rules:
    - backendRefs: [{name: wild, port: 80}]
- name: exact
  namespace: shop
  hostnames: [a.example.com, b.example.com]
  spec:
    rules:
    - matches: [{path: {type: Exact, value: /only}}]
      backendRefs: [{name: exact, port: 80}]
"#,
        ));
        let at = |host, path| backend(&rules, host, path);
        assert_eq!(at("a.example.com", "/only").as_deref(), Some("exact.shop"));
        assert_eq!(
            at("B.Example.com:8080", "/only").as_deref(),
            Some("exact.shop")
        );
        // The exact host's route has no rule for the path: the wildcard's takes it.
        assert_eq!(at("a.example.com", "/other").as_deref(), Some("wild.shop"));
        assert_eq!(at("x.y.example.com", "/api").as_deref(), Some("wild.shop"));
        assert_eq!(
            at("example.com", "/api/v1").as_deref(),
            Some("any-api.shop")
        );
        assert_eq!(at("other.org", "/").as_deref(), Some("any.shop"));
    }

    #[test]
    fn a_request_no_route_takes_is_left_to_the_lane_ingress() {
        let rules = GatewayRules::build(&routes(
            r#"
- name: exact
  namespace: shop
  hostnames: [a.example.com]
  spec:
    rules:
    - matches: [{path: {type: PathPrefix, value: /api}}]
      backendRefs: [{name: api, port: 80}]
"#,
        ));
        let uri: Uri = "/web".parse().unwrap();
        let get = (&Method::GET, &uri, &HeaderMap::new());
        assert!(rules.select("a.example.com", get).is_none());
        assert!(rules.select("b.example.com", get).is_none());
        assert!(GatewayRules::default().is_empty());
        assert!(!rules.is_empty());
    }
}
