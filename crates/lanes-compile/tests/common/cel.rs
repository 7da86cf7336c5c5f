//! Kubernetes' CEL rules, as `lanes-model` evaluates them.
#![allow(unused_imports)]

pub use lanes_model::openapi::cel_holds as holds;
