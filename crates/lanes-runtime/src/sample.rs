//! The sample service (`lanes sample`), standing in for the article's go-http-sample: it
//! answers any path with `-> <app>(version: <version>, ip: <POD_IP>)` followed by the
//! body of its `upstream_url`, called through `HTTP_PROXY` with the trace headers of the
//! request it serves (never the route header). `FAIL_RATE` (0..1) answers that share of
//! requests with 500, `LATENCY_MS` delays every answer, `FORWARD_HEADERS` (a comma-separated
//! subset of the trace headers, say `traceparent` alone, as an OpenTelemetry application
//! passes on) narrows what is forwarded.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

/// Headers a request's trace travels in, forwarded on the upstream call.
pub const TRACE_HEADERS: [&str; 9] = [
    "my-request-id",
    "x-request-id",
    "traceparent",
    "tracestate",
    "baggage",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
];

/// Settings of the sample, from its environment.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleConfig {
    /// Name in answers (`app`).
    pub app: String,
    /// Version in answers.
    pub version: String,
    /// Address in answers (`POD_IP`).
    pub ip: String,
    /// Where to listen.
    pub listen: SocketAddr,
    /// Called after answering, its body appended (`upstream_url`).
    pub upstream: Option<String>,
    /// Proxy for upstream calls (`HTTP_PROXY`).
    pub proxy: Option<SocketAddr>,
    /// Share of requests answered 500.
    pub fail_rate: f64,
    /// Delay of every answer.
    pub latency: Duration,
    /// The trace headers forwarded on the upstream call (all of them by default).
    pub forward: Vec<&'static str>,
    /// The path prefixes served (`SERVE_PATHS`, comma-separated); any other path is
    /// answered 404. Empty: every path.
    pub serve_paths: Vec<String>,
}

impl SampleConfig {
    /// Whether the sample serves `path`.
    fn serves(&self, path: &str) -> bool {
        self.serve_paths.is_empty() || self.serve_paths.iter().any(|p| path.starts_with(p))
    }
}

pub use lanes_model::image::version_of_image;

impl SampleConfig {
    /// Reads the configuration from environment variables: `app`, `version` (overridden
    /// by the major of `LANES_IMAGE`'s tag), `POD_IP`, `LANES_LISTEN` (or
    /// `POD_IP:PORT`, port 8000 by default), `upstream_url`, `HTTP_PROXY`, `FAIL_RATE`,
    /// `LATENCY_MS`, `FORWARD_HEADERS`, `SERVE_PATHS`.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<SampleConfig, String> {
        let ip = get("POD_IP").unwrap_or_else(|| "127.0.0.1".into());
        let port = get("PORT").unwrap_or_else(|| "8000".into());
        let listen = get("LANES_LISTEN").unwrap_or_else(|| format!("{ip}:{port}"));
        let listen: SocketAddr = listen
            .parse()
            .map_err(|_| format!("cannot listen on {listen:?}: not an address"))?;
        let proxy = get("HTTP_PROXY")
            .or_else(|| get("http_proxy"))
            .filter(|p| !p.is_empty())
            .map(|p| {
                let hostport = p
                    .trim_start_matches("http://")
                    .trim_end_matches('/')
                    .to_string();
                hostport
                    .parse::<SocketAddr>()
                    .map_err(|_| format!("HTTP_PROXY {p:?} is not http://IP:PORT"))
            })
            .transpose()?;
        let fail_rate = match get("FAIL_RATE") {
            None => 0.0,
            Some(s) => match s.trim().parse::<f64>() {
                Ok(f) if (0.0..=1.0).contains(&f) => f,
                _ => return Err(format!("FAIL_RATE {s:?} must be a number from 0 to 1")),
            },
        };
        let latency =
            match get("LATENCY_MS") {
                None => Duration::ZERO,
                Some(s) => Duration::from_millis(s.trim().parse().map_err(|_| {
                    format!("LATENCY_MS {s:?} must be a whole number of milliseconds")
                })?),
            };
        let forward = match get("FORWARD_HEADERS") {
            None => TRACE_HEADERS.to_vec(),
            Some(list) => forwarded_headers(&list)?,
        };
        let serve_paths = match get("SERVE_PATHS") {
            None => Vec::new(),
            Some(list) => serve_paths(&list)?,
        };
        let version = get("LANES_IMAGE")
            .and_then(|i| version_of_image(&i))
            .or_else(|| get("version"))
            .unwrap_or_else(|| "v1".into());
        Ok(SampleConfig {
            app: get("app").unwrap_or_else(|| "sample".into()),
            version,
            ip,
            listen,
            upstream: get("upstream_url").filter(|u| !u.is_empty()),
            proxy,
            fail_rate,
            latency,
            forward,
            serve_paths,
        })
    }
}

