//! Drives the `lanes` binary: a daemon (`lanes up`) on free loopback ports with its own
//! state directory, and CLI invocations against it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_lanes")
}

/// A pod network of its own for each daemon a test process starts (the runtime also
/// skips addresses in use, so two test processes sharing one still work).
fn pod_network() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let second = 20 + (std::process::id().wrapping_mul(7).wrapping_add(n * 13)) % 230;
    format!("127.{second}.0.0/16")
}

/// A plain HTTP/1.1 GET with headers: status, response headers (lower-case) and body.
pub fn http_get(
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, String) {
    use std::io::{Read, Write};
    let addr = addr.trim_start_matches("http://");
    let mut s = match std::net::TcpStream::connect(addr) {
        Ok(s) => s,
        Err(e) => return (0, Vec::new(), format!("cannot connect to {addr}: {e}")),
    };
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let hs = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, hs, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A running `lanes up`.
pub struct Daemon {
    pub child: Child,
    pub api: String,
    pub gateway: String,
    pub state: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Daemon {
    /// Starts a daemon with a fresh state directory.
    pub fn start() -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let mut d = Daemon::start_in(&state, &[]);
        d._dir = Some(dir);
        d
    }

    /// Starts a daemon on an existing state directory.
    pub fn start_in(state: &Path, extra: &[&str]) -> Daemon {
        let network = pod_network();
        let mut child = Command::new(bin())
            .args([
                "up",
                "--api",
                "127.0.0.1:0",
                "--gateway",
                "127.0.0.1:0",
                "--state-dir",
            ])
            .arg(state)
            .args(["--pod-network", &network])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut api = String::new();
        let mut gateway = String::new();
        while api.is_empty() || gateway.is_empty() {
            let Some(Ok(line)) = lines.next() else {
                let mut err = String::new();
                use std::io::Read;
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                panic!("lanes up ended early: {err}");
            };
            if let Some(a) = line.strip_prefix("lanes up: API listening on ") {
                api = a.to_string();
            }
            if let Some(a) = line.strip_prefix("lanes up: gateway listening on ") {
                gateway = a.to_string();
            }
        }
        // Keep draining stdout so the daemon never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || for _ in BufReader::new(stderr).lines() {});
        Daemon {
            child,
            api,
            gateway,
            state: state.to_path_buf(),
            _dir: None,
        }
    }

    /// Runs `lanes ARGS` against this daemon.
    pub fn lanes(&self, args: &[&str]) -> Output {
        Command::new(bin())
            .args(args)
            .env("LANES_SERVER", &self.api)
            .current_dir(repo())
            .output()
            .unwrap()
    }

    /// Runs `lanes ARGS`, asserts success, returns standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.lanes(args);
        assert!(
            out.status.success(),
            "lanes {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn client(&self) -> lanes_server::Client {
        lanes_server::Client::new(&self.api, None).unwrap()
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = wait(&mut self.child, Duration::from_secs(20));
        assert!(status.success(), "lanes up exited with {status:?}");
    }

    /// SIGKILL.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

fn wait(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(
            start.elapsed() < limit,
            "process did not exit within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` until it returns `Some`, for at most `limit`.
pub fn eventually<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "condition not met within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Parses a YAML stream into JSON values sorted by kind and name, without the fields
/// the server sets.
pub fn objects(yaml: &str) -> Vec<serde_json::Value> {
    let mut v: Vec<serde_json::Value> = serde_saphyr::from_multiple(yaml).unwrap();
    for o in &mut v {
        *o = lanes_store::without_server_fields(o);
    }
    v.sort_by_key(|o| (o["kind"].to_string(), o["metadata"]["name"].to_string()));
    v
}
