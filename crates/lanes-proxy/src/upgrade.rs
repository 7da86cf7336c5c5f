//! HTTP/1.1 Upgrade (WebSockets, and any other protocol a client switches to): the
//! handshake is routed like any request, so its lane is chosen then; once the endpoint
//! answers `101 Switching Protocols`, the hop that reached it over the wire joins the
//! client's connection to the endpoint's and copies bytes both ways until either side
//! closes, the tunnel is idle too long, or it reaches its longest life.
//!
//! The client's side of the upgrade (hyper's [`OnUpgrade`]) travels in the request's
//! extensions through hops handed over in memory, so only one task per tunnel copies.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderValue};
use http::{StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::server::ConnectionHold;

/// How long a tunnel may live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelLimits {
    /// Closed after this long with no byte either way.
    pub idle: Duration,
    /// Closed this long after it opened, busy or not (`None`: no limit).
    pub max_duration: Option<Duration>,
}

/// The protocol an HTTP/1.1 request asks to switch to: its `Upgrade` header, when its
/// `Connection` header lists `upgrade`.
pub fn requested(version: Version, headers: &HeaderMap) -> Option<HeaderValue> {
    if version != Version::HTTP_11 {
        return None;
    }
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if asks {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    }
}

/// Whether a response switches protocols.
pub fn is_switching(status: StatusCode) -> bool {
    status == StatusCode::SWITCHING_PROTOCOLS
}

/// Puts back the two headers of an upgrade that hop-by-hop stripping took away.
pub fn restore(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol);
}

/// Joins the client's connection to the endpoint's once both have switched, in a task
/// of its own; either failing to switch ends it. With the client connection's `hold`,
/// the tunnel keeps its listener slot and closes when the listener shuts down.
pub fn spawn_tunnel(
    client: OnUpgrade,
    upstream: OnUpgrade,
    limits: TunnelLimits,
    hold: Option<ConnectionHold>,
) {
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(both) => both,
            Err(e) => {
                tracing::debug!(error = %e, "an upgraded connection did not switch");
                return;
            }
        };
        let copying = tunnel(TokioIo::new(client), TokioIo::new(upstream), limits);
        let ended = match &hold {
            Some(hold) => tokio::select! {
                ended = copying => ended,
                () = hold.shutting_down() => TunnelEnd::Shutdown,
            },
            None => copying.await,
        };
        drop(hold);
        tracing::debug!(?ended, "tunnel closed");
    });
}

/// Why a tunnel closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelEnd {
    /// One side closed (or failed); the other was shut down.
    Closed,
    /// No byte either way for the idle limit.
    Idle,
    /// It reached its longest life.
    MaxDuration,
    /// Its listener shut down.
    Shutdown,
}

/// Copies bytes both ways between `a` and `b` within `limits`.
pub async fn tunnel<A, B>(a: A, b: B, limits: TunnelLimits) -> TunnelEnd
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let opened = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let mut a = Touched::new(a, opened, last.clone());
    let mut b = Touched::new(b, opened, last.clone());
    let copy = tokio::io::copy_bidirectional(&mut a, &mut b);
    tokio::pin!(copy);
    let life = async {
        match limits.max_duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(life);
    loop {
        let quiet_since = opened + Duration::from_millis(last.load(Ordering::Relaxed));
        tokio::select! {
            _ = &mut copy => return TunnelEnd::Closed,
            () = &mut life => return TunnelEnd::MaxDuration,
            () = tokio::time::sleep_until(quiet_since + limits.idle) => {
                let quiet = opened + Duration::from_millis(last.load(Ordering::Relaxed));
                if quiet.elapsed() >= limits.idle {
                    return TunnelEnd::Idle;
                }
            }
        }
    }
}

/// A byte stream that notes when bytes last moved (milliseconds since `opened`).
struct Touched<T> {
    inner: T,
    opened: Instant,
    last: Arc<AtomicU64>,
}

impl<T> Touched<T> {
    fn new(inner: T, opened: Instant, last: Arc<AtomicU64>) -> Self {
        Touched {
            inner,
            opened,
            last,
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Touched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Touched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (header::HeaderName::from_static(k), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn only_an_http11_request_naming_upgrade_in_connection_asks_to_switch() {
        let ws = h(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
        ]);
        assert_eq!(
            requested(Version::HTTP_11, &ws),
            Some(HeaderValue::from_static("websocket"))
        );
        assert_eq!(requested(Version::HTTP_2, &ws), None);
        assert_eq!(
            requested(Version::HTTP_11, &h(&[("upgrade", "websocket")])),
            None
        );
        assert_eq!(
            requested(Version::HTTP_11, &h(&[("connection", "upgrade")])),
            None
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_tunnel_closes_at_the_idle_limit_and_a_busy_one_at_its_longest_life() {
        let limits = TunnelLimits {
            idle: Duration::from_secs(10),
            max_duration: Some(Duration::from_secs(60)),
        };
        let (a, _a_peer) = duplex(64);
        let (b, _b_peer) = duplex(64);
        assert_eq!(tunnel(a, b, limits).await, TunnelEnd::Idle);

        let (a, mut a_peer) = duplex(64);
        let (b, mut b_peer) = duplex(64);
        let chatter = tokio::spawn(async move {
            let mut buf = [0u8; 4];
            for _ in 0..100 {
                a_peer.write_all(b"ping").await.unwrap();
                b_peer.read_exact(&mut buf).await.unwrap();
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        });
        let started = tokio::time::Instant::now();
        assert_eq!(tunnel(a, b, limits).await, TunnelEnd::MaxDuration);
        assert_eq!(started.elapsed(), Duration::from_secs(60));
        chatter.abort();
    }

    #[tokio::test]
    async fn bytes_cross_both_ways_and_a_close_ends_the_tunnel() {
        let limits = TunnelLimits {
            idle: Duration::from_secs(30),
            max_duration: None,
        };
        let (a, mut a_peer) = duplex(64);
        let (b, mut b_peer) = duplex(64);
        let t = tokio::spawn(tunnel(a, b, limits));
        a_peer.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        b_peer.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");
        b_peer.write_all(b"world").await.unwrap();
        a_peer.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"world");
        drop(a_peer);
        drop(b_peer);
        assert_eq!(t.await.unwrap(), TunnelEnd::Closed);
    }
}
