//! rkube's OCI image store and registry client.
//!
//! - [`ImageStore`] keeps images content-addressed under one root directory
//!   (`<data-dir>/agent/image-store`): blobs by digest, layers unpacked once by diff id, and
//!   an index of image names. It implements the CRI image service and the lookup the runtime
//!   uses to build a rootfs.
//! - Pulls speak the Docker Registry HTTP API v2 / OCI distribution API, with k3s's
//!   `registries.yaml` for mirrors and credentials.
//! - Air-gapped nodes import `docker save` and OCI-layout tarballs.
#![warn(missing_docs)]

mod archive;
pub mod cli;
mod config;
mod credentials;
mod digest;
pub mod oci;
mod pull;
mod reference;
mod registry;
mod store;
mod unpack;

pub use config::{Mirror, RegistriesConfig, RegistryAuth, RegistryConfig, RegistryTls};
pub use reference::{Reference, normalize_registry_host};
pub use rkube_cri::auths_from_dockerconfigjson;
pub use store::ImageStore;

#[doc(hidden)]
pub mod testing;
