//! `lanes demo`: the article's walkthrough end to end, on a private `lanes up` with free
//! ports and a temporary state directory. Every command is printed with its real output,
//! every answer is checked against what the article shows (pod addresses aside), and the
//! exit status says whether all held. Every pod started is stopped at the end.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

const SEED: [(&str, &str); 4] = [
    (
        "00-gateway.yaml",
        include_str!("../../../examples/seed/00-gateway.yaml"),
    ),
    (
        "10-apps.yaml",
        include_str!("../../../examples/seed/10-apps.yaml"),
    ),
    (
        "20-lanes.yaml",
        include_str!("../../../examples/seed/20-lanes.yaml"),
    ),
    (
        "30-rollouts.yaml",
        include_str!("../../../examples/seed/30-rollouts.yaml"),
    ),
];

fn patch_image(version: &str) -> String {
    format!(
        r#"{{"spec": {{"template": {{"spec": {{"containers": [{{"name": "default", "image": "registry.cn-beijing.aliyuncs.com/aliacs-app-catalog/go-http-sample:{version}"}}]}}}}}}}}"#
    )
}

struct Demo {
    exe: PathBuf,
    api: String,
    /// The instance's state directory, where the CLI finds its API token.
    state: PathBuf,
    gateway: String,
    seed: PathBuf,
    failures: Vec<String>,
    checks: usize,
}

impl Demo {
    fn say(&self, text: &str) {
        println!("\n# {text}");
    }

