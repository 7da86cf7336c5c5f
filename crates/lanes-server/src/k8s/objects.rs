//! The verbs on objects: get, list, create, update, patch (strategic, merge, JSON and
//! server-side apply), delete, deletecollection and the status subresource.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lanes_model::{Kind, Object, ObjectKey};
use lanes_store::{Store, StoreError, Txn};
use serde_json::{Value, json};

use super::admission::{self, check_fallback_targets};
use super::catalog::Resource;
use super::error::{ApiError, ApiResult, Reason};
use super::fields::FieldSelector;
use super::gc::{self, Propagation};
use super::managed;
use super::params::{Params, Validation, flag};
use super::path::Target;
use super::table::{self, Include};
use crate::ApiState;
use crate::merge::{PatchType, apply_patch};
use crate::selector::Selector;

/// A JSON answer with the API server's `Warning` headers.
pub struct Answer {
    status: StatusCode,
    body: Value,
    warnings: Vec<String>,
}

impl Answer {
    /// The same answer with its body shown otherwise (a subresource's view of it).
    pub fn map_body(self, f: impl FnOnce(Value) -> Value) -> Answer {
        Answer {
            body: f(self.body),
            ..self
        }
    }

    fn ok(body: Value) -> Self {
        Answer {
            status: StatusCode::OK,
            body,
            warnings: Vec::new(),
        }
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body)).into_response();
        for w in self.warnings {
            let text = format!("299 - {:?}", w);
            if let Ok(v) = HeaderValue::from_str(&text) {
                resp.headers_mut().append(header::WARNING, v);
            }
        }
        resp
    }
}

/// Runs `f` off the async threads.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)?
}

/// Runs `f` in one write transaction (or a dry run, discarded): an `ApiError` from `f`
/// discards what it did and is answered as it is.
pub fn transact<R>(
    store: &Store,
    dry_run: bool,
    f: impl FnOnce(&mut Txn<'_, '_>) -> ApiResult<R>,
) -> ApiResult<R> {
    let mut refused = None;
    let body = |t: &mut Txn<'_, '_>| match f(t) {
        Ok(r) => Ok(r),
        Err(e) => {
            refused = Some(e);
            Err(StoreError::Invalid("refused".into()))
        }
    };
    let result = if dry_run {
        store.dry_run(body)
    } else {
        store.write(body)
    };
    match (result, refused) {
        (_, Some(e)) => Err(e),
        (Ok(r), None) => Ok(r),
        (Err(e), None) => Err(e.into()),
    }
}

/// Reads a request body: JSON, or YAML for the YAML media types.
pub fn parse_body(headers: &HeaderMap, body: &Bytes) -> ApiResult<Value> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let media = ct.split(';').next().unwrap_or("").trim();
    if media == "application/vnd.kubernetes.protobuf" {
        return super::protobuf::decode(body)
            .map_err(|why| ApiError::new(Reason::UnsupportedMediaType, why));
    }
    if media.contains("protobuf") || media.contains("cbor") {
        return Err(ApiError::new(
            Reason::UnsupportedMediaType,
            format!(
                "the body of the request was in an unknown format ({media}): Lanes reads application/json and YAML"
            ),
        ));
    }
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return Ok(v);
    }
    if media.ends_with("yaml") {
        let text = std::str::from_utf8(body)
            .map_err(|_| ApiError::bad_request("the request body is not UTF-8"))?;
        return serde_saphyr::from_str::<Value>(text)
            .map_err(|e| ApiError::bad_request(format!("the request body is not YAML: {e}")));
    }
    serde_json::from_slice::<Value>(body)
        .map(|_| Value::Null)
        .map_err(|e| ApiError::bad_request(format!("the request body is not JSON: {e}")))
}

