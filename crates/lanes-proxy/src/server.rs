//! Listeners: accept connections and serve HTTP/1.1 and h2c on them, within the limits
//! of `listener` (connection cap, first-byte, header and idle deadlines), with graceful
//! shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::body::{ProxyBody, boxed};
use crate::config::ListenerLimits;
use crate::listener::{AcceptBackoff, Activity, is_tls_handshake, peek_first_byte};
use crate::proxy::{Mesh, Sidecar};

/// Resolves when `shutdown` turns true (or its sender is gone).
pub async fn wait_for(mut shutdown: watch::Receiver<bool>) {
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

/// What an upgraded connection keeps of the client connection it came from: the
/// listener's connection slot (so a tunnel counts against `max_connections` as long as
/// it lives) and the listener's shutdown signal (so a drain closes it).
#[derive(Debug, Clone)]
pub struct ConnectionHold {
    _slot: Arc<OwnedSemaphorePermit>,
    shutdown: watch::Receiver<bool>,
}

impl ConnectionHold {
    /// Resolves when the listener shuts down.
    pub async fn shutting_down(&self) {
        wait_for(self.shutdown.clone()).await;
    }
}

/// Serves `handler` on `listener` until `shutdown`, then lets open requests finish.
/// `name` names the listener in logs. The listener holds at most
/// `limits.max_connections` connections (more are closed at once), closes a connection
/// that sends nothing within `limits.first_byte_timeout` or has no request in flight for
/// `limits.idle_timeout`, and pauses with back-off when accepting fails.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    limits: ListenerLimits,
    name: &'static str,
    shutdown: watch::Receiver<bool>,
    handler: F,
) where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    serve_with_tls(listener, limits, name, shutdown, None, handler).await;
}

/// [`serve`], and with `tls`, a connection that opens with a TLS handshake is served
/// over TLS (the others as plain HTTP, on the same port).
pub async fn serve_with_tls<F, Fut>(
    listener: TcpListener,
    limits: ListenerLimits,
    name: &'static str,
    shutdown: watch::Receiver<bool>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    handler: F,
) where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true)
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(64 * 1024);
    let builder = Arc::new(builder);
    // Each connection holds a permit; at shutdown, holding them all again means every
    // connection has ended.
    let max = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let slots = Arc::new(Semaphore::new(max as usize));
    let mut backoff = AcceptBackoff::default();
    let mut refusals = RefusalLog::default();
    let stop = wait_for(shutdown.clone());
    tokio::pin!(stop);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    let pause = backoff.failed(name, &e);
                    tokio::select! {
                        () = tokio::time::sleep(pause) => continue,
                        () = &mut stop => break,
                    }
                }
            },
            () = &mut stop => break,
        };
        backoff.reset();
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            refusals.refused(name, limits.max_connections);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(
            stream,
            tls.clone(),
            builder.clone(),
            limits,
            shutdown.clone(),
            handler.clone(),
            permit,
        ));
    }
    drop(listener);
    let _ = slots.acquire_many(max).await;
}

/// Serves one client connection until it ends, is idle too long, or `shutdown`.
async fn connection<F, Fut>(
    stream: TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    limits: ListenerLimits,
    shutdown: watch::Receiver<bool>,
    handler: F,
    permit: OwnedSemaphorePermit,
) where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let Some(first) = peek_first_byte(&stream, limits.first_byte_timeout).await else {
        return;
    };
    let hold = ConnectionHold {
        _slot: Arc::new(permit),
        shutdown: shutdown.clone(),
    };
    match tls {
        Some(acceptor) if is_tls_handshake(first) => {
            let handshake = acceptor.accept(stream);
            match tokio::time::timeout(limits.header_read_timeout, handshake).await {
                Ok(Ok(tls_stream)) => {
                    serve_io(tls_stream, builder, limits, hold, handler).await;
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake timed out"),
            }
        }
        _ => serve_io(stream, builder, limits, hold, handler).await,
    }
}

