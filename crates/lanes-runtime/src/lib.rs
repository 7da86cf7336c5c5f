//! Embedded mode: the controllers that drive the object store — lanes, Deployments — and
//! the local runtime that runs pods as processes with their sidecars.

pub mod controller;
pub mod deployments;
pub mod images;
pub mod ipam;
pub mod lanes;
pub mod logs;
pub mod pods;
pub mod prometheus;
pub mod rollouts;
pub mod sample;
