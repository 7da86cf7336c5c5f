//! A lane release (`lanes.dev/v1alpha1` `LaneRelease`): the Rollouts of several services
//! whose new versions share one lane, released, approved, promoted and rolled back as
//! one.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::object::FieldError;
use crate::rollout::{Analysis, AnalysisStatus, OnFailure, RolloutCondition, RolloutPause};

/// Several Rollouts released as one, in one lane.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    derive = "PartialEq",
    group = "lanes.dev",
    version = "v1alpha1",
    kind = "LaneRelease",
    plural = "lanereleases",
    shortname = "lrel",
    namespaced,
    status = "LaneReleaseStatus",
    printcolumn = r#"{"name":"PHASE","type":"string","description":"Where the release is","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"STEP","type":"integer","description":"The release's current step","jsonPath":".status.currentStepIndex"}"#,
    printcolumn = r#"{"name":"MEMBERS","type":"string","description":"The Rollouts in the release now","jsonPath":".status.memberList"}"#,
    printcolumn = r#"{"name":"MESSAGE","type":"string","description":"Why the release is where it is","jsonPath":".status.message"}"#,
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct LaneReleaseSpec {
    /// The lane group whose lane the new versions run in.
    #[serde(default)]
    pub lane_group: String,
    /// The lane the new versions run in (the members' canary lane).
    #[serde(default)]
    pub lane: String,
    /// The member Rollouts, by name, in the LaneRelease's namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollouts: Vec<String>,
    /// Or: the Rollouts whose labels match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_selector: Option<RolloutSelector>,
    /// The release's own steps, walked once every member's canary is ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<LaneReleaseStep>,
    /// End-to-end analysis of the lane: the requests that entered it at the gateway (to
    /// services in the release's namespace), judged as a Rollout's analysis judges its
    /// canary's, from when every member's canary is ready until the release is promoted.
    /// A failure beyond its `failureLimit` ends the release per its `onFailure`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Analysis>,
    /// What a failed member does to the others: roll every member back (the default), or
    /// pause the release.
    #[serde(default)]
    pub on_failure: OnFailure,
    /// Seconds from the release's start for every member's canary to be ready; past it
    /// the release fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_seconds: Option<i64>,
    /// A paused release does not walk its steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
}

/// Which Rollouts a selector takes: all labels must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSelector {
    /// Labels a member carries.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

/// One step of a lane release.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LaneReleaseStep {
    /// The lane's share of the group's ingress traffic, as a percentage string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<String>,
    /// Pause after the step: a duration in seconds, or until the release is approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<RolloutPause>,
}

/// Where a lane release is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum LaneReleasePhase {
    /// No member is releasing: waiting for a new version.
    Waiting,
    /// Members are releasing: their canaries come up, then the release walks its steps.
    Progressing,
    /// Approved through its last step: every member's stable Deployment rolls to the
    /// new version.
    Promoting,
    /// Every member's stable Deployment runs the new version; the canaries go.
    Finishing,
    /// The last release was promoted.
    Completed,
    /// A member failed: every member is being rolled back.
    RollingBack,
    /// The last release was rolled back.
    RolledBack,
    /// The spec cannot be run (a member missing or claimed twice): nothing is touched.
    Invalid,
}

impl LaneReleasePhase {
    /// As written in the status.
    pub fn as_str(self) -> &'static str {
        match self {
            LaneReleasePhase::Waiting => "Waiting",
            LaneReleasePhase::Progressing => "Progressing",
            LaneReleasePhase::Promoting => "Promoting",
            LaneReleasePhase::Finishing => "Finishing",
            LaneReleasePhase::Completed => "Completed",
            LaneReleasePhase::RollingBack => "RollingBack",
            LaneReleasePhase::RolledBack => "RolledBack",
            LaneReleasePhase::Invalid => "Invalid",
        }
    }

    /// Whether the members' canaries are out of the lane: from when every member is
    /// promoted (or the rollback starts) until the next release, the lane sends their
    /// services' requests to the baseline, every member's at once.
    pub fn withdraws_canaries(self) -> bool {
        matches!(
            self,
            LaneReleasePhase::Finishing
                | LaneReleasePhase::Completed
                | LaneReleasePhase::RollingBack
                | LaneReleasePhase::RolledBack
        )
    }

    /// Whether a release is under way (members are held by it).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            LaneReleasePhase::Progressing
                | LaneReleasePhase::Promoting
                | LaneReleasePhase::Finishing
                | LaneReleasePhase::RollingBack
        )
    }
}

