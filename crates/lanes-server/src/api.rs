//! The embedded API: kubectl-style create, get, list (namespace, all namespaces, label
//! selector), replace, patch (strategic, merge, JSON), delete, status and watch for every
//! kind Lanes knows, plus an all-or-nothing multi-object apply. JSON in and out; errors
//! are Kubernetes `Status` objects whose message names the problem.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use lanes_model::{Kind, Object, ObjectKey};
use lanes_store::{Store, StoreError, WatchEvent};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::merge::{LAST_APPLIED, PatchType, apply_patch, three_way};
use crate::selector::Selector;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Shared state of the API.
#[derive(Clone)]
pub struct ApiState {
    /// The store.
    pub store: Arc<Store>,
    /// What every request but `/healthz` and `/readyz` must present.
    pub auth: crate::Auth,
    /// Where pod logs are (`<namespace>_<name>.log`), when pods run here.
    pub logs: Option<std::path::PathBuf>,
    /// The most replicas a Deployment may ask for (`lanes up --max-replicas`).
    pub max_replicas: i64,
}

/// The default of [`ApiState::max_replicas`]: every replica is a process here.
pub const DEFAULT_MAX_REPLICAS: i64 = 1_000;

/// Refuses a Deployment that asks for more replicas than `max`.
fn check_replicas(value: &Value, max: i64) -> Result<(), StoreError> {
    if value.get("kind").and_then(Value::as_str) != Some("Deployment") {
        return Ok(());
    }
    match value.pointer("/spec/replicas").and_then(Value::as_i64) {
        Some(n) if n > max => Err(StoreError::Invalid(format!(
            "{}: spec.replicas: {n} is more than the {max} replicas a Deployment may have here (each is a process; lanes up --max-replicas raises the bound)",
            lanes_model::object::describe_value(value).unwrap_or_else(|| "Deployment".into())
        ))),
        _ => Ok(()),
    }
}

/// An API error, rendered as a Kubernetes `Status`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    reason: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            reason,
            message: message.into(),
        }
    }
    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }
    fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let (status, reason) = match &e {
            StoreError::NotFound(_) => (StatusCode::NOT_FOUND, "NotFound"),
            StoreError::AlreadyExists(_) => (StatusCode::CONFLICT, "AlreadyExists"),
            StoreError::Conflict { .. } => (StatusCode::CONFLICT, "Conflict"),
            StoreError::Gone(_) => (StatusCode::GONE, "Expired"),
            StoreError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid"),
            StoreError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge"),
            StoreError::Corrupt { .. }
            | StoreError::Damaged(_)
            | StoreError::InUse(_)
            | StoreError::Db(_) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
        };
        ApiError::new(status, reason, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "apiVersion": "v1",
            "kind": "Status",
            "status": "Failure",
            "reason": self.reason,
            "code": self.status.as_u16(),
            "message": self.message,
        });
        (self.status, axum::Json(body)).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The API routes, with `extra` routes (such as `/metrics`) behind the same bearer
/// token; `/healthz` and `/readyz` answer without it.
pub fn router(state: ApiState, extra: Router) -> Router {
    Router::new()
        .route("/api/apply", post(apply))
        .route("/api/delete", post(delete_many))
        .route("/api/{resource}", get(list).post(create))
        .route(
            "/api/{resource}/{name}",
            get(read).put(replace).patch(patch).delete(delete),
        )
        .route("/api/pods/{name}/log", get(pod_log))
        .route(
            "/api/{resource}/{name}/status",
            get(read).put(replace_status).patch(patch_status),
        )
        .with_state(state.clone())
        .merge(extra)
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz).with_state(state))
        .layer(middleware::map_response(status_for_plain_errors))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// 200 while the store takes writes; 503 as a `Status` saying why while it does not
/// (a full disk, until space is back and the store is opened again).
async fn readyz(State(state): State<ApiState>) -> Response {
    match state.store.unready() {
        None => "ok\n".into_response(),
        Some(why) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            format!("the store does not take writes: {why}"),
        )
        .into_response(),
    }
}

