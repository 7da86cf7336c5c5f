//! `lanes operator`: the controllers against a Kubernetes cluster.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use lanes_operator::metrics::{self, Metrics};

/// What `lanes operator` was asked.
pub struct Options {
    /// Istio dialect of the generated objects.
    pub flavor: lanes_compile::Flavor,
    /// Where `/metrics`, `/healthz` and `/readyz` listen.
    pub metrics_addr: SocketAddr,
    /// Namespace of the leader-election Lease.
    pub lease_namespace: String,
    /// Name of the leader-election Lease.
    pub lease_name: String,
    /// This replica's identity (default: the host name).
    pub identity: Option<String>,
    /// Seconds a lease stays valid after each renewal.
    pub lease_seconds: u64,
    /// Log format.
    pub log_format: LogFormat,
    /// The admission webhook, when served.
    pub webhook: Option<Webhook>,
    /// Where the bearer token for Prometheus is, if one is sent.
    pub prometheus_token_file: Option<std::path::PathBuf>,
    /// The cluster's Prometheus, for the built-in analysis metrics.
    pub mesh_prometheus: Option<String>,
}

/// `--mesh-prometheus`: an `http://` or `https://` URL.
pub fn prometheus_url(s: &str) -> Result<String, String> {
    match s.parse::<hyper::Uri>() {
        Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => {
            Ok(s.trim_end_matches('/').to_string())
        }
        _ => Err(format!("{s:?} is not an http:// or https:// URL")),
    }
}

/// The Prometheus bearer token in `path`: its first line, which must not be empty.
fn prometheus_token(path: &std::path::Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--prometheus-token-file: cannot read {}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim();
    if token.is_empty() {
        anyhow::bail!("--prometheus-token-file: {} holds no token", path.display());
    }
    Ok(token.to_string())
}

/// Where and with what the admission webhook is served.
pub struct Webhook {
    /// Listen address.
    pub addr: SocketAddr,
    /// Directory holding `tls.crt` and `tls.key`.
    pub cert_dir: std::path::PathBuf,
}

/// Serves the admission webhook over TLS until `stop`.
async fn serve_webhook(
    w: &Webhook,
    client: kube::Client,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>> {
    let acceptor =
        crate::tls::from_files(&w.cert_dir.join("tls.crt"), &w.cert_dir.join("tls.key"))?;
    let listener = tokio::net::TcpListener::bind(w.addr)
        .await
        .with_context(|| format!("cannot listen on {} (webhook)", w.addr))?;
    tracing::info!(addr = %listener.local_addr()?, path = lanes_operator::webhook::PATH, "admission webhook listening (TLS)");
    let router = lanes_operator::webhook::router(lanes_operator::webhook::Rollouts::watch(client));
    Ok(tokio::spawn(lanes_proxy::server::serve_router_tls(
        listener,
        lanes_proxy::Settings::default().listener_limits(),
        "webhook",
        stop,
        Some(acceptor),
        router,
    )))
}

/// How the operator writes its logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (for log collectors).
    Json,
    /// Human-readable lines.
    Text,
}

/// Starts logging to standard error (`RUST_LOG` filters, default `info`).
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Runs the operator until SIGINT or SIGTERM.
pub fn run(o: Options) -> Result<ExitCode> {
    init_logging(o.log_format);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(o))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(o: Options) -> Result<()> {
    let token = match &o.prometheus_token_file {
        Some(path) => Some(prometheus_token(path)?),
        None => None,
    };
    let client = kube::Client::try_default().await.context(
        "cannot configure a Kubernetes client (in-cluster service account, or KUBECONFIG)",
    )?;
    let identity = o.identity.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| format!("lanes-operator-{}", std::process::id()))
    });
    let metrics = Arc::new(Metrics::default());
    let listener = tokio::net::TcpListener::bind(o.metrics_addr)
        .await
        .with_context(|| format!("cannot listen on {} (metrics)", o.metrics_addr))?;
    tracing::info!(addr = %listener.local_addr()?, "metrics and health listening");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let router = metrics::router(metrics.clone());
    let http = tokio::spawn(lanes_proxy::server::serve_router(
        listener,
        lanes_proxy::Settings::default().listener_limits(),
        "metrics",
        stop_rx.clone(),
        router,
    ));
    let webhook = match &o.webhook {
        Some(w) => Some(serve_webhook(w, client.clone(), stop_rx.clone()).await?),
        None => None,
    };
    let config = lanes_operator::Config {
        flavor: o.flavor,
        identity,
        lease_namespace: o.lease_namespace,
        lease_name: o.lease_name,
        lease_duration: Duration::from_secs(o.lease_seconds.max(3)),
        ..Default::default()
    };
    tracing::info!(identity = %config.identity, lease = %format!("{}/{}", config.lease_namespace, config.lease_name), flavor = ?config.flavor, "lanes operator starting");
    let operator = tokio::spawn(lanes_operator::run(
        context(client, token, o.mesh_prometheus),
        config,
        metrics.clone(),
        stop_rx,
    ));
    crate::proxy_cmd::stop_signal().await;
    tracing::info!("stopping: controllers finish their round, the lease is given up");
    stop_tx.send_replace(true);
    operator.await.context("operator task")?;
    http.await.context("metrics server task")?;
    if let Some(w) = webhook {
        w.await.context("webhook server task")?;
    }
    Ok(())
}

/// The rollout controller's context: Prometheus with the configured token, and the
/// built-in metrics read from the mesh's Prometheus when one is named.
fn context(
    client: kube::Client,
    token: Option<String>,
    mesh_prometheus: Option<String>,
) -> lanes_operator::rollouts::Context {
    let prometheus = lanes_operator::prometheus::Prometheus::new(token);
    let base = lanes_operator::rollouts::Context::new(client);
    let samples: Arc<dyn lanes_operator::analysis::Samples> = match mesh_prometheus {
        Some(address) => Arc::new(lanes_operator::analysis::IstioSeries {
            prometheus: prometheus.clone(),
            address,
        }),
        None => base.samples.clone(),
    };
    lanes_operator::rollouts::Context {
        prometheus,
        samples,
        ..base
    }
}
