//! Lane releases: several Rollouts whose new versions share a lane, judged, approved,
//! promoted and rolled back as one. A member's Rollout runs its own steps up to its gate
//! (its first step that waits for approval, else its last) and waits there; the
//! LaneRelease walks its own steps once every member waits at its gate, and then orders
//! them all on together ([`Order`]). Pure: [`reconcile`] maps what is observed to the
//! LaneRelease's status; each member's Rollout reads its order with [`gate_for`].

use std::collections::BTreeMap;

use lanes_model::lane_release::{
    LaneRelease, LaneReleasePhase, LaneReleaseStatus, MemberState, MemberStatus,
};
use lanes_model::rollout::{
    AnalysisStatus, CanaryStrategy, OnFailure, Rollout, RolloutCondition, RolloutPhase, Sample,
    StepState,
};

use crate::decision::Reason;
use crate::observe::Workload;

/// What a lane release orders a member to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Order {
    /// Wait at the gate for the release.
    Hold,
    /// Go through: the stable Deployment rolls to the new version (the canary stays).
    Promote,
    /// Every member runs its new version: the canary goes.
    Finish,
    /// Roll back, for this reason.
    RollBack(String),
}

/// A member's gate: which LaneRelease holds it, and what it orders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    /// The LaneRelease's name.
    pub release: String,
    /// Its order.
    pub order: Order,
}

/// The step (1-based) at which a member waits for its release: the first that waits for
/// approval (a pause without duration, or none, as Kruise reads a step), else the last.
pub fn hold_step(strategy: &CanaryStrategy) -> i32 {
    let steps = &strategy.steps;
    steps
        .iter()
        .position(|s| s.pause.as_ref().and_then(|p| p.duration).is_none())
        .map_or(steps.len().max(1), |i| i + 1) as i32
}

/// The LaneRelease that holds Rollout `name` (with `labels`) among `releases` of its
/// namespace: the oldest that claims it (a later claimant is refused), unless that one
/// cannot run.
pub fn owner_of<'a>(
    releases: &[&'a LaneRelease],
    name: &str,
    labels: Option<&BTreeMap<String, String>>,
) -> Option<&'a LaneRelease> {
    releases
        .iter()
        .copied()
        .filter(|r| r.claims(name, labels) && r.metadata.deletion_timestamp.is_none())
        .min_by_key(|r| age_key(r))
}

fn age_key(r: &LaneRelease) -> (String, String) {
    (
        r.metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string())
            .unwrap_or_default(),
        r.metadata.name.clone().unwrap_or_default(),
    )
}

/// The gate of Rollout `name` (with `labels`) releasing `revision`, if a LaneRelease
/// holds it.
pub fn gate_for(
    releases: &[&LaneRelease],
    name: &str,
    labels: Option<&BTreeMap<String, String>>,
    revision: &str,
) -> Option<Gate> {
    let owner = owner_of(releases, name, labels)?;
    let status = owner.status.as_ref();
    let phase = owner.phase();
    if phase == LaneReleasePhase::Invalid {
        return None;
    }
    let listed = status
        .into_iter()
        .flat_map(|s| &s.members)
        .any(|m| m.rollout == name && m.revision == revision);
    let order = match phase {
        LaneReleasePhase::Promoting if listed => Order::Promote,
        // The canaries go once the lane's routes have left them.
        LaneReleasePhase::Finishing if listed && status.is_some_and(|s| s.canaries_withdrawn) => {
            Order::Finish
        }
        LaneReleasePhase::Finishing if listed => Order::Promote,
        LaneReleasePhase::RollingBack if listed => Order::RollBack(
            status
                .and_then(|s| s.message.clone())
                .unwrap_or_else(|| "the release is rolled back".into()),
        ),
        _ => Order::Hold,
    };
    Some(Gate {
        release: owner.metadata.name.clone().unwrap_or_default(),
        order,
    })
}

