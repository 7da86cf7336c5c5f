//! A small real mesh on loopback for the proxy's integration tests: application servers
//! (a sample service that calls its upstream through its sidecar and forwards only the
//! trace header, and misbehaving ones), a sidecar per pod, a gateway and an admin
//! listener, all on 127.0.0.1 port 0.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use lanes_compile::{Flavor, compile};
use lanes_model::mesh::PodView;
use lanes_proxy::{Endpoint, Mesh, Metrics, PodIdentity, Settings, Sidecar, admin, server};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How a test application answers.
#[derive(Debug, Clone)]
pub enum App {
    /// `-> <app>(version: <v>, ip: <addr>)` then the body of its upstream call, made
    /// through its sidecar with only the trace header `forwards` (`my-request-id`, or
    /// `traceparent` as an OpenTelemetry application passes it on).
    Sample {
        upstream: Option<String>,
        forwards: &'static str,
    },
    /// Echo the request body.
    Echo,
    /// Answer this status.
    Status(u16),
    /// Accept and close the connection without answering.
    Reset,
    /// Accept and never answer.
    Hang,
    /// Nothing listens (connection refused).
    Refuse,
    /// The test's own server at this address is the pod's application.
    At(SocketAddr),
    /// A gRPC application on Python's grpcio (`tests/grpc/peer.py`): `Call` answers
    /// `-> <app>(version: <v>)` then its upstream's `Call` (a `host:port`), made through
    /// its sidecar; `unavailable` fails every call `UNAVAILABLE`.
    Grpc {
        upstream: Option<&'static str>,
        unavailable: bool,
    },
}

/// A child process, killed with its handle.
pub struct Process(std::process::Child);

