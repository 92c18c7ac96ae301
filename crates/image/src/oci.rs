//! The OCI image-spec documents (and their Docker schema2 twins) rkube reads: indexes and
//! manifest lists, manifests, image configs; media types; platform choice.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI gzip layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker schema2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker uncompressed layer.
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Docker gzip layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Annotation holding an OCI layout's tag (or full reference).
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Annotation containerd's export writes with the full image name.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// Whether a media type is an index / manifest list.
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// Whether a media type is a single-platform manifest.
pub fn is_manifest(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

/// A content descriptor.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the content.
    #[serde(default)]
    pub media_type: String,
    /// `sha256:…`.
    pub digest: String,
    /// Size in bytes.
    #[serde(default)]
    pub size: u64,
    /// Annotations (names of images in an OCI layout's index).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Platform of a manifest listed in an index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

/// A platform of an index entry.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Platform {
    /// `amd64`, `arm64`…
    #[serde(default)]
    pub architecture: String,
    /// `linux`.
    #[serde(default)]
    pub os: String,
    /// `v8`, `v7`…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An index or manifest list.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// 2.
    #[serde(default)]
    pub schema_version: u32,
    /// Present in Docker lists and recent OCI indexes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The entries.
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// A single-platform manifest.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// 2.
    #[serde(default)]
    pub schema_version: u32,
    /// Present in Docker schema2 and recent OCI manifests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The image config.
    pub config: Descriptor,
    /// Layers, lowest first.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// The parts of an image config rkube reads.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ConfigFile {
    /// Architecture.
    #[serde(default)]
    pub architecture: String,
    /// OS.
    #[serde(default)]
    pub os: String,
    /// Run-time defaults.
    #[serde(default)]
    pub config: Option<RunConfig>,
    /// Layer diff ids.
    #[serde(default)]
    pub rootfs: RootFs,
}

/// `config` of an image config.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    /// ENTRYPOINT.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// CMD.
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    /// ENV.
    #[serde(default)]
    pub env: Option<Vec<String>>,
    /// WORKDIR.
    #[serde(default)]
    pub working_dir: Option<String>,
    /// USER.
    #[serde(default)]
    pub user: Option<String>,
    /// STOPSIGNAL.
    #[serde(default)]
    pub stop_signal: Option<String>,
}

/// `rootfs` of an image config.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RootFs {
    /// `layers`.
    #[serde(default, rename = "type")]
    pub kind: String,
    /// Digests of the uncompressed layers, lowest first.
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

impl ConfigFile {
    /// The runtime-facing view.
    pub fn image_config(&self) -> rkube_cri::ImageConfig {
        let c = self.config.clone().unwrap_or_default();
        rkube_cri::ImageConfig {
            entrypoint: c.entrypoint.unwrap_or_default(),
            cmd: c.cmd.unwrap_or_default(),
            env: c.env.unwrap_or_default(),
            working_dir: c.working_dir.unwrap_or_default(),
            user: c.user.unwrap_or_default(),
            stop_signal: c.stop_signal.unwrap_or_default(),
        }
    }
}

/// The platform this process runs on, in OCI terms (`amd64`, `arm64`/`v8`…).
pub fn host_platform() -> Platform {
    let (architecture, variant) = match std::env::consts::ARCH {
        "x86_64" => ("amd64", None),
        "aarch64" => ("arm64", Some("v8")),
        "x86" => ("386", None),
        "arm" => ("arm", Some("v7")),
        "powerpc64" => ("ppc64le", None),
        other => (other, None),
    };
    Platform {
        architecture: architecture.to_string(),
        os: "linux".to_string(),
        variant: variant.map(str::to_string),
    }
}

/// Picks the entry of an index for `want`: same OS and architecture, preferring an exact
/// variant (an entry without a variant matches too, as containerd's matcher does). Entries
/// without a platform (attestations have `unknown/unknown`) are ignored unless the index has
/// only platform-less manifests.
pub fn pick_platform<'a>(index: &'a Index, want: &Platform) -> Result<&'a Descriptor, String> {
    let candidates: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| is_manifest(&d.media_type) || d.media_type.is_empty())
        .collect();
    let matching = |d: &Descriptor| {
        d.platform.as_ref().is_some_and(|p| {
            p.os == want.os
                && p.architecture == want.architecture
                && (p.variant.is_none() || want.variant.is_none() || p.variant == want.variant)
        })
    };
    if let Some(d) = candidates
        .iter()
        .find(|d| {
            matching(d)
                && d.platform
                    .as_ref()
                    .is_some_and(|p| p.variant == want.variant)
        })
        .or_else(|| candidates.iter().find(|d| matching(d)))
    {
        return Ok(d);
    }
    if candidates.iter().all(|d| d.platform.is_none())
        && let Some(d) = candidates.first()
    {
        return Ok(d);
    }
    Err(format!(
        "no match for platform in manifest: not found (wanted {}/{}{})",
        want.os,
        want.architecture,
        want.variant
            .as_ref()
            .map(|v| format!("/{v}"))
            .unwrap_or_default()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(digest: &str, arch: &str, variant: Option<&str>) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: digest.into(),
            platform: Some(Platform {
                architecture: arch.into(),
                os: "linux".into(),
                variant: variant.map(Into::into),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn picks_running_platform_from_manifest_list() {
        let index: Index = serde_json::from_value(serde_json::json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST_LIST,
            "manifests": [
                {"mediaType": DOCKER_MANIFEST, "digest": "sha256:arm", "size": 1,
                 "platform": {"architecture": "arm", "os": "linux", "variant": "v7"}},
                {"mediaType": DOCKER_MANIFEST, "digest": "sha256:arm64", "size": 1,
                 "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
                {"mediaType": DOCKER_MANIFEST, "digest": "sha256:amd64", "size": 1,
                 "platform": {"architecture": "amd64", "os": "linux"}},
                {"mediaType": DOCKER_MANIFEST, "digest": "sha256:win", "size": 1,
                 "platform": {"architecture": "amd64", "os": "windows"}},
            ]
        }))
        .unwrap();
        let amd64 = Platform {
            architecture: "amd64".into(),
            os: "linux".into(),
            variant: None,
        };
        assert_eq!(
            pick_platform(&index, &amd64).unwrap().digest,
            "sha256:amd64"
        );
        if std::env::consts::ARCH == "x86_64" {
            assert_eq!(
                pick_platform(&index, &host_platform()).unwrap().digest,
                "sha256:amd64"
            );
        }
        let arm64 = Platform {
            architecture: "arm64".into(),
            os: "linux".into(),
            variant: Some("v8".into()),
        };
        assert_eq!(
            pick_platform(&index, &arm64).unwrap().digest,
            "sha256:arm64"
        );
        let s390 = Platform {
            architecture: "s390x".into(),
            os: "linux".into(),
            variant: None,
        };
        let e = pick_platform(&index, &s390).unwrap_err();
        assert!(
            e.starts_with("no match for platform in manifest: not found"),
            "{e}"
        );
        // An exact variant wins over a variant-less entry.
        let two = Index {
            manifests: vec![
                entry("sha256:any", "arm64", None),
                entry("sha256:v8", "arm64", Some("v8")),
            ],
            ..Default::default()
        };
        assert_eq!(pick_platform(&two, &arm64).unwrap().digest, "sha256:v8");
    }
}