/// The path prefixes of a `SERVE_PATHS` list: each starts with `/`.
fn serve_paths(list: &str) -> Result<Vec<String>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            if p.starts_with('/') {
                Ok(p.to_string())
            } else {
                Err(format!(
                    "SERVE_PATHS: {p:?} is not a path (it must start with /)"
                ))
            }
        })
        .collect()
}

/// The trace headers a `FORWARD_HEADERS` list names (case-insensitive, comma-separated);
/// a name that is no trace header is an error naming it.
fn forwarded_headers(list: &str) -> Result<Vec<&'static str>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| {
            TRACE_HEADERS
                .iter()
                .find(|t| t.eq_ignore_ascii_case(n))
                .copied()
                .ok_or_else(|| {
                    format!(
                        "FORWARD_HEADERS names {n:?}, which is no trace header ({})",
                        TRACE_HEADERS.join(", ")
                    )
                })
        })
        .collect()
}

/// A connection to the proxy, marked as proxied so requests go in absolute form.
pub(crate) struct ProxyConn(TokioIo<TcpStream>);

impl Connection for ProxyConn {
    fn connected(&self) -> Connected {
        Connected::new().proxy(true)
    }
}

impl hyper::rt::Read for ProxyConn {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for ProxyConn {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

type Connector = connector::Connector;

mod connector {
    //! A connector that always dials the proxy.
    use std::future::Future;
    use std::net::SocketAddr;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use http::Uri;
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpStream;

    use super::ProxyConn;

    #[derive(Clone)]
    pub(crate) struct Connector {
        pub(crate) proxy: Option<SocketAddr>,
    }