/// A member as the LaneRelease controller sees it.
#[derive(Debug, Clone)]
pub struct MemberView<'a> {
    /// The Rollout's name.
    pub name: String,
    /// The Rollout, if it exists.
    pub rollout: Option<&'a Rollout>,
    /// Its workload, if it exists.
    pub workload: Option<Workload>,
    /// Another LaneRelease that holds it first, if one does.
    pub held_by: Option<String>,
}

impl MemberView<'_> {
    /// The revision it releases now, if a release of it is under way: its workload's
    /// template differs from the stable one, or the release of the current template is
    /// still finishing.
    fn releasing(&self) -> Option<String> {
        let (r, w) = (self.rollout?, self.workload.as_ref()?);
        let status = r.status.as_ref()?;
        let revision = w.revision();
        let progressing = status.phase == Some(RolloutPhase::Progressing)
            && status
                .canary_status
                .as_ref()
                .is_some_and(|c| c.canary_revision.as_deref() == Some(revision.as_str()));
        (w.is_releasing() || progressing).then_some(revision)
    }

    /// Whether its Rollout waits at its gate with its canary ready.
    fn at_gate(&self) -> bool {
        let Some(r) = self.rollout else { return false };
        let (Some(status), Some(strategy)) = (&r.status, crate::plan::strategy(r)) else {
            return false;
        };
        status.phase == Some(RolloutPhase::Progressing)
            && status.canary_status.as_ref().is_some_and(|c| {
                c.current_step_state == StepState::Paused
                    && c.current_step_index >= hold_step(strategy)
            })
    }

    /// Why its release of `revision` failed, if its Rollout says it did.
    fn failure(&self, revision: &str) -> Option<String> {
        let status = self.rollout?.status.as_ref()?;
        let of_revision =
            status.canary_status.as_ref()?.canary_revision.as_deref() == Some(revision);
        self.reported_failure().filter(|_| of_revision)
    }

    /// The failure its Rollout reports (of its last release), if it reports one.
    fn reported_failure(&self) -> Option<String> {
        let status = self.rollout?.status.as_ref()?;
        Reason::of(status)?.failure()?;
        status.message.clone()
    }

    /// Whether its stable Deployment runs `revision`, rolled out.
    fn promoted(&self, revision: &str) -> bool {
        self.workload
            .as_ref()
            .is_some_and(|w| !w.paused && w.revision() == revision && w.rolled_out())
    }

    /// Whether its Rollout settled on `revision` (the canary gone).
    fn finished(&self, revision: &str) -> bool {
        self.rollout
            .and_then(|r| r.status.as_ref())
            .is_some_and(|s| {
                s.phase == Some(RolloutPhase::Healthy)
                    && s.canary_status
                        .as_ref()
                        .is_some_and(|c| c.stable_revision.as_deref() == Some(revision))
            })
    }

    /// What its Rollout says now.
    fn message(&self) -> Option<String> {
        self.rollout
            .and_then(|r| r.status.as_ref())
            .and_then(|s| s.message.clone())
    }
}

/// What the LaneRelease controller observed.
#[derive(Debug, Clone)]
pub struct ReleaseObserved<'a> {
    /// The LaneRelease.
    pub release: &'a LaneRelease,
    /// Its members: the Rollouts it names, then those its selector takes.
    pub members: Vec<MemberView<'a>>,
    /// The requests that entered its lane at the gateway so far (cumulative), when it has
    /// analysis and they could be read.
    pub sample: Option<Sample>,
    /// The values of its analysis's `prometheus` metrics, when a round is due.
    pub external: BTreeMap<String, Result<f64, String>>,
    /// Why its `laneGroup` or `lane` names nothing, if they do ([`lane_problem`]).
    pub lane_problem: Option<String>,
    /// While it finishes: the members whose canaries the lane's generated routes still
    /// send requests to.
    pub routed_canaries: Vec<String>,
    /// Now.
    pub now: jiff::Timestamp,
}

/// What a reconcile of a LaneRelease decided.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseDecision {
    /// The new status.
    pub status: LaneReleaseStatus,
    /// Set the LaneRelease's `spec.paused` (a failure with `onFailure: pause`).
    pub pause: bool,
    /// When to look again at the latest (a pause's end, the progress deadline).
    pub wake_at: Option<jiff::Timestamp>,
}

