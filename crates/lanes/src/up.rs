//! `lanes up`: the embedded control plane in the foreground — store, controllers, API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use lanes_compile::Flavor;
use lanes_runtime::routes::Snapshot;
use lanes_server::{ApiState, Auth, router};
use lanes_store::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::proxy_cmd::{init_logging, stop_signal};

/// Options of `lanes up`.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Where the store file lives.
    pub state_dir: PathBuf,
    /// API listen address.
    pub api: SocketAddr,
    /// Gateway listen address.
    pub gateway: SocketAddr,
    /// Where the API's bearer token comes from.
    pub auth: AuthOption,
    /// Flavor of the generated Istio objects.
    pub flavor: Flavor,
    /// Second octet of the pods' `127.N.0.0/16`.
    pub pod_network: u8,
    /// `lanes.toml` (the image table).
    pub config: PathBuf,
    /// `--pod-user`.
    pub pod_user: Option<String>,
    /// `--recover`: start over on a damaged store.
    pub recover: bool,
    /// `--max-replicas`.
    pub max_replicas: i64,
    /// `--otlp-endpoint`, `--access-log`.
    pub hops: crate::hops::HopOptions,
}

/// Opens the store. After a `kill -9` the old process may hold the file a moment
/// longer: an open refused as in use is tried again for up to 5 s.
async fn open_store(path: &std::path::Path, recover: bool) -> Result<Store> {
    if recover {
        let (store, moved) = Store::recover(path)?;
        match moved {
            Some(aside) => println!(
                "lanes up: --recover: the old store is in {}; starting with an empty one",
                aside.display()
            ),
            None => println!("lanes up: --recover: there was no store; starting with an empty one"),
        }
        return Ok(store);
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match Store::open(path) {
            Ok(s) => return Ok(s),
            Err(lanes_store::StoreError::InUse(_)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot open the store at {}", path.display()));
            }
        }
    }
}

/// The first of `path` and its directories that users other than its owner and group
/// cannot pass (execute the file, search the directory), if any.
fn closed_to_others(path: &std::path::Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    path.ancestors()
        .filter(|p| !p.as_os_str().is_empty())
        .find(|p| std::fs::metadata(p).map_or(true, |m| m.permissions().mode() & 0o001 == 0))
        .map(std::path::Path::to_path_buf)
}

/// The user pod processes run as: the one named, else `nobody` when the daemon runs as
/// root; `None` when that is the daemon's own user.
fn pod_user(named: Option<&str>) -> Result<Option<lanes_runtime::pods::PodUser>> {
    use nix::unistd::{Uid, User};
    let me = Uid::effective();
    let name = match named {
        Some(n) => n,
        None if me.is_root() => "nobody",
        None => return Ok(None),
    };
    let user = User::from_name(name)
        .with_context(|| format!("--pod-user {name:?}: cannot look the user up"))?
        .with_context(|| format!("--pod-user {name:?}: no such user"))?;
    if user.uid == me {
        return Ok(None);
    }
    if !me.is_root() {
        bail!("--pod-user {name:?}: only root can run pods as another user");
    }
    // Pods run the lanes executable (the sample, the pod-exec shim): another user must
    // be able to reach it. A checkout under a private home directory cannot be.
    let exe = std::env::current_exe().context("cannot find the lanes executable")?;
    if let Some(blocked) = closed_to_others(&exe) {
        if named.is_some() {
            bail!(
                "--pod-user {name:?}: {name} cannot run {} ({} is closed to other users)",
                exe.display(),
                blocked.display()
            );
        }
        println!(
            "lanes up: warning: pods run as root, not as {name}: {name} cannot run {} ({} is closed to other users); put lanes where others can run it, or pass --pod-user root to choose this",
            exe.display(),
            blocked.display()
        );
        return Ok(None);
    }
    Ok(Some(lanes_runtime::pods::PodUser {
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
    }))
}

/// Where the API's bearer token comes from.
#[derive(Debug, Clone)]
pub enum AuthOption {
    /// `--token` or `LANES_TOKEN`.
    Given(String),
    /// `<state-dir>/token`, made at first start.
    StateDir,
    /// `--no-auth`: no token at all (loopback only).
    None,
}

/// Parses `127.N.0.0/16` into N.
pub fn parse_pod_network(s: &str) -> Result<u8, String> {
    let bad = || format!("--pod-network {s:?}: expected 127.N.0.0/16 with N from 0 to 255");
    let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
    if prefix != "16" {
        return Err(bad());
    }
    let ip: std::net::Ipv4Addr = addr.parse().map_err(|_| bad())?;
    let o = ip.octets();
    if o[0] != 127 || o[2] != 0 || o[3] != 0 {
        return Err(bad());
    }
    Ok(o[1])
}

