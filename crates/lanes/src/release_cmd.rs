//! `lanes release status|approve|undo|pause|resume`: a LaneRelease followed and steered
//! as one.

use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use lanes_model::Kind;
use lanes_model::lane_release::{LaneRelease, LaneReleasePhase};
use lanes_rollout::controls::{Control, ControlPatch, lane_release_control, past};
use lanes_server::Client;
use lanes_server::merge::PatchType;
use serde_json::{Value, json};

use crate::rollout_cmd::runtime;

/// `lanerelease/NAME` or `NAME` → NAME.
fn release_name(target: &str) -> Result<&str> {
    match target.split_once('/') {
        None => Ok(target),
        Some((kind, name)) if Kind::resolve(kind) == Some(Kind::LaneRelease) => Ok(name),
        Some((kind, _)) => bail!("{target:?}: expected lanerelease/NAME, not a {kind}"),
    }
}

fn typed(v: &Value) -> Result<LaneRelease> {
    serde_json::from_value(v.clone()).map_err(|e| anyhow!("a LaneRelease that does not read: {e}"))
}

/// The LaneRelease `target` names in `ns`: its name, a runtime for more requests, the
/// object as read (for a write guarded by its resourceVersion) and typed.
struct Fetched<'a> {
    name: &'a str,
    rt: tokio::runtime::Runtime,
    raw: Value,
    lr: LaneRelease,
}

fn fetch<'a>(client: &Client, target: &'a str, ns: &str) -> Result<Fetched<'a>> {
    let name = release_name(target)?;
    let rt = runtime()?;
    let raw = rt.block_on(client.get(Kind::LaneRelease, Some(ns), name))?;
    let lr = typed(&raw)?;
    Ok(Fetched { name, rt, raw, lr })
}

/// `lanes release status`: phase, step, message, and each member.
pub fn status(client: &Client, target: &str, ns: &str) -> Result<ExitCode> {
    let Fetched { name, lr, .. } = fetch(client, target, ns)?;
    let st = lr.status.clone().unwrap_or_default();
    println!(
        "lanerelease/{name}: {} step {}/{}{}",
        lr.phase().as_str(),
        st.current_step_index,
        lr.spec.steps.len(),
        st.current_step_state
            .map(|s| format!(" ({s})"))
            .unwrap_or_default()
    );
    if let Some(m) = &st.message {
        println!("  {m}");
    }
    if let Some(a) = &st.analysis {
        let a = serde_json::to_value(a)?;
        println!(
            "  lane {:?}, end to end:{}",
            lr.spec.lane,
            crate::rollout_cmd::analysis_lines(&a)
        );
    }
    for m in &st.members {
        println!(
            "  {:<24} {:<10} {:?}  {}",
            m.rollout,
            m.revision,
            m.state,
            m.message.as_deref().unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// How many times a control is decided afresh when the object changed between its read
/// and its status write (a controller writing its status meanwhile).
pub(crate) const CONTROL_TRIES: usize = 5;

/// Whether an API error is an optimistic-concurrency conflict: the object changed since
/// it was read.
pub(crate) fn is_conflict(e: &lanes_server::client::ClientError) -> bool {
    e.status() == Some(http::StatusCode::CONFLICT)
}

/// `lanes release approve|undo|pause|resume`: the shared control
/// ([`lanes_rollout::controls`]), its status change sent only if the LaneRelease has not
/// changed since it was read; when it has, read and decided again (up to
/// [`CONTROL_TRIES`] times).
pub fn control(client: &Client, target: &str, ns: &str, control: Control) -> Result<ExitCode> {
    let mut tries = 0;
    loop {
        tries += 1;
        let Fetched { name, rt, raw, lr } = fetch(client, target, ns)?;
        let patch = match lane_release_control(&lr, control, jiff::Timestamp::now()) {
            Ok(p) => p,
            Err(refused) => bail!("{refused}"),
        };
        let (patch, status) = match patch {
            ControlPatch::AlreadySo(said) => {
                println!("{said}");
                return Ok(ExitCode::SUCCESS);
            }
            ControlPatch::Spec(patch) => (patch, false),
            ControlPatch::Status(status) => (
                json!({
                    "metadata": {"resourceVersion": raw["metadata"]["resourceVersion"]},
                    "status": status,
                }),
                true,
            ),
            ControlPatch::RestoreWorkload => bail!("lanerelease/{name}: nothing to restore"),
        };
        let sent = rt.block_on(client.patch(
            Kind::LaneRelease,
            Some(ns),
            name,
            PatchType::Merge,
            &patch,
            status,
        ));
        match sent {
            Ok(_) => break announce(name, control),
            // Only the status write is guarded by the resourceVersion read.
            Err(e) if status && is_conflict(&e) && tries < CONTROL_TRIES => continue,
            Err(e) if status => bail!(
                "lanerelease/{name} changed meanwhile ({e}); run {} again",
                control.as_str()
            ),
            Err(e) => bail!("lanerelease/{name}: cannot {}: {e}", control.as_str()),
        }
    }
}

/// Says what a control did.
fn announce(name: &str, control: Control) -> Result<ExitCode> {
    match control {
        Control::Undo => {
            println!("lanerelease/{name} undone: every member goes back to its stable version")
        }
        other => println!("lanerelease/{name} {}", past(other)),
    }
    Ok(ExitCode::SUCCESS)
}

/// The LaneRelease that holds Rollout `name` in `ns`, if one does (and can run): a
/// member is approved only with its release.
pub fn holder(
    client: &Client,
    rt: &tokio::runtime::Runtime,
    ns: &str,
    rollout: &Value,
) -> Result<Option<String>> {
    let all = rt.block_on(client.list(Kind::LaneRelease, Some(ns), None))?;
    let releases: Vec<LaneRelease> = all.iter().filter_map(|v| typed(v).ok()).collect();
    let refs: Vec<&LaneRelease> = releases.iter().collect();
    let name = rollout["metadata"]["name"].as_str().unwrap_or("");
    let labels: Option<std::collections::BTreeMap<String, String>> =
        serde_json::from_value(rollout["metadata"]["labels"].clone()).ok();
    Ok(
        lanes_rollout::lane_release::owner_of(&refs, name, labels.as_ref())
            .filter(|o| o.phase() != LaneReleasePhase::Invalid)
            .and_then(|o| o.metadata.name.clone()),
    )
}
