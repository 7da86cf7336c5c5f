//! `lanes sample`: the sample service, as pods run it.

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

/// Runs the sample until SIGTERM/SIGINT or its parent's death.
pub fn run() -> Result<ExitCode> {
    let config = SampleConfig::from_env(|k| std::env::var(k).ok()).map_err(anyhow::Error::msg)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let listen = config.listen;
    rt.block_on(async move {
        let stop = async {
            tokio::select! {
                () = stop_signal() => {}
                () = parent_gone() => {}
            }
        };
        eprintln!(
            "sample {} {} listening on {listen}",
            config.app, config.version
        );
        serve(config, stop).await
    })
    .map_err(|e| anyhow::anyhow!("cannot serve on {listen}: {e}"))?;
    Ok(ExitCode::SUCCESS)
}