/// One reconcile of a LaneRelease.
pub fn reconcile(obs: &ReleaseObserved<'_>) -> ReleaseDecision {
    let lr = obs.release;
    let mut status = lr.status.clone().unwrap_or_default();
    status.observed_generation = lr.metadata.generation;
    if let Some(why) = invalid(obs) {
        status.phase = Some(LaneReleasePhase::Invalid);
        return settled(obs, status, "Invalid", why);
    }
    if status.phase == Some(LaneReleasePhase::Invalid) {
        status.phase = Some(LaneReleasePhase::Waiting);
    }
    let phase = status.phase.unwrap_or(LaneReleasePhase::Waiting);
    let mut d = ReleaseDecision {
        status,
        pause: false,
        wake_at: None,
    };
    match phase {
        LaneReleasePhase::Progressing => progressing(obs, &mut d),
        LaneReleasePhase::Promoting | LaneReleasePhase::Finishing => promoting(obs, &mut d),
        LaneReleasePhase::RollingBack => rolling_back(obs, &mut d),
        _ => at_rest(obs, &mut d),
    }
    // Members in the order the spec gives them (then its selector), whenever they joined.
    let order = |name: &str| obs.members.iter().position(|m| m.name == name);
    d.status.members.sort_by_key(|m| order(&m.rollout));
    d.status.member_list = Some(
        d.status
            .members
            .iter()
            .map(|m| m.rollout.as_str())
            .collect::<Vec<_>>()
            .join(","),
    )
    .filter(|s| !s.is_empty());
    d
}

/// Why a release's `laneGroup` and `lane` name nothing, if they do, among `groups` (each
/// lane group's name, with the names of its lanes).
pub fn lane_problem(lr: &LaneRelease, groups: &BTreeMap<String, Vec<String>>) -> Option<String> {
    let (group, lane) = (&lr.spec.lane_group, &lr.spec.lane);
    let Some(lanes) = groups.get(group) else {
        return Some(format!(
            "spec.laneGroup: no lane group {group:?}; nothing is released until it exists"
        ));
    };
    (!lanes.contains(lane)).then(|| {
        format!(
            "spec.lane: lane group {group:?} has no lane {lane:?} (it has {}); nothing is released until it does",
            lanes.join(", ")
        )
    })
}

/// Why the LaneRelease cannot run, if it cannot: its lane missing, a member missing, or
/// a member held by another.
fn invalid(obs: &ReleaseObserved<'_>) -> Option<String> {
    if let Some(why) = &obs.lane_problem {
        return Some(why.clone());
    }
    let missing: Vec<&str> = obs
        .members
        .iter()
        .filter(|m| m.rollout.is_none())
        .map(|m| m.name.as_str())
        .collect();
    if !missing.is_empty() {
        return Some(format!(
            "spec.rollouts: Rollout {} not found in namespace {}; nothing is released until it exists",
            missing.join(", "),
            obs.release
                .metadata
                .namespace
                .as_deref()
                .unwrap_or("default")
        ));
    }
    let held: Vec<String> = obs
        .members
        .iter()
        .filter_map(|m| {
            Some(format!(
                "{} (by LaneRelease {})",
                m.name,
                m.held_by.as_ref()?
            ))
        })
        .collect();
    if !held.is_empty() {
        return Some(format!(
            "Rollout {} is claimed by an older LaneRelease; a Rollout is in one LaneRelease only, so this one touches nothing",
            held.join(", ")
        ));
    }
    obs.members
        .is_empty()
        .then(|| "spec.rolloutSelector takes no Rollout".to_string())
}

