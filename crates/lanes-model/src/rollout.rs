//! Kruise Rollout (`rollouts.kruise.io/v1beta1`): a progressive release of a workload.
//! `v1alpha1` objects are read and converted by [`convert_v1alpha1`].

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::istio::{HttpMatchRequest, StringMatch};

/// A release plan for one workload.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    derive = "PartialEq",
    group = "rollouts.kruise.io",
    version = "v1beta1",
    kind = "Rollout",
    plural = "rollouts",
    shortname = "ro",
    namespaced,
    status = "RolloutStatus",
    printcolumn = r#"{"name":"STATUS","type":"string","description":"The rollout status phase","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"CANARY_STEP","type":"integer","description":"The rollout canary status step","jsonPath":".status.currentStepIndex"}"#,
    printcolumn = r#"{"name":"CANARY_STATE","type":"string","description":"The rollout canary status step state","jsonPath":".status.currentStepState"}"#,
    printcolumn = r#"{"name":"MESSAGE","type":"string","description":"The rollout canary status message","jsonPath":".status.message"}"#,
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// The workload being released (a Deployment in the Rollout's namespace).
    #[serde(default)]
    pub workload_ref: WorkloadRef,
    /// The release strategy.
    #[serde(default)]
    pub strategy: RolloutStrategy,
    /// A disabled Rollout leaves its workload alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
}

/// A reference to the released workload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRef {
    /// API version of the workload (`apps/v1`).
    #[serde(default)]
    pub api_version: String,
    /// Kind of the workload (`Deployment`).
    #[serde(default)]
    pub kind: String,
    /// Name of the workload.
    #[serde(default)]
    pub name: String,
}

/// The strategy: canary (what Lanes runs) or blue-green (accepted, not run).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStrategy {
    /// Canary release in steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStrategy>,
    /// Blue-green release (Lanes accepts it but runs canary strategies only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<CanaryStrategy>,
    /// A paused Rollout does not advance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
}

/// Steps and options of a canary (or blue-green) release.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStrategy {
    /// The steps, in order.
    #[serde(default)]
    pub steps: Vec<CanaryStep>,
    /// Traffic routing providers (kept for Kruise compatibility).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub traffic_routings: Vec<TrafficRoutingRef>,
    /// Name of a TrafficRouting object (kept for Kruise compatibility).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_routing_ref: Option<String>,
    /// Run the canary as an extra Deployment `<workload>-<hash>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_extra_workload_for_canary: Option<bool>,
    /// Labels and annotations added to the canary pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_pod_template_metadata: Option<PatchPodTemplateMetadata>,
    /// Unavailable canary pods tolerated before a step counts as ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::schema::IntOrStringSchema>")]
    pub failure_threshold: Option<IntOrString>,
    /// Kruise: do not create the canary Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_generate_canary_service: Option<bool>,
    /// Lanes: judge the canary from the data plane's metrics while steps run and pause.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Analysis>,
    /// Lanes: seconds a step may wait for its canary to be ready before the release
    /// fails and rolls back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_seconds: Option<i64>,
}

/// A duration: `"5s"`, `"1m"`, `"1h"`, `"250ms"`, or whole seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum DurationSpec {
    /// Whole seconds.
    Seconds(i64),
    /// A number and a unit.
    Text(String),
}

impl DurationSpec {
    /// The duration in milliseconds, if well formed and positive.
    pub fn millis(&self) -> Option<u64> {
        match self {
            DurationSpec::Seconds(s) if *s > 0 => Some(*s as u64 * 1000),
            DurationSpec::Seconds(_) => None,
            DurationSpec::Text(t) => {
                let t = t.trim();
                let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
                let (n, unit) = t.split_at(split);
                let n: u64 = n.parse().ok()?;
                let ms = match unit {
                    "ms" => n,
                    "s" | "" => n * 1000,
                    "m" => n * 60_000,
                    "h" => n * 3_600_000,
                    _ => return None,
                };
                (ms > 0).then_some(ms)
            }
        }
    }
}

/// What to do when analysis fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Roll back, as `undo` does.
    #[default]
    Rollback,
    /// Pause the release (`spec.strategy.paused`).
    Pause,
}

