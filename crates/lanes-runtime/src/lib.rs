//! Embedded mode: the controllers that drive the object store (the lane controller
//! now; the Deployment, pod and rollout controllers and the local runtime join it).

pub mod lanes;
