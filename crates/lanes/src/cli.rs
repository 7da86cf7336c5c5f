//! The kubectl-style commands that talk to a running `lanes up`: apply, get, describe,
//! delete, patch.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use lanes_model::Kind;
use lanes_server::Client;
use lanes_server::merge::PatchType;
use serde_json::Value;

use crate::offline::{load, to_yaml_stream};

/// Output formats of `get`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GetFormat {
    /// YAML (a multi-document stream for several objects).
    Yaml,
    /// JSON (a `List` for several objects).
    Json,
    /// A table with more columns.
    Wide,
    /// `kind/name` per line.
    Name,
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn kind_word(kind: Kind) -> String {
    kind.name().to_ascii_lowercase()
}

/// `lanes apply -f PATH...`.
pub fn apply(client: &Client, files: &[PathBuf]) -> Result<ExitCode> {
    let loaded = match load(files) {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    let objects: Vec<Value> = loaded.iter().map(|l| l.object.raw.clone()).collect();
    let results = runtime()?.block_on(client.apply(objects))?;
    let mut out = std::io::stdout().lock();
    for r in results {
        let kind = Kind::from_kind_name(&r.kind).map_or(r.kind.to_ascii_lowercase(), kind_word);
        writeln!(out, "{kind}/{} {}", r.name, r.result)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn kinds(spec: &str) -> Result<Vec<Kind>> {
    spec.split(',')
        .filter(|s| !s.is_empty())
        .map(|w| {
            if w == "all" {
                return Ok(vec![
                    Kind::Pod,
                    Kind::Service,
                    Kind::Deployment,
                    Kind::Rollout,
                ]);
            }
            Kind::resolve(w)
                .map(|k| vec![k])
                .ok_or_else(|| anyhow::anyhow!("the server doesn't have a resource type {w:?}"))
        })
        .collect::<Result<Vec<_>>>()
        .map(|v| v.into_iter().flatten().collect())
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn age(v: &Value) -> String {
    let created = lanes_store::created_at(v);
    let secs = (jiff::Timestamp::now().as_second() - created.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// Makes the cells of one table row.
type RowFn = Box<dyn Fn(&Value) -> Vec<String>>;

/// Table columns of a kind: headers and a row maker.
fn columns(kind: Kind, wide: bool) -> (Vec<&'static str>, RowFn) {
    match kind {
        Kind::Pod => {
            let mut h = vec!["READY", "STATUS", "RESTARTS", "AGE"];
            if wide {
                h.extend(["IP", "LANE"]);
            }
            (
                h,
                Box::new(move |v| {
                    let statuses = v
                        .pointer("/status/containerStatuses")
                        .and_then(Value::as_array);
                    let total = v
                        .pointer("/spec/containers")
                        .and_then(Value::as_array)
                        .map_or(0, Vec::len);
                    let ready =
                        statuses.map_or(0, |s| s.iter().filter(|c| c["ready"] == true).count());
                    let restarts: i64 = statuses.map_or(0, |s| {
                        s.iter().filter_map(|c| c["restartCount"].as_i64()).sum()
                    });
                    let reason = statuses
                        .and_then(|s| {
                            s.iter().find_map(|c| {
                                c.pointer("/state/waiting/reason").and_then(Value::as_str)
                            })
                        })
                        .unwrap_or_else(|| str_at(v, "/status/phase"));
                    let mut row = vec![
                        format!("{ready}/{total}"),
                        if reason.is_empty() {
                            "Pending".into()
                        } else {
                            reason.to_string()
                        },
                        restarts.to_string(),
                        age(v),
                    ];
                    if wide {
                        let ip = str_at(v, "/status/podIP");
                        row.push(if ip.is_empty() {
                            "<none>".into()
                        } else {
                            ip.to_string()
                        });
                        row.push(str_at(v, "/metadata/labels/ASM_TRAFFIC_TAG").to_string());
                    }
                    row
                }),
            )
        }
        Kind::Deployment => (
            vec!["READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
            Box::new(|v| {
                let n = |p: &str| v.pointer(p).and_then(Value::as_i64).unwrap_or(0);
                let want = v
                    .pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1);
                vec![
                    format!("{}/{want}", n("/status/readyReplicas")),
                    n("/status/updatedReplicas").to_string(),
                    n("/status/availableReplicas").to_string(),
                    age(v),
                ]
            }),
        ),
        Kind::Service => (
            vec!["PORT(S)", "SELECTOR", "AGE"],
            Box::new(|v| {
                let ports = v
                    .pointer("/spec/ports")
                    .and_then(Value::as_array)
                    .map(|ps| {
                        ps.iter()
                            .map(|p| format!("{}/TCP", p["port"]))
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default();
                let sel = v
                    .pointer("/spec/selector")
                    .and_then(Value::as_object)
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default();
                vec![ports, sel, age(v)]
            }),
        ),
        Kind::Rollout => (
            vec!["STATUS", "CANARY_STEP", "CANARY_STATE", "MESSAGE", "AGE"],
            Box::new(|v| {
                let step = v
                    .pointer("/status/canaryStatus/currentStepIndex")
                    .or_else(|| v.pointer("/status/currentStepIndex"))
                    .and_then(Value::as_i64)
                    .map(|n| n.to_string())
                    .unwrap_or_default();
                let state = v
                    .pointer("/status/canaryStatus/currentStepState")
                    .or_else(|| v.pointer("/status/currentStepState"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                vec![
                    str_at(v, "/status/phase").to_string(),
                    step,
                    state.to_string(),
                    str_at(v, "/status/message").to_string(),
                    age(v),
                ]
            }),
        ),
        Kind::LaneRelease => (
            vec!["PHASE", "STEP", "MEMBERS", "MESSAGE", "AGE"],
            Box::new(|v| {
                let step = v
                    .pointer("/status/currentStepIndex")
                    .and_then(Value::as_i64)
                    .map(|n| n.to_string())
                    .unwrap_or_default();
                vec![
                    str_at(v, "/status/phase").to_string(),
                    step,
                    str_at(v, "/status/memberList").to_string(),
                    str_at(v, "/status/message").to_string(),
                    age(v),
                ]
            }),
        ),
        _ => (vec!["AGE"], Box::new(|v| vec![age(v)])),
    }
}

fn print_table(out: &mut impl Write, rows: Vec<Vec<String>>) -> Result<()> {
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}   ", w = widths[i]));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// Options of `lanes get`.
#[derive(Debug, Clone)]
pub struct GetOptions {
    /// Kinds, comma-separated.
    pub kinds: String,
    /// One name.
    pub name: Option<String>,
    /// Namespace.
    pub namespace: String,
    /// All namespaces.
    pub all_namespaces: bool,
    /// Label selector.
    pub selector: Option<String>,
    /// Output.
    pub output: Option<GetFormat>,
}

/// `lanes get`.
pub fn get(client: &Client, o: &GetOptions) -> Result<ExitCode> {
    let kinds = kinds(&o.kinds)?;
    if kinds.is_empty() {
        bail!("name a resource type, such as pods, deployments, vs, dr, rollouts");
    }
    let rt = runtime()?;
    let mut found: Vec<(Kind, Vec<Value>)> = Vec::new();
    for &kind in &kinds {
        let ns = (!o.all_namespaces).then_some(o.namespace.as_str());
        let items = match &o.name {
            Some(name) => vec![rt.block_on(client.get(kind, ns.or(Some("default")), name))?],
            None => rt.block_on(client.list(kind, ns, o.selector.as_deref()))?,
        };
        found.push((kind, items));
    }
    let all: Vec<&Value> = found.iter().flat_map(|(_, v)| v.iter()).collect();
    let mut out = std::io::stdout().lock();
    match o.output {
        Some(GetFormat::Yaml) => {
            out.write_all(to_yaml_stream(&all)?.as_bytes())?;
        }
        Some(GetFormat::Json) => {
            let text = if o.name.is_some() && all.len() == 1 {
                serde_json::to_string_pretty(all[0])?
            } else {
                serde_json::to_string_pretty(
                    &serde_json::json!({"apiVersion": "v1", "kind": "List", "items": all}),
                )?
            };
            writeln!(out, "{text}")?;
        }
        Some(GetFormat::Name) => {
            for (kind, items) in &found {
                for v in items {
                    writeln!(out, "{}/{}", kind_word(*kind), str_at(v, "/metadata/name"))?;
                }
            }
        }
        None | Some(GetFormat::Wide) => {
            if all.is_empty() {
                let ns = if o.all_namespaces {
                    String::new()
                } else {
                    format!(" in {} namespace", o.namespace)
                };
                eprintln!("No resources found{ns}.");
                return Ok(ExitCode::SUCCESS);
            }
            let several = found.iter().filter(|(_, v)| !v.is_empty()).count() > 1;
            let mut first = true;
            for (kind, items) in &found {
                if items.is_empty() {
                    continue;
                }
                if !first {
                    writeln!(out)?;
                }
                first = false;
                let (headers, row) = columns(*kind, o.output == Some(GetFormat::Wide));
                let mut rows = Vec::new();
                let mut head: Vec<String> = Vec::new();
                if o.all_namespaces && kind.namespaced() {
                    head.push("NAMESPACE".into());
                }
                head.push("NAME".into());
                head.extend(headers.iter().map(|h| h.to_string()));
                rows.push(head);
                for v in items {
                    let mut r = Vec::new();
                    if o.all_namespaces && kind.namespaced() {
                        r.push(str_at(v, "/metadata/namespace").to_string());
                    }
                    let name = str_at(v, "/metadata/name");
                    r.push(if several {
                        format!("{}/{name}", kind_word(*kind))
                    } else {
                        name.to_string()
                    });
                    r.extend(row(v));
                    rows.push(r);
                }
                print_table(&mut out, rows)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `lanes describe KIND NAME`.
pub fn describe(client: &Client, kind: &str, name: &str, namespace: &str) -> Result<ExitCode> {
    let kind = Kind::resolve(kind)
        .ok_or_else(|| anyhow::anyhow!("the server doesn't have a resource type {kind:?}"))?;
    let v = runtime()?.block_on(client.get(kind, Some(namespace), name))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "Name:         {}", str_at(&v, "/metadata/name"))?;
    if kind.namespaced() {
        writeln!(out, "Namespace:    {}", str_at(&v, "/metadata/namespace"))?;
    }
    writeln!(out, "Kind:         {}", kind.name())?;
    writeln!(
        out,
        "Created:      {} ({} ago)",
        str_at(&v, "/metadata/creationTimestamp"),
        age(&v)
    )?;
    writeln!(
        out,
        "Version:      resourceVersion {}, generation {}",
        str_at(&v, "/metadata/resourceVersion"),
        v.pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0)
    )?;
    for (title, ptr) in [
        ("Labels", "/metadata/labels"),
        ("Annotations", "/metadata/annotations"),
    ] {
        let entries: Vec<String> = v
            .pointer(ptr)
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| k.as_str() != lanes_server::merge::LAST_APPLIED)
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                    .collect()
            })
            .unwrap_or_default();
        writeln!(
            out,
            "{title}:{}{}",
            " ".repeat(13 - title.len() - 1),
            if entries.is_empty() {
                "<none>".to_string()
            } else {
                entries.join("\n              ")
            }
        )?;
    }
    for (title, field) in [("Spec", "spec"), ("Status", "status")] {
        if let Some(part) = v.get(field) {
            writeln!(out, "{title}:")?;
            let yaml = serde_saphyr::to_string(part)?;
            for line in yaml.lines() {
                writeln!(out, "  {line}")?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `lanes delete KIND NAME` or `lanes delete -f PATH...`.
pub fn delete(
    client: &Client,
    kind: Option<&str>,
    names: &[String],
    namespace: &str,
    files: &[PathBuf],
    wait: Option<std::time::Duration>,
) -> Result<ExitCode> {
    let rt = runtime()?;
    let mut targets: Vec<(Kind, Option<String>, String)> = Vec::new();
    if !files.is_empty() {
        let loaded = match load(files) {
            Ok(l) => l,
            Err(code) => return Ok(code),
        };
        for l in loaded {
            targets.push((
                l.object.kind,
                l.object.namespace.clone(),
                l.object.name.clone(),
            ));
        }
    } else {
        let Some(kind) = kind else {
            bail!("name a resource type and a name, or pass -f PATH")
        };
        if names.is_empty() {
            bail!("name the {kind} to delete");
        }
        for k in kinds(kind)? {
            for n in names {
                targets.push((k, Some(namespace.to_string()), n.clone()));
            }
        }
    }
    // One DELETE per object, as kubectl sends them, several in flight.
    use futures_util::StreamExt;
    let results: Vec<_> =
        rt.block_on(
            futures_util::stream::iter(targets.into_iter().map(
                |(kind, namespace, name)| async move {
                    let r = client.delete(kind, namespace.as_deref(), &name).await;
                    (kind, namespace, name, r)
                },
            ))
            .buffered(16)
            .collect(),
        );
    let mut failed = false;
    let mut held = Vec::new();
    for (kind, namespace, name, r) in results {
        let word = kind.name().to_ascii_lowercase();
        match r {
            Ok(v) => {
                println!("{word}/{name} deleted");
                if lanes_store::is_deleting(&v) {
                    let uid = v.pointer("/metadata/uid").cloned();
                    held.push((kind, namespace, name, uid));
                }
            }
            Err(e) if e.status() == Some(http::StatusCode::NOT_FOUND) => {
                eprintln!("error: {word}/{name} not found");
                failed = true;
            }
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(limit) = wait {
        let deadline = tokio::time::Instant::now() + limit;
        for (kind, namespace, name, uid) in held {
            let gone = rt.block_on(until_gone(
                client,
                kind,
                namespace.as_deref(),
                &name,
                uid,
                deadline,
            ))?;
            if !gone {
                let word = kind.name().to_ascii_lowercase();
                eprintln!(
                    "error: timed out waiting for {word}/{name} to go: finalizers still hold it"
                );
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Waits until the object a delete marked is gone (or replaced by another with the
/// same name); false at `deadline`.
async fn until_gone(
    client: &Client,
    kind: Kind,
    namespace: Option<&str>,
    name: &str,
    uid: Option<Value>,
    deadline: tokio::time::Instant,
) -> Result<bool, lanes_server::client::ClientError> {
    loop {
        match client.get(kind, namespace, name).await {
            Err(e) if e.status() == Some(http::StatusCode::NOT_FOUND) => return Ok(true),
            Err(e) => return Err(e),
            Ok(v) if v.pointer("/metadata/uid").cloned() != uid => return Ok(true),
            Ok(_) => {}
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// `lanes patch KIND NAME -p JSON [--type ...]`.
pub fn patch(
    client: &Client,
    kind: &str,
    name: &str,
    namespace: &str,
    patch: &str,
    ptype: PatchType,
) -> Result<ExitCode> {
    let kind = Kind::resolve(kind)
        .ok_or_else(|| anyhow::anyhow!("the server doesn't have a resource type {kind:?}"))?;
    let body: Value = serde_json::from_str(patch)
        .map_err(|e| anyhow::anyhow!("the patch is not valid JSON: {e}"))?;
    let before = runtime()?.block_on(client.get(kind, Some(namespace), name))?;
    let after =
        runtime()?.block_on(client.patch(kind, Some(namespace), name, ptype, &body, false))?;
    let changed =
        before.pointer("/metadata/resourceVersion") != after.pointer("/metadata/resourceVersion");
    println!(
        "{}/{name} {}",
        kind_word(kind),
        if changed {
            "patched"
        } else {
            "patched (no change)"
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// `lanes logs POD [--previous]`.
pub fn logs(client: &Client, namespace: &str, pod: &str, previous: bool) -> Result<ExitCode> {
    let text = runtime()?.block_on(client.log(namespace, pod, previous))?;
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// `lanes trace`: the hops of a trace (or the newest request's) as a tree, or JSON.
pub fn trace(client: &Client, id: Option<&str>, last: bool, json: bool) -> Result<ExitCode> {
    let which = match (id, last) {
        (_, true) => "last".to_string(),
        (Some(id), false) => {
            let id = id.trim();
            let url_safe = |c: char| c.is_ascii_alphanumeric() || "-._~".contains(c);
            if id.is_empty() || !id.chars().all(url_safe) {
                bail!(
                    "{id:?} names no trace: give its trace-id (32 hex digits, as in a \
                     traceparent) or the trace header's value (letters, digits, - . _ ~)"
                );
            }
            id.to_string()
        }
        (None, false) => bail!("name a trace id, or --last"),
    };
    let (status, body) = runtime()?.block_on(client.send(
        hyper::Method::GET,
        &format!("/traces/{which}"),
        None,
        None,
    ))?;
    if !status.is_success() {
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("message")?.as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
        anyhow::bail!("{message}");
    }
    let hops: Vec<lanes_proxy::trace::Hop> =
        serde_json::from_slice(&body).context("the API's hops are not the expected JSON")?;
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &hops)?;
        writeln!(out)?;
    } else {
        out.write_all(lanes_proxy::trace::render_tree(&hops).as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}