/// Where a member is in the release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum MemberState {
    /// Its Rollout runs its own steps up to the release's gate.
    Upgrading,
    /// Its canary is ready and it waits at the gate for the release.
    Ready,
    /// Promoted: its stable Deployment rolls to the new version.
    Promoting,
    /// Its stable Deployment runs the new version.
    Promoted,
    /// It failed (its analysis, its deadline, an undo): the reason the release ended.
    Failed,
    /// Rolled back with the release.
    RolledBack,
}

/// A member of the release under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    /// The member Rollout's name.
    pub rollout: String,
    /// The revision (pod-template hash) it releases.
    pub revision: String,
    /// Where it is.
    #[schemars(with = "String")]
    pub state: MemberState,
    /// What its Rollout says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Status of a lane release.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LaneReleaseStatus {
    /// Generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Where the release is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub phase: Option<LaneReleasePhase>,
    /// The release's step (1-based; 0 while the members' canaries come up).
    #[serde(default)]
    pub current_step_index: i32,
    /// Whether the current step is paused (`StepPaused`) or through (`StepReady`: an
    /// approval sets this).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub current_step_state: Option<crate::rollout::StepState>,
    /// When the current step state was entered (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<String>,
    /// When the release under way started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// The members of the release under way (or the last one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberStatus>,
    /// While finishing: the lane's routes no longer send requests to the members'
    /// canaries, so the canaries may go.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub canaries_withdrawn: bool,
    /// The members' names, comma-separated (for `kubectl get`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_list: Option<String>,
    /// Why the release is where it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The end-to-end analysis of the release under way: the requests that entered the
    /// lane at the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisStatus>,
    /// Conditions (`Progressing`, `Valid`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<RolloutCondition>,
}

impl LaneRelease {
    /// Whether the release takes the Rollout named `name` carrying `labels`.
    pub fn claims(&self, name: &str, labels: Option<&BTreeMap<String, String>>) -> bool {
        if self.spec.rollouts.iter().any(|r| r == name) {
            return true;
        }
        self.spec.rollout_selector.as_ref().is_some_and(|s| {
            !s.match_labels.is_empty()
                && s.match_labels
                    .iter()
                    .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        })
    }

    /// Whether its steps route traffic: some step gives the lane a share of the group's
    /// ingress.
    pub fn routes_traffic(&self) -> bool {
        self.spec.steps.iter().any(|s| s.traffic.is_some())
    }

    /// The lane's share (percent) of its group's ingress now: while the release walks its
    /// steps, the `traffic` of the latest step so far that gives one (none before the
    /// members' canaries are ready, and none once promoted: the stable versions then
    /// serve every request).
    pub fn traffic_percent(&self) -> Option<u32> {
        let st = self.status.as_ref()?;
        if st.phase != Some(LaneReleasePhase::Progressing) || st.current_step_index < 1 {
            return None;
        }
        self.spec
            .steps
            .iter()
            .take(st.current_step_index as usize)
            .filter_map(|s| crate::validate::parse_percent(s.traffic.as_deref()?))
            .next_back()
    }

    /// The members whose canaries are out of the lane now (see
    /// [`LaneReleasePhase::withdraws_canaries`]): none unless it withdraws them.
    pub fn withdrawn_members(&self) -> Vec<&str> {
        match &self.status {
            Some(st) if self.phase().withdraws_canaries() => {
                st.members.iter().map(|m| m.rollout.as_str()).collect()
            }
            _ => Vec::new(),
        }
    }

    /// The phase now (`Waiting` before the first reconcile).
    pub fn phase(&self) -> LaneReleasePhase {
        self.status
            .as_ref()
            .and_then(|s| s.phase)
            .unwrap_or(LaneReleasePhase::Waiting)
    }
}

