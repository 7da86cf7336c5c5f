//! The rules a Rollout meets on its own: Kruise's admission webhook (a workload, steps
//! within bounds and in order) and what Lanes refuses because it does not run it —
//! blue-green releases, workloads other than Deployments, traffic providers other than
//! the lanes themselves. A refused field is an error naming it,
//! never a Rollout accepted and then left to do nothing.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::object::FieldError;
use crate::rollout::{
    Analysis, CanaryStep, CanaryStrategy, RolloutSpec, TrafficRoutingRef, WorkloadRef,
};
use crate::validate::{check_labels, check_match, is_header_name, parse_percent};

/// Every problem of a Rollout's spec.
pub fn check(errs: &mut Vec<FieldError>, spec: &RolloutSpec) {
    check_workload(errs, &spec.workload_ref);
    match (&spec.strategy.canary, &spec.strategy.blue_green) {
        (None, None) => errs.push(FieldError::new(
            "spec.strategy",
            "one of canary or blueGreen is required",
        )),
        (Some(_), Some(_)) => errs.push(FieldError::new(
            "spec.strategy",
            "canary and blueGreen are mutually exclusive",
        )),
        (None, Some(_)) => errs.push(FieldError::new(
            "spec.strategy.blueGreen",
            "Lanes does not run blue-green releases (refused, so that the workload never \
             rolls unguarded); use canary with enableExtraWorkloadForCanary: true",
        )),
        (Some(c), None) => check_canary(errs, "spec.strategy.canary", c),
    }
}

/// What a Rollout meets beyond [`check`] on a cluster (the operator's webhook, `lanes
/// lint --cluster`): partition style is `lanes up`'s alone, since Kubernetes' own
/// Deployment controller does not honour a partition.
pub fn check_cluster(errs: &mut Vec<FieldError>, spec: &RolloutSpec) {
    if spec
        .strategy
        .canary
        .as_ref()
        .is_some_and(|c| c.enable_extra_workload_for_canary != Some(true))
    {
        errs.push(FieldError::new(
            "spec.strategy.canary.enableExtraWorkloadForCanary",
            "a partition-style release (false, or not set) needs a Deployment controller that \
             honours the partition, as lanes up's does; on a cluster set it to true: the canary \
             runs as a Deployment `<workload>-<revision>` whose pods join the canary lane",
        ));
    }
}

/// Kruise's annotation asking that a rollback run through the steps again.
pub const ROLLBACK_IN_BATCH: &str = "rollouts.kruise.io/rollback-in-batch";

/// The Rollout annotations Kruise reads that ask for what Lanes does not run: a rollback
/// in batches (Lanes cancels a release at once when the template goes back).
pub fn check_annotations(
    errs: &mut Vec<FieldError>,
    annotations: Option<&std::collections::BTreeMap<String, String>>,
) {
    if annotations.is_some_and(|a| a.get(ROLLBACK_IN_BATCH).is_some_and(|v| v == "true")) {
        errs.push(FieldError::new(
            format!("metadata.annotations[{ROLLBACK_IN_BATCH}]"),
            "Lanes does not roll back in batches: a template set back to the stable one \
             cancels the release at once (the stable pods never left); remove the annotation",
        ));
    }
}

fn check_workload(errs: &mut Vec<FieldError>, w: &WorkloadRef) {
    if w.name.is_empty() {
        errs.push(FieldError::new("spec.workloadRef.name", "is required"));
    }
    if w.kind.is_empty() {
        errs.push(FieldError::new("spec.workloadRef.kind", "is required"));
    } else if !is_deployment(w) {
        errs.push(FieldError::new(
            "spec.workloadRef",
            format!(
                "Lanes releases apps/v1 Deployments only, not {} {} (refused, so that the \
                 workload never rolls unguarded)",
                if w.api_version.is_empty() {
                    "<no apiVersion>"
                } else {
                    &w.api_version
                },
                w.kind
            ),
        ));
    }
}