/// No release under way: one starts when a member starts releasing.
fn at_rest(obs: &ReleaseObserved<'_>, d: &mut ReleaseDecision) {
    let releasing: Vec<MemberStatus> = obs
        .members
        .iter()
        .filter_map(|m| {
            Some(MemberStatus {
                rollout: m.name.clone(),
                revision: m.releasing()?,
                state: MemberState::Upgrading,
                message: m.message(),
            })
        })
        .collect();
    if releasing.is_empty() {
        let phase = d.status.phase.unwrap_or(LaneReleasePhase::Waiting);
        d.status.phase = Some(phase);
        let message =
            d.status.message.clone().unwrap_or_else(|| {
                "waiting for a member's workload to get a new version".to_string()
            });
        set(obs, &mut d.status, phase.as_str(), message);
        return;
    }
    let now = obs.now.to_string();
    d.status.members = releasing;
    d.status.current_step_index = 0;
    d.status.current_step_state = None;
    d.status.analysis = None;
    d.status.canaries_withdrawn = false;
    d.status.started_at = Some(now.clone());
    d.status.last_update_time = Some(now);
    d.status.phase = Some(LaneReleasePhase::Progressing);
    progressing(obs, d);
}

/// Members' canaries come up, then the release walks its steps.
fn progressing(obs: &ReleaseObserved<'_>, d: &mut ReleaseDecision) {
    track_members(obs, &mut d.status);
    if let Some((member, why)) = failed_member(obs, &d.status) {
        let on_failure = obs.release.spec.on_failure;
        return fail(obs, d, Some(member), why, on_failure);
    }
    if obs.release.spec.paused.unwrap_or(false) {
        let message = format!(
            "paused in step {}/{}",
            d.status.current_step_index,
            obs.release.spec.steps.len()
        );
        return set(obs, &mut d.status, "Paused", message);
    }
    let waiting: Vec<String> = d
        .status
        .members
        .iter()
        .filter(|m| m.state != MemberState::Ready)
        .map(|m| m.rollout.clone())
        .collect();
    if d.status.current_step_index == 0 && !waiting.is_empty() {
        let names = &waiting;
        if let Some(deadline) = obs.release.spec.progress_deadline_seconds {
            let due =
                since(&d.status.started_at, obs.now) + jiff::SignedDuration::from_secs(deadline);
            if obs.now > due {
                let why = format!(
                    "the canaries of {} were not ready within progressDeadlineSeconds {deadline}",
                    names.join(", ")
                );
                return fail(obs, d, None, why, obs.release.spec.on_failure);
            }
            wake(d, due + jiff::SignedDuration::from_secs(1));
        }
        let message = format!(
            "waiting for the canaries of {} to be ready at their gates",
            names.join(", ")
        );
        return set(obs, &mut d.status, "InRolling", message);
    }
    if let Some((why, on_failure)) = lane_analysis(obs, d) {
        return fail(obs, d, None, why, on_failure);
    }
    walk_steps(obs, d);
}

/// One round of the end-to-end analysis of the lane (every member's canary is ready):
/// why the release fails, and how it ends, when it does.
fn lane_analysis(
    obs: &ReleaseObserved<'_>,
    d: &mut ReleaseDecision,
) -> Option<(String, OnFailure)> {
    let cfg = obs.release.spec.analysis.as_ref()?;
    let cur = Sample {
        time: obs.now.to_string(),
        ..obs.sample.clone()?
    };
    let revision = member_names(&d.status.members);
    let a = d.status.analysis.get_or_insert_with(|| AnalysisStatus {
        revision,
        ..Default::default()
    });
    let round = crate::analysis::round(cfg, a, &cur, &obs.external, obs.now);
    wake(d, round.next);
    let why = round.failed?;
    let lane = &obs.release.spec.lane;
    Some((
        format!("lane {lane:?} failed its end-to-end analysis: {why}"),
        cfg.on_failure,
    ))
}

/// Whether the release may be promoted as far as its analysis goes: it has none, or a
/// round of it passed.
fn analysis_allows_promotion(obs: &ReleaseObserved<'_>, s: &LaneReleaseStatus) -> bool {
    obs.release.spec.analysis.is_none() || s.analysis.as_ref().is_some_and(|a| a.passes >= 1)
}

