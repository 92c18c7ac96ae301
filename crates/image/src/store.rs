//! The on-disk image store.
//!
//! ```text
//! <root>/
//!   lock                       flock(2) held while the index is read-modify-written
//!   index.json                 images: id → manifest, layers, names (replaced atomically)
//!   blobs/sha256/<hex>         manifests, configs, layer tarballs, verified by digest
//!   layers/sha256/<diffid>/    unpacked layers, shared by every image that has them
//!   tmp/                       downloads and unpacks in progress (same filesystem: rename)
//! ```
//!
//! Blobs and layers appear only by `rename`, so a reader never sees half of one. Several
//! processes may use one store (the agent and `rkube image`): writers serialise on the lock
//! file, and a commit re-checks under the lock that every blob and layer it names still
//! exists (a concurrent `rm` may have collected it).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rkube_cri::{Error, Image, ImageConfig, ResolvedImage, Result};
use serde::{Deserialize, Serialize};

use crate::config::RegistriesConfig;
use crate::digest::{Hasher, sha256_hex};
use crate::oci::ConfigFile;
use crate::reference::Reference;

/// One stored image, as kept in `index.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct ImageRecord {
    /// `sha256:<config digest>`.
    pub id: String,
    /// Digest of the manifest last stored for it.
    pub manifest_digest: String,
    /// `name:tag` references.
    pub repo_tags: Vec<String>,
    /// `name@sha256:…` references.
    pub repo_digests: Vec<String>,
    /// Every blob it holds (indexes, manifests, config, layer tarballs).
    pub blobs: BTreeSet<String>,
    /// Diff ids of its layers, lowest first.
    pub layers: Vec<String>,
    /// Sum of the layer blobs' sizes.
    pub size: u64,
    /// The runtime-facing config.
    pub config: ImageConfig,
}

impl ImageRecord {
    pub(crate) fn to_cri(&self) -> Image {
        Image {
            id: self.id.clone(),
            repo_tags: self.repo_tags.clone(),
            repo_digests: self.repo_digests.clone(),
            size: self.size,
        }
    }
    fn has_names(&self) -> bool {
        !self.repo_tags.is_empty() || !self.repo_digests.is_empty()
    }
}

/// `index.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct IndexFile {
    /// Image id → record.
    #[serde(default)]
    pub images: BTreeMap<String, ImageRecord>,
}

impl IndexFile {
    /// Finds an image by reference (`busybox`, `name@sha256:…`) or id (`sha256:<hex>`, the
    /// hex, or a unique prefix of it as `crictl` prints).
    pub(crate) fn find(&self, image: &str) -> Option<&ImageRecord> {
        let image = image.trim();
        if image.is_empty() {
            return None;
        }
        if let Some(r) = self.images.get(image) {
            return Some(r);
        }
        if let Ok(r) = Reference::parse(image) {
            let wanted: Vec<String> = match (&r.tag, &r.digest) {
                (_, Some(d)) => vec![r.digested_name(d)],
                (Some(_), None) => r.tagged_name().into_iter().collect(),
                (None, None) => vec![],
            };
            if let Some(rec) = self.images.values().find(|rec| {
                wanted
                    .iter()
                    .any(|w| rec.repo_tags.contains(w) || rec.repo_digests.contains(w))
            }) {
                return Some(rec);
            }
        }
        let hex = image.strip_prefix("sha256:").unwrap_or(image);
        if hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut matches = self
                .images
                .values()
                .filter(|rec| rec.id.trim_start_matches("sha256:").starts_with(hex));
            if let (Some(one), None) = (matches.next(), matches.next()) {
                return Some(one);
            }
        }
        None
    }
}

/// What a pull or an import hands to [`ImageStore::commit`]: content already in the store.
pub(crate) struct NewImage {
    pub manifest_digest: String,
    pub config_digest: String,
    pub config: ConfigFile,
    /// Layer blobs (digest, size), lowest first, parallel to `config.rootfs.diff_ids`.
    pub layer_blobs: Vec<(String, u64)>,
    /// Other blobs to keep with the image (the manifest, an index it was picked from).
    pub extra_blobs: Vec<String>,
    /// `name:tag` references to give it.
    pub repo_tags: Vec<String>,
    /// `name@digest` references to give it.
    pub repo_digests: Vec<String>,
}