impl From<std::process::Child> for Process {
    fn from(child: std::process::Child) -> Self {
        Process(child)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The Python that runs the gRPC peer: `LANES_PYTHON` (the virtual environment
/// `scripts/test` installs grpcio into), else `python3`.
pub fn python() -> String {
    std::env::var("LANES_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// The gRPC peer script.
pub fn grpc_peer() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/grpc/peer.py")
}

/// Starts the gRPC peer for a pod and waits for its port.
fn start_grpc_app(spec: &PodSpec, outbound: SocketAddr) -> (SocketAddr, Process) {
    use std::io::BufRead;
    let App::Grpc {
        upstream,
        unavailable,
    } = &spec.app
    else {
        unreachable!()
    };
    let mut cmd = std::process::Command::new(python());
    cmd.arg(grpc_peer())
        .args(["serve", &spec.service, &spec.version, &outbound.to_string()]);
    if let Some(u) = upstream {
        cmd.arg(u);
    }
    if *unavailable {
        cmd.arg("--unavailable");
    }
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python for the gRPC peer");
    let stdout = child.stdout.take().unwrap();
    let process = Process(child);
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line
        .trim()
        .strip_prefix("listening ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("the gRPC peer did not start (is grpcio installed?): {line:?}"));
    (SocketAddr::from(([127, 0, 0, 1], port)), process)
}

/// A pod to start.
#[derive(Debug, Clone)]
pub struct PodSpec {
    pub name: String,
    pub service: String,
    pub version: String,
    pub lane: String,
    pub app: App,
}

pub fn pod(service: &str, version: &str, lane: &str, app: App) -> PodSpec {
    PodSpec {
        name: format!("{service}-{version}-{lane}"),
        service: service.into(),
        version: version.into(),
        lane: lane.into(),
        app,
    }
}

/// A running pod.
pub struct PodHandle {
    pub spec: PodSpec,
    pub app_addr: SocketAddr,
    pub inbound: SocketAddr,
    pub outbound: SocketAddr,
    pub sidecar: Arc<Sidecar>,
    pub process: Option<Process>,
}

impl PodHandle {
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app".to_string(), self.spec.service.clone()),
            ("version".to_string(), self.spec.version.clone()),
            ("ASM_TRAFFIC_TAG".to_string(), self.spec.lane.clone()),
        ])
    }
}

/// The manifests of the article's three services and lanes.
pub fn manifests() -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/seed");
    let mut text = String::new();
    for f in ["00-gateway.yaml", "10-apps.yaml", "20-lanes.yaml"] {
        text.push_str(&std::fs::read_to_string(root.join(f)).unwrap());
        text.push_str("\n---\n");
    }
    text
}

pub struct Cluster {
    pub mesh: Arc<Mesh>,
    pub gateway: SocketAddr,
    pub admin: SocketAddr,
    pub pods: Vec<PodHandle>,
    pub manifests: String,
    pub stop: watch::Sender<bool>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn answer(
    req: Request<Incoming>,
    spec: PodSpec,
    me: SocketAddr,
    outbound: SocketAddr,
) -> Response<Full<Bytes>> {
    match &spec.app {
        App::Sample { upstream, forwards } => {
            let trace = req.headers().get(*forwards).cloned();
            let mut text = format!(
                "-> {}(version: {}, ip: {})",
                spec.service,
                spec.version,
                me.ip()
            );
            if let Some(url) = upstream {
                let mut up = Request::get(url.as_str());
                if let Some(t) = trace {
                    up = up.header(*forwards, t);
                }
                match send_via(outbound, up.body(Full::new(Bytes::new())).unwrap()).await {
                    Ok((_, body)) => text.push_str(&body),
                    Err(e) => text.push_str(&format!("[upstream error: {e}]")),
                }
            }
            Response::new(Full::new(Bytes::from(text)))
        }
        App::Echo => {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            Response::new(Full::new(body))
        }
        App::Status(code) => {
            // Read the request first, as an application handling it would: answering
            // before a large body is sent and closing races the proxy's body write
            // (a broken pipe, which is a different test).
            let _ = req.into_body().collect().await;
            let mut r = Response::new(Full::new(Bytes::from(format!("{} says {code}", spec.name))));
            *r.status_mut() = StatusCode::from_u16(*code).unwrap();
            r
        }
        App::Reset | App::Hang | App::Refuse | App::At(_) | App::Grpc { .. } => unreachable!(),
    }
}

/// Sends one request over a fresh connection to `addr` (absolute-form URIs make it a
/// proxy request) and returns status and body.
pub async fn send_via(
    addr: SocketAddr,
    req: Request<Full<Bytes>>,
) -> Result<(StatusCode, String), String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

async fn start_app(spec: PodSpec, outbound: SocketAddr, stop: watch::Receiver<bool>) -> SocketAddr {
    if let App::At(addr) = spec.app {
        return addr;
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let me = listener.local_addr().unwrap();
    if matches!(spec.app, App::Refuse) {
        drop(listener);
        return me;
    }
    tokio::spawn(async move {
        let mut held = Vec::new();
        let stop_fut = server::wait_for(stop);
        tokio::pin!(stop_fut);
        loop {
            let stream = tokio::select! {
                s = listener.accept() => match s { Ok((s, _)) => s, Err(_) => continue },
                () = &mut stop_fut => return,
            };
            match spec.app {
                App::Reset => drop(stream),
                App::Hang => held.push(stream),
                _ => {
                    let spec = spec.clone();
                    tokio::spawn(async move {
                        let svc = service_fn(move |req| {
                            let spec = spec.clone();
                            async move { Ok::<_, Infallible>(answer(req, spec, me, outbound).await) }
                        });
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            }
        }
    });
    me
}

pub fn settings() -> Settings {
    Settings {
        connect_timeout_ms: 500,
        request_timeout_ms: 2_000,
        header_read_timeout_ms: 1_000,
        ..Settings::default()
    }
}

impl Cluster {
    /// Starts pods, sidecars, a gateway and an admin listener for the given manifests.
    pub async fn start(manifests: &str, specs: Vec<PodSpec>, settings: Settings) -> Cluster {
        Cluster::start_with_hops(manifests, specs, settings, None).await
    }

    /// [`Cluster::start`], recording every hop to `hops`.
    pub async fn start_with_hops(
        manifests: &str,
        specs: Vec<PodSpec>,
        settings: Settings,
        hops: Option<Arc<lanes_proxy::trace::Hops>>,
    ) -> Cluster {
        let (stop, stop_rx) = watch::channel(false);
        let metrics = Arc::new(Metrics::new());
        let mesh = Mesh::with_hops(settings.clone(), metrics.clone(), hops);
        let mut pods = Vec::new();
        for spec in specs {
            let inbound_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let outbound_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let outbound = outbound_l.local_addr().unwrap();
            let inbound = inbound_l.local_addr().unwrap();
            let (app_addr, process) = if matches!(spec.app, App::Grpc { .. }) {
                let (addr, p) = start_grpc_app(&spec, outbound);
                (addr, Some(p))
            } else {
                (
                    start_app(spec.clone(), outbound, stop_rx.clone()).await,
                    None,
                )
            };
            let labels = BTreeMap::from([
                ("app".to_string(), spec.service.clone()),
                ("version".to_string(), spec.version.clone()),
                ("ASM_TRAFFIC_TAG".to_string(), spec.lane.clone()),
            ]);
            let sidecar = Arc::new(Sidecar::new(
                PodIdentity {
                    name: spec.name.clone(),
                    namespace: "default".into(),
                    labels,
                    app_address: app_addr,
                    ports: vec![app_addr.port()],
                    workload: Some(format!("{}-{}", spec.service, spec.lane)),
                },
                &settings,
                &metrics,
            ));
            tokio::spawn(server::serve_inbound(
                inbound_l,
                mesh.clone(),
                sidecar.clone(),
                stop_rx.clone(),
            ));
            tokio::spawn(server::serve_outbound(
                outbound_l,
                mesh.clone(),
                sidecar.clone(),
                stop_rx.clone(),
            ));
            pods.push(PodHandle {
                spec,
                app_addr,
                inbound,
                outbound,
                sidecar,
                process,
            });
        }
        let gw = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gateway = gw.local_addr().unwrap();
        tokio::spawn(server::serve_gateway(gw, mesh.clone(), stop_rx.clone()));
        let ad = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = ad.local_addr().unwrap();
        tokio::spawn(admin::serve_admin(ad, mesh.clone(), stop_rx.clone()));
        let cluster = Cluster {
            mesh,
            gateway,
            admin,
            pods,
            manifests: manifests.to_string(),
            stop,
        };
        cluster.publish(&cluster.pods.iter().collect::<Vec<_>>());
        cluster
    }

    /// Compiles the manifests with the given pods ready and swaps the result in.
    pub fn publish(&self, ready: &[&PodHandle]) {
        let (loaded, diags) = lanes_model::decode_str("test.yaml", &self.manifests);
        assert!(diags.is_empty(), "{diags:?}");
        let objects: Vec<_> = loaded.iter().map(|l| &l.object).collect();
        let views: Vec<PodView> = ready
            .iter()
            .map(|p| PodView {
                name: p.spec.name.clone(),
                namespace: "default".into(),
                labels: p.labels(),
                ready: true,
                ip: None,
            })
            .collect();
        let out = compile(&objects, &views, Flavor::Asm);
        let endpoints: Vec<Endpoint> = ready
            .iter()
            .map(|p| Endpoint {
                service: p.spec.service.clone(),
                namespace: "default".into(),
                address: p.inbound,
                labels: p.labels(),
                ready: true,
                pod: Some(p.spec.name.clone()),
            })
            .collect();
        self.mesh.update(&out.routes, &endpoints).unwrap();
    }

    pub fn pod(&self, name: &str) -> &PodHandle {
        self.pods.iter().find(|p| p.spec.name == name).unwrap()
    }

    /// GET /mock through the gateway with a lane and a trace id.
    pub async fn get(&self, lane: &str, trace: &str) -> (StatusCode, http::HeaderMap, String) {
        self.request(
            Request::get("/mock")
                .header("host", "example.com")
                .header("x-asm-prefer-tag", lane)
                .header("my-request-id", trace)
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
    }

    pub async fn request(
        &self,
        req: Request<Full<Bytes>>,
    ) -> (StatusCode, http::HeaderMap, String) {
        let stream = TcpStream::connect(self.gateway).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let resp = send.send_request(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    pub async fn metrics(&self) -> String {
        let (status, body) = send_via(
            self.admin,
            Request::get("/metrics")
                .header("host", "admin")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(status, StatusCode::OK);
        body
    }
}

/// The versions a chain answer names, in order: "-> mocka(version: v2, ...)..." → [v2, ...].
pub fn versions(body: &str) -> Vec<String> {
    body.split("(version: ")
        .skip(1)
        .map(|s| s.split(',').next().unwrap_or("").to_string())
        .collect()
}

pub fn sample(upstream: Option<&str>) -> App {
    App::Sample {
        upstream: upstream.map(str::to_string),
        forwards: "my-request-id",
    }
}

/// The article's chain, its applications forwarding only `traceparent`.
pub fn w3c_chain_pods(canaries: &[&str]) -> Vec<PodSpec> {
    let mut pods = chain_pods(canaries);
    for p in &mut pods {
        if let App::Sample { forwards, .. } = &mut p.app {
            *forwards = "traceparent";
        }
    }
    pods
}

/// The article's three-hop chain: mocka → mockb → mockc.
pub fn chain_pods(canaries: &[&str]) -> Vec<PodSpec> {
    let mut pods = vec![
        pod("mocka", "v1", "base", sample(Some("http://mockb:8000/"))),
        pod("mockb", "v1", "base", sample(Some("http://mockc:8000/"))),
        pod("mockc", "v1", "base", sample(None)),
    ];
    for c in canaries {
        let upstream = match *c {
            "mocka" => Some("http://mockb:8000/"),
            "mockb" => Some("http://mockc:8000/"),
            _ => None,
        };
        pods.push(pod(c, "v2", "canary", sample(upstream)));
    }
    pods
}

pub const SHORT: Duration = Duration::from_millis(50);
