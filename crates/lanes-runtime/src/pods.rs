//! Pods as processes: each pod gets its own loopback address, a sidecar (inbound on
//! `<ip>:15006`, outbound on `<ip>:15001`, handed to the application as `HTTP_PROXY`)
//! and its container's command, with readiness by TCP connect, restart with back-off
//! after a crash, logs under the state directory, and graceful termination — the
//! endpoint is withdrawn first, then SIGTERM, then SIGKILL after the grace period.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use lanes_model::{Kind, ObjectKey};
use lanes_proxy::{Mesh, Metrics, PodIdentity, Sidecar, server};
use lanes_store::{EventType, Store, StoreError};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use crate::images::{LanesToml, Resolved, resolve};
use crate::ipam::Ipam;
use crate::routes::Snapshot;

/// The sidecar's inbound port: service endpoints point here.
pub const INBOUND_PORT: u16 = 15006;
/// The sidecar's outbound port: the application's `HTTP_PROXY`.
pub const OUTBOUND_PORT: u16 = 15001;

/// What every pod task shares.
pub struct Context {
    /// The store.
    pub store: Arc<Store>,
    /// The data plane shared by the gateway and every sidecar.
    pub mesh: Arc<Mesh>,
    /// The thread the sidecars serve on.
    pub data_plane: Arc<crate::data_plane::DataPlaneThread>,
    /// Its metrics.
    pub metrics: Arc<Metrics>,
    /// Pod addresses.
    pub ipam: Ipam,
    /// Image table.
    pub images: LanesToml,
    /// The `lanes` executable (runs the sample).
    pub exe: PathBuf,
    /// Where pod logs go.
    pub logs: PathBuf,
    /// The user pod processes run as (`None`: the daemon's own).
    pub pod_user: Option<PodUser>,
    /// The lane controller's snapshots (to know when an endpoint is withdrawn).
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
}

/// The unprivileged user pod processes run as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodUser {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

async fn write_status(ctx: &Context, key: &ObjectKey, status: Value) -> bool {
    let store = ctx.store.clone();
    let key = key.clone();
    let res =
        tokio::task::spawn_blocking(move || store.write(|t| t.replace_status(&key, status, None)))
            .await;
    match res {
        Ok(Ok(_)) => true,
        Ok(Err(StoreError::NotFound(_))) => false,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "pod status not written");
            true
        }
        Err(_) => false,
    }
}

/// The state of a pod's one container, for its status.
#[derive(Debug, Clone)]
struct ContainerState {
    name: String,
    image: String,
    ready: bool,
    restarts: u32,
    pid: Option<u32>,
    state: Value,
    last: Option<Value>,
}

fn status_json(ip: Option<Ipv4Addr>, started: &str, c: &ContainerState, phase: &str) -> Value {
    let mut cs = json!({
        "name": c.name,
        "image": c.image,
        // No registry here: the image is run by the local command the image table
        // names for it.
        "imageID": format!("lanes-local://{}", c.image),
        "ready": c.ready,
        "started": c.pid.is_some(),
        "restartCount": c.restarts,
        "state": c.state,
    });
    if let Some(pid) = c.pid {
        cs["containerID"] = json!(format!("pid://{pid}"));
    }
    if let Some(last) = &c.last {
        cs["lastState"] = last.clone();
    }
    let mut s = json!({
        "phase": phase,
        "hostIP": "127.0.0.1",
        "startTime": started,
        "conditions": [
            {"type": "Ready", "status": if c.ready { "True" } else { "False" }},
            {"type": "ContainersReady", "status": if c.ready { "True" } else { "False" }},
        ],
        "containerStatuses": [cs],
    });
    if let Some(ip) = ip {
        s["podIP"] = json!(ip.to_string());
        s["podIPs"] = json!([{"ip": ip.to_string()}]);
    }
    s
}

fn env_of(pod: &Value, container: &Value, ip: Ipv4Addr) -> Vec<(String, String)> {
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let ns = pod
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let mut env = Vec::new();
    for e in container
        .get("env")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(k) = e.get("name").and_then(Value::as_str) else {
            continue;
        };
        let v = match (
            e.get("value"),
            e.pointer("/valueFrom/fieldRef/fieldPath")
                .and_then(Value::as_str),
        ) {
            (Some(v), _) => v
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string()),
            (None, Some("metadata.name")) => name.to_string(),
            (None, Some("metadata.namespace")) => ns.to_string(),
            (None, Some("status.podIP")) => ip.to_string(),
            (None, Some(other)) => pod
                .pointer(&format!("/{}", other.replace('.', "/")))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            (None, None) => String::new(),
        };
        env.push((k.to_string(), v));
    }
    let proxy = format!("http://{ip}:{OUTBOUND_PORT}");
    env.extend([
        ("POD_IP".to_string(), ip.to_string()),
        ("POD_NAME".to_string(), name.to_string()),
        ("POD_NAMESPACE".to_string(), ns.to_string()),
        ("HTTP_PROXY".to_string(), proxy.clone()),
        ("http_proxy".to_string(), proxy),
        ("NO_PROXY".to_string(), String::new()),
    ]);
    env
}