fn name_of(v: &Value) -> String {
    v.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// The key `target` names (with `name`).
pub fn key(target: &Target, name: &str) -> ObjectKey {
    let kind = target.resource.kind;
    ObjectKey {
        kind,
        namespace: kind
            .namespaced()
            .then(|| target.namespace.clone().unwrap_or_else(|| "default".into())),
        name: name.to_string(),
    }
}

/// Checks the body's kind, apiVersion and namespace against the path, filling what the
/// path says where the body is silent (and a name from `generateName`).
fn fit_to_target(r: &Resource, target: &Target, value: &mut Value) -> ApiResult<()> {
    let Some(obj) = value.as_object_mut() else {
        return Err(ApiError::bad_request("the request body is not an object"));
    };
    match obj.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            obj.insert("kind".into(), r.kind.name().into());
        }
        Some(k) if k == r.kind.name() => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the kind of the path ({})",
                r.kind.name()
            )));
        }
    }
    match obj.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            obj.insert("apiVersion".into(), r.api_version().into());
        }
        Some(v) if v == r.api_version() => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({})",
                r.api_version()
            )));
        }
    }
    let meta = obj
        .entry("metadata")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("metadata: expected an object"))?;
    if r.namespaced() {
        let path_ns = target.namespace.clone().unwrap_or_else(|| "default".into());
        match meta.get("namespace").and_then(Value::as_str) {
            None | Some("") => {
                meta.insert("namespace".into(), path_ns.into());
            }
            Some(ns) if ns == path_ns => {}
            Some(_) => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
    }
    if meta
        .get("name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
        && let Some(prefix) = meta.get("generateName").and_then(Value::as_str)
    {
        let suffix: String = uuid::Uuid::new_v4().simple().to_string()[..5].to_string();
        let name = format!("{prefix}{suffix}");
        meta.insert("name".into(), name.into());
    }
    if let Some(name) = &target.name {
        let given = meta.get("name").and_then(Value::as_str).unwrap_or("");
        if given.is_empty() {
            meta.insert("name".into(), name.clone().into());
        } else if given != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({given}) does not match the name on the URL ({name})"
            )));
        }
    }
    for f in ["managedFields", "selfLink"] {
        if f == "selfLink" {
            meta.remove(f);
        }
    }
    Ok(())
}

/// Unknown fields of `value`: refused under `Strict`, warned of under `Warn`. Fields
/// already unknown in `before` are not counted again.
fn check_unknown(
    r: &Resource,
    value: &Value,
    before: Option<&Value>,
    validation: Validation,
) -> ApiResult<Vec<String>> {
    if validation == Validation::Ignore {
        return Ok(Vec::new());
    }
    let known_before = before
        .map(|b| super::openapi::unknown_fields(r, b))
        .unwrap_or_default();
    let unknown: Vec<String> = super::openapi::unknown_fields(r, value)
        .into_iter()
        .filter(|f| !known_before.contains(f))
        .collect();
    if unknown.is_empty() {
        return Ok(Vec::new());
    }
    let listed: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field {f:?}"))
        .collect();
    match validation {
        Validation::Strict => {
            let kind = r.kind.name();
            Err(ApiError::bad_request(format!(
                "{kind} in version {:?} cannot be handled as a {kind}: strict decoding error: {}",
                r.version,
                listed.join(", ")
            )))
        }
        _ => Ok(listed),
    }
}

fn decode(r: &Resource, value: Value) -> ApiResult<Object> {
    let name = name_of(&value);
    Object::from_value(value).map_err(|errs| ApiError::from_fields(r, &name, &errs))
}

fn store_err<'a>(r: &'a Resource, name: &'a str) -> impl Fn(StoreError) -> ApiError + 'a {
    move |e| ApiError::from_store(e, r, name)
}

fn expected_rv(v: &Value) -> ApiResult<Option<u64>> {
    match v.pointer("/metadata/resourceVersion") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => s.parse().map(Some).map_err(|_| {
            ApiError::bad_request(format!(
                "metadata.resourceVersion: {s:?} is not a resourceVersion this server gave"
            ))
        }),
        Some(other) => Err(ApiError::bad_request(format!(
            "metadata.resourceVersion: expected a string, got {other}"
        ))),
    }
}

