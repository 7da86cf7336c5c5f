//! What the controller observes: the workload, its canary Deployments, their pods and
//! the canary's traffic, as plain values the state machine reads.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
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
    /// `spec.minReadySeconds` (the canary inherits it).
    pub min_ready_seconds: Option<i32>,
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
    /// The release's id, the label `rollouts.kruise.io/rollout-id`.
    pub rollout_id: Option<String>,
    /// The partition its annotation holds (a partition-style release): how many of its
    /// pods run the new template, a number or a percentage of its replicas.
    pub partition: Option<k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>,
}

impl Workload {
    /// Reads a Deployment (its template and selector as JSON, as the hashes and the
    /// canary take them).
    pub fn from_deployment(d: &Deployment) -> Option<Workload> {
        let spec = d.spec.as_ref();
        let status = d.status.as_ref();
        let json = |v: Option<Value>| v.unwrap_or(Value::Null);
        let stable = d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(STABLE_TEMPLATE))
            .and_then(|s| serde_json::from_str(s).ok());
        Some(Workload {
            name: d.metadata.name.clone()?,
            generation: d.metadata.generation.unwrap_or(0),
            replicas: spec.and_then(|s| s.replicas).unwrap_or(1),
            selector: json(spec.and_then(|s| serde_json::to_value(&s.selector).ok())),
            template: json(spec.and_then(|s| serde_json::to_value(&s.template).ok())),
            paused: spec.and_then(|s| s.paused).unwrap_or(false),
            min_ready_seconds: spec.and_then(|s| s.min_ready_seconds),
            stable_template: stable,
            observed_generation: status.and_then(|s| s.observed_generation).unwrap_or(0),
            updated: status.and_then(|s| s.updated_replicas).unwrap_or(0),
            available: status.and_then(|s| s.available_replicas).unwrap_or(0),
            total: status.and_then(|s| s.replicas).unwrap_or(0),
            partition: lanes_model::partition::partition_value(d.metadata.annotations.as_ref()),
            rollout_id: d
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(crate::ROLLOUT_ID_LABEL))
                .cloned(),
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

    /// How many pods its partition puts at the new template (none without one).
    pub fn partitioned(&self) -> i32 {
        self.partition
            .as_ref()
            .and_then(|p| lanes_model::partition::count(p, self.replicas))
            .unwrap_or(0)
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
    /// The `pod-template-hash` its pods carry (Kruise's `podTemplateHash`), once one
    /// runs: on a cluster the hash of its ReplicaSet, in `lanes up` Lanes' own.
    pub pod_hash: Option<String>,
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
    /// A partition-style release's canary: the workload's own pods at the new template
    /// (named as the workload; `replicas` the pods there are), while it has any.
    pub partition: Option<Canary>,
    /// The canary's pods and their release labels (read when the workload names a
    /// release with `rollouts.kruise.io/rollout-id`).
    pub canary_pods: Vec<crate::CanaryPod>,
    /// Now.
    pub now: jiff::Timestamp,
    /// Cumulative counts of the canary's attempts now (for analysis).
    pub sample: Option<Sample>,
    /// Why canary pods are not ready, when the runtime says (for the progress deadline).
    pub canary_problem: Option<String>,
    /// Values of the `prometheus` metrics, by metric name, when the driver queried them.
    pub external: std::collections::BTreeMap<String, Result<f64, String>>,
    /// The canary's share in each generated ingress route of the release (one per lane
    /// group that routes it), for a Rollout whose steps route traffic.
    pub routed: Vec<u32>,
    /// The gate of the LaneRelease that holds this Rollout's release, if one does.
    pub gate: Option<crate::lane_release::Gate>,
}

/// Why a pod is not running, as its first container's status says (`pod NAME: REASON:
/// MESSAGE`), for the progress deadline's message; `None` when it is not waiting.
pub fn pod_problem(pod: &Pod) -> Option<String> {
    let first = pod.status.as_ref()?.container_statuses.as_ref()?.first()?;
    let waiting = first.state.as_ref()?.waiting.as_ref()?;
    Some(format!(
        "pod {}: {}: {}",
        pod.metadata.name.as_deref().unwrap_or(""),
        waiting.reason.as_deref().unwrap_or(""),
        waiting.message.as_deref().unwrap_or("")
    ))
}

/// Whether a pod belongs to one of the canary Deployments: its controller is the
/// Deployment itself (pods as `lanes up` runs them) or one of its ReplicaSets,
/// `<deployment>-<hash>` (pods as a cluster runs them).
pub fn owned_by_canary(pod: &Pod, canaries: &[Canary]) -> bool {
    let owners = pod.metadata.owner_references.iter().flatten();
    owners.into_iter().any(|o| {
        canaries.iter().any(|c| match o.kind.as_str() {
            "Deployment" => o.name == c.name,
            "ReplicaSet" => o
                .name
                .strip_prefix(c.name.as_str())
                .is_some_and(|rest| rest.starts_with('-')),
            _ => false,
        })
    })
}