/// Metric analysis of a canary (a Lanes extension of the canary strategy).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Analysis {
    /// Time between measurements.
    pub interval: DurationSpec,
    /// Failed measurements tolerated; one more ends the release.
    #[serde(default)]
    pub failure_limit: u32,
    /// Fewer requests than this in an interval make the measurement inconclusive.
    #[serde(default)]
    pub min_requests: u64,
    /// What ends a failed release.
    #[serde(default)]
    pub on_failure: OnFailure,
    /// The metrics judged.
    #[serde(default)]
    pub metrics: Vec<AnalysisMetric>,
}

/// One judged metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisMetric {
    /// Name, shown in measurements.
    pub name: String,
    /// Share of canary attempts that succeed (not 5xx, not a connect error or reset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_rate: Option<SuccessRate>,
    /// 99th percentile latency of canary attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_p99: Option<LatencyP99>,
    /// An external Prometheus query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusMetric>,
}

/// Bound of a success rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SuccessRate {
    /// Lowest passing rate, 0..=1.
    pub min: f64,
}

/// Bound of a latency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LatencyP99 {
    /// Highest passing p99, in milliseconds.
    pub max_ms: f64,
}

/// A Prometheus query and its bounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PrometheusMetric {
    /// Prometheus base URL (`http://127.0.0.1:9090`).
    pub address: String,
    /// An instant query returning one number.
    pub query: String,
    /// Lowest passing value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Highest passing value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

/// One step of a release.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStep {
    /// Canary replicas: an integer or a percentage of the workload's replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::schema::IntOrStringSchema>")]
    pub replicas: Option<IntOrString>,
    /// Share of traffic to the canary, as a percentage string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<String>,
    /// Requests that go to the canary whatever the weight.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<HttpRouteMatch>,
    /// Pause after the step: a duration in seconds, or until approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<RolloutPause>,
    /// Header changes for canary requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_header_modifier: Option<HeaderModifier>,
}

impl CanaryStep {
    /// The step's `matches` as the route table's conditions (Gateway API semantics:
    /// a header or query parameter matches `Exact` unless `RegularExpression` is
    /// named; a path matches `PathPrefix` unless `Exact` or `RegularExpression` is).
    /// `Err` names the condition, relative to the step, whose type is unknown.
    pub fn route_matches(&self) -> Result<Vec<HttpMatchRequest>, (String, String)> {
        self.matches
            .iter()
            .enumerate()
            .map(|(i, m)| m.to_route(&format!("matches[{i}]")))
            .collect()
    }

    /// The percentage of traffic the step sends into the canary, if it names one.
    pub fn traffic_percent(&self) -> Option<u32> {
        self.traffic
            .as_deref()
            .and_then(crate::validate::parse_percent)
    }
}

impl Rollout {
    /// The labels of the canary's pods on a workload whose pod template carries
    /// `template`: those, with `patchPodTemplateMetadata`'s laid over.
    pub fn canary_pod_labels(
        &self,
        template: &BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        let mut labels = template.clone();
        if let Some(meta) = self
            .spec
            .strategy
            .canary
            .as_ref()
            .and_then(|c| c.patch_pod_template_metadata.as_ref())
        {
            labels.extend(meta.labels.clone());
        }
        labels
    }

    /// Whether the release routes traffic into the canary lane in steps: some step
    /// names `traffic` or `matches`.
    pub fn routes_traffic(&self) -> bool {
        self.spec.strategy.canary.as_ref().is_some_and(|c| {
            c.steps
                .iter()
                .any(|s| s.traffic.is_some() || !s.matches.is_empty())
        })
    }

    /// The step whose traffic the ingress carries now, 0-based, if any: while a release
    /// is in flight, the current step once its canary is up (`StepTrafficRouting` and
    /// after), the step before while the current one's canary comes up, and a step that
    /// names neither traffic nor matches keeps the one before it. None at rest, when
    /// finalising and after a rollback: all traffic is the baseline's.
    pub fn routed_step(&self) -> Option<(usize, &CanaryStep)> {
        let steps = &self.spec.strategy.canary.as_ref()?.steps;
        let status = self.status.as_ref()?;
        if status.phase != Some(RolloutPhase::Progressing) {
            return None;
        }
        let canary = status.canary_status.as_ref()?;
        let current = usize::try_from(canary.current_step_index).ok()?;
        let upto = match canary.current_step_state {
            StepState::BeforeUpgrade | StepState::Upgrade => current.checked_sub(1)?,
            StepState::Completed => return None,
            StepState::TrafficRouting
            | StepState::MetricsAnalysis
            | StepState::Paused
            | StepState::Ready => current,
        };
        steps
            .iter()
            .enumerate()
            .take(upto.min(steps.len()))
            .rev()
            .find(|(_, s)| s.traffic.is_some() || !s.matches.is_empty())
    }
}

