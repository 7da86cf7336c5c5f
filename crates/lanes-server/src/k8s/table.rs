//! Server-side printing (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`): the
//! columns kubectl shows for the built-in kinds, and the CRDs' printer columns.

use axum::http::{HeaderMap, header};
use lanes_model::Kind;
use serde_json::{Value, json};

use super::catalog::Resource;

/// Whether the `Accept` header asks for a Table.
pub fn wanted(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| {
            accept.split(',').any(|offer| {
                let p: Vec<&str> = offer.split(';').map(str::trim).collect();
                p.contains(&"as=Table") && p.contains(&"g=meta.k8s.io")
            })
        })
}

/// What each row carries of its object (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Include {
    /// Nothing.
    None,
    /// `PartialObjectMetadata` (the default).
    #[default]
    Metadata,
    /// The whole object.
    Object,
}

impl Include {
    /// From the query parameter.
    pub fn parse(s: Option<&str>) -> Include {
        match s {
            Some("None") => Include::None,
            Some("Object") => Include::Object,
            _ => Include::Metadata,
        }
    }
}

/// A column: its header, type, and whether only `-o wide` shows it.
struct Column {
    name: String,
    kind: &'static str,
    wide: bool,
    cell: Box<dyn Fn(&Value) -> Value + Send + Sync>,
}

fn col(
    name: &'static str,
    wide: bool,
    cell: impl Fn(&Value) -> Value + Send + Sync + 'static,
) -> Column {
    Column {
        name: name.to_string(),
        kind: "string",
        wide,
        cell: Box::new(cell),
    }
}

fn int_col(name: &'static str, cell: impl Fn(&Value) -> Value + Send + Sync + 'static) -> Column {
    Column {
        kind: "integer",
        ..col(name, false, cell)
    }
}

fn s(v: &Value, ptr: &str) -> String {
    match v.pointer(ptr) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn n(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

fn or_none(text: String) -> Value {
    if text.is_empty() {
        "<none>".into()
    } else {
        text.into()
    }
}

/// The time since `ts` (RFC 3339) as kubectl prints ages: `5m2s`, `3h`, `4d`.
pub fn age_of(ts: &str) -> String {
    match ts.parse::<jiff::Timestamp>() {
        Ok(t) => human_duration(jiff::Timestamp::now().as_second() - t.as_second()),
        Err(_) => "<unknown>".into(),
    }
}

/// A duration in seconds as the API machinery's `HumanDuration` prints it.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let secs = secs.max(0);
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    let or_bare = |big: i64, unit: &str, small: i64, sunit: &str| {
        if small == 0 {
            format!("{big}{unit}")
        } else {
            format!("{big}{unit}{small}{sunit}")
        }
    };
    if secs < 120 {
        format!("{secs}s")
    } else if m < 10 {
        or_bare(m, "m", secs % 60, "s")
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        or_bare(h, "h", m % 60, "m")
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        or_bare(d, "d", h % 24, "h")
    } else if h < 24 * 365 * 2 {
        format!("{d}d")
    } else if h < 24 * 365 * 8 {
        or_bare(d / 365, "y", d % 365, "d")
    } else {
        format!("{}y", d / 365)
    }
}

fn age() -> Column {
    col("Age", false, |v| {
        age_of(&s(v, "/metadata/creationTimestamp")).into()
    })
}

fn name() -> Column {
    Column {
        kind: "string",
        ..col("Name", false, |v| s(v, "/metadata/name").into())
    }
}

fn pod_columns() -> Vec<Column> {
    vec![
        name(),
        col("Ready", false, |v| {
            let statuses = v
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array);
            let total = v
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let ready = statuses.map_or(0, |l| {
                l.iter()
                    .filter(|c| c["ready"].as_bool() == Some(true))
                    .count()
            });
            format!("{ready}/{total}").into()
        }),
        col("Status", false, |v| {
            let reason = s(v, "/status/reason");
            if v.pointer("/metadata/deletionTimestamp").is_some() {
                "Terminating".into()
            } else if reason.is_empty() {
                s(v, "/status/phase").into()
            } else {
                reason.into()
            }
        }),
        int_col("Restarts", |v| {
            let total: i64 = v
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .map_or(0, |l| {
                    l.iter()
                        .map(|c| c["restartCount"].as_i64().unwrap_or(0))
                        .sum()
                });
            total.into()
        }),
        age(),
        col("IP", true, |v| or_none(s(v, "/status/podIP"))),
        col("Node", true, |v| or_none(s(v, "/spec/nodeName"))),
        col("Nominated Node", true, |v| {
            or_none(s(v, "/status/nominatedNodeName"))
        }),
        col("Readiness Gates", true, |_| "<none>".into()),
    ]
}

