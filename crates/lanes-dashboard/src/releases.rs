//! The releases as the page lists them: every Rollout and LaneRelease with its steps, where
//! it is, its revisions, its analysis measurements, and the controls that apply now.
//! Pure: from the objects read.

use lanes_model::lane_release::{LaneRelease, LaneReleaseStep};
use lanes_model::rollout::{CanaryStep, Measurement, Rollout};
use lanes_model::{Object, Typed};
use lanes_rollout::controls::{lane_release_controls, rollout_controls};
use lanes_rollout::lane_release::owner_of;
use serde::Serialize;

/// One release (a Rollout or a LaneRelease).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseRow {
    /// `Rollout` or `LaneRelease`.
    pub kind: &'static str,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Its phase (`Initial` before the controller saw it).
    pub phase: String,
    /// Its steps, each in a few words.
    pub steps: Vec<String>,
    /// The current step (1-based; 0 before the first).
    pub step: i32,
    /// The current step's state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_state: Option<String>,
    /// What its status says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The stable revision (a Rollout's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stable_revision: Option<String>,
    /// The canary revision (a Rollout's, while releasing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary_revision: Option<String>,
    /// The LaneRelease that holds this Rollout's release, if one does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_by: Option<String>,
    /// A LaneRelease's members, as `name: state`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    /// The analysis measurements kept, oldest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub measurements: Vec<Measurement>,
    /// The bounds its analysis judges each metric by, for the measurements' chart.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub thresholds: Vec<Threshold>,
    /// Its newest Events, newest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<EventLine>,
    /// The controls that apply now (`approve`, `pause`, `resume`, `undo`).
    pub controls: Vec<&'static str>,
}

/// The bounds of one analysis metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Threshold {
    /// The metric's name.
    pub metric: String,
    /// The least a passing value is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// The most a passing value is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

/// An Event about a release.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventLine {
    /// `Rollout` or `LaneRelease`.
    #[serde(skip)]
    pub kind: String,
    /// The release's namespace.
    #[serde(skip)]
    pub namespace: String,
    /// The release's name.
    #[serde(skip)]
    pub name: String,
    /// `Normal` or `Warning`.
    #[serde(rename = "type")]
    pub kind_of: String,
    /// Why, in a word.
    pub reason: String,
    /// What happened.
    pub message: String,
    /// When it last happened (RFC 3339).
    pub time: String,
}

/// How many Events a release shows.
const EVENTS_SHOWN: usize = 5;

fn thresholds(analysis: Option<&lanes_model::rollout::Analysis>) -> Vec<Threshold> {
    analysis
        .into_iter()
        .flat_map(|a| &a.metrics)
        .map(|m| {
            let (min, max) = if let Some(s) = &m.success_rate {
                (Some(s.min), None)
            } else if let Some(l) = &m.latency_p99 {
                (None, Some(l.max_ms))
            } else if let Some(p) = &m.prometheus {
                (p.min, p.max)
            } else {
                (None, None)
            };
            Threshold {
                metric: m.name.clone(),
                min,
                max,
            }
        })
        .collect()
}

/// The newest of `events` about release `kind` `namespace/name`, newest first.
fn events_of(events: &[EventLine], kind: &str, namespace: &str, name: &str) -> Vec<EventLine> {
    let mut mine: Vec<EventLine> = events
        .iter()
        .filter(|e| e.kind == kind && e.namespace == namespace && e.name == name)
        .cloned()
        .collect();
    mine.sort_by(|a, b| b.time.cmp(&a.time));
    mine.truncate(EVENTS_SHOWN);
    mine
}

