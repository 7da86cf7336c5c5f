//! The `lanes` command line.

mod cli;
mod dashboard_cmd;
mod demo;
mod hops;
mod kubeconfig;
mod limits;
mod offline;
mod operator_cmd;
mod pod_exec;
mod proxy_cmd;
mod release_cmd;
mod rollout_cmd;
mod sample;
mod tls;
mod token;
mod up;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use lanes_rollout::controls::Control;
use lanes_server::merge::PatchType;

/// Lanes: end-to-end canary releases for microservice meshes.
#[derive(Debug, Parser)]
#[command(name = "lanes", version, about, long_about = None)]
struct Cli {
    /// The API to talk to. Without it: the current context of `KUBECONFIG` (or
    /// `~/.kube/config`) when there is one, as kubectl does, else `lanes up` at
    /// http://127.0.0.1:7070.
    #[arg(long, global = true, env = "LANES_SERVER")]
    server: Option<String>,
    /// Bearer token for the API (default: the one `lanes up` keeps in
    /// `$LANES_STATE_DIR/token`, `./.lanes/token` without it).
    #[arg(long, global = true, env = "LANES_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the embedded control plane in the foreground: store, controllers, API.
    Up {
        /// Directory of the store file and the API token (created if missing).
        #[arg(long, env = "LANES_STATE_DIR", default_value = token::DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// Serve the API without a bearer token (loopback addresses only). Any pod
        /// process, and any local user, can then change every object.
        #[arg(long, conflicts_with = "token")]
        no_auth: bool,
        /// Start over on a damaged store: move `state.redb` aside (to
        /// `state.redb.damaged-<time>`) and start with an empty one.
        #[arg(long)]
        recover: bool,
        /// The most replicas a Deployment may ask for (each is a process here).
        #[arg(
            long,
            default_value_t = lanes_server::api::DEFAULT_MAX_REPLICAS,
            value_parser = clap::value_parser!(i64).range(0..=1_000_000)
        )]
        max_replicas: i64,
        /// API listen address.
        #[arg(long, default_value = "127.0.0.1:7070")]
        api: SocketAddr,
        /// Gateway listen address (used by the local runtime).
        #[arg(long, default_value = "127.0.0.1:8080")]
        gateway: SocketAddr,
        /// What the lane groups are written as: `asm`, `istio` or `gateway-api`.
        #[arg(long, default_value = "asm")]
        flavor: lanes_compile::Flavor,
        /// Pod addresses come from this /16 of 127.0.0.0/8 (its first /24 is skipped).
        #[arg(long, default_value = "127.0.0.0/16")]
        pod_network: String,
        /// The image table (`[images]`: image → local command).
        #[arg(long, default_value = "lanes.toml")]
        config: PathBuf,
        /// The user pod processes run as (default: `nobody` when `lanes up` runs as
        /// root, else the user running it). Naming the daemon's own user keeps it.
        #[arg(long)]
        pod_user: Option<String>,
        #[command(flatten)]
        hops: hops::HopOptions,
    },
    /// Follow and steer releases (Kruise Rollout).
    Rollout {
        #[command(subcommand)]
        action: RolloutAction,
    },
    /// Follow and steer lane releases (several Rollouts released as one).
    Release {
        #[command(subcommand)]
        action: ReleaseAction,
    },
    /// Update a Deployment's container images.
    Set {
        #[command(subcommand)]
        what: SetWhat,
    },
    /// Run the article's walkthrough end to end on a private instance, checking every
    /// answer against the article.
    Demo,
    /// Print the CustomResourceDefinitions of ASMSwimLaneGroup, ASMSwimLane and Rollout
    /// (what `deploy/crds.yaml` holds).
    Crds,
    /// Print the kubeconfig `lanes up` wrote in the state directory (`LANES_STATE_DIR`,
    /// default `./.lanes`): context `lanes`, the API URL and its token.
    Kubeconfig,
    /// Run a pod's own command as `lanes up` does: in the pod's process group, killed
    /// with the daemon (internal).
    #[command(hide = true)]
    PodExec {
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        argv: Vec<String>,
    },
    /// Run the sample service (the article's go-http-sample), configured by its
    /// environment: app, version, POD_IP, upstream_url, HTTP_PROXY, FAIL_RATE, LATENCY_MS.
    Sample,
    /// Run the Gateway API conformance echo server (what `lanes up` runs for the images
    /// `gateway-api/echo-basic` and `echo-advanced`), on LANES_LISTEN.
    #[command(hide = true)]
    Echo,
    /// Print a pod's log.
    Logs {
        /// Pod name.
        pod: String,
        /// Namespace.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// The log of the container's previous run (before its last restart).
        #[arg(short = 'p', long)]
        previous: bool,
    },
    /// Create or update objects from manifests; every document is validated before any
    /// is stored.
    Apply {
        /// Files or directories of manifests, `-` for standard input.
        #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
        files: Vec<PathBuf>,
    },
    /// List or show objects.
    Get {
        /// Kinds, comma-separated (`deploy,svc`, `vs,dr`, `rollouts`, `all`).
        kinds: String,
        /// One object's name.
        name: Option<String>,
        /// Namespace.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// All namespaces.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// Label selector (`app=mocka,ASM_TRAFFIC_TAG in (base)`).
        #[arg(short = 'l', long)]
        selector: Option<String>,
        /// Output format.
        #[arg(short = 'o', long, value_enum)]
        output: Option<cli::GetFormat>,
    },
    /// Show one object in detail.
    Describe {
        /// Kind.
        kind: String,
        /// Name.
        name: String,
        /// Namespace.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
    },
    /// Delete objects by kind and name, or those in manifests.
    Delete {
        /// Kind.
        kind: Option<String>,
        /// Names.
        names: Vec<String>,
        /// Namespace.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// Files or directories of manifests.
        #[arg(short = 'f', long = "filename", num_args = 1..)]
        files: Vec<PathBuf>,
        /// Wait until each object is gone (one that finalizers hold stays until they
        /// are removed), as kubectl does.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        wait: bool,
        /// How long to wait for that, in seconds (at most a day).
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(0..=86_400))]
        timeout: u64,
    },
    /// Patch an object.
    Patch {
        /// Kind.
        kind: String,
        /// Name.
        name: String,
        /// Namespace.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// The patch, as JSON.
        #[arg(short = 'p', long)]
        patch: String,
        /// How the patch is read.
        #[arg(long = "type", value_enum, default_value_t = PatchKind::Strategic)]
        patch_type: PatchKind,
    },
    /// Print the Istio objects that the lane groups in the given manifests generate
    /// (offline: each Deployment with replicas > 0 counts as ready pods).
    Render {
        /// Files or directories of manifests (`.yaml`/`.yml`), `-` for standard input.
        #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
        files: Vec<PathBuf>,
        /// What to write: `asm` (ASM's fallback, $asm-label), `istio` (open-source
        /// Istio) or `gateway-api` (Gateway API HTTPRoutes and a Service per lane).
        #[arg(long, default_value = "asm")]
        flavor: lanes_compile::Flavor,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Yaml)]
        output: Format,
        /// Print the data plane's route table instead of the Istio objects.
        #[arg(long)]
        routes: bool,
    },
    /// Check the manifests for cross-reference problems (missing workloads, services,
    /// lane groups; unreachable hosts; clashing ingress rules). Exit 1 on any error.
    Lint {
        /// Files or directories of manifests (`.yaml`/`.yml`), `-` for standard input.
        #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
        files: Vec<PathBuf>,
        /// Check for a cluster with the Lanes operator rather than `lanes up` (what only
        /// `lanes up` runs, partition-style Rollouts, is then an error).
        #[arg(long)]
        cluster: bool,
        /// The flavor the lane groups are written in; `gateway-api` also warns of what
        /// a group asks that Gateway API cannot say.
        #[arg(long, default_value = "asm")]
        flavor: lanes_compile::Flavor,
    },
    /// Run the proxy standalone from a YAML file: its role, listeners, route table and
    /// endpoints (see the README for the format). Stops on SIGINT or SIGTERM.
    Proxy {
        /// The proxy file.
        #[arg(long)]
        config: PathBuf,
        /// Worker threads (default: one per core).
        #[arg(long)]
        threads: Option<usize>,
        #[command(flatten)]
        hops: hops::HopOptions,
    },
    /// Print the hops of a request `lanes up` routed, as a tree: gateway and sidecars,
    /// the lane asked for, the lane that served, fallbacks, statuses and times.
    Trace {
        /// The trace: its trace-id (32 hex digits, as in its `traceparent`), or the
        /// value of its trace header (`my-request-id`) when it came without a
        /// `traceparent`.
        #[arg(required_unless_present = "last", conflicts_with = "last")]
        trace_id: Option<String>,
        /// The newest request's trace.
        #[arg(long)]
        last: bool,
        /// Print the hops as JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Serve the dashboard (lanes map, releases and their controls) on this machine
    /// against a kubeconfig context: a cluster with the Lanes operator, or `lanes up`.
    Dashboard {
        /// The kubeconfig context (default: the current one).
        #[arg(long)]
        context: Option<String>,
        /// Where to serve it.
        #[arg(long, default_value = "127.0.0.1:3100")]
        address: SocketAddr,
    },
    /// Run the lane and rollout controllers against a Kubernetes cluster (in-cluster
    /// config, or KUBECONFIG). Replicas elect a leader on a Lease; stops cleanly on
    /// SIGINT or SIGTERM.
    Operator {
        /// What the lane groups are written as: `asm`, `istio` or `gateway-api`.
        #[arg(long, default_value = "asm")]
        flavor: lanes_compile::Flavor,
        /// Metrics (`/metrics`) and health (`/healthz`, `/readyz`) listen address.
        #[arg(long, default_value = "0.0.0.0:9090")]
        metrics_addr: SocketAddr,
        /// Namespace of the leader-election Lease.
        #[arg(long, env = "POD_NAMESPACE", default_value = "lanes-system")]
        lease_namespace: String,
        /// Name of the leader-election Lease.
        #[arg(long, default_value = "lanes-operator")]
        lease_name: String,
        /// This replica's identity in the Lease (default: the pod name, else the host's).
        #[arg(long, env = "POD_NAME")]
        identity: Option<String>,
        /// Seconds a lease stays valid after each renewal.
        #[arg(long, default_value_t = 15)]
        lease_seconds: u64,
        /// Log format.
        #[arg(long, value_enum, default_value_t = operator_cmd::LogFormat::Json)]
        log_format: operator_cmd::LogFormat,
        /// Serve the Deployment admission webhook over TLS with the certificate and key
        /// in this directory (`tls.crt`, `tls.key`: a mounted `kubernetes.io/tls` Secret).
        #[arg(long)]
        webhook_cert_dir: Option<std::path::PathBuf>,
        /// The webhook's listen address.
        #[arg(long, default_value = "0.0.0.0:9443")]
        webhook_addr: SocketAddr,
        /// A file holding the bearer token sent to Prometheus with `prometheus` analysis
        /// queries (a mounted Secret); read once at start.
        #[arg(long)]
        prometheus_token_file: Option<std::path::PathBuf>,
        /// The cluster's Prometheus, scraping the mesh's sidecars (`http://` or
        /// `https://` URL): the built-in `successRate` and `latencyP99` read Istio's
        /// standard series from it. Without it they see no requests (no verdict).
        #[arg(long, value_parser = operator_cmd::prometheus_url)]
        mesh_prometheus: Option<String>,
    },
}