    /// Runs `lanes ARGS` against the private instance, printing the command and output.
    fn lanes(&self, args: &[&str]) -> Result<String> {
        let shown: Vec<String> = args
            .iter()
            .map(|a| {
                if a.contains(' ') || a.contains('{') {
                    format!("'{a}'")
                } else {
                    a.to_string()
                }
            })
            .collect();
        println!(
            "$ lanes {}",
            shown
                .join(" ")
                .replace(&self.seed.display().to_string(), "examples/seed")
        );
        let out = Command::new(&self.exe)
            .args(args)
            .env("LANES_SERVER", &self.api)
            .env("LANES_STATE_DIR", &self.state)
            .output()
            .with_context(|| format!("cannot run lanes {}", args.join(" ")))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        print!("{stdout}");
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            print!("{stderr}");
            bail!("lanes {} failed: {}", args.join(" "), stderr.trim());
        }
        Ok(stdout)
    }

    fn quiet(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.exe)
            .args(args)
            .env("LANES_SERVER", &self.api)
            .env("LANES_STATE_DIR", &self.state)
            .output()?;
        if !out.status.success() {
            bail!(
                "lanes {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn check(&mut self, ok: bool, what: &str) {
        self.checks += 1;
        if ok {
            println!("  ✓ {what}");
        } else {
            println!("  ✗ {what}");
            self.failures.push(what.to_string());
        }
    }

    /// `curl $GATEWAY/mock -H 'x-asm-prefer-tag: LANE' -H 'my-request-id: ID'`, checked
    /// against the versions the article shows.
    fn curl(&mut self, lane: &str, id: &str, want: [&str; 3]) -> Result<()> {
        println!("$ curl ${{GATEWAY}}/mock -H 'x-asm-prefer-tag: {lane}' -H 'my-request-id: {id}'");
        let parse = |body: &str| -> (Vec<String>, Vec<String>) {
            let versions = body
                .split("(version: ")
                .skip(1)
                .map(|s| s.split(',').next().unwrap_or("").to_string())
                .collect();
            let apps = body
                .split("-> ")
                .skip(1)
                .map(|s| s.split('(').next().unwrap_or("").to_string())
                .collect();
            (versions, apps)
        };
        // The gateway follows the controllers within moments: give it a few seconds to
        // route as the rollout now stands before judging the answer.
        let deadline = Instant::now() + Duration::from_secs(10);
        let body = loop {
            let answer = get(&self.gateway, lane, id);
            let done = match &answer {
                Ok(body) => {
                    let (v, a) = parse(body);
                    v == want && a == ["mocka", "mockb", "mockc"]
                }
                Err(_) => false,
            };
            if done || Instant::now() > deadline {
                break answer?;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        println!("{body}");
        let (got, apps) = parse(&body);
        self.check(
            got == want && apps == ["mocka", "mockb", "mockc"],
            &format!(
                "{lane} answers mocka {} -> mockb {} -> mockc {}, as the article shows",
                want[0], want[1], want[2]
            ),
        );
        Ok(())
    }

    fn subsets(&self, svc: &str) -> Result<Vec<String>> {
        let v: Value = serde_json::from_str(&self.quiet(&[
            "get",
            "dr",
            &format!("trafficlabel-dr-rollout-default-{svc}"),
            "-n",
            "istio-system",
            "-o",
            "json",
        ])?)?;
        Ok(v["spec"]["subsets"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Shows the DestinationRules and checks each one's subsets.
    fn destination_rules(&mut self, want: &[(&str, &[&str])]) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let all_ok = want
                .iter()
                .all(|(svc, subsets)| self.subsets(svc).is_ok_and(|s| s == *subsets));
            if all_ok {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        self.lanes(&["get", "dr", "-n", "istio-system", "-o", "yaml"])?;
        for (svc, subsets) in want {
            let got = self.subsets(svc)?;
            self.check(
                got == *subsets,
                &format!("{svc}'s DestinationRule has subsets {subsets:?}"),
            );
        }
        Ok(())
    }

    /// Waits until a Rollout is in `phase` (and `state`, when given).
    fn wait_rollout(&mut self, name: &str, phase: &str, state: Option<&str>) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let v: Value =
                serde_json::from_str(&self.quiet(&["get", "rollout", name, "-o", "json"])?)?;
            let p = v["status"]["phase"].as_str().unwrap_or("");
            let s = v["status"]["canaryStatus"]["currentStepState"]
                .as_str()
                .unwrap_or("");
            if p == phase && state.is_none_or(|w| w == s) {
                break;
            }
            if Instant::now() > deadline {
                self.check(
                    false,
                    &format!("rollout/{name} reaches {phase} {}", state.unwrap_or("")),
                );
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        self.lanes(&["rollout", "status", &format!("rollout/{name}")])?;
        Ok(())
    }

    /// Waits until every Deployment is fully rolled out and available, and the data
    /// plane has caught up.
    fn wait_settled(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let list: Value = serde_json::from_str(&self.quiet(&["get", "deploy", "-o", "json"])?)?;
            let items = list["items"].as_array().cloned().unwrap_or_default();
            let ok = !items.is_empty()
                && items.iter().all(|i| {
                    let want = i["spec"]["replicas"].as_i64().unwrap_or(1);
                    i["status"]["availableReplicas"].as_i64() == Some(want)
                        && i["status"]["replicas"].as_i64() == Some(want)
                });
            if ok {
                std::thread::sleep(Duration::from_millis(500));
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the Deployments did not settle within 90 s");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A GET through the gateway; the body.
fn get(gateway: &str, lane: &str, id: &str) -> Result<String> {
    let addr = gateway.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr)
        .with_context(|| format!("cannot reach the gateway at {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(
        s,
        "GET /mock HTTP/1.1\r\nHost: {addr}\r\nx-asm-prefer-tag: {lane}\r\nmy-request-id: {id}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    if !head.starts_with("HTTP/1.1 200") {
        bail!(
            "the gateway answered {}: {body}",
            head.lines().next().unwrap_or("")
        );
    }
    Ok(body.to_string())
}

fn start_instance(exe: &Path, dir: &Path) -> Result<(Child, String, String)> {
    let second = 100 + (std::process::id() % 150);
    let mut child = Command::new(exe)
        .args([
            "up",
            "--api",
            "127.0.0.1:0",
            "--gateway",
            "127.0.0.1:0",
            "--state-dir",
        ])
        .arg(dir.join("state"))
        .args(["--pod-network", &format!("127.{second}.0.0/16"), "--config"])
        .arg(dir.join("lanes.toml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(
            dir.join("lanes-up.log"),
        )?))
        .spawn()
        .context("cannot start lanes up")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let (mut api, mut gateway) = (String::new(), String::new());
    while api.is_empty() || gateway.is_empty() {
        let Some(Ok(line)) = lines.next() else {
            let _ = child.wait();
            bail!(
                "lanes up stopped early; see {}",
                dir.join("lanes-up.log").display()
            );
        };
        if let Some(a) = line.strip_prefix("lanes up: API listening on ") {
            api = a.to_string();
        }
        if let Some(a) = line.strip_prefix("lanes up: gateway listening on ") {
            gateway = a.to_string();
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Ok((child, api, gateway))
}

fn stop_instance(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn walkthrough(d: &mut Demo) -> Result<()> {
    d.say("Deploy the gateway, the three services, the lane group with its two lanes, and a Rollout per service.");
    let seed = d.seed.display().to_string();
    d.lanes(&["apply", "-f", &seed])?;
    d.wait_settled()?;
    d.lanes(&["get", "po", "-o", "wide"])?;
    d.destination_rules(&[
        ("mocka", &["base"]),
        ("mockb", &["base"]),
        ("mockc", &["base"]),
    ])?;

    d.say("The baseline lane holds v1 of every service; the canary lane is empty, so it falls back to the baseline.");
    d.curl("base", "9999", ["v1", "v1", "v1"])?;
    d.curl("canary", "10000", ["v1", "v1", "v1"])?;

    d.say("Release mocka v2: Kruise Rollout runs it as a canary Deployment in the canary lane.");
    d.lanes(&["patch", "deployment", "mocka-v1", "-p", &patch_image("2.0")])?;
    d.wait_rollout("rollouts-mocka", "Progressing", Some("StepPaused"))?;
    d.wait_settled()?;
    d.destination_rules(&[
        ("mocka", &["base", "canary"]),
        ("mockb", &["base"]),
        ("mockc", &["base"]),
    ])?;
    d.curl("canary", "10001", ["v2", "v1", "v1"])?;

    d.say("Release mockb v2 and mockc v2.");
    d.lanes(&["patch", "deployment", "mockb-v1", "-p", &patch_image("2.0")])?;
    d.lanes(&["patch", "deployment", "mockc-v1", "-p", &patch_image("2.0")])?;
    d.wait_rollout("rollouts-mockb", "Progressing", Some("StepPaused"))?;
    d.wait_rollout("rollouts-mockc", "Progressing", Some("StepPaused"))?;
    d.wait_settled()?;
    d.destination_rules(&[
        ("mocka", &["base", "canary"]),
        ("mockb", &["base", "canary"]),
        ("mockc", &["base", "canary"]),
    ])?;
    d.curl("canary", "10002", ["v2", "v2", "v2"])?;
    d.curl("base", "10003", ["v1", "v1", "v1"])?;

    d.say("mockb v2 is tested: approve it into the baseline.");
    d.lanes(&["rollout", "approve", "rollout/rollouts-mockb"])?;
    d.wait_rollout("rollouts-mockb", "Healthy", None)?;
    d.wait_settled()?;
    d.destination_rules(&[
        ("mocka", &["base", "canary"]),
        ("mockb", &["base"]),
        ("mockc", &["base", "canary"]),
    ])?;
    d.curl("base", "10004", ["v1", "v2", "v1"])?;

    d.say("mocka v2 and mockc v2 are tested: approve them too.");
    d.lanes(&["rollout", "approve", "rollout/rollouts-mocka"])?;
    d.lanes(&["rollout", "approve", "rollout/rollouts-mockc"])?;
    d.wait_rollout("rollouts-mocka", "Healthy", None)?;
    d.wait_rollout("rollouts-mockc", "Healthy", None)?;
    d.wait_settled()?;
    d.destination_rules(&[
        ("mocka", &["base"]),
        ("mockb", &["base"]),
        ("mockc", &["base"]),
    ])?;
    d.curl("base", "10005", ["v2", "v2", "v2"])?;

    d.say("A second release of mocka (v3) goes wrong: undo it mid-way.");
    d.lanes(&[
        "set",
        "image",
        "deployment/mocka-v1",
        "default=registry.cn-beijing.aliyuncs.com/aliacs-app-catalog/go-http-sample:3.0",
    ])?;
    d.wait_rollout("rollouts-mocka", "Progressing", Some("StepPaused"))?;
    d.wait_settled()?;
    d.curl("canary", "10006", ["v3", "v2", "v2"])?;
    d.curl("base", "10007", ["v2", "v2", "v2"])?;
    d.lanes(&["rollout", "undo", "rollout/rollouts-mocka"])?;
    d.wait_rollout("rollouts-mocka", "Healthy", None)?;
    d.wait_settled()?;
    let deploys = d.lanes(&["get", "deploy"])?;
    d.check(
        deploys.lines().skip(1).all(|l| !l.starts_with("mocka-v1-")),
        "the canary Deployment of mocka v3 is gone",
    );
    d.destination_rules(&[("mocka", &["base"])])?;
    d.curl("base", "10008", ["v2", "v2", "v2"])?;
    d.curl("canary", "10009", ["v2", "v2", "v2"])?;
    Ok(())
}

/// Runs the demo; exit 0 only when every check held.
pub fn run() -> Result<ExitCode> {
    let exe = std::env::current_exe().context("cannot find the lanes executable")?;
    let dir = std::env::temp_dir().join(format!("lanes-demo-{}", std::process::id()));
    let seed = dir.join("seed");
    std::fs::create_dir_all(&seed)?;
    for (name, text) in SEED {
        std::fs::write(seed.join(name), text)?;
    }
    std::fs::write(dir.join("lanes.toml"), "[images]\n")?;
    println!(
        "# Starting a private Lanes instance (state in {})",
        dir.display()
    );
    let (mut child, api, gateway) = start_instance(&exe, &dir)?;
    println!("# API {api}, gateway {gateway} (${{GATEWAY}} below)");
    let mut demo = Demo {
        exe,
        api,
        state: dir.join("state"),
        gateway,
        seed,
        failures: Vec::new(),
        checks: 0,
    };
    let result = walkthrough(&mut demo);
    println!("\n# Stopping the instance and its pods.");
    stop_instance(&mut child);
    let _ = std::io::stdout().flush();
    if let Err(e) = result {
        println!("✗ the walkthrough stopped: {e:#}");
        println!(
            "  (the instance's log: {})",
            dir.join("lanes-up.log").display()
        );
        return Ok(ExitCode::FAILURE);
    }
    if demo.failures.is_empty() {
        println!(
            "✓ all {} checks hold: the article's walkthrough, reproduced",
            demo.checks
        );
        let _ = std::fs::remove_dir_all(&dir);
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "✗ {} of {} checks failed:",
            demo.failures.len(),
            demo.checks
        );
        for f in &demo.failures {
            println!("  - {f}");
        }
        println!(
            "  (the instance's log: {})",
            dir.join("lanes-up.log").display()
        );
        Ok(ExitCode::FAILURE)
    }
}
