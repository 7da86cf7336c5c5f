//! The real kubectl (the binary on the PATH) against a `lanes up` daemon.
#![allow(dead_code)]

use std::process::{Command, Output};

use super::{Daemon, repo};

pub fn kubeconfig(d: &Daemon) -> String {
    d.state.join("kubeconfig").display().to_string()
}

/// kubectl with the daemon's kubeconfig, and `lanes` on the PATH as the kubectl
/// plugin `kubectl-lanes`.
pub fn kubectl_command(d: &Daemon, args: &[&str]) -> Command {
    let plugins = d.state.join("plugins");
    if !plugins.join("kubectl-lanes").exists() {
        std::fs::create_dir_all(&plugins).unwrap();
        std::os::unix::fs::symlink(super::bin(), plugins.join("kubectl-lanes")).unwrap();
    }
    let path = format!(
        "{}:{}",
        plugins.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut c = Command::new("kubectl");
    c.args(args)
        .env("KUBECONFIG", kubeconfig(d))
        .env("HOME", &d.state)
        .env("PATH", path)
        .env_remove("LANES_TOKEN")
        .env_remove("LANES_SERVER")
        .env_remove("LANES_STATE_DIR")
        .current_dir(repo());
    c
}

pub fn kubectl(d: &Daemon, args: &[&str]) -> Output {
    kubectl_command(d, args)
        .output()
        .expect("kubectl on the PATH")
}

pub fn k_ok(d: &Daemon, args: &[&str]) -> String {
    let out = kubectl(d, args);
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn k_err(d: &Daemon, args: &[&str]) -> String {
    let out = kubectl(d, args);
    assert!(!out.status.success(), "kubectl {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}