/// Every release among `objects`, with its `events`: Rollouts, then LaneReleases, each by
/// namespace and name.
pub fn release_rows(objects: &[Object], events: &[EventLine]) -> Vec<ReleaseRow> {
    let lane_releases: Vec<&LaneRelease> = objects
        .iter()
        .filter_map(|o| match &o.typed {
            Typed::LaneRelease(lr) => Some(&**lr),
            _ => None,
        })
        .collect();
    let mut rows: Vec<ReleaseRow> = objects
        .iter()
        .filter_map(|o| match &o.typed {
            Typed::Rollout(r) => Some(rollout_row(r, &lane_releases)),
            _ => None,
        })
        .collect();
    rows.extend(lane_releases.iter().map(|lr| lane_release_row(lr)));
    for row in &mut rows {
        row.events = events_of(events, row.kind, &row.namespace, &row.name);
    }
    rows.sort_by(|a, b| {
        (a.kind != "Rollout", &a.namespace, &a.name).cmp(&(
            b.kind != "Rollout",
            &b.namespace,
            &b.name,
        ))
    });
    rows
}

fn rollout_row(r: &Rollout, lane_releases: &[&LaneRelease]) -> ReleaseRow {
    let namespace = r.metadata.namespace.clone().unwrap_or_default();
    let name = r.metadata.name.clone().unwrap_or_default();
    let same_ns: Vec<&LaneRelease> = lane_releases
        .iter()
        .copied()
        .filter(|lr| lr.metadata.namespace.as_deref() == Some(namespace.as_str()))
        .collect();
    let held_by = owner_of(&same_ns, &name, r.metadata.labels.as_ref())
        .filter(|lr| lr.phase() != lanes_model::lane_release::LaneReleasePhase::Invalid)
        .and_then(|lr| lr.metadata.name.clone());
    let status = r.status.as_ref();
    let cs = status.and_then(|s| s.canary_status.as_ref());
    let steps = r
        .spec
        .strategy
        .canary
        .as_ref()
        .map(|c| c.steps.iter().map(rollout_step).collect())
        .unwrap_or_default();
    ReleaseRow {
        kind: "Rollout",
        phase: status
            .and_then(|s| s.phase)
            .map_or("Initial", |p| p.as_str())
            .to_string(),
        steps,
        step: cs.map_or(0, |c| c.current_step_index),
        step_state: cs.map(|c| c.current_step_state.as_str().to_string()),
        message: status.and_then(|s| s.message.clone()),
        stable_revision: cs.and_then(|c| c.stable_revision.clone()),
        canary_revision: cs.and_then(|c| c.canary_revision.clone()),
        members: Vec::new(),
        measurements: status
            .and_then(|s| s.analysis.as_ref())
            .map(|a| a.measurements.clone())
            .unwrap_or_default(),
        thresholds: thresholds(lanes_rollout::analysis_of(r)),
        events: Vec::new(),
        controls: rollout_controls(r, held_by.is_some())
            .into_iter()
            .map(|c| c.as_str())
            .collect(),
        held_by,
        namespace,
        name,
    }
}

fn rollout_step(s: &CanaryStep) -> String {
    let mut words = Vec::new();
    if let Some(n) = &s.replicas {
        words.push(match n {
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n) => {
                format!("{n} replica{}", if *n == 1 { "" } else { "s" })
            }
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => {
                format!("{s} of replicas")
            }
        });
    }
    if let Some(t) = &s.traffic {
        words.push(format!("traffic {t}"));
    }
    if !s.matches.is_empty() {
        words.push("matches".to_string());
    }
    // Kruise: a step without a timed pause waits for approval.
    words.push(pause_words(Some(s.pause.as_ref().and_then(|p| p.duration))));
    words.join(", ")
}

fn lane_release_step(s: &LaneReleaseStep) -> String {
    let mut words = Vec::new();
    if let Some(t) = &s.traffic {
        words.push(format!("traffic {t}"));
    }
    words.push(pause_words(s.pause.as_ref().map(|p| p.duration)));
    words.join(", ")
}

/// A step's pause: `approval` (no duration), `pause Ns`, or `no pause`.
fn pause_words(pause: Option<Option<i64>>) -> String {
    match pause {
        Some(None) => "approval".to_string(),
        Some(Some(secs)) => format!("pause {secs}s"),
        None => "no pause".to_string(),
    }
}

