//! Bodies stream through the gateway and a sidecar as they are written: a server-sent
//! event reaches the client before the upstream writes the next, and a 200 MiB upload
//! passes without the proxy holding it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use futures_util::stream;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

type Chunks =
    StreamBody<futures_util::stream::BoxStream<'static, Result<Frame<Bytes>, Infallible>>>;

/// A server on 127.0.0.1 port 0 answering each request with `answer`.
async fn serve<F, Fut>(answer: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Chunks>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let answer = answer.clone();
                    async move { Ok::<_, Infallible>(answer(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// A cluster whose mocka (the gateway's `/mock` target) is the server at `app`.
async fn cluster_in_front_of(app: SocketAddr, settings: lanes_proxy::Settings) -> Cluster {
    Cluster::start(
        &manifests(),
        vec![pod("mocka", "v1", "base", App::At(app))],
        settings,
    )
    .await
}

async fn send<B>(gateway: SocketAddr, body: B) -> Response<Incoming>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(gateway).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::post("/mock")
        .header("host", "example.com")
        .header("x-asm-prefer-tag", "base")
        .body(body)
        .unwrap();
    sender.send_request(req).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_sent_event_reaches_the_client_before_the_next_is_written() {
    // The test writes the events: the second only once the client has the first, so a
    // proxy that held the body back would never deliver (and the read below times out).
    let (events_tx, events_rx) = mpsc::channel::<Bytes>(1);
    let events_rx = std::sync::Arc::new(tokio::sync::Mutex::new(Some(events_rx)));
    let app = serve(move |_req| {
        let events_rx = events_rx.clone();
        async move {
            let rx = events_rx.lock().await.take().expect("one event stream");
            let frames = stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|b| (Ok(Frame::data(b)), rx))
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(StreamBody::new(Box::pin(frames) as _))
                .unwrap()
        }
    })
    .await;
    let c = cluster_in_front_of(app, settings()).await;
    let resp = send(c.gateway, Full::new(Bytes::new())).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut delays = Vec::new();
    for n in 0..5 {
        let event = Bytes::from(format!("data: {n}\n\n"));
        let written = Instant::now();
        events_tx.send(event.clone()).await.unwrap();
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("the event is passed on while the stream stays open")
            .unwrap()
            .unwrap();
        delays.push(written.elapsed());
        assert_eq!(frame.into_data().unwrap(), event);
    }
    drop(events_tx);
    assert!(
        body.frame().await.is_none(),
        "the stream ends when the upstream's does"
    );
    eprintln!("event written -> event read by the client, through gateway and sidecar: {delays:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mib_upload_streams_through_without_being_held() {
    const CHUNK: usize = 64 * 1024;
    const TOTAL: usize = 200 * 1024 * 1024;
    static ZEROS: [u8; CHUNK] = [0; CHUNK];
    // The application counts what arrives and keeps none of it.
    let app = serve(|req: Request<Incoming>| async move {
        let mut body = req.into_body();
        let mut seen = 0usize;
        while let Some(frame) = body.frame().await {
            if let Some(data) = frame.unwrap().data_ref() {
                seen += data.len();
            }
        }
        let frames = stream::iter([Ok(Frame::data(Bytes::from(seen.to_string())))]);
        Response::new(StreamBody::new(Box::pin(frames) as _))
    })
    .await;
    let settings = lanes_proxy::Settings {
        request_timeout_ms: 120_000,
        ..settings()
    };
    let c = cluster_in_front_of(app, settings).await;
    let before = peak_rss_kib();
    let chunks = stream::iter(
        (0..TOTAL / CHUNK).map(|_| Ok::<_, Infallible>(Frame::data(Bytes::from_static(&ZEROS)))),
    );
    let resp = send(c.gateway, StreamBody::new(chunks)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let answer = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(answer, TOTAL.to_string());
    let grown_mib = (peak_rss_kib() - before) as f64 / 1024.0;
    eprintln!("peak RSS grew {grown_mib:.1} MiB over a 200 MiB upload");
    assert!(
        grown_mib < 16.0,
        "the upload was held: peak RSS grew {grown_mib:.1} MiB"
    );
}

/// This process's peak resident set (`VmHWM`), in KiB.
fn peak_rss_kib() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}
