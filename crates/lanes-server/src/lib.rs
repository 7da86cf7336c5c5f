//! The Lanes embedded API server (axum) and the client the CLI uses to talk to it.

pub mod api;
pub mod auth;
pub mod client;
pub mod k8s;
pub mod merge;
pub mod selector;

pub use api::{ApiState, router};
pub use auth::Auth;
pub use client::{ApplyResult, Client};
