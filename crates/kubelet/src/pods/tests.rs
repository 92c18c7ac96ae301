//! Pod worker tests over the in-memory fake runtime.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use rkube_cri::ContainerState;
use serde_json::{Value, json};

use super::fake::{FakeImages, FakeRuntime};
use super::*;
use crate::events::RecordedEvent;

/// A temp dir removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = jiff::Timestamp::now().as_nanosecond();
        let p =
            std::env::temp_dir().join(format!("rkube-kubelet-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Volume mounts (tmpfs of projected volumes) a failed test left behind go first,
        // deepest first, or removing the directory would fail on them.
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|m| std::path::Path::new(m).starts_with(&self.0))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            if let Ok(c) = std::ffi::CString::new(m) {
                // SAFETY: a valid NUL-terminated path; MNT_DETACH only affects that mount.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Default)]
struct TestApi {
    statuses: Mutex<Vec<Value>>,
    deleted: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl PodApi for TestApi {
    async fn patch_status(&self, _pod: &Pod, status: &Value) -> bool {
        self.statuses.lock().unwrap().push(status.clone());
        true
    }
    async fn delete_pod(&self, pod: &Pod) {
        self.deleted
            .lock()
            .unwrap()
            .push(pod.metadata.uid.clone().unwrap_or_default());
    }
}

struct Harness {
    rt: Arc<FakeRuntime>,
    images: Arc<FakeImages>,
    api: Arc<TestApi>,
    workers: Arc<PodWorkers>,
    events: tokio::sync::mpsc::UnboundedReceiver<RecordedEvent>,
    seen: Vec<RecordedEvent>,
    dir: TempDir,
}

impl Harness {
    fn new(tag: &str) -> Harness {
        Harness::with_runtime(
            tag,
            Arc::new(FakeRuntime::default()),
            Arc::new(FakeImages::default()),
        )
    }

    fn with_runtime(tag: &str, rt: Arc<FakeRuntime>, images: Arc<FakeImages>) -> Harness {
        let dir = TempDir::new(tag);
        let mut cfg = KubeletConfig::new("node1", &dir.0);
        cfg.sync_period = Duration::from_millis(30);
        cfg.node_ips = vec!["192.168.1.5".parse().unwrap()];
        cfg.resolv_conf = dir.0.join("resolv.conf");
        let api = Arc::new(TestApi::default());
        let (recorder, events) = crate::events::Recorder::channel();
        let shared = Arc::new(Shared {
            runtime: rt.clone(),
            images: images.clone(),
            client: None,
            api: api.clone(),
            recorder,
            backoff: Backoff::default(),
            cfg: Arc::new(cfg),
            registry: PodRegistry::default(),
            volumes: None,
        });
        Harness {
            rt,
            images,
            api,
            workers: PodWorkers::new(shared),
            events,
            seen: Vec::new(),
            dir,
        }
    }

    fn last_status(&self) -> Value {
        self.api
            .statuses
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or(Value::Null)
    }

    async fn wait_for(&self, what: &str, f: impl Fn(&Harness) -> bool) {
        for _ in 0..200 {
            if f(self) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "timed out waiting for {what}; last status {}",
            self.last_status()
        );
    }

    fn drain_events(&mut self) -> &[RecordedEvent] {
        while let Ok(e) = self.events.try_recv() {
            self.seen.push(e);
        }
        &self.seen
    }
}

fn pod(spec: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "uid-1"},
        "spec": spec,
    }))
    .unwrap()
}

