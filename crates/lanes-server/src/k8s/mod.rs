//! The Kubernetes REST API, served from the store: discovery, OpenAPI v3 and the
//! resource paths of every kind Lanes stores.

pub mod admission;
pub mod catalog;
pub mod discovery;
pub mod error;
pub mod fields;
pub mod gc;
pub mod logs;
pub mod managed;
pub mod objects;
pub mod openapi;
pub mod params;
pub mod path;
pub mod protobuf;
pub mod scale;
pub mod table;
pub mod watch;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};

use crate::ApiState;
use catalog::Sub;
use error::{ApiError, ApiResult, Reason};
use params::Params;

/// The routes of the Kubernetes API.
pub fn routes(state: ApiState) -> Router {
    Router::new()
        .route(
            "/version",
            get(|| async { axum::Json(discovery::version()) }),
        )
        .route(
            "/api",
            get(|h: HeaderMap| async move { discovery::core(&h) }),
        )
        .route(
            "/apis",
            get(|h: HeaderMap| async move { discovery::groups(&h) }),
        )
        .route(
            "/openapi/v3",
            get(|| async { axum::Json(openapi::index()) }),
        )
        .route("/openapi/v3/{*path}", get(openapi_doc))
        .route("/api/{*rest}", any(core))
        .route("/apis/{*rest}", any(named))
        .with_state(state)
}

async fn openapi_doc(Path(path): Path<String>) -> Response {
    match openapi::get(&path) {
        Some(doc) => axum::Json(doc).into_response(),
        None => ApiError::new(Reason::NotFound, format!("no OpenAPI document at {path}"))
            .into_response(),
    }
}

async fn core(
    state: State<ApiState>,
    method: Method,
    Path(rest): Path<String>,
    params: Query<Params>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    if method == Method::GET && parts == ["v1"] {
        return json_or_404(discovery::resource_list("", "v1"));
    }
    dispatch(state.0, method, true, &parts, params.0, headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn named(
    state: State<ApiState>,
    method: Method,
    Path(rest): Path<String>,
    params: Query<Params>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    if method == Method::GET {
        match parts.as_slice() {
            [group] => return json_or_404(discovery::group(group)),
            [group, version] => return json_or_404(discovery::resource_list(group, version)),
            _ => {}
        }
    }
    dispatch(state.0, method, false, &parts, params.0, headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

fn json_or_404(doc: Option<serde_json::Value>) -> Response {
    match doc {
        Some(d) => axum::Json(d).into_response(),
        None => ApiError::new(
            Reason::NotFound,
            "the server could not find the requested resource",
        )
        .into_response(),
    }
}

/// Routes a resource request to its verb.
async fn dispatch(
    state: ApiState,
    method: Method,
    core: bool,
    parts: &[&str],
    params: Params,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let target = path::parse(core, parts)?;
    if target.resource.namespaced() && target.name.is_some() && target.namespace.is_none() {
        return Err(ApiError::new(
            Reason::NotFound,
            "the server could not find the requested resource (a namespaced object's path names its namespace)",
        ));
    }
    let name = target.name.clone();
    let sub = target.sub;
    use objects as o;
    let answer = match (method.clone(), name, sub) {
        (Method::GET, None, _) if params.is_watch() => {
            return watch::watch(state, target, headers, params).await;
        }
        (Method::GET, None, _) => return o::list(state, target, headers, params).await,
        (Method::POST, None, _) => o::create(state, target, headers, params, body).await?,
        (Method::DELETE, None, _) => o::delete_collection(state, target, params, body).await?,
        (Method::GET, Some(n), None | Some(Sub::Status)) => {
            return o::get(state, target, n, headers, params).await;
        }
        (Method::GET, Some(n), Some(Sub::Log)) => return logs::log(state, target, n, params).await,
        (Method::GET, Some(n), Some(Sub::Scale)) => return scale::get(state, target, n).await,
        (Method::PUT, Some(n), Some(Sub::Scale)) => {
            scale::write(state, target, n, headers, params, body, true).await?
        }
        (Method::PATCH, Some(n), Some(Sub::Scale)) => {
            scale::write(state, target, n, headers, params, body, false).await?
        }
        (Method::PUT, Some(n), None) => o::update(state, target, n, headers, params, body).await?,
        (Method::PUT, Some(n), Some(Sub::Status)) => {
            o::update_status(state, target, n, headers, params, body).await?
        }
        (Method::PATCH, Some(n), None) => {
            o::patch(state, target, n, headers, params, body, false).await?
        }
        (Method::PATCH, Some(n), Some(Sub::Status)) => {
            o::patch(state, target, n, headers, params, body, true).await?
        }
        (Method::DELETE, Some(n), None) => o::delete(state, target, n, params, body).await?,
        _ => {
            return Err(ApiError::new(
                Reason::MethodNotAllowed,
                format!(
                    "the server does not allow this method on the requested resource ({method})"
                ),
            ));
        }
    };
    Ok(answer.into_response())
}
