//! `lanes pod-exec -- COMMAND...`: how `lanes up` runs a pod's own command. The shim
//! leads the pod's process group, runs the command in it, exits with its status, and
//! kills the whole group when `lanes up` dies — even by `kill -9` — so no pod process
//! outlives the daemon that started it. A SIGTERM or SIGINT sent to the group reaches
//! the command too; the shim outlives it and waits, so the daemon's grace period (then
//! SIGKILL) covers the command's own shutdown.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::getpgrp;
use tokio::signal::unix::{SignalKind, signal};

/// Runs `argv` until it exits or the parent is gone.
pub fn run(argv: &[String]) -> Result<ExitCode> {
    let Some((program, args)) = argv.split_first() else {
        bail!("lanes pod-exec: no command given");
    };
    let parent = std::os::unix::process::parent_id();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        // Caught, so the shim stays to wait for the command, which got the signal too.
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .spawn()
            .with_context(|| format!("cannot start {program:?}"))?;
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                status = child.wait() => {
                    let code = status?.code().map_or(1, |c| u8::try_from(c).unwrap_or(1));
                    return Ok(ExitCode::from(code));
                }
                _ = term.recv() => {}
                _ = int.recv() => {}
                _ = tick.tick() => {
                    if std::os::unix::process::parent_id() != parent {
                        // lanes up is gone: take the whole pod with us.
                        let _ = killpg(getpgrp(), Signal::SIGKILL);
                        return Ok(ExitCode::FAILURE);
                    }
                }
            }
        }
    })
}