fn lane_release_row(lr: &LaneRelease) -> ReleaseRow {
    let status = lr.status.as_ref();
    ReleaseRow {
        kind: "LaneRelease",
        namespace: lr.metadata.namespace.clone().unwrap_or_default(),
        name: lr.metadata.name.clone().unwrap_or_default(),
        phase: lr.phase().as_str().to_string(),
        steps: lr.spec.steps.iter().map(lane_release_step).collect(),
        step: status.map_or(0, |s| s.current_step_index),
        step_state: status
            .and_then(|s| s.current_step_state)
            .map(|s| s.as_str().to_string()),
        message: status.and_then(|s| s.message.clone()),
        stable_revision: None,
        canary_revision: None,
        held_by: None,
        members: status
            .map(|s| {
                s.members
                    .iter()
                    .map(|m| format!("{}: {:?}", m.rollout, m.state))
                    .collect()
            })
            .unwrap_or_default(),
        measurements: status
            .and_then(|s| s.analysis.as_ref())
            .map(|a| a.measurements.clone())
            .unwrap_or_default(),
        thresholds: thresholds(lr.spec.analysis.as_ref()),
        events: Vec::new(),
        controls: lane_release_controls(lr)
            .into_iter()
            .map(|c| c.as_str())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(v: serde_json::Value) -> Object {
        Object::from_value(v).unwrap()
    }

    #[test]
    fn a_paused_rollout_offers_approval_unless_a_lane_release_holds_it() {
        let rollout = serde_json::json!({
            "apiVersion": "rollouts.kruise.io/v1beta1", "kind": "Rollout",
            "metadata": {"name": "rollouts-mocka", "namespace": "default"},
            "spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "mocka-v1"},
                     "strategy": {"canary": {"steps": [{"replicas": 1}, {"replicas": "100%", "pause": {"duration": 5}}]}}},
            "status": {"phase": "Progressing", "message": "waiting",
                       "canaryStatus": {"currentStepIndex": 1, "currentStepState": "StepPaused",
                                        "stableRevision": "a1", "canaryRevision": "b2"}},
        });
        let rows = release_rows(&[object(rollout.clone())], &[]);
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(
            (r.kind, r.name.as_str(), r.phase.as_str()),
            ("Rollout", "rollouts-mocka", "Progressing")
        );
        assert_eq!(
            r.steps,
            ["1 replica, approval", "100% of replicas, pause 5s"]
        );
        assert_eq!((r.step, r.step_state.as_deref()), (1, Some("StepPaused")));
        assert_eq!(r.canary_revision.as_deref(), Some("b2"));
        assert_eq!(r.controls, ["approve", "pause", "undo"]);
        let release = serde_json::json!({
            "apiVersion": "lanes.dev/v1alpha1", "kind": "LaneRelease",
            "metadata": {"name": "checkout-v2", "namespace": "default"},
            "spec": {"laneGroup": "rollout", "lane": "canary", "rollouts": ["rollouts-mocka"],
                     "steps": [{"traffic": "10%", "pause": {}}]},
        });
        let event = |reason: &str, time: &str| EventLine {
            kind: "Rollout".into(),
            namespace: "default".into(),
            name: "rollouts-mocka".into(),
            kind_of: "Normal".into(),
            reason: reason.into(),
            message: String::new(),
            time: time.into(),
        };
        let events = [
            event("Older", "2026-12-05T10:00:00Z"),
            event("Newer", "2026-12-05T11:00:00Z"),
        ];
        let rows = release_rows(&[object(release), object(rollout)], &events);
        let reasons: Vec<&str> = rows[0].events.iter().map(|e| e.reason.as_str()).collect();
        assert_eq!(reasons, ["Newer", "Older"]);
        assert!(rows[1].events.is_empty());
        assert_eq!(rows[0].held_by.as_deref(), Some("checkout-v2"));
        assert_eq!(rows[0].controls, ["pause", "undo"]);
        assert_eq!(
            (rows[1].kind, rows[1].phase.as_str()),
            ("LaneRelease", "Waiting")
        );
        assert_eq!(rows[1].steps, ["traffic 10%, approval"]);
    }
}