/// A blob being written: hashed as it goes, renamed into place by [`Ingest::commit`] only if
/// its digest (and size, when known) match.
pub(crate) struct Ingest {
    file: tempfile::NamedTempFile,
    hasher: Hasher,
}

impl Ingest {
    pub(crate) fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.hasher.update(bytes);
        self.file.write_all(bytes)
    }

    /// Checks the digest and moves the blob into place; returns its digest. On a mismatch
    /// nothing is stored.
    pub(crate) fn commit(
        self,
        store: &ImageStore,
        expected: Option<&str>,
        expected_size: Option<u64>,
    ) -> Result<String> {
        let size = self.hasher.count();
        let digest = self.hasher.clone().digest();
        if let Some(want) = expected
            && want != digest
        {
            return Err(Error::Internal(format!(
                "digest mismatch: expected {want}, got {digest} ({size} bytes); nothing was stored"
            )));
        }
        if let Some(want) = expected_size
            && want != size
        {
            return Err(Error::Internal(format!(
                "size mismatch for {digest}: expected {want} bytes, got {size}; nothing was stored"
            )));
        }
        let dest = store.blob_path(&digest)?;
        self.file.as_file().sync_all()?;
        self.file
            .persist(&dest)
            .map_err(|e| Error::Internal(format!("storing blob {digest}: {}", e.error)))?;
        Ok(digest)
    }
}

/// The image store (see the module docs for the layout). Cheap to clone.
#[derive(Clone)]
pub struct ImageStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub root: PathBuf,
    pub registries: RegistriesConfig,
    /// The HTTP client for registries without TLS settings, built on first use.
    pub http: OnceLock<reqwest::Client>,
}

impl std::fmt::Debug for ImageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageStore")
            .field("root", &self.inner.root)
            .finish()
    }
}

fn internal(context: &str, e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("{context}: {e}"))
}

impl ImageStore {
    /// Opens (creating if needed) a store at `root`, with no registries.yaml.
    pub fn open(root: impl Into<PathBuf>) -> Result<ImageStore> {
        ImageStore::open_with(root, RegistriesConfig::default())
    }

    /// Opens a store at `root` that pulls with the given mirrors and credentials.
    pub fn open_with(root: impl Into<PathBuf>, registries: RegistriesConfig) -> Result<ImageStore> {
        let root = root.into();
        for dir in ["blobs/sha256", "layers/sha256", "tmp"] {
            fs::create_dir_all(root.join(dir))
                .map_err(|e| internal(&format!("creating {}", root.join(dir).display()), e))?;
        }
        let store = ImageStore {
            inner: Arc::new(Inner {
                root,
                registries,
                http: OnceLock::new(),
            }),
        };
        store.clean_tmp();
        Ok(store)
    }

    /// Opens `<data-dir>/agent/image-store` with `<data-dir>/registries.yaml`.
    pub fn open_data_dir(data_dir: &Path) -> anyhow::Result<ImageStore> {
        let registries = RegistriesConfig::load(&data_dir.join("registries.yaml"))?;
        Ok(ImageStore::open_with(
            data_dir.join("agent").join("image-store"),
            registries,
        )?)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Leftovers of interrupted downloads and unpacks older than an hour (younger ones may
    /// belong to another process working right now).
    fn clean_tmp(&self) {
        let Ok(entries) = fs::read_dir(self.tmp_dir()) else {
            return;
        };
        for e in entries.flatten() {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() > 3600);
            if old {
                let p = e.path();
                let _ = if p.is_dir() {
                    fs::remove_dir_all(&p)
                } else {
                    fs::remove_file(&p)
                };
            }
        }
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.inner.root.join("tmp")
    }

    pub(crate) fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        let hex = sha256_hex(digest).map_err(Error::Internal)?;
        Ok(self.inner.root.join("blobs/sha256").join(hex))
    }

    pub(crate) fn layer_path(&self, diff_id: &str) -> Result<PathBuf> {
        let hex = sha256_hex(diff_id).map_err(Error::Internal)?;
        Ok(self.inner.root.join("layers/sha256").join(hex))
    }