/// Runs the control plane until SIGINT or SIGTERM.
pub fn run(opts: UpOptions) -> Result<ExitCode> {
    init_logging();
    if !opts.api.ip().is_loopback() && matches!(opts.auth, AuthOption::None) {
        bail!(
            "refusing to serve the API on {} (not a loopback address) without a bearer token: drop --no-auth",
            opts.api
        );
    }
    crate::limits::raise_open_files("lanes up");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(opts))?;
    Ok(ExitCode::SUCCESS)
}

/// The API listener's limits: watches stay open as long as they stream.
fn api_limits() -> lanes_proxy::ListenerLimits {
    lanes_proxy::ListenerLimits {
        max_connections: API_MAX_CONNECTIONS,
        ..lanes_proxy::Settings::default().listener_limits()
    }
}

/// Most connections the API holds at once.
const API_MAX_CONNECTIONS: usize = 1_024;

/// Catches SIGXFSZ: past a file size limit (`ulimit -f`) a write then fails with an
/// error the store handles (not ready, reopened once writes work again) instead of the
/// signal killing the daemon.
fn survive_file_size_limit() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::from_raw(
        nix::sys::signal::Signal::SIGXFSZ as i32,
    )) {
        Ok(mut xfsz) => {
            tokio::spawn(async move {
                while xfsz.recv().await.is_some() {
                    tracing::warn!("a write passed the file size limit (SIGXFSZ)");
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "cannot catch SIGXFSZ"),
    }
}

/// The data plane's counts of attempts and of lane entries, for built-in analysis.
struct ProxyCounts(Arc<lanes_proxy::Metrics>);

type SampleFuture<'a> = futures_util::future::BoxFuture<
    'a,
    Result<lanes_model::rollout::Sample, lanes_operator::prometheus::QueryError>,
>;

fn ready_sample<'a>(s: lanes_proxy::metrics::AttemptSample) -> SampleFuture<'a> {
    Box::pin(std::future::ready(Ok(lanes_model::rollout::Sample {
        time: String::new(),
        total: s.total,
        failures: s.failures,
        buckets: s.buckets,
    })))
}

impl lanes_operator::analysis::Samples for ProxyCounts {
    fn sample<'a>(&'a self, canary: lanes_operator::analysis::Measured<'a>) -> SampleFuture<'a> {
        ready_sample(
            self.0
                .attempt_sample(canary.service, canary.namespace, canary.lane),
        )
    }

    fn lane_sample<'a>(
        &'a self,
        lane: lanes_operator::analysis::LaneEntry<'a>,
    ) -> SampleFuture<'a> {
        ready_sample(self.0.entry_sample(lane.namespace, lane.lane))
    }
}

/// The data plane's hop ring and gateway, for the dashboard's request paths.
struct RingHops {
    mesh: Arc<lanes_proxy::Mesh>,
    gateway: String,
}

impl RingHops {
    fn json(hops: Vec<lanes_proxy::trace::Hop>) -> Vec<serde_json::Value> {
        hops.into_iter()
            .filter_map(|h| serde_json::to_value(h).ok())
            .collect()
    }
}

impl lanes_dashboard::requests::HopSource for RingHops {
    fn hops(&self, id: &str) -> Vec<serde_json::Value> {
        let trace = lanes_proxy::trace::Hex(lanes_proxy::correlation::trace_id_of(id));
        Self::json(
            self.mesh
                .hops()
                .map(|h| h.trace(&trace))
                .unwrap_or_default(),
        )
    }

    fn recent(&self, n: usize) -> Vec<serde_json::Value> {
        Self::json(
            self.mesh
                .hops()
                .map(|h| h.recent_entries(n))
                .unwrap_or_default(),
        )
    }

    fn gateway(&self) -> String {
        self.gateway.clone()
    }
}

/// The data plane's counts per service and lane, for the dashboard's live traffic.
struct CellCounts(Arc<lanes_proxy::Metrics>);

impl lanes_dashboard::traffic::TrafficSource for CellCounts {
    fn cells(&self) -> Vec<lanes_dashboard::traffic::CellCount> {
        self.0
            .cell_samples()
            .into_iter()
            .map(|c| lanes_dashboard::traffic::CellCount {
                service: c.service.to_string(),
                namespace: c.namespace.to_string(),
                lane: c.lane.to_string(),
                total: c.counts.total,
                failures: c.counts.failures,
                buckets: c.counts.buckets,
            })
            .collect()
    }
}

