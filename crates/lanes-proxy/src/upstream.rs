//! Keep-alive HTTP/1.1 connections to upstream endpoints, pooled per endpoint address.
//!
//! A connection is taken from its endpoint's pool for one exchange and goes back when
//! the response body it carried ends (or at once, when the response has none), so no
//! task waits beside each request for the connection to turn idle, and the pool is
//! keyed by the endpoint's socket address, not by its formatted authority.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::body::ProxyBody;

/// Why an exchange with an upstream endpoint failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The TCP connection could not be made.
    #[error("tcp connect error")]
    Connect(#[source] std::io::Error),
    /// The TCP connection was not made within the connect timeout.
    #[error("tcp connect timed out after {} ms", .0.as_millis())]
    ConnectTimeout(Duration),
    /// The HTTP/1 handshake on a new connection failed.
    #[error("connection setup failed")]
    Handshake(#[source] hyper::Error),
    /// The request was sent (or began to be) and no response came back.
    #[error("request failed on the connection")]
    Send(#[source] hyper::Error),
}

impl UpstreamError {
    /// Whether no connection to the endpoint could be made (nothing was sent).
    pub fn is_connect(&self) -> bool {
        matches!(
            self,
            UpstreamError::Connect(_) | UpstreamError::ConnectTimeout(_)
        )
    }
}

/// How the pool connects and how long it keeps idle connections.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    /// Time to make a TCP connection.
    pub connect_timeout: Duration,
    /// Idle connections kept per endpoint, at most.
    pub max_idle_per_endpoint: usize,
    /// An idle connection older than this is closed, not reused.
    pub idle_timeout: Duration,
}

/// Upstream HTTP/1.1 connections, pooled per endpoint address.
#[derive(Clone)]
pub struct Http1Pool {
    inner: Arc<Shared>,
}

impl std::fmt::Debug for Http1Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http1Pool")
            .field("settings", &self.inner.settings)
            .finish()
    }
}

struct Shared {
    settings: PoolSettings,
    idle: Mutex<Idle>,
}

#[derive(Default)]
struct Idle {
    by_endpoint: HashMap<SocketAddr, Vec<IdleConn>>,
    /// Closes connections that stay idle past the timeout; runs while any are kept.
    sweeper: Option<JoinHandle<()>>,
}

struct IdleConn {
    sender: SendRequest<ProxyBody>,
    since: Instant,
}

impl IdleConn {
    /// Whether this connection may carry another request at `now`.
    fn is_reusable(&self, now: Instant, idle_timeout: Duration) -> bool {
        !self.sender.is_closed() && now.saturating_duration_since(self.since) < idle_timeout
    }
}

impl Http1Pool {
    /// An empty pool.
    pub fn new(settings: PoolSettings) -> Http1Pool {
        Http1Pool {
            inner: Arc::new(Shared {
                settings,
                idle: Mutex::default(),
            }),
        }
    }

