//! `lanes pod-exec -- COMMAND...`: how `lanes up` runs a pod's own command. The shim
//! leads the pod's process group, runs the command in it, exits with its status, and
//! kills the whole group when `lanes up` dies — even by `kill -9` — so no pod process
//! outlives the daemon that started it.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::getpgrp;

/// Runs `argv` until it exits or the parent is gone.
pub fn run(argv: &[String]) -> Result<ExitCode> {
    let Some((program, args)) = argv.split_first() else {
        bail!("lanes pod-exec: no command given");
    };
    let parent = std::os::unix::process::parent_id();
    let mut child = std::process::Command::new(program)
        .args(args)
        .spawn()
        .with_context(|| format!("cannot start {program:?}"))?;
    loop {
        if let Some(status) = child.try_wait()? {
            let code = status.code().map_or(1, |c| u8::try_from(c).unwrap_or(1));
            return Ok(ExitCode::from(code));
        }
        if std::os::unix::process::parent_id() != parent {
            // lanes up is gone: take the whole pod with us.
            let _ = killpg(getpgrp(), Signal::SIGKILL);
            return Ok(ExitCode::FAILURE);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