/// The dashboard's data: maps read through an in-process client of the API (as the
/// controllers read it), published while a page follows them; request paths from the
/// data plane's hop ring, sent through `gateway`.
fn dashboard(
    store: &Arc<Store>,
    max_replicas: i64,
    hops: RingHops,
    tasks: &mut tokio::task::JoinSet<()>,
    stop: watch::Receiver<bool>,
) -> lanes_dashboard::server::Maps {
    let api = lanes_server::router(
        ApiState {
            store: store.clone(),
            auth: Auth::Open,
            logs: None,
            max_replicas,
        },
        axum::Router::new(),
    );
    let client = kube::Client::new(api, "default");
    let (publish, published) =
        watch::channel(lanes_dashboard::source::MapJson::from("{\"groups\":[]}"));
    let followers = lanes_dashboard::source::Followers::default();
    let traffic: Arc<dyn lanes_dashboard::traffic::TrafficSource> =
        Arc::new(CellCounts(hops.mesh.metrics().clone()));
    tasks.spawn(lanes_dashboard::source::run(
        client.clone(),
        std::time::Duration::from_millis(500),
        Some(traffic),
        publish,
        followers.clone(),
        stop,
    ));
    lanes_dashboard::server::Maps {
        client,
        published,
        followers,
        hops: Some(Arc::new(hops)),
    }
}

/// Runs the operator's controllers (one replica: no leader election) with a kube-rs
/// client whose transport is the API router itself, called in-process: no socket and
/// no token, the same admission and storage as every other client.
async fn run_controllers(
    store: Arc<Store>,
    flavor: Flavor,
    counts: Arc<lanes_proxy::Metrics>,
    max_replicas: i64,
    stop: watch::Receiver<bool>,
) {
    let api = lanes_server::router(
        ApiState {
            store,
            auth: Auth::Open,
            logs: None,
            max_replicas,
        },
        axum::Router::new(),
    );
    let client = kube::Client::new(api, "default");
    let ctx = lanes_operator::rollouts::Context {
        samples: Arc::new(ProxyCounts(counts)),
        ..lanes_operator::rollouts::Context::new(client)
    };
    let config = lanes_operator::Config {
        flavor,
        identity: "lanes-up".into(),
        leader_election: false,
        ..Default::default()
    };
    let metrics = Arc::new(lanes_operator::metrics::Metrics::default());
    lanes_operator::run(ctx, config, metrics, stop).await;
}

