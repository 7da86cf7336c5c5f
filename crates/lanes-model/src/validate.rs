//! Checks of one object on its own, after typed decoding: what an API server or the
//! owning controller would refuse.

use std::collections::{BTreeMap, BTreeSet};

use crate::istio::{HttpMatchRequest, StringMatch};
use crate::lane::{GROUP_LABEL, IngressStrategy};
use crate::object::{FieldError, Object, Typed};

/// Every problem of one object; empty when it is valid.
pub fn validate(object: &Object) -> Vec<FieldError> {
    let mut errs = Vec::new();
    check_name(&mut errs, "metadata.name", &object.name);
    if let Some(ns) = &object.namespace {
        check_dns_label(&mut errs, "metadata.namespace", ns);
    }
    check_labels(&mut errs, "metadata.labels", &object.labels());
    match &object.typed {
        // Checked against their CRDs' schemas as they are decoded.
        Typed::KubeGateway(_) | Typed::HttpRoute(_) | Typed::GrpcRoute(_) => {}
        Typed::Service(svc) => {
            let ports = svc.spec.as_ref().and_then(|s| s.ports.as_ref());
            match ports {
                Some(ports) if !ports.is_empty() => {
                    for (i, p) in ports.iter().enumerate() {
                        if !(1..=65535).contains(&p.port) {
                            errs.push(FieldError::new(
                                format!("spec.ports[{i}].port"),
                                format!("must be between 1 and 65535, got {}", p.port),
                            ));
                        }
                    }
                }
                _ => errs.push(FieldError::new(
                    "spec.ports",
                    "at least one port is required",
                )),
            }
            if let Some(sel) = svc.spec.as_ref().and_then(|s| s.selector.as_ref()) {
                check_labels(&mut errs, "spec.selector", sel);
            }
        }
        Typed::ReplicaSet(rs) => {
            // ReplicaSets are the records of a Deployment's revisions; none runs pods of
            // its own.
            let by_deployment = rs.metadata.owner_references.iter().flatten().any(|o| {
                o.kind == "Deployment" && o.api_version == "apps/v1" && o.controller == Some(true)
            });
            if !by_deployment {
                errs.push(FieldError::new(
                    "metadata.ownerReferences",
                    "Lanes keeps ReplicaSets only as the revisions of a Deployment (controller \
                     ownerReference to an apps/v1 Deployment); create a Deployment to run pods",
                ));
            }
        }
        Typed::Pod(pod) => {
            let containers = pod.spec.as_ref().map(|s| s.containers.as_slice());
            check_containers(&mut errs, "spec.containers", containers.unwrap_or(&[]));
        }
        Typed::Deployment(d) => {
            let Some(spec) = &d.spec else {
                errs.push(FieldError::new("spec", "is required"));
                return errs;
            };
            if let Some(r) = spec.replicas
                && r < 0
            {
                errs.push(FieldError::new(
                    "spec.replicas",
                    format!("must be 0 or more, got {r}"),
                ));
            }
            let selector = spec.selector.match_labels.clone().unwrap_or_default();
            if selector.is_empty() && spec.selector.match_expressions.is_none() {
                errs.push(FieldError::new(
                    "spec.selector",
                    "must select at least one label",
                ));
            }
            let template_labels = spec
                .template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            check_labels(&mut errs, "spec.template.metadata.labels", &template_labels);
            for (k, v) in &selector {
                if template_labels.get(k) != Some(v) {
                    errs.push(FieldError::new(
                        "spec.template.metadata.labels",
                        format!("selector {k}={v} does not match the template labels"),
                    ));
                }
            }
            let containers = spec.template.spec.as_ref().map(|s| s.containers.as_slice());
            check_containers(
                &mut errs,
                "spec.template.spec.containers",
                containers.unwrap_or(&[]),
            );
        }
        Typed::Gateway(gw) => {
            if gw.spec.servers.is_empty() {
                errs.push(FieldError::new(
                    "spec.servers",
                    "at least one server is required",
                ));
            }
        }
        Typed::VirtualService(vs) => {
            if vs.spec.hosts.is_empty() {
                errs.push(FieldError::new(
                    "spec.hosts",
                    "at least one host is required",
                ));
            }
            for (i, route) in vs.spec.http.iter().enumerate() {
                for (j, m) in route.matches.iter().enumerate() {
                    check_match(&mut errs, &format!("spec.http[{i}].match[{j}]"), m);
                }
            }
        }
        Typed::DestinationRule(dr) => {
            if dr.spec.host.is_empty() {
                errs.push(FieldError::new("spec.host", "is required"));
            }
            let mut seen = BTreeSet::new();
            for (i, s) in dr.spec.subsets.iter().enumerate() {
                if !seen.insert(&s.name) {
                    errs.push(FieldError::new(
                        format!("spec.subsets[{i}].name"),
                        format!("duplicate subset {:?}", s.name),
                    ));
                }
            }
        }
        Typed::LaneGroup(g) => validate_group(&mut errs, &g.spec),
        Typed::Namespace(_) | Typed::Event(_) | Typed::Lease(_) => {}
        Typed::Lane(l) => {
            if !object.labels().contains_key(GROUP_LABEL) {
                errs.push(FieldError::new(
                    "metadata.labels",
                    format!("a lane must carry the label `{GROUP_LABEL}: <lane group name>`"),
                ));
            }
            if l.spec.label_selector.is_empty() {
                errs.push(FieldError::new(
                    "spec.labelSelector",
                    "must name at least one pod label",
                ));
            }
            check_labels(&mut errs, "spec.labelSelector", &l.spec.label_selector);
            for (i, rule) in l.spec.ingress_rules.iter().enumerate() {
                let at = format!("spec.ingressRules[{i}]");
                if rule.route.destination.host.is_empty() {
                    errs.push(FieldError::new(
                        format!("{at}.route.destination.host"),
                        "is required",
                    ));
                }
                if rule.hosts.is_empty() {
                    errs.push(FieldError::new(
                        format!("{at}.hosts"),
                        "at least one host is required",
                    ));
                }
                check_match(&mut errs, &format!("{at}.match"), &rule.matches);
            }
            if let Some(w) = &l.spec.ingress_weight
                && !(0..=100).contains(&w.weight)
            {
                errs.push(FieldError::new(
                    "spec.ingressWeight.weight",
                    format!("must be between 0 and 100, got {}", w.weight),
                ));
            }
            for (i, s) in l.spec.services.iter().enumerate() {
                if s.name.is_empty() {
                    errs.push(FieldError::new(
                        format!("spec.services[{i}].name"),
                        "is required",
                    ));
                }
            }
        }
        Typed::Rollout(r) => {
            crate::rollout_rules::check(&mut errs, &r.spec);
            crate::rollout_rules::check_annotations(&mut errs, r.metadata.annotations.as_ref());
        }
        Typed::LaneRelease(r) => crate::lane_release::check(&mut errs, &r.spec),
    }
    errs
}

