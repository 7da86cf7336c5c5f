//! The API's bearer token on disk: `lanes up` makes one at first start and keeps it in
//! `<state-dir>/token` (mode 0600); the CLI reads it from there when no token is given.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The state directory when none is named: `LANES_STATE_DIR`, else `./.lanes`.
pub const DEFAULT_STATE_DIR: &str = ".lanes";

/// Where a state directory keeps its token.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("token")
}

/// The state directory's token, made (random, 256 bits) if there is none yet.
pub fn load_or_create(state_dir: &Path) -> Result<String> {
    let file = path(state_dir);
    if let Some(token) = read(&file)? {
        return Ok(token);
    }
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("cannot create {}", state_dir.display()))?;
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&file)
        .with_context(|| format!("cannot create the token file {}", file.display()))?;
    f.write_all(format!("{token}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write the token file {}", file.display()))?;
    Ok(token)
}

/// Reads a token file; `None` when there is none. A file others can read is refused.
fn read(file: &Path) -> Result<Option<String>> {
    let meta = match std::fs::metadata(file) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    };
    if meta.permissions().mode() & 0o077 != 0 {
        bail!(
            "the token file {} can be read by others (mode {:o}): chmod 600 it",
            file.display(),
            meta.permissions().mode() & 0o777
        );
    }
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the token file {}", file.display()))?;
    let token = text.trim();
    if token.is_empty() {
        bail!("the token file {} is empty", file.display());
    }
    Ok(Some(token.to_string()))
}

/// The token the CLI presents: the one given, else the state directory's (if any).
pub fn discover(given: Option<String>, state_dir: &Path) -> Option<String> {
    given
        .filter(|t| !t.is_empty())
        .or_else(|| read(&path(state_dir)).ok().flatten())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_token_is_made_once_kept_private_and_found_again() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("s");
        let t = load_or_create(&state).unwrap();
        assert_eq!(t.len(), 64);
        let mode = std::fs::metadata(path(&state))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_or_create(&state).unwrap(), t);
        assert_eq!(discover(None, &state), Some(t));
        assert_eq!(discover(Some("x".into()), &state), Some("x".into()));
        assert_eq!(discover(None, dir.path()), None);
    }

    #[test]
    fn a_token_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(path(dir.path()), "abc\n").unwrap();
        std::fs::set_permissions(path(dir.path()), std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_or_create(dir.path()).unwrap_err().to_string();
        assert!(e.contains("can be read by others"), "{e}");
    }
}
