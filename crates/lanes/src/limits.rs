//! Process limits `lanes up` and `lanes proxy` set for themselves at start.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Raises the soft limit on open descriptors to the hard limit and says the figure:
/// the gateway, every sidecar and the API share this one process's descriptors, and an
/// in-flight request through a chain of services holds about a dozen.
pub fn raise_open_files(who: &str) -> Option<u64> {
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{who}: cannot read the open-files limit: {e}");
            return None;
        }
    };
    if soft < hard
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        eprintln!("{who}: open files limited to {soft} (cannot raise it to {hard}: {e})");
        return Some(soft);
    }
    println!("{who}: open files limit {hard} (soft limit was {soft})");
    Some(hard)
}