fn phase(s: &Value) -> &str {
    s["phase"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn runs_a_pod_and_reports_running_and_ready() {
    let mut h = Harness::new("run");
    h.workers.update(pod(
        json!({"containers": [{"name": "web", "image": "busybox:1.36"}]}),
    ));
    h.wait_for("Running", |h| {
        let s = h.last_status();
        phase(&s) == "Running" && s["containerStatuses"][0]["ready"] == json!(true)
    })
    .await;
    let s = h.last_status();
    assert_eq!(s["podIP"], json!("10.42.0.10"));
    assert_eq!(s["hostIP"], json!("192.168.1.5"));
    assert_eq!(s["qosClass"], json!("BestEffort"));
    let cs = &s["containerStatuses"][0];
    assert!(cs["containerID"].as_str().unwrap().starts_with("rkube://"));
    assert_eq!(
        cs["imageID"],
        json!("docker.io/library/busybox:1.36@sha256:feed")
    );
    let conds: Vec<(&str, &str)> = s["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["type"].as_str().unwrap(), c["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        conds,
        vec![
            ("PodReadyToStartContainers", "True"),
            ("Initialized", "True"),
            ("Ready", "True"),
            ("ContainersReady", "True")
        ]
    );
    let hosts =
        std::fs::read_to_string(h.dir.0.join("agent/kubelet/pods/uid-1/etc-hosts")).unwrap();
    assert!(hosts.contains("10.42.0.10\tweb\n"));
    let cfg = h.rt.container_config("web").unwrap();
    assert!(cfg.mounts.iter().any(|m| m.container_path == "/etc/hosts"));
    assert!(
        cfg.mounts
            .iter()
            .any(|m| m.container_path == "/dev/termination-log")
    );
    assert_eq!(cfg.log_path, PathBuf::from("web/0.log"));
    let sb = h.rt.sandbox_config().unwrap();
    assert_eq!(sb.cgroup_parent, "kubepods/besteffort/poduid-1");
    assert!(
        sb.log_directory
            .ends_with("agent/logs/pods/default_web_uid-1")
    );
    let reasons: Vec<String> = h
        .drain_events()
        .iter()
        .map(|e| format!("{}: {}", e.reason, e.message))
        .collect();
    assert_eq!(
        reasons,
        vec![
            "Pulling: Pulling image \"busybox:1.36\"".to_string(),
            reasons[1].clone(),
            "Created: Container created".into(),
            "Started: Container started".into(),
        ]
    );
    assert!(reasons[1].starts_with("Pulled: Successfully pulled image \"busybox:1.36\" in "));
    assert!(reasons[1].ends_with("Image size: 1234 bytes."));
}

#[tokio::test]
async fn crashing_container_restarts_then_backs_off() {
    let mut h = Harness::new("crash");
    h.images
        .present
        .lock()
        .unwrap()
        .insert("busybox:1.36".into());
    h.workers.update(pod(
        json!({"containers": [{"name": "web", "image": "busybox:1.36"}]}),
    ));
    h.wait_for("start", |h| h.rt.containers().len() == 1).await;
    h.rt.exit("web", 1);
    // First crash: restarted at once.
    h.wait_for("restart", |h| {
        h.rt.containers()
            .iter()
            .any(|c| c.1 == 1 && c.2 == ContainerState::Running)
    })
    .await;
    h.rt.exit("web", 1);
    h.wait_for("CrashLoopBackOff", |h| {
        let s = h.last_status();
        s["containerStatuses"][0]["state"]["waiting"]["reason"] == json!("CrashLoopBackOff")
    })
    .await;
    let s = h.last_status();
    let cs = &s["containerStatuses"][0];
    assert_eq!(cs["restartCount"], json!(1));
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], json!(1));
    assert_eq!(cs["lastState"]["terminated"]["reason"], json!("Error"));
    assert_eq!(
        cs["state"]["waiting"]["message"],
        json!("back-off 10s restarting failed container=web pod=web_default(uid-1)")
    );
    assert_eq!(phase(&s), "Running");
    let ready = s["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert_eq!(ready["reason"], json!("ContainersNotReady"));
    assert_eq!(
        ready["message"],
        json!("containers with unready status: [web]")
    );
    assert!(h.drain_events().iter().any(|e| e.reason == "BackOff"
        && e.message == "Back-off restarting failed container web in pod web_default(uid-1)"));
    // Only the newest exited container is kept, with its log; the older log is gone.
    assert_eq!(h.rt.containers().len(), 1);
    let logs = h.dir.0.join("agent/logs/pods/default_web_uid-1/web");
    assert!(!logs.join("0.log").exists());
    assert!(logs.join("1.log").exists());
}

#[tokio::test]
async fn never_pod_succeeds_and_stops_its_sandbox() {
    let h = Harness::new("never");
    h.workers.update(pod(json!({"restartPolicy": "Never",
        "containers": [{"name": "web", "image": "busybox:1.36", "command": ["true"]}]})));
    h.wait_for("Succeeded", |h| phase(&h.last_status()) == "Succeeded")
        .await;
    let s = h.last_status();
    assert_eq!(
        s["containerStatuses"][0]["state"]["terminated"]["reason"],
        json!("Completed")
    );
    let ready = s["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert_eq!(ready["reason"], json!("PodCompleted"));
    h.wait_for("sandbox stopped", |h| {
        h.rt.calls
            .lock()
            .unwrap()
            .iter()
            .any(|c| c.starts_with("stop_pod_sandbox"))
    })
    .await;
    // Nothing is started again.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(h.rt.containers().len(), 1);
}

#[tokio::test]
async fn init_containers_run_in_order_and_failure_fails_never_pod() {
    let h = Harness::new("init");
    h.workers.update(pod(json!({"restartPolicy": "Never",
        "initContainers": [{"name": "i1", "image": "busybox:1.36", "command": ["true"]},
                           {"name": "i2", "image": "busybox:1.36", "command": ["false"]}],
        "containers": [{"name": "web", "image": "busybox:1.36"}]})));
    h.wait_for("Failed", |h| phase(&h.last_status()) == "Failed")
        .await;
    let names: Vec<String> = h.rt.containers().into_iter().map(|c| c.0).collect();
    assert_eq!(names, vec!["i1", "i2"]);
    let s = h.last_status();
    assert_eq!(
        s["initContainerStatuses"][1]["state"]["terminated"]["exitCode"],
        json!(1)
    );
    assert_eq!(
        s["containerStatuses"][0]["state"]["waiting"]["reason"],
        json!("PodInitializing")
    );
}

#[tokio::test]
async fn deletion_stops_removes_and_deletes() {
    let h = Harness::new("delete");
    let mut p = pod(json!({"containers": [{"name": "web", "image": "busybox:1.36"}]}));
    h.workers.update(p.clone());
    h.wait_for("Running", |h| phase(&h.last_status()) == "Running")
        .await;
    let log_dir = h.dir.0.join("agent/logs/pods/default_web_uid-1");
    assert!(log_dir.exists());
    p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        jiff::Timestamp::now(),
    ));
    p.metadata.deletion_grace_period_seconds = Some(0);
    h.workers.update(p);
    h.wait_for("deleted", |h| !h.api.deleted.lock().unwrap().is_empty())
        .await;
    assert_eq!(h.rt.sandbox_count(), 0);
    assert!(!log_dir.exists());
    assert!(!h.dir.0.join("agent/kubelet/pods/uid-1").exists());
}

