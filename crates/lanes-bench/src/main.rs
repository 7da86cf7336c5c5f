//! `lanes-bench`: the tools `bench/run` drives. `upstream` is a minimal HTTP server that
//! answers every request with a short body naming itself; `load` sends requests over
//! keep-alive HTTP/1.1 connections, in a closed loop (each connection sends its next
//! request when the last answer arrives: throughput) or an open loop (requests sent on a
//! fixed schedule, latency measured from the scheduled time so a slow server cannot hide
//! its queueing), and prints the result as JSON.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::{Parser, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A minimal upstream: answers every request with `<name>`.
    Upstream {
        /// Listen address.
        #[arg(long)]
        listen: SocketAddr,
        /// Name in answers.
        #[arg(long)]
        name: String,
    },
    /// Send load and print the result as JSON.
    Load {
        /// Where to send.
        #[arg(long)]
        target: SocketAddr,
        /// Closed loop (throughput) or open loop (latency at a fixed rate).
        #[arg(long, value_enum)]
        mode: Mode,
        /// Connections.
        #[arg(long, default_value_t = 16)]
        connections: usize,
        /// Seconds to run.
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        /// Requests per second in all (open loop).
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        /// Host header (and the authority of the request).
        #[arg(long, default_value = "svc:8000")]
        host: String,
        /// Path.
        #[arg(long, default_value = "/")]
        path: String,
        /// Extra header `name: value`; every second request gets the alternate value if
        /// one is given as `name: a|b`.
        #[arg(long)]
        header: Vec<String>,
        /// Header carrying a unique id per request (for trace correlation).
        #[arg(long)]
        trace_header: Option<String>,
    },
    /// Print a synthetic mesh (one lane group, its lanes, services and ready pods) as
    /// a manifest stream, for the scale benchmark.
    Synth {
        /// Services in the group.
        #[arg(long, default_value_t = 1000)]
        services: usize,
        /// Lanes, the baseline included.
        #[arg(long, default_value_t = 20)]
        lanes: usize,
        /// Leave the Pods out.
        #[arg(long)]
        no_pods: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Closed,
    Open,
}

async fn upstream(listen: SocketAddr, name: String) -> Result<()> {
    let l = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let body = Bytes::from(name);
    loop {
        let (s, _) = l.accept().await?;
        let _ = s.set_nodelay(true);
        let body = body.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let body = body.clone();
                async move {
                    let _ = req.into_body().collect().await;
                    Ok::<_, Infallible>(Response::new(Full::new(body)))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(s), svc)
                .await;
        });
    }
}

struct Shared {
    ok: AtomicU64,
    errors: AtomicU64,
    seq: AtomicU64,
}

#[derive(Clone)]
struct LoadSpec {
    target: SocketAddr,
    host: String,
    path: String,
    headers: Vec<(String, Vec<String>)>,
    trace: Option<String>,
}

fn request(spec: &LoadSpec, n: u64) -> Request<Full<Bytes>> {
    let mut b = Request::get(spec.path.as_str()).header("host", spec.host.as_str());
    for (name, values) in &spec.headers {
        b = b.header(name.as_str(), values[(n as usize) % values.len()].as_str());
    }
    if let Some(t) = &spec.trace {
        b = b.header(t.as_str(), format!("bench-{n}"));
    }
    b.body(Full::new(Bytes::new())).unwrap_or_default()
}

async fn connect(spec: &LoadSpec) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let s = TcpStream::connect(spec.target).await?;
    s.set_nodelay(true)?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s)).await?;
    tokio::spawn(conn);
    Ok(send)
}

