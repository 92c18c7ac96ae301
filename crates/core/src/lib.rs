//! rkube-core: the shared, IO-free model of Kubernetes objects.
//!
//! Every other crate speaks in these terms: a [`registry::ResourceType`] says what a kind is
//! called on the wire and how it is stored, [`status::ApiError`] is the one error that reaches a
//! client as a `metav1.Status`, [`meta`] reads and writes `ObjectMeta` inside untyped JSON, and
//! [`validation`] holds the name and label rules upstream applies to every object.
//!
//! This crate knows nothing about HTTP, storage or tokio.
#![deny(missing_docs)]

pub mod meta;
pub mod quantity;
pub mod registry;
pub mod status;
pub mod validation;