/// GET of one object (or its status).
/// The stored object `name` of the target's resource (404 when there is none).
pub async fn stored(state: &ApiState, target: &Target, name: &str) -> ApiResult<Value> {
    let r = target.resource;
    let key = key(target, name);
    let store = state.store.clone();
    let found = blocking(move || Ok(store.get(&key)?)).await?;
    found.ok_or_else(|| ApiError::not_found(&r, name))
}

pub async fn get(
    state: ApiState,
    target: Target,
    name: String,
    headers: HeaderMap,
    params: Params,
) -> ApiResult<Response> {
    let r = target.resource;
    let key = key(&target, &name);
    let store = state.store.clone();
    let found = blocking(move || Ok(store.get(&key)?)).await?;
    let object = found.ok_or_else(|| ApiError::not_found(&r, &name))?;
    let shown = r.present(&object);
    if table::wanted(&headers) {
        let rv = lanes_store::resource_version(&object).to_string();
        let include = Include::parse(params.include_object.as_deref());
        return Ok(axum::Json(table::render(&r, &[shown], &rv, include, true)).into_response());
    }
    Ok(axum::Json(shown).into_response())
}

/// Which objects a list or watch wants.
#[derive(Clone)]
pub struct Filter {
    kind: Kind,
    namespace: Option<String>,
    labels: Selector,
    fields: FieldSelector,
}

impl Filter {
    /// From the target and its selectors; a bad selector is a 400.
    pub fn new(target: &Target, params: &Params) -> ApiResult<Filter> {
        let kind = target.resource.kind;
        Ok(Filter {
            kind,
            namespace: target.namespace.clone(),
            labels: Selector::parse(params.label_selector.as_deref().unwrap_or(""))
                .map_err(|e| ApiError::bad_request(format!("labelSelector: {e}")))?,
            fields: FieldSelector::parse(params.field_selector.as_deref().unwrap_or(""), kind)
                .map_err(ApiError::bad_request)?,
        })
    }

    /// Whether `object` (stored form) is wanted.
    pub fn matches(&self, object: &Value) -> bool {
        let Some(k) = lanes_store::key_of_value(object) else {
            return false;
        };
        k.kind == self.kind
            && (self.namespace.is_none() || k.namespace == self.namespace)
            && self
                .labels
                .matches(&lanes_model::object::string_map(object, "/metadata/labels"))
            && self.fields.matches(object)
    }
}

/// A `continue` token: the list's version and the last key given.
fn continue_token(rv: u64, last: &ObjectKey) -> String {
    let text = format!(
        "{rv}\n{}\n{}",
        last.namespace.as_deref().unwrap_or(""),
        last.name
    );
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

fn read_continue(token: &str) -> ApiResult<(u64, String, String)> {
    let bad = || {
        ApiError::bad_request(
            "continue: the token is not one this server gave (list again from the start)",
        )
    };
    if !token.len().is_multiple_of(2) || token.len() > 4096 {
        return Err(bad());
    }
    let bytes: Result<Vec<u8>, _> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&token[i..i + 2], 16))
        .collect();
    let text = String::from_utf8(bytes.map_err(|_| bad())?).map_err(|_| bad())?;
    let mut parts = text.splitn(3, '\n');
    let rv = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let ns = parts.next().ok_or_else(bad)?.to_string();
    let name = parts.next().ok_or_else(bad)?.to_string();
    Ok((rv, ns, name))
}

