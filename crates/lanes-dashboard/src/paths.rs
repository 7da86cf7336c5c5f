//! Request paths: a request's hop records (as the API serves them, `/traces/{id}`) drawn
//! as the services it went through, each with the pod and version that served it, the
//! lane asked for, the subset that served, the fallback taken and why, the status and
//! the time. Pure: the caller reads the hops and finds the pods' versions.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

/// A hop record, as the data plane writes it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HopRecord {
    /// The trace (32 hex digits).
    pub trace_id: String,
    /// This hop's span.
    pub span_id: String,
    /// The span it continues.
    #[serde(default)]
    pub parent_span_id: Option<String>,
    /// `gateway`, `outbound` or `inbound`.
    pub role: String,
    /// The Service routed to or addressed.
    #[serde(default)]
    pub service: Option<String>,
    /// Its namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// The pod whose sidecar handled it.
    #[serde(default)]
    pub pod: Option<String>,
    /// The lane asked for.
    #[serde(default)]
    pub lane: Option<String>,
    /// The lane whose subset served.
    #[serde(default)]
    pub subset: Option<String>,
    /// The fallback taken.
    #[serde(default)]
    pub fallback: Option<Fallback>,
    /// The response status.
    pub status: u16,
    /// When it began (ns since the Unix epoch).
    pub start_unix_nano: u64,
    /// To the response head (ns).
    pub duration_nano: u64,
}

/// A fallback a hop took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fallback {
    /// The lane asked for.
    pub from: String,
    /// The lane that served.
    pub to: String,
    /// Why.
    pub reason: String,
}

/// One service a request went through, and those it called from there.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceHop {
    /// The service.
    pub service: String,
    /// Its namespace.
    pub namespace: String,
    /// The pod that served it, when the hop reached one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// That pod's version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The lane asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lane: Option<String>,
    /// The lane whose subset served.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    /// The fallback taken, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Fallback>,
    /// The status its caller got.
    pub status: u16,
    /// Milliseconds to the response head.
    pub ms: f64,
    /// The services it called.
    pub calls: Vec<ServiceHop>,
}

/// How deep a path is drawn: hop records are written from requests anyone can send
/// through the gateway, so their parent links are followed this far at most.
pub const MAX_DEPTH: usize = 64;

/// The path of a request from its hops: each routing hop (the gateway's, a sidecar's
/// outbound) with the inbound hop it reached, nested by the calls made from there.
/// `version` gives a pod's version by namespace and name. Each hop is drawn once, and
/// no deeper than [`MAX_DEPTH`].
pub fn request_path(
    hops: &[HopRecord],
    version: &dyn Fn(&str, &str) -> Option<String>,
) -> Vec<ServiceHop> {
    let mut sorted: Vec<&HopRecord> = hops.iter().collect();
    sorted.sort_by_key(|h| h.start_unix_nano);
    let mut tree = Tree {
        children: HashMap::new(),
        drawn: HashSet::new(),
        version,
    };
    for h in &sorted {
        if let Some(parent) = &h.parent_span_id {
            tree.children.entry(parent.as_str()).or_default().push(h);
        }
    }
    let spans: HashSet<&str> = sorted.iter().map(|h| h.span_id.as_str()).collect();
    sorted
        .iter()
        .filter(|h| is_routing(h))
        .filter(|h| {
            !h.parent_span_id
                .as_deref()
                .is_some_and(|p| spans.contains(p))
        })
        .filter_map(|h| tree.service_hop(h, 1))
        .collect()
}

fn is_routing(h: &HopRecord) -> bool {
    h.role == "gateway" || h.role == "outbound"
}

/// The hops by the span they continue, and those drawn so far.
struct Tree<'a> {
    children: HashMap<&'a str, Vec<&'a HopRecord>>,
    drawn: HashSet<&'a str>,
    version: &'a dyn Fn(&str, &str) -> Option<String>,
}

impl<'a> Tree<'a> {
    fn children(&self, span: &str) -> Vec<&'a HopRecord> {
        self.children.get(span).cloned().unwrap_or_default()
    }

    /// The service `routing` reached and, below `MAX_DEPTH`, those it called; none when
    /// the hop was drawn already.
    fn service_hop(&mut self, routing: &'a HopRecord, depth: usize) -> Option<ServiceHop> {
        if !self.drawn.insert(routing.span_id.as_str()) {
            return None;
        }
        let namespace = routing.namespace.clone().unwrap_or_default();
        let inbound = self
            .children(&routing.span_id)
            .into_iter()
            .find(|h| h.role == "inbound");
        let pod = inbound.and_then(|i| i.pod.clone());
        let mut calls = Vec::new();
        if let Some(i) = inbound.filter(|_| depth < MAX_DEPTH) {
            for h in self
                .children(&i.span_id)
                .into_iter()
                .filter(|h| is_routing(h))
            {
                calls.extend(self.service_hop(h, depth + 1));
            }
        }
        Some(ServiceHop {
            service: routing.service.clone().unwrap_or_default(),
            version: pod.as_deref().and_then(|p| (self.version)(&namespace, p)),
            pod,
            namespace,
            lane: routing.lane.clone(),
            subset: routing.subset.clone(),
            fallback: routing.fallback.clone(),
            status: routing.status,
            ms: routing.duration_nano as f64 / 1e6,
            calls,
        })
    }
}

