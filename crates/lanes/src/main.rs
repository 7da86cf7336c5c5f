//! The `lanes` command line.

mod offline;
mod proxy_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Lanes: end-to-end canary releases for microservice meshes.
#[derive(Debug, Parser)]
#[command(name = "lanes", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the Istio objects that the lane groups in the given manifests generate
    /// (offline: each Deployment with replicas > 0 counts as ready pods).
    Render {
        /// Files or directories of manifests (`.yaml`/`.yml`), `-` for standard input.
        #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
        files: Vec<PathBuf>,
        /// Istio dialect: `asm` (fallback, $asm-label) or `istio` (open-source Istio).
        #[arg(long, default_value = "asm")]
        flavor: lanes_compile::Flavor,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Yaml)]
        output: Format,
        /// Print the data plane's route table instead of the Istio objects.
        #[arg(long)]
        routes: bool,
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
    },
    /// Check the manifests for cross-reference problems (missing workloads, services,
    /// lane groups; unreachable hosts; clashing ingress rules). Exit 1 on any error.
    Lint {
        /// Files or directories of manifests (`.yaml`/`.yml`), `-` for standard input.
        #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
        files: Vec<PathBuf>,
    },
}

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Multi-document YAML.
    Yaml,
    /// A JSON `List`.
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Render {
            files,
            flavor,
            output,
            routes,
        } => offline::render(&files, flavor, output, routes),
        Command::Lint { files } => offline::lint(&files),
        Command::Proxy { config, threads } => proxy_cmd::run(&config, threads),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