/// GET of a collection: a List (or a Table), filtered and paged.
pub async fn list(
    state: ApiState,
    target: Target,
    headers: HeaderMap,
    params: Params,
) -> ApiResult<Response> {
    let r = target.resource;
    let filter = Filter::new(&target, &params)?;
    let store = state.store.clone();
    let ns = target.namespace.clone();
    let (items, rv) = blocking(move || Ok(store.list(r.kind, ns.as_deref())?)).await?;
    let mut items: Vec<Value> = items.into_iter().filter(|o| filter.matches(o)).collect();
    let mut list_rv = rv;
    if let Some(token) = params.continue_token.as_deref().filter(|t| !t.is_empty()) {
        let (token_rv, after_ns, after_name) = read_continue(token)?;
        list_rv = token_rv;
        items.retain(|o| {
            let k = lanes_store::key_of_value(o);
            k.is_some_and(|k| {
                (k.namespace.unwrap_or_default(), k.name) > (after_ns.clone(), after_name.clone())
            })
        });
    }
    let mut next = None;
    let mut remaining = None;
    if let Some(limit) = params.limit.filter(|l| *l > 0)
        && items.len() > limit
    {
        remaining = Some(items.len() - limit);
        items.truncate(limit);
        next = items
            .last()
            .and_then(lanes_store::key_of_value)
            .map(|k| continue_token(list_rv, &k));
    }
    let shown: Vec<Value> = items.iter().map(|o| r.present(o)).collect();
    let mut metadata = json!({"resourceVersion": list_rv.to_string()});
    if let Some(next) = next {
        metadata["continue"] = next.into();
        metadata["remainingItemCount"] = remaining.unwrap_or(0).into();
    }
    if table::wanted(&headers) {
        let include = Include::parse(params.include_object.as_deref());
        let mut t = table::render(&r, &shown, &list_rv.to_string(), include, true);
        t["metadata"] = metadata;
        return Ok(axum::Json(t).into_response());
    }
    Ok(axum::Json(json!({
        "apiVersion": r.api_version(),
        "kind": format!("{}List", r.kind.name()),
        "metadata": metadata,
        "items": shown,
    }))
    .into_response())
}

/// POST of a collection.
pub async fn create(
    state: ApiState,
    target: Target,
    headers: HeaderMap,
    params: Params,
    body: Bytes,
) -> ApiResult<Answer> {
    let r = target.resource;
    let mut value = parse_body(&headers, &body)?;
    fit_to_target(&r, &target, &mut value)?;
    let warnings = check_unknown(&r, &value, None, params.validation()?)?;
    let manager = params.manager(&headers);
    let dry = params.dry_run()?;
    let max = state.max_replicas;
    let store = state.store.clone();
    let created =
        blocking(move || transact(&store, dry, |t| create_in(t, &r, value, &manager, max))).await?;
    Ok(Answer {
        status: StatusCode::CREATED,
        body: r.present(&created),
        warnings,
    })
}

/// Creates `value` (already fitted to its path) in `t`.
fn create_in(
    t: &mut Txn<'_, '_>,
    r: &Resource,
    mut value: Value,
    manager: &str,
    max: i64,
) -> ApiResult<Value> {
    let name = name_of(&value);
    if name.is_empty() {
        return Err(ApiError::from_fields(
            r,
            "",
            &[lanes_model::FieldError::new(
                "metadata.name",
                "Required value: name or generateName is required",
            )],
        ));
    }
    let ns = value
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .map(str::to_string);
    if r.namespaced() {
        admission::namespace_exists(t, ns.as_deref())?;
    }
    if r.kind == Kind::Namespace && value.get("status").is_none() {
        value["status"] = json!({"phase": "Active"});
    }
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        for f in ["uid", "resourceVersion", "creationTimestamp", "generation"] {
            meta.remove(f);
        }
    }
    if value.pointer("/metadata/managedFields").is_none() {
        managed::record_update(None, &mut value, manager, &r.api_version());
    }
    admission::admit(t, None, &mut value, max).map_err(store_err(r, &name))?;
    let object = decode(r, value)?;
    admission::check_rollout(t, None, &object).map_err(store_err(r, &name))?;
    let created = t.create(&object).map_err(store_err(r, &name))?;
    check_fallback_targets(t, &object).map_err(store_err(r, &name))?;
    Ok(created)
}