/// The release's own steps, from the current one; after the last, every member is
/// promoted.
fn walk_steps(obs: &ReleaseObserved<'_>, d: &mut ReleaseDecision) {
    let steps = &obs.release.spec.steps;
    let total = steps.len() as i32;
    loop {
        let s = &mut d.status;
        if s.current_step_index == 0 || s.current_step_state == Some(StepState::Ready) {
            if s.current_step_index >= total {
                if !analysis_allows_promotion(obs, s) {
                    let message = format!(
                        "in step {total}/{total}: waiting for a round of the lane's analysis to pass before promoting"
                    );
                    return set(obs, s, "InRolling", message);
                }
                s.phase = Some(LaneReleasePhase::Promoting);
                s.last_update_time = Some(obs.now.to_string());
                for m in &mut s.members {
                    m.state = MemberState::Promoting;
                }
                return promoting(obs, d);
            }
            s.current_step_index += 1;
            s.current_step_state = Some(StepState::Paused);
            s.last_update_time = Some(obs.now.to_string());
        }
        let idx = s.current_step_index;
        let pause = steps
            .get((idx - 1).max(0) as usize)
            .and_then(|st| st.pause.clone());
        match pause {
            None => s.current_step_state = Some(StepState::Ready),
            Some(p) => match p.duration {
                None => {
                    let message = format!(
                        "in step {idx}/{total}: every member's canary is ready; approve the release to go on (lanes release approve {})",
                        obs.release.metadata.name.as_deref().unwrap_or("")
                    );
                    return set(obs, s, "Paused", message);
                }
                Some(secs) => {
                    let until =
                        since(&s.last_update_time, obs.now) + jiff::SignedDuration::from_secs(secs);
                    if obs.now < until {
                        let message = format!("in step {idx}/{total}: paused until {until}");
                        set(obs, s, "InRolling", message);
                        return wake(d, until);
                    }
                    s.current_step_state = Some(StepState::Ready);
                }
            },
        }
    }
}

/// Every member promoted together; once all run the new version, the canaries go
/// together; once every Rollout settled, the release is complete.
fn promoting(obs: &ReleaseObserved<'_>, d: &mut ReleaseDecision) {
    let views: BTreeMap<&str, &MemberView<'_>> =
        obs.members.iter().map(|m| (m.name.as_str(), m)).collect();
    let s = &mut d.status;
    for m in &mut s.members {
        let Some(v) = views.get(m.rollout.as_str()) else {
            continue;
        };
        if v.promoted(&m.revision) || v.finished(&m.revision) {
            m.state = MemberState::Promoted;
        }
        m.message = v.message();
    }
    let all = |f: &dyn Fn(&MemberView<'_>, &str) -> bool| {
        s.members.iter().all(|m| {
            views
                .get(m.rollout.as_str())
                .is_some_and(|v| f(v, &m.revision))
        })
    };
    if all(&|v, rev| v.finished(rev)) {
        s.phase = Some(LaneReleasePhase::Completed);
        s.last_update_time = Some(obs.now.to_string());
        let message = format!(
            "every member runs its new version: {}",
            member_names(&s.members)
        );
        return set(obs, s, "Completed", message);
    }
    if all(&|v, rev| v.promoted(rev) || v.finished(rev)) {
        if s.phase != Some(LaneReleasePhase::Finishing) {
            s.phase = Some(LaneReleasePhase::Finishing);
            s.canaries_withdrawn = false;
            s.last_update_time = Some(obs.now.to_string());
            // The lane's routes still hold the canaries: this phase takes them out.
            let message = "every member's stable Deployment runs its new version; the lane's requests go back to the baseline, then the canaries go".into();
            return set(obs, s, "Finalising", message);
        }
        return withdrawing(obs, s);
    }
    let rolling: Vec<&str> = s
        .members
        .iter()
        .filter(|m| m.state != MemberState::Promoted)
        .map(|m| m.rollout.as_str())
        .collect();
    let message = format!(
        "promoting every member: waiting for the stable Deployments of {} to roll out",
        rolling.join(", ")
    );
    set(obs, s, "Finalising", message);
}