fn validate_group(errs: &mut Vec<FieldError>, spec: &crate::lane::LaneGroupSpec) {
    if spec.ingress.gateway.name.is_empty() {
        errs.push(FieldError::new("spec.ingress.gateway.name", "is required"));
    }
    if spec.services.is_empty() {
        errs.push(FieldError::new(
            "spec.services",
            "at least one service is required",
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, s) in spec.services.iter().enumerate() {
        if s.name.is_empty() {
            errs.push(FieldError::new(
                format!("spec.services[{i}].name"),
                "is required",
            ));
        } else if !seen.insert((s.namespace(), s.name.as_str())) {
            errs.push(FieldError::new(
                format!("spec.services[{i}]"),
                format!("service {}/{} is listed twice", s.namespace(), s.name),
            ));
        }
    }
    let permissive = spec.is_permissive.unwrap_or(false);
    match &spec.permissive_mode_configuration {
        None if permissive => errs.push(FieldError::new(
            "spec.permissiveModeConfiguration",
            "is required when isPermissive is true (fallbackTarget, routeHeader, traceHeader)",
        )),
        None => {}
        Some(p) => {
            let at = "spec.permissiveModeConfiguration";
            if permissive && p.fallback_target.is_empty() {
                errs.push(FieldError::new(
                    format!("{at}.fallbackTarget"),
                    "is required",
                ));
            }
            for (field, value) in [
                ("routeHeader", &p.route_header),
                ("traceHeader", &p.trace_header),
            ] {
                if let Some(h) = value
                    && !is_header_name(h)
                {
                    errs.push(FieldError::new(
                        format!("{at}.{field}"),
                        format!("{h:?} is not a valid lower-case HTTP header name"),
                    ));
                }
            }
            for key in p.service_level_fallback_target.keys() {
                let known = key
                    .split_once('/')
                    .is_some_and(|(ns, name)| seen.contains(&(ns, name)));
                if !known {
                    errs.push(FieldError::new(
                        format!("{at}.serviceLevelFallbackTarget.{key}"),
                        "keys must be `namespace/name` of a service of the group",
                    ));
                }
            }
        }
    }
    let routing = &spec.ingress.ingress_routing;
    if routing.ingress_routing_strategy == IngressStrategy::Weighted {
        match &routing.weighted_routing_rule {
            None => errs.push(FieldError::new(
                "spec.ingress.ingressRouting.weightedRoutingRule",
                "is required by the weighted strategy",
            )),
            Some(rule) if rule.hosts.is_empty() => errs.push(FieldError::new(
                "spec.ingress.ingressRouting.weightedRoutingRule.hosts",
                "at least one host is required",
            )),
            Some(_) => {}
        }
    }
    if let Some(rule) = &routing.weighted_routing_rule {
        for (i, m) in rule.request_matches.iter().enumerate() {
            check_match(
                errs,
                &format!("spec.ingress.ingressRouting.weightedRoutingRule.requestMatches[{i}]"),
                m,
            );
        }
    }
}

/// Parses `"N%"` with N in 0..=100.
pub fn parse_percent(s: &str) -> Option<u32> {
    let n: u32 = s.strip_suffix('%')?.trim().parse().ok()?;
    (n <= 100).then_some(n)
}

fn check_containers(
    errs: &mut Vec<FieldError>,
    at: &str,
    containers: &[k8s_openapi::api::core::v1::Container],
) {
    if containers.is_empty() {
        errs.push(FieldError::new(at, "at least one container is required"));
    }
    let mut names = BTreeSet::new();
    for (i, c) in containers.iter().enumerate() {
        if c.name.is_empty() {
            errs.push(FieldError::new(format!("{at}[{i}].name"), "is required"));
        } else if !names.insert(c.name.as_str()) {
            errs.push(FieldError::new(
                format!("{at}[{i}].name"),
                format!("duplicate container name {:?}", c.name),
            ));
        }
        if c.image.as_deref().unwrap_or("").is_empty() {
            errs.push(FieldError::new(format!("{at}[{i}].image"), "is required"));
        }
    }
}

pub(crate) fn check_match(errs: &mut Vec<FieldError>, at: &str, m: &HttpMatchRequest) {
    let mut check = |path: String, sm: &StringMatch| {
        let set = [&sm.exact, &sm.prefix, &sm.regex]
            .iter()
            .filter(|v| v.is_some())
            .count();
        if set != 1 {
            errs.push(FieldError::new(
                path.clone(),
                "exactly one of exact, prefix or regex is required",
            ));
        }
        if let Some(re) = &sm.regex
            && let Err(e) = regex::Regex::new(re)
        {
            errs.push(FieldError::new(
                format!("{path}.regex"),
                format!("invalid regular expression: {}", one_line(&e.to_string())),
            ));
        }
    };
    for (name, sm) in m.headers.iter().chain(&m.without_headers) {
        check(format!("{at}.headers.{name}"), sm);
    }
    for (name, sm) in &m.query_params {
        check(format!("{at}.queryParams.{name}"), sm);
    }
    for (field, sm) in [
        ("uri", &m.uri),
        ("method", &m.method),
        ("authority", &m.authority),
    ] {
        if let Some(sm) = sm {
            check(format!("{at}.{field}"), sm);
        }
    }
    for name in m.headers.keys() {
        if !is_header_name(&name.to_ascii_lowercase()) {
            errs.push(FieldError::new(
                format!("{at}.headers"),
                format!("{name:?} is not a valid HTTP header name"),
            ));
        }
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether `s` is a valid lower-case HTTP header name (an RFC 9110 token).
pub fn is_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
        })
}

fn check_name(errs: &mut Vec<FieldError>, at: &str, name: &str) {
    let ok = name.len() <= 253
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        });
    if !ok {
        errs.push(FieldError::new(
            at,
            format!(
                "{name:?} is not a valid name: lower-case letters, digits, '-' and '.', \
                 starting and ending with a letter or digit, at most 253 characters"
            ),
        ));
    }
}