async fn serve(opts: UpOptions) -> Result<()> {
    survive_file_size_limit();
    let images =
        lanes_runtime::images::LanesToml::load(&opts.config).map_err(anyhow::Error::msg)?;
    let pod_user = pod_user(opts.pod_user.as_deref())?;
    let token = match &opts.auth {
        AuthOption::Given(t) if t.is_empty() => bail!("--token is empty"),
        AuthOption::Given(t) => Some(t.clone()),
        AuthOption::StateDir => Some(crate::token::load_or_create(&opts.state_dir)?),
        AuthOption::None => None,
    };
    let path = opts.state_dir.join("state.redb");
    let store = Arc::new(open_store(&path, opts.recover).await?);
    lanes_server::k8s::admission::ensure_namespaces(&store)
        .context("cannot create the initial namespaces")?;
    let listener = TcpListener::bind(opts.api)
        .await
        .with_context(|| format!("cannot listen on {} (API)", opts.api))?;
    let api_addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let (snap_tx, snap_rx) = watch::channel(Arc::new(Snapshot::default()));
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(lanes_runtime::routes::run(
        store.clone(),
        opts.flavor,
        snap_tx,
        stop_rx.clone(),
    ));

    // The gateway and the sidecars run the newest route table, with endpoints at the
    // pods' sidecars.
    let metrics = Arc::new(lanes_proxy::Metrics::new());
    let hops = opts.hops.hops(crate::hops::RING, &metrics)?;
    let mesh =
        lanes_proxy::Mesh::with_hops(lanes_proxy::Settings::default(), metrics.clone(), hops);
    let data_plane = Arc::new(
        lanes_runtime::data_plane::DataPlaneThread::start()
            .context("cannot start the data plane's thread")?,
    );
    let gateway = lanes_runtime::data_plane::bind(opts.gateway)
        .with_context(|| format!("cannot listen on {} (gateway)", opts.gateway))?;
    let gateway_addr = gateway.local_addr()?;
    mesh.own_listeners().add(gateway_addr);
    mesh.own_listeners().add(api_addr);
    let (gateway_mesh, gateway_stop) = (mesh.clone(), stop_rx.clone());
    let gateway_task = data_plane.serve(gateway, move |l| {
        lanes_proxy::server::serve_gateway(l, gateway_mesh, gateway_stop)
    });
    tasks.spawn(lanes_runtime::pods::follow(mesh.clone(), snap_rx.clone()));

    // Deployments become pods; pods become processes.
    tasks.spawn(lanes_runtime::deployments::run(
        store.clone(),
        stop_rx.clone(),
    ));
    // Gateway API routes and Gateways get their status (a Gateway: where the gateway is
    // reached from this machine).
    let gateway_ip = match gateway_addr.ip() {
        ip if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        ip => ip,
    };
    tasks.spawn(lanes_runtime::gateway_routes::run(
        store.clone(),
        Some(gateway_ip.to_string()),
        stop_rx.clone(),
    ));
    // The lane and rollout controllers: the operator's, against this API in-process.
    tasks.spawn(run_controllers(
        store.clone(),
        opts.flavor,
        metrics.clone(),
        opts.max_replicas,
        stop_rx.clone(),
    ));
    let logs = opts.state_dir.join("logs");
    let ctx = Arc::new(lanes_runtime::pods::Context {
        store: store.clone(),
        mesh: mesh.clone(),
        data_plane: data_plane.clone(),
        metrics,
        ipam: lanes_runtime::ipam::Ipam::new(opts.pod_network),
        images,
        exe: std::env::current_exe().context("cannot find the lanes executable")?,
        logs: logs.clone(),
        pod_user,
        snapshots: snap_rx,
    });
    // Pods stop after the API and controllers, and before the store closes.
    let (pods_stop, pods_stop_rx) = watch::channel(false);
    let pods = tokio::spawn(lanes_runtime::pods::run(ctx, pods_stop_rx));
    let state = ApiState {
        store: store.clone(),
        auth: Auth::from_token(token.as_deref()),
        logs: Some(logs),
        max_replicas: opts.max_replicas,
    };
    // The gateway as a client on this machine reaches it.
    let reach = SocketAddr::new(gateway_ip, gateway_addr.port());
    let ring = RingHops {
        mesh: mesh.clone(),
        gateway: format!("http://{reach}"),
    };
    let dashboard = dashboard(&store, opts.max_replicas, ring, &mut tasks, stop_rx.clone());
    let app = router(
        state,
        lanes_proxy::admin::observability(mesh.clone())
            .merge(lanes_dashboard::server::api(dashboard)),
    )
    // The page's files need no token: the page asks for it.
    .merge(lanes_dashboard::server::assets());
    // The API has a listener, a connection cap and descriptors of its own: a saturated
    // data plane does not stop it (or /healthz) from answering.
    let tls = crate::tls::for_api(&opts.state_dir, api_addr.ip())?;
    tasks.spawn(lanes_proxy::server::serve_router_tls(
        listener,
        api_limits(),
        "api",
        stop_rx.clone(),
        Some(tls.acceptor),
        app,
    ));
    let kubeconfig = crate::kubeconfig::write(
        &opts.state_dir,
        &crate::kubeconfig::server_url(api_addr),
        &tls.ca_pem,
        token.as_deref(),
    )?;
    println!("lanes up: API listening on http://{api_addr}");
    println!("lanes up: gateway listening on http://{gateway_addr}");
    println!("lanes up: state in {}", path.display());
    if let Some(u) = pod_user {
        println!("lanes up: pods run as uid {} gid {}", u.uid, u.gid);
    }
    match &opts.auth {
        AuthOption::StateDir => println!(
            "lanes up: API token in {} (the CLI reads it there; LANES_STATE_DIR names another state directory)",
            crate::token::path(&opts.state_dir).display()
        ),
        AuthOption::Given(_) => println!("lanes up: API token as given (--token or LANES_TOKEN)"),
        AuthOption::None => println!("lanes up: API open to anyone on this machine (--no-auth)"),
    }
    println!(
        "lanes up: kubeconfig in {0} (context lanes): export KUBECONFIG={0}",
        kubeconfig.display()
    );
    stop_signal().await;
    tracing::info!("stopping");
    let _ = pods_stop.send(true);
    let _ = pods.await;
    let _ = stop_tx.send(true);
    // Open watches would hold the API server's graceful shutdown: give requests in
    // flight a few seconds, then stop regardless.
    let drain = async {
        while tasks.join_next().await.is_some() {}
        let _ = gateway_task.await;
    };
    if tokio::time::timeout(std::time::Duration::from_secs(5), drain)
        .await
        .is_err()
    {
        tracing::warn!("requests still open after 5 s; stopping anyway");
    }
    drop(store);
    println!("lanes up: stopped");
    Ok(())
}
