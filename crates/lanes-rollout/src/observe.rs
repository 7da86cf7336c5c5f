//! What the controller observes: the workload, its canary Deployments, their pods and
//! the canary's traffic, as plain values the state machine reads.

use lanes_model::rollout::{Rollout, Sample};
use serde_json::Value;

use crate::STABLE_TEMPLATE;

/// The workload as the controller sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// Name.
    pub name: String,
    /// Generation.
    pub generation: i64,
    /// `spec.replicas`.
    pub replicas: i32,
    /// `spec.selector.matchLabels`.
    pub selector: Value,
    /// `spec.template`.
    pub template: Value,
    /// `spec.paused`.
    pub paused: bool,
    /// The stable template recorded when the release started.
    pub stable_template: Option<Value>,
    /// `status.observedGeneration`.
    pub observed_generation: i64,
    /// `status.updatedReplicas`.
    pub updated: i32,
    /// `status.availableReplicas`.
    pub available: i32,
    /// `status.replicas`.
    pub total: i32,
}

impl Workload {
    /// Reads a Deployment's JSON.
    pub fn from_value(v: &Value) -> Option<Workload> {
        let int = |p: &str| v.pointer(p).and_then(Value::as_i64).unwrap_or(0);
        let stable = v
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(STABLE_TEMPLATE))
            .and_then(Value::as_str)
            .and_then(|s| serde_json::from_str(s).ok());
        Some(Workload {
            name: v.pointer("/metadata/name")?.as_str()?.to_string(),
            generation: int("/metadata/generation"),
            replicas: v
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1) as i32,
            selector: v.pointer("/spec/selector").cloned().unwrap_or(Value::Null),
            template: v.pointer("/spec/template").cloned().unwrap_or(Value::Null),
            paused: v
                .pointer("/spec/paused")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            stable_template: stable,
            observed_generation: int("/status/observedGeneration"),
            updated: int("/status/updatedReplicas") as i32,
            available: int("/status/availableReplicas") as i32,
            total: int("/status/replicas") as i32,
        })
    }

    /// The hash of the current template.
    pub fn revision(&self) -> String {
        lanes_model::hash::template_hash(&self.template)
    }

    /// The hash of the stable template (the current one when no release runs).
    pub fn stable_revision(&self) -> String {
        self.stable_template
            .as_ref()
            .map_or_else(|| self.revision(), lanes_model::hash::template_hash)
    }

    /// Whether a release is under way: the admission recorded a stable template and the
    /// current one differs from it.
    pub fn is_releasing(&self) -> bool {
        self.stable_template.is_some() && self.revision() != self.stable_revision()
    }

    /// Whether the Deployment finished rolling to its current template.
    pub fn rolled_out(&self) -> bool {
        self.observed_generation >= self.generation
            && self.updated == self.replicas
            && self.available == self.replicas
            && self.total == self.replicas
    }
}

/// A canary Deployment as the controller sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canary {
    /// Name.
    pub name: String,
    /// `spec.replicas`.
    pub replicas: i32,
    /// `status.readyReplicas`.
    pub ready: i32,
}

/// What the controller observed.
#[derive(Debug, Clone)]
pub struct Observed<'a> {
    /// The Rollout.
    pub rollout: &'a Rollout,
    /// Its generation.
    pub generation: i64,
    /// The workload, if it exists.
    pub workload: Option<Workload>,
    /// Canary Deployments of the workload.
    pub canaries: Vec<Canary>,
    /// Now.
    pub now: jiff::Timestamp,
    /// Cumulative counts of the canary's attempts now (for analysis).
    pub sample: Option<Sample>,
    /// Why canary pods are not ready, when the runtime says (for the progress deadline).
    pub canary_problem: Option<String>,
    /// Values of the `prometheus` metrics, by metric name, when the driver queried them.
    pub external: std::collections::BTreeMap<String, Result<f64, String>>,
}

/// Why a pod is not running, as its first container's status says (`pod NAME: REASON:
/// MESSAGE`), for the progress deadline's message; `None` when it is not waiting.
pub fn pod_problem(pod: &Value) -> Option<String> {
    let w = pod.pointer("/status/containerStatuses/0/state/waiting")?;
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    Some(format!(
        "pod {name}: {}: {}",
        s(w, "reason"),
        s(w, "message")
    ))
}

/// Whether a pod belongs to one of the canary Deployments: its controller is the
/// Deployment itself (pods as `lanes up` runs them) or one of its ReplicaSets,
/// `<deployment>-<hash>` (pods as a cluster runs them).
pub fn owned_by_canary(pod: &Value, canaries: &[Canary]) -> bool {
    let owners = pod
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array);
    owners.into_iter().flatten().any(|o| {
        let name = o.get("name").and_then(Value::as_str).unwrap_or("");
        canaries
            .iter()
            .any(|c| match o.get("kind").and_then(Value::as_str) {
                Some("Deployment") => name == c.name,
                Some("ReplicaSet") => name
                    .strip_prefix(c.name.as_str())
                    .is_some_and(|rest| rest.starts_with('-')),
                _ => false,
            })
    })
}
