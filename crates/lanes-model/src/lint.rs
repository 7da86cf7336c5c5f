//! Cross-reference checks over a set of objects: what decodes on its own but does not
//! fit together (`lanes lint`).

use std::collections::{BTreeMap, BTreeSet};

use crate::decode::{Diagnostic, Loaded, Severity, find_duplicates};
use crate::lane::{GROUP_LABEL, IngressStrategy, LaneSpec};
use crate::mesh::{
    LaneMembership, PodIndex, PodView, ServiceIndex, ServiceView, assumed_pods, parse_mesh_host,
};
use crate::object::Typed;

struct Ctx<'a> {
    loaded: &'a [Loaded],
    services: &'a [ServiceView],
    by_name: ServiceIndex<'a>,
    /// The pods assumed to run.
    pods: PodIndex<'a>,
    /// Every Deployment's pod template, as a pod, whatever its replicas.
    templates: PodIndex<'a>,
    namespaces: BTreeSet<String>,
    out: Vec<Diagnostic>,
}

impl<'a> Ctx<'a> {
    fn report(&mut self, severity: Severity, l: &Loaded, path: &str, message: String) {
        self.out.push(Diagnostic::at(
            severity,
            &l.source,
            Some(l.object.display_name()),
            Some(path.to_string()),
            message,
        ));
    }

    fn service(&self, name: &str, namespace: &str) -> Option<&'a ServiceView> {
        self.by_name.get(name, namespace)
    }
}

/// Where the manifests are going: what `lanes up` runs, or a cluster with the Lanes
/// operator (whose webhook refuses what only `lanes up` runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Target {
    /// `lanes up`.
    #[default]
    LanesUp,
    /// A cluster.
    Cluster,
}

/// Every cross-reference problem among `loaded`, errors and warnings, in input order,
/// for `lanes up`.
pub fn lint(loaded: &[Loaded]) -> Vec<Diagnostic> {
    lint_for(loaded, Target::LanesUp)
}

/// Warnings for the lane groups among `loaded` written as Gateway API objects: what
/// their settings ask that a Gateway API mesh cannot do.
pub fn gateway_api_limits(loaded: &[Loaded]) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for l in loaded {
        if let Typed::LaneGroup(g) = &l.object.typed {
            for (path, why) in crate::gateway_api::unsaid(&g.spec) {
                out.push(Diagnostic::at(
                    Severity::Warning,
                    &l.source,
                    Some(l.object.display_name()),
                    Some(path.to_string()),
                    why,
                ));
            }
        }
    }
    out
}

/// Every cross-reference problem among `loaded` going to `target`.
pub fn lint_for(loaded: &[Loaded], target: Target) -> Vec<Diagnostic> {
    let services: Vec<ServiceView> = loaded
        .iter()
        .filter_map(|l| ServiceView::from_object(&l.object))
        .collect();
    let pods = assumed_pods(loaded.iter().map(|l| &l.object));
    let templates: Vec<PodView> = loaded
        .iter()
        .filter_map(|l| {
            Some(PodView {
                name: l.object.name.clone(),
                namespace: l.object.namespace_or_empty().to_string(),
                labels: crate::mesh::deployment_template_labels(&l.object)?,
                ready: true,
                ip: None,
            })
        })
        .collect();
    let mut ctx = Ctx {
        loaded,
        services: &services,
        by_name: ServiceIndex::new(&services),
        pods: PodIndex::new(&pods),
        templates: PodIndex::new(&templates),
        namespaces: loaded
            .iter()
            .filter_map(|l| l.object.namespace.clone())
            .collect(),
        out: find_duplicates(loaded),
    };
    for l in loaded {
        match &l.object.typed {
            Typed::Rollout(r) => {
                if target == Target::Cluster {
                    let mut errs = Vec::new();
                    crate::rollout_rules::check_cluster(&mut errs, &r.spec);
                    for e in errs {
                        ctx.report(Severity::Error, l, &e.path, e.message);
                    }
                }
                lint_rollout(&mut ctx, l)
            }
            Typed::Deployment(_) => lint_deployment_urls(&mut ctx, l),
            Typed::LaneGroup(_) => lint_group(&mut ctx, l),
            Typed::Lane(_) => lint_lane(&mut ctx, l),
            _ => {}
        }
    }
    ctx.out
}