    /// Sends `req` (origin-form target, Host set) to the endpoint at `addr` over a
    /// pooled connection, or a new one. A request a reused connection closed before
    /// taking is sent again on another: nothing of it reached the endpoint.
    pub async fn send(
        &self,
        addr: SocketAddr,
        mut req: Request<ProxyBody>,
    ) -> Result<Response<ProxyBody>, UpstreamError> {
        loop {
            let (mut sender, reused) = match self.checkout(addr).await {
                Some(sender) => (sender, true),
                None => (self.connect(addr).await?, false),
            };
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok(self.give_back_after(addr, sender, resp)),
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(UpstreamError::Send(e.into_error())),
                },
            }
        }
    }

    /// Idle connections to `addr` kept open now.
    pub fn idle_count(&self, addr: SocketAddr) -> usize {
        self.inner.lock().by_endpoint.get(&addr).map_or(0, |list| {
            list.iter().filter(|c| !c.sender.is_closed()).count()
        })
    }

    /// The newest idle connection to `addr` that is still open and ready.
    async fn checkout(&self, addr: SocketAddr) -> Option<SendRequest<ProxyBody>> {
        loop {
            let mut sender = self.inner.take_idle(addr)?;
            // Only ready connections are kept; one that has closed since fails here.
            if sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    async fn connect(&self, addr: SocketAddr) -> Result<SendRequest<ProxyBody>, UpstreamError> {
        let limit = self.inner.settings.connect_timeout;
        let stream = tokio::time::timeout(limit, TcpStream::connect(addr))
            .await
            .map_err(|_| UpstreamError::ConnectTimeout(limit))?
            .map_err(UpstreamError::Connect)?;
        // Small writes go at once: a proxy forwards what it has.
        stream.set_nodelay(true).map_err(UpstreamError::Connect)?;
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(UpstreamError::Handshake)?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(%addr, error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// The response, its body holding the connection until it ends.
    fn give_back_after(
        &self,
        addr: SocketAddr,
        sender: SendRequest<ProxyBody>,
        resp: Response<Incoming>,
    ) -> Response<ProxyBody> {
        let (parts, body) = resp.into_parts();
        if crate::upgrade::is_switching(parts.status) {
            // The connection now belongs to the upgrade: never lent again.
            return Response::from_parts(parts, crate::body::boxed(body));
        }
        let back = Checkin {
            pool: Arc::downgrade(&self.inner),
            addr,
            sender,
        };
        let body = if body.is_end_stream() {
            back.give_back();
            crate::body::boxed(body)
        } else {
            crate::body::boxed(PooledBody {
                inner: body,
                back: Some(back),
            })
        };
        Response::from_parts(parts, body)
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Idle> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The newest reusable idle connection to `addr`, dropping stale ones found on top.
    fn take_idle(&self, addr: SocketAddr) -> Option<SendRequest<ProxyBody>> {
        let now = Instant::now();
        let mut idle = self.lock();
        let list = idle.by_endpoint.get_mut(&addr)?;
        while let Some(conn) = list.pop() {
            if conn.is_reusable(now, self.settings.idle_timeout) {
                return Some(conn.sender);
            }
        }
        idle.by_endpoint.remove(&addr);
        None
    }

    fn put_idle(self: &Arc<Self>, addr: SocketAddr, sender: SendRequest<ProxyBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.lock();
        let list = idle.by_endpoint.entry(addr).or_default();
        if list.len() >= self.settings.max_idle_per_endpoint {
            return;
        }
        list.push(IdleConn {
            sender,
            since: Instant::now(),
        });
        if idle.sweeper.as_ref().is_none_or(JoinHandle::is_finished)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let every = self.settings.idle_timeout;
            idle.sweeper = Some(runtime.spawn(sweep_every(Arc::downgrade(self), every)));
        }
    }

    /// Drops idle connections past the timeout or closed; returns how many stay.
    fn sweep(&self) -> usize {
        let now = Instant::now();
        let timeout = self.settings.idle_timeout;
        let mut idle = self.lock();
        idle.by_endpoint.retain(|_, list| {
            list.retain(|c| c.is_reusable(now, timeout));
            !list.is_empty()
        });
        idle.by_endpoint.values().map(Vec::len).sum()
    }
}

/// Sweeps the pool every `every` while it keeps idle connections and exists.
async fn sweep_every(pool: Weak<Shared>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(pool) = pool.upgrade() else { return };
        if pool.sweep() == 0 {
            return;
        }
    }
}

/// A connection on loan to one response, and where it goes back.
struct Checkin {
    pool: Weak<Shared>,
    addr: SocketAddr,
    sender: SendRequest<ProxyBody>,
}

impl Checkin {
    /// Back to the pool: at once when the connection is ready for another request (the
    /// rule), else once it is (its request body may still be going out after an early
    /// answer), so that no later request waits on it.
    fn give_back(self) {
        let Some(pool) = self.pool.upgrade() else {
            return;
        };
        if self.sender.is_ready() {
            pool.put_idle(self.addr, self.sender);
            return;
        }
        if self.sender.is_closed() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Checkin {
            pool,
            addr,
            mut sender,
        } = self;
        runtime.spawn(async move {
            if sender.ready().await.is_ok()
                && let Some(pool) = pool.upgrade()
            {
                pool.put_idle(addr, sender);
            }
        });
    }
}

/// A response body that gives its connection back to the pool once it has ended. One
/// that fails, or is dropped before its end, takes the connection with it.
struct PooledBody {
    inner: Incoming,
    back: Option<Checkin>,
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Err(_))) => this.back = None,
            Poll::Ready(None) => this.give_back(),
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.give_back(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl PooledBody {
    fn give_back(&mut self) {
        if let Some(back) = self.back.take() {
            back.give_back();
        }
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // A reader may stop at the body's known end without polling past it.
        if self.inner.is_end_stream() {
            self.give_back();
        }
    }
}
