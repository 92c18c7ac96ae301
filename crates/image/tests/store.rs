//! Import, list, remove and air-gap directory handling of the image store.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Mutex;

use rkube_cri::{ImageLookup, ImageService, PullProgress};
use rkube_image::{ImageStore, testing};

fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[tokio::test]
async fn import_ls_rm_share_layers() {
    let tmp = tempfile::tempdir().unwrap();
    let oci = tmp.path().join("oci.tar");
    let docker = tmp.path().join("docker.tar");
    testing::busybox_oci_archive(&oci, "busybox:1.0").unwrap();
    testing::busybox_docker_archive(&docker, "example.com/tools/busybox:d").unwrap();
    // The data-dir layout, so that `rkube image ls` below sees the same store.
    let root = tmp.path().join("agent/image-store");
    let store = ImageStore::open(&root).unwrap();

    let events = Mutex::new(Vec::new());
    let imgs = store
        .import(&oci, &|p| events.lock().unwrap().push(p))
        .await
        .unwrap();
    assert_eq!(imgs.len(), 1);
    assert_eq!(imgs[0].repo_tags, ["docker.io/library/busybox:1.0"]);
    assert!(imgs[0].repo_digests[0].starts_with("docker.io/library/busybox@sha256:"));
    assert!(matches!(
        events.lock().unwrap()[1],
        PullProgress::Layer { cached: false, .. }
    ));

    let r = store.resolve("busybox:1.0").unwrap();
    let layer = r.layers[0].clone();
    assert!(layer.join("bin/busybox").is_file());
    assert_eq!(
        std::fs::read_link(layer.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert!(
        std::fs::read_to_string(layer.join("etc/passwd"))
            .unwrap()
            .contains("nobody:x:65534")
    );
    assert_eq!(
        std::fs::metadata(layer.join("tmp"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o1777
    );
    assert_eq!(
        r.config.env,
        ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    );
    // Short id prefixes work as crictl's do.
    assert_eq!(store.resolve(&r.id[7..20]).unwrap().id, r.id);

    // Second import: nothing new to store.
    let again = Mutex::new(Vec::new());
    store
        .import(&oci, &|p| again.lock().unwrap().push(p))
        .await
        .unwrap();
    assert!(matches!(
        again.lock().unwrap()[1],
        PullProgress::Layer { cached: true, .. }
    ));

    // The docker archive: another image (other config), same layer.
    let d = store.import(&docker, &|_| {}).await.unwrap();
    assert_eq!(d[0].repo_tags, ["example.com/tools/busybox:d"]);
    assert_ne!(d[0].id, r.id);
    let rd = store.resolve("example.com/tools/busybox:d").unwrap();
    assert_eq!(rd.layers, r.layers);
    assert_eq!(count(&root.join("layers/sha256")), 1);

    let list = store.list_images().await.unwrap();
    assert_eq!(list.len(), 2);
    let table = rkube_image::cli::run(rkube_image::cli::ImageCommand::Ls, tmp.path()).await;
    assert!(table.is_ok());

    // Removing one keeps the shared layer; removing the other collects everything.
    store.remove_image("busybox:1.0").await.unwrap();
    assert!(store.image_status("busybox:1.0").await.unwrap().is_none());
    assert!(layer.join("bin/busybox").is_file());
    store.remove_image(&d[0].id).await.unwrap();
    assert!(!layer.exists());
    assert_eq!(count(&root.join("layers/sha256")), 0);
    assert_eq!(count(&root.join("blobs/sha256")), 0);
    assert!(store.list_images().await.unwrap().is_empty());
    // Removing what is not there is fine (CRI semantics).
    store.remove_image("busybox:1.0").await.unwrap();
}

#[tokio::test]
async fn import_dir_compressed_and_once() {
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("agent/images");
    std::fs::create_dir_all(&images).unwrap();
    let plain = tmp.path().join("plain.tar");
    testing::busybox_oci_archive(&plain, "registry.local/bb:gz").unwrap();
    let data = std::fs::read(&plain).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &data).unwrap();
    std::fs::write(images.join("bb.tar.gz"), gz.finish().unwrap()).unwrap();
    testing::busybox_docker_archive(&images.join("docker.tar.zst.tmp"), "bb:zst").unwrap();
    let zst = zstd::encode_all(
        &std::fs::read(images.join("docker.tar.zst.tmp")).unwrap()[..],
        3,
    )
    .unwrap();
    std::fs::remove_file(images.join("docker.tar.zst.tmp")).unwrap();
    std::fs::write(images.join("docker.tar.zst"), zst).unwrap();
    std::fs::write(images.join("README"), "not an image").unwrap();

    let store = ImageStore::open(tmp.path().join("agent/image-store")).unwrap();
    let got = store.import_dir(&images, &|_| {}).await.unwrap();
    let mut tags: Vec<String> = got.iter().flat_map(|i| i.repo_tags.clone()).collect();
    tags.sort();
    assert_eq!(tags, ["docker.io/library/bb:zst", "registry.local/bb:gz"]);
    assert!(store.import_dir(&images, &|_| {}).await.unwrap().is_empty());
    assert!(
        store
            .import_dir(&tmp.path().join("missing"), &|_| {})
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn corrupt_archive_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good.tar");
    testing::busybox_oci_archive(&good, "busybox:bad").unwrap();
    // Rewrite the archive with one blob's bytes changed (its name keeps the old digest).
    let mut out = tar::Builder::new(Vec::new());
    let mut a = tar::Archive::new(std::fs::File::open(&good).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        if name.starts_with("blobs/")
            && data.first() == Some(&b'{')
            && data.windows(6).any(|w| w == b"rootfs")
        {
            data[1] = b' ';
        }
        let mut h = e.header().clone();
        out.append_data(&mut h, &name, &data[..]).unwrap();
    }
    let bad = tmp.path().join("bad.tar");
    std::fs::write(&bad, out.into_inner().unwrap()).unwrap();
    let root = tmp.path().join("store");
    let store = ImageStore::open(&root).unwrap();
    let e = store.import(&bad, &|_| {}).await.unwrap_err().to_string();
    assert!(e.contains("digest mismatch"), "{e}");
    assert!(store.list_images().await.unwrap().is_empty());
    assert_eq!(count(&root.join("tmp")), 0);
}

#[test]
fn two_processes_share_one_store() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a.tar");
    let b = tmp.path().join("b.tar");
    testing::busybox_oci_archive(&a, "one:1").unwrap();
    testing::busybox_docker_archive(&b, "two:2").unwrap();
    let root = tmp.path().join("store");
    // Separate store handles (separate lock file descriptions), as two processes have.
    let threads: Vec<_> = [a, b]
        .into_iter()
        .map(|p| {
            let root = root.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let s = ImageStore::open(&root).unwrap();
                    for _ in 0..3 {
                        s.import(&p, &|_| {}).await.unwrap();
                    }
                })
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = ImageStore::open(&root).unwrap();
    assert!(s.resolve("one:1").is_ok());
    assert!(s.resolve("two:2").is_ok());
}