/// `lanes rollout` subcommands.
#[derive(Debug, Subcommand)]
enum RolloutAction {
    /// Show the release state (step i/n, state, canary ready vs desired, revisions).
    Status {
        /// rollout/NAME.
        target: String,
        /// Namespace.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// Print a line per change until the release ends.
        #[arg(short = 'w', long)]
        watch: bool,
    },
    /// Show the release, its steps, and the canary's and the stable pods.
    Describe {
        /// rollout/NAME.
        target: String,
        /// Namespace.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
    },
    /// Approve a release waiting in StepPaused (with --to-step, jump to that step).
    Approve {
        /// rollout/NAME.
        target: String,
        /// Namespace.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// Go on to step N (1-based; back or forward) instead of the next one, as a status
        /// patch of Kruise's nextStepIndex does.
        #[arg(long = "to-step", value_name = "N")]
        to_step: Option<i32>,
    },
    /// Cancel a release: the workload goes back to its stable template (with
    /// --to-revision, to that revision of its history; also for deployment/NAME).
    Undo {
        /// rollout/NAME or deployment/NAME.
        target: String,
        /// Namespace.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// The revision to go back to (`lanes rollout history` lists them).
        #[arg(long = "to-revision", value_name = "N")]
        to_revision: Option<i64>,
    },
    /// List a workload's revisions (with --revision, show that one's pod template).
    History {
        /// rollout/NAME or deployment/NAME.
        target: String,
        /// Namespace.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// The revision to show.
        #[arg(long, value_name = "N")]
        revision: Option<i64>,
    },
    /// Restart a workload's pods (a new revision; under a Rollout, a release).
    Restart {
        /// rollout/NAME or deployment/NAME.
        target: String,
        /// Namespace.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
    },
    /// Hold a release where it stands.
    Pause {
        /// rollout/NAME.
        target: String,
        /// Namespace.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
    },
    /// Let a paused release go on.
    Resume {
        /// rollout/NAME.
        target: String,
        /// Namespace.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
    },
}