/// Whether the reference names an `apps/v1` Deployment (the one workload Lanes releases).
pub fn is_deployment(w: &WorkloadRef) -> bool {
    w.kind == "Deployment" && w.api_version == "apps/v1"
}

fn check_canary(errs: &mut Vec<FieldError>, at: &str, c: &CanaryStrategy) {
    for (i, t) in c.traffic_routings.iter().enumerate() {
        errs.push(FieldError::new(
            format!("{at}.trafficRoutings[{i}]{}", provider_field(t)),
            "Lanes routes a release's traffic through the lane group of the workload's \
             Services (each step's traffic and matches); Ingress, Gateway API and custom \
             providers are not run: remove trafficRoutings",
        ));
    }
    if c.traffic_routing_ref.is_some() {
        errs.push(FieldError::new(
            format!("{at}.trafficRoutingRef"),
            "TrafficRouting objects are not run by Lanes: a release's traffic goes through \
             the lane group of the workload's Services",
        ));
    }
    check_steps(errs, at, &c.steps);
    match &c.failure_threshold {
        Some(IntOrString::Int(n)) if *n < 0 => errs.push(FieldError::new(
            format!("{at}.failureThreshold"),
            format!("must be 0 or more, got {n}"),
        )),
        Some(IntOrString::String(s)) if parse_percent(s).is_none() => errs.push(FieldError::new(
            format!("{at}.failureThreshold"),
            format!("expected an integer or a percentage, got {s:?}"),
        )),
        _ => {}
    }
    if let Some(a) = &c.analysis {
        check_analysis(errs, &format!("{at}.analysis"), a);
    }
    if let Some(d) = c.progress_deadline_seconds
        && d <= 0
    {
        errs.push(FieldError::new(
            format!("{at}.progressDeadlineSeconds"),
            format!("must be a positive number of seconds, got {d}"),
        ));
    }
    if let Some(meta) = &c.patch_pod_template_metadata {
        check_labels(
            errs,
            &format!("{at}.patchPodTemplateMetadata.labels"),
            &meta.labels,
        );
        if c.enable_extra_workload_for_canary != Some(true) && !meta.annotations.is_empty() {
            errs.push(FieldError::new(
                format!("{at}.patchPodTemplateMetadata.annotations"),
                "a partition-style release puts the new pods in the canary lane by \
                 patchPodTemplateMetadata's labels; annotations are not set on them (Kruise \
                 applies patchPodTemplateMetadata to a canary Deployment only): remove them, \
                 or set enableExtraWorkloadForCanary: true",
            ));
        }
    }
}

/// The most specific field of a traffic routing to name in its refusal.
fn provider_field(t: &TrafficRoutingRef) -> &'static str {
    if t.ingress.is_some() {
        ".ingress"
    } else if t.gateway.is_some() {
        ".gateway"
    } else if !t.custom_network_refs.is_empty() {
        ".customNetworkRefs"
    } else {
        ""
    }
}

/// A step's replicas as Kruise compares them: (is a percentage, value).
fn replicas_of(step: &CanaryStep) -> Option<(bool, i64)> {
    match step.replicas.as_ref()? {
        IntOrString::Int(n) => Some((false, i64::from(*n))),
        IntOrString::String(s) => parse_percent(s).map(|p| (true, i64::from(p))),
    }
}

fn check_steps(errs: &mut Vec<FieldError>, at: &str, steps: &[CanaryStep]) {
    if steps.is_empty() {
        errs.push(FieldError::new(
            format!("{at}.steps"),
            "at least one step is required",
        ));
    }
    for (i, step) in steps.iter().enumerate() {
        check_step(errs, &format!("{at}.steps[{i}]"), step);
    }
    // Kruise: canary replicas never decrease from one step to the next (where both
    // are counts or both are percentages).
    for (i, pair) in steps.windows(2).enumerate() {
        if let (Some((pp, prev)), Some((cp, cur))) = (replicas_of(&pair[0]), replicas_of(&pair[1]))
            && pp == cp
            && cur < prev
        {
            errs.push(FieldError::new(
                format!("{at}.steps[{}].replicas", i + 1),
                format!(
                    "canary replicas must not decrease from one step to the next ({} after {})",
                    show(&pair[1]),
                    show(&pair[0])
                ),
            ));
        }
    }
}

