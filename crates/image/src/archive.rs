//! Air-gapped import of image tarballs: OCI layouts (`oci-archive`, containerd's and
//! docker 25's exports) and `docker save` archives (legacy `<id>/layer.tar` layout and the
//! newer one with `blobs/sha256`), optionally gzip- or zstd-compressed as a whole.
//!
//! The tarball is read once, front to back: every file becomes a blob (checked against its
//! name when it is `blobs/sha256/<hex>`), the small metadata files stay in memory, then the
//! images they describe are unpacked and recorded.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use rkube_cri::{Error, PullProgress, Result};
use serde::{Deserialize, Serialize};

use crate::oci::{self, ConfigFile, Descriptor, Index, Manifest};
use crate::reference::Reference;
use crate::store::{ImageRecord, ImageStore, NewImage, write_atomic};
use crate::unpack::{Compression, decompress};

const METADATA: &[&str] = &["index.json", "oci-layout", "manifest.json", "repositories"];
const MAX_METADATA: u64 = 16 << 20;

fn bad(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::Internal(format!("importing {}: {msg}", path.display()))
}

/// Imports one tarball; returns the images it held.
pub(crate) fn import(
    store: &ImageStore,
    path: &Path,
    progress: &dyn Fn(PullProgress),
) -> Result<Vec<ImageRecord>> {
    let file = fs::File::open(path).map_err(|e| bad(path, e))?;
    let mut archive = tar::Archive::new(decompress(file).map_err(|e| bad(path, e))?);
    let mut metadata: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    // Archive path → (digest, size) of the blob it became.
    let mut files: BTreeMap<String, (String, u64)> = BTreeMap::new();
    let mut written: BTreeSet<String> = BTreeSet::new();
    for entry in archive.entries().map_err(|e| bad(path, e))? {
        let mut entry = entry.map_err(|e| bad(path, e))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()
            .map_err(|e| bad(path, e))?
            .to_string_lossy()
            .into_owned();
        let name = name.trim_start_matches("./").to_string();
        if METADATA.contains(&name.as_str()) {
            let mut buf = Vec::new();
            (&mut entry)
                .take(MAX_METADATA)
                .read_to_end(&mut buf)
                .map_err(|e| bad(path, e))?;
            metadata.insert(name, buf);
            continue;
        }
        if name.ends_with("/json") || name.ends_with("/VERSION") {
            continue; // legacy per-layer metadata docker no longer reads either
        }
        let expected = name
            .strip_prefix("blobs/sha256/")
            .map(|hex| format!("sha256:{hex}"));
        let size = entry.header().size().unwrap_or(0);
        if let Some(d) = &expected
            && store.has_blob(d)
        {
            files.insert(name, (d.clone(), size));
            continue;
        }
        let mut ingest = store.ingest()?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = entry.read(&mut buf).map_err(|e| bad(path, e))?;
            if n == 0 {
                break;
            }
            ingest.write(&buf[..n])?;
        }
        let digest = ingest
            .commit(store, expected.as_deref(), None)
            .map_err(|e| bad(path, format!("{name}: {e}")))?;
        written.insert(digest.clone());
        files.insert(name, (digest, size));
    }

    let images = if let Some(index) = metadata.get("index.json") {
        oci_images(store, path, index)?
    } else if let Some(manifest) = metadata.get("manifest.json") {
        docker_images(store, path, manifest, &files)?
    } else {
        return Err(bad(
            path,
            "neither index.json (OCI layout) nor manifest.json (docker save) found: not an image archive",
        ));
    };
    if images.is_empty() {
        return Err(bad(path, "the archive lists no images"));
    }
    let mut out = Vec::new();
    for img in images {
        out.push(record(store, path, img, progress)?);
    }
    store.drop_unreferenced(&written)?;
    Ok(out)
}

/// An image found in an archive, before its layers are unpacked.
struct Found {
    manifest_digest: String,
    extra_blobs: Vec<String>,
    names: Vec<Reference>,
}

fn oci_images(store: &ImageStore, path: &Path, index: &[u8]) -> Result<Vec<Found>> {
    let index: Index =
        serde_json::from_slice(index).map_err(|e| bad(path, format!("invalid index.json: {e}")))?;
    let mut out = Vec::new();
    for desc in &index.manifests {
        let names = names_of(desc);
        let mut extra = Vec::new();
        let mut manifest_desc = desc.clone();
        // A multi-platform image: this platform's manifest.
        if oci::is_index(&desc.media_type) {
            let inner: Index = serde_json::from_slice(&store.read_blob(&desc.digest)?)
                .map_err(|e| bad(path, format!("invalid index {}: {e}", desc.digest)))?;
            extra.push(desc.digest.clone());
            manifest_desc = oci::pick_platform(&inner, &oci::host_platform())
                .map_err(|e| bad(path, e))?
                .clone();
        }
        if !store.has_blob(&manifest_desc.digest) {
            return Err(bad(
                path,
                format!("manifest {} is not in the archive", manifest_desc.digest),
            ));
        }
        out.push(Found {
            manifest_digest: manifest_desc.digest,
            extra_blobs: extra,
            names,
        });
    }
    Ok(out)
}