/// A request that entered at the gateway, as the list of the newest shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// Its trace.
    pub trace_id: String,
    /// The service it entered.
    pub service: String,
    /// The lane asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lane: Option<String>,
    /// The status the client got.
    pub status: u16,
    /// When (ms since the Unix epoch).
    pub at_ms: u64,
    /// Milliseconds to the response head.
    pub ms: f64,
}

/// The entries of gateway hops (`hops` as the newest list gives them).
pub fn entries(hops: &[HopRecord]) -> Vec<Entry> {
    hops.iter()
        .filter(|h| h.role == "gateway")
        .map(|h| Entry {
            trace_id: h.trace_id.clone(),
            service: h.service.clone().unwrap_or_default(),
            lane: h.lane.clone(),
            status: h.status,
            at_ms: h.start_unix_nano / 1_000_000,
            ms: h.duration_nano as f64 / 1e6,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hop(
        span: &str,
        parent: Option<&str>,
        role: &str,
        service: &str,
        pod: Option<&str>,
    ) -> serde_json::Value {
        json!({"traceId": "0af7651916cd43dd8448eb211c800014", "spanId": span, "parentSpanId": parent,
               "role": role, "service": service, "namespace": "default", "pod": pod,
               "lane": "canary", "subset": if service == "mocka" { "canary" } else { "base" },
               "fallback": (service != "mocka").then(|| json!({"from": "canary", "to": "base", "reason": "lane_lacks_service"})),
               "status": 200, "startUnixNano": span.len() as u64 * 10 + parent.map_or(0, |p| p.len() as u64), "durationNano": 1_500_000})
    }

    #[test]
    fn a_canary_requests_hops_nest_as_the_services_it_went_through() {
        let hops: Vec<HopRecord> = serde_json::from_value(json!([
            hop("a", None, "gateway", "mocka", None),
            hop("b", Some("a"), "inbound", "mocka", Some("mocka-canary-1")),
            hop("cc", Some("b"), "outbound", "mockb", Some("mocka-canary-1")),
            hop("dd", Some("cc"), "inbound", "mockb", Some("mockb-v1-1")),
            hop("eee", Some("dd"), "outbound", "mockc", Some("mockb-v1-1")),
            hop("fff", Some("eee"), "inbound", "mockc", Some("mockc-v1-1")),
        ]))
        .unwrap();
        let version =
            |_: &str, pod: &str| Some(if pod.contains("canary") { "v2" } else { "v1" }.to_string());
        let path = request_path(&hops, &version);
        assert_eq!(path.len(), 1);
        let mut chain = Vec::new();
        let mut at = &path[0];
        loop {
            chain.push((
                at.service.as_str(),
                at.version.as_deref(),
                at.fallback.as_ref().map(|f| f.reason.as_str()),
            ));
            match at.calls.first() {
                Some(next) => at = next,
                None => break,
            }
        }
        assert_eq!(
            chain,
            [
                ("mocka", Some("v2"), None),
                ("mockb", Some("v1"), Some("lane_lacks_service")),
                ("mockc", Some("v1"), Some("lane_lacks_service")),
            ]
        );
        assert_eq!(path[0].pod.as_deref(), Some("mocka-canary-1"));
        assert_eq!(path[0].ms, 1.5);
        let listed = entries(&hops);
        // A chain of hops deeper than the bound (links anyone can write through the
        // gateway) is drawn down to the bound, without running out of stack.
        let mut chain = Vec::new();
        for i in 0..2_000u64 {
            let parent = (i > 0).then(|| format!("in{}", i - 1));
            chain.push(json!({"traceId": "t", "spanId": format!("out{i}"), "parentSpanId": parent,
                "role": "outbound", "service": "s", "status": 200, "startUnixNano": 2 * i, "durationNano": 1}));
            chain.push(json!({"traceId": "t", "spanId": format!("in{i}"), "parentSpanId": format!("out{i}"),
                "role": "inbound", "status": 200, "startUnixNano": 2 * i + 1, "durationNano": 1}));
        }
        let chain: Vec<HopRecord> = serde_json::from_value(json!(chain)).unwrap();
        let deep = request_path(&chain, &|_: &str, _: &str| None);
        let mut depth = 0;
        let mut at = deep.first();
        while let Some(h) = at {
            depth += 1;
            at = h.calls.first();
        }
        assert_eq!(depth, MAX_DEPTH);
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].service, "mocka");
    }
}
