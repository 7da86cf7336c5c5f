//! The gRPC side of the conformance echo server (`echo-advanced`'s `--grpc` port):
//! every unary call, whatever its method, is answered with an `EchoResponse` of the
//! echo protocol the Gateway API suite's gRPC client reads — its `message` (field 1)
//! lines of `Key=value` naming what arrived (`Host`, `URL`, each `RequestHeader`) and
//! who answered (`Hostname`: the pod, `Namespace`).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use prost::Message;
use tokio::net::TcpListener;

use crate::echo::EchoConfig;

/// The answer of every call.
#[derive(Clone, PartialEq, Message)]
pub struct EchoResponse {
    /// `Key=value` lines.
    #[prost(string, tag = "1")]
    pub message: String,
}

/// The `message` for a call to `uri` with `headers`, answered at `port` by the pod of
/// `config`.
pub fn message(config: &EchoConfig, port: u16, uri: &Uri, headers: &HeaderMap) -> String {
    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| uri.authority().map(ToString::to_string))
        .unwrap_or_default();
    let mut lines = vec![
        format!("ServicePort={port}"),
        format!("Host={host}"),
        format!("URL={}", uri.path()),
        "Method=POST".to_string(),
        "Proto=GRPC".to_string(),
        format!("Hostname={}", config.pod),
        format!("Namespace={}", config.namespace),
    ];
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        lines.push(format!(
            "RequestHeader={}:{value}",
            crate::echo::canonical(name.as_str())
        ));
    }
    lines.join("\n")
}

/// `message` as one gRPC message frame: uncompressed, its length, its bytes.
fn frame(message: &EchoResponse) -> Bytes {
    let body = message.encode_to_vec();
    let mut out = BytesMut::with_capacity(5 + body.len());
    out.put_u8(0);
    out.put_u32(u32::try_from(body.len()).unwrap_or(u32::MAX));
    out.put_slice(&body);
    out.freeze()
}

type EchoBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// The most of a call's request the echo server takes in: gRPC's default largest
/// message (4 MiB).
const MAX_REQUEST: usize = 4 << 20;

/// gRPC's `RESOURCE_EXHAUSTED`.
const RESOURCE_EXHAUSTED: &str = "8";

/// The answer to one call: its `EchoResponse`, then `grpc-status: 0` in the trailers;
/// a request larger than [`MAX_REQUEST`] gets no message and `RESOURCE_EXHAUSTED`.
async fn answer(config: Arc<EchoConfig>, port: u16, req: Request<Incoming>) -> Response<EchoBody> {
    let (parts, body) = req.into_parts();
    // The request message is not read; the call is answered once it has arrived.
    let arrived = http_body_util::Limited::new(body, MAX_REQUEST)
        .collect()
        .await
        .is_ok();
    let mut trailers = HeaderMap::new();
    let message = if arrived {
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        frame(&EchoResponse {
            message: message(&config, port, &parts.uri, &parts.headers),
        })
    } else {
        trailers.insert("grpc-status", HeaderValue::from_static(RESOURCE_EXHAUSTED));
        Bytes::new()
    };
    let body = Full::new(message)
        .with_trailers(async move { Some(Ok(trailers)) })
        .boxed();
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    resp
}

/// Serves gRPC (HTTP/2, cleartext) on `listener` until `stop` resolves.
pub async fn serve(
    config: Arc<EchoConfig>,
    listener: TcpListener,
    stop: impl std::future::Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let port = listener.local_addr()?.port();
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    tokio::pin!(stop);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            () = &mut stop => return Ok(()),
        };
        let (config, builder) = (config.clone(), builder.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let config = config.clone();
                async move { Ok::<_, Infallible>(answer(config, port, req).await) }
            });
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One unary call of `body_len` bytes over HTTP/2 to the echo at `addr`: the
    /// `grpc-status` of its trailers and the message it answered.
    async fn call(addr: std::net::SocketAddr, body_len: usize) -> (String, Option<String>) {
        use hyper_util::client::legacy::Client;
        let client = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build_http::<Full<Bytes>>();
        let req = Request::post(format!("http://{addr}/proto.EchoTestService/Echo"))
            .header("content-type", "application/grpc")
            .body(Full::new(Bytes::from(vec![0u8; body_len])))
            .unwrap();
        let resp = client.request(req).await.unwrap();
        let collected = resp.into_body().collect().await.unwrap();
        let status = collected
            .trailers()
            .and_then(|t| t.get("grpc-status"))
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let bytes = collected.to_bytes();
        let message = (bytes.len() > 5).then(|| EchoResponse::decode(&bytes[5..]).unwrap().message);
        (status, message)
    }

    #[tokio::test]
    async fn a_call_is_answered_and_one_too_large_is_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = Arc::new(EchoConfig {
            listen: addr,
            grpc: Some(addr),
            namespace: "mesh".into(),
            pod: "echo-v2-b".into(),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(config, listener, async {
            let _ = stopped.await;
        }));
        let (status, message) = call(addr, 16).await;
        assert_eq!(status, "0");
        assert!(message.unwrap().contains("Hostname=echo-v2-b"));
        let (status, message) = call(addr, MAX_REQUEST + 1).await;
        assert_eq!((status.as_str(), message), (RESOURCE_EXHAUSTED, None));
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }

    #[test]
    fn a_calls_answer_names_the_call_and_the_pod_and_reads_back() {
        let config = EchoConfig {
            listen: "127.0.0.1:8080".parse().unwrap(),
            grpc: None,
            namespace: "mesh".into(),
            pod: "echo-v1-a".into(),
        };
        let mut headers = HeaderMap::new();
        headers.insert("host", "echo:7070".parse().unwrap());
        headers.insert("x-lane", "canary".parse().unwrap());
        let uri: Uri = "/proto.EchoTestService/Echo".parse().unwrap();
        let m = message(&config, 7070, &uri, &headers);
        for line in [
            "Hostname=echo-v1-a",
            "Namespace=mesh",
            "Host=echo:7070",
            "URL=/proto.EchoTestService/Echo",
            "RequestHeader=X-Lane:canary",
        ] {
            assert!(m.lines().any(|l| l == line), "{line} in {m}");
        }
        let framed = frame(&EchoResponse { message: m.clone() });
        assert_eq!(framed[0], 0);
        let len = u32::from_be_bytes([framed[1], framed[2], framed[3], framed[4]]) as usize;
        assert_eq!(len, framed.len() - 5);
        let back = EchoResponse::decode(&framed[5..]).unwrap();
        assert_eq!(back.message, m);
    }
}