fn containers(v: &Value, field: &str) -> String {
    v.pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(|c| c[field].as_str())
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn selector_text(map: Option<&Value>) -> String {
    map.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn deployment_columns() -> Vec<Column> {
    vec![
        name(),
        col("Ready", false, |v| {
            let want = v
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            format!("{}/{want}", n(v, "/status/readyReplicas")).into()
        }),
        int_col("Up-to-date", |v| n(v, "/status/updatedReplicas").into()),
        int_col("Available", |v| n(v, "/status/availableReplicas").into()),
        age(),
        col("Containers", true, |v| containers(v, "name").into()),
        col("Images", true, |v| containers(v, "image").into()),
        col("Selector", true, |v| {
            or_none(selector_text(v.pointer("/spec/selector/matchLabels")))
        }),
    ]
}

/// `kubectl get rs`: desired, current and ready pods.
fn replica_set_columns() -> Vec<Column> {
    vec![
        name(),
        int_col("Desired", |v| n(v, "/spec/replicas").into()),
        int_col("Current", |v| n(v, "/status/replicas").into()),
        int_col("Ready", |v| n(v, "/status/readyReplicas").into()),
        age(),
        col("Containers", true, |v| containers(v, "name").into()),
        col("Images", true, |v| containers(v, "image").into()),
        col("Selector", true, |v| {
            or_none(selector_text(v.pointer("/spec/selector/matchLabels")))
        }),
    ]
}

fn service_columns() -> Vec<Column> {
    vec![
        name(),
        col("Type", false, |v| {
            let t = s(v, "/spec/type");
            if t.is_empty() {
                "ClusterIP".into()
            } else {
                t.into()
            }
        }),
        col("Cluster-IP", false, |v| or_none(s(v, "/spec/clusterIP"))),
        col("External-IP", false, |_| "<none>".into()),
        col("Port(s)", false, |v| {
            let ports = v.pointer("/spec/ports").and_then(Value::as_array);
            let text: Vec<String> = ports
                .into_iter()
                .flatten()
                .map(|p| {
                    let proto = p["protocol"].as_str().unwrap_or("TCP");
                    format!("{}/{proto}", p["port"])
                })
                .collect();
            or_none(text.join(","))
        }),
        age(),
        col("Selector", true, |v| {
            or_none(selector_text(v.pointer("/spec/selector")))
        }),
    ]
}

fn event_columns() -> Vec<Column> {
    let last_seen = |v: &Value| {
        let last = s(v, "/lastTimestamp");
        let ts = if last.is_empty() {
            s(v, "/eventTime")
        } else {
            last
        };
        age_of(&ts)
    };
    vec![
        col("Last Seen", false, move |v| last_seen(v).into()),
        col("Type", false, |v| s(v, "/type").into()),
        col("Reason", false, |v| s(v, "/reason").into()),
        col("Object", false, |v| {
            format!(
                "{}/{}",
                s(v, "/involvedObject/kind").to_ascii_lowercase(),
                s(v, "/involvedObject/name")
            )
            .into()
        }),
        col("Message", false, |v| s(v, "/message").into()),
        col("Source", true, |v| s(v, "/source/component").into()),
        col("Count", true, |v| n(v, "/count").into()),
        col("Name", true, |v| s(v, "/metadata/name").into()),
    ]
}

/// The columns of a CRD kind, from its `additionalPrinterColumns`.
fn crd_columns(printer: &[Value]) -> Vec<Column> {
    let mut out = vec![name()];
    for c in printer {
        let header = c["name"].as_str().unwrap_or("").to_string();
        // The column's JSONPath as RFC 9535 says it (`$` before Kubernetes' `.a.b`).
        let path = format!("${}", c["jsonPath"].as_str().unwrap_or(""));
        let is_date = c["type"] == "date";
        let kind = match c["type"].as_str() {
            Some("integer") => "integer",
            _ => "string",
        };
        let wide = c["priority"].as_i64().unwrap_or(0) > 0;
        out.push(Column {
            kind,
            name: header,
            ..col("", wide, move |v| cell_of(&found(v, &path), is_date))
        });
    }
    if printer.is_empty() {
        out.push(age());
    }
    out
}

/// What a printer column's JSONPath finds in `v` (none when it does not parse).
fn found<'a>(v: &'a Value, path: &str) -> Vec<&'a Value> {
    use jsonpath_rust::JsonPath;
    v.query(path).unwrap_or_default()
}

/// A printer column's cell: nothing when the path finds nothing or null, the value
/// when it finds one (a date as an age), else what it finds joined by commas, as an
/// API server prints them.
fn cell_of(found: &[&Value], is_date: bool) -> Value {
    let text = |v: &Value| match v {
        Value::String(t) => t.clone(),
        other => other.to_string(),
    };
    match found {
        [] | [Value::Null] => Value::Null,
        [Value::String(t)] if is_date => age_of(t).into(),
        [Value::Number(x)] => Value::Number(x.clone()),
        [one] => text(one).into(),
        many => many
            .iter()
            .map(|v| text(v))
            .collect::<Vec<_>>()
            .join(",")
            .into(),
    }
}

