//! Pulls from a real registry (Debian's docker-registry) on loopback.

mod common;

use std::sync::Mutex;

use common::Registry;
use rkube_cri::{AuthConfig, Error, ImageLookup, ImageService, PullProgress};
use rkube_image::{ImageStore, RegistriesConfig, testing};

fn archive(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("busybox.tar");
    testing::busybox_oci_archive(&p, "busybox:1.0").unwrap();
    p
}

#[tokio::test]
async fn pull_anonymous_mirror_and_not_found() {
    let reg = Registry::start(None);
    let tmp = tempfile::tempdir().unwrap();
    let arc = archive(tmp.path());
    reg.push(&arc, "busybox:1.0", None);

    let store = ImageStore::open(tmp.path().join("store")).unwrap();
    let events = Mutex::new(Vec::new());
    let image = format!("{}/busybox:1.0", reg.host());
    let id = store
        .pull_image(&image, &[], &|p| events.lock().unwrap().push(p))
        .await
        .unwrap();
    assert!(id.starts_with("sha256:"));
    let events = events.into_inner().unwrap();
    assert!(
        matches!(events[0], PullProgress::Resolved { layers: 1, .. }),
        "{events:?}"
    );
    assert!(
        matches!(events[1], PullProgress::Layer { cached: false, .. }),
        "{events:?}"
    );

    let resolved = store.resolve(&image).unwrap();
    assert_eq!(resolved.id, id);
    assert!(resolved.layers[0].join("bin/busybox").is_file());
    assert_eq!(resolved.config.cmd, ["sh"]);
    let img = store.image_status(&image).await.unwrap().unwrap();
    assert_eq!(img.repo_tags, std::slice::from_ref(&image));
    assert!(img.repo_digests[0].starts_with(&format!("{}/busybox@sha256:", reg.host())));
    // By digest too.
    assert_eq!(store.resolve(&img.repo_digests[0]).unwrap().id, id);

    // Again: everything cached.
    let again = Mutex::new(Vec::new());
    store
        .pull_image(&image, &[], &|p| again.lock().unwrap().push(p))
        .await
        .unwrap();
    assert!(matches!(
        again.lock().unwrap()[1],
        PullProgress::Layer { cached: true, .. }
    ));

    // Not found, in containerd's words.
    let missing = format!("{}/nope:latest", reg.host());
    let e = store.pull_image(&missing, &[], &|_| {}).await.unwrap_err();
    assert!(matches!(e, Error::ImagePull(_)));
    assert_eq!(
        e.to_string(),
        format!(
            "failed to pull and unpack image \"{missing}\": failed to resolve reference \"{missing}\": {missing}: not found"
        )
    );
    let e = store.pull_image("Foo", &[], &|_| {}).await.unwrap_err();
    assert!(matches!(e, Error::InvalidImageName(_)), "{e}");

    // A docker.io mirror: short names resolve through it (with a rewrite of library/).
    let yaml = format!(
        "mirrors:\n  docker.io:\n    endpoint: [\"http://{}\"]\n    rewrite:\n      \"^library/(.*)\": \"$1\"\n",
        reg.host()
    );
    let mirrored = ImageStore::open_with(
        tmp.path().join("store2"),
        RegistriesConfig::parse(&yaml).unwrap(),
    )
    .unwrap();
    let id2 = mirrored
        .pull_image("busybox:1.0", &[], &|_| {})
        .await
        .unwrap();
    assert_eq!(id2, id);
    let img = mirrored.image_status("busybox:1.0").await.unwrap().unwrap();
    assert_eq!(img.repo_tags, ["docker.io/library/busybox:1.0"]);
    assert!(
        mirrored
            .resolve("docker.io/library/busybox:1.0")
            .unwrap()
            .layers[0]
            .join("bin/sh")
            .is_symlink()
    );
}

#[tokio::test]
async fn pull_with_basic_auth() {
    let (user, pass) = ("rkube", "s3cret");
    let reg = Registry::start(Some((user, pass)));
    let tmp = tempfile::tempdir().unwrap();
    let arc = archive(tmp.path());
    reg.push(&arc, "busybox:1.0", Some((user, pass)));
    let image = format!("{}/busybox:1.0", reg.host());

    let store = ImageStore::open(tmp.path().join("store")).unwrap();
    let e = store.pull_image(&image, &[], &|_| {}).await.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::ImagePull(_)), "{msg}");
    assert!(
        msg.starts_with(&format!("failed to pull and unpack image \"{image}\": failed to resolve reference \"{image}\": pull access denied, repository does not exist or may require authorization: ")),
        "{msg}"
    );
    assert!(
        msg.contains("401 Unauthorized") || msg.contains("unauthorized"),
        "{msg}"
    );

    // Wrong password: still denied.
    let wrong = [AuthConfig {
        server_address: reg.host(),
        username: user.into(),
        password: "nope".into(),
        ..Default::default()
    }];
    assert!(store.pull_image(&image, &wrong, &|_| {}).await.is_err());

    // imagePullSecrets-style credentials.
    let auth = [AuthConfig {
        server_address: reg.host(),
        username: user.into(),
        password: pass.into(),
        ..Default::default()
    }];
    let id = store.pull_image(&image, &auth, &|_| {}).await.unwrap();
    assert!(
        store.resolve(&id).unwrap().layers[0]
            .join("bin/busybox")
            .is_file()
    );

    // registries.yaml credentials (base64 `auth` form).
    let yaml = format!(
        "configs:\n  \"{}\":\n    auth:\n      auth: {}\n",
        reg.host(),
        base64_encode(&format!("{user}:{pass}"))
    );
    let other = ImageStore::open_with(
        tmp.path().join("store2"),
        RegistriesConfig::parse(&yaml).unwrap(),
    )
    .unwrap();
    assert_eq!(other.pull_image(&image, &[], &|_| {}).await.unwrap(), id);
}

fn base64_encode(s: &str) -> String {
    let out = std::process::Command::new("base64")
        .arg("-w0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    out.stdin.as_ref().unwrap().write_all(s.as_bytes()).unwrap();
    String::from_utf8(out.wait_with_output().unwrap().stdout).unwrap()
}