fn lint_rollout(ctx: &mut Ctx<'_>, l: &Loaded) {
    let Typed::Rollout(r) = &l.object.typed else {
        return;
    };
    let ns = l.object.namespace_or_empty();
    let wref = &r.spec.workload_ref;
    let exists = ctx.loaded.iter().any(|o| {
        matches!(o.object.typed, Typed::Deployment(_))
            && o.object.name == wref.name
            && o.object.namespace_or_empty() == ns
    });
    if !exists {
        let elsewhere: Vec<String> = ctx
            .loaded
            .iter()
            .filter(|o| {
                matches!(o.object.typed, Typed::Deployment(_)) && o.object.name == wref.name
            })
            .map(|o| o.object.namespace_or_empty().to_string())
            .collect();
        let hint = if elsewhere.is_empty() {
            String::new()
        } else {
            format!(
                " (there is one in namespace {}; a Rollout acts on its own namespace)",
                elsewhere.join(", ")
            )
        };
        ctx.report(
            Severity::Error,
            l,
            "spec.workloadRef.name",
            format!(
                "Deployment {:?} not found in namespace {ns:?}{hint}",
                wref.name
            ),
        );
    }
    if let Some(key) = partition_selector_clash(ctx, ns, r) {
        ctx.report(
            Severity::Error,
            l,
            "spec.strategy.canary.patchPodTemplateMetadata.labels",
            format!(
                "{key:?} is in the selector of Deployment {:?}; a partition-style release \
                 relabels the workload's own pods, which would take them out of it (use \
                 another label for the lane, or enableExtraWorkloadForCanary: true)",
                wref.name
            ),
        );
    }
    if r.routes_traffic()
        && let Some(message) = unrouted_release(ctx, l, r)
    {
        ctx.report(Severity::Warning, l, "spec.strategy.canary.steps", message);
    }
    // Kruise's webhook: one Rollout per workload. The later one is reported.
    let earlier = ctx
        .loaded
        .iter()
        .take_while(|o| !std::ptr::eq(*o, l))
        .find(|o| match &o.object.typed {
            Typed::Rollout(other) => {
                o.object.namespace_or_empty() == ns && other.spec.workload_ref == *wref
            }
            _ => false,
        });
    if let Some(first) = earlier {
        ctx.report(
            Severity::Error,
            l,
            "spec.workloadRef",
            format!(
                "Rollout/{} ({}) already releases Deployment {:?}; a workload has one Rollout",
                first.object.name, first.source, wref.name
            ),
        );
    }
}

/// In a partition-style Rollout, a lane label of `patchPodTemplateMetadata` its
/// Deployment's selector matches on.
fn partition_selector_clash<'r>(
    ctx: &Ctx<'_>,
    ns: &str,
    r: &'r crate::rollout::Rollout,
) -> Option<&'r str> {
    let canary = r.spec.strategy.canary.as_ref()?;
    if canary.enable_extra_workload_for_canary == Some(true) {
        return None;
    }
    let labels = &canary.patch_pod_template_metadata.as_ref()?.labels;
    let selector = ctx.loaded.iter().find_map(|o| match &o.object.typed {
        Typed::Deployment(d)
            if o.object.name == r.spec.workload_ref.name && o.object.namespace_or_empty() == ns =>
        {
            d.spec.as_ref()?.selector.match_labels.clone()
        }
        _ => None,
    })?;
    labels
        .keys()
        .find(|k| selector.contains_key(k.as_str()))
        .map(String::as_str)
}

/// Why the traffic steps of Rollout `r` would route nothing (its `StepTrafficRouting`
/// would wait): no lane group holds a Service of its workload, or none of that group's
/// lanes selects the canary's pods.
fn unrouted_release(ctx: &Ctx<'_>, l: &Loaded, r: &crate::rollout::Rollout) -> Option<String> {
    let ns = l.object.namespace_or_empty();
    let workload = &r.spec.workload_ref.name;
    let stable = ctx.loaded.iter().find_map(|o| {
        (matches!(o.object.typed, Typed::Deployment(_))
            && o.object.name == *workload
            && o.object.namespace_or_empty() == ns)
            .then(|| crate::mesh::deployment_template_labels(&o.object))
            .flatten()
    })?;
    let canary = r.canary_pod_labels(&stable);
    let services: Vec<&ServiceView> = ctx
        .services
        .iter()
        .filter(|s| s.namespace == ns && !s.selector.is_empty() && s.selects(ns, &stable))
        .collect();
    let groups: Vec<&Loaded> = ctx
        .loaded
        .iter()
        .filter(|g| match &g.object.typed {
            Typed::LaneGroup(group) => group.spec.services.iter().any(|sr| {
                services
                    .iter()
                    .any(|s| s.name == sr.name && s.namespace == sr.namespace())
            }),
            _ => false,
        })
        .collect();
    if groups.is_empty() {
        return Some(format!(
            "the steps route traffic, but no lane group holds a Service of Deployment {workload:?}: StepTrafficRouting would wait"
        ));
    }
    let lane_selects = groups.iter().any(|g| {
        lanes_of(ctx.loaded, &g.object.name)
            .iter()
            .any(|lane| match &lane.object.typed {
                Typed::Lane(lane) => {
                    let sel = &lane.spec.label_selector;
                    !sel.is_empty()
                        && crate::mesh::selector_matches(sel, &canary)
                        && !crate::mesh::selector_matches(sel, &stable)
                }
                _ => false,
            })
    });
    (!lane_selects).then(|| {
        format!(
            "the steps route traffic, but no lane of group {:?} selects the canary's pods ({}): StepTrafficRouting would wait",
            groups[0].object.name,
            fmt_labels(&canary)
        )
    })
}