fn show(step: &CanaryStep) -> String {
    match &step.replicas {
        Some(IntOrString::Int(n)) => n.to_string(),
        Some(IntOrString::String(s)) => s.clone(),
        None => String::new(),
    }
}

fn check_step(errs: &mut Vec<FieldError>, here: &str, step: &CanaryStep) {
    match &step.replicas {
        None => errs.push(FieldError::new(
            format!("{here}.replicas"),
            "is required (canary pods of the step: a count, or a percentage of the workload's)",
        )),
        Some(IntOrString::Int(n)) if *n <= 0 => errs.push(FieldError::new(
            format!("{here}.replicas"),
            format!("must be 1 or more, got {n}"),
        )),
        Some(IntOrString::Int(_)) => {}
        Some(IntOrString::String(s)) => match parse_percent(s) {
            None => errs.push(FieldError::new(
                format!("{here}.replicas"),
                format!("expected an integer or a percentage, got {s:?}"),
            )),
            Some(0) => errs.push(FieldError::new(
                format!("{here}.replicas"),
                "must be more than 0%",
            )),
            Some(_) => {}
        },
    }
    if let Some(t) = &step.traffic {
        match parse_percent(t) {
            None => errs.push(FieldError::new(
                format!("{here}.traffic"),
                format!("expected a percentage such as \"20%\", got {t:?}"),
            )),
            Some(0) => errs.push(FieldError::new(
                format!("{here}.traffic"),
                "must be more than 0% (leave it out for a step that routes no traffic)",
            )),
            Some(_) => {}
        }
    }
    if let Some(d) = step.pause.as_ref().and_then(|p| p.duration)
        && d < 0
    {
        errs.push(FieldError::new(
            format!("{here}.pause.duration"),
            format!("must be 0 or more seconds, got {d}"),
        ));
    }
    match step.route_matches() {
        Err((path, message)) => errs.push(FieldError::new(format!("{here}.{path}"), message)),
        Ok(matches) => {
            for (i, m) in matches.iter().enumerate() {
                check_match(errs, &format!("{here}.matches[{i}]"), m);
            }
        }
    }
    if let Some(h) = &step.request_header_modifier {
        let names = h
            .set
            .iter()
            .chain(&h.add)
            .map(|v| v.name.as_str())
            .chain(h.remove.iter().map(String::as_str));
        for name in names {
            if !is_header_name(&name.to_ascii_lowercase()) {
                errs.push(FieldError::new(
                    format!("{here}.requestHeaderModifier"),
                    format!("{name:?} is not a valid HTTP header name"),
                ));
            }
        }
        for v in h.set.iter().chain(&h.add) {
            if !v
                .value
                .bytes()
                .all(|b| b == b'\t' || (0x20..=0x7e).contains(&b))
            {
                errs.push(FieldError::new(
                    format!("{here}.requestHeaderModifier"),
                    format!(
                        "the value of {:?} is not a valid HTTP header value (visible ASCII, spaces and tabs)",
                        v.name
                    ),
                ));
            }
        }
    }
}