/// PUT of an object.
pub async fn update(
    state: ApiState,
    target: Target,
    name: String,
    headers: HeaderMap,
    params: Params,
    body: Bytes,
) -> ApiResult<Answer> {
    let r = target.resource;
    let mut value = parse_body(&headers, &body)?;
    fit_to_target(&r, &target, &mut value)?;
    let expect = expected_rv(&value)?;
    let validation = params.validation()?;
    let manager = params.manager(&headers);
    let dry = params.dry_run()?;
    let key = key(&target, &name);
    let max = state.max_replicas;
    let store = state.store.clone();
    let (stored, warnings) = blocking(move || {
        transact(&store, dry, |t| {
            let current = t.get(&key)?.ok_or_else(|| ApiError::not_found(&r, &name))?;
            let warnings = check_unknown(&r, &value, Some(&current), validation)?;
            keep_managed(&current, &mut value);
            managed::record_update(Some(&current), &mut value, &manager, &r.api_version());
            admission::admit(t, Some(&current), &mut value, max).map_err(store_err(&r, &name))?;
            let object = decode(&r, value)?;
            admission::check_rollout(t, Some(&current), &object).map_err(store_err(&r, &name))?;
            let (stored, _) = t.replace(&object, expect).map_err(store_err(&r, &name))?;
            check_fallback_targets(t, &object).map_err(store_err(&r, &name))?;
            let stored = gc::finish(t, &key, stored).map_err(store_err(&r, &name))?;
            Ok((stored, warnings))
        })
    })
    .await?;
    Ok(Answer {
        warnings,
        ..Answer::ok(r.present(&stored))
    })
}

/// A write that does not name managedFields keeps the stored ones.
fn keep_managed(current: &Value, value: &mut Value) {
    if value.pointer("/metadata/managedFields").is_none()
        && let (Some(mf), Some(meta)) = (
            current.pointer("/metadata/managedFields"),
            value.get_mut("metadata").and_then(Value::as_object_mut),
        )
    {
        meta.insert("managedFields".into(), mf.clone());
    }
}

/// The patch type of a request; strategic merge only for the built-in kinds, as upstream.
fn patch_kind(r: &Resource, headers: &HeaderMap) -> ApiResult<Patch> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = ct.split(';').next().unwrap_or("").trim();
    let custom = matches!(
        r.kind,
        Kind::Gateway
            | Kind::VirtualService
            | Kind::DestinationRule
            | Kind::KubeGateway
            | Kind::HttpRoute
            | Kind::GrpcRoute
            | Kind::LaneGroup
            | Kind::Lane
            | Kind::Rollout
            | Kind::LaneRelease
    );
    let accepted = if custom {
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    } else {
        "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml"
    };
    let refuse = || {
        ApiError::new(
            Reason::UnsupportedMediaType,
            format!(
                "the body of the request was in an unknown format ({media:?}) - accepted media types include: {accepted}"
            ),
        )
    };
    if media == "application/apply-patch+yaml" {
        return Ok(Patch::Apply);
    }
    match PatchType::from_content_type(media) {
        Some(PatchType::Strategic) if custom => Err(refuse()),
        Some(p) => Ok(Patch::Other(p)),
        None => Err(refuse()),
    }
}

/// A patch: server-side apply or one of the merge kinds.
#[derive(Debug, Clone, Copy)]
enum Patch {
    Apply,
    Other(PatchType),
}

