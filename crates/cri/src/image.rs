//! The image half of CRI, plus the lookup a runtime needs to build a rootfs.

use std::path::PathBuf;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::Result;

/// A stored image (CRI `Image`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Image {
    /// Image id: `sha256:<digest of its config>`.
    pub id: String,
    /// Tagged names, fully qualified (`docker.io/library/busybox:latest`).
    pub repo_tags: Vec<String>,
    /// `name@sha256:<manifest digest>` forms.
    pub repo_digests: Vec<String>,
    /// Sum of its compressed layer sizes, in bytes.
    pub size: u64,
}

/// Credentials for one pull (CRI `AuthConfig`), from `imagePullSecrets` or registries.yaml.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuthConfig {
    /// Registry host the credentials are for (`docker.io`, `127.0.0.1:5000`).
    pub server_address: String,
    /// Basic-auth user.
    pub username: String,
    /// Basic-auth password.
    pub password: String,
    /// base64 `user:password`, as dockerconfigjson's `auth` field.
    pub auth: String,
    /// A bearer token given directly.
    pub identity_token: String,
}

/// Progress of a pull, reported as it goes (the kubelet turns it into events and logs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PullProgress {
    /// The manifest was resolved: this many layers, this many bytes to fetch at most.
    Resolved {
        /// Layer count.
        layers: usize,
        /// Total compressed bytes of all layers.
        total_bytes: u64,
    },
    /// One layer is present (fetched and verified, or already stored).
    Layer {
        /// Layer digest.
        digest: String,
        /// Its size.
        bytes: u64,
        /// Whether it was already stored (shared with another image).
        cached: bool,
    },
}

/// The image service (CRI `ImageService`).
#[async_trait]
pub trait ImageService: Send + Sync {
    /// Every stored image.
    async fn list_images(&self) -> Result<Vec<Image>>;
    /// One image by reference (`busybox`, `127.0.0.1:5000/x:1`, `name@sha256:…`) or id; `None`
    /// if it is not stored.
    async fn image_status(&self, image: &str) -> Result<Option<Image>>;
    /// Pulls an image, trying `auth` entries whose server matches the registry (then
    /// registries.yaml, then anonymous); returns its id.
    async fn pull_image(
        &self,
        image: &str,
        auth: &[AuthConfig],
        progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<String>;
    /// Removes an image (its layers once no other image uses them).
    async fn remove_image(&self, image: &str) -> Result<()>;
}

/// What a runtime reads from an image to run it (the parts of the OCI image config that matter).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageConfig {
    /// ENTRYPOINT.
    pub entrypoint: Vec<String>,
    /// CMD.
    pub cmd: Vec<String>,
    /// ENV (`KEY=value`).
    pub env: Vec<String>,
    /// WORKDIR (empty = `/`).
    pub working_dir: String,
    /// USER (`uid`, `uid:gid`, `name`, `name:group`; empty = root).
    pub user: String,
    /// STOPSIGNAL (empty = SIGTERM).
    pub stop_signal: String,
}

/// An image ready to become a rootfs: its unpacked layers and its config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedImage {
    /// Image id (`sha256:…`).
    pub id: String,
    /// Unpacked layer directories, lowest first (overlayfs `lowerdir` takes them reversed).
    /// Each is read-only and shared between images.
    pub layers: Vec<PathBuf>,
    /// Its config.
    pub config: ImageConfig,
}

/// How a runtime finds a stored image's layers and config (implemented by the image store).
pub trait ImageLookup: Send + Sync {
    /// Resolves a reference or id of a stored image; `NotFound` if it is not stored.
    fn resolve(&self, image: &str) -> Result<ResolvedImage>;
}
