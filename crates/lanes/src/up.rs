//! `lanes up`: the embedded control plane in the foreground — store, controllers, API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use lanes_compile::Flavor;
use lanes_runtime::lanes::Snapshot;
use lanes_server::{ApiState, router};
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
    /// Bearer token for the API.
    pub token: Option<String>,
    /// Flavor of the generated Istio objects.
    pub flavor: Flavor,
}

/// The sidecar inbound port of every pod: service endpoints point here.
pub const SIDECAR_INBOUND_PORT: u16 = 15006;

/// Keeps the gateway's routing in step with the lane controller's snapshots.
async fn follow_snapshots(mesh: Arc<lanes_proxy::Mesh>, mut rx: watch::Receiver<Arc<Snapshot>>) {
    loop {
        let snapshot = rx.borrow_and_update().clone();
        let endpoints: Vec<lanes_proxy::Endpoint> = snapshot
            .routes
            .services
            .iter()
            .flat_map(|svc| {
                snapshot.pods.iter().filter_map(move |p| {
                    let ip: std::net::IpAddr = p.ip.as_deref()?.parse().ok()?;
                    let selected = p.namespace == svc.namespace
                        && !svc.selector.is_empty()
                        && lanes_model::mesh::selector_matches(&svc.selector, &p.labels);
                    selected.then(|| lanes_proxy::Endpoint {
                        service: svc.name.clone(),
                        namespace: svc.namespace.clone(),
                        address: SocketAddr::new(ip, SIDECAR_INBOUND_PORT),
                        labels: p.labels.clone(),
                        ready: p.ready,
                        pod: Some(p.name.clone()),
                    })
                })
            })
            .collect();
        if let Err(e) = mesh.update(&snapshot.routes, &endpoints) {
            tracing::error!(error = %e, "gateway: cannot use the new route table");
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Runs the control plane until SIGINT or SIGTERM.
pub fn run(opts: UpOptions) -> Result<ExitCode> {
    init_logging();
    if !opts.api.ip().is_loopback() && opts.token.as_deref().unwrap_or("").is_empty() {
        bail!(
            "refusing to serve the API on {} (not a loopback address) without a bearer token: pass --token or set LANES_TOKEN",
            opts.api
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(opts))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(opts: UpOptions) -> Result<()> {
    let path = opts.state_dir.join("state.redb");
    let store = Arc::new(
        Store::open(&path)
            .with_context(|| format!("cannot open the store at {}", path.display()))?,
    );
    let listener = TcpListener::bind(opts.api)
        .await
        .with_context(|| format!("cannot listen on {} (API)", opts.api))?;
    let api_addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let (snap_tx, snap_rx) = watch::channel(Arc::new(Snapshot::default()));
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(lanes_runtime::lanes::run(
        store.clone(),
        opts.flavor,
        snap_tx,
        stop_rx.clone(),
    ));

    // The gateway runs the newest route table, with endpoints at the pods' sidecars.
    let metrics = Arc::new(lanes_proxy::Metrics::new());
    let mesh = lanes_proxy::Mesh::new(lanes_proxy::Settings::default(), metrics);
    let gateway = TcpListener::bind(opts.gateway)
        .await
        .with_context(|| format!("cannot listen on {} (gateway)", opts.gateway))?;
    let gateway_addr = gateway.local_addr()?;
    tasks.spawn(lanes_proxy::server::serve_gateway(
        gateway,
        mesh.clone(),
        stop_rx.clone(),
    ));
    tasks.spawn(follow_snapshots(mesh, snap_rx));
    let state = ApiState {
        store: store.clone(),
        token: opts.token.filter(|t| !t.is_empty()).map(Into::into),
    };
    let app = router(state);
    let shutdown = lanes_proxy::server::wait_for(stop_rx.clone());
    tasks.spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "API server failed");
        }
    });
    println!("lanes up: API listening on http://{api_addr}");
    println!("lanes up: gateway listening on http://{gateway_addr}");
    println!("lanes up: state in {}", path.display());
    stop_signal().await;
    tracing::info!("stopping");
    let _ = stop_tx.send(true);
    // Open watches would hold the API server's graceful shutdown: give requests in
    // flight a few seconds, then stop regardless.
    let drain = async { while tasks.join_next().await.is_some() {} };
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
