//! The admin listener: `/metrics` (Prometheus text), `/healthz`, and `/routes` (the
//! services and subsets the proxy runs now, as JSON).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::proxy::Mesh;
use crate::server::serve_router;

/// The admin routes.
pub fn router(mesh: Arc<Mesh>) -> Router {
    observability(mesh).route("/healthz", get(|| async { "ok\n" }))
}

/// `/metrics` and `/routes` alone, to mount beside another server's routes.
pub fn observability(mesh: Arc<Mesh>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/routes", get(routes))
        .with_state(mesh)
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