/// What a lane release's spec may not hold: every refusal names its field.
pub fn check(errs: &mut Vec<FieldError>, spec: &LaneReleaseSpec) {
    if spec.lane_group.is_empty() {
        errs.push(FieldError::new("spec.laneGroup", "is required"));
    }
    if spec.lane.is_empty() {
        errs.push(FieldError::new("spec.lane", "is required"));
    }
    let selects = spec
        .rollout_selector
        .as_ref()
        .is_some_and(|s| !s.match_labels.is_empty());
    if spec.rollouts.is_empty() && !selects {
        errs.push(FieldError::new(
            "spec.rollouts",
            "name at least one Rollout (or give spec.rolloutSelector.matchLabels)",
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, r) in spec.rollouts.iter().enumerate() {
        if !seen.insert(r) {
            errs.push(FieldError::new(
                format!("spec.rollouts[{i}]"),
                format!("{r:?} is named twice"),
            ));
        }
    }
    for (i, s) in spec.steps.iter().enumerate() {
        if let Some(t) = &s.traffic
            && crate::validate::parse_percent(t).is_none_or(|p| p == 0)
        {
            errs.push(FieldError::new(
                format!("spec.steps[{i}].traffic"),
                format!("expected a percentage from \"1%\" to \"100%\", got {t:?}"),
            ));
        }
        if s.pause
            .as_ref()
            .and_then(|p| p.duration)
            .is_some_and(|d| d < 0)
        {
            errs.push(FieldError::new(
                format!("spec.steps[{i}].pause.duration"),
                "must not be negative",
            ));
        }
    }
    if let Some(a) = &spec.analysis {
        crate::rollout_rules::check_analysis(errs, "spec.analysis", a);
    }
    if spec.progress_deadline_seconds.is_some_and(|s| s <= 0) {
        errs.push(FieldError::new(
            "spec.progressDeadlineSeconds",
            "must be positive",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> LaneReleaseSpec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn a_release_claims_named_rollouts_and_selected_ones() {
        let mut lr = LaneRelease::new(
            "r",
            spec(
                "laneGroup: g\nlane: canary\nrollouts: [a]\nrolloutSelector: {matchLabels: {team: x}}\n",
            ),
        );
        let team: BTreeMap<String, String> = [("team".to_string(), "x".to_string())].into();
        assert!(lr.claims("a", None));
        assert!(lr.claims("b", Some(&team)));
        assert!(!lr.claims("b", None));
        lr.spec.rollout_selector = None;
        assert!(!lr.claims("b", Some(&team)));
    }

    #[test]
    fn every_refusal_names_its_field() {
        let mut errs = Vec::new();
        check(
            &mut errs,
            &spec(
                "rollouts: [a, a]\nsteps: [{traffic: 0%}, {pause: {duration: -1}}]\nprogressDeadlineSeconds: 0\n",
            ),
        );
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.laneGroup",
                "spec.lane",
                "spec.rollouts[1]",
                "spec.steps[0].traffic",
                "spec.steps[1].pause.duration",
                "spec.progressDeadlineSeconds"
            ]
        );
        let mut bad = Vec::new();
        check(
            &mut bad,
            &spec(
                "laneGroup: g\nlane: canary\nrollouts: [a]\nanalysis: {interval: soon, metrics: [{name: sr, successRate: {min: 2}}]}\n",
            ),
        );
        let paths: Vec<&str> = bad.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.analysis.interval",
                "spec.analysis.metrics[0].successRate.min"
            ]
        );
        let mut ok = Vec::new();
        check(
            &mut ok,
            &spec(
                "laneGroup: g\nlane: canary\nrollouts: [a, b]\nsteps: [{traffic: 10%}, {pause: {}}]\nanalysis: {interval: 5s, metrics: [{name: sr, successRate: {min: 0.9}}]}\n",
            ),
        );
        assert!(ok.is_empty(), "{ok:?}");
    }

    #[test]
    fn the_share_is_the_latest_steps_while_the_release_walks_them() {
        let mut lr = LaneRelease::new(
            "r",
            spec(
                "laneGroup: g\nlane: canary\nrollouts: [a]\nsteps: [{traffic: 10%, pause: {duration: 60}}, {pause: {}}, {traffic: 50%}, {pause: {}}]\n",
            ),
        );
        let at = |lr: &mut LaneRelease, phase, index| {
            lr.status = Some(LaneReleaseStatus {
                phase: Some(phase),
                current_step_index: index,
                ..Default::default()
            });
            lr.traffic_percent()
        };
        use LaneReleasePhase::*;
        assert_eq!(at(&mut lr, Progressing, 0), None);
        assert_eq!(at(&mut lr, Progressing, 1), Some(10));
        assert_eq!(at(&mut lr, Progressing, 2), Some(10));
        assert_eq!(at(&mut lr, Progressing, 4), Some(50));
        assert_eq!(at(&mut lr, Promoting, 4), None);
        assert_eq!(at(&mut lr, RollingBack, 4), None);
    }
}