/// One connection's loop; returns its latency histogram (µs).
async fn worker(
    spec: LoadSpec,
    shared: Arc<Shared>,
    deadline: Instant,
    schedule: Option<(Instant, Duration)>,
    mut hist: Histogram<u64>,
) -> Histogram<u64> {
    let mut send = None;
    let mut next = schedule.map(|(start, _)| start);
    while Instant::now() < deadline {
        let intended = match (next, schedule) {
            (Some(at), Some((_, every))) => {
                let now = Instant::now();
                if at > now {
                    tokio::time::sleep(at - now).await;
                }
                next = Some(at + every);
                at
            }
            _ => Instant::now(),
        };
        if intended >= deadline {
            break;
        }
        if send.is_none() {
            match connect(&spec).await {
                Ok(s) => send = Some(s),
                Err(_) => {
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let Some(s) = send.as_mut() else { continue };
        let n = shared.seq.fetch_add(1, Ordering::Relaxed);
        let ok = match s.send_request(request(&spec, n)).await {
            Ok(resp) => {
                let good = resp.status().is_success();
                good && resp.into_body().collect().await.is_ok()
            }
            Err(_) => false,
        };
        if ok {
            shared.ok.fetch_add(1, Ordering::Relaxed);
            let us = intended.elapsed().as_micros().max(1) as u64;
            let _ = hist.record(us.min(60_000_000));
        } else {
            shared.errors.fetch_add(1, Ordering::Relaxed);
            send = None;
        }
    }
    hist
}

async fn load(
    spec: LoadSpec,
    mode: Mode,
    connections: usize,
    duration: Duration,
    rate: u64,
) -> Result<serde_json::Value> {
    let shared = Arc::new(Shared {
        ok: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        seq: AtomicU64::new(0),
    });
    let start = Instant::now();
    let deadline = start + duration;
    let empty = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut tasks = Vec::new();
    for i in 0..connections {
        let schedule = match mode {
            Mode::Closed => None,
            Mode::Open => {
                let every = Duration::from_secs_f64(connections as f64 / rate.max(1) as f64);
                // Spread the connections' schedules over one period.
                Some((start + every.mul_f64(i as f64 / connections as f64), every))
            }
        };
        tasks.push(tokio::spawn(worker(
            spec.clone(),
            shared.clone(),
            deadline,
            schedule,
            empty.clone(),
        )));
    }
    let mut hist = empty.clone();
    for t in tasks {
        hist.add(t.await?)?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let ok = shared.ok.load(Ordering::Relaxed);
    let q = |p: f64| hist.value_at_quantile(p) as f64 / 1000.0;
    Ok(serde_json::json!({
        "mode": format!("{mode:?}").to_lowercase(),
        "connections": connections,
        "seconds": elapsed,
        "requests": ok,
        "errors": shared.errors.load(Ordering::Relaxed),
        "rps": ok as f64 / elapsed,
        "latency_ms": {"p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p999": q(0.999), "max": hist.max() as f64 / 1000.0},
    }))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Upstream { listen, name } => rt.block_on(upstream(listen, name)),
        Command::Synth {
            services,
            lanes,
            no_pods,
        } => {
            let text = lanes_model::synthetic::mesh(lanes_model::synthetic::Shape {
                services,
                lanes,
                pods: !no_pods,
            });
            std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes())?;
            Ok(())
        }
        Command::Load {
            target,
            mode,
            connections,
            duration,
            rate,
            host,
            path,
            header,
            trace_header,
        } => {
            let headers = header
                .iter()
                .map(|h| {
                    let (k, v) = h
                        .split_once(':')
                        .with_context(|| format!("header {h:?} is not name: value"))?;
                    Ok((
                        k.trim().to_string(),
                        v.trim().split('|').map(str::to_string).collect(),
                    ))
                })
                .collect::<Result<Vec<_>>>()?;
            let spec = LoadSpec {
                target,
                host,
                path,
                headers,
                trace: trace_header,
            };
            let result = rt.block_on(load(
                spec,
                mode,
                connections.max(1),
                Duration::from_secs_f64(duration),
                rate,
            ))?;
            println!("{result}");
            Ok(())
        }
    }
}