/// Turns the plain-text rejections of axum's extractors (a body over the limit, most
/// of all) into `Status` objects, as every other error is.
async fn status_for_plain_errors(resp: Response) -> Response {
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json || !resp.status().is_client_error() {
        return resp;
    }
    let status = resp.status();
    let reason = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "RequestEntityTooLarge",
        StatusCode::NOT_FOUND => "NotFound",
        StatusCode::METHOD_NOT_ALLOWED => "MethodNotAllowed",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "UnsupportedMediaType",
        _ => "BadRequest",
    };
    let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
        format!("the request body is larger than {MAX_BODY_BYTES} bytes")
    } else {
        let body = axum::body::to_bytes(resp.into_body(), 64 * 1024)
            .await
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&body).trim().to_string();
        if text.is_empty() {
            status
                .canonical_reason()
                .unwrap_or("bad request")
                .to_string()
        } else {
            text
        }
    };
    ApiError::new(status, reason, message).into_response()
}

async fn authorize(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    if !state.auth.admits(req.headers()) {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "missing or wrong bearer token: lanes finds it in <state-dir>/token (LANES_STATE_DIR, default ./.lanes), or pass --token or LANES_TOKEN",
        )
        .into_response();
    }
    next.run(req).await
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            e.to_string(),
        )
    })?
}

fn kind_of(resource: &str) -> ApiResult<Kind> {
    Kind::resolve(resource).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("the server doesn't have a resource type {resource:?}"),
        )
    })
}

/// Query parameters of the object routes.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectQuery {
    namespace: Option<String>,
    label_selector: Option<String>,
    watch: Option<bool>,
    resource_version: Option<String>,
}

fn key_for(kind: Kind, name: &str, q: &ObjectQuery) -> ObjectKey {
    ObjectKey {
        kind,
        namespace: kind
            .namespaced()
            .then(|| q.namespace.clone().unwrap_or_else(|| "default".into())),
        name: name.to_string(),
    }
}

fn parse_body(bytes: &Bytes) -> ApiResult<Value> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("request body is not JSON: {e}")))
}

fn decode(value: Value) -> ApiResult<Object> {
    let described = lanes_model::object::describe_value(&value).unwrap_or_else(|| "object".into());
    Object::from_value(value).map_err(|errs| {
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        ApiError::invalid(format!("{described}: {}", text.join("; ")))
    })
}

fn labels_of(v: &Value) -> BTreeMap<String, String> {
    lanes_model::object::string_map(v, "/metadata/labels")
}

fn expected_rv(v: &Value) -> Option<u64> {
    v.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
}

async fn list(
    State(state): State<ApiState>,
    Path(resource): Path<String>,
    Query(q): Query<ObjectQuery>,
) -> ApiResult<Response> {
    let kind = kind_of(&resource)?;
    let selector = Selector::parse(q.label_selector.as_deref().unwrap_or(""))
        .map_err(ApiError::bad_request)?;
    let namespace = q.namespace.clone().filter(|_| kind.namespaced());
    if q.watch.unwrap_or(false) {
        return watch(
            state,
            kind,
            namespace,
            selector,
            q.resource_version.as_deref(),
        )
        .await;
    }
    let store = state.store.clone();
    let ns = namespace.clone();
    let (items, rv) = blocking(move || Ok(store.list(kind, ns.as_deref())?)).await?;
    let items: Vec<Value> = items
        .into_iter()
        .filter(|o| selector.matches(&labels_of(o)))
        .collect();
    Ok(axum::Json(json!({
        "apiVersion": "v1",
        "kind": "List",
        "metadata": {"resourceVersion": rv.to_string()},
        "items": items,
    }))
    .into_response())
}

