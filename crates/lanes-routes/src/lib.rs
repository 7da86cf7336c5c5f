//! The route table Lanes' data plane runs, as plain serde types: every mesh Service and,
//! per lane group, its lanes, subsets, ingress rules and fallbacks ([`table`]); Istio's
//! match conditions it carries ([`matching`]); and how mesh host names and label
//! selectors are read ([`host`]). `lanes-compile` produces it from Kubernetes and Istio
//! objects; `lanes-proxy` runs it without depending on the Kubernetes types.

pub mod gateway;
pub mod host;
pub mod matching;
pub mod table;

pub use matching::{HttpMatchRequest, StringMatch};
pub use table::*;