#[tokio::test]
async fn restarted_kubelet_adopts_running_containers_and_removes_orphans() {
    let rt = Arc::new(FakeRuntime::default());
    let images = Arc::new(FakeImages::default());
    let p = pod(json!({"containers": [{"name": "web", "image": "busybox:1.36"}]}));
    {
        let h = Harness::with_runtime("adopt1", rt.clone(), images.clone());
        h.workers.update(p.clone());
        h.wait_for("start", |h| h.rt.containers().len() == 1).await;
        let mut other = pod(json!({"containers": [{"name": "x", "image": "busybox:1.36"}]}));
        other.metadata.uid = Some("uid-orphan".into());
        other.metadata.name = Some("gone".into());
        h.workers.update(other);
        h.wait_for("orphan start", |h| h.rt.containers().len() == 2)
            .await;
        // The kubelet stops: workers are dropped without cleaning up.
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let creates_before = rt
        .calls
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.starts_with("create"))
        .count();
    let h = Harness::with_runtime("adopt2", rt.clone(), images);
    h.workers.update(p);
    let known: std::collections::HashSet<String> = ["uid-1".to_string()].into();
    h.workers.cleanup_orphans(&known).await;
    h.wait_for("Running", |h| phase(&h.last_status()) == "Running")
        .await;
    let creates_after = rt
        .calls
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.starts_with("create"))
        .count();
    assert_eq!(
        creates_before, creates_after,
        "running container was restarted"
    );
    assert_eq!(rt.sandbox_count(), 1);
}

