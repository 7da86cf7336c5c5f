//! Where a pod's logs are kept under a log directory: one definition for the runtime
//! that writes them and the API that serves them.

use std::path::{Path, PathBuf};

/// Which run of a pod's container a log holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Run {
    /// The running one (`<namespace>_<pod>.log`).
    Current,
    /// The current run's rotated part (`.log.1`).
    Rotated,
    /// The run before (`.log.previous`).
    Previous,
}

/// The log file of a pod's run.
pub fn file(logs: &Path, namespace: &str, pod: &str, run: Run) -> PathBuf {
    let suffix = match run {
        Run::Current => "",
        Run::Rotated => ".1",
        Run::Previous => ".previous",
    };
    logs.join(format!("{namespace}_{pod}.log{suffix}"))
}
