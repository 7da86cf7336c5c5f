//! Drives the `lanes` binary: a daemon (`lanes up`) on free loopback ports with its own
//! state directory, and CLI invocations against it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod kubectl;

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
    // A `host` among `headers` takes the place of the address.
    let mut req = if headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        format!("GET {path} HTTP/1.1\r\nConnection: close\r\n")
    } else {
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n")
    };
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

/// `lanes up` on free loopback ports (a state directory still to name).
pub const UP_ON_FREE_PORTS: [&str; 5] = ["up", "--api", "127.0.0.1:0", "--gateway", "127.0.0.1:0"];

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
        Daemon::launch(Command::new(bin()), state, extra)
    }

    /// Starts a daemon whose soft limit on open files is `soft` when it starts (as
    /// `ulimit -Sn` in the shell that runs it).
    pub fn start_with_open_files(soft: u64) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let mut sh = Command::new("sh");
        sh.args([
            "-c",
            &format!("ulimit -Sn {soft} && exec \"$0\" \"$@\""),
            bin(),
        ]);
        let mut d = Daemon::launch(sh, &state, &[]);
        d._dir = Some(dir);
        d
    }

    fn launch(mut command: Command, state: &Path, extra: &[&str]) -> Daemon {
        let network = pod_network();
        let mut child = command
            .args(UP_ON_FREE_PORTS)
            .arg("--state-dir")
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
            .env("LANES_STATE_DIR", &self.state)
            .env_remove("LANES_TOKEN")
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

    /// A client of this daemon. kube-rs runs its connection task on the runtime the
    /// client is made in; made outside one, it gets a runtime of the tests' own.
    pub fn client(&self) -> lanes_server::Client {
        static BACKGROUND: std::sync::OnceLock<tokio::runtime::Runtime> =
            std::sync::OnceLock::new();
        let _entered = tokio::runtime::Handle::try_current().is_err().then(|| {
            BACKGROUND
                .get_or_init(|| {
                    tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(1)
                        .enable_all()
                        .build()
                        .unwrap()
                })
                .enter()
        });
        lanes_server::Client::new(&self.api, Some(self.token())).unwrap()
    }

    /// How many pods are Running and ready.
    pub fn client_list_pods(&self) -> usize {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let pods = rt
            .block_on(async { self.client().list(lanes_model::Kind::Pod, None, None).await })
            .unwrap_or_default();
        pods.iter()
            .filter(|p| {
                p.pointer("/status/phase")
                    .and_then(serde_json::Value::as_str)
                    == Some("Running")
                    && p.pointer("/status/containerStatuses/0/ready")
                        == Some(&serde_json::Value::Bool(true))
            })
            .count()
    }

    /// The API token the daemon keeps in its state directory.
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.state.join("token"))
            .unwrap()
            .trim()
            .to_string()
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

/// The versions a chain answer names, in order: "-> mocka(version: v2, ...)..." → [v2, ...].
pub fn versions(body: &str) -> Vec<String> {
    body.split("(version: ")
        .skip(1)
        .map(|s| s.split(',').next().unwrap_or("").to_string())
        .collect()
}

/// A Rollout's JSON.
pub fn rollout(d: &Daemon, name: &str) -> serde_json::Value {
    serde_json::from_str(&d.ok(&["get", "rollout", name, "-o", "json"])).unwrap()
}

/// `lanes apply` of a YAML text.
pub fn apply_text(d: &Daemon, text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x.yaml");
    std::fs::write(&f, text).unwrap();
    d.ok(&["apply", "-f", f.to_str().unwrap()]);
}

