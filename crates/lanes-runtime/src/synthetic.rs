//! A synthetic lane group ([`lanes_model::synthetic`]) written into a store in one
//! transaction: what the scale benchmarks start from.

use lanes_model::Object;
use lanes_model::decode::Diagnostic;
use lanes_model::synthetic::{Shape, mesh};
use lanes_store::{Store, StoreError};

/// Why a synthetic mesh could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The generated manifests did not decode.
    #[error("the synthetic mesh does not decode: {0:?}")]
    Decode(Vec<Diagnostic>),
    /// The store refused them.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Writes the mesh of `shape` into `store`; the objects as written.
pub fn load(store: &Store, shape: Shape) -> Result<Vec<Object>, LoadError> {
    let (loaded, diags) = lanes_model::decode_str("synthetic", &mesh(shape));
    if !diags.is_empty() {
        return Err(LoadError::Decode(diags));
    }
    let objects: Vec<Object> = loaded.into_iter().map(|l| l.object).collect();
    store.write(|txn| {
        for o in &objects {
            txn.create(o)?;
        }
        Ok(())
    })?;
    Ok(objects)
}
