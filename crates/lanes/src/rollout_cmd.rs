//! `lanes rollout status|approve|undo|pause|resume` and `lanes set image`, as
//! `kubectl-kruise` users know them.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use lanes_model::Kind;
use lanes_model::rollout::Rollout;
use lanes_rollout::STABLE_TEMPLATE;
use lanes_rollout::controls::{Control, ControlPatch, past, rollout_control};
use lanes_server::Client;
use lanes_server::merge::PatchType;
use serde_json::{Value, json};

use crate::release_cmd::{CONTROL_TRIES, is_conflict};

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// `rollout/NAME` or `NAME` → NAME.
fn rollout_name(target: &str) -> Result<&str> {
    match target.split_once('/') {
        None => Ok(target),
        Some((kind, name)) if Kind::resolve(kind) == Some(Kind::Rollout) => Ok(name),
        Some((kind, _)) => bail!("{target:?}: expected rollout/NAME, not a {kind}"),
    }
}

fn str_at<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or("")
}

/// One line describing a Rollout's state.
pub fn describe_line(name: &str, r: &Value) -> String {
    let steps = r
        .pointer("/spec/strategy/canary/steps")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let cs = r
        .pointer("/status/canaryStatus")
        .cloned()
        .unwrap_or(Value::Null);
    let phase = str_at(r, "/status/phase");
    let phase = if phase.is_empty() { "Initial" } else { phase };
    let mut line = format!("rollout/{name}: {phase}");
    if cs.is_object() {
        let i = cs["currentStepIndex"].as_i64().unwrap_or(0);
        line.push_str(&format!(
            ", step {i}/{steps} {}",
            cs["currentStepState"].as_str().unwrap_or("")
        ));
        if let Some(c) = cs["canaryRevision"].as_str() {
            line.push_str(&format!(
                ", canary {}/{} ready, revisions stable {} canary {c}",
                cs["canaryReadyReplicas"].as_i64().unwrap_or(0),
                cs["canaryReplicas"].as_i64().unwrap_or(0),
                cs["stableRevision"].as_str().unwrap_or("?"),
            ));
        } else if let Some(s) = cs["stableRevision"].as_str() {
            line.push_str(&format!(", revision {s}"));
        }
    }
    let msg = str_at(r, "/status/message");
    if !msg.is_empty() {
        line.push_str(": ");
        line.push_str(msg);
    }
    line
}

/// Whether a release is over (or none runs).
fn settled(r: &Value) -> bool {
    let phase = str_at(r, "/status/phase");
    phase == "Healthy" || phase == "Disabled"
}