fn check_dns_label(errs: &mut Vec<FieldError>, at: &str, name: &str) {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !ok {
        errs.push(FieldError::new(
            at,
            format!(
                "{name:?} is not a valid namespace: lower-case letters, digits and '-', at most 63"
            ),
        ));
    }
}

fn label_part_ok(s: &str, max: usize) -> bool {
    s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && s.bytes().next().is_none_or(|b| b.is_ascii_alphanumeric())
        && s.bytes().last().is_none_or(|b| b.is_ascii_alphanumeric())
}

pub(crate) fn check_labels(
    errs: &mut Vec<FieldError>,
    at: &str,
    labels: &BTreeMap<String, String>,
) {
    for (key, value) in labels {
        let (prefix, name) = match key.rsplit_once('/') {
            Some((p, n)) => (Some(p), n),
            None => (None, key.as_str()),
        };
        let key_ok = !name.is_empty()
            && label_part_ok(name, 63)
            && prefix.is_none_or(|p| !p.is_empty() && p.len() <= 253 && label_part_ok(p, 253));
        if !key_ok {
            errs.push(FieldError::new(
                format!("{at}.{key}"),
                "is not a valid label key",
            ));
        }
        if !label_part_ok(value, 63) {
            errs.push(FieldError::new(
                format!("{at}.{key}"),
                format!(
                    "{value:?} is not a valid label value: at most 63 letters, digits, '-', '_' \
                     or '.', starting and ending with a letter or digit"
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages() {
        assert_eq!(parse_percent("20%"), Some(20));
        assert_eq!(parse_percent("100%"), Some(100));
        assert_eq!(parse_percent("101%"), None);
        assert_eq!(parse_percent("abc"), None);
        assert_eq!(parse_percent("20"), None);
    }

    #[test]
    fn header_names() {
        assert!(is_header_name("x-asm-prefer-tag"));
        assert!(!is_header_name("X-Upper"));
        assert!(!is_header_name("bad header"));
        assert!(!is_header_name(""));
    }
}