/// The members (among `members`) whose canaries the lane's routes still hold: a Service
/// of theirs (among `services`, the release's namespace) is among `held`, the Services
/// whose generated DestinationRule in the release's group still has the lane's subset.
pub fn routed_canaries(
    members: &[MemberView<'_>],
    services: &[k8s_openapi::api::core::v1::Service],
    held: &[String],
) -> Vec<String> {
    members
        .iter()
        .filter(|m| {
            let (Some(r), Some(w)) = (m.rollout, m.workload.as_ref()) else {
                return false;
            };
            crate::target::canary_services(r, w, services).any(|s| held.iter().any(|h| h == s))
        })
        .map(|m| m.name.clone())
        .collect()
}

/// How long a finishing release waits for the lane's routes to leave its canaries
/// before they go anyway (a lane controller that does not run, or cannot write).
pub const WITHDRAW_TIMEOUT: jiff::SignedDuration = jiff::SignedDuration::from_secs(30);

/// Finishing: once the lane's routes no longer send requests to any member's canary,
/// the canaries go (every member's at once, as their subsets left the lane at once).
fn withdrawing(obs: &ReleaseObserved<'_>, s: &mut LaneReleaseStatus) {
    if s.canaries_withdrawn {
        let message =
            "every member's stable Deployment runs its new version; the canaries go".into();
        return set(obs, s, "Finalising", message);
    }
    if obs.routed_canaries.is_empty() {
        s.canaries_withdrawn = true;
        let message = "the lane's requests went back to the baseline; the canaries go".into();
        return set(obs, s, "Finalising", message);
    }
    let since = since(&s.last_update_time, obs.now);
    if obs.now >= since + WITHDRAW_TIMEOUT {
        s.canaries_withdrawn = true;
        let message = format!(
            "the lane's routes still send requests to the canaries of {} after {}s; the canaries go anyway",
            obs.routed_canaries.join(", "),
            WITHDRAW_TIMEOUT.as_secs()
        );
        return set(obs, s, "Finalising", message);
    }
    let message = format!(
        "every member's stable Deployment runs its new version; waiting for the lane's routes to leave the canaries of {}",
        obs.routed_canaries.join(", ")
    );
    set(obs, s, "Finalising", message);
}

/// Every member goes back; once none is releasing, the release is rolled back.
fn rolling_back(obs: &ReleaseObserved<'_>, d: &mut ReleaseDecision) {
    let views: BTreeMap<&str, &MemberView<'_>> =
        obs.members.iter().map(|m| (m.name.as_str(), m)).collect();
    let s = &mut d.status;
    let mut pending = Vec::new();
    for m in &mut s.members {
        let back = views.get(m.rollout.as_str()).is_none_or(|v| {
            v.releasing().is_none()
                && v.rollout
                    .and_then(|r| r.status.as_ref())
                    .is_none_or(|st| st.phase != Some(RolloutPhase::Progressing))
        });
        if back && m.state != MemberState::Failed {
            m.state = MemberState::RolledBack;
        }
        if let Some(v) = views.get(m.rollout.as_str()) {
            m.message = v.message();
        }
        if !back {
            pending.push(m.rollout.clone());
        }
    }
    let why = s.message.clone().unwrap_or_default();
    let why = why
        .strip_prefix("rolling back: ")
        .unwrap_or(&why)
        .to_string();
    if pending.is_empty() {
        s.phase = Some(LaneReleasePhase::RolledBack);
        s.last_update_time = Some(obs.now.to_string());
        return set(obs, s, "RolledBack", format!("rolled back: {why}"));
    }
    set(obs, s, "RollingBack", format!("rolling back: {why}"));
}

/// Members join (a member that starts releasing while the release is under way), move
/// to a newer revision, and are seen at their gates.
fn track_members(obs: &ReleaseObserved<'_>, s: &mut LaneReleaseStatus) {
    for v in &obs.members {
        let Some(revision) = v.releasing() else {
            continue;
        };
        let state = if v.at_gate() {
            MemberState::Ready
        } else {
            MemberState::Upgrading
        };
        match s.members.iter_mut().find(|m| m.rollout == v.name) {
            Some(m) => {
                m.revision = revision;
                if m.state != MemberState::Failed {
                    m.state = state;
                }
                m.message = v.message();
            }
            None => s.members.push(MemberStatus {
                rollout: v.name.clone(),
                revision,
                state,
                message: v.message(),
            }),
        }
    }
}

/// The member that failed, and why the release fails: its Rollout says its release of
/// the member's revision failed, or its workload left the new version (an undo) before
/// promotion.
fn failed_member(obs: &ReleaseObserved<'_>, s: &LaneReleaseStatus) -> Option<(String, String)> {
    for m in &s.members {
        let Some(v) = obs.members.iter().find(|v| v.name == m.rollout) else {
            continue;
        };
        if let Some(why) = v.failure(&m.revision) {
            return Some((
                m.rollout.clone(),
                format!("member {} failed: {why}", m.rollout),
            ));
        }
        let undone = v
            .workload
            .as_ref()
            .is_some_and(|w| w.revision() != m.revision);
        if v.releasing().is_none() && undone {
            // A Rollout that rolled itself back keeps saying why until its next release.
            let why = match v.reported_failure() {
                Some(why) => format!("member {} failed: {why}", m.rollout),
                None => format!(
                    "member {} left the release: its workload is back on its stable version (undone)",
                    m.rollout
                ),
            };
            return Some((m.rollout.clone(), why));
        }
    }
    None
}

/// The release fails: every member rolls back, or the release pauses.
fn fail(
    obs: &ReleaseObserved<'_>,
    d: &mut ReleaseDecision,
    failed: Option<String>,
    why: String,
    on_failure: OnFailure,
) {
    let s = &mut d.status;
    for m in &mut s.members {
        if Some(&m.rollout) == failed.as_ref() {
            m.state = MemberState::Failed;
        }
    }
    match on_failure {
        OnFailure::Rollback => {
            s.phase = Some(LaneReleasePhase::RollingBack);
            s.last_update_time = Some(obs.now.to_string());
            set(obs, s, "RollingBack", format!("rolling back: {why}"));
            rolling_back(obs, d);
        }
        OnFailure::Pause => {
            d.pause = true;
            set(obs, s, "PausedOnFailure", format!("paused: {why}"));
        }
    }
}

fn member_names(members: &[MemberStatus]) -> String {
    members
        .iter()
        .map(|m| format!("{} ({})", m.rollout, m.revision))
        .collect::<Vec<_>>()
        .join(", ")
}

fn since(at: &Option<String>, now: jiff::Timestamp) -> jiff::Timestamp {
    at.as_deref().and_then(|t| t.parse().ok()).unwrap_or(now)
}

fn wake(d: &mut ReleaseDecision, at: jiff::Timestamp) {
    d.wake_at = Some(d.wake_at.map_or(at, |w| w.min(at)));
}

fn settled(
    obs: &ReleaseObserved<'_>,
    mut status: LaneReleaseStatus,
    reason: &str,
    message: String,
) -> ReleaseDecision {
    set(obs, &mut status, reason, message);
    ReleaseDecision {
        status,
        pause: false,
        wake_at: None,
    }
}

/// The message and the `Progressing` condition (its times move only when it changes).
fn set(obs: &ReleaseObserved<'_>, s: &mut LaneReleaseStatus, reason: &str, message: String) {
    let now = obs.now.to_string();
    let status = match s.phase {
        Some(
            LaneReleasePhase::Progressing
            | LaneReleasePhase::Promoting
            | LaneReleasePhase::Finishing
            | LaneReleasePhase::RollingBack,
        ) => "True",
        _ => "False",
    };
    s.message = Some(message.clone());
    let fresh = RolloutCondition {
        kind: "Progressing".into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now),
    };
    match s.conditions.iter_mut().find(|c| c.kind == "Progressing") {
        Some(c)
            if c.reason == fresh.reason
                && c.message == fresh.message
                && c.status == fresh.status => {}
        Some(c) => {
            let moved = c.status != fresh.status || c.reason != fresh.reason;
            let transition = c.last_transition_time.clone();
            *c = fresh;
            if !moved {
                c.last_transition_time = transition;
            }
        }
        None => s.conditions.push(fresh),
    }
}

#[cfg(test)]
mod tests;
