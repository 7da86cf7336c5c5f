//! `lanes dashboard`: the dashboard `lanes up` serves, served on this machine against
//! any kubeconfig context (a cluster with the Lanes operator), reading the Kubernetes
//! API with the context's credentials.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use lanes_dashboard::server::{Maps, api, assets};
use lanes_dashboard::source::{Followers, MapJson};
use tokio::sync::watch;

/// Serves the dashboard on `address` against kubeconfig context `context` (the current
/// one when none), until interrupted.
pub fn run(context: Option<String>, address: SocketAddr) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(serve(context, address))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(context: Option<String>, address: SocketAddr) -> Result<()> {
    let options = kube::config::KubeConfigOptions {
        context: context.clone(),
        ..Default::default()
    };
    let which = context.as_deref().map_or_else(
        || "the current context".to_string(),
        |c| format!("context {c:?}"),
    );
    let config = kube::Config::from_kubeconfig(&options)
        .await
        .with_context(|| format!("cannot use {which} of the kubeconfig"))?;
    let server = config.cluster_url.to_string();
    let client = kube::Client::try_from(config)
        .with_context(|| format!("cannot make a client of {which}"))?;
    let (stop_tx, stop) = watch::channel(false);
    let (publish, published) = watch::channel(MapJson::from("{\"groups\":[],\"releases\":[]}"));
    let followers = Followers::default();
    // No data plane of its own to ask: no live traffic and no request paths here.
    let source = tokio::spawn(lanes_dashboard::source::run(
        client.clone(),
        Duration::from_millis(500),
        None,
        publish,
        followers.clone(),
        stop,
    ));
    let app = api(Maps {
        client,
        published,
        followers,
        hops: None,
    })
    .merge(assets());
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    let local = listener.local_addr()?;
    println!("lanes dashboard: http://{local}/ui/ ({which}, API {server})");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = tokio::signal::ctrl_c().await;
            let _ = stop_tx.send(true);
        })
        .await
        .context("the dashboard's server")?;
    let _ = source.await;
    Ok(())
}
