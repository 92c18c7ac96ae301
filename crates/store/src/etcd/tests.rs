//! Tests of the etcd backend against a real etcd started for the test.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;
use crate::conformance;

/// A throwaway single-member etcd on free loopback ports, killed on drop.
pub(crate) struct EtcdProcess {
    child: Child,
    dir: tempfile::TempDir,
    pub(crate) endpoint: String,
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().expect("local address").port()
}

impl EtcdProcess {
    /// Starts etcd and waits until it answers.
    pub(crate) async fn start() -> EtcdProcess {
        let bin = std::env::var("ETCD_BIN").unwrap_or_else(|_| "/usr/bin/etcd".into());
        assert!(
            Path::new(&bin).exists(),
            "{bin} not found: the etcd backend tests need a real etcd; \
             install it with `apt-get install etcd-server`"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let client = format!("http://127.0.0.1:{}", free_port());
        let peer = format!("http://127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.path().join("etcd.log")).expect("log file");
        let child = Command::new(&bin)
            .args(["--name", "rkube-test"])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("rkube-test={peer}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn etcd");
        let mut p = EtcdProcess {
            child,
            dir,
            endpoint: client.replace("http://", "etcd://"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("etcd exited with {status}: {}", p.log());
            }
            if EtcdStore::connect(std::slice::from_ref(&p.endpoint))
                .await
                .is_ok()
            {
                return p;
            }
            assert!(Instant::now() < deadline, "etcd did not start: {}", p.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }
}

#[tokio::test]
async fn conformance_suite() {
    let etcd = EtcdProcess::start().await;
    let store = EtcdStore::connect(std::slice::from_ref(&etcd.endpoint))
        .await
        .unwrap();
    conformance::run_all(store).await;
}

#[test]
fn endpoints_are_normalized() {
    assert_eq!(
        normalize_endpoint("etcd://127.0.0.1:2379").unwrap(),
        "http://127.0.0.1:2379"
    );
    assert_eq!(normalize_endpoint("http://h:1").unwrap(), "http://h:1");
    assert_eq!(normalize_endpoint("h:1").unwrap(), "http://h:1");
    assert!(normalize_endpoint("https://h:1").is_err());
    assert!(normalize_endpoint("ftp://h").is_err());
    assert!(normalize_endpoint("").is_err());
}

#[test]
fn prefix_ranges() {
    assert_eq!(prefix_end("/a/b/"), b"/a/b0".to_vec());
    assert_eq!(prefix_end(""), vec![0]);
    assert_eq!(prefix_start(""), vec![0]);
    assert_eq!(prefix_start("/x"), b"/x".to_vec());
}

#[tokio::test]
async fn unreachable_endpoint_is_a_backend_error() {
    let port = free_port();
    let r = tokio::time::timeout(
        Duration::from_secs(30),
        EtcdStore::connect(&[format!("etcd://127.0.0.1:{port}")]),
    )
    .await
    .expect("connect gives up");
    assert!(matches!(r, Err(Error::Backend(_))));
}