async fn watch(
    state: ApiState,
    kind: Kind,
    namespace: Option<String>,
    selector: Selector,
    since: Option<&str>,
) -> ApiResult<Response> {
    let store = state.store.clone();
    let since = match since {
        Some(s) if !s.is_empty() => s
            .parse::<u64>()
            .map_err(|_| ApiError::bad_request(format!("resourceVersion {s:?} is not a number")))?,
        _ => blocking(move || Ok(store.resource_version()?)).await?,
    };
    let (past, rx) = state.store.watch(since)?;
    let wanted = move |e: &WatchEvent| {
        e.key().is_some_and(|k| {
            k.kind == kind
                && (namespace.is_none() || k.namespace == namespace)
                && selector.matches(&labels_of(&e.object))
        })
    };
    let last = past.last().map_or(since, |e| e.resource_version);
    let wanted2 = wanted.clone();
    let past = futures_util::stream::iter(past.into_iter().filter(move |e| wanted(e)));
    let live = futures_util::stream::unfold((rx, last, false), move |(mut rx, last, done)| {
        let wanted = wanted2.clone();
        async move {
            if done {
                return None;
            }
            loop {
                match rx.recv().await {
                    Ok(e) if e.resource_version <= last || !wanted(&e) => continue,
                    Ok(e) => {
                        let rv = e.resource_version;
                        return Some((Ok(e), (rx, rv, false)));
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        return Some((
                            Err(format!(
                                "watch fell {n} events behind; list and watch again"
                            )),
                            (rx, last, true),
                        ));
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        }
    });
    let lines = past.map(Ok).chain(live).map(|item| {
        let line = match item {
            Ok(e) => json!({"type": e.kind, "object": e.object}),
            Err(message) => {
                json!({"type": "ERROR", "object": {"kind": "Status", "message": message}})
            }
        };
        let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
        bytes.push(b'\n');
        Ok::<_, std::convert::Infallible>(Bytes::from(bytes))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(lines))
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                e.to_string(),
            )
        })
}

async fn read(
    State(state): State<ApiState>,
    Path(params): Path<Vec<(String, String)>>,
    Query(q): Query<ObjectQuery>,
) -> ApiResult<axum::Json<Value>> {
    let (kind, name) = resource_and_name(&params)?;
    let key = key_for(kind, &name, &q);
    let store = state.store.clone();
    let k = key.clone();
    let found = blocking(move || Ok(store.get(&k)?)).await?;
    found
        .map(axum::Json)
        .ok_or_else(|| StoreError::NotFound(key.to_string()).into())
}

fn resource_and_name(params: &[(String, String)]) -> ApiResult<(Kind, String)> {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let resource = get("resource").ok_or_else(|| ApiError::bad_request("no resource"))?;
    let name = get("name").ok_or_else(|| ApiError::bad_request("no name"))?;
    Ok((kind_of(&resource)?, name))
}

fn check_target(object: &Object, kind: Kind, key: Option<&ObjectKey>) -> ApiResult<()> {
    if object.kind != kind {
        return Err(ApiError::bad_request(format!(
            "the body is a {}, the path names {}",
            object.kind,
            kind.info().plural
        )));
    }
    if let Some(key) = key
        && (object.name != key.name || object.namespace != key.namespace)
    {
        return Err(ApiError::bad_request(format!(
            "the body names {}, the path names {key}",
            object.key()
        )));
    }
    Ok(())
}

async fn create(
    State(state): State<ApiState>,
    Path(resource): Path<String>,
    Query(q): Query<ObjectQuery>,
    body: Bytes,
) -> ApiResult<Response> {
    let kind = kind_of(&resource)?;
    let mut value = parse_body(&body)?;
    if let (Some(ns), Some(meta)) = (
        &q.namespace,
        value.get_mut("metadata").and_then(Value::as_object_mut),
    ) && !meta.contains_key("namespace")
    {
        meta.insert("namespace".into(), Value::String(ns.clone()));
    }
    check_replicas(&value, state.max_replicas)?;
    let object = decode(value)?;
    check_target(&object, kind, None)?;
    let store = state.store.clone();
    let created = blocking(move || {
        Ok(store.write(|t| {
            let created = t.create(&object)?;
            check_fallback_targets(t, &object)?;
            Ok(created)
        })?)
    })
    .await?;
    Ok((StatusCode::CREATED, axum::Json(created)).into_response())
}

async fn replace(
    State(state): State<ApiState>,
    Path(params): Path<Vec<(String, String)>>,
    Query(q): Query<ObjectQuery>,
    body: Bytes,
) -> ApiResult<axum::Json<Value>> {
    let (kind, name) = resource_and_name(&params)?;
    let key = key_for(kind, &name, &q);
    let value = parse_body(&body)?;
    let expect = expected_rv(&value);
    let object = decode(value)?;
    check_target(&object, kind, Some(&key))?;
    let store = state.store.clone();
    let max_replicas = state.max_replicas;
    let (stored, _) = blocking(move || {
        Ok(store.write(|t| {
            let current = t.get(&key)?;
            let mut value = object.raw.clone();
            admit(t, current.as_ref(), &mut value, max_replicas)?;
            let object = Object::from_value(value).map_err(|errs| invalid(&errs))?;
            t.replace(&object, expect)
        })?)
    })
    .await?;
    Ok(axum::Json(stored))
}

async fn patch(
    State(state): State<ApiState>,
    Path(params): Path<Vec<(String, String)>>,
    Query(q): Query<ObjectQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<axum::Json<Value>> {
    let (kind, name) = resource_and_name(&params)?;
    let key = key_for(kind, &name, &q);
    let ptype = patch_type(&headers)?;
    let patch = parse_body(&body)?;
    let store = state.store.clone();
    let max_replicas = state.max_replicas;
    let stored = blocking(move || {
        store
            .write(|t| {
                let current = stored(t, &key)?;
                let mut patched =
                    apply_patch(&current, &patch, ptype).map_err(StoreError::Invalid)?;
                admit(t, Some(&current), &mut patched, max_replicas)?;
                // A patch that names a resourceVersion must name the current one.
                let expect = expected_rv(&patch);
                let object = Object::from_value(patched).map_err(|errs| {
                    StoreError::Invalid(format!(
                        "{}: {}",
                        key,
                        errs.iter()
                            .map(|e| e.to_string())
                            .collect::<Vec<_>>()
                            .join("; ")
                    ))
                })?;
                if object.key() != key {
                    return Err(StoreError::Invalid(
                        "a patch cannot change kind, namespace or name".into(),
                    ));
                }
                Ok(t.replace(&object, expect)?.0)
            })
            .map_err(ApiError::from)
    })
    .await?;
    Ok(axum::Json(stored))
}

fn patch_type(headers: &HeaderMap) -> ApiResult<PatchType> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    PatchType::from_content_type(ct).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!(
                "patch Content-Type {ct:?} is not one of application/strategic-merge-patch+json, application/merge-patch+json, application/json-patch+json"
            ),
        )
    })
}