/// Serves HTTP on one connection's byte stream (plain or TLS). A request that asks to
/// upgrade carries the connection's [`ConnectionHold`] in its extensions.
async fn serve_io<I, F, Fut>(
    stream: I,
    builder: Arc<auto::Builder<TokioExecutor>>,
    limits: ListenerLimits,
    hold: ConnectionHold,
    handler: F,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let activity = Activity::new();
    let shutdown = hold.shutdown.clone();
    let service = {
        let activity = activity.clone();
        service_fn(move |mut req: Request<Incoming>| {
            if req.extensions().get::<OnUpgrade>().is_some() {
                req.extensions_mut().insert(hold.clone());
            }
            let handler = handler.clone();
            let in_flight = activity.begin();
            async move {
                let resp = handler(req).await;
                // The request stays in flight until its response body is done.
                Ok::<_, Infallible>(resp.map(move |body| {
                    body.map_frame(move |frame| {
                        let _ = &in_flight;
                        frame
                    })
                }))
            }
        })
    };
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let mut closing = false;
    loop {
        let idle = activity.idle_deadline(limits.idle_timeout);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = wait_for(shutdown.clone()), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            () = sleep_until_or(idle, limits.idle_timeout), if !closing => {
                if activity.is_idle(limits.idle_timeout) {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

/// Sleeps until `deadline`, or for `otherwise` when there is none (to look again).
async fn sleep_until_or(deadline: Option<tokio::time::Instant>, otherwise: Duration) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => tokio::time::sleep(otherwise).await,
    }
}

/// Logs refused connections at most once a second.
#[derive(Debug, Default)]
struct RefusalLog {
    last: Option<std::time::Instant>,
    since: u64,
}

impl RefusalLog {
    fn refused(&mut self, listener: &'static str, max: usize) {
        self.since += 1;
        if self
            .last
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            tracing::warn!(
                listener,
                max_connections = max,
                refused = self.since,
                "connection limit reached; refusing connections"
            );
            self.last = Some(std::time::Instant::now());
            self.since = 0;
        }
    }
}

/// Serves an axum router (the API, the admin endpoints) with the same limits as the
/// data plane's listeners.
pub async fn serve_router(
    listener: TcpListener,
    limits: ListenerLimits,
    name: &'static str,
    shutdown: watch::Receiver<bool>,
    router: axum::Router,
) {
    serve_router_tls(listener, limits, name, shutdown, None, router).await;
}

/// [`serve_router`], with TLS for the connections that open with a handshake.
pub async fn serve_router_tls(
    listener: TcpListener,
    limits: ListenerLimits,
    name: &'static str,
    shutdown: watch::Receiver<bool>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    router: axum::Router,
) {
    serve_with_tls(
        listener,
        limits,
        name,
        shutdown,
        tls,
        move |req: Request<Incoming>| {
            let mut router = router.clone();
            async move {
                let resp =
                    match tower_service::Service::call(&mut router, req.map(axum::body::Body::new))
                        .await
                    {
                        Ok(r) => r,
                        Err(never) => match never {},
                    };
                resp.map(boxed)
            }
        },
    )
    .await;
}

/// Serves the gateway role.
pub async fn serve_gateway(
    listener: TcpListener,
    mesh: Arc<Mesh>,
    shutdown: watch::Receiver<bool>,
) {
    let limits = mesh.settings().listener_limits();
    serve(listener, limits, "gateway", shutdown, move |req| {
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
    let limits = mesh.settings().listener_limits();
    let name = match side {
        SidecarSide::Inbound => "sidecar-inbound",
        SidecarSide::Outbound => "sidecar-outbound",
    };
    serve(listener, limits, name, shutdown, move |req| {
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

/// Serves a sidecar's inbound side: on its listener, and in memory to the gateway and
/// sidecars of this process until `shutdown`.
pub async fn serve_inbound(
    listener: TcpListener,
    mesh: Arc<Mesh>,
    sidecar: Arc<Sidecar>,
    shutdown: watch::Receiver<bool>,
) {
    let Ok(addr) = listener.local_addr() else {
        return;
    };
    mesh.local_inbound().add(addr, sidecar.clone());
    let forget = {
        let (mesh, shutdown) = (mesh.clone(), shutdown.clone());
        async move {
            wait_for(shutdown).await;
            mesh.local_inbound().remove(addr);
        }
    };
    let serving = serve_sidecar(
        listener,
        mesh.clone(),
        sidecar,
        shutdown,
        SidecarSide::Inbound,
    );
    tokio::join!(serving, forget);
    mesh.local_inbound().remove(addr);
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
