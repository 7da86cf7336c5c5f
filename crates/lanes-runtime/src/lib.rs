//! What a cluster provides for itself, run on this machine for `lanes up`: the
//! Deployment controller, pods as processes with their sidecars, addresses, logs, and the
//! feed of the data plane (the route table). The lane and rollout controllers are not
//! here: `lanes up` runs the operator's, against its own API.

pub mod controller;
pub mod data_plane;
pub mod deployments;
pub mod echo;
pub mod echo_grpc;
pub mod gateway_routes;
pub mod images;
pub mod ipam;
pub mod logs;
pub mod pods;
pub mod revisions;
pub mod routes;
pub mod sample;
pub mod synthetic;