async fn delete(
    State(state): State<ApiState>,
    Path(params): Path<Vec<(String, String)>>,
    Query(q): Query<ObjectQuery>,
) -> ApiResult<axum::Json<Value>> {
    let (kind, name) = resource_and_name(&params)?;
    let key = key_for(kind, &name, &q);
    let store = state.store.clone();
    let gone = blocking(move || Ok(store.write(|t| t.delete(&key, None))?)).await?;
    Ok(axum::Json(gone))
}

async fn replace_status(
    State(state): State<ApiState>,
    Path(params): Path<Vec<(String, String)>>,
    Query(q): Query<ObjectQuery>,
    body: Bytes,
) -> ApiResult<axum::Json<Value>> {
    let (kind, name) = resource_and_name(&params)?;
    let key = key_for(kind, &name, &q);
    let value = parse_body(&body)?;
    let expect = expected_rv(&value);
    let status = value
        .get("status")
        .cloned()
        .ok_or_else(|| ApiError::bad_request("the body has no status"))?;
    let store = state.store.clone();
    let stored = blocking(move || {
        store
            .write(|t| {
                let current = stored(t, &key)?;
                check_status(&current, &status)?;
                t.replace_status(&key, status, expect)
            })
            .map_err(ApiError::from)
    })
    .await?;
    Ok(axum::Json(stored))
}

