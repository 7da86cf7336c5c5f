//! A synthetic mesh for scale benchmarks: one lane group over `services` services with
//! `lanes` lanes, about three ready pods per service (two in the baseline lane, one in
//! a canary lane), written as a manifest stream `lanes render`, `lanes lint` and
//! `kubectl apply` all take. Pure: it only builds text.

use std::fmt::Write;

/// The namespace every synthetic object lives in.
pub const NAMESPACE: &str = "scale";
/// The name of the synthetic lane group.
pub const GROUP: &str = "scale";
/// The baseline lane every service is listed in.
pub const BASE_LANE: &str = "base";

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// How many services (each with a Service and three Pods).
    pub services: usize,
    /// How many lanes, the baseline included (at least one).
    pub lanes: usize,
    /// Whether to write the Pods (with a ready status) or leave them out, for a
    /// cluster where pods are made by other means.
    pub pods: bool,
}

/// The name of service `i`.
pub fn service_name(i: usize) -> String {
    format!("svc-{i:05}")
}

/// The name of canary lane `k` (1-based; lane 0 is [`BASE_LANE`]).
pub fn lane_name(k: usize) -> String {
    if k == 0 {
        BASE_LANE.to_string()
    } else {
        format!("lane-{k:02}")
    }
}

/// The canary lane service `i`'s third pod sits in.
pub fn canary_lane_of(i: usize, lanes: usize) -> String {
    if lanes <= 1 {
        BASE_LANE.to_string()
    } else {
        lane_name(1 + i % (lanes - 1))
    }
}

/// A ready Pod of service `i` in `lane`, numbered `n` among the service's pods: its
/// address is unique within the mesh.
pub fn pod(i: usize, lane: &str, n: usize) -> String {
    let host = i * 4 + n + 2;
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {svc}-{lane}-{n}\n  namespace: {NAMESPACE}\n  \
         labels:\n    app: {svc}\n    ASM_TRAFFIC_TAG: {lane}\nspec:\n  containers:\n  - name: app\n    \
         image: scale\nstatus:\n  phase: Running\n  podIP: 10.{a}.{b}.{c}\n  conditions:\n  - type: Ready\n    \
         status: \"True\"\n",
        svc = service_name(i),
        a = (host >> 16) & 0xff,
        b = (host >> 8) & 0xff,
        c = host & 0xff,
    )
}

/// The whole mesh as a multi-document YAML stream: the Services (and Pods), the lane
/// group, then its lanes.
pub fn mesh(shape: Shape) -> String {
    let lanes = shape.lanes.max(1);
    let mut out = String::with_capacity(shape.services * 900 + lanes * 400);
    let mut docs = Vec::new();
    for i in 0..shape.services {
        let svc = service_name(i);
        docs.push(format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {svc}\n  namespace: {NAMESPACE}\n\
             spec:\n  ports:\n  - name: http\n    port: 8000\n  selector:\n    app: {svc}\n"
        ));
        if shape.pods {
            docs.push(pod(i, BASE_LANE, 0));
            docs.push(pod(i, BASE_LANE, 1));
            docs.push(pod(i, &canary_lane_of(i, lanes), 2));
        }
    }
    let mut group = format!(
        "apiVersion: istio.alibabacloud.com/v1\nkind: ASMSwimLaneGroup\nmetadata:\n  name: {GROUP}\n\
         spec:\n  ingress:\n    gateway:\n      name: ingressgateway\n      namespace: istio-system\n      \
         type: ASM\n    ingressRouting:\n      ingressRoutingStrategy: rule_based\n  isPermissive: true\n  \
         permissiveModeConfiguration:\n    fallbackTarget: {BASE_LANE}\n    routeHeader: x-asm-prefer-tag\n    \
         traceHeader: my-request-id\n  autoUpdate: true\n  services:\n"
    );
    service_list(&mut group, shape.services, "  ");
    docs.push(group);
    for k in 0..lanes {
        let lane = lane_name(k);
        let mut doc = format!(
            "apiVersion: istio.alibabacloud.com/v1\nkind: ASMSwimLane\nmetadata:\n  labels:\n    \
             swimlane-group: {GROUP}\n  name: {lane}\nspec:\n  ingressRules:\n  - hosts:\n    - '*'\n    \
             match:\n      headers:\n        x-asm-prefer-tag:\n          exact: {lane}\n      uri:\n        \
             prefix: /\n    name: {lane}\n    online: true\n    route:\n      destination:\n        \
             host: {entry}.{NAMESPACE}.svc.cluster.local\n  labelSelector:\n    ASM_TRAFFIC_TAG: {lane}\n",
            entry = service_name(0),
        );
        if k == 0 {
            doc.push_str("  services:\n");
            service_list(&mut doc, shape.services, "  ");
        } else {
            doc.push_str("  services: []\n");
        }
        docs.push(doc);
    }
    for (n, doc) in docs.iter().enumerate() {
        if n > 0 {
            out.push_str("---\n");
        }
        out.push_str(doc);
    }
    out
}

fn service_list(out: &mut String, services: usize, indent: &str) {
    for i in 0..services {
        let _ = write!(
            out,
            "{indent}- name: {}\n{indent}  namespace: {NAMESPACE}\n",
            service_name(i)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::decode_str;
    use crate::object::Typed;

    #[test]
    fn the_mesh_decodes_into_the_counts_asked_for() {
        let text = mesh(Shape {
            services: 7,
            lanes: 4,
            pods: true,
        });
        let (objects, diags) = decode_str("synthetic", &text);
        assert!(diags.is_empty(), "{diags:?}");
        let count = |f: fn(&Typed) -> bool| objects.iter().filter(|o| f(&o.object.typed)).count();
        assert_eq!(count(|t| matches!(t, Typed::Service(_))), 7);
        assert_eq!(count(|t| matches!(t, Typed::Pod(_))), 21);
        assert_eq!(count(|t| matches!(t, Typed::LaneGroup(_))), 1);
        assert_eq!(count(|t| matches!(t, Typed::Lane(_))), 4);
    }

    #[test]
    fn pods_have_distinct_addresses_and_spread_over_the_canary_lanes() {
        let text = mesh(Shape {
            services: 600,
            lanes: 20,
            pods: true,
        });
        let ips: std::collections::BTreeSet<&str> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("podIP: "))
            .collect();
        assert_eq!(ips.len(), 1800);
        assert_eq!(canary_lane_of(0, 20), "lane-01");
        assert_eq!(canary_lane_of(18, 20), "lane-19");
        assert_eq!(canary_lane_of(19, 20), "lane-01");
    }

    #[test]
    fn without_pods_only_services_and_lanes_are_written() {
        let text = mesh(Shape {
            services: 3,
            lanes: 2,
            pods: false,
        });
        let (objects, diags) = decode_str("synthetic", &text);
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(objects.len(), 3 + 1 + 2);
    }
}
