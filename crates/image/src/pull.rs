//! Pulling an image: resolve the reference, pick this platform from an index, fetch the
//! config and the missing layers (three at a time, as containerd), unpack, record.

use futures::{StreamExt, TryStreamExt};
use rkube_cri::{AuthConfig, Error, PullProgress, Result};

use crate::oci::{self, ConfigFile, Index, Manifest};
use crate::reference::Reference;
use crate::registry::{Endpoint, Session};
use crate::store::{ImageStore, NewImage, blocking};

const CONCURRENT_LAYERS: usize = 3;

/// Pulls `image` into `store`; returns the image id.
pub(crate) async fn pull(
    store: &ImageStore,
    image: &str,
    auth: &[AuthConfig],
    progress: &(dyn Fn(PullProgress) + Send + Sync),
) -> Result<String> {
    let r = Reference::parse(image).map_err(Error::InvalidImageName)?;
    let full = r.to_string();
    let fail = |msg: String| {
        Error::ImagePull(format!("failed to pull and unpack image \"{full}\": {msg}"))
    };
    let session = Session::new(store, &r, auth).map_err(fail)?;
    let (ep_index, mut fetched) = session
        .resolve(&r)
        .await
        .map_err(|e| fail(format!("failed to resolve reference \"{full}\": {e}")))?;
    let ep = &session.endpoints[ep_index];
    tracing::debug!("resolved {full} at {} to {}", ep.host(), fetched.digest);
    let resolved_digest = fetched.digest.clone();

    let mut extra_blobs = Vec::new();
    if oci::is_index(&fetched.media_type) {
        store_blob(store, &fetched.bytes, &fetched.digest)
            .await
            .map_err(|e| fail(e.to_string()))?;
        extra_blobs.push(fetched.digest.clone());
        let index: Index = serde_json::from_slice(&fetched.bytes)
            .map_err(|e| fail(format!("invalid image index {}: {e}", fetched.digest)))?;
        let entry = oci::pick_platform(&index, &oci::host_platform()).map_err(fail)?;
        fetched = session
            .fetch_manifest(ep, &entry.digest, &r)
            .await
            .map_err(|e| fail(format!("failed to fetch manifest {}: {e}", entry.digest)))?;
    }
    let manifest: Manifest = serde_json::from_slice(&fetched.bytes)
        .map_err(|e| fail(format!("invalid image manifest {}: {e}", fetched.digest)))?;
    store_blob(store, &fetched.bytes, &fetched.digest)
        .await
        .map_err(|e| fail(e.to_string()))?;

    let config_digest = manifest.config.digest.clone();
    let config_bytes = if store.has_blob(&config_digest) {
        store
            .read_blob(&config_digest)
            .map_err(|e| fail(e.to_string()))?
    } else {
        let b = session
            .fetch_small_blob(ep, &config_digest, &r)
            .await
            .map_err(|e| fail(format!("failed to fetch config {config_digest}: {e}")))?;
        store_blob(store, &b, &config_digest)
            .await
            .map_err(|e| fail(e.to_string()))?;
        b
    };
    let config: ConfigFile = serde_json::from_slice(&config_bytes)
        .map_err(|e| fail(format!("invalid image config {config_digest}: {e}")))?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(fail(format!(
            "the manifest lists {} layers but the config {} diff ids",
            manifest.layers.len(),
            config.rootfs.diff_ids.len()
        )));
    }

    progress(PullProgress::Resolved {
        layers: manifest.layers.len(),
        total_bytes: manifest.layers.iter().map(|l| l.size).sum(),
    });
    let jobs: Vec<(oci::Descriptor, String)> = manifest
        .layers
        .iter()
        .cloned()
        .zip(config.rootfs.diff_ids.iter().cloned())
        .collect();
    let (session_ref, r_ref) = (&session, &r);
    futures::stream::iter(jobs)
        .map(|(desc, diff_id)| {
            let (session, r) = (session_ref, r_ref);
            async move {
                let cached = store.layer_path(&diff_id)?.exists();
                if !cached {
                    if !store.has_blob(&desc.digest) {
                        download(store, session, ep, r, &desc.digest, desc.size).await?;
                    }
                    let (s, blob, diff_id) = (store.clone(), desc.digest.clone(), diff_id);
                    blocking(move || s.ensure_layer(&blob, &diff_id)).await?;
                }
                progress(PullProgress::Layer {
                    digest: desc.digest.clone(),
                    bytes: desc.size,
                    cached,
                });
                Ok::<(), Error>(())
            }
        })
        .buffer_unordered(CONCURRENT_LAYERS)
        .try_collect::<Vec<()>>()
        .await
        .map_err(|e| fail(e.to_string()))?;

    let repo_tags = match (&r.tag, &r.digest) {
        (Some(_), None) => r.tagged_name().into_iter().collect(),
        _ => vec![],
    };
    let new = NewImage {
        manifest_digest: fetched.digest.clone(),
        config_digest: config_digest.clone(),
        layer_blobs: manifest
            .layers
            .iter()
            .map(|l| (l.digest.clone(), l.size))
            .collect(),
        config,
        extra_blobs,
        repo_tags,
        repo_digests: vec![r.digested_name(&resolved_digest)],
    };
    let s = store.clone();
    let rec = blocking(move || s.commit(new))
        .await
        .map_err(|e| fail(e.to_string()))?;
    Ok(rec.id)
}

async fn store_blob(store: &ImageStore, bytes: &[u8], digest: &str) -> Result<()> {
    let (s, b, d) = (store.clone(), bytes.to_vec(), digest.to_string());
    blocking(move || s.write_blob(&b, Some(&d)).map(|_| ())).await
}

/// Streams a layer blob into the store, verifying digest and size.
async fn download(
    store: &ImageStore,
    session: &Session,
    ep: &Endpoint,
    r: &Reference,
    digest: &str,
    size: u64,
) -> Result<()> {
    let resp = session
        .blob(ep, digest, r)
        .await
        .map_err(|e| Error::ImagePull(format!("failed to copy: {e}")))?;
    let mut ingest = store.ingest()?;
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk
            .map_err(|e| Error::ImagePull(format!("failed to copy: reading blob {digest}: {e}")))?;
        // Small buffered writes into the page cache; not worth a thread hop per chunk.
        ingest.write(&chunk)?;
    }
    let (s, d) = (store.clone(), digest.to_string());
    blocking(move || ingest.commit(&s, Some(&d), Some(size)))
        .await
        .map_err(|e| Error::ImagePull(format!("failed to copy: {e}")))?;
    Ok(())
}