/// A LaneRelease and its namespace.
#[derive(Debug, clap::Args)]
struct ReleaseTarget {
    /// lanerelease/NAME or NAME.
    target: String,
    /// Namespace.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
}

/// `lanes release` subcommands.
#[derive(Debug, Subcommand)]
enum ReleaseAction {
    /// Show the release: phase, step, and each member's state.
    Status(ReleaseTarget),
    /// Move every member on from the step waiting for approval.
    Approve(ReleaseTarget),
    /// Roll every member of the release under way back.
    Undo(ReleaseTarget),
    /// Hold the release where it stands.
    Pause(ReleaseTarget),
    /// Let a paused release go on.
    Resume(ReleaseTarget),
}

/// `lanes set` subcommands.
#[derive(Debug, Subcommand)]
enum SetWhat {
    /// Set container images: `lanes set image deployment/NAME CONTAINER=IMAGE...`.
    Image {
        /// deployment/NAME.
        target: String,
        /// CONTAINER=IMAGE pairs.
        #[arg(required = true)]
        images: Vec<String>,
        /// Namespace.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
    },
}

/// How `lanes patch` reads its patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PatchKind {
    /// Strategic merge patch: lists of containers, env, ports merge by key.
    Strategic,
    /// JSON merge patch (RFC 7386).
    Merge,
    /// JSON patch (RFC 6902).
    Json,
}

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Multi-document YAML.
    Yaml,
    /// A JSON `List`.
    Json,
}