#[tokio::test]
async fn image_pull_failure_then_backoff() {
    let mut h = Harness::new("pull");
    h.workers.update(pod(
        json!({"containers": [{"name": "web", "image": "bad/image:1"}]}),
    ));
    h.wait_for("ErrImagePull", |h| {
        h.last_status()["containerStatuses"][0]["state"]["waiting"]["reason"]
            == json!("ErrImagePull")
    })
    .await;
    h.wait_for("ImagePullBackOff", |h| {
        h.last_status()["containerStatuses"][0]["state"]["waiting"]["reason"]
            == json!("ImagePullBackOff")
    })
    .await;
    let s = h.last_status();
    assert!(
        s["containerStatuses"][0]["state"]["waiting"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Back-off pulling image \"bad/image:1\": ErrImagePull: failed to resolve")
    );
    assert_eq!(h.images.pulls.load(Ordering::SeqCst), 1);
    let evs = h.drain_events();
    assert!(evs.iter().any(|e| {
        e.reason == "Failed"
            && e.message
                .starts_with("Failed to pull image \"bad/image:1\": ")
    }));
    assert!(evs.iter().any(|e| e.reason == "BackOff" && e.message == "Back-off pulling image \"bad/image:1\""));
    let never = pod(
        json!({"containers": [{"name": "web", "image": "absent:1", "imagePullPolicy": "Never"}]}),
    );
    let h2 = Harness::new("never-pull");
    h2.workers.update(never);
    h2.wait_for("ErrImageNeverPull", |h| {
        h.last_status()["containerStatuses"][0]["state"]["waiting"]["reason"]
            == json!("ErrImageNeverPull")
    })
    .await;
}

#[tokio::test]
async fn failing_liveness_probe_restarts_container() {
    let mut h = Harness::new("liveness");
    h.rt.exec_results.lock().unwrap().insert("check".into(), 1);
    h.workers.update(pod(json!({"containers": [{"name": "web", "image": "busybox:1.36",
        "livenessProbe": {"exec": {"command": ["check"]}, "periodSeconds": 1, "failureThreshold": 1}}]})));
    h.wait_for("restart", |h| h.rt.containers().iter().any(|c| c.1 == 1))
        .await;
    let evs = h.drain_events();
    assert!(
        evs.iter()
            .any(|e| e.reason == "Unhealthy" && e.message == "Liveness probe failed: unhealthy\n")
    );
    assert!(evs.iter().any(|e| e.reason == "Killing"
        && e.message == "Container web failed liveness probe, will be restarted"));
}

#[tokio::test]
async fn readiness_probe_gates_ready_and_http_probe_works() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let status = Arc::new(Mutex::new(500u16));
    let st = status.clone();
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let code = *st.lock().unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n").as_bytes())
                .await;
        }
    });
    let mut h = Harness::new("readiness");
    h.rt.ports.lock().unwrap().insert(8080, addr);
    h.workers.update(pod(
        json!({"containers": [{"name": "web", "image": "busybox:1.36",
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"port": "http", "path": "/healthz"}, "periodSeconds": 1}}]}),
    ));
    h.wait_for("Running", |h| phase(&h.last_status()) == "Running")
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        h.last_status()["containerStatuses"][0]["ready"],
        json!(false)
    );
    assert!(h.drain_events().iter().any(|e| e.reason == "Unhealthy"
        && e.message == "Readiness probe failed: HTTP probe failed with statuscode: 500"));
    *status.lock().unwrap() = 200;
    h.wait_for("ready", |h| {
        h.last_status()["containerStatuses"][0]["ready"] == json!(true)
    })
    .await;
    server.abort();
}