async fn patch_status(
    State(state): State<ApiState>,
    Path(params): Path<Vec<(String, String)>>,
    Query(q): Query<ObjectQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<axum::Json<Value>> {
    let (kind, name) = resource_and_name(&params)?;
    let key = key_for(kind, &name, &q);
    let ptype = patch_type(&headers)?;
    let patch = parse_body(&body)?;
    let store = state.store.clone();
    let stored = blocking(move || {
        store
            .write(|t| {
                let current = stored(t, &key)?;
                let patched = apply_patch(&current, &patch, ptype).map_err(StoreError::Invalid)?;
                let status = patched.get("status").cloned().unwrap_or(Value::Null);
                check_status(&current, &status)?;
                let expect = expected_rv(&patch);
                t.replace_status(&key, status, expect)
            })
            .map_err(ApiError::from)
    })
    .await?;
    Ok(axum::Json(stored))
}

/// Kruise's workload webhook, in the write path: a Deployment managed by an enabled
/// Rollout is paused when its template changes, and its stable template recorded.
fn admit(
    txn: &lanes_store::Txn<'_, '_>,
    current: Option<&Value>,
    value: &mut Value,
    max_replicas: i64,
) -> Result<(), StoreError> {
    if value.get("kind").and_then(Value::as_str) != Some("Deployment") {
        return Ok(());
    }
    check_replicas(value, max_replicas)?;
    let ns = value
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let managed = txn
        .list(Kind::Rollout, Some(&ns))?
        .into_iter()
        .filter_map(|r| serde_json::from_value::<lanes_model::rollout::Rollout>(r).ok())
        .any(|r| lanes_rollout::targets_deployment(&r, &ns, &name) && lanes_rollout::manages(&r));
    lanes_rollout::admission::admit_deployment(current, value, managed);
    Ok(())
}

/// Refuses a lane group whose fallback targets name no lane of it (as the transaction
/// stands, so a group and its lanes applied together pass).
fn check_fallback_targets(
    txn: &lanes_store::Txn<'_, '_>,
    object: &Object,
) -> Result<(), StoreError> {
    let lanes_model::Typed::LaneGroup(group) = &object.typed else {
        return Ok(());
    };
    let lanes = txn.list(Kind::Lane, None)?;
    let names: std::collections::BTreeSet<&str> = lanes
        .iter()
        .filter(|l| {
            l.pointer("/metadata/labels")
                .and_then(|m| m.get(lanes_model::lane::GROUP_LABEL))
                .and_then(Value::as_str)
                == Some(object.name.as_str())
        })
        .filter_map(|l| l.pointer("/metadata/name").and_then(Value::as_str))
        .collect();
    let errors = lanes_model::lane::unknown_fallback_targets(&group.spec, &names);
    if errors.is_empty() {
        return Ok(());
    }
    Err(StoreError::Invalid(format!(
        "ASMSwimLaneGroup/{}: {}",
        object.name,
        errors
            .iter()
            .map(|(field, message)| format!("{field}: {message}"))
            .collect::<Vec<_>>()
            .join("; ")
    )))
}

/// The stored object with `key`, or NotFound naming it.
fn stored(t: &lanes_store::Txn<'_, '_>, key: &ObjectKey) -> Result<Value, StoreError> {
    t.get(key)?
        .ok_or_else(|| StoreError::NotFound(key.to_string()))
}

/// The field errors of an object as one store error.
fn invalid(errs: &[lanes_model::FieldError]) -> StoreError {
    StoreError::Invalid(
        errs.iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; "),
    )
}

/// A status must keep the object decodable (its typed status has the right shape).
fn check_status(current: &Value, status: &Value) -> Result<(), StoreError> {
    let mut candidate = current.clone();
    if let Some(o) = candidate.as_object_mut() {
        o.insert("status".into(), status.clone());
    }
    Object::from_value(candidate)
        .map(|_| ())
        .map_err(|errs| invalid(&errs))
}

/// Query of the pod log route.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogQuery {
    namespace: Option<String>,
    tail_bytes: Option<u64>,
    /// The container's previous run (`lanes logs --previous`).
    previous: Option<bool>,
}

