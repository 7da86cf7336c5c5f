//! Lanes on Kubernetes: the lane controller (compiles lane groups into the
//! VirtualServices and DestinationRules of the mesh, by server-side apply) and the
//! rollout controller (Kruise-compatible Rollouts on real Deployments, sharing the pure
//! state machine of `lanes-rollout` with the embedded mode), run against an API server
//! through kube-rs, behind leader election on a Lease.

pub mod analysis;
pub mod backoff;
pub mod events;
pub mod group_status;
pub mod held;
pub mod lane_controller;
pub mod lane_release_controller;
pub mod lanes;
pub mod lease;
pub mod metrics;
pub mod prometheus;
pub mod rollout_controller;
pub mod rollouts;
pub mod run;
pub mod webhook;

pub use run::{Config, run};

/// The field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "lanes";

/// What a reconcile can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error("{what}: {source}")]
    Kube {
        /// The request, as `verb kind/name`.
        what: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// Adding or removing a Rollout's finalizer failed, or standing its release down did.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// An object could not be (de)serialised.
    #[error("{what}: {source}")]
    Json {
        /// The object.
        what: String,
        /// The error.
        #[source]
        source: serde_json::Error,
    },
    /// The object asked for does not exist.
    #[error("{0} not found")]
    NotFound(String),
}

impl Error {
    /// Whether the API server answered 409 Conflict (a stale resourceVersion): the
    /// reconcile is retried on fresh reads.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Kube { source: kube::Error::Api(s), .. }
            if s.code == 409 && s.reason != "AlreadyExists")
    }
}

/// Names the request in an error.
pub(crate) fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Kube { what, source }
}

/// Whether a client error is the API server's 404.
pub(crate) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Whether a client error is the API server's AlreadyExists.
pub(crate) fn is_already_exists(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists")
}

/// Serialises a typed object to JSON.
pub(crate) fn to_value<T: serde::Serialize>(what: &str, t: &T) -> Result<serde_json::Value, Error> {
    serde_json::to_value(t).map_err(|source| Error::Json {
        what: what.to_string(),
        source,
    })
}