#[tokio::test]
async fn active_deadline_fails_the_pod() {
    let h = Harness::new("deadline");
    h.workers.update(pod(json!({"activeDeadlineSeconds": 1,
        "containers": [{"name": "web", "image": "busybox:1.36"}]})));
    h.wait_for("Running", |h| phase(&h.last_status()) == "Running")
        .await;
    for _ in 0..100 {
        if phase(&h.last_status()) == "Failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = h.last_status();
    assert_eq!(phase(&s), "Failed");
    assert_eq!(s["reason"], json!("DeadlineExceeded"));
    assert_eq!(
        s["message"],
        json!("Pod was active on the node longer than the specified deadline")
    );
    assert!(
        h.rt.containers()
            .iter()
            .all(|c| c.2 != ContainerState::Running)
    );
}

#[tokio::test]
async fn termination_message_is_reported() {
    let h = Harness::new("termmsg");
    h.workers.update(pod(json!({"restartPolicy": "Never",
        "containers": [{"name": "web", "image": "busybox:1.36"}]})));
    h.wait_for("start", |h| h.rt.containers().len() == 1).await;
    let cfg = h.rt.container_config("web").unwrap();
    let host = cfg
        .mounts
        .iter()
        .find(|m| m.container_path == "/dev/termination-log")
        .unwrap()
        .host_path
        .clone();
    std::fs::write(host, "all done").unwrap();
    h.rt.exit("web", 3);
    h.wait_for("Failed", |h| phase(&h.last_status()) == "Failed")
        .await;
    let t = &h.last_status()["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(t["message"], json!("all done"));
    assert_eq!(t["exitCode"], json!(3));
}

#[tokio::test]
async fn failed_post_start_hook_kills_the_container() {
    let mut h = Harness::new("poststart");
    h.rt.exec_results.lock().unwrap().insert("hook".into(), 1);
    h.workers.update(pod(
        json!({"restartPolicy": "Never", "containers": [{"name": "web",
        "image": "busybox:1.36", "lifecycle": {"postStart": {"exec": {"command": ["hook"]}}}}]}),
    ));
    h.wait_for("Failed", |h| phase(&h.last_status()) == "Failed")
        .await;
    let evs = h.drain_events();
    let hook = evs
        .iter()
        .find(|e| e.reason == "FailedPostStartHook")
        .expect("FailedPostStartHook event");
    assert!(hook.message.starts_with(
        "Exec lifecycle hook ([hook]) for Container \"web\" in Pod \"web_default(uid-1)\" failed"
    ));
    assert!(
        evs.iter()
            .any(|e| e.reason == "Killing" && e.message == "FailedPostStartHook")
    );
}

#[tokio::test]
async fn static_pod_runs_without_api_and_stops_when_removed() {
    let h = Harness::new("static");
    let dir = h.dir.0.join("manifests");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("s.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: s\nspec:\n  containers:\n  - name: c\n    image: busybox:1.36\n",
    )
    .unwrap();
    let mut src = crate::static_pods::StaticPods::new(dir.clone(), "node1".into());
    for p in src.scan().added {
        h.workers.update(p);
    }
    h.wait_for("static running", |h| {
        h.rt.containers()
            .iter()
            .any(|c| c.2 == ContainerState::Running)
    })
    .await;
    std::fs::remove_file(dir.join("s.yaml")).unwrap();
    for p in src.scan().removed {
        h.workers.remove(p.metadata.uid.as_deref().unwrap());
    }
    h.wait_for("static removed", |h| h.rt.sandbox_count() == 0)
        .await;
    assert!(
        h.api.deleted.lock().unwrap().is_empty(),
        "static pods are never deleted through the API"
    );
}