impl HttpRouteMatch {
    fn to_route(&self, at: &str) -> Result<HttpMatchRequest, (String, String)> {
        let named = |list: &[NamedMatch], field: &str| {
            list.iter()
                .enumerate()
                .map(|(j, n)| {
                    let sm = string_match(n.kind.as_deref(), "Exact", &n.value)
                        .ok_or_else(|| unknown_type(&format!("{at}.{field}[{j}].type"), &n.kind))?;
                    Ok((n.name.to_ascii_lowercase(), sm))
                })
                .collect::<Result<BTreeMap<_, _>, (String, String)>>()
        };
        let uri = match &self.path {
            None => None,
            Some(p) => Some(
                string_match(
                    p.kind.as_deref(),
                    "PathPrefix",
                    p.value.as_deref().unwrap_or("/"),
                )
                .ok_or_else(|| unknown_type(&format!("{at}.path.type"), &p.kind))?,
            ),
        };
        Ok(HttpMatchRequest {
            headers: named(&self.headers, "headers")?,
            query_params: named(&self.query_params, "queryParams")?,
            uri,
            ..Default::default()
        })
    }
}

fn unknown_type(at: &str, kind: &Option<String>) -> (String, String) {
    (
        at.to_string(),
        format!(
            "unknown match type {:?} (Exact, PathPrefix for a path, or RegularExpression)",
            kind.as_deref().unwrap_or("")
        ),
    )
}

fn string_match(kind: Option<&str>, default: &str, value: &str) -> Option<StringMatch> {
    let value = Some(value.to_string());
    let none = StringMatch {
        exact: None,
        prefix: None,
        regex: None,
    };
    match kind.unwrap_or(default) {
        "Exact" => Some(StringMatch {
            exact: value,
            ..none
        }),
        "PathPrefix" if default == "PathPrefix" => Some(StringMatch {
            prefix: value,
            ..none
        }),
        "RegularExpression" => Some(StringMatch {
            regex: value,
            ..none
        }),
        _ => None,
    }
}

/// A step's pause.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RolloutPause {
    /// Seconds to wait; none means wait for approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<i64>,
}

/// A Gateway-API style request match of a step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteMatch {
    /// Header conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<NamedMatch>,
    /// Path condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathMatch>,
    /// Query parameter conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_params: Vec<NamedMatch>,
}

/// A named value condition (`Exact` or `RegularExpression`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NamedMatch {
    /// Header or parameter name.
    pub name: String,
    /// Match type.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Value.
    #[serde(default)]
    pub value: String,
}

/// A path condition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PathMatch {
    /// Match type.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Header changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HeaderModifier {
    /// Headers to set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<HeaderValue>,
    /// Headers to add.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<HeaderValue>,
    /// Headers to remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// A header name and value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HeaderValue {
    /// Name.
    pub name: String,
    /// Value.
    pub value: String,
}

/// A Kruise traffic routing reference (kept, not acted upon: Lanes routes by lane).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficRoutingRef {
    /// The stable Service.
    #[serde(default)]
    pub service: String,
    /// Seconds to wait after changing traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period_seconds: Option<i64>,
    /// Ingress provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressProvider>,
    /// Gateway API provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayProvider>,
    /// Custom providers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom_network_refs: Vec<CustomNetworkRef>,
}

/// Ingress traffic provider.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressProvider {
    /// Ingress class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_type: Option<String>,
    /// Ingress name.
    #[serde(default)]
    pub name: String,
}

/// Gateway API traffic provider.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayProvider {
    /// HTTPRoute name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_route_name: Option<String>,
}

/// Custom traffic provider.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomNetworkRef {
    /// API version.
    #[serde(default)]
    pub api_version: String,
    /// Kind.
    #[serde(default)]
    pub kind: String,
    /// Name.
    #[serde(default)]
    pub name: String,
}

/// Labels and annotations patched onto canary pods.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PatchPodTemplateMetadata {
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Status of a Rollout, as Kruise writes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// Generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Initial, Healthy, Progressing, Terminating or Disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub phase: Option<RolloutPhase>,
    /// Progress of the current canary release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_status: Option<CanaryStatus>,
    /// Current step, 1-based (mirrors the canary status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step_index: Option<i32>,
    /// Current step state (mirrors the canary status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub current_step_state: Option<StepState>,
    /// Human-readable state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<RolloutCondition>,
    /// Lanes: the canary's analysis in the current release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisStatus>,
}

