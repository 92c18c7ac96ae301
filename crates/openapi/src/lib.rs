//! The apiserver's OpenAPI: `/openapi/v2`, `/openapi/v3` and the typed schema model that
//! patching, server-side apply and strict decoding walk.
//!
//! Definitions come from k8s-openapi's schemars schemas (which carry upstream's names and doc
//! comments, so `kubectl explain` has something to show) plus the vendor extensions upstream
//! adds and schemars lacks. Building the documents is not free: [`OpenApi`] builds them once
//! and keeps the serialized bytes. This crate does no IO and knows nothing about HTTP.

pub mod cache;
pub mod custom;
pub mod definitions;
pub mod extensions;
pub mod paths;
pub mod typed;
pub mod v2;
pub mod v2proto;
pub mod v3;

pub use cache::OpenApi;
pub use typed::{from_openapi_v3, schema_for_kind, schemas};
pub use v2::v2_document;
pub use v3::{v3_document, v3_index};
