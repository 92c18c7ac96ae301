//! Test images without the internet: a busybox image built from Debian's static busybox
//! (`/bin/busybox`, package `busybox-static`), as an OCI-layout or `docker save` tarball.
//! The output is deterministic, so two builds have the same digests.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use serde_json::json;

use crate::digest::sha256_of;
use crate::oci;
use crate::reference::Reference;

/// Where the static busybox comes from.
pub const BUSYBOX: &str = "/bin/busybox";
const MTIME: u64 = 1_700_000_000;
const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn busybox_bytes() -> anyhow::Result<Vec<u8>> {
    std::fs::read(BUSYBOX).with_context(|| {
        format!(
            "reading {BUSYBOX}: the test images need Debian's busybox-static; run \
             scripts/install-test-deps.sh"
        )
    })
}

fn applets() -> anyhow::Result<Vec<String>> {
    let out = std::process::Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .with_context(|| format!("running {BUSYBOX} --list (run scripts/install-test-deps.sh)"))?;
    let mut list: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox" && !a.contains('/'))
        .map(str::to_string)
        .collect();
    list.sort();
    list.dedup();
    anyhow::ensure!(
        list.iter().any(|a| a == "sh"),
        "{BUSYBOX} --list has no `sh` applet"
    );
    Ok(list)
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(MTIME);
    h.set_size(size);
    h
}

/// The uncompressed root filesystem layer.
fn busybox_layer() -> anyhow::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let dirs: &[(&str, u32)] = &[
        ("bin/", 0o755),
        ("dev/", 0o755),
        ("etc/", 0o755),
        ("proc/", 0o555),
        ("root/", 0o700),
        ("sys/", 0o555),
        ("tmp/", 0o1777),
        ("var/", 0o755),
        ("var/www/", 0o755),
    ];
    for (d, mode) in dirs {
        let mut h = header(tar::EntryType::Directory, *mode, 0);
        b.append_data(&mut h, d, &[][..])?;
    }
    let bin = busybox_bytes()?;
    let mut h = header(tar::EntryType::Regular, 0o755, bin.len() as u64);
    b.append_data(&mut h, "bin/busybox", &bin[..])?;
    for applet in applets()? {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox")?;
    }
    let files: &[(&str, &str)] = &[
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
        ),
        ("etc/group", "root:x:0:\nnobody:x:65534:\n"),
    ];
    for (path, text) in files {
        let mut h = header(tar::EntryType::Regular, 0o644, text.len() as u64);
        b.append_data(&mut h, path, text.as_bytes())?;
    }
    Ok(b.into_inner()?)
}

fn gzip(data: &[u8]) -> anyhow::Result<Vec<u8>> {
    // mtime 0 and no file name: the same input gives the same bytes.
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    gz.write_all(data)?;
    Ok(gz.finish()?)
}

fn config(diff_id: &str, labels: serde_json::Value) -> Vec<u8> {
    let platform = oci::host_platform();
    let mut cfg = json!({
        "created": "2023-11-14T22:13:20Z",
        "architecture": platform.architecture,
        "os": "linux",
        "config": {"Cmd": ["sh"], "Env": [PATH_ENV]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "2023-11-14T22:13:20Z", "created_by": "rkube testing: busybox"}],
    });
    if !labels.is_null() {
        cfg["config"]["Labels"] = labels;
    }
    serde_json::to_vec(&cfg).expect("JSON")
}

fn append_file(b: &mut tar::Builder<std::fs::File>, path: &str, data: &[u8]) -> anyhow::Result<()> {
    let mut h = header(tar::EntryType::Regular, 0o644, data.len() as u64);
    b.append_data(&mut h, path, data)?;
    Ok(())
}

/// Writes an OCI-layout tarball (`oci-archive`) of a one-layer busybox image (gzip layer)
/// named `reference` (annotated with `io.containerd.image.name` and
/// `org.opencontainers.image.ref.name`).
pub fn busybox_oci_archive(dest: &Path, reference: &str) -> anyhow::Result<()> {
    let r = Reference::parse(reference).map_err(anyhow::Error::msg)?;
    let layer = busybox_layer()?;
    let diff_id = sha256_of(&layer);
    let gz = gzip(&layer)?;
    let config = config(&diff_id, serde_json::Value::Null);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": oci::OCI_MANIFEST,
        "config": {"mediaType": oci::OCI_CONFIG, "digest": sha256_of(&config), "size": config.len()},
        "layers": [{"mediaType": oci::OCI_LAYER_GZIP, "digest": sha256_of(&gz), "size": gz.len()}],
    }))?;
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": oci::OCI_INDEX,
        "manifests": [{
            "mediaType": oci::OCI_MANIFEST,
            "digest": sha256_of(&manifest),
            "size": manifest.len(),
            "annotations": {
                oci::ANNOTATION_CONTAINERD_NAME: r.to_string(),
                oci::ANNOTATION_REF_NAME: r.tag.clone().unwrap_or_else(|| "latest".into()),
            },
        }],
    }))?;
    let file =
        std::fs::File::create(dest).with_context(|| format!("creating {}", dest.display()))?;
    let mut b = tar::Builder::new(file);
    append_file(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    append_file(&mut b, "index.json", &index)?;
    for blob in [&gz, &config, &manifest] {
        let hex = sha256_of(blob);
        append_file(
            &mut b,
            &format!("blobs/sha256/{}", &hex["sha256:".len()..]),
            blob,
        )?;
    }
    b.into_inner()?.sync_all()?;
    Ok(())
}

/// Writes a `docker save` tarball (legacy layout: `<id>/layer.tar`, `<config>.json`,
/// `manifest.json`, `repositories`) of the same busybox filesystem, tagged `reference`.
/// Its config carries a label, so its image id differs from the OCI archive's while the
/// layer (same diff id) is shared.
pub fn busybox_docker_archive(dest: &Path, reference: &str) -> anyhow::Result<()> {
    let r = Reference::parse(reference).map_err(anyhow::Error::msg)?;
    let layer = busybox_layer()?;
    let diff_id = sha256_of(&layer);
    let config = config(&diff_id, json!({"org.rkube.test.archive": "docker"}));
    let config_hex = sha256_of(&config)["sha256:".len()..].to_string();
    let layer_id = diff_id["sha256:".len()..].to_string();
    let tag = r.tag.clone().unwrap_or_else(|| "latest".into());
    let manifest = serde_json::to_vec(&json!([{
        "Config": format!("{config_hex}.json"),
        "RepoTags": [format!("{}:{tag}", r.name())],
        "Layers": [format!("{layer_id}/layer.tar")],
    }]))?;
    let repositories = serde_json::to_vec(&json!({ r.name(): { tag: layer_id } }))?;
    let file =
        std::fs::File::create(dest).with_context(|| format!("creating {}", dest.display()))?;
    let mut b = tar::Builder::new(file);
    let mut h = header(tar::EntryType::Directory, 0o755, 0);
    b.append_data(&mut h, format!("{layer_id}/"), &[][..])?;
    append_file(&mut b, &format!("{layer_id}/VERSION"), b"1.0")?;
    append_file(
        &mut b,
        &format!("{layer_id}/json"),
        format!("{{\"id\":\"{layer_id}\"}}").as_bytes(),
    )?;
    append_file(&mut b, &format!("{layer_id}/layer.tar"), &layer)?;
    append_file(&mut b, &format!("{config_hex}.json"), &config)?;
    append_file(&mut b, "manifest.json", &manifest)?;
    append_file(&mut b, "repositories", &repositories)?;
    b.into_inner()?.sync_all()?;
    Ok(())
}