/// `lanes rollout status`.
pub fn status(client: &Client, target: &str, ns: &str, watch: bool) -> Result<ExitCode> {
    let name = rollout_name(target)?;
    let rt = runtime()?;
    let mut last = String::new();
    loop {
        let r = rt.block_on(client.get(Kind::Rollout, Some(ns), name))?;
        let mut line = describe_line(name, &r);
        if let Some(a) = r.pointer("/status/analysis").filter(|a| a.is_object()) {
            line.push_str(&analysis_lines(a));
        }
        if line != last {
            println!("{line}");
            last = line;
        }
        if !watch || settled(&r) {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The status patch approving Rollout `name` as read (`r`), guarded by its
/// resourceVersion; with `to_step`, Kruise's step jump.
fn approval(
    client: &Client,
    rt: &tokio::runtime::Runtime,
    ns: &str,
    name: &str,
    r: &Value,
    to_step: Option<i32>,
) -> Result<Value> {
    let held = crate::release_cmd::holder(client, rt, ns, r)?;
    let typed: Rollout = serde_json::from_value(r.clone())
        .map_err(|e| anyhow!("rollout/{name} does not read: {e}"))?;
    let now = jiff::Timestamp::now();
    let status = match rollout_control(&typed, held.as_deref(), Control::Approve, now) {
        Ok(ControlPatch::Status(status)) => status,
        Ok(other) => bail!("rollout/{name}: unexpected approval {other:?}"),
        Err(refused) => bail!("{refused}"),
    };
    let mut patch = json!({
        "metadata": {"resourceVersion": r["metadata"]["resourceVersion"]},
        "status": status,
    });
    if let Some(step) = to_step {
        let steps = r
            .pointer("/spec/strategy/canary/steps")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        if step < 1 || step as usize > steps {
            bail!("rollout/{name}: --to-step {step} names no step: it has steps 1 to {steps}");
        }
        patch["status"]["canaryStatus"]["nextStepIndex"] = json!(step);
    }
    Ok(patch)
}

/// `lanes rollout approve`: the status patch `kubectl-kruise rollout approve` sends,
/// refused unless the release waits in `StepPaused`; with `to_step`, Kruise's step jump
/// (`nextStepIndex` set in the same patch).
pub fn approve(client: &Client, target: &str, ns: &str, to_step: Option<i32>) -> Result<ExitCode> {
    let name = rollout_name(target)?;
    let rt = runtime()?;
    // Decided afresh when the Rollout changed between its read and the write (its
    // controller writing its status meanwhile).
    let mut tries = 0;
    loop {
        tries += 1;
        let r = rt.block_on(client.get(Kind::Rollout, Some(ns), name))?;
        let patch = approval(client, &rt, ns, name, &r, to_step)?;
        let sent = rt.block_on(client.patch(
            Kind::Rollout,
            Some(ns),
            name,
            PatchType::Merge,
            &patch,
            true,
        ));
        match sent {
            Ok(_) => break,
            Err(e) if is_conflict(&e) && tries < CONTROL_TRIES => continue,
            Err(e) => bail!("rollout/{name} changed while approving ({e}); run approve again"),
        }
    }
    match to_step {
        Some(step) => println!("rollout/{name} approved, on to step {step}"),
        None => println!("rollout/{name} approved"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `lanes rollout undo`: writes the stable template back to the workload; the
/// controller then cancels the release.
pub fn undo(client: &Client, target: &str, ns: &str) -> Result<ExitCode> {
    if let Some((kind, name)) = target.split_once('/')
        && Kind::resolve(kind) == Some(Kind::Deployment)
    {
        // A Deployment goes back to its previous revision, as `kubectl rollout undo`.
        let rt = runtime()?;
        let d = rt.block_on(client.get(Kind::Deployment, Some(ns), name))?;
        let revs = revisions(&rt, client, &d, ns)?;
        let Some((previous, _)) = revs.iter().rev().nth(1) else {
            bail!("deployment/{name} has no previous revision to go back to");
        };
        return undo_to(&rt, client, name, ns, *previous);
    }
    let name = rollout_name(target)?;
    let rt = runtime()?;
    let r = rt.block_on(client.get(Kind::Rollout, Some(ns), name))?;
    let workload = str_at(&r, "/spec/workloadRef/name").to_string();
    let d = rt.block_on(client.get(Kind::Deployment, Some(ns), &workload))?;
    let annotations: Option<std::collections::BTreeMap<String, String>> =
        serde_json::from_value(d["metadata"]["annotations"].clone()).ok();
    let Some(stable) = lanes_rollout::controls::stable_template(annotations.as_ref()) else {
        bail!(
            "rollout/{name}: no release in progress; deployment/{workload} is on its stable template already"
        );
    };
    let patch = json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": d["metadata"]["resourceVersion"]},
        {"op": "replace", "path": "/spec/template", "value": stable},
    ]);
    rt.block_on(client.patch(
        Kind::Deployment,
        Some(ns),
        &workload,
        PatchType::Json,
        &patch,
        false,
    ))?;
    println!("rollout/{name} undone: deployment/{workload} is back on its stable template");
    Ok(ExitCode::SUCCESS)
}

/// `lanes rollout pause|resume`.
pub fn set_paused(client: &Client, target: &str, ns: &str, control: Control) -> Result<ExitCode> {
    let name = rollout_name(target)?;
    let rt = runtime()?;
    let r = rt.block_on(client.get(Kind::Rollout, Some(ns), name))?;
    let typed: Rollout =
        serde_json::from_value(r).map_err(|e| anyhow!("rollout/{name} does not read: {e}"))?;
    let patch = match rollout_control(&typed, None, control, jiff::Timestamp::now()) {
        Ok(ControlPatch::Spec(patch)) => patch,
        Ok(ControlPatch::AlreadySo(said)) => {
            println!("{said}");
            return Ok(ExitCode::SUCCESS);
        }
        Ok(other) => bail!("rollout/{name}: unexpected {} {other:?}", control.as_str()),
        Err(refused) => bail!("{refused}"),
    };
    rt.block_on(client.patch(
        Kind::Rollout,
        Some(ns),
        name,
        PatchType::Merge,
        &patch,
        false,
    ))?;
    println!("rollout/{name} {}", past(control));
    Ok(ExitCode::SUCCESS)
}

/// `lanes set image deployment/NAME CONTAINER=IMAGE...`.
pub fn set_image(client: &Client, target: &str, pairs: &[String], ns: &str) -> Result<ExitCode> {
    let name = match target.split_once('/') {
        Some((kind, name)) if Kind::resolve(kind) == Some(Kind::Deployment) => name,
        _ => bail!("{target:?}: expected deployment/NAME"),
    };
    let mut containers = Vec::new();
    for p in pairs {
        let (c, image) = p
            .split_once('=')
            .filter(|(c, i)| !c.is_empty() && !i.is_empty())
            .ok_or_else(|| anyhow!("{p:?}: expected CONTAINER=IMAGE"))?;
        containers.push(json!({"name": c, "image": image}));
    }
    let rt = runtime()?;
    let d = rt.block_on(client.get(Kind::Deployment, Some(ns), name))?;
    let known: Vec<&str> = d
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| cs.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    for c in &containers {
        let n = c["name"].as_str().unwrap_or("");
        if !known.contains(&n) {
            bail!(
                "deployment/{name} has no container {n:?} (it has {})",
                known.join(", ")
            );
        }
    }
    let patch = json!({"spec": {"template": {"spec": {"containers": containers}}}});
    rt.block_on(client.patch(
        Kind::Deployment,
        Some(ns),
        name,
        PatchType::Strategic,
        &patch,
        false,
    ))?;
    println!("deployment/{name} image updated");
    Ok(ExitCode::SUCCESS)
}

/// A selector string (`k=v,...`) from a Deployment's `spec.selector.matchLabels`.
fn match_labels(d: &Value) -> String {
    d.get("spec")
        .and_then(|s| s.get("selector"))
        .map(lanes_model::object::match_labels_query)
        .unwrap_or_default()
}

/// One line per pod: name, ready, phase, the release labels Kruise puts on canary pods.
fn pod_lines(out: &mut String, title: &str, pods: &[&Value]) {
    out.push_str(&format!("{title} ({}):\n", pods.len()));
    for p in pods {
        let ready = p
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        let label = |k: &str| {
            p.pointer("/metadata/labels")
                .and_then(|l| l.get(k))
                .and_then(Value::as_str)
                .unwrap_or("-")
                .to_string()
        };
        out.push_str(&format!(
            "  {:<40} ready={:<5} {:<9} batch={} rollout-id={}\n",
            str_at(p, "/metadata/name"),
            ready,
            str_at(p, "/status/phase"),
            label(lanes_rollout::BATCH_ID_LABEL),
            label(lanes_rollout::ROLLOUT_ID_LABEL),
        ));
    }
}

/// `lanes rollout describe`: the state line, each step, and the workload's pods split
/// into the canary's and the stable ones (as `kubectl-kruise describe rollout` lists
/// them).
pub fn describe(client: &Client, target: &str, ns: &str) -> Result<ExitCode> {
    let name = rollout_name(target)?;
    let rt = runtime()?;
    let r = rt.block_on(client.get(Kind::Rollout, Some(ns), name))?;
    let mut out = describe_line(name, &r);
    out.push('\n');
    let current = r
        .pointer("/status/canaryStatus/currentStepIndex")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let steps = r
        .pointer("/spec/strategy/canary/steps")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    out.push_str("Steps:\n");
    for (i, s) in steps.iter().enumerate() {
        let n = i as i64 + 1;
        let mark = match n.cmp(&current) {
            std::cmp::Ordering::Less => "done",
            std::cmp::Ordering::Equal => "current",
            std::cmp::Ordering::Greater => "",
        };
        let field = |k: &str| match &s[k] {
            Value::Null => "-".to_string(),
            Value::String(v) => v.clone(),
            v => v.to_string(),
        };
        out.push_str(&format!(
            "  {n}. replicas={} traffic={} pause={} {mark}\n",
            field("replicas"),
            field("traffic"),
            s["pause"]["duration"]
                .as_i64()
                .map_or("manual".to_string(), |d| format!("{d}s")),
        ));
    }
    let workload = str_at(&r, "/spec/workloadRef/name").to_string();
    let d = rt.block_on(client.get(Kind::Deployment, Some(ns), &workload))?;
    let selector = match_labels(&d);
    let pods = rt.block_on(client.list(Kind::Pod, Some(ns), Some(&selector)))?;
    let canary_deployments = rt.block_on(client.list(
        Kind::Deployment,
        Some(ns),
        Some(&format!("{}={workload}", lanes_rollout::CANARY_LABEL)),
    ))?;
    let canaries: Vec<lanes_rollout::Canary> = canary_deployments
        .iter()
        .map(|c| lanes_rollout::Canary {
            name: str_at(c, "/metadata/name").to_string(),
            replicas: 0,
            ready: 0,
            pod_hash: None,
        })
        .collect();
    // Partition style: the canary's pods are the workload's own at the release's
    // `podTemplateHash`, while it runs (kubectl-kruise lists them so).
    let partition_hash = (str_at(&r, "/status/phase") == "Progressing" && canaries.is_empty())
        .then(|| str_at(&r, "/status/canaryStatus/podTemplateHash"))
        .filter(|h| !h.is_empty());
    let is_canary = |p: &Value| {
        let own =
            partition_hash.is_some_and(|h| str_at(p, "/metadata/labels/pod-template-hash") == h);
        own || serde_json::from_value::<k8s_openapi::api::core::v1::Pod>(p.clone())
            .is_ok_and(|p| lanes_rollout::owned_by_canary(&p, &canaries))
    };
    let (canary, stable): (Vec<&Value>, Vec<&Value>) = pods.iter().partition(|p| is_canary(p));
    pod_lines(&mut out, "Canary pods", &canary);
    pod_lines(&mut out, "Stable pods", &stable);
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// The Deployment a target names: `deployment/NAME`, or `rollout/NAME`'s workload.
fn workload_of(
    rt: &tokio::runtime::Runtime,
    client: &Client,
    target: &str,
    ns: &str,
) -> Result<String> {
    let Some((kind, name)) = target.split_once('/') else {
        bail!("{target:?}: expected rollout/NAME or deployment/NAME");
    };
    match Kind::resolve(kind) {
        Some(Kind::Deployment) => Ok(name.to_string()),
        Some(Kind::Rollout) => {
            let r = rt.block_on(client.get(Kind::Rollout, Some(ns), name))?;
            Ok(str_at(&r, "/spec/workloadRef/name").to_string())
        }
        _ => bail!("{target:?}: expected rollout/NAME or deployment/NAME, not a {kind}"),
    }
}

/// A Deployment's revisions, oldest first: (revision, its ReplicaSet), from the
/// ReplicaSets it controls.
fn revisions(
    rt: &tokio::runtime::Runtime,
    client: &Client,
    d: &Value,
    ns: &str,
) -> Result<Vec<(i64, Value)>> {
    let uid = str_at(d, "/metadata/uid");
    let selector = match_labels(d);
    let all = rt.block_on(client.list(Kind::ReplicaSet, Some(ns), Some(&selector)))?;
    let mut out: Vec<(i64, Value)> = all
        .into_iter()
        .filter(|rs| lanes_model::object::controlled_by(rs, uid))
        .filter_map(|rs| {
            let n = rs
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(REVISION))
                .and_then(Value::as_str)?
                .parse()
                .ok()?;
            Some((n, rs))
        })
        .collect();
    out.sort_by_key(|(n, _)| *n);
    Ok(out)
}

/// Kubernetes' annotation of a ReplicaSet's revision.
const REVISION: &str = "deployment.kubernetes.io/revision";

/// A revision's pod template, without the hash label its ReplicaSet adds.
fn template_of(rs: &Value) -> Value {
    let mut t = rs.pointer("/spec/template").cloned().unwrap_or(Value::Null);
    if let Some(labels) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove("pod-template-hash");
    }
    t
}

/// `lanes rollout history`: a workload's revisions as `kubectl rollout history` lists
/// them (with the image each ran); with `revision`, that revision's pod template.
pub fn history(client: &Client, target: &str, ns: &str, revision: Option<i64>) -> Result<ExitCode> {
    let rt = runtime()?;
    let name = workload_of(&rt, client, target, ns)?;
    let d = rt.block_on(client.get(Kind::Deployment, Some(ns), &name))?;
    let revs = revisions(&rt, client, &d, ns)?;
    if let Some(n) = revision {
        let Some((_, rs)) = revs.iter().find(|(r, _)| *r == n) else {
            bail!("deployment/{name} has no revision {n}");
        };
        println!("deployment/{name} with revision #{n}");
        print!("{}", serde_saphyr::to_string(&template_of(rs))?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("deployment/{name}");
    println!("REVISION  CHANGE-CAUSE  IMAGES");
    for (n, rs) in &revs {
        let cause = rs
            .pointer("/metadata/annotations")
            .and_then(|a| a.get("kubernetes.io/change-cause"))
            .and_then(Value::as_str)
            .unwrap_or("<none>");
        let images: Vec<&str> = rs
            .pointer("/spec/template/spec/containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c["image"].as_str())
            .collect();
        println!("{n:<10}{cause:<14}{}", images.join(","));
    }
    Ok(ExitCode::SUCCESS)
}

/// `lanes rollout undo --to-revision N`: the workload's pod template set to revision
/// N's (as `kubectl rollout undo` does). Under a Rollout this is a release of that
/// template (or the release's cancellation, when it is the stable one); a paused
/// Deployment no Rollout manages is refused, as kubectl refuses it.
pub fn undo_to_revision(client: &Client, target: &str, ns: &str, n: i64) -> Result<ExitCode> {
    let rt = runtime()?;
    let name = workload_of(&rt, client, target, ns)?;
    undo_to(&rt, client, &name, ns, n)
}

/// Sets Deployment `name`'s pod template to revision `n`'s.
fn undo_to(
    rt: &tokio::runtime::Runtime,
    client: &Client,
    name: &str,
    ns: &str,
    n: i64,
) -> Result<ExitCode> {
    let d = rt.block_on(client.get(Kind::Deployment, Some(ns), name))?;
    let managed = d
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(STABLE_TEMPLATE))
        .is_some();
    if d.pointer("/spec/paused") == Some(&Value::Bool(true)) && !managed {
        bail!(
            "deployment/{name} is paused: resume it first (lanes rollout resume, or kubectl rollout resume) and try again"
        );
    }
    let revs = revisions(rt, client, &d, ns)?;
    let Some((_, rs)) = revs.iter().find(|(r, _)| *r == n) else {
        let known: Vec<String> = revs.iter().map(|(r, _)| r.to_string()).collect();
        bail!(
            "deployment/{name} has no revision {n} (it has {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        );
    };
    let template = template_of(rs);
    if lanes_model::hash::template_hash(&template)
        == lanes_model::hash::template_hash(d.pointer("/spec/template").unwrap_or(&Value::Null))
    {
        println!(
            "deployment/{name} skipped rollback (current template already matches revision {n})"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let patch = json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": d["metadata"]["resourceVersion"]},
        {"op": "replace", "path": "/spec/template", "value": template},
    ]);
    rt.block_on(client.patch(
        Kind::Deployment,
        Some(ns),
        name,
        PatchType::Json,
        &patch,
        false,
    ))?;
    println!("deployment/{name} rolled back to revision {n}");
    Ok(ExitCode::SUCCESS)
}

/// `lanes rollout restart`: the annotation `kubectl rollout restart` sets on the pod
/// template, so every pod is replaced (under a Rollout, by a release).
pub fn restart(client: &Client, target: &str, ns: &str) -> Result<ExitCode> {
    let rt = runtime()?;
    let name = workload_of(&rt, client, target, ns)?;
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": now}}}}});
    rt.block_on(client.patch(
        Kind::Deployment,
        Some(ns),
        &name,
        PatchType::Merge,
        &patch,
        false,
    ))?;
    println!("deployment/{name} restarted");
    Ok(ExitCode::SUCCESS)
}

/// An analysis record (a Rollout's or a lane release's) as status lines: its counts and
/// its last three measurements.
pub(crate) fn analysis_lines(a: &Value) -> String {
    let mut out = format!(
        "\n  analysis: {} passed, {} failed",
        a["passes"].as_u64().unwrap_or(0),
        a["failures"].as_u64().unwrap_or(0)
    );
    let measurements = a["measurements"].as_array().map_or(&[][..], Vec::as_slice);
    for m in &measurements[measurements.len().saturating_sub(3)..] {
        out.push_str(&format!(
            "\n  {} {} {}: {}",
            m["time"].as_str().unwrap_or(""),
            m["metric"].as_str().unwrap_or(""),
            m["verdict"].as_str().unwrap_or(""),
            m["message"].as_str().unwrap_or("")
        ));
    }
    out
}
