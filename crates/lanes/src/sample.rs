//! `lanes sample` and `lanes echo`: the built-in services, as pods run them.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use lanes_runtime::sample::{SampleConfig, serve};

use crate::proxy_cmd::stop_signal;

/// Resolves when the process that started this one is gone (the sample then exits, so
/// a killed `lanes up` leaves no pod behind).
async fn parent_gone() {
    let parent = std::os::unix::process::parent_id();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if std::os::unix::process::parent_id() != parent {
            return;
        }
    }
}

/// Resolves on SIGTERM/SIGINT or the parent's death.
async fn stopped() {
    tokio::select! {
        () = stop_signal() => {}
        () = parent_gone() => {}
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?)
}

/// Runs the sample until SIGTERM/SIGINT or its parent's death.
pub fn run() -> Result<ExitCode> {
    let config = SampleConfig::from_env(|k| std::env::var(k).ok()).map_err(anyhow::Error::msg)?;
    let listen = config.listen;
    runtime()?
        .block_on(async move {
            eprintln!(
                "sample {} {} listening on {listen}",
                config.app, config.version
            );
            serve(config, stopped()).await
        })
        .map_err(|e| anyhow::anyhow!("cannot serve on {listen}: {e}"))?;
    Ok(ExitCode::SUCCESS)
}

/// Runs the conformance echo server until SIGTERM/SIGINT or its parent's death.
pub fn run_echo() -> Result<ExitCode> {
    use lanes_runtime::echo::{EchoConfig, serve};
    let config = EchoConfig::from_env(|k| std::env::var(k).ok()).map_err(anyhow::Error::msg)?;
    let listen = config.listen;
    runtime()?
        .block_on(async move {
            eprintln!(
                "echo {}/{} listening on {listen}",
                config.namespace, config.pod
            );
            serve(config, stopped()).await
        })
        .map_err(|e| anyhow::anyhow!("cannot serve on {listen}: {e}"))?;
    Ok(ExitCode::SUCCESS)
}