/// A steady, bounded load through the gateway: one thread per lane, a request every few
/// milliseconds, until [`SteadyLoad::finish`]; each answer judged by `accept(lane,
/// status, body)`.
pub struct SteadyLoad {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ok: std::sync::Arc<std::sync::atomic::AtomicU64>,
    failures: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl SteadyLoad {
    pub fn start(
        gateway: &str,
        lanes: &[&'static str],
        accept: fn(&str, u16, &str) -> bool,
    ) -> SteadyLoad {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ok = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let failures = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let threads = lanes
            .iter()
            .map(|&lane| {
                let (stop, ok, failures, gw) = (
                    stop.clone(),
                    ok.clone(),
                    failures.clone(),
                    gateway.to_string(),
                );
                std::thread::spawn(move || {
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let id = format!("{lane}-{i}");
                        let (status, _, body) = http_get(
                            &gw,
                            "/mock",
                            &[("x-asm-prefer-tag", lane), ("my-request-id", &id)],
                        );
                        if accept(lane, status, &body) {
                            ok.fetch_add(1, Ordering::Relaxed);
                        } else {
                            failures
                                .lock()
                                .unwrap()
                                .push(format!("{lane}: {status} {body}"));
                        }
                        i += 1;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                })
            })
            .collect();
        SteadyLoad {
            stop,
            ok,
            failures,
            threads,
        }
    }

    /// Stops the load; the answers accepted and the ones not.
    pub fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let failures = self.failures.lock().unwrap().clone();
        (self.ok.load(std::sync::atomic::Ordering::Relaxed), failures)
    }
}

/// Waits until `deployments` Deployments exist and every one is fully rolled out and
/// available (the seed's chain answers end to end).
pub fn settled(d: &Daemon, deployments: usize) {
    eventually(Duration::from_secs(60), || {
        let list: serde_json::Value =
            serde_json::from_str(&d.ok(&["get", "deploy", "-o", "json"])).unwrap();
        let items = list["items"].as_array().unwrap();
        let ok = items.len() == deployments
            && items.iter().all(|i| {
                let want = i["spec"]["replicas"].as_i64().unwrap_or(1);
                i["status"]["availableReplicas"].as_i64() == Some(want)
                    && i["status"]["replicas"].as_i64() == Some(want)
                    && i["status"]["updatedReplicas"].as_i64() == Some(want)
            });
        ok.then_some(())
    });
}

/// Waits until the gateway answers a request into the seed's `base` lane through its
/// whole chain (mocka, mockb, mockc). The data plane follows the store a little behind,
/// further on a loaded machine: a Deployment being available does not yet mean the
/// gateway routes to its pods. (A request naming no lane matches none of the seed's
/// ingress rules until a release routes such requests.)
pub fn routed(d: &Daemon) {
    eventually(Duration::from_secs(60), || {
        let (status, _, body) = http_get(&d.gateway, "/mock", &[("x-asm-prefer-tag", "base")]);
        (status == 200 && versions(&body).len() == 3).then_some(())
    });
}

/// A real Prometheus (Debian's package) scraping the daemon's `/metrics` every second,
/// on an address of its own; stopped on drop.
pub struct Prometheus {
    child: std::process::Child,
    pub address: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn prometheus(target: &str, token_file: &std::path::Path) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: lanes\n    scrape_interval: 1s\n    authorization:\n      credentials_file: {}\n    static_configs:\n      - targets: ['{}']\n",
            token_file.display(),
            target.trim_start_matches("http://")
        ),
    )
    .unwrap();
    // An address of its own: per test process, and per Prometheus within one (tests of
    // one binary run side by side).
    static STARTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nth = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let host = format!(
        "127.{}.{}.{}",
        30 + std::process::id() % 200,
        1 + std::process::id() % 250,
        9 + nth % 240
    );
    let address = format!("http://{host}:9090");
    let child = std::process::Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={host}:9090"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the prometheus binary (Debian's prometheus package; .ci/run installs it)");
    let p = Prometheus {
        child,
        address,
        _dir: dir,
    };
    eventually(Duration::from_secs(60), || {
        let (status, _, _) = http_get(&p.address, "/-/ready", &[]);
        (status == 200).then_some(())
    });
    // Wait for the first scrape of the daemon.
    eventually(Duration::from_secs(30), || {
        let (_, _, body) = http_get(&p.address, "/api/v1/query?query=up", &[]);
        body.contains("\"1\"").then_some(())
    });
    p
}

/// Patches Deployment `deploy` to the sample image at `version` (and `env`: more
/// container fields, as JSON text after a comma).
pub fn patch_image(d: &Daemon, deploy: &str, version: &str, env: &str) {
    d.ok(&[
        "patch",
        "deployment",
        deploy,
        "-p",
        &format!(
            r#"{{"spec": {{"template": {{"spec": {{"containers": [{{"name": "default", "image": "registry.cn-beijing.aliyuncs.com/aliacs-app-catalog/go-http-sample:{version}"{env}}}]}}}}}}}}"#
        ),
    ]);
}