/// The end of a pod's log (1 MiB unless `tailBytes` says otherwise), of the running
/// container or, with `previous=true`, of its run before.
async fn pod_log(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    Query(q): Query<LogQuery>,
) -> ApiResult<Response> {
    let ns = q.namespace.unwrap_or_else(|| "default".into());
    let Some(dir) = state.logs.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            "this server runs no pods",
        ));
    };
    if name.contains('/') || ns.contains('/') || name.contains("..") || ns.contains("..") {
        return Err(ApiError::bad_request("invalid pod name"));
    }
    let run = if q.previous.unwrap_or(false) {
        lanes_model::podlog::Run::Previous
    } else {
        lanes_model::podlog::Run::Current
    };
    let path = lanes_model::podlog::file(&dir, &ns, &name, run);
    let tail = q.tail_bytes.unwrap_or(1024 * 1024);
    let bytes = blocking(move || {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(&path).map_err(|_| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("no log for pod {ns}/{name}"),
            )
        })?;
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        f.seek(SeekFrom::Start(len.saturating_sub(tail)))
            .map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    e.to_string(),
                )
            })?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                e.to_string(),
            )
        })?;
        Ok(buf)
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], bytes).into_response())
}

/// Body of `POST /api/apply`.
#[derive(Debug, Deserialize, Serialize)]
pub struct ApplyRequest {
    /// The objects, in order.
    pub objects: Vec<Value>,
}

/// What apply did to one object.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ApplyResult {
    /// Kind.
    pub kind: String,
    /// Name.
    pub name: String,
    /// Namespace, for namespaced kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `created`, `configured` or `unchanged`.
    pub result: String,
}

/// Objects to delete together (`lanes delete -f`).
#[derive(Debug, Deserialize, Serialize)]
pub struct DeleteRequest {
    /// The objects, by kind, namespace and name.
    pub objects: Vec<ObjectRef>,
}

/// An object by name.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ObjectRef {
    /// Kind (`Service`, `ASMSwimLaneGroup`...).
    pub kind: String,
    /// Namespace, for namespaced kinds (default `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

/// Deletes objects in one transaction (one durable write, not one per object); each
/// result is `deleted` or `not found`.
async fn delete_many(
    State(state): State<ApiState>,
    body: Bytes,
) -> ApiResult<axum::Json<Vec<ApplyResult>>> {
    let req: DeleteRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "delete body must be {{\"objects\": [{{kind, namespace, name}}]}}: {e}"
        ))
    })?;
    let mut keys = Vec::with_capacity(req.objects.len());
    for (i, o) in req.objects.iter().enumerate() {
        let kind = Kind::from_kind_name(&o.kind).ok_or_else(|| {
            ApiError::bad_request(format!("objects[{i}].kind: unknown kind {:?}", o.kind))
        })?;
        let namespace = kind
            .namespaced()
            .then(|| o.namespace.clone().unwrap_or_else(|| "default".into()));
        keys.push(ObjectKey {
            kind,
            namespace,
            name: o.name.clone(),
        });
    }
    let store = state.store.clone();
    let results = blocking(move || {
        Ok(store.write(|t| {
            let mut out = Vec::with_capacity(keys.len());
            for key in &keys {
                let result = match t.delete(key, None) {
                    Ok(_) => "deleted",
                    Err(StoreError::NotFound(_)) => "not found",
                    Err(e) => return Err(e),
                };
                out.push(ApplyResult {
                    kind: key.kind.name().to_string(),
                    name: key.name.clone(),
                    namespace: key.namespace.clone(),
                    result: result.to_string(),
                });
            }
            Ok(out)
        })?)
    })
    .await?;
    Ok(axum::Json(results))
}

