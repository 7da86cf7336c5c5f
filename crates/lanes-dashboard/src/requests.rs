//! The request-path routes: the newest requests that entered at the gateway, one
//! request's path by trace, and a request sent through the gateway from the page (with
//! the headers chosen there and a trace id) whose path comes back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use lanes_model::image::version_of_image;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::paths::{HopRecord, entries, request_path};
use crate::server::Maps;

/// Where request paths come from: a data plane's hop records, and its gateway.
pub trait HopSource: Send + Sync {
    /// The hops of trace `id` (a trace-id, or the trace header's value), as the API
    /// serves them (`/traces/{id}`).
    fn hops(&self, id: &str) -> Vec<Value>;
    /// The newest hops at the gateway, newest first, at most `n`.
    fn recent(&self, n: usize) -> Vec<Value>;
    /// The gateway requests are sent through (`http://host:port`).
    fn gateway(&self) -> String;
}

/// How many of the newest requests the page lists.
const LISTED: usize = 50;
/// How long a request sent from the page may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a request path cannot be shown.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    /// No hop records where the dashboard runs.
    #[error("no hop records here: request paths are shown by `lanes up`'s dashboard")]
    NoRecords,
    /// None of the trace's hops is kept.
    #[error("no hop of trace {0} is among the newest kept")]
    NotFound(String),
    /// A request the page asked for that cannot be sent.
    #[error("{0}")]
    BadRequest(String),
    /// The gateway did not answer.
    #[error("the gateway did not answer: {0}")]
    Gateway(String),
    /// The API failed (reading the pods).
    #[error("the API failed: {0}")]
    Api(#[from] kube::Error),
}

impl IntoResponse for PathError {
    fn into_response(self) -> Response {
        let status = match self {
            PathError::NoRecords | PathError::NotFound(_) => StatusCode::NOT_FOUND,
            PathError::BadRequest(_) => StatusCode::BAD_REQUEST,
            PathError::Gateway(_) | PathError::Api(_) => StatusCode::BAD_GATEWAY,
        };
        (status, Json(json!({"error": self.to_string()}))).into_response()
    }
}

fn source(maps: &Maps) -> Result<Arc<dyn HopSource>, PathError> {
    maps.hops.clone().ok_or(PathError::NoRecords)
}

fn records(values: Vec<Value>) -> Vec<HopRecord> {
    values
        .into_iter()
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect()
}

/// `GET /ui/api/paths`: the newest requests that entered at the gateway.
pub async fn newest(State(maps): State<Maps>) -> Result<Json<Value>, PathError> {
    let hops = records(source(&maps)?.recent(LISTED));
    Ok(Json(json!({"entries": entries(&hops)})))
}

/// `GET /ui/api/paths/{trace}`: one request's path.
pub async fn by_trace(
    State(maps): State<Maps>,
    Path(trace): Path<String>,
) -> Result<Json<Value>, PathError> {
    let hops = records(source(&maps)?.hops(&trace));
    if hops.is_empty() {
        return Err(PathError::NotFound(trace));
    }
    path_json(&maps.client, &hops, None).await
}

/// What the page sends through the gateway.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendRequest {
    /// The path (`/mock`).
    pub path: String,
    /// Headers to send (the lane's, say).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The trace id (32 hex digits), sent as a W3C `traceparent`.
    pub trace_id: String,
}

/// `POST /ui/api/paths`: sends a GET through the gateway and answers its path.
pub async fn send(
    State(maps): State<Maps>,
    Json(req): Json<SendRequest>,
) -> Result<Json<Value>, PathError> {
    let source = source(&maps)?;
    let request = gateway_request(&source.gateway(), &req)?;
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let answered = tokio::time::timeout(SEND_TIMEOUT, async {
        let resp = client.request(request).await?;
        let status = resp.status().as_u16();
        // Read whole: the hops are recorded as the answers go back.
        let _ = resp.into_body().collect().await;
        Ok::<u16, hyper_util::client::legacy::Error>(status)
    })
    .await;
    let status = match answered {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => return Err(PathError::Gateway(e.to_string())),
        Err(_) => {
            return Err(PathError::Gateway(format!(
                "no answer within {SEND_TIMEOUT:?}"
            )));
        }
    };
    // The gateway's hop is recorded once its answer is written: look a few times.
    let mut hops = Vec::new();
    for _ in 0..20 {
        hops = records(source.hops(&req.trace_id));
        if hops.iter().any(|h| h.role == "gateway") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if hops.is_empty() {
        return Err(PathError::NotFound(req.trace_id));
    }
    path_json(&maps.client, &hops, Some(status)).await
}

/// The GET `req` asks for, through `gateway`: refused unless the path, the headers and
/// the trace id are well formed.
fn gateway_request(
    gateway: &str,
    req: &SendRequest,
) -> Result<http::Request<Empty<Bytes>>, PathError> {
    let bad = |why: String| PathError::BadRequest(why);
    if !req.path.starts_with('/') {
        return Err(bad(format!("path {:?}: it begins with /", req.path)));
    }
    let id = req.trace_id.to_ascii_lowercase();
    let hex = id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex || id.bytes().all(|b| b == b'0') {
        return Err(bad(format!(
            "trace id {:?}: 32 hex digits, not all zero",
            req.trace_id
        )));
    }
    let uri: http::Uri = format!("{gateway}{}", req.path)
        .parse()
        .map_err(|e| bad(format!("path {:?}: {e}", req.path)))?;
    let mut builder = http::Request::get(uri).header(
        "traceparent",
        format!("00-{id}-{:016x}-01", fastrand::u64(1..)),
    );
    for (name, value) in &req.headers {
        let name = http::HeaderName::try_from(name.as_str())
            .map_err(|e| bad(format!("header {name:?}: {e}")))?;
        let value = http::HeaderValue::try_from(value.as_str())
            .map_err(|e| bad(format!("header {name}: {e}")))?;
        builder = builder.header(name, value);
    }
    builder
        .body(Empty::new())
        .map_err(|e| bad(format!("the request: {e}")))
}

/// The path of `hops` with the versions of the pods that served, read from the API.
async fn path_json(
    client: &kube::Client,
    hops: &[HopRecord],
    status: Option<u16>,
) -> Result<Json<Value>, PathError> {
    let mut versions: BTreeMap<(String, String), String> = BTreeMap::new();
    let namespaces: std::collections::BTreeSet<&str> =
        hops.iter().filter_map(|h| h.namespace.as_deref()).collect();
    for ns in namespaces {
        let pods = Api::<Pod>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await?;
        for p in pods.items {
            let image = p
                .spec
                .as_ref()
                .and_then(|s| s.containers.first())
                .and_then(|c| c.image.clone());
            if let (Some(name), Some(image)) = (p.metadata.name, image) {
                let version = version_of_image(&image).unwrap_or(image);
                versions.insert((ns.to_string(), name), version);
            }
        }
    }
    let version = |ns: &str, pod: &str| versions.get(&(ns.to_string(), pod.to_string())).cloned();
    let trace = hops.first().map(|h| h.trace_id.clone()).unwrap_or_default();
    Ok(Json(json!({
        "traceId": trace,
        "status": status,
        "path": request_path(hops, &version),
    })))
}