    impl tower_service::Service<Uri> for Connector {
        type Response = ProxyConn;
        type Error = std::io::Error;
        type Future = Pin<Box<dyn Future<Output = Result<ProxyConn, std::io::Error>> + Send>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, uri: Uri) -> Self::Future {
            let proxy = self.proxy;
            Box::pin(async move {
                let target = match proxy {
                    Some(p) => p.to_string(),
                    None => {
                        let host = uri.host().unwrap_or("localhost");
                        format!("{host}:{}", uri.port_u16().unwrap_or(80))
                    }
                };
                let s = TcpStream::connect(target).await?;
                s.set_nodelay(true)?;
                Ok(ProxyConn(TokioIo::new(s)))
            })
        }
    }
}

struct Sample {
    config: SampleConfig,
    client: Client<Connector, Full<Bytes>>,
    served: AtomicU64,
}

fn should_fail(rate: f64, n: u64) -> bool {
    if rate <= 0.0 {
        return false;
    }
    if rate >= 1.0 {
        return true;
    }
    // A low-discrepancy sequence: exactly the share asked for over any window, with no
    // random-number state to share between requests.
    let phi = 0.618_033_988_749_895_f64;
    ((n as f64) * phi).fract() < rate
}

async fn answer(sample: Arc<Sample>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (req, mut body) = req.into_parts();
    // The body is read to its end (and dropped) before answering, as a handler that
    // takes a body does: one that breaks on the way is the client's 400, never an answer.
    while let Some(frame) = body.frame().await {
        if let Err(e) = frame {
            let mut r = Response::new(Full::new(Bytes::from(format!("request body: {e}"))));
            *r.status_mut() = StatusCode::BAD_REQUEST;
            return r;
        }
    }
    let n = sample.served.fetch_add(1, Ordering::Relaxed);
    let c = &sample.config;
    if !c.latency.is_zero() {
        tokio::time::sleep(c.latency).await;
    }
    if should_fail(c.fail_rate, n) {
        let mut r = Response::new(Full::new(Bytes::from(format!(
            "-> {}(version: {}, ip: {}) failed (FAIL_RATE {})",
            c.app, c.version, c.ip, c.fail_rate
        ))));
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        return r;
    }
    let mut text = format!("-> {}(version: {}, ip: {})", c.app, c.version, c.ip);
    if !c.serves(req.uri.path()) {
        let mut r = Response::new(Full::new(Bytes::from(format!(
            "{text} does not serve {}",
            req.uri.path()
        ))));
        *r.status_mut() = StatusCode::NOT_FOUND;
        return r;
    }
    let mut status = StatusCode::OK;
    if let Some(url) = &c.upstream {
        match call_upstream(&sample, url, &req.headers).await {
            Ok((s, body)) => {
                // A server error passes on as it came; an upstream's client error is a
                // bad call of this service's own making: its caller gets a 502.
                if s.is_server_error() {
                    status = s;
                } else if !s.is_success() {
                    status = StatusCode::BAD_GATEWAY;
                    text.push_str(&format!(" [upstream {url} answered {s}]"));
                }
                text.push_str(&body);
            }
            Err(e) => {
                status = StatusCode::BAD_GATEWAY;
                text.push_str(&format!(" [upstream {url}: {e}]"));
            }
        }
    }
    let mut r = Response::new(Full::new(Bytes::from(text)));
    *r.status_mut() = status;
    r
}

async fn call_upstream(
    sample: &Sample,
    url: &str,
    incoming: &HeaderMap,
) -> Result<(StatusCode, String), String> {
    let uri: Uri = url.parse().map_err(|_| format!("invalid url {url:?}"))?;
    let mut req = Request::get(uri);
    for name in &sample.config.forward {
        for v in incoming.get_all(*name) {
            req = req.header(*name, v);
        }
    }
    let req = req
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let resp = sample.client.request(req).await.map_err(|e| {
        let mut s = e.to_string();
        if let Some(src) = std::error::Error::source(&e) {
            s = format!("{s}: {src}");
        }
        s
    })?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Serves the sample until `stop` resolves, then finishes requests in flight.
pub async fn serve(
    config: SampleConfig,
    stop: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(config.listen).await?;
    // Idle connections to the sidecar go before the sidecar closes them.
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(4))
        .build(Connector {
            proxy: config.proxy,
        });
    let sample = Arc::new(Sample {
        config,
        client,
        served: AtomicU64::new(0),
    });
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    // Out of descriptors, say: wait for some to close, not spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let sample = sample.clone();
                let svc = service_fn(move |req| {
                    let sample = sample.clone();
                    async move { Ok::<_, Infallible>(answer(sample, req).await) }
                });
                let conn = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            () = &mut stop => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failure_share_is_what_was_asked() {
        for rate in [0.0, 0.1, 0.5, 1.0] {
            let fails = (0..1000).filter(|n| should_fail(rate, *n)).count();
            assert!(
                (fails as f64 - rate * 1000.0).abs() <= 2.0,
                "{rate}: {fails}"
            );
        }
    }

    #[test]
    fn config_from_env_checks_its_inputs() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let c = SampleConfig::from_env(env(&[
            ("app", "mocka"),
            ("version", "v1"),
            ("POD_IP", "127.0.1.5"),
            ("LANES_IMAGE", "x/go-http-sample:2.0"),
            ("HTTP_PROXY", "http://127.0.1.5:15001"),
        ]))
        .unwrap();
        assert_eq!(c.version, "v2");
        assert_eq!(c.listen.to_string(), "127.0.1.5:8000");
        assert_eq!(c.proxy.map(|p| p.port()), Some(15001));
        assert!(
            SampleConfig::from_env(env(&[("FAIL_RATE", "2")]))
                .unwrap_err()
                .contains("FAIL_RATE")
        );
        assert!(
            SampleConfig::from_env(env(&[("LATENCY_MS", "x")]))
                .unwrap_err()
                .contains("LATENCY_MS")
        );
        assert_eq!(c.forward, TRACE_HEADERS);
        let only = SampleConfig::from_env(env(&[("FORWARD_HEADERS", " TraceParent ,tracestate")]));
        assert_eq!(only.unwrap().forward, ["traceparent", "tracestate"]);
        let err =
            SampleConfig::from_env(env(&[("FORWARD_HEADERS", "traceparent,x-asm-prefer-tag")]))
                .unwrap_err();
        assert!(
            err.contains("\"x-asm-prefer-tag\"") && err.contains("FORWARD_HEADERS"),
            "{err}"
        );
        let paths = SampleConfig::from_env(env(&[("SERVE_PATHS", "/v2/, /health")])).unwrap();
        assert!(c.serves("/anything") && paths.serves("/v2/orders") && paths.serves("/health"));
        assert!(!paths.serves("/") && !paths.serves("/v1/orders"));
        let err = SampleConfig::from_env(env(&[("SERVE_PATHS", "/a,b")])).unwrap_err();
        assert!(
            err.contains("SERVE_PATHS") && err.contains("\"b\""),
            "{err}"
        );
    }
}