    pub(crate) fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).is_ok_and(|p| p.exists())
    }

    pub(crate) fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let p = self.blob_path(digest)?;
        fs::read(&p).map_err(|e| internal(&format!("reading blob {digest}"), e))
    }

    /// Starts writing a blob.
    pub(crate) fn ingest(&self) -> Result<Ingest> {
        Ok(Ingest {
            file: tempfile::Builder::new()
                .prefix("ingest-")
                .tempfile_in(self.tmp_dir())?,
            hasher: Hasher::default(),
        })
    }

    /// Stores bytes as a blob, checking the expected digest if given.
    pub(crate) fn write_blob(&self, bytes: &[u8], expected: Option<&str>) -> Result<String> {
        if let Some(d) = expected
            && self.has_blob(d)
        {
            return Ok(d.to_string());
        }
        let mut ingest = self.ingest()?;
        ingest.write(bytes)?;
        ingest.commit(self, expected, Some(bytes.len() as u64))
    }

    /// Makes sure the layer with `diff_id` is unpacked, from the stored blob `blob`; returns
    /// whether it already was. Unpacks into `tmp/` and renames, so a layer directory is
    /// always complete.
    pub(crate) fn ensure_layer(&self, blob: &str, diff_id: &str) -> Result<bool> {
        let dest = self.layer_path(diff_id)?;
        if dest.exists() {
            return Ok(true);
        }
        let tmp = tempfile::Builder::new()
            .prefix("unpack-")
            .tempdir_in(self.tmp_dir())?;
        fs::set_permissions(
            tmp.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        let got = crate::unpack::unpack_layer_file(&self.blob_path(blob)?, tmp.path())
            .map_err(|e| Error::Internal(format!("failed to extract layer {diff_id}: {e:#}")))?;
        if got != diff_id {
            return Err(Error::Internal(format!(
                "failed to extract layer {blob}: diff id mismatch: the image config says {diff_id}, \
                 the layer's uncompressed content is {got}"
            )));
        }
        let tmp = tmp.keep();
        if let Err(e) = fs::rename(&tmp, &dest) {
            let _ = fs::remove_dir_all(&tmp);
            // Another pull unpacked the same layer meanwhile: theirs is as good as ours.
            if !dest.exists() {
                return Err(internal(&format!("storing layer {diff_id}"), e));
            }
        }
        Ok(false)
    }

    /// Unpacks every layer of an image whose blobs are stored; returns per layer whether it
    /// was already unpacked.
    pub(crate) fn ensure_layers(
        &self,
        config: &ConfigFile,
        blobs: &[(String, u64)],
    ) -> Result<Vec<bool>> {
        let diff_ids = &config.rootfs.diff_ids;
        if diff_ids.len() != blobs.len() {
            return Err(Error::Internal(format!(
                "the image has {} layers but its config lists {} diff ids",
                blobs.len(),
                diff_ids.len()
            )));
        }
        blobs
            .iter()
            .zip(diff_ids)
            .map(|((blob, _), diff_id)| self.ensure_layer(blob, diff_id))
            .collect()
    }

    /// Holds the store's lock while `f` runs (blocking: call from a blocking context).
    pub(crate) fn locked<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.inner.root.join("lock"))?;
        lock.lock()?;
        let out = f();
        drop(lock);
        out
    }

    /// Reads `index.json` (no lock needed: it is replaced atomically).
    pub(crate) fn load_index(&self) -> Result<IndexFile> {
        match fs::read(self.inner.root.join("index.json")) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                internal(
                    &format!(
                        "{} is corrupt",
                        self.inner.root.join("index.json").display()
                    ),
                    e,
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(IndexFile::default()),
            Err(e) => Err(e.into()),
        }
    }

    fn save_index(&self, index: &IndexFile) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(index).map_err(|e| internal("encoding index", e))?;
        write_atomic(&self.inner.root.join("index.json"), &bytes)
    }

    /// Records an image whose blobs and layers are stored, giving it `names` (taken away from
    /// any other image that had them; an image left without names is removed).
    pub(crate) fn commit(&self, new: NewImage) -> Result<ImageRecord> {
        self.locked(|| {
            // A concurrent removal may have collected shared content since we checked.
            for diff_id in &new.config.rootfs.diff_ids {
                if !self.layer_path(diff_id)?.exists() {
                    return Err(Error::Internal(format!(
                        "layer {diff_id} vanished while the image was being stored (removed \
                         concurrently); retry"
                    )));
                }
            }
            let mut index = self.load_index()?;
            let mut blobs: BTreeSet<String> = new
                .extra_blobs
                .iter()
                .chain([&new.config_digest, &new.manifest_digest])
                .chain(new.layer_blobs.iter().map(|(d, _)| d))
                .filter(|d| self.has_blob(d))
                .cloned()
                .collect();
            let mut orphans = Vec::new();
            for rec in index.images.values_mut() {
                if rec.id == new.config_digest {
                    continue;
                }
                rec.repo_tags.retain(|t| !new.repo_tags.contains(t));
                rec.repo_digests.retain(|t| !new.repo_digests.contains(t));
                if !rec.has_names() {
                    orphans.push(rec.id.clone());
                }
            }
            let mut removed = Vec::new();
            for id in orphans {
                removed.extend(index.images.remove(&id));
            }
            let rec = index
                .images
                .entry(new.config_digest.clone())
                .or_insert_with(|| ImageRecord {
                    id: new.config_digest.clone(),
                    ..Default::default()
                });
            rec.manifest_digest = new.manifest_digest.clone();
            blobs.extend(rec.blobs.iter().cloned());
            rec.blobs = blobs;
            rec.layers = new.config.rootfs.diff_ids.clone();
            rec.size = new.layer_blobs.iter().map(|(_, s)| s).sum();
            rec.config = new.config.image_config();
            for t in &new.repo_tags {
                if !rec.repo_tags.contains(t) {
                    rec.repo_tags.push(t.clone());
                }
            }
            for d in &new.repo_digests {
                if !rec.repo_digests.contains(d) {
                    rec.repo_digests.push(d.clone());
                }
            }
            let rec = rec.clone();
            self.save_index(&index)?;
            self.collect(&index, &removed);
            Ok(rec)
        })
    }

    /// Deletes the blobs and layers of `removed` images that no image in `index` uses.
    fn collect(&self, index: &IndexFile, removed: &[ImageRecord]) {
        let used_blobs: BTreeSet<&String> =
            index.images.values().flat_map(|r| r.blobs.iter()).collect();
        let used_layers: BTreeSet<&String> = index
            .images
            .values()
            .flat_map(|r| r.layers.iter())
            .collect();
        for rec in removed {
            for b in rec.blobs.iter().filter(|b| !used_blobs.contains(b)) {
                if let Ok(p) = self.blob_path(b) {
                    let _ = fs::remove_file(p);
                }
            }
            for l in rec.layers.iter().filter(|l| !used_layers.contains(l)) {
                let Ok(p) = self.layer_path(l) else { continue };
                // Renamed away first so that a half-deleted layer is never visible by name.
                let trash = self
                    .tmp_dir()
                    .join(format!("trash-{}", l.trim_start_matches("sha256:")));
                if fs::rename(&p, &trash).is_ok() {
                    let _ = fs::remove_dir_all(&trash);
                }
            }
        }
    }

    /// Deletes those of `blobs` (just written by an import) that no image references: an
    /// archive may carry content for other platforms or metadata nobody needs.
    pub(crate) fn drop_unreferenced(&self, blobs: &BTreeSet<String>) -> Result<()> {
        self.locked(|| {
            let index = self.load_index()?;
            let used: BTreeSet<&String> =
                index.images.values().flat_map(|r| r.blobs.iter()).collect();
            for b in blobs.iter().filter(|b| !used.contains(b)) {
                let _ = fs::remove_file(self.blob_path(b)?);
            }
            Ok(())
        })
    }

    /// Imports an image tarball (`docker save` or OCI layout, optionally gzip/zstd
    /// compressed), reporting progress per image; returns the images it held.
    pub async fn import(
        &self,
        path: &Path,
        progress: &(dyn Fn(rkube_cri::PullProgress) + Send + Sync),
    ) -> Result<Vec<Image>> {
        let (s, p) = (self.clone(), path.to_path_buf());
        with_progress(progress, move |tx| crate::archive::import(&s, &p, tx)).await
    }

    /// Imports every tarball of an air-gap directory (`<data-dir>/agent/images/`) not
    /// imported before (same size and mtime); returns the images imported now. Called at
    /// agent start.
    pub async fn import_dir(
        &self,
        dir: &Path,
        progress: &(dyn Fn(rkube_cri::PullProgress) + Send + Sync),
    ) -> Result<Vec<Image>> {
        let (s, d) = (self.clone(), dir.to_path_buf());
        with_progress(progress, move |tx| crate::archive::import_dir(&s, &d, tx)).await
    }

    /// Removes an image (every name of it) and the content no other image uses.
    pub(crate) fn remove(&self, image: &str) -> Result<()> {
        self.locked(|| {
            let mut index = self.load_index()?;
            let Some(id) = index.find(image).map(|r| r.id.clone()) else {
                return Ok(());
            };
            let removed: Vec<ImageRecord> = index.images.remove(&id).into_iter().collect();
            self.save_index(&index)?;
            self.collect(&index, &removed);
            Ok(())
        })
    }

    /// A stored image's layer directories and config.
    pub(crate) fn resolve_sync(&self, image: &str) -> Result<ResolvedImage> {
        let index = self.load_index()?;
        let rec = index
            .find(image)
            .ok_or_else(|| Error::NotFound(format!("image {image:?}")))?;
        let mut layers = Vec::with_capacity(rec.layers.len());
        for diff_id in &rec.layers {
            let p = self.layer_path(diff_id)?;
            if !p.is_dir() {
                return Err(Error::Internal(format!(
                    "layer {diff_id} of image {image} is missing from {}; remove the image and \
                     pull it again",
                    self.inner.root.display()
                )));
            }
            layers.push(p);
        }
        Ok(ResolvedImage {
            id: rec.id.clone(),
            layers,
            config: rec.config.clone(),
        })
    }
}

