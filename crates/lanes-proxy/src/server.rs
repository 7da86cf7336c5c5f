//! Listeners: accept connections and serve HTTP/1.1 and h2c on them, with a header read
//! timeout against slow clients and graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::body::ProxyBody;
use crate::config::Settings;
use crate::proxy::{Mesh, Sidecar};

/// Resolves when `shutdown` turns true (or its sender is gone).
pub async fn wait_for(mut shutdown: watch::Receiver<bool>) {
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

/// Serves `handler` on `listener` until `shutdown`, then lets open requests finish.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    settings: &Settings,
    shutdown: watch::Receiver<bool>,
    handler: F,
) where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout())
        .keep_alive(true)
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(64 * 1024);
    let graceful = GracefulShutdown::new();
    let stop = wait_for(shutdown);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _peer) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let handler = handler.clone();
                let service = service_fn(move |req| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(req).await) }
                });
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut stop => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Serves the gateway role.
pub async fn serve_gateway(
    listener: TcpListener,
    mesh: Arc<Mesh>,
    shutdown: watch::Receiver<bool>,
) {
    let settings = mesh.settings().clone();
    serve(listener, &settings, shutdown, move |req| {
        let mesh = mesh.clone();
        async move { mesh.gateway(req).await }
    })
    .await;
}

/// Which side of a sidecar a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SidecarSide {
    Inbound,
    Outbound,
}

async fn serve_sidecar(
    listener: TcpListener,
    mesh: Arc<Mesh>,
    sidecar: Arc<Sidecar>,
    shutdown: watch::Receiver<bool>,
    side: SidecarSide,
) {
    let settings = mesh.settings().clone();
    serve(listener, &settings, shutdown, move |req| {
        let mesh = mesh.clone();
        let sidecar = sidecar.clone();
        async move {
            match side {
                SidecarSide::Inbound => mesh.inbound(&sidecar, req).await,
                SidecarSide::Outbound => mesh.outbound(&sidecar, req).await,
            }
        }
    })
    .await;
}

/// Serves a sidecar's inbound side.
pub async fn serve_inbound(
    listener: TcpListener,
    mesh: Arc<Mesh>,
    sidecar: Arc<Sidecar>,
    shutdown: watch::Receiver<bool>,
) {
    serve_sidecar(listener, mesh, sidecar, shutdown, SidecarSide::Inbound).await;
}

/// Serves a sidecar's outbound side (the application's `HTTP_PROXY`).
pub async fn serve_outbound(
    listener: TcpListener,
    mesh: Arc<Mesh>,
    sidecar: Arc<Sidecar>,
    shutdown: watch::Receiver<bool>,
) {
    serve_sidecar(listener, mesh, sidecar, shutdown, SidecarSide::Outbound).await;
}