/// Image names from an index entry's annotations: containerd's full name, else the OCI
/// ref name when it is a full reference (a bare tag like `1.0` names nothing on its own).
fn names_of(desc: &Descriptor) -> Vec<Reference> {
    let full = desc
        .annotations
        .get(oci::ANNOTATION_CONTAINERD_NAME)
        .cloned()
        .or_else(|| {
            desc.annotations
                .get(oci::ANNOTATION_REF_NAME)
                .filter(|n| n.contains('/') || n.contains(':'))
                .cloned()
        });
    full.and_then(|n| Reference::parse(&n).ok())
        .into_iter()
        .collect()
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn docker_images(
    store: &ImageStore,
    path: &Path,
    manifest: &[u8],
    files: &BTreeMap<String, (String, u64)>,
) -> Result<Vec<Found>> {
    let entries: Vec<DockerManifestEntry> = serde_json::from_slice(manifest)
        .map_err(|e| bad(path, format!("invalid manifest.json: {e}")))?;
    let lookup = |name: &str| {
        files
            .get(name.trim_start_matches("./"))
            .cloned()
            .ok_or_else(|| {
                bad(
                    path,
                    format!("{name} is listed in manifest.json but not in the archive"),
                )
            })
    };
    let mut out = Vec::new();
    for e in entries {
        let (config_digest, config_size) = lookup(&e.config)?;
        let mut layers = Vec::new();
        for l in &e.layers {
            let (digest, size) = lookup(l)?;
            let head = read_head(store, &digest)?;
            let media_type = match Compression::sniff(&head) {
                Compression::Gzip => oci::DOCKER_LAYER_GZIP,
                Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
                Compression::None => oci::DOCKER_LAYER_TAR,
            };
            layers
                .push(serde_json::json!({"mediaType": media_type, "digest": digest, "size": size}));
        }
        // docker load keeps no manifest; synthesise the schema2 one a registry would serve.
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": oci::DOCKER_MANIFEST,
            "config": {"mediaType": oci::DOCKER_CONFIG, "digest": config_digest, "size": config_size},
            "layers": layers,
        }))
        .map_err(|e| bad(path, e))?;
        let manifest_digest = store.write_blob(&manifest, None)?;
        let names = e
            .repo_tags
            .unwrap_or_default()
            .iter()
            .filter_map(|t| Reference::parse(t).ok())
            .collect();
        out.push(Found {
            manifest_digest,
            extra_blobs: vec![],
            names,
        });
    }
    Ok(out)
}

fn read_head(store: &ImageStore, digest: &str) -> Result<Vec<u8>> {
    let mut f = fs::File::open(store.blob_path(digest)?)?;
    let mut head = [0u8; 8];
    let n = f.read(&mut head)?;
    Ok(head[..n].to_vec())
}

fn record(
    store: &ImageStore,
    path: &Path,
    found: Found,
    progress: &dyn Fn(PullProgress),
) -> Result<ImageRecord> {
    let manifest: Manifest = serde_json::from_slice(&store.read_blob(&found.manifest_digest)?)
        .map_err(|e| {
            bad(
                path,
                format!("invalid manifest {}: {e}", found.manifest_digest),
            )
        })?;
    let config_digest = manifest.config.digest.clone();
    let config: ConfigFile = serde_json::from_slice(&store.read_blob(&config_digest)?)
        .map_err(|e| bad(path, format!("invalid image config {config_digest}: {e}")))?;
    let layer_blobs: Vec<(String, u64)> = manifest
        .layers
        .iter()
        .map(|l| (l.digest.clone(), l.size))
        .collect();
    for (d, _) in &layer_blobs {
        if !store.has_blob(d) {
            return Err(bad(path, format!("layer {d} is not in the archive")));
        }
    }
    progress(PullProgress::Resolved {
        layers: layer_blobs.len(),
        total_bytes: layer_blobs.iter().map(|(_, s)| s).sum(),
    });
    let cached = store
        .ensure_layers(&config, &layer_blobs)
        .map_err(|e| bad(path, e))?;
    for ((digest, bytes), cached) in layer_blobs.iter().zip(cached) {
        progress(PullProgress::Layer {
            digest: digest.clone(),
            bytes: *bytes,
            cached,
        });
    }
    let repo_tags = found
        .names
        .iter()
        .filter_map(Reference::tagged_name)
        .collect();
    let repo_digests = found
        .names
        .iter()
        .map(|n| n.digested_name(&found.manifest_digest))
        .collect();
    store.commit(NewImage {
        manifest_digest: found.manifest_digest,
        config_digest,
        config,
        layer_blobs,
        extra_blobs: found.extra_blobs,
        repo_tags,
        repo_digests,
    })
}

/// What `imported.json` remembers of each tarball of the air-gap directory.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Seen {
    size: u64,
    mtime_ns: i128,
}

fn seen_of(meta: &fs::Metadata) -> Seen {
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i128);
    Seen {
        size: meta.len(),
        mtime_ns,
    }
}

/// Whether a file name looks like an image tarball (as k3s's air-gap directory accepts).
fn is_tarball(name: &str) -> bool {
    [".tar", ".tar.gz", ".tgz", ".tar.zst", ".tar.zstd", ".tzst"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

/// Imports every tarball in `dir` not imported before (same size and mtime); returns the
/// images imported now. A missing directory imports nothing.
pub(crate) fn import_dir(
    store: &ImageStore,
    dir: &Path,
    progress: &dyn Fn(PullProgress),
) -> Result<Vec<ImageRecord>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(bad(dir, e)),
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .is_some_and(|n| is_tarball(&n.to_string_lossy()))
        })
        .collect();
    paths.sort();
    let state_path = store.root().join("imported.json");
    let mut state: BTreeMap<String, Seen> = fs::read(&state_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut out = Vec::new();
    for p in paths {
        let key = p.to_string_lossy().into_owned();
        let seen = seen_of(&fs::metadata(&p).map_err(|e| bad(&p, e))?);
        if state.get(&key) == Some(&seen) {
            tracing::debug!("{} already imported", p.display());
            continue;
        }
        out.extend(import(store, &p, progress)?);
        state.insert(key, seen);
        let bytes = serde_json::to_vec_pretty(&state).map_err(|e| bad(&state_path, e))?;
        store.locked(|| write_atomic(&state_path, &bytes))?;
    }
    Ok(out)
}