/// The host of an `http://` or `https://` URL, with its port.
fn url_host(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    (!host.is_empty()).then_some(host)
}

fn lint_deployment_urls(ctx: &mut Ctx<'_>, l: &Loaded) {
    let Typed::Deployment(d) = &l.object.typed else {
        return;
    };
    let ns = l.object.namespace_or_empty().to_string();
    let containers = d
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|s| s.containers.clone())
        .unwrap_or_default();
    for (ci, c) in containers.iter().enumerate() {
        for (ei, env) in c.env.iter().flatten().enumerate() {
            if !env.name.to_ascii_lowercase().ends_with("url") {
                continue;
            }
            let Some(value) = env.value.as_deref() else {
                continue;
            };
            let Some(host) = url_host(value) else {
                continue;
            };
            let Some((svc, svc_ns)) = parse_mesh_host(host, &ns) else {
                continue;
            };
            if ctx.service(svc, svc_ns).is_some() {
                continue;
            }
            // A two-label name may be an outside host (`example.org`): judge it only when
            // it names a known namespace or a known service.
            let two_labels = host
                .split(':')
                .next()
                .is_some_and(|h| h.matches('.').count() == 1);
            let known =
                ctx.namespaces.contains(svc_ns) || ctx.services.iter().any(|s| s.name == svc);
            if two_labels && !known {
                continue;
            }
            let candidates: Vec<String> = ctx
                .services
                .iter()
                .filter(|s| s.name == svc)
                .map(|s| format!("{}.{}", s.name, s.namespace))
                .collect();
            let hint = if candidates.is_empty() {
                String::new()
            } else {
                format!("; did you mean {}?", candidates.join(" or "))
            };
            ctx.report(
                Severity::Error,
                l,
                &format!("spec.template.spec.containers[{ci}].env[{ei}].value"),
                format!(
                    "{} {value:?} names host {host:?}, which is no Service (no Service {svc:?} in namespace {svc_ns:?}){hint}",
                    env.name
                ),
            );
        }
    }
}

fn lint_group(ctx: &mut Ctx<'_>, l: &Loaded) {
    let Typed::LaneGroup(g) = &l.object.typed else {
        return;
    };
    let group = &g.spec;
    let lanes: Vec<&Loaded> = lanes_of(ctx.loaded, &l.object.name);
    let lane_names: BTreeSet<&str> = lanes.iter().map(|x| x.object.name.as_str()).collect();
    for (i, s) in group.services.iter().enumerate() {
        let path = format!("spec.services[{i}]");
        match ctx.service(&s.name, s.namespace()) {
            None => ctx.report(
                Severity::Error,
                l,
                &path,
                format!("Service {}/{} not found", s.namespace(), s.name),
            ),
            Some(svc) => {
                let selected = ctx.templates.selected_by(svc).next().is_some()
                    || ctx.pods.selected_by(svc).next().is_some();
                if !selected {
                    ctx.report(
                        Severity::Error,
                        l,
                        &path,
                        format!(
                            "no Deployment selects Service {}/{} (selector {})",
                            svc.namespace,
                            svc.name,
                            fmt_labels(&svc.selector)
                        ),
                    );
                }
            }
        }
    }
    let permissive = group.is_permissive.unwrap_or(false);
    for (field, message) in crate::lane::unknown_fallback_targets(group, &lane_names) {
        ctx.report(Severity::Error, l, &field, message);
    }
    let gw = &group.ingress.gateway;
    let gw_ns = gw.namespace.as_deref().unwrap_or("istio-system");
    let gateways: Vec<&Loaded> = ctx
        .loaded
        .iter()
        .filter(|o| matches!(o.object.typed, Typed::Gateway(_)))
        .collect();
    if !gateways.is_empty()
        && !gateways
            .iter()
            .any(|o| o.object.name == gw.name && o.object.namespace_or_empty() == gw_ns)
    {
        ctx.report(
            Severity::Warning,
            l,
            "spec.ingress.gateway",
            format!("Gateway {gw_ns}/{} not found", gw.name),
        );
    }
    if !permissive {
        let lanes: Vec<(&Loaded, &LaneSpec)> = lanes
            .iter()
            .filter_map(|l| match &l.object.typed {
                Typed::Lane(lane) => Some((*l, &lane.spec)),
                _ => None,
            })
            .collect();
        let membership = LaneMembership::new(group, lanes.iter().map(|(_, spec)| *spec));
        let services: Vec<(&ServiceView, Vec<bool>)> = group
            .services
            .iter()
            .filter_map(|s| ctx.service(&s.name, s.namespace()))
            .map(|svc| (svc, membership.holding(svc, &ctx.pods.ready_for(svc))))
            .collect();
        for (i, (lane, _)) in lanes.iter().enumerate() {
            for (svc, held) in &services {
                if !held[i] {
                    let message = format!(
                        "strict mode: lane {:?} lacks service {}/{}; requests in this lane cannot reach it",
                        lane.object.name, svc.namespace, svc.name
                    );
                    ctx.report(Severity::Warning, lane, "spec.services", message);
                }
            }
        }
    }
}

