//! The admin listener: `/metrics` (Prometheus text), `/healthz`, `/routes` (the
//! services and subsets the proxy runs now, as JSON), and `/traces/{trace-id}` and
//! `/traces/last` (the hops of a request still in the ring, as JSON).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::correlation::{MAX_KEY_BYTES, trace_id_of};
use crate::proxy::Mesh;
use crate::server::serve_router;
use crate::trace::{Hex, Hop};

/// The admin routes.
pub fn router(mesh: Arc<Mesh>) -> Router {
    observability(mesh).route("/healthz", get(|| async { "ok\n" }))
}

/// `/metrics`, `/routes` and `/traces` alone, to mount beside another server's routes.
pub fn observability(mesh: Arc<Mesh>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/routes", get(routes))
        .route("/traces/{trace}", get(trace))
        .with_state(mesh)
}

/// Why a trace cannot be shown.
#[derive(Debug, thiserror::Error)]
enum TraceError {
    #[error("this proxy records no hops")]
    NotRecorded,
    #[error("a trace is named by at most {MAX_KEY_BYTES} bytes")]
    BadId,
    #[error("no hop of trace {0} is among the newest kept")]
    NotFound(String),
    #[error("no request has been recorded yet")]
    NoneYet,
}

impl IntoResponse for TraceError {
    fn into_response(self) -> axum::response::Response {
        let status = match self {
            TraceError::BadId => StatusCode::BAD_REQUEST,
            _ => StatusCode::NOT_FOUND,
        };
        (status, format!("{self}\n")).into_response()
    }
}

/// The hops of one trace (`last`: the newest request's), oldest first.
async fn trace(
    State(mesh): State<Arc<Mesh>>,
    Path(id): Path<String>,
) -> Result<axum::Json<Vec<Hop>>, TraceError> {
    let hops = mesh.hops().ok_or(TraceError::NotRecorded)?;
    if id == "last" {
        let found = hops.last_trace();
        return if found.is_empty() {
            Err(TraceError::NoneYet)
        } else {
            Ok(axum::Json(found))
        };
    }
    if id.len() > MAX_KEY_BYTES {
        return Err(TraceError::BadId);
    }
    // A trace-id, or the trace header's value the gateway began the trace for.
    let found = hops.trace(&Hex(trace_id_of(&id)));
    if found.is_empty() {
        return Err(TraceError::NotFound(id));
    }
    Ok(axum::Json(found))
}

async fn metrics(State(mesh): State<Arc<Mesh>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        mesh.metrics().encode(),
    )
}

async fn routes(State(mesh): State<Arc<Mesh>>) -> impl IntoResponse {
    let routing = mesh.routing();
    let services: Vec<serde_json::Value> = routing
        .services()
        .map(|s| {
            serde_json::json!({
                "service": format!("{}.{}", s.name, s.namespace),
                "endpoints": s.all.endpoints.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
                "fallback": s.fallback.as_deref(),
                "subsets": s.subsets.iter().map(|sub| serde_json::json!({
                    "lane": &*sub.lane,
                    "endpoints": sub.endpoints.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    axum::Json(serde_json::json!({ "services": services }))
}

/// Serves the admin routes until `shutdown`.
pub async fn serve_admin(listener: TcpListener, mesh: Arc<Mesh>, shutdown: watch::Receiver<bool>) {
    let limits = mesh.settings().listener_limits();
    serve_router(listener, limits, "admin", shutdown, router(mesh)).await;
}