/// What an analysis (at field path `at`) may not hold: a Rollout's, or a lane release's.
pub(crate) fn check_analysis(errs: &mut Vec<FieldError>, at: &str, a: &Analysis) {
    if a.interval.millis().is_none() {
        errs.push(FieldError::new(
            format!("{at}.interval"),
            format!(
                "expected a duration such as \"5s\" or \"1m\", or whole seconds, got {:?}",
                a.interval
            ),
        ));
    }
    if a.metrics.is_empty() {
        errs.push(FieldError::new(
            format!("{at}.metrics"),
            "at least one metric is required",
        ));
    }
    for (i, m) in a.metrics.iter().enumerate() {
        let kinds = [
            m.success_rate.is_some(),
            m.latency_p99.is_some(),
            m.prometheus.is_some(),
        ]
        .iter()
        .filter(|k| **k)
        .count();
        if kinds != 1 {
            errs.push(FieldError::new(
                format!("{at}.metrics[{i}]"),
                "exactly one of successRate, latencyP99 or prometheus is required",
            ));
        }
        if let Some(sr) = &m.success_rate
            && !(0.0..=1.0).contains(&sr.min)
        {
            errs.push(FieldError::new(
                format!("{at}.metrics[{i}].successRate.min"),
                format!("must be between 0 and 1, got {}", sr.min),
            ));
        }
        if let Some(p) = &m.prometheus
            && p.min.is_none()
            && p.max.is_none()
        {
            errs.push(FieldError::new(
                format!("{at}.metrics[{i}].prometheus"),
                "min or max is required",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::decode_str;

    /// The errors of a Rollout whose canary strategy is `canary` (YAML at indent 6).
    fn errors(workload: &str, canary: &str) -> Vec<String> {
        let text = format!(
            "apiVersion: rollouts.kruise.io/v1beta1\nkind: Rollout\nmetadata: {{name: r}}\nspec:\n  workloadRef: {workload}\n  strategy:\n    canary:\n      enableExtraWorkloadForCanary: true\n{canary}"
        );
        let (_, diags) = decode_str("r.yaml", &text);
        diags.iter().map(|d| d.to_string()).collect()
    }

    const DEPLOYMENT: &str = "{apiVersion: apps/v1, kind: Deployment, name: d}";

    #[track_caller]
    fn refused(canary: &str, field: &str, words: &str) {
        let e = errors(DEPLOYMENT, canary);
        assert!(
            e.iter()
                .any(|l| l.contains(&format!("Rollout/r: {field}: ")) && l.contains(words)),
            "{canary}: {e:#?}"
        );
    }

    #[test]
    fn kruise_step_rules() {
        assert!(
            errors(
                DEPLOYMENT,
                "      steps: [{replicas: 1}, {replicas: 50%, traffic: 50%}]\n"
            )
            .is_empty()
        );
        refused(
            "      steps: [{traffic: 10%}]\n",
            "spec.strategy.canary.steps[0].replicas",
            "is required",
        );
        refused(
            "      steps: [{replicas: 0}]\n",
            "spec.strategy.canary.steps[0].replicas",
            "1 or more",
        );
        refused(
            "      steps: [{replicas: 0%}]\n",
            "spec.strategy.canary.steps[0].replicas",
            "more than 0%",
        );
        refused(
            "      steps: [{replicas: 1, traffic: 0%}]\n",
            "spec.strategy.canary.steps[0].traffic",
            "more than 0%",
        );
        refused(
            "      steps: [{replicas: 50%}, {replicas: 20%}]\n",
            "spec.strategy.canary.steps[1].replicas",
            "must not decrease from one step to the next (20% after 50%)",
        );
        // Counts and percentages are not compared with each other, as in Kruise.
        assert!(
            errors(
                DEPLOYMENT,
                "      steps: [{replicas: 5}, {replicas: 20%}]\n"
            )
            .is_empty()
        );
        refused(
            "      steps: []\n",
            "spec.strategy.canary.steps",
            "at least one",
        );
        refused(
            "      steps: [{replicas: 1}]\n      failureThreshold: -1\n",
            "spec.strategy.canary.failureThreshold",
            "0 or more",
        );
    }

    #[test]
    fn step_matches_and_header_changes_are_checked() {
        assert!(errors(DEPLOYMENT, "      steps:\n        - replicas: 1\n          matches: [{headers: [{name: X-User, value: beta}], path: {value: /api}}]\n          requestHeaderModifier: {set: [{name: x-canary, value: '1'}]}\n").is_empty());
        refused(
            "      steps:\n        - replicas: 1\n          matches: [{headers: [{name: x, type: Prefix, value: a}]}]\n",
            "spec.strategy.canary.steps[0].matches[0].headers[0].type",
            "unknown match type \"Prefix\"",
        );
        refused(
            "      steps:\n        - replicas: 1\n          matches: [{headers: [{name: x, type: RegularExpression, value: '('}]}]\n",
            "spec.strategy.canary.steps[0].matches[0].headers.x.regex",
            "invalid regular expression",
        );
        refused(
            "      steps:\n        - replicas: 1\n          requestHeaderModifier: {remove: ['bad header']}\n",
            "spec.strategy.canary.steps[0].requestHeaderModifier",
            "not a valid HTTP header name",
        );
        refused(
            "      steps:\n        - replicas: 1\n          requestHeaderModifier: {set: [{name: x-a, value: \"caf\u{00e9}\"}]}\n",
            "spec.strategy.canary.steps[0].requestHeaderModifier",
            "not a valid HTTP header value",
        );
    }

    #[test]
    fn what_lanes_does_not_run_is_refused() {
        for workload in [
            "{apiVersion: apps/v1, kind: StatefulSet, name: d}",
            "{apiVersion: apps.kruise.io/v1alpha1, kind: CloneSet, name: d}",
        ] {
            let e = errors(workload, "      steps: [{replicas: 1}]\n");
            assert!(
                e.iter().any(
                    |l| l.contains("spec.workloadRef: Lanes releases apps/v1 Deployments only")
                ),
                "{e:#?}"
            );
        }
        refused(
            "      steps: [{replicas: 1}]\n      trafficRoutings: [{service: s, gateway: {httpRouteName: h}}]\n",
            "spec.strategy.canary.trafficRoutings[0].gateway",
            "remove trafficRoutings",
        );
        refused(
            "      steps: [{replicas: 1}]\n      trafficRoutings: [{service: s, customNetworkRefs: [{apiVersion: networking.istio.io/v1alpha3, kind: VirtualService, name: vs}]}]\n",
            "spec.strategy.canary.trafficRoutings[0].customNetworkRefs",
            "not run",
        );
        refused(
            "      steps: [{replicas: 1}]\n      trafficRoutingRef: tr\n",
            "spec.strategy.canary.trafficRoutingRef",
            "not run by Lanes",
        );
        // Kruise's rollback in batches is refused, naming the annotation.
        let text = format!(
            "apiVersion: rollouts.kruise.io/v1beta1\nkind: Rollout\nmetadata: {{name: r, annotations: {{rollouts.kruise.io/rollback-in-batch: 'true'}}}}\nspec:\n  workloadRef: {DEPLOYMENT}\n  strategy:\n    canary:\n      enableExtraWorkloadForCanary: true\n      steps: [{{replicas: 1}}]\n"
        );
        let (objs, diags) = decode_str("r.yaml", &text);
        assert!(objs.is_empty());
        assert!(
            diags[0]
                .to_string()
                .contains("metadata.annotations[rollouts.kruise.io/rollback-in-batch]: Lanes does not roll back in batches"),
            "{diags:?}"
        );
        // Kruise's default (unset) is partition style, as is `false`: both are run.
        for extra in ["", "      enableExtraWorkloadForCanary: false\n"] {
            let text = format!(
                "apiVersion: rollouts.kruise.io/v1beta1\nkind: Rollout\nmetadata: {{name: r}}\nspec:\n  workloadRef: {DEPLOYMENT}\n  strategy:\n    canary:\n{extra}      steps: [{{replicas: 1}}]\n"
            );
            let (objs, diags) = decode_str("r.yaml", &text);
            assert_eq!(objs.len(), 1, "{diags:?}");
            assert!(diags.is_empty(), "{diags:?}");
            // Its pods take patchPodTemplateMetadata's labels; annotations are refused.
            let annotated =
                format!("{text}      patchPodTemplateMetadata: {{annotations: {{a: b}}}}\n");
            let (objs, diags) = decode_str("r.yaml", &annotated);
            assert!(objs.is_empty());
            assert!(
                diags[0].to_string().contains(
                    "spec.strategy.canary.patchPodTemplateMetadata.annotations: a partition-style release"
                ),
                "{diags:?}"
            );
        }
    }
}