fn container_ports(container: &Value) -> Vec<u16> {
    container
        .get("ports")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p.get("containerPort").and_then(Value::as_u64))
                .filter_map(|p| u16::try_from(p).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Sends `signal` to a pod process's group.
fn signal(pid: u32, signal: Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = killpg(Pid::from_raw(pid), signal);
    }
}

/// Kills a process left over from an earlier `lanes up` that was killed, if it is still
/// the pod's (its environment names the pod's uid).
fn reap_leftover(pod: &Value) {
    let Some(pid) = pod
        .pointer("/status/containerStatuses/0/containerID")
        .and_then(Value::as_str)
        .and_then(|s| s.strip_prefix("pid://"))
        .and_then(|s| s.parse::<u32>().ok())
    else {
        return;
    };
    let uid = pod
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("");
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return;
    };
    let marker = format!("LANES_POD_UID={uid}");
    if !uid.is_empty() && environ.split(|b| *b == 0).any(|e| e == marker.as_bytes()) {
        tracing::info!(pid, "stopping a process left by an earlier lanes up");
        signal(pid, Signal::SIGKILL);
    }
}

/// Runs one pod until `stop`, then terminates it gracefully.
async fn run_pod(ctx: Arc<Context>, pod: Value, mut stop: watch::Receiver<bool>) {
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let ns = pod
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    let key = ObjectKey {
        kind: Kind::Pod,
        namespace: Some(ns.clone()),
        name: name.clone(),
    };
    let container = pod
        .pointer("/spec/containers/0")
        .cloned()
        .unwrap_or(Value::Null);
    let image = container
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let mut cstate = ContainerState {
        name: container
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("main")
            .to_string(),
        image: image.clone(),
        ready: false,
        restarts: pod
            .pointer("/status/containerStatuses/0/restartCount")
            .and_then(Value::as_u64)
            .unwrap_or(0) as u32,
        pid: None,
        state: json!({"waiting": {"reason": "ContainerCreating"}}),
        last: None,
    };
    let started = pod
        .pointer("/status/startTime")
        .and_then(Value::as_str)
        .map_or_else(now, str::to_string);
    reap_leftover(&pod);
    let preferred = pod
        .pointer("/status/podIP")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok());
    let Some(ip) = ctx.ipam.allocate(preferred) else {
        cstate.state = json!({"waiting": {"reason": "NoAddress", "message": "no free pod address left in the pod network"}});
        write_status(&ctx, &key, status_json(None, &started, &cstate, "Pending")).await;
        let _ = stop.changed().await;
        return;
    };
    let strings = |field: &str| -> Vec<String> {
        container
            .get(field)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (command, args) = (strings("command"), strings("args"));
    let resolved = resolve(&ctx.images, &image, &command, &args);
    let ports = container_ports(&container);
    let app_port = match (ports.first(), &resolved) {
        (Some(p), _) => *p,
        (None, Ok(Resolved::Echo { port, .. })) => *port,
        (None, _) => 8000,
    };
    // The echo server's gRPC port is the pod's too, when its args ask for one.
    let echo_grpc = match &resolved {
        Ok(Resolved::Echo { grpc, .. }) => *grpc,
        _ => None,
    };
    let labels = pod
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let sidecar = Arc::new(Sidecar::new(
        PodIdentity {
            name: name.clone(),
            namespace: ns.clone(),
            labels,
            app_address: SocketAddr::new(IpAddr::V4(ip), app_port),
            ports: if ports.is_empty() {
                [Some(app_port), echo_grpc].into_iter().flatten().collect()
            } else {
                ports.clone()
            },
            workload: crate::deployments::owner(&pod),
        },
        ctx.mesh.settings(),
        &ctx.metrics,
    ));
    let (sidecar_stop, sidecar_stop_rx) = watch::channel(false);
    let mut sidecar_tasks = Vec::new();
    for (port, inbound) in [(INBOUND_PORT, true), (OUTBOUND_PORT, false)] {
        let addr = SocketAddr::new(IpAddr::V4(ip), port);
        match crate::data_plane::bind(addr) {
            Ok(socket) => {
                ctx.mesh.own_listeners().add(addr);
                let (mesh, sc, rx) = (ctx.mesh.clone(), sidecar.clone(), sidecar_stop_rx.clone());
                sidecar_tasks.push(ctx.data_plane.serve(socket, move |l| async move {
                    if inbound {
                        server::serve_inbound(l, mesh, sc, rx).await;
                    } else {
                        server::serve_outbound(l, mesh, sc, rx).await;
                    }
                }));
            }
            Err(e) => tracing::error!(pod = %name, %ip, port, error = %e, "sidecar cannot listen"),
        }
    }

    let argv = match resolved {
        Ok(Resolved::Sample) => vec![ctx.exe.display().to_string(), "sample".to_string()],
        Ok(Resolved::Echo { .. }) => vec![ctx.exe.display().to_string(), "echo".to_string()],
        Ok(Resolved::Command(argv)) => {
            // Its own command runs under the shim that kills it with the daemon.
            let mut shim = vec![
                ctx.exe.display().to_string(),
                "pod-exec".into(),
                "--".into(),
            ];
            shim.extend(argv);
            shim
        }
        Err(message) => {
            cstate.state = json!({"waiting": {"reason": "ImageNotMapped", "message": message}});
            write_status(
                &ctx,
                &key,
                status_json(Some(ip), &started, &cstate, "Pending"),
            )
            .await;
            let _ = stop.changed().await;
            let _ = sidecar_stop.send(true);
            ctx.ipam.release(ip);
            return;
        }
    };
    let mut env = env_of(&pod, &container, ip);
    env.push(("LANES_IMAGE".into(), image.clone()));
    env.push(("LANES_LISTEN".into(), format!("{ip}:{app_port}")));
    if let Some(grpc) = echo_grpc {
        env.push(("LANES_ECHO_GRPC".into(), format!("{ip}:{grpc}")));
    }
    env.push((
        "LANES_POD_UID".into(),
        pod.pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    ));
    let log = crate::logs::path(&ctx.logs, &ns, &name);
    let grace = Duration::from_secs(
        pod.pointer("/spec/terminationGracePeriodSeconds")
            .and_then(Value::as_u64)
            .unwrap_or(30),
    );

    let mut backoff = Duration::from_millis(250);
    let mut child: Option<Child> = None;
    let mut stopping = false;
    'outer: while !stopping {
        // Start the process.
        let spawned = spawn(&argv, &env, &log, ctx.pod_user);
        let mut proc = match spawned {
            Ok(c) => c,
            Err(e) => {
                cstate.ready = false;
                cstate.pid = None;
                cstate.state = json!({"waiting": {"reason": "StartError", "message": format!("cannot start {:?}: {e}", argv[0])}});
                write_status(
                    &ctx,
                    &key,
                    status_json(Some(ip), &started, &cstate, "Pending"),
                )
                .await;
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => break 'outer,
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
                cstate.restarts += 1;
                continue;
            }
        };
        let run_started = tokio::time::Instant::now();
        cstate.pid = proc.id();
        cstate.ready = false;
        cstate.state = json!({"running": {"startedAt": now()}});
        if !write_status(
            &ctx,
            &key,
            status_json(Some(ip), &started, &cstate, "Running"),
        )
        .await
        {
            child = Some(proc);
            break;
        }
        // Probe readiness and watch for exit.
        let probe_addr = SocketAddr::new(IpAddr::V4(ip), app_port);
        let mut period = ProbePeriod::default();
        let mut failures = 0;
        loop {
            tokio::select! {
                exit = proc.wait() => {
                    let code = exit.ok().and_then(|s| s.code());
                    cstate.ready = false;
                    cstate.pid = None;
                    cstate.restarts += 1;
                    cstate.last = Some(json!({"terminated": {"exitCode": code.unwrap_or(-1), "reason": "Error", "finishedAt": now()}}));
                    if run_started.elapsed() > Duration::from_secs(10) {
                        backoff = Duration::from_millis(250);
                    }
                    cstate.state = json!({"waiting": {"reason": "CrashLoopBackOff",
                        "message": format!("back-off {} ms restarting the container (exit code {})", backoff.as_millis(), code.map_or("none".into(), |c| c.to_string()))}});
                    write_status(&ctx, &key, status_json(Some(ip), &started, &cstate, "Running")).await;
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => { stopping = true; }
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue 'outer;
                }
                () = tokio::time::sleep(period.next()) => {
                    let ok = tokio::time::timeout(Duration::from_millis(500), tokio::net::TcpStream::connect(probe_addr)).await.is_ok_and(|r| r.is_ok());
                    period.observe(ok);
                    let ready = if ok { failures = 0; true } else { failures += 1; cstate.ready && failures < 3 };
                    if ready != cstate.ready {
                        cstate.ready = ready;
                        write_status(&ctx, &key, status_json(Some(ip), &started, &cstate, "Running")).await;
                    }
                }
                _ = stop.changed() => {
                    child = Some(proc);
                    break 'outer;
                }
            }
        }
    }

    // Terminate: withdraw the endpoint, let traffic drain, then SIGTERM, then SIGKILL.
    if let Some(mut proc) = child {
        if cstate.ready {
            cstate.ready = false;
            write_status(
                &ctx,
                &key,
                status_json(Some(ip), &started, &cstate, "Running"),
            )
            .await;
        }
        wait_withdrawn(&ctx, &name, &ns).await;
        if let Some(pid) = proc.id() {
            signal(pid, Signal::SIGTERM);
            if tokio::time::timeout(grace, proc.wait()).await.is_err() {
                signal(pid, Signal::SIGKILL);
                let _ = proc.wait().await;
            }
        }
    }
    let _ = sidecar_stop.send(true);
    for t in sidecar_tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    for port in [INBOUND_PORT, OUTBOUND_PORT] {
        ctx.mesh
            .own_listeners()
            .remove(SocketAddr::new(IpAddr::V4(ip), port));
    }
    ctx.ipam.release(ip);
}