/// A Rollout's phase, with Kruise's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RolloutPhase {
    /// Not yet running: no workload, or just created.
    Initial,
    /// No release in flight; the workload is on its stable revision.
    Healthy,
    /// A release is in flight.
    Progressing,
    /// The Rollout is being deleted.
    Terminating,
    /// Disabled, or a strategy Lanes does not run.
    Disabled,
}

impl RolloutPhase {
    /// Kruise's name of the phase.
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutPhase::Initial => "Initial",
            RolloutPhase::Healthy => "Healthy",
            RolloutPhase::Progressing => "Progressing",
            RolloutPhase::Terminating => "Terminating",
            RolloutPhase::Disabled => "Disabled",
        }
    }
}

impl std::fmt::Display for RolloutPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state of a release's current step, with Kruise's names: a step goes
/// (`BeforeStepUpgrade` →) `StepUpgrade` → `StepTrafficRouting` → `StepMetricsAnalysis` → `StepPaused` →
/// `StepReady`, and the release ends `Completed`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StepState {
    /// A step about to begin (after a step jump or the step before).
    #[serde(rename = "BeforeStepUpgrade")]
    BeforeUpgrade,
    /// Canary replicas being brought up.
    #[default]
    #[serde(rename = "StepUpgrade")]
    Upgrade,
    /// Traffic being routed (lanes route by label: immediate).
    #[serde(rename = "StepTrafficRouting")]
    TrafficRouting,
    /// Metrics being analysed.
    #[serde(rename = "StepMetricsAnalysis")]
    MetricsAnalysis,
    /// Waiting for the pause duration or for approval.
    #[serde(rename = "StepPaused")]
    Paused,
    /// Approved: on to the next step.
    #[serde(rename = "StepReady")]
    Ready,
    /// Every step done: finalising, then settled.
    Completed,
}

impl StepState {
    /// Kruise's name of the state.
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::BeforeUpgrade => "BeforeStepUpgrade",
            StepState::Upgrade => "StepUpgrade",
            StepState::TrafficRouting => "StepTrafficRouting",
            StepState::MetricsAnalysis => "StepMetricsAnalysis",
            StepState::Paused => "StepPaused",
            StepState::Ready => "StepReady",
            StepState::Completed => "Completed",
        }
    }
}

impl std::fmt::Display for StepState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The record of a release's analysis.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisStatus {
    /// The canary revision analysed.
    #[serde(default)]
    pub revision: String,
    /// The sample the next measurement is taken against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sample: Option<Sample>,
    /// Failed measurements so far.
    #[serde(default)]
    pub failures: u32,
    /// Passed measurements so far.
    #[serde(default)]
    pub passes: u32,
    /// The latest measurements, newest last (at most 20).
    #[serde(default)]
    pub measurements: Vec<Measurement>,
}

/// Cumulative counts of the canary's attempts at one time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    /// When (RFC 3339).
    pub time: String,
    /// Attempts.
    pub total: u64,
    /// Failed attempts.
    pub failures: u64,
    /// Attempts per latency bucket (cumulative counts per upper bound in ms).
    #[serde(default)]
    pub buckets: Vec<u64>,
}

/// One measurement.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Measurement {
    /// When (RFC 3339).
    pub time: String,
    /// The metric's name.
    pub metric: String,
    /// The value measured, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// `Passed`, `Failed` or `Inconclusive`.
    #[schemars(with = "String")]
    pub verdict: Verdict,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What one measurement says of the canary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// Within bounds.
    Passed,
    /// Out of bounds.
    Failed,
    /// Not enough data (never held against the canary).
    #[default]
    Inconclusive,
}

/// Progress of a canary release.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatus {
    /// Rollout id observed (Kruise spells it `observedRolloutID`).
    #[serde(
        default,
        rename = "observedRolloutID",
        skip_serializing_if = "Option::is_none"
    )]
    pub observed_rollout_id: Option<String>,
    /// Workload generation observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_workload_generation: Option<i64>,
    /// Hash of the rollout strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_hash: Option<String>,
    /// Revision of the stable pod template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_revision: Option<String>,
    /// Revision of the canary pod template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_revision: Option<String>,
    /// Pod-template hash of the canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template_hash: Option<String>,
    /// Canary replicas wanted.
    #[serde(default)]
    pub canary_replicas: i32,
    /// Canary replicas ready.
    #[serde(default)]
    pub canary_ready_replicas: i32,
    /// Next step to go to (set by approval in newer Kruise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_step_index: Option<i32>,
    /// Current step, 1-based.
    #[serde(default)]
    pub current_step_index: i32,
    /// StepUpgrade, StepTrafficRouting, StepMetricsAnalysis, StepPaused, StepReady, Completed.
    #[serde(default)]
    #[schemars(with = "String")]
    pub current_step_state: StepState,
    /// Finalising sub-step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finalising_step: Option<String>,
    /// Human-readable state of the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the step state last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<String>,
}

