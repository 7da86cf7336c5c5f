//! WebSockets through the gateway and two sidecars, with a real WebSocket client and
//! servers (the `tungstenite` crate): the lane is chosen at the handshake, messages
//! cross both ways until a side closes, and a quiet tunnel is closed at its idle limit.
// The handshake callback's error type is tungstenite's, large or not.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::result_large_err)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::{App, Cluster, manifests, pod, sample, settings};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

/// A WebSocket server that answers each text message with `<tag>:<message>`.
async fn echo_server(tag: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    match m {
                        Message::Text(t) => {
                            let reply = format!("{tag}:{}", t.as_str());
                            if ws.send(Message::text(reply)).await.is_err() {
                                return;
                            }
                        }
                        Message::Close(_) => return,
                        _ => {}
                    }
                }
            });
        }
    });
    addr
}

/// A WebSocket server that relays each connection to `ws://<upstream>/ws` through its
/// pod's sidecar (`outbound`, known once the mesh runs), passing on `my-request-id` as
/// the sample service does, and prefixes what comes back with `<tag>>`.
async fn relay(
    tag: &'static str,
    upstream: &'static str,
    outbound: Arc<OnceLock<SocketAddr>>,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let outbound = outbound.clone();
            tokio::spawn(async move {
                let trace = Arc::new(OnceLock::new());
                let seen = trace.clone();
                let callback = move |req: &Request, resp: Response| {
                    if let Some(t) = req.headers().get("my-request-id") {
                        let _ = seen.set(t.clone());
                    }
                    Ok(resp)
                };
                let Ok(down) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
                    return;
                };
                let mut req = format!("ws://{upstream}/ws").into_client_request().unwrap();
                if let Some(t) = trace.get() {
                    req.headers_mut().insert("my-request-id", t.clone());
                }
                let sidecar = TcpStream::connect(*outbound.get().unwrap()).await.unwrap();
                let (up, _) = tokio_tungstenite::client_async(req, sidecar).await.unwrap();
                let _ = pipe(down, up, tag).await;
            });
        }
    });
    addr
}

/// Passes text messages both ways, prefixing those coming back with `<tag>>`, until
/// either side closes.
async fn pipe<D, U>(
    mut down: WebSocketStream<D>,
    mut up: WebSocketStream<U>,
    tag: &str,
) -> Result<(), tokio_tungstenite::tungstenite::Error>
where
    D: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        tokio::select! {
            m = down.next() => match m.transpose()? {
                Some(Message::Text(t)) => up.send(Message::Text(t)).await?,
                Some(Message::Close(_)) | None => return up.close(None).await,
                Some(_) => {}
            },
            m = up.next() => match m.transpose()? {
                Some(Message::Text(t)) => {
                    down.send(Message::text(format!("{tag}>{}", t.as_str()))).await?;
                }
                Some(Message::Close(_)) | None => return down.close(None).await,
                Some(_) => {}
            },
        }
    }
}

/// The article's services: samples in the baseline lane; in the canary lane mocka is a
/// WebSocket relay to mockb, and mockb an echo server.
async fn mesh(settings: lanes_proxy::Settings) -> Cluster {
    let outbound = Arc::new(OnceLock::new());
    let a = relay("mocka-v2", "mockb:8000", outbound.clone()).await;
    let b = echo_server("mockb-v2").await;
    let pods = vec![
        pod("mocka", "v1", "base", sample(Some("http://mockb:8000/"))),
        pod("mockb", "v1", "base", sample(Some("http://mockc:8000/"))),
        pod("mockc", "v1", "base", sample(None)),
        pod("mocka", "v2", "canary", App::At(a)),
        pod("mockb", "v2", "canary", App::At(b)),
    ];
    let c = Cluster::start(&manifests(), pods, settings).await;
    outbound.set(c.pod("mocka-v2-canary").outbound).unwrap();
    c
}