/// Applies objects all or nothing: every object is validated before any is stored, and
/// all are stored in one transaction (kubectl's three-way apply per object).
async fn apply(
    State(state): State<ApiState>,
    body: Bytes,
) -> ApiResult<axum::Json<Vec<ApplyResult>>> {
    let req: ApplyRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!("apply body must be {{\"objects\": [...]}}: {e}"))
    })?;
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    for (i, v) in req.objects.into_iter().enumerate() {
        let described = lanes_model::object::describe_value(&v).unwrap_or_else(|| "object".into());
        match Object::from_value(v) {
            Ok(o) => objects.push(o),
            Err(errs) => {
                for e in errs {
                    errors.push(format!("object {} ({described}): {e}", i + 1));
                }
            }
        }
    }
    let dups = {
        let mut seen = std::collections::BTreeSet::new();
        objects
            .iter()
            .filter(|o| !seen.insert(o.key()))
            .map(|o| format!("{} is given twice", o.key()))
            .collect::<Vec<_>>()
    };
    errors.extend(dups);
    if !errors.is_empty() {
        return Err(ApiError::invalid(format!(
            "nothing applied: {}",
            errors.join("; ")
        )));
    }
    let store = state.store.clone();
    let max_replicas = state.max_replicas;
    let results = blocking(move || {
        store
            .write(|t| {
                let mut results = Vec::new();
                for object in &objects {
                    let key = object.key();
                    let applied = annotate(object.raw.clone());
                    let outcome = match t.get(&key)? {
                        None => {
                            check_replicas(&applied, max_replicas)?;
                            let o = Object::from_value(applied)
                                .map_err(|e| StoreError::Invalid(format!("{e:?}")))?;
                            t.create(&o)?;
                            "created"
                        }
                        Some(current) => {
                            let last = current
                                .pointer("/metadata/annotations")
                                .and_then(|a| a.get(LAST_APPLIED))
                                .and_then(Value::as_str)
                                .and_then(|s| serde_json::from_str::<Value>(s).ok());
                            let mut merged = three_way(&current, last.as_ref(), &applied);
                            admit(t, Some(&current), &mut merged, max_replicas)?;
                            let o = Object::from_value(merged).map_err(|errs| {
                                StoreError::Invalid(format!(
                                    "{key}: {}",
                                    errs.iter()
                                        .map(|e| e.to_string())
                                        .collect::<Vec<_>>()
                                        .join("; ")
                                ))
                            })?;
                            if t.replace(&o, None)?.1 {
                                "configured"
                            } else {
                                "unchanged"
                            }
                        }
                    };
                    results.push(ApplyResult {
                        kind: key.kind.name().to_string(),
                        name: key.name.clone(),
                        namespace: key.namespace.clone(),
                        result: outcome.to_string(),
                    });
                }
                for object in &objects {
                    check_fallback_targets(t, object)?;
                }
                Ok(results)
            })
            .map_err(ApiError::from)
    })
    .await?;
    Ok(axum::Json(results))
}

/// The object with its last-applied annotation set to itself.
fn annotate(mut v: Value) -> Value {
    let mut last = v.clone();
    if let Some(ann) = last
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        ann.remove(LAST_APPLIED);
        if ann.is_empty()
            && let Some(meta) = last.get_mut("metadata").and_then(Value::as_object_mut)
        {
            meta.remove("annotations");
        }
    }
    let text = serde_json::to_string(&last).unwrap_or_default();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        let ann = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(ann) = ann.as_object_mut() {
            ann.insert(LAST_APPLIED.into(), Value::String(text));
        }
    }
    v
}