/// The Istio CRDs' printer columns (facts from Istio's CRDs).
fn istio_printer(kind: Kind) -> Vec<Value> {
    let age = json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"});
    match kind {
        Kind::VirtualService => vec![
            json!({"name": "Gateways", "type": "string", "jsonPath": ".spec.gateways"}),
            json!({"name": "Hosts", "type": "string", "jsonPath": ".spec.hosts"}),
            age,
        ],
        Kind::DestinationRule => vec![
            json!({"name": "Host", "type": "string", "jsonPath": ".spec.host"}),
            age,
        ],
        _ => vec![age],
    }
}

/// The printer columns Lanes' own CRDs declare for `kind`.
fn lanes_printer(kind: Kind) -> Vec<Value> {
    lanes_model::crds()
        .into_iter()
        .find(|c| c.pointer("/spec/names/kind").and_then(Value::as_str) == Some(kind.name()))
        .and_then(|c| {
            c.pointer("/spec/versions/0/additionalPrinterColumns")
                .cloned()
        })
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

fn columns(kind: Kind) -> Vec<Column> {
    match kind {
        Kind::Pod => pod_columns(),
        Kind::Deployment => deployment_columns(),
        Kind::ReplicaSet => replica_set_columns(),
        Kind::Service => service_columns(),
        Kind::Event => event_columns(),
        Kind::Namespace => vec![
            name(),
            col("Status", false, |v| s(v, "/status/phase").into()),
            age(),
        ],
        Kind::Lease => vec![
            name(),
            col("Holder", false, |v| s(v, "/spec/holderIdentity").into()),
            age(),
        ],
        Kind::Gateway | Kind::VirtualService | Kind::DestinationRule => {
            crd_columns(&istio_printer(kind))
        }
        Kind::KubeGateway | Kind::HttpRoute | Kind::GrpcRoute => {
            crd_columns(lanes_model::gateway_api::printer_columns(kind))
        }
        Kind::LaneGroup | Kind::Lane | Kind::Rollout | Kind::LaneRelease => {
            crd_columns(&lanes_printer(kind))
        }
    }
}

/// `objects` (as the resource shows them) as a `meta.k8s.io/v1` Table.
pub fn render(
    resource: &Resource,
    objects: &[Value],
    resource_version: &str,
    include: Include,
    with_columns: bool,
) -> Value {
    let cols = columns(resource.kind);
    let definitions: Vec<Value> = cols
        .iter()
        .map(|c| {
            let mut d = json!({"name": c.name, "type": c.kind, "format": "",
                "description": "", "priority": if c.wide { 1 } else { 0 }});
            if c.name == "Name" {
                d["format"] = "name".into();
            }
            d
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let cells: Vec<Value> = cols.iter().map(|c| (c.cell)(o)).collect();
            let mut row = json!({"cells": cells});
            match include {
                Include::None => {}
                Include::Object => row["object"] = o.clone(),
                Include::Metadata => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": o.get("metadata").cloned().unwrap_or(Value::Null),
                    })
                }
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": if with_columns { Value::Array(definitions) } else { json!([]) },
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printer_columns_follow_wildcards_and_filters() {
        let gw = json!({"spec": {"gatewayClassName": "lanes"}, "status": {
            "addresses": [{"value": "10.0.0.1"}, {"value": "10.0.0.2"}],
            "conditions": [{"type": "Accepted", "status": "True"},
                           {"type": "Programmed", "status": "False"}]}});
        let cell = |path: &str| cell_of(&found(&gw, &format!("${path}")), false);
        assert_eq!(cell(".spec.gatewayClassName"), "lanes");
        assert_eq!(cell(".status.addresses[*].value"), "10.0.0.1,10.0.0.2");
        assert_eq!(
            cell(r#".status.conditions[?(@.type=="Programmed")].status"#),
            "False"
        );
        assert_eq!(cell(".status.nothing"), Value::Null);
        assert_eq!(
            cell(".status.conditions[0]"),
            r#"{"type":"Accepted","status":"True"}"#
        );
    }

    #[test]
    fn ages_read_as_kubectls() {
        for (secs, text) in [
            (5, "5s"),
            (119, "119s"),
            (150, "2m30s"),
            (600, "10m"),
            (3 * 3600 + 60, "3h1m"),
            (10 * 3600, "10h"),
            (3 * 86400, "3d"),
            (3 * 86400 + 3600, "3d1h"),
            (30 * 86400, "30d"),
        ] {
            assert_eq!(human_duration(secs), text, "{secs}");
        }
    }

    #[test]
    fn rollouts_show_kruise_columns() {
        let r = Resource::find("rollouts.kruise.io", "v1beta1", "rollouts").unwrap();
        let o = json!({"metadata": {"name": "r", "creationTimestamp": "2020-01-01T00:00:00Z"},
            "status": {"phase": "Progressing", "currentStepIndex": 1,
                       "currentStepState": "StepPaused", "message": "m"}});
        let t = render(&r, &[o], "7", Include::Metadata, true);
        let headers: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(headers[0], "Name");
        assert!(
            headers.contains(&"STATUS") && headers.contains(&"CANARY_STATE"),
            "{headers:?}"
        );
        assert_eq!(t["rows"][0]["cells"][1], "Progressing");
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    }
}
