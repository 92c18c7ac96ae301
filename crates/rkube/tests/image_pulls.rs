//! Image pulls from a real registry (Debian's `docker-registry`) on loopback, with and without
//! htpasswd authentication, through `imagePullSecrets`; and the `rkube image` commands.

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::{Server, eventually, free_port};

/// A `docker-registry` on 127.0.0.1, stopped on drop.
struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start(auth: Option<(&str, &str)>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some((user, password)) = auth {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("htpasswd (apache2-utils) missing: run scripts/install-test-deps.sh");
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, &out.stdout).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: test-realm\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry missing: run scripts/install-test-deps.sh");
        assert!(
            eventually(Duration::from_secs(10), || {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            }),
            "docker-registry did not start"
        );
        Registry {
            child,
            port,
            _dir: dir,
        }
    }

    /// Pushes the busybox test image as `127.0.0.1:<port>/<name>`; returns that reference.
    fn push_busybox(&self, name: &str, creds: Option<&str>) -> String {
        let dir = tempfile::tempdir().unwrap();
        let archive: PathBuf = dir.path().join("busybox.tar");
        rkube_image::testing::busybox_oci_archive(&archive, "busybox:1.36").unwrap();
        let reference = format!("127.0.0.1:{}/{name}", self.port);
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--dest-tls-verify=false"]);
        if let Some(c) = creds {
            cmd.args(["--dest-creds", c]);
        }
        let out = cmd
            .arg(format!("oci-archive:{}", archive.display()))
            .arg(format!("docker://{reference}"))
            .output()
            .expect("skopeo missing: run scripts/install-test-deps.sh");
        assert!(
            out.status.success(),
            "skopeo copy: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        reference
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pod(name: &str, image: &str, secret: Option<&str>) -> String {
    let secrets = secret
        .map(|s| format!("  imagePullSecrets:\n  - name: {s}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  terminationGracePeriodSeconds: 1
{secrets}  containers:
  - name: main
    image: {image}
    command: [sleep, '3600']
"
    )
}

#[test]
fn pulls_from_a_registry_without_auth() {
    let registry = Registry::start(None);
    let image = registry.push_busybox("library/busybox:open", None);
    let s = Server::start_node();
    s.apply(&pod("pulled", &image, None));
    s.wait_ready("pulled");
    let describe = s.ok(&["describe", "pod", "pulled"]);
    assert!(describe.contains("Pulling"), "{describe}");
    assert!(describe.contains("Successfully pulled image"), "{describe}");
    let image_id = s.jsonpath(&["pod", "pulled"], "{.status.containerStatuses[0].imageID}");
    assert!(image_id.contains("sha256:"), "{image_id}");

    // An image that does not exist: ErrImagePull, then ImagePullBackOff, with the registry's
    // answer.
    s.apply(&pod(
        "missing",
        &format!("127.0.0.1:{}/nope:1", registry.port),
        None,
    ));
    assert!(
        eventually(Duration::from_secs(60), || {
            let reason = s.jsonpath_or_empty(
                &["pod", "missing"],
                "{.status.containerStatuses[0].state.waiting.reason}",
            );
            reason == "ImagePullBackOff" || reason == "ErrImagePull"
        }),
        "{}",
        s.run(&["describe", "pod", "missing"], None).stdout
    );
    let describe = s.ok(&["describe", "pod", "missing"]);
    assert!(describe.contains("Failed to pull image"), "{describe}");
    assert!(describe.contains("not found"), "{describe}");
}

#[test]
fn pulls_with_htpasswd_auth_need_the_pull_secret() {
    let registry = Registry::start(Some(("puller", "s3cret")));
    let image = registry.push_busybox("private/busybox:1.0", Some("puller:s3cret"));
    let s = Server::start_node();
    s.apply(&pod("no-secret", &image, None));
    assert!(
        eventually(Duration::from_secs(60), || {
            let reason = s.jsonpath_or_empty(
                &["pod", "no-secret"],
                "{.status.containerStatuses[0].state.waiting.reason}",
            );
            reason == "ImagePullBackOff" || reason == "ErrImagePull"
        }),
        "{}",
        s.run(&["describe", "pod", "no-secret"], None).stdout
    );
    s.ok(&[
        "create",
        "secret",
        "docker-registry",
        "regcred",
        &format!("--docker-server=127.0.0.1:{}", registry.port),
        "--docker-username=puller",
        "--docker-password=s3cret",
    ]);
    s.apply(&pod("with-secret", &image, Some("regcred")));
    s.wait_ready("with-secret");
}

#[test]
fn image_commands_import_list_and_remove() {
    let s = Server::start();
    let archive = s.dir.path().join("extra.tar");
    rkube_image::testing::busybox_oci_archive(&archive, "example.com/tools/busybox:2").unwrap();
    let rkube = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_rkube"))
            .arg("image")
            .args(args)
            .arg("--data-dir")
            .arg(s.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "rkube image {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    rkube(&["import", archive.to_str().unwrap()]);
    let ls = rkube(&["ls"]);
    assert!(ls.contains("example.com/tools/busybox"), "{ls}");
    rkube(&["rm", "example.com/tools/busybox:2"]);
    assert!(!rkube(&["ls"]).contains("example.com/tools/busybox"));
}