/// A condition of a Rollout.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutCondition {
    /// Condition type.
    #[serde(rename = "type")]
    pub kind: String,
    /// True, False or Unknown.
    pub status: String,
    /// Machine-readable reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Last update (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<String>,
    /// Last transition (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

/// The Kruise annotation that chooses canary (extra Deployment) or partition style in v1alpha1.
pub const ROLLING_STYLE_ANNOTATION: &str = "rollouts.kruise.io/rolling-style";

/// Rewrites a `rollouts.kruise.io/v1alpha1` Rollout as v1beta1, in place:
/// `spec.objectRef.workloadRef` → `spec.workloadRef`, step `weight: N` → `traffic: "N%"`,
/// the rolling-style annotation → `enableExtraWorkloadForCanary`.
pub fn convert_v1alpha1(raw: &mut Value) {
    let rolling_style = raw
        .pointer(&format!(
            "/metadata/annotations/{}",
            ROLLING_STYLE_ANNOTATION.replace('/', "~1")
        ))
        .and_then(Value::as_str)
        .map(str::to_owned);
    if let Some(obj) = raw.as_object_mut() {
        obj.insert(
            "apiVersion".into(),
            Value::String("rollouts.kruise.io/v1beta1".into()),
        );
    }
    let Some(spec) = raw.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(Value::Object(mut object_ref)) = spec.remove("objectRef")
        && let Some(workload) = object_ref.remove("workloadRef")
    {
        spec.insert("workloadRef".into(), workload);
    }
    let Some(canary) = spec
        .get_mut("strategy")
        .and_then(|s| s.get_mut("canary"))
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    if !canary.contains_key("enableExtraWorkloadForCanary") {
        let extra = rolling_style.as_deref() != Some("partition");
        canary.insert("enableExtraWorkloadForCanary".into(), Value::Bool(extra));
    }
    if let Some(steps) = canary.get_mut("steps").and_then(Value::as_array_mut) {
        for step in steps.iter_mut().filter_map(Value::as_object_mut) {
            if let Some(weight) = step.remove("weight") {
                let traffic = match weight {
                    Value::Number(n) => format!("{n}%"),
                    Value::String(s) if s.ends_with('%') => s,
                    Value::String(s) => format!("{s}%"),
                    other => other.to_string(),
                };
                // v1alpha1: a step without replicas runs as many canary pods as its
                // weight's share of the workload's.
                step.entry("replicas")
                    .or_insert_with(|| Value::String(traffic.clone()));
                step.entry("traffic").or_insert(Value::String(traffic));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn converts_v1alpha1() {
        let mut raw = json!({
            "apiVersion": "rollouts.kruise.io/v1alpha1",
            "kind": "Rollout",
            "metadata": {"name": "r", "annotations": {"rollouts.kruise.io/rolling-style": "partition"}},
            "spec": {
                "objectRef": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "w"}},
                "strategy": {"canary": {"steps": [{"weight": 20, "pause": {}}, {"replicas": "50%"}]}}
            }
        });
        convert_v1alpha1(&mut raw);
        assert_eq!(raw["apiVersion"], "rollouts.kruise.io/v1beta1");
        assert_eq!(raw["spec"]["workloadRef"]["name"], "w");
        assert!(raw["spec"].get("objectRef").is_none());
        assert_eq!(
            raw["spec"]["strategy"]["canary"]["steps"][0]["traffic"],
            "20%"
        );
        assert_eq!(
            raw["spec"]["strategy"]["canary"]["enableExtraWorkloadForCanary"],
            false
        );
        // A weight-only step runs its weight's share of pods; replicas given are kept.
        assert_eq!(
            raw["spec"]["strategy"]["canary"]["steps"][0]["replicas"],
            "20%"
        );
        assert_eq!(
            raw["spec"]["strategy"]["canary"]["steps"][1]["replicas"],
            "50%"
        );
    }
}