/// PATCH of an object, or of its status (`status_only`).
pub async fn patch(
    state: ApiState,
    target: Target,
    name: String,
    headers: HeaderMap,
    params: Params,
    body: Bytes,
    status_only: bool,
) -> ApiResult<Answer> {
    let r = target.resource;
    let kind = patch_kind(&r, &headers)?;
    let patch = parse_body(&headers, &body)?;
    let validation = params.validation()?;
    let manager = params.manager(&headers);
    if matches!(kind, Patch::Apply) && params.field_manager.as_deref().is_none_or(str::is_empty) {
        return Err(ApiError::bad_request(
            "PATCH /apply requires fieldManager to be set (a field manager owns the fields it applies)",
        ));
    }
    let force = flag(&params.force);
    let dry = params.dry_run()?;
    let key = key(&target, &name);
    let max = state.max_replicas;
    let store = state.store.clone();
    let (stored, warnings, created) = blocking(move || {
        transact(&store, dry, |t| {
            let current = t.get(&key)?;
            let Some(current) = current else {
                if let Patch::Apply = kind {
                    let mut applied = patch;
                    fit_to_target(&r, &target, &mut applied)?;
                    let warnings = check_unknown(&r, &applied, None, validation)?;
                    let merged = managed::apply(None, &applied, &manager, &r.api_version(), force)
                        .map_err(|c| conflict_error(&r, &name, &c))?;
                    return Ok((create_in(t, &r, merged, &manager, max)?, warnings, true));
                }
                return Err(ApiError::not_found(&r, &name));
            };
            let mut patched = match kind {
                Patch::Apply => {
                    let mut applied = patch;
                    fit_to_target(&r, &target, &mut applied)?;
                    let merged =
                        managed::apply(Some(&current), &applied, &manager, &r.api_version(), force)
                            .map_err(|c| conflict_error(&r, &name, &c))?;
                    if managed::same_but_times(&merged, &current) {
                        current.clone()
                    } else {
                        merged
                    }
                }
                Patch::Other(p) => {
                    let mut out =
                        apply_patch(&current, &patch, p).map_err(ApiError::bad_request)?;
                    managed::record_update(Some(&current), &mut out, &manager, &r.api_version());
                    out
                }
            };
            if lanes_store::key_of_value(&patched).as_ref() != Some(&key) {
                return Err(ApiError::bad_request(
                    "a patch cannot change the kind, namespace or name of an object",
                ));
            }
            let warnings = check_unknown(&r, &patched, Some(&current), validation)?;
            let expect = expected_rv(&patch_rv(&kind, &patched, &current))?;
            let stored = if status_only {
                let status = patched.get("status").cloned().unwrap_or(Value::Null);
                admission::check_status(&r, &current, &status)?;
                t.replace_status(&key, status, expect)
                    .map_err(store_err(&r, &name))?
            } else {
                admission::admit(t, Some(&current), &mut patched, max)
                    .map_err(store_err(&r, &name))?;
                let object = decode(&r, patched)?;
                admission::check_rollout(t, Some(&current), &object)
                    .map_err(store_err(&r, &name))?;
                let (stored, _) = t.replace(&object, expect).map_err(store_err(&r, &name))?;
                check_fallback_targets(t, &object).map_err(store_err(&r, &name))?;
                gc::finish(t, &key, stored).map_err(store_err(&r, &name))?
            };
            Ok((stored, warnings, false))
        })
    })
    .await?;
    Ok(Answer {
        status: if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        body: r.present(&stored),
        warnings,
    })
}

/// The resourceVersion precondition of a patch: the one the patch itself names (a
/// patch that leaves the stored one as it is names none).
fn patch_rv(kind: &Patch, patched: &Value, current: &Value) -> Value {
    let given = patched.pointer("/metadata/resourceVersion");
    if matches!(kind, Patch::Apply) || given == current.pointer("/metadata/resourceVersion") {
        return json!({});
    }
    json!({"metadata": {"resourceVersion": given.cloned().unwrap_or(Value::Null)}})
}

fn conflict_error(r: &Resource, name: &str, conflicts: &[managed::Conflict]) -> ApiError {
    let api_version = r.api_version();
    let mut by_manager: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for c in conflicts {
        by_manager.entry(&c.manager).or_default().push(&c.field);
    }
    let lines: Vec<String> = by_manager
        .iter()
        .flat_map(|(m, fields)| {
            fields
                .iter()
                .map(|f| format!("conflict with {m:?} using {}: {f}", api_version))
                .collect::<Vec<_>>()
        })
        .collect();
    let plural = if conflicts.len() == 1 {
        "conflict"
    } else {
        "conflicts"
    };
    let mut err = ApiError::new(
        Reason::Conflict,
        format!(
            "Apply failed with {} {plural}: {}",
            conflicts.len(),
            lines.join("\n")
        ),
    )
    .about(r, name);
    err.causes = conflicts
        .iter()
        .map(|c| super::error::Cause {
            reason: "FieldManagerConflict",
            message: format!("conflict with {:?} using {}", c.manager, r.api_version()),
            field: c.field.clone(),
        })
        .collect();
    err
}

