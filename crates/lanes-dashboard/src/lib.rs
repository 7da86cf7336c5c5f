//! The Lanes dashboard: a page that draws each lane group as a map (lanes across,
//! services down, the versions serving each cell or the lane it falls back to), kept
//! current without reloads. It reads only the Kubernetes API, so the same page serves
//! `lanes up` and a cluster with the operator.

pub mod controls;
pub mod map;
pub mod paths;
pub mod releases;
pub mod requests;
pub mod server;
pub mod source;
pub mod traffic;
