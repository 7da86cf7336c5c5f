//! The Lanes resource model: the kinds Lanes accepts, their typed views, multi-document
//! YAML decoding with located errors, per-object validation and cross-object lint.

pub mod decode;
pub mod hash;
pub mod istio;
pub mod kind;
pub mod lane;
pub mod lint;
pub mod mesh;
pub mod object;
pub mod rollout;
pub mod validate;

pub use decode::{Diagnostic, Loaded, Severity, Source, decode_bytes, decode_str, load_paths};
pub use kind::Kind;
pub use object::{FieldError, Object, ObjectKey, Typed};