/// Where `lanes up` serves its API unless told otherwise.
const DEFAULT_SERVER: &str = "http://127.0.0.1:7070";

/// Whether kubectl would find a cluster: `KUBECONFIG`, or `~/.kube/config`.
fn has_kubeconfig() -> bool {
    std::env::var_os("KUBECONFIG").is_some_and(|v| !v.is_empty())
        || std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".kube/config"))
            .is_some_and(|p| p.is_file())
}

/// The allocator: the compiler, the API server and the proxy allocate and free many
/// small objects, which mimalloc serves faster than the system's malloc (see the
/// README's benchmarks).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The API client (kube-rs) runs its connection task on this runtime, whichever
    // runtime a command then drives its requests from.
    let Ok(background) = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    else {
        eprintln!("error: cannot start the async runtime");
        return ExitCode::FAILURE;
    };
    let _entered = background.enter();
    let client = || {
        let state_dir = std::env::var_os("LANES_STATE_DIR")
            .map_or_else(|| PathBuf::from(token::DEFAULT_STATE_DIR), PathBuf::from);
        let token = token::discover(cli.token.clone(), &state_dir);
        match &cli.server {
            Some(server) => lanes_server::Client::new(server, token),
            None if has_kubeconfig() => background.block_on(lanes_server::Client::infer()),
            None => lanes_server::Client::new(DEFAULT_SERVER, token),
        }
    };
    let result = match cli.command {
        Command::Up {
            ref state_dir,
            no_auth,
            recover,
            max_replicas,
            api,
            gateway,
            flavor,
            ref pod_network,
            ref config,
            ref pod_user,
            ref hops,
        } => up::parse_pod_network(pod_network)
            .map_err(anyhow::Error::msg)
            .and_then(|pod_network| {
                up::run(up::UpOptions {
                    state_dir: state_dir.clone(),
                    api,
                    gateway,
                    auth: if no_auth {
                        up::AuthOption::None
                    } else {
                        cli.token
                            .clone()
                            .map_or(up::AuthOption::StateDir, up::AuthOption::Given)
                    },
                    flavor,
                    pod_network,
                    config: config.clone(),
                    pod_user: pod_user.clone(),
                    recover,
                    max_replicas,
                    hops: hops.clone(),
                })
            }),
        Command::Sample => sample::run(),
        Command::Echo => sample::run_echo(),
        Command::PodExec { ref argv } => pod_exec::run(argv),
        Command::Crds => offline::to_yaml_stream(&lanes_model::crds()).map(|text| {
            print!("{text}");
            ExitCode::SUCCESS
        }),
        Command::Demo => demo::run(),
        Command::Kubeconfig => {
            let state_dir = std::env::var_os("LANES_STATE_DIR")
                .map_or_else(|| PathBuf::from(token::DEFAULT_STATE_DIR), PathBuf::from);
            kubeconfig::print(&state_dir).map(|()| ExitCode::SUCCESS)
        }
        Command::Rollout { ref action } => {
            client().map_err(Into::into).and_then(|c| match action {
                RolloutAction::Status {
                    target,
                    namespace,
                    watch,
                } => rollout_cmd::status(&c, target, namespace, *watch),
                RolloutAction::Approve {
                    target,
                    namespace,
                    to_step,
                } => rollout_cmd::approve(&c, target, namespace, *to_step),
                RolloutAction::Describe { target, namespace } => {
                    rollout_cmd::describe(&c, target, namespace)
                }
                RolloutAction::Undo {
                    target,
                    namespace,
                    to_revision: None,
                } => rollout_cmd::undo(&c, target, namespace),
                RolloutAction::Undo {
                    target,
                    namespace,
                    to_revision: Some(n),
                } => rollout_cmd::undo_to_revision(&c, target, namespace, *n),
                RolloutAction::History {
                    target,
                    namespace,
                    revision,
                } => rollout_cmd::history(&c, target, namespace, *revision),
                RolloutAction::Restart { target, namespace } => {
                    rollout_cmd::restart(&c, target, namespace)
                }
                RolloutAction::Pause { target, namespace } => {
                    rollout_cmd::set_paused(&c, target, namespace, Control::Pause)
                }
                RolloutAction::Resume { target, namespace } => {
                    rollout_cmd::set_paused(&c, target, namespace, Control::Resume)
                }
            })
        }
        Command::Release { ref action } => {
            client().map_err(Into::into).and_then(|c| match action {
                ReleaseAction::Status(t) => release_cmd::status(&c, &t.target, &t.namespace),
                ReleaseAction::Approve(t) => {
                    release_cmd::control(&c, &t.target, &t.namespace, Control::Approve)
                }
                ReleaseAction::Undo(t) => {
                    release_cmd::control(&c, &t.target, &t.namespace, Control::Undo)
                }
                ReleaseAction::Pause(t) => {
                    release_cmd::control(&c, &t.target, &t.namespace, Control::Pause)
                }
                ReleaseAction::Resume(t) => {
                    release_cmd::control(&c, &t.target, &t.namespace, Control::Resume)
                }
            })
        }
        Command::Set {
            what:
                SetWhat::Image {
                    ref target,
                    ref images,
                    ref namespace,
                },
        } => client()
            .map_err(Into::into)
            .and_then(|c| rollout_cmd::set_image(&c, target, images, namespace)),
        Command::Logs {
            ref pod,
            ref namespace,
            previous,
        } => client()
            .map_err(Into::into)
            .and_then(|c| cli::logs(&c, namespace, pod, previous)),
        Command::Apply { ref files } => client()
            .map_err(Into::into)
            .and_then(|c| cli::apply(&c, files)),
        Command::Get {
            ref kinds,
            ref name,
            ref namespace,
            all_namespaces,
            ref selector,
            output,
        } => client().map_err(Into::into).and_then(|c| {
            cli::get(
                &c,
                &cli::GetOptions {
                    kinds: kinds.clone(),
                    name: name.clone(),
                    namespace: namespace.clone(),
                    all_namespaces,
                    selector: selector.clone(),
                    output,
                },
            )
        }),
        Command::Describe {
            ref kind,
            ref name,
            ref namespace,
        } => client()
            .map_err(Into::into)
            .and_then(|c| cli::describe(&c, kind, name, namespace)),
        Command::Delete {
            ref kind,
            ref names,
            ref namespace,
            ref files,
            wait,
            timeout,
        } => client().map_err(Into::into).and_then(|c| {
            let wait = wait.then_some(std::time::Duration::from_secs(timeout));
            cli::delete(&c, kind.as_deref(), names, namespace, files, wait)
        }),
        Command::Patch {
            ref kind,
            ref name,
            ref namespace,
            ref patch,
            patch_type,
        } => {
            let ptype = match patch_type {
                PatchKind::Strategic => PatchType::Strategic,
                PatchKind::Merge => PatchType::Merge,
                PatchKind::Json => PatchType::Json,
            };
            client()
                .map_err(Into::into)
                .and_then(|c| cli::patch(&c, kind, name, namespace, patch, ptype))
        }
        Command::Render {
            ref files,
            flavor,
            output,
            routes,
        } => offline::render(files, flavor, output, routes),
        Command::Lint {
            ref files,
            cluster,
            flavor,
        } => offline::lint(files, cluster, flavor),
        Command::Proxy {
            ref config,
            threads,
            ref hops,
        } => proxy_cmd::run(config, threads, hops),
        Command::Trace {
            ref trace_id,
            last,
            json,
        } => client()
            .map_err(Into::into)
            .and_then(|c| cli::trace(&c, trace_id.as_deref(), last, json)),
        Command::Dashboard {
            ref context,
            address,
        } => dashboard_cmd::run(context.clone(), address),
        Command::Operator {
            flavor,
            metrics_addr,
            ref lease_namespace,
            ref lease_name,
            ref identity,
            lease_seconds,
            log_format,
            ref webhook_cert_dir,
            webhook_addr,
            ref prometheus_token_file,
            ref mesh_prometheus,
        } => operator_cmd::run(operator_cmd::Options {
            flavor,
            metrics_addr,
            lease_namespace: lease_namespace.clone(),
            lease_name: lease_name.clone(),
            identity: identity.clone(),
            lease_seconds,
            log_format,
            webhook: webhook_cert_dir
                .clone()
                .map(|cert_dir| operator_cmd::Webhook {
                    addr: webhook_addr,
                    cert_dir,
                }),
            prometheus_token_file: prometheus_token_file.clone(),
            mesh_prometheus: mesh_prometheus.clone(),
        }),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