async fn connect(
    c: &Cluster,
    lane: &str,
) -> WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>> {
    let mut req = format!("ws://{}/mock", c.gateway)
        .into_client_request()
        .unwrap();
    let h = req.headers_mut();
    h.insert("host", "example.com".parse().unwrap());
    h.insert("x-asm-prefer-tag", lane.parse().unwrap());
    h.insert("my-request-id", format!("ws-{lane}-1").parse().unwrap());
    let (ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.status(), 101);
    ws
}

#[tokio::test]
async fn a_thousand_messages_cross_the_gateway_and_two_sidecars_in_the_canary_lane() {
    let c = mesh(settings()).await;
    let mut ws = connect(&c, "canary").await;
    for i in 0..1000 {
        ws.send(Message::text(format!("m{i}"))).await.unwrap();
        let reply = ws.next().await.unwrap().unwrap();
        assert_eq!(
            reply.to_text().unwrap(),
            format!("mocka-v2>mockb-v2:m{i}"),
            "message {i}"
        );
    }
    // A close from the client reaches the server through both tunnels and comes back.
    ws.close(None).await.unwrap();
    let mut closed = false;
    while let Some(m) = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
    {
        closed |= matches!(m, Ok(Message::Close(_)) | Err(_));
    }
    assert!(closed);
    let metrics = c.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("lanes_requests_total{")
                && l.contains("role=\"gateway\"")
                && l.contains("lane=\"canary\",subset=\"canary\",code=\"101\"")),
        "the handshake is routed and counted as a request: {metrics}"
    );
}

/// The mesh with `settings`, and a WebSocket in the canary lane that has said hello
/// through both relays.
async fn greeted(
    settings: lanes_proxy::Settings,
) -> (
    Cluster,
    WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
) {
    let c = mesh(settings).await;
    let mut ws = connect(&c, "canary").await;
    ws.send(Message::text("hello")).await.unwrap();
    let reply = ws.next().await.unwrap().unwrap();
    assert_eq!(reply.to_text().unwrap(), "mocka-v2>mockb-v2:hello");
    (c, ws)
}

#[tokio::test]
async fn a_quiet_tunnel_is_closed_at_the_idle_limit() {
    let s = lanes_proxy::Settings {
        upgrade_idle_timeout_ms: 300,
        ..settings()
    };
    let (_cluster, mut ws) = greeted(s).await;
    // Nothing more is said: the proxy closes the tunnel, and the client sees its end.
    let started = std::time::Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("the tunnel is closed well within 10 s");
    assert!(
        matches!(end, None | Some(Err(_)) | Some(Ok(Message::Close(_)))),
        "{end:?}"
    );
    eprintln!("tunnel closed after {:?} of quiet", started.elapsed());
}

/// A plain GET in the baseline lane through the gateway, on a fresh connection.
async fn plain_get(c: &Cluster) -> Result<(http::StatusCode, String), String> {
    common::send_via(
        c.gateway,
        http::Request::get("/mock")
            .header("host", "example.com")
            .header("x-asm-prefer-tag", "base")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn an_open_tunnel_keeps_its_connection_slot_until_it_closes() {
    let s = lanes_proxy::Settings {
        max_connections: 1,
        ..settings()
    };
    let (c, mut ws) = greeted(s).await;
    // The gateway's only slot is the tunnel's: another client is turned away.
    let refused = plain_get(&c).await;
    assert!(
        refused.is_err(),
        "a second connection was served: {refused:?}"
    );
    ws.close(None).await.unwrap();
    while let Some(Ok(_)) = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
    {}
    drop(ws);
    // Once the tunnel has closed, its slot serves the next client.
    let mut served = None;
    for _ in 0..50 {
        if let Ok(answer) = plain_get(&c).await {
            served = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) = served.expect("the slot is freed when the tunnel closes");
    assert_eq!(status, http::StatusCode::OK);
}
