//! The Lanes embedded API server (axum) and the client the CLI uses to talk to it.

pub mod api;
pub mod auth;
pub mod client;
pub mod merge;
pub mod selector;

pub use api::{ApiState, ApplyResult, router};
pub use auth::Auth;
pub use client::Client;
