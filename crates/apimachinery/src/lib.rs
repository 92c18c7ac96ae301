//! rkube-apimachinery: what upstream keeps in `k8s.io/apimachinery`, for untyped JSON objects.
//!
//! Everything here is pure: given objects, patches and schemas it computes results. The
//! [`schema`] model is the seam: the openapi crate builds it from the built-in types and CRDs,
//! patching and apply walk it to know how each list merges.

pub mod fields;
pub mod labels;
pub mod managedfields;
pub mod patch;
pub mod protobuf;
pub mod schema;
pub mod strict;
pub mod validation;

#[cfg(test)]
mod testschemas;
