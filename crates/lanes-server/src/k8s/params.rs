//! The query parameters of the resource paths, and the request facts every verb reads
//! (field manager, dry run, field validation).

use axum::http::{HeaderMap, header};
use serde::Deserialize;

use super::error::{ApiError, ApiResult};

/// Query parameters, as the API server names them; unknown ones are ignored, as there.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Params {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub watch: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
    pub timeout_seconds: Option<u64>,
    pub allow_watch_bookmarks: Option<String>,
    pub send_initial_events: Option<String>,
    pub limit: Option<usize>,
    #[serde(rename = "continue")]
    pub continue_token: Option<String>,
    pub dry_run: Option<String>,
    pub field_manager: Option<String>,
    pub field_validation: Option<String>,
    pub force: Option<String>,
    pub propagation_policy: Option<String>,
    pub include_object: Option<String>,
    pub follow: Option<String>,
    pub tail_lines: Option<i64>,
    pub previous: Option<String>,
    pub container: Option<String>,
    pub limit_bytes: Option<u64>,
}

/// A boolean query value as the API server reads it (`true`, `1`).
pub fn flag(v: &Option<String>) -> bool {
    matches!(v.as_deref(), Some("true" | "1" | "True" | "TRUE"))
}

/// How unknown fields are treated (`fieldValidation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validation {
    /// Kept, no word.
    Ignore,
    /// Kept, with a `Warning` header naming each (the default).
    Warn,
    /// Refused, naming each.
    Strict,
}

impl Params {
    /// `watch=true`.
    pub fn is_watch(&self) -> bool {
        flag(&self.watch)
    }

    /// `dryRun=All`; any other value is refused, as upstream.
    pub fn dry_run(&self) -> ApiResult<bool> {
        match self.dry_run.as_deref() {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "dryRun: unsupported value {other:?}, supported values: \"All\""
            ))),
        }
    }

    /// `fieldValidation`.
    pub fn validation(&self) -> ApiResult<Validation> {
        match self.field_validation.as_deref() {
            None | Some("") | Some("Warn") => Ok(Validation::Warn),
            Some("Ignore") => Ok(Validation::Ignore),
            Some("Strict") => Ok(Validation::Strict),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation: invalid value {other:?}: must be Ignore, Warn or Strict"
            ))),
        }
    }

    /// The field manager: `fieldManager`, else the client's name from `User-Agent`.
    pub fn manager(&self, headers: &HeaderMap) -> String {
        if let Some(m) = self.field_manager.as_deref().filter(|m| !m.is_empty()) {
            return m.chars().take(128).collect();
        }
        headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .and_then(|ua| ua.split('/').next())
            .filter(|s| !s.is_empty())
            .unwrap_or("unknown")
            .chars()
            .take(128)
            .collect()
    }
}