/// Writes a file atomically: temp file in the same directory, fsync, rename, fsync the
/// directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .map_err(|e| internal(&format!("writing {}", path.display()), e.error))?;
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// Runs blocking import work, forwarding its progress reports to an async caller's callback.
async fn with_progress(
    progress: &(dyn Fn(rkube_cri::PullProgress) + Send + Sync),
    f: impl FnOnce(&dyn Fn(rkube_cri::PullProgress)) -> Result<Vec<ImageRecord>> + Send + 'static,
) -> Result<Vec<Image>> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::task::spawn_blocking(move || {
        let send = move |p| {
            let _ = tx.send(p);
        };
        f(&send)
    });
    while let Some(p) = rx.recv().await {
        progress(p);
    }
    let records = task
        .await
        .map_err(|e| Error::Internal(format!("image import task failed: {e}")))??;
    Ok(records.iter().map(ImageRecord::to_cri).collect())
}

/// Runs blocking store work off the async runtime.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("image store task failed: {e}")))?
}

#[async_trait::async_trait]
impl rkube_cri::ImageService for ImageStore {
    async fn list_images(&self) -> Result<Vec<Image>> {
        let s = self.clone();
        blocking(move || {
            Ok(s.load_index()?
                .images
                .values()
                .map(ImageRecord::to_cri)
                .collect())
        })
        .await
    }