fn lanes_of<'a>(loaded: &'a [Loaded], group: &str) -> Vec<&'a Loaded> {
    loaded
        .iter()
        .filter(|o| {
            matches!(o.object.typed, Typed::Lane(_))
                && o.object.labels().get(GROUP_LABEL).map(String::as_str) == Some(group)
        })
        .collect()
}

fn lint_lane(ctx: &mut Ctx<'_>, l: &Loaded) {
    let Typed::Lane(lane) = &l.object.typed else {
        return;
    };
    let labels = l.object.labels();
    let Some(group_name) = labels.get(GROUP_LABEL) else {
        return;
    };
    let group = ctx.loaded.iter().find_map(|o| match &o.object.typed {
        Typed::LaneGroup(g) if &o.object.name == group_name => Some(g.spec.clone()),
        _ => None,
    });
    let Some(group) = group else {
        ctx.report(
            Severity::Error,
            l,
            &format!("metadata.labels.{GROUP_LABEL}"),
            format!("lane group {group_name:?} not found"),
        );
        return;
    };
    for (i, rule) in lane.spec.ingress_rules.iter().enumerate() {
        let host = &rule.route.destination.host;
        let in_group = parse_mesh_host(host, "default").is_some_and(|(svc, ns)| {
            group
                .services
                .iter()
                .any(|s| s.name == svc && s.namespace() == ns)
        });
        if !in_group {
            ctx.report(
                Severity::Error,
                l,
                &format!("spec.ingressRules[{i}].route.destination.host"),
                format!("{host:?} is not a service of lane group {group_name:?}"),
            );
        }
    }
    // Two online lanes with the same ingress conditions: the earlier always wins.
    if group.ingress.ingress_routing.ingress_routing_strategy == IngressStrategy::RuleBased {
        let earlier = lanes_of(ctx.loaded, group_name)
            .into_iter()
            .take_while(|o| !std::ptr::eq(*o, l))
            .collect::<Vec<_>>();
        for (i, rule) in lane
            .spec
            .ingress_rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.online)
        {
            for other in &earlier {
                let Typed::Lane(other_lane) = &other.object.typed else {
                    continue;
                };
                let clash = other_lane.spec.ingress_rules.iter().find(|r| {
                    r.online && r.matches == rule.matches && same_hosts(&r.hosts, &rule.hosts)
                });
                if let Some(clash) = clash {
                    let message = format!(
                        "same hosts and match as rule {:?} of online lane {:?}, which comes first and always wins",
                        clash.name, other.object.name
                    );
                    ctx.report(
                        Severity::Error,
                        l,
                        &format!("spec.ingressRules[{i}].match"),
                        message,
                    );
                }
            }
        }
    }
}

fn same_hosts(a: &[String], b: &[String]) -> bool {
    let a: BTreeSet<&String> = a.iter().collect();
    let b: BTreeSet<&String> = b.iter().collect();
    a == b
}

fn fmt_labels(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_hosts() {
        assert_eq!(url_host("http://mockb:8000/"), Some("mockb:8000"));
        assert_eq!(url_host("https://u:p@a.b/x"), Some("a.b"));
        assert_eq!(url_host("ftp://x"), None);
    }
}
