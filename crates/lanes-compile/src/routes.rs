//! The route table: what the data plane runs (its types live in `lanes-routes`, which
//! the proxy depends on without the Kubernetes types).

pub use lanes_routes::table::*;
