//! The API server: the Kubernetes API (see [`crate::k8s`]) behind a bearer token, with
//! `/healthz` and `/readyz` open; every error a Kubernetes `Status`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use lanes_store::Store;

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

pub use crate::k8s::admission::DEFAULT_MAX_REPLICAS;
pub use crate::k8s::error::ApiError;
use crate::k8s::error::Reason;

/// The API routes, with `extra` routes (such as `/metrics`) behind the same bearer
/// token; `/healthz` and `/readyz` answer without it.
pub fn router(state: ApiState, extra: Router) -> Router {
    crate::k8s::routes(state.clone())
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
            Reason::ServiceUnavailable,
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
        StatusCode::PAYLOAD_TOO_LARGE => Reason::RequestEntityTooLarge,
        StatusCode::NOT_FOUND => Reason::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => Reason::MethodNotAllowed,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => Reason::UnsupportedMediaType,
        _ => Reason::BadRequest,
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
    ApiError::new(reason, message).into_response()
}

async fn authorize(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    if !state.auth.admits(req.headers()) {
        return ApiError::new(
            Reason::Unauthorized,
            "missing or wrong bearer token: lanes finds it in <state-dir>/token (LANES_STATE_DIR, default ./.lanes), or pass --token or LANES_TOKEN",
        )
        .into_response();
    }
    next.run(req).await
}