    async fn image_status(&self, image: &str) -> Result<Option<Image>> {
        let s = self.clone();
        let image = image.to_string();
        blocking(move || Ok(s.load_index()?.find(&image).map(ImageRecord::to_cri))).await
    }

    async fn pull_image(
        &self,
        image: &str,
        auth: &[rkube_cri::AuthConfig],
        progress: &(dyn Fn(rkube_cri::PullProgress) + Send + Sync),
    ) -> Result<String> {
        crate::pull::pull(self, image, auth, progress).await
    }

    async fn remove_image(&self, image: &str) -> Result<()> {
        let s = self.clone();
        let image = image.to_string();
        blocking(move || s.remove(&image)).await
    }
}

impl rkube_cri::ImageLookup for ImageStore {
    fn resolve(&self, image: &str) -> Result<ResolvedImage> {
        self.resolve_sync(image)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_mismatch_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let wrong = crate::digest::sha256_of(b"something else");
        let e = store
            .write_blob(b"abc", Some(&wrong))
            .unwrap_err()
            .to_string();
        assert!(e.contains("digest mismatch"), "{e}");
        assert_eq!(
            fs::read_dir(dir.path().join("blobs/sha256"))
                .unwrap()
                .count(),
            0
        );
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        let good = crate::digest::sha256_of(b"abc");
        assert_eq!(store.write_blob(b"abc", Some(&good)).unwrap(), good);
        assert_eq!(store.read_blob(&good).unwrap(), b"abc");
    }
}
