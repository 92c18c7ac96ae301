//! The three patch types the apiserver accepts: JSON patch (RFC 6902,
//! `application/json-patch+json`), JSON merge patch (RFC 7386,
//! `application/merge-patch+json`) and strategic merge patch
//! (`application/strategic-merge-patch+json`, which walks the [`Schema`](crate::schema::Schema)
//! to know how lists merge).

mod json;
mod merge;
mod strategic;

pub use json::{json_patch, unescape_pointer_token};
pub use merge::merge_patch;
pub use strategic::strategic_merge_patch;

/// Why a patch could not be applied. The apiserver turns these into 422 (invalid patch) or
/// 409/422 (a failed `test`) responses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch document is malformed (not a list of operations, a missing member...).
    #[error("{0}")]
    Invalid(String),
    /// A path the operation needs does not exist in the document.
    #[error("{0}")]
    MissingPath(String),
    /// A `test` operation failed.
    #[error("{0}")]
    TestFailed(String),
}
