//! Offline commands: `lanes render` and `lanes lint` read manifests, not a server.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use lanes_compile::{Flavor, compile};
use lanes_model::decode::{Diagnostic, Loaded, decode_bytes, find_duplicates, load_paths};
use lanes_model::mesh::assumed_pods;

use crate::Format;

/// Loads manifests from files, directories and `-` (standard input). On failure the
/// diagnostics are printed to standard error.
pub fn load(files: &[PathBuf]) -> Result<Vec<Loaded>, ExitCode> {
    let (stdin, paths): (Vec<&PathBuf>, Vec<&PathBuf>) =
        files.iter().partition(|p| p.as_os_str() == "-");
    let paths: Vec<PathBuf> = paths.into_iter().cloned().collect();
    let mut result = load_paths(&paths);
    if !stdin.is_empty() {
        let mut bytes = Vec::new();
        let limit = lanes_model::decode::MAX_FILE_BYTES;
        if let Err(e) = std::io::stdin().take(limit + 1).read_to_end(&mut bytes) {
            eprintln!("-: cannot read standard input: {e}");
            return Err(ExitCode::FAILURE);
        }
        let (objs, mut diags) = if bytes.len() as u64 > limit {
            (
                Vec::new(),
                vec![Diagnostic::file_error(
                    "-",
                    "standard input is larger than the limit",
                )],
            )
        } else {
            decode_bytes("-", &bytes)
        };
        result = match result {
            Ok(mut loaded) => {
                loaded.extend(objs);
                diags.extend(find_duplicates(&loaded));
                if diags.iter().any(Diagnostic::is_error) {
                    Err(diags)
                } else {
                    Ok(loaded)
                }
            }
            Err(mut prev) => {
                prev.extend(diags);
                Err(prev)
            }
        };
    }
    result.map_err(|diags| {
        for d in &diags {
            eprintln!("{d}");
        }
        ExitCode::FAILURE
    })
}

/// Serialises values as a multi-document YAML stream.
pub fn to_yaml_stream<T: serde::Serialize>(items: &[T]) -> Result<String> {
    let mut out = String::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&serde_saphyr::to_string(item).context("serialising YAML")?);
    }
    Ok(out)
}

/// `lanes render`.
pub fn render(files: &[PathBuf], flavor: Flavor, format: Format, routes: bool) -> Result<ExitCode> {
    let loaded = match load(files) {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    let objects: Vec<_> = loaded.iter().map(|l| &l.object).collect();
    let pods = assumed_pods(objects.iter().copied());
    let output = compile(&objects, &pods, flavor);
    for w in &output.warnings {
        eprintln!("warning: {w}");
    }
    let text = if routes {
        match format {
            Format::Yaml => serde_saphyr::to_string(&output.routes)?,
            Format::Json => serde_json::to_string_pretty(&output.routes)? + "\n",
        }
    } else {
        match format {
            Format::Yaml => to_yaml_stream(&output.objects)?,
            Format::Json => {
                let list = serde_json::json!({
                    "apiVersion": "v1",
                    "kind": "List",
                    "items": output.objects,
                });
                serde_json::to_string_pretty(&list)? + "\n"
            }
        }
    };
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// `lanes lint`, for a cluster or for `lanes up`.
pub fn lint(files: &[PathBuf], cluster: bool, flavor: Flavor) -> Result<ExitCode> {
    let loaded = match load(files) {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    let target = match cluster {
        true => lanes_model::lint::Target::Cluster,
        false => lanes_model::lint::Target::LanesUp,
    };
    let mut diags = lanes_model::lint::lint_for(&loaded, target);
    if flavor == Flavor::GatewayApi {
        diags.extend(lanes_model::lint::gateway_api_limits(&loaded));
        let objects: Vec<_> = loaded.iter().map(|l| &l.object).collect();
        let pods = assumed_pods(objects.iter().copied());
        let output = compile(&objects, &pods, flavor);
        diags.extend(
            output
                .warnings
                .into_iter()
                .map(|w| lanes_model::Diagnostic {
                    severity: lanes_model::Severity::Warning,
                    file: "(gateway-api flavor)".to_string(),
                    doc: None,
                    object: None,
                    path: None,
                    message: w,
                }),
        );
    }
    let mut stdout = std::io::stdout().lock();
    for d in &diags {
        writeln!(stdout, "{d}")?;
    }
    let errors = diags.iter().filter(|d| d.is_error()).count();
    let warnings = diags.len() - errors;
    eprintln!(
        "{} objects checked: {errors} error(s), {warnings} warning(s)",
        loaded.len()
    );
    Ok(if errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
