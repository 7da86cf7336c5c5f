//! Kruise's partition-style release of a Deployment (its "advanced deployment"): no
//! extra Deployment; while the release runs the workload stays paused, and the
//! annotation `rollouts.kruise.io/deployment-strategy` says how many of its own pods run
//! the new template. The Deployment controller keeps that many pods at the new template
//! and the others at the revision they run.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::{Deserialize, Serialize};

/// Annotation on the workload holding the stable pod template while a release runs
/// (written at admission when the template changes under a Rollout).
pub const STABLE_TEMPLATE: &str = "lanes.dev/stable-template";

/// The Deployment annotation carrying the partition.
pub const DEPLOYMENT_STRATEGY: &str = "rollouts.kruise.io/deployment-strategy";

/// How a Deployment rolls, as Kruise writes it into [`DEPLOYMENT_STRATEGY`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentStrategy {
    /// `Partition` for a partition-style release.
    pub rolling_style: String,
    /// How many pods run the new template: a number, or a percentage of the replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<IntOrString>,
}

/// The rolling style of a partition-style release.
pub const PARTITION_STYLE: &str = "Partition";

impl DeploymentStrategy {
    /// A partition of `n` pods (or a percentage of the replicas) at the new template.
    pub fn partition(n: IntOrString) -> DeploymentStrategy {
        DeploymentStrategy {
            rolling_style: PARTITION_STYLE.into(),
            partition: Some(n),
        }
    }

    /// The annotation's value.
    pub fn to_annotation(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The partition the annotations hold, when they hold a partition-style strategy.
pub fn partition_value(annotations: Option<&BTreeMap<String, String>>) -> Option<IntOrString> {
    let raw = annotations?.get(DEPLOYMENT_STRATEGY)?;
    let strategy: DeploymentStrategy = serde_json::from_str(raw).ok()?;
    (strategy.rolling_style == PARTITION_STYLE)
        .then_some(strategy.partition)
        .flatten()
}

/// How many of `replicas` pods a partition is (a percentage rounds up, as Kruise's);
/// never more than the replicas nor fewer than none; `None` for a percentage that does
/// not read.
pub fn count(partition: &IntOrString, replicas: i32) -> Option<i32> {
    let replicas = replicas.max(0);
    let n = match partition {
        IntOrString::Int(n) => *n,
        IntOrString::String(s) => {
            let pct = crate::validate::parse_percent(s)? as i64;
            ((replicas as i64 * pct + 99) / 100) as i32
        }
    };
    Some(n.clamp(0, replicas))
}

/// How many of `replicas` pods the annotations say run the new template.
pub fn partition_of(annotations: Option<&BTreeMap<String, String>>, replicas: i32) -> Option<i32> {
    count(&partition_value(annotations)?, replicas)
}

/// The partition a Deployment's controller carries out, with the stable template the
/// other pods keep: the annotations' partition, only while a release of the current
/// template runs (the stable template recorded and
/// different from `template`). A template set back to the stable one (an undo) is
/// never split by the partition left from its release.
pub fn active_partition(
    annotations: Option<&BTreeMap<String, String>>,
    template: &serde_json::Value,
    replicas: i32,
) -> Option<(i32, serde_json::Value)> {
    let stable: serde_json::Value =
        serde_json::from_str(annotations?.get(STABLE_TEMPLATE)?).ok()?;
    if crate::hash::template_hash(&stable) == crate::hash::template_hash(template) {
        return None;
    }
    Some((partition_of(annotations, replicas)?, stable))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotated(v: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(DEPLOYMENT_STRATEGY.to_string(), v.to_string())])
    }

    #[test]
    fn a_partition_reads_back_from_its_annotation() {
        let a = annotated(&DeploymentStrategy::partition(IntOrString::Int(2)).to_annotation());
        assert_eq!(partition_of(Some(&a), 5), Some(2));
        // Never beyond the replicas.
        assert_eq!(partition_of(Some(&a), 1), Some(1));
    }

    #[test]
    fn percentages_round_up_and_other_styles_or_garbage_say_nothing() {
        let pct = annotated(r#"{"rollingStyle":"Partition","partition":"20%"}"#);
        assert_eq!(partition_of(Some(&pct), 4), Some(1));
        assert_eq!(partition_of(Some(&pct), 10), Some(2));
        let canary = annotated(r#"{"rollingStyle":"Canary","partition":1}"#);
        assert_eq!(partition_of(Some(&canary), 4), None);
        assert_eq!(partition_of(Some(&annotated("{not json")), 4), None);
        assert_eq!(partition_of(None, 4), None);
    }

    #[test]
    fn a_partition_holds_only_while_the_template_differs_from_the_stable_one() {
        let v1 = serde_json::json!({"spec": {"containers": [{"name": "a", "image": "x:1"}]}});
        let v2 = serde_json::json!({"spec": {"containers": [{"name": "a", "image": "x:2"}]}});
        let mut a = annotated(&DeploymentStrategy::partition(IntOrString::Int(1)).to_annotation());
        // No stable template recorded: no release, no partition.
        assert_eq!(active_partition(Some(&a), &v2, 3), None);
        a.insert(STABLE_TEMPLATE.into(), v1.to_string());
        assert_eq!(active_partition(Some(&a), &v2, 3), Some((1, v1.clone())));
        // Undone: the template is the stable one again.
        assert_eq!(active_partition(Some(&a), &v1, 3), None);
    }
}