/// How often a pod's readiness is probed: every 200 ms for its first 5 s of failing
/// (a starting pod is seen ready at once), once a second while it answers, and backing
/// off (doubling to 5 s) while it keeps failing, so thousands of pods that never turn
/// ready cost little.
#[derive(Debug, Clone, Copy)]
struct ProbePeriod {
    next: Duration,
    failing: u32,
}

impl ProbePeriod {
    const STARTING: Duration = Duration::from_millis(200);
    const READY: Duration = Duration::from_secs(1);
    const SLOWEST: Duration = Duration::from_secs(5);

    fn next(&self) -> Duration {
        self.next
    }

    /// Failed probes at the starting pace before backing off.
    const PATIENCE: u32 = 25;

    fn observe(&mut self, ok: bool) {
        if ok {
            self.failing = 0;
            self.next = Self::READY;
            return;
        }
        self.failing = self.failing.saturating_add(1);
        self.next = if self.failing < Self::PATIENCE {
            Self::STARTING
        } else {
            (self.next * 2).clamp(Self::STARTING, Self::SLOWEST)
        };
    }
}

impl Default for ProbePeriod {
    fn default() -> Self {
        ProbePeriod {
            next: Self::STARTING,
            failing: 0,
        }
    }
}

/// Waits until the data plane no longer sends new requests to a pod: the lane
/// controller's snapshot shows it not ready (or gone), then a short drain.
async fn wait_withdrawn(ctx: &Context, name: &str, ns: &str) {
    let mut rx = ctx.snapshots.clone();
    let gone = async {
        loop {
            let ready = rx
                .borrow_and_update()
                .pods
                .iter()
                .any(|p| p.name == name && p.namespace == ns && p.ready);
            if !ready {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(3), gone).await;
    // The gateway and sidecars swap routing right after the snapshot; requests already
    // routed here finish meanwhile.
    tokio::time::sleep(Duration::from_millis(300)).await;
}

fn spawn(
    argv: &[String],
    env: &[(String, String)],
    log: &std::path::Path,
    user: Option<PodUser>,
) -> std::io::Result<Child> {
    // Each start of the container is a run of its own; the last run's log is kept.
    let writer = Arc::new(std::sync::Mutex::new(crate::logs::LogWriter::start_run(
        log,
        crate::logs::LOG_LIMIT,
    )?));
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(u) = user {
        // As root, std also drops the supplementary groups.
        cmd.uid(u.uid).gid(u.gid);
    }
    let mut child = cmd.spawn()?;
    if let Some(out) = child.stdout.take() {
        tokio::spawn(crate::logs::copy(out, writer.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(crate::logs::copy(err, writer));
    }
    Ok(child)
}

struct Running {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    /// The pod's log file.
    log: PathBuf,
}

impl Running {
    /// Stops a pod that was removed: once it has terminated, its logs go too.
    fn remove(self) -> tokio::task::JoinHandle<()> {
        let _ = self.stop.send(true);
        let (task, log) = (self.task, self.log);
        tokio::spawn(async move {
            let _ = task.await;
            crate::logs::remove(&log);
        })
    }
}

/// Runs every Pod of the store as a process until `shutdown`, then stops them all.
pub async fn run(ctx: Arc<Context>, mut shutdown: watch::Receiver<bool>) {
    let mut running: HashMap<String, Running> = HashMap::new();
    let mut terminating: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    'resync: loop {
        let store = ctx.store.clone();
        let listed = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
            let rv = store.resource_version()?;
            let (_, rx) = store.watch(rv)?;
            let (pods, _) = store.list(Kind::Pod, None)?;
            Ok((pods, rx))
        })
        .await;
        let Ok(Ok((pods, mut rx))) = listed else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let present: std::collections::HashSet<String> = pods.iter().filter_map(pod_id).collect();
        for id in running.keys().cloned().collect::<Vec<_>>() {
            if !present.contains(&id)
                && let Some(r) = running.remove(&id)
            {
                terminating.push(r.remove());
            }
        }
        for pod in pods {
            start(&ctx, &mut running, pod);
        }
        loop {
            tokio::select! {
                e = rx.recv() => match e {
                    Ok(e) if e.key().is_some_and(|k| k.kind == Kind::Pod) => {
                        let Some(id) = pod_id(&e.object) else { continue };
                        match e.kind {
                            EventType::Added => start(&ctx, &mut running, e.object),
                            EventType::Deleted => {
                                if let Some(r) = running.remove(&id) {
                                    terminating.push(r.remove());
                                }
                            }
                            EventType::Modified => {}
                        }
                    }
                    Ok(_) => {}
                    Err(_) => continue 'resync,
                },
                _ = shutdown.changed() => break 'resync,
            }
            terminating.retain(|t| !t.is_finished());
        }
    }
    for (_, r) in running.drain() {
        let _ = r.stop.send(true);
        terminating.push(r.task);
    }
    for t in terminating {
        let _ = t.await;
    }
}

/// `namespace/name/uid` of a pod: a pod deleted and made again is another pod.
fn pod_id(v: &Value) -> Option<String> {
    let m = v.get("metadata")?;
    Some(format!(
        "{}/{}/{}",
        m.get("namespace")?.as_str()?,
        m.get("name")?.as_str()?,
        m.get("uid").and_then(Value::as_str).unwrap_or("")
    ))
}

fn start(ctx: &Arc<Context>, running: &mut HashMap<String, Running>, pod: Value) {
    let Some(id) = pod_id(&pod) else { return };
    if running.contains_key(&id) {
        return;
    }
    let log = crate::logs::path(
        &ctx.logs,
        pod.pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default"),
        pod.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or(""),
    );
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(run_pod(ctx.clone(), pod, rx));
    running.insert(id, Running { stop, task, log });
}

/// The endpoints of a snapshot: every pod with an address, at its sidecar's inbound
/// port, for each Service that selects it.
pub fn endpoints(snapshot: &Snapshot) -> Vec<lanes_proxy::Endpoint> {
    let pods = lanes_model::mesh::PodIndex::new(&snapshot.pods);
    let mut out = Vec::new();
    for svc in &snapshot.routes.services {
        for p in pods.matching(&svc.namespace, &svc.selector) {
            let Some(ip) = p.ip.as_deref().and_then(|ip| ip.parse::<IpAddr>().ok()) else {
                continue;
            };
            out.push(lanes_proxy::Endpoint {
                service: svc.name.clone(),
                namespace: svc.namespace.clone(),
                address: SocketAddr::new(ip, INBOUND_PORT),
                labels: p.labels.clone(),
                ready: p.ready,
                pod: Some(p.name.clone()),
            });
        }
    }
    out
}

/// Keeps the data plane's routing in step with the lane controller's snapshots.
pub async fn follow(mesh: Arc<Mesh>, mut rx: watch::Receiver<Arc<Snapshot>>) {
    loop {
        let snapshot = rx.borrow_and_update().clone();
        if let Err(e) = mesh.update(&snapshot.routes, &endpoints(&snapshot)) {
            tracing::error!(error = %e, "data plane: cannot use the new route table");
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probing_backs_off_while_failing_and_settles_once_ready() {
        let mut p = ProbePeriod::default();
        assert_eq!(p.next(), Duration::from_millis(200));
        let mut seen = Vec::new();
        for _ in 0..30 {
            p.observe(false);
            seen.push(p.next().as_millis());
        }
        assert!(seen[..24].iter().all(|&ms| ms == 200), "{seen:?}");
        assert_eq!(seen[24..], [400, 800, 1600, 3200, 5000, 5000]);
        p.observe(true);
        assert_eq!(p.next(), Duration::from_secs(1));
    }
}
