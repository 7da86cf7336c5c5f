//! The upstream connection pool against real HTTP/1.1 servers on loopback: connections
//! are reused once their response ends, and never while it is unread; a connection the
//! server closes, or one idle past the timeout, is not used again; a refused connect is
//! told apart from a failed exchange.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use lanes_proxy::body::{ProxyBody, empty};
use lanes_proxy::upstream::{Http1Pool, PoolSettings};
use tokio::net::TcpListener;

/// How the test server answers.
#[derive(Clone, Copy)]
enum Answer {
    /// `hello` with keep-alive.
    KeepAlive,
    /// `hello`, then the server closes the connection.
    Close,
    /// `hello` at once, the request body read to its end afterwards.
    Early,
}

/// A server on 127.0.0.1 port 0 answering `answer`; returns its address and a count of
/// the connections it accepted.
async fn server(answer: Answer) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| async move {
                    let mut resp = Response::new(Full::new(Bytes::from_static(b"hello")));
                    if let Answer::Close = answer {
                        resp.headers_mut()
                            .insert(header::CONNECTION, "close".parse().unwrap());
                    }
                    if let Answer::Early = answer {
                        tokio::spawn(async move { req.into_body().collect().await });
                    }
                    Ok::<_, Infallible>(resp)
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, accepted)
}

fn pool(idle_timeout: Duration) -> Http1Pool {
    Http1Pool::new(PoolSettings {
        connect_timeout: Duration::from_secs(2),
        max_idle_per_endpoint: 4,
        idle_timeout,
    })
}

fn get(addr: SocketAddr) -> Request<ProxyBody> {
    Request::builder()
        .uri("/")
        .header(header::HOST, addr.to_string())
        .body(empty())
        .unwrap()
}

async fn read(resp: Response<ProxyBody>) -> (StatusCode, Bytes) {
    let status = resp.status();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

/// Waits (bounded) until `pool` keeps `n` idle connections to `addr`.
async fn until_idle(pool: &Http1Pool, addr: SocketAddr, n: usize) -> usize {
    for _ in 0..200 {
        if pool.idle_count(addr) == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    pool.idle_count(addr)
}

#[tokio::test]
async fn a_connection_is_reused_once_its_response_has_been_read() {
    let (addr, accepted) = server(Answer::KeepAlive).await;
    let pool = pool(Duration::from_secs(30));
    for _ in 0..5 {
        let (status, body) = read(pool.send(addr, get(addr)).await.unwrap()).await;
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"hello"[..]));
        assert_eq!(pool.idle_count(addr), 1);
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "five requests, one connection"
    );
}

#[tokio::test]
async fn a_connection_whose_response_is_unread_is_not_lent_again() {
    let (addr, accepted) = server(Answer::KeepAlive).await;
    let pool = pool(Duration::from_secs(30));
    let first = pool.send(addr, get(addr)).await.unwrap();
    assert_eq!(
        pool.idle_count(addr),
        0,
        "the first response still holds it"
    );
    let (status, _) = read(pool.send(addr, get(addr)).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    // Dropped unread, the first connection's state is unknown: it is not kept.
    drop(first);
    assert_eq!(pool.idle_count(addr), 1);
}

#[tokio::test]
async fn a_connection_the_server_closes_is_not_used_again() {
    let (addr, accepted) = server(Answer::Close).await;
    let pool = pool(Duration::from_secs(30));
    for _ in 0..3 {
        let (status, body) = read(pool.send(addr, get(addr)).await.unwrap()).await;
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"hello"[..]));
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        3,
        "one connection per request"
    );
    assert_eq!(until_idle(&pool, addr, 0).await, 0);
}

#[tokio::test]
async fn a_connection_idle_past_the_timeout_is_closed_not_reused() {
    let (addr, accepted) = server(Answer::KeepAlive).await;
    let pool = pool(Duration::from_millis(50));
    read(pool.send(addr, get(addr)).await.unwrap()).await;
    assert_eq!(pool.idle_count(addr), 1);
    // The sweeper closes it within about two timeouts.
    assert_eq!(until_idle(&pool, addr, 0).await, 0, "swept");
    read(pool.send(addr, get(addr)).await.unwrap()).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_refused_connect_is_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = pool(Duration::from_secs(30))
        .send(addr, get(addr))
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
}

#[tokio::test]
async fn an_endpoint_that_hangs_up_without_answering_is_not_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    let err = pool(Duration::from_secs(30))
        .send(addr, get(addr))
        .await
        .unwrap_err();
    assert!(!err.is_connect(), "{err:?}");
}

#[tokio::test]
async fn a_stale_connection_the_server_dropped_while_idle_is_passed_over() {
    // The server answers once per connection and then closes it without saying so.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let svc = service_fn(|_req: Request<Incoming>| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"once"))))
                });
                let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
                tokio::pin!(conn);
                // Serve until the first answer is written, then hang up.
                let _ = tokio::time::timeout(Duration::from_millis(100), conn.as_mut()).await;
            });
        }
    });
    let pool = pool(Duration::from_secs(30));
    for _ in 0..3 {
        let (status, body) = read(pool.send(addr, get(addr)).await.unwrap()).await;
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"once"[..]));
        // Let the server hang up on the idle connection.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_connection_still_sending_a_request_body_is_not_lent_to_the_next_request() {
    // The server answers at once, before the request body has arrived; the first
    // request's body then stays open (a slow upload), its connection busy.
    let (addr, accepted) = server(Answer::Early).await;
    let pool = pool(Duration::from_secs(30));
    let (body_tx, body_rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let frames = futures_util::stream::unfold(body_rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(http_body::Frame::data(b)), rx))
    });
    let upload = Request::post("/")
        .header(header::HOST, addr.to_string())
        .body(lanes_proxy::body::boxed(http_body_util::StreamBody::new(
            frames,
        )))
        .unwrap();
    let (status, _) = read(pool.send(addr, upload).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    // The next request does not wait for the upload to end: it gets a connection of
    // its own.
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), async {
        read(pool.send(addr, get(addr)).await.unwrap()).await
    })
    .await
    .expect("the second request is not held behind the first one's upload");
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"hello"[..]));
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    // Once the upload ends, its connection comes back to the pool too.
    drop(body_tx);
    assert_eq!(until_idle(&pool, addr, 2).await, 2);
}
