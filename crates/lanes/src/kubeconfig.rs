//! `<state-dir>/kubeconfig`: how kubectl, client libraries and `lanes` itself reach the
//! API of `lanes up` (a context named `lanes`, the API URL, its bearer token), written
//! with mode 0600 at every start.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::json;

/// Where a state directory keeps its kubeconfig.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("kubeconfig")
}

/// The URL clients use for an API listening on `addr` (an unspecified address is
/// reached on loopback), over TLS (the same port answers plain HTTP too).
pub fn server_url(addr: SocketAddr) -> String {
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        addr.ip().to_string()
    };
    let host = if addr.is_ipv6() && !addr.ip().is_unspecified() {
        format!("[{host}]")
    } else {
        host
    };
    format!("https://{host}:{}", addr.port())
}

/// The kubeconfig document.
pub fn document(server: &str, ca_pem: &str, token: Option<&str>) -> Result<String> {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let user = match token {
        Some(t) => json!({"token": t}),
        None => json!({}),
    };
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "lanes", "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": [{"name": "lanes", "user": user}],
        "contexts": [{"name": "lanes", "context": {"cluster": "lanes", "user": "lanes", "namespace": "default"}}],
        "current-context": "lanes",
        "preferences": {},
    });
    serde_saphyr::to_string(&doc).context("cannot write the kubeconfig as YAML")
}

/// Writes the kubeconfig (replacing any), mode 0600, and returns its path.
pub fn write(state_dir: &Path, server: &str, ca_pem: &str, token: Option<&str>) -> Result<PathBuf> {
    let file = path(state_dir);
    let tmp = state_dir.join(".kubeconfig.tmp");
    let _ = std::fs::remove_file(&tmp);
    let text = document(server, ca_pem, token)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &file)
        .with_context(|| format!("cannot move the kubeconfig into {}", file.display()))?;
    Ok(std::path::absolute(&file).unwrap_or(file))
}

/// `lanes kubeconfig`: the kubeconfig of a state directory, as written.
pub fn print(state_dir: &Path) -> Result<()> {
    let file = path(state_dir);
    let text = std::fs::read_to_string(&file).with_context(|| {
        format!(
            "cannot read {} (lanes up writes it at start; LANES_STATE_DIR or --state-dir names the state directory)",
            file.display()
        )
    })?;
    print!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_lanes_context_and_the_token() {
        let text = document("https://127.0.0.1:7070", "PEM", Some("abc")).unwrap();
        let v: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(v["current-context"], "lanes");
        assert_eq!(
            v["clusters"][0]["cluster"]["server"],
            "https://127.0.0.1:7070"
        );
        assert_eq!(
            v["clusters"][0]["cluster"]["certificate-authority-data"],
            "UEVN"
        );
        assert_eq!(v["users"][0]["user"]["token"], "abc");
        assert_eq!(
            server_url("0.0.0.0:7070".parse().unwrap()),
            "https://127.0.0.1:7070"
        );
    }
}
