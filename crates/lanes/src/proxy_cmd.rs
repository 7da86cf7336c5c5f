//! `lanes proxy --config FILE`: the data plane without the control plane.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use lanes_proxy::{Mesh, Metrics, ProxyFile, Role, Sidecar, admin, server};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::hops::HopOptions;

/// Starts logging to standard error (`RUST_LOG` filters, default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Resolves on SIGINT or SIGTERM.
pub async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Binds a listener and says where on standard output (port 0 picks a free port).
/// Binds a listener and records it as one of the proxy's own (never a pass-through
/// target).
async fn bind(mesh: &Mesh, addr: std::net::SocketAddr, what: &str) -> Result<TcpListener> {
    let l = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} ({what})"))?;
    let bound = l.local_addr()?;
    mesh.own_listeners().add(bound);
    println!("lanes proxy: {what} listening on {bound}");
    Ok(l)
}

/// Runs the proxy until a stop signal.
pub fn run(config: &Path, threads: Option<usize>, hops: &HopOptions) -> Result<ExitCode> {
    crate::limits::raise_open_files("lanes proxy");
    init_logging();
    let text = std::fs::read_to_string(config)
        .with_context(|| format!("cannot read {}", config.display()))?;
    let file = ProxyFile::parse(&text).with_context(|| format!("{}", config.display()))?;
    // One thread: a current-thread runtime (no work stealing, no cross-thread wake-ups),
    // as Envoy's single worker runs.
    let mut rt = match threads {
        Some(0) => bail!("--threads must be at least 1"),
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    rt.enable_all();
    if let Some(n) = threads.filter(|n| *n > 1) {
        rt.worker_threads(n);
    }
    let rt = rt.build()?;
    rt.block_on(serve(file, hops))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(file: ProxyFile, hops: &HopOptions) -> Result<()> {
    let metrics = Arc::new(Metrics::new());
    // The ring `/traces` reads is kept only when hops are recorded for another reason.
    let ring = if hops.records() { crate::hops::RING } else { 0 };
    let hops = hops.hops(ring, &metrics)?;
    let mesh = Mesh::with_hops(file.settings.clone(), metrics.clone(), hops);
    mesh.update(&file.routes, &file.endpoints)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(addr) = file.listeners.admin {
        let l = bind(&mesh, addr, "admin").await?;
        tasks.spawn(admin::serve_admin(l, mesh.clone(), stop_rx.clone()));
    }
    match file.role {
        Role::Gateway => {
            let addr = file
                .listeners
                .gateway
                .context("listeners.gateway is required")?;
            let l = bind(&mesh, addr, "gateway").await?;
            tasks.spawn(server::serve_gateway(l, mesh.clone(), stop_rx.clone()));
        }
        Role::Sidecar => {
            let pod = file.pod.clone().context("pod is required")?;
            let sidecar = Arc::new(Sidecar::new(pod, mesh.settings(), &metrics));
            if let Some(addr) = file.listeners.inbound {
                let l = bind(&mesh, addr, "inbound").await?;
                tasks.spawn(server::serve_inbound(
                    l,
                    mesh.clone(),
                    sidecar.clone(),
                    stop_rx.clone(),
                ));
            }
            if let Some(addr) = file.listeners.outbound {
                let l = bind(&mesh, addr, "outbound").await?;
                tasks.spawn(server::serve_outbound(
                    l,
                    mesh.clone(),
                    sidecar.clone(),
                    stop_rx.clone(),
                ));
            }
        }
    }
    stop_signal().await;
    tracing::info!("stopping");
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    Ok(())
}