/// PUT of an object's status.
pub async fn update_status(
    state: ApiState,
    target: Target,
    name: String,
    headers: HeaderMap,
    params: Params,
    body: Bytes,
) -> ApiResult<Answer> {
    let r = target.resource;
    let value = parse_body(&headers, &body)?;
    let expect = expected_rv(&value)?;
    let status = value
        .get("status")
        .cloned()
        .ok_or_else(|| ApiError::bad_request("the body has no status"))?;
    let dry = params.dry_run()?;
    let key = key(&target, &name);
    let store = state.store.clone();
    let stored = blocking(move || {
        transact(&store, dry, |t| {
            let current = t.get(&key)?.ok_or_else(|| ApiError::not_found(&r, &name))?;
            admission::check_status(&r, &current, &status)?;
            t.replace_status(&key, status, expect)
                .map_err(store_err(&r, &name))
        })
    })
    .await?;
    Ok(Answer::ok(r.present(&stored)))
}

/// The options of a DELETE, from its body and query.
fn delete_options(
    params: &Params,
    body: &Bytes,
) -> ApiResult<(Propagation, Option<u64>, Option<String>, bool)> {
    let opts: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("the DeleteOptions body is not JSON: {e}"))
        })?
    };
    let policy = opts
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .or(params.propagation_policy.as_deref());
    let policy = Propagation::parse(policy).map_err(ApiError::bad_request)?;
    let rv = opts
        .pointer("/preconditions/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok());
    let uid = opts
        .pointer("/preconditions/uid")
        .and_then(Value::as_str)
        .map(str::to_string);
    let dry = params.dry_run()?
        || opts
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|v| v == "All"));
    Ok((policy, rv, uid, dry))
}

/// DELETE of an object: it and, by the propagation policy, what it owns.
pub async fn delete(
    state: ApiState,
    target: Target,
    name: String,
    params: Params,
    body: Bytes,
) -> ApiResult<Answer> {
    let r = target.resource;
    let (policy, rv, uid, dry) = delete_options(&params, &body)?;
    let key = key(&target, &name);
    let store = state.store.clone();
    let gone = blocking(move || {
        transact(&store, dry, |t| {
            let current = t.get(&key)?.ok_or_else(|| ApiError::not_found(&r, &name))?;
            if let Some(uid) = uid
                && current.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid.as_str())
            {
                return Err(ApiError::new(
                    Reason::Conflict,
                    format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        current
                            .pointer("/metadata/uid")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                    ),
                )
                .about(&r, &name));
            }
            gc::delete(t, &key, rv, policy).map_err(store_err(&r, &name))
        })
    })
    .await?;
    Ok(Answer::ok(r.present(&gone)))
}

/// DELETE of a collection: every object the selectors pick, in one transaction.
pub async fn delete_collection(
    state: ApiState,
    target: Target,
    params: Params,
    body: Bytes,
) -> ApiResult<Answer> {
    let r = target.resource;
    let filter = Filter::new(&target, &params)?;
    let (policy, _, _, dry) = delete_options(&params, &body)?;
    let ns = target.namespace.clone();
    let store = state.store.clone();
    let gone = blocking(move || {
        transact(&store, dry, |t| {
            let mut gone = Vec::new();
            for o in t
                .list(r.kind, ns.as_deref())?
                .into_iter()
                .filter(|o| filter.matches(o))
            {
                let Some(k) = lanes_store::key_of_value(&o) else {
                    continue;
                };
                match gc::delete(t, &k, None, policy) {
                    Ok(v) => gone.push(r.present(&v)),
                    Err(StoreError::NotFound(_)) => {}
                    Err(e) => return Err(ApiError::from_store(e, &r, &k.name)),
                }
            }
            Ok(gone)
        })
    })
    .await?;
    Ok(Answer::ok(json!({
        "apiVersion": r.api_version(),
        "kind": format!("{}List", r.kind.name()),
        "metadata": {},
        "items": gone,
    })))
}
