//! Images to local commands: any image whose repository ends in `go-http-sample` runs
//! the built-in sample service; the Gateway API conformance echo images
//! (`gateway-api/echo-basic`, `gateway-api/echo-advanced`) the built-in echo server;
//! others come from the `[images]` table of `lanes.toml`; a container that names its own
//! `command` runs that.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A command: the program and its arguments.
pub type CommandLine = Vec<String>;

/// `lanes.toml`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LanesToml {
    /// Image (`repository[:tag]`) → command, as an array or a shell string.
    #[serde(default)]
    pub images: BTreeMap<String, CommandSpec>,
}

/// A command as written in `lanes.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum CommandSpec {
    /// Run by `sh -c`.
    Shell(String),
    /// Program and arguments.
    Argv(Vec<String>),
}

impl LanesToml {
    /// Reads `lanes.toml`; a missing file is an empty table.
    pub fn load(path: &Path) -> Result<LanesToml, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(LanesToml::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }
}

/// How a container runs locally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// The built-in sample service.
    Sample,
    /// The built-in Gateway API conformance echo server ([`crate::echo`]), on its port.
    Echo {
        /// The HTTP port: the first `--port` of the container's args, else 3000
        /// (`echo-basic`'s default).
        port: u16,
        /// The gRPC port: `--grpc` of the args (`echo-advanced`), if any.
        grpc: Option<u16>,
    },
    /// A command.
    Command(CommandLine),
}

/// The repository of an image (no tag, no digest).
pub fn repository(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    match no_digest.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => no_digest,
    }
}

/// Resolves a container's image (and `command`/`args`) to what runs; `Err` says what to
/// add to `lanes.toml`.
pub fn resolve(
    table: &LanesToml,
    image: &str,
    command: &[String],
    args: &[String],
) -> Result<Resolved, String> {
    if repository(image).ends_with("go-http-sample") {
        return Ok(Resolved::Sample);
    }
    if is_conformance_echo(image) && command.is_empty() {
        return Ok(Resolved::Echo {
            port: echo_port(args, "--port").unwrap_or(3000),
            grpc: echo_port(args, "--grpc"),
        });
    }
    let spec = table
        .images
        .get(image)
        .or_else(|| table.images.get(repository(image)));
    if let Some(spec) = spec {
        let mut argv = match spec {
            CommandSpec::Shell(s) => vec!["sh".to_string(), "-c".to_string(), s.clone()],
            CommandSpec::Argv(v) => v.clone(),
        };
        if argv.is_empty() {
            return Err(format!(
                "lanes.toml maps image {image:?} to an empty command"
            ));
        }
        argv.extend(args.iter().cloned());
        return Ok(Resolved::Command(argv));
    }
    if !command.is_empty() {
        let mut argv = command.to_vec();
        argv.extend(args.iter().cloned());
        return Ok(Resolved::Command(argv));
    }
    Err(format!(
        "no local command for image {image:?}: add it to the [images] table of lanes.toml, e.g. \"{}\" = [\"/path/to/program\", \"--flag\"]",
        repository(image)
    ))
}

/// Whether `image` is one of the Gateway API's conformance echo servers.
pub fn is_conformance_echo(image: &str) -> bool {
    let repo = repository(image);
    ["gateway-api/echo-basic", "gateway-api/echo-advanced"]
        .iter()
        .any(|e| repo.ends_with(e))
}

/// The port an echo container's args name by `flag` (`--port`, `--grpc`): its first
/// `FLAG=N` (or `FLAG N`).
pub fn echo_port(args: &[String], flag: &str) -> Option<u16> {
    let mut words = args.iter();
    while let Some(w) = words.next() {
        let value = match w.strip_prefix(flag) {
            Some(rest) if rest.starts_with('=') => rest[1..].to_string(),
            Some("") => words.next()?.clone(),
            _ => continue,
        };
        return value.parse().ok();
    }
    None
}

/// The default place of `lanes.toml`: the current directory.
pub fn default_path() -> PathBuf {
    PathBuf::from("lanes.toml")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_conformance_echo_images_run_the_built_in_echo_on_their_port() {
        let t = LanesToml::default();
        let args: Vec<String> = ["--tcp=9090", "--port=8080", "--grpc=7070", "--port=8443"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            resolve(
                &t,
                "registry.k8s.io/gateway-api/echo-advanced:v1.5.1",
                &[],
                &args
            ),
            Ok(Resolved::Echo {
                port: 8080,
                grpc: Some(7070)
            })
        );
        assert_eq!(
            resolve(
                &t,
                "registry.k8s.io/gateway-api/echo-basic:v1.5.1",
                &[],
                &[]
            ),
            Ok(Resolved::Echo {
                port: 3000,
                grpc: None
            })
        );
        assert_eq!(
            echo_port(&["--port".into(), "9000".into()], "--port"),
            Some(9000)
        );
    }

    #[test]
    fn resolves_sample_table_and_command() {
        let t: LanesToml = toml::from_str(
            "[images]\n\"example.com/api\" = [\"/bin/api\", \"-v\"]\n\"nginx:1.25\" = \"nginx -g 'daemon off;'\"\n",
        )
        .unwrap();
        assert_eq!(
            resolve(
                &t,
                "registry.cn-beijing.aliyuncs.com/aliacs-app-catalog/go-http-sample:1.0",
                &[],
                &[]
            ),
            Ok(Resolved::Sample)
        );
        assert_eq!(
            resolve(&t, "example.com/api:3", &[], &["--x".into()]),
            Ok(Resolved::Command(vec![
                "/bin/api".into(),
                "-v".into(),
                "--x".into()
            ]))
        );
        assert_eq!(
            resolve(&t, "nginx:1.25", &[], &[]),
            Ok(Resolved::Command(vec![
                "sh".into(),
                "-c".into(),
                "nginx -g 'daemon off;'".into()
            ]))
        );
        assert_eq!(
            resolve(&t, "busybox", &["sleep".into()], &["9".into()]),
            Ok(Resolved::Command(vec!["sleep".into(), "9".into()]))
        );
        let err = resolve(&t, "ghcr.io/x/y:1", &[], &[]).unwrap_err();
        assert!(err.contains("\"ghcr.io/x/y\" = ["), "{err}");
        assert_eq!(repository("localhost:5000/a/b:1.2"), "localhost:5000/a/b");
        assert_eq!(repository("localhost:5000/a/b"), "localhost:5000/a/b");
    }
}
