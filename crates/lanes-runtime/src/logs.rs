//! Pod logs on disk: `<namespace>_<pod>.log` holds the running container's output,
//! capped at [`LOG_LIMIT`] with one rotated file (`.log.1`); when the container starts
//! again (a crash, or `lanes up` restarting) the last run's log becomes `.log.previous`
//! (`lanes logs --previous`). A removed pod's logs go with it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt};

/// The most bytes a log file holds before it is rotated.
pub const LOG_LIMIT: u64 = 10 * 1024 * 1024;

use lanes_model::podlog::{self, Run};

/// The log file of a pod (the running container's).
pub fn path(logs: &Path, namespace: &str, name: &str) -> PathBuf {
    podlog::file(logs, namespace, name, Run::Current)
}

/// Another run's file beside a pod's log.
fn sibling(log: &Path, suffix: &str) -> PathBuf {
    let mut p = log.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// The log of the container's previous run.
pub fn previous(log: &Path) -> PathBuf {
    sibling(log, ".previous")
}

/// The rotated part of the current run's log.
pub fn rotated(log: &Path) -> PathBuf {
    sibling(log, ".1")
}

/// Where the next file of a log is made before it takes the log's place.
fn next(log: &Path) -> PathBuf {
    sibling(log, ".next")
}

/// Where the old file of a log is linked before it takes its new name.
fn held(log: &Path) -> PathBuf {
    sibling(log, ".held")
}

/// Removes a pod's logs.
pub fn remove(log: &Path) {
    for p in [
        log.to_path_buf(),
        rotated(log),
        previous(log),
        next(log),
        held(log),
    ] {
        let _ = std::fs::remove_file(p);
    }
}

/// A run's log file, written as the container's output arrives.
#[derive(Debug)]
pub struct LogWriter {
    log: PathBuf,
    file: std::fs::File,
    written: u64,
    limit: u64,
}

impl LogWriter {
    /// Starts a run's log: the last run's becomes the previous one.
    pub fn start_run(log: &Path, limit: u64) -> std::io::Result<LogWriter> {
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = fresh_keeping(log, &previous(log))?;
        let _ = std::fs::remove_file(rotated(log));
        Ok(LogWriter {
            log: log.to_path_buf(),
            file,
            written: 0,
            limit: limit.max(1),
        })
    }

    /// Appends output, rotating first when it would pass the limit.
    pub fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.written > 0 && self.written + bytes.len() as u64 > self.limit {
            self.file = fresh_keeping(&self.log, &rotated(&self.log))?;
            self.written = 0;
        }
        self.file.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }
}

/// Puts a new, empty file in `log`'s place, the old one (if any) kept as `keep`. Each
/// step is a rename onto a name, so a reader of `log` finds a whole file at every
/// moment: the last run's until the new run's replaces it, as `kubectl logs` shows a
/// crashed container's output until it starts again.
fn fresh_keeping(log: &Path, keep: &Path) -> std::io::Result<std::fs::File> {
    let next = next(log);
    let file = std::fs::File::create(&next)?;
    if log.exists() {
        let held = held(log);
        let _ = std::fs::remove_file(&held);
        match std::fs::hard_link(log, &held) {
            Ok(()) => std::fs::rename(&held, keep)?,
            // A file system without links: the old file moves, and for a moment
            // `log` is missing.
            Err(_) => std::fs::rename(log, keep)?,
        }
    }
    std::fs::rename(&next, log)?;
    Ok(file)
}

/// Copies one output stream of a container into its log until the stream ends. Output
/// that cannot be written (a full disk) is dropped, never left to fill the pipe and
/// stall the container.
pub async fn copy(mut from: impl AsyncRead + Unpin, to: Arc<Mutex<LogWriter>>) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut failing = false;
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let Ok(mut w) = to.lock() else { continue };
                match w.write(&buf[..n]) {
                    Ok(()) => failing = false,
                    Err(e) if !failing => {
                        tracing::warn!(log = %w.log.display(), error = %e, "cannot write a pod log; dropping its output until it can");
                        failing = true;
                    }
                    Err(_) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_runtime_and_the_api_agree_on_the_files() {
        let d = Path::new("/l");
        let log = path(d, "ns", "p");
        assert_eq!(previous(&log), podlog::file(d, "ns", "p", Run::Previous));
        assert_eq!(rotated(&log), podlog::file(d, "ns", "p", Run::Rotated));
    }

    #[test]
    fn a_log_is_capped_with_one_rotated_file_and_the_last_run_kept() {
        let dir = tempfile::tempdir().unwrap();
        let log = path(dir.path(), "default", "p");
        let mut w = LogWriter::start_run(&log, 100).unwrap();
        for i in 0..30u8 {
            w.write(&[b'a' + (i % 26); 10]).unwrap();
        }
        let now = std::fs::metadata(&log).unwrap().len();
        let old = std::fs::metadata(rotated(&log)).unwrap().len();
        assert_eq!(
            (now, old),
            (100, 100),
            "300 bytes written, the last 200 kept"
        );
        drop(w);
        let mut w = LogWriter::start_run(&log, 100).unwrap();
        w.write(b"second run\n").unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "second run\n");
        assert_eq!(std::fs::metadata(previous(&log)).unwrap().len(), now);
        assert!(
            !rotated(&log).exists(),
            "the rotated part of an old run goes"
        );
        remove(&log);
        assert!(!log.exists() && !previous(&log).exists());
    }

    #[test]
    fn a_reader_finds_the_log_while_runs_start_and_rotate() {
        let dir = tempfile::tempdir().unwrap();
        let log = path(dir.path(), "default", "p");
        LogWriter::start_run(&log, 8)
            .unwrap()
            .write(b"first")
            .unwrap();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (log, done) = (log.clone(), done.clone());
            std::thread::spawn(move || {
                let mut missing = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    missing += usize::from(std::fs::File::open(&log).is_err());
                }
                missing
            })
        };
        for i in 0..300u32 {
            let mut w = LogWriter::start_run(&log, 8).unwrap();
            // 4 bytes, then 5, under a limit of 8: one rotation per run.
            w.write(&i.to_be_bytes()[..4]).unwrap();
            w.write(b"12345").unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            reader.join().unwrap(),
            0,
            "the log was missing for a reader"
        );
        assert_eq!(std::fs::read(&log).unwrap(), b"12345");
        assert_eq!(std::fs::read(rotated(&log)).unwrap(), 299u32.to_be_bytes());
        assert_eq!(std::fs::read(previous(&log)).unwrap(), b"12345");
        remove(&log);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
