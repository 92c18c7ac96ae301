//! End-to-end tests of the embedded runtime (run as root). `harness = false`: the binary must
//! be able to act as the pod supervisor, so `main` first hands over to the shim when asked.

mod common;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::time::{Duration, Instant};

use common::{Env, container_config, log_lines};
use futures::FutureExt;
use rkube_cri::{
    ContainerState, Error, NamespaceMode, PodSandboxState, RuntimeService, StreamOptions,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Case = for<'a> fn(&'a mut Env) -> Pin<Box<dyn Future<Output = ()> + 'a>>;

macro_rules! cases {
    ($($name:ident),* $(,)?) => { vec![$((stringify!($name), (|e| Box::pin($name(e))) as Case)),*] };
}

fn main() {
    rkube_runtime::run_shim_if_requested();
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let cases: Vec<(&str, Case)> = cases![
        echo_logs_and_completes,
        exit_code_error,
        hostname_is_the_sandbox_hostname,
        ps_sees_only_the_container,
        host_files_are_invisible,
        missing_executable_is_a_start_error,
        memory_limit_oom_kills,
        exec_sync_runs_in_the_container,
        exec_with_stdin,
        exec_with_tty,
        container_with_tty,
        attach_to_stdin,
        port_forward_reaches_the_pod,
        stop_with_timeout_kills,
        containers_share_the_pod_network,
        shared_pid_namespace,
        host_network_pod,
        readoption_after_restart,
        remove_leaves_nothing,
        dead_shim_makes_sandbox_not_ready,
    ];
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut failed = Vec::new();
    let mut ran = 0;
    for (name, case) in cases {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        ran += 1;
        let start = Instant::now();
        let result = rt.block_on(async {
            let mut env = Env::new();
            let r = match tokio::time::timeout(
                CASE_TIMEOUT,
                AssertUnwindSafe(case(&mut env)).catch_unwind(),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => {
                    println!("case {name} timed out after {CASE_TIMEOUT:?}");
                    Err(Box::new("timeout") as Box<dyn std::any::Any + Send>)
                }
            };
            let c = AssertUnwindSafe(env.cleanup()).catch_unwind().await;
            r.and(c)
        });
        match result {
            Ok(()) => println!("case {name} ... ok ({:?})", start.elapsed()),
            Err(_) => {
                println!("case {name} ... FAILED ({:?})", start.elapsed());
                failed.push(name);
            }
        }
    }
    println!("\n{} passed, {} failed", ran - failed.len(), failed.len());
    if !failed.is_empty() {
        println!("failed: {failed:?}");
        std::process::exit(1);
    }
}

const T: Duration = Duration::from_secs(20);
const CASE_TIMEOUT: Duration = Duration::from_secs(120);

async fn echo_logs_and_completes(env: &mut Env) {
    let (sid, scfg) = env.run_sandbox("echo").await;
    let st = env.runtime.pod_sandbox_status(&sid).await.unwrap();
    assert_eq!(st.sandbox.state, PodSandboxState::Ready);
    assert!(st.netns_path.as_ref().is_some_and(|p| p.exists()), "{st:?}");
    let id = env.run(&sid, &scfg, "c", &["echo", "hello"]).await;
    let st = env.wait_exited(&id, T).await;
    assert_eq!(
        (st.exit_code, st.reason.as_str()),
        (0, "Completed"),
        "{st:?}"
    );
    assert!(st.started_at > 0 && st.finished_at >= st.started_at);
    assert_eq!(st.log_path, scfg.log_directory.join("c/0.log"));
    let raw = std::fs::read_to_string(&st.log_path).unwrap();
    let line = raw.lines().next().unwrap();
    let (ts, rest) = line.split_once(' ').unwrap();
    assert_eq!(rest, "stdout F hello");
    assert!(
        ts.len() == 30 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
        "timestamp {ts:?}"
    );
    let list = env.runtime.list_containers(Some(&sid)).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].state, ContainerState::Exited);
    env.runtime.remove_container(&id).await.unwrap();
    assert!(st.log_path.exists(), "log files stay after removal");
    assert!(matches!(
        env.runtime.container_status(&id).await,
        Err(Error::NotFound(_))
    ));
}

async fn exit_code_error(env: &mut Env) {
    let st = env
        .run_to_exit("exit", &["sh", "-c", "echo oops >&2; exit 3"], T)
        .await;
    assert_eq!((st.exit_code, st.reason.as_str()), (3, "Error"));
    assert_eq!(log_lines(&st.log_path), vec!["stderr F oops"]);
}

async fn hostname_is_the_sandbox_hostname(env: &mut Env) {
    let st = env
        .run_to_exit(
            "myhost",
            &["sh", "-c", "hostname; cat /etc/hostname; echo $HOSTNAME"],
            T,
        )
        .await;
    assert_eq!(log_lines(&st.log_path), vec!["stdout F myhost"; 3]);
}

async fn ps_sees_only_the_container(env: &mut Env) {
    let st = env
        .run_to_exit(
            "ps",
            &["sh", "-c", "sleep 100 & sleep 0.2; ps -o pid,comm; true"],
            T,
        )
        .await;
    let lines = log_lines(&st.log_path);
    let procs: Vec<&String> = lines.iter().skip(1).collect();
    assert!(procs.len() == 3, "expected sh, sleep and ps: {lines:?}");
    for p in procs {
        assert!(
            p.ends_with(" sh") || p.ends_with(" sleep") || p.ends_with(" ps"),
            "{lines:?}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.trim_start_matches("stdout F").trim().starts_with("1 sh")),
        "{lines:?}"
    );
}

async fn host_files_are_invisible(env: &mut Env) {
    let marker = format!("/tmp/rkube-marker-{}", std::process::id());
    std::fs::write(&marker, "host").unwrap();
    let (sid, scfg) = env.run_sandbox("files").await;
    let script = format!(
        "ls {marker} >/dev/null 2>&1 && echo visible || echo invisible; ls /; cat /proc/1/cgroup >/dev/null"
    );
    let id = env.run(&sid, &scfg, "c", &["sh", "-c", &script]).await;
    let st = env.wait_exited(&id, T).await;
    let _ = std::fs::remove_file(&marker);
    let lines = log_lines(&st.log_path);
    assert_eq!(lines[0], "stdout F invisible", "{lines:?}");
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("agent") || l.contains("rkrt")),
        "host paths visible: {lines:?}"
    );
}

async fn missing_executable_is_a_start_error(env: &mut Env) {
    let (sid, scfg) = env.run_sandbox("nope").await;
    let id = env
        .runtime
        .create_container(&sid, &container_config("c", &["nope"]), &scfg)
        .await
        .unwrap();
    let err = env.runtime.start_container(&id).await.unwrap_err();
    match &err {
        Error::Container(m) => assert!(
            m.contains(r#"exec: "nope": executable file not found in $PATH"#),
            "{m}"
        ),
        e => panic!("wrong error kind: {e:?}"),
    }
    let st = env.runtime.container_status(&id).await.unwrap();
    assert_eq!(st.container.state, ContainerState::Exited);
    assert_eq!(st.reason, "StartError");
    let err = env
        .runtime
        .create_container(
            &sid,
            &container_config("d", &["true"]).tap_image("missing:1"),
            &scfg,
        )
        .await;
    assert!(matches!(err, Err(Error::NotFound(_))), "{err:?}");
}

trait TapImage {
    fn tap_image(self, image: &str) -> Self;
}
impl TapImage for rkube_cri::ContainerConfig {
    fn tap_image(mut self, image: &str) -> Self {
        self.image = image.into();
        self
    }
}

async fn memory_limit_oom_kills(env: &mut Env) {
    let (sid, scfg) = env.run_sandbox("oom").await;
    let mut cfg = container_config(
        "c",
        &[
            "sh",
            "-c",
            "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
        ],
    );
    cfg.resources.memory_limit_in_bytes = 20 << 20;
    let id = env.run_with(&sid, &scfg, cfg).await;
    let st = env.wait_exited(&id, Duration::from_secs(60)).await;
    assert_eq!(
        (st.exit_code, st.reason.as_str()),
        (137, "OOMKilled"),
        "{st:?}"
    );
}

async fn exec_sync_runs_in_the_container(env: &mut Env) {
    let (_, id) = env.run_sleeping("execsync").await;
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let r = env
        .runtime
        .exec_sync(&id, &s(&["hostname"]), T)
        .await
        .unwrap();
    assert_eq!((r.stdout.as_slice(), r.exit_code), (&b"execsync\n"[..], 0));
    let r = env
        .runtime
        .exec_sync(&id, &s(&["sh", "-c", "echo err >&2; exit 7"]), T)
        .await
        .unwrap();
    assert_eq!((r.stderr.as_slice(), r.exit_code), (&b"err\n"[..], 7));
    let r = env
        .runtime
        .exec_sync(&id, &s(&["sh", "-c", "ps -o pid,comm | grep -c sleep"]), T)
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&r.stdout).trim(),
        "1",
        "exec shares the container's PID namespace"
    );
    let start = Instant::now();
    let r = env
        .runtime
        .exec_sync(&id, &s(&["sleep", "100"]), Duration::from_millis(300))
        .await;
    assert!(
        r.is_err() && start.elapsed() < Duration::from_secs(5),
        "{r:?}"
    );
    let err = env
        .runtime
        .exec_sync(&id, &s(&["nope"]), T)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains(r#"exec: "nope": executable file not found in $PATH"#),
        "{err}"
    );
    // The timed-out exec was killed: only the main sleep is left.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = env
        .runtime
        .exec_sync(&id, &s(&["sh", "-c", "ps -o comm | grep -c sleep"]), T)
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), "1");
}

/// Streams for an interactive session (`kubectl exec -i`/`-it`): stdin and stdout, and
/// stderr unless there is a terminal (a TTY merges it into stdout).
fn interactive(tty: bool) -> StreamOptions {
    StreamOptions {
        stdin: true,
        stdout: true,
        stderr: !tty,
        tty,
    }
}

/// Everything `r` yields until EOF.
async fn read_all(mut r: rkube_cri::Reader) -> String {
    let mut out = String::new();
    r.read_to_string(&mut out).await.unwrap();
    out
}

async fn exec_with_stdin(env: &mut Env) {
    let (_, id) = env.run_sleeping("execin").await;
    let opts = interactive(false);
    let mut s = env
        .runtime
        .exec(&id, &["cat".to_string()], &opts)
        .await
        .unwrap();
    let mut stdin = s.stdin.take().unwrap();
    stdin.write_all(b"ping\n").await.unwrap();
    drop(stdin);
    let out = read_all(s.stdout.take().unwrap()).await;
    assert_eq!(out, "ping\n");
    assert_eq!(s.exit.await.unwrap(), 0);
}

async fn exec_with_tty(env: &mut Env) {
    let (_, id) = env.run_sleeping("exectty").await;
    let opts = interactive(true);
    let mut s = env
        .runtime
        .exec(&id, &["sh".to_string()], &opts)
        .await
        .unwrap();
    s.resize
        .as_ref()
        .unwrap()
        .send(rkube_cri::TerminalSize {
            width: 123,
            height: 45,
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut stdin = s.stdin.take().unwrap();
    stdin.write_all(b"stty size; tty; exit 5\n").await.unwrap();
    let mut out = String::new();
    let _ = tokio::time::timeout(T, s.stdout.take().unwrap().read_to_string(&mut out)).await;
    assert!(out.contains("45 123"), "{out:?}");
    assert!(out.contains("/dev/pts/"), "{out:?}");
    assert_eq!(s.exit.await.unwrap(), 5);
}

async fn container_with_tty(env: &mut Env) {
    let (sid, scfg) = env.run_sandbox("tty").await;
    let mut cfg = container_config("c", &["sh", "-c", "tty; echo hi"]);
    cfg.tty = true;
    let id = env.run_with(&sid, &scfg, cfg).await;
    let st = env.wait_exited(&id, T).await;
    let lines = log_lines(&st.log_path);
    assert_eq!(st.exit_code, 0, "{lines:?}");
    assert!(lines[0].starts_with("stdout F /dev/pts/0"), "{lines:?}");
}

async fn attach_to_stdin(env: &mut Env) {
    let (sid, scfg) = env.run_sandbox("attach").await;
    let mut cfg = container_config("c", &["sh", "-c", "echo ready; read line; echo got $line"]);
    cfg.stdin = true;
    let id = env.run_with(&sid, &scfg, cfg).await;
    let opts = interactive(false);
    let mut s = env.runtime.attach(&id, &opts).await.unwrap();
    s.stdin.as_mut().unwrap().write_all(b"x\n").await.unwrap();
    let out = read_all(s.stdout.take().unwrap()).await;
    assert!(out.ends_with("got x\n"), "{out:?}");
    assert_eq!(s.exit.await.unwrap(), 0);
    let st = env.wait_exited(&id, T).await;
    assert_eq!(
        log_lines(&st.log_path),
        vec!["stdout F ready", "stdout F got x"]
    );
}

async fn http_get(stream: &mut tokio::net::TcpStream) -> String {
    stream
        .write_all(b"GET /index.html HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out
}

async fn port_forward_reaches_the_pod(env: &mut Env) {
    let (sid, scfg) = env.run_sandbox("pf").await;
    env.run(
        &sid,
        &scfg,
        "web",
        &["httpd", "-f", "-p", "8080", "-h", "/www"],
    )
    .await;
    let deadline = Instant::now() + T;
    let mut stream = loop {
        match env.runtime.port_forward(&sid, 8080).await {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("port-forward: {e}"),
        }
    };
    let resp = http_get(&mut stream).await;
    assert!(
        resp.starts_with("HTTP/1.")
            && resp.contains(" 200 ")
            && resp.ends_with("hello from httpd\n"),
        "{resp:?}"
    );
    // The host's loopback is another namespace: nothing listens on 8080 there.
    assert!(std::net::TcpStream::connect(("127.0.0.1", 8080)).is_err());
}

async fn stop_with_timeout_kills(env: &mut Env) {
    let (sid, scfg) = env.run_sandbox("stop").await;
    let id = env.run(&sid, &scfg, "c", &["sleep", "1000"]).await;
    let st = env.runtime.container_status(&id).await.unwrap();
    assert_eq!(st.container.state, ContainerState::Running);
    assert!(st.pid.is_some());
    let start = Instant::now();
    // PID 1 without a handler ignores SIGTERM: the stop must fall back to SIGKILL.
    env.runtime
        .stop_container(&id, Duration::from_millis(500))
        .await
        .unwrap();
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(10),
        "{took:?}"
    );
    let st = env.runtime.container_status(&id).await.unwrap();
    assert_eq!(
        (st.container.state, st.exit_code, st.reason.as_str()),
        (ContainerState::Exited, 137, "Error")
    );
    env.runtime
        .stop_container(&id, Duration::from_secs(1))
        .await
        .unwrap();
    // A process that handles SIGTERM stops at once.
    let id = env
        .run(
            &sid,
            &scfg,
            "d",
            &[
                "sh",
                "-c",
                "trap 'exit 0' TERM; while true; do sleep 0.1; done",
            ],
        )
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = Instant::now();
    env.runtime
        .stop_container(&id, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(start.elapsed() < Duration::from_secs(3));
    let st = env.runtime.container_status(&id).await.unwrap();
    assert_eq!((st.exit_code, st.reason.as_str()), (0, "Completed"));
}

async fn containers_share_the_pod_network(env: &mut Env) {
    let (sid, scfg) = env.run_sandbox("net").await;
    env.run(
        &sid,
        &scfg,
        "web",
        &["httpd", "-f", "-p", "8080", "-h", "/www"],
    )
    .await;
    let script = "for i in $(seq 1 50); do wget -q -O - http://127.0.0.1:8080/index.html && exit 0; sleep 0.1; done; exit 1";
    let id = env.run(&sid, &scfg, "client", &["sh", "-c", script]).await;
    let st = env.wait_exited(&id, T).await;
    assert_eq!(st.exit_code, 0, "{:?}", log_lines(&st.log_path));
    assert!(log_lines(&st.log_path).contains(&"stdout F hello from httpd".to_string()));
}

async fn shared_pid_namespace(env: &mut Env) {
    let mut scfg = env.sandbox_config("sharepid");
    scfg.namespace_options.pid = NamespaceMode::Pod;
    let sid = env.runtime.run_pod_sandbox(&scfg).await.unwrap();
    env.run(&sid, &scfg, "a", &["sleep", "1000"]).await;
    let id = env.run(&sid, &scfg, "b", &["ps", "-o", "pid,comm"]).await;
    let st = env.wait_exited(&id, T).await;
    let lines = log_lines(&st.log_path);
    assert!(lines.iter().any(|l| l.ends_with(" sleep")), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.trim_start_matches("stdout F").trim() == "1 pause"),
        "{lines:?}"
    );
}

async fn host_network_pod(env: &mut Env) {
    let mut scfg = env.sandbox_config("hostnet");
    scfg.namespace_options.network = NamespaceMode::Node;
    let sid = env.runtime.run_pod_sandbox(&scfg).await.unwrap();
    let st = env.runtime.pod_sandbox_status(&sid).await.unwrap();
    assert!(st.netns_path.is_none());
    let id = env.run(&sid, &scfg, "c", &["hostname"]).await;
    let st = env.wait_exited(&id, T).await;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(
        log_lines(&st.log_path),
        vec![format!("stdout F {}", host.trim())]
    );
}

async fn readoption_after_restart(env: &mut Env) {
    let (sid, scfg) = env.run_sandbox("readopt").await;
    let id = env
        .run(&sid, &scfg, "c", &["sh", "-c", "echo before; sleep 1000"])
        .await;
    let pid = env.runtime.container_status(&id).await.unwrap().pid;
    // The shim is detached from the agent: not our child, so our death cannot take it along.
    let rec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(env.root.join("sandboxes").join(&sid).join("sandbox.json")).unwrap(),
    )
    .unwrap();
    let shim = rec["shim_pid"].as_u64().unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{shim}/stat")).unwrap();
    let ppid: u32 = stat
        .rsplit(") ")
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(
        ppid,
        std::process::id(),
        "the shim must not be the agent's child"
    );
    env.reopen();
    let list = env.runtime.list_pod_sandbox().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        (list[0].id.as_str(), list[0].state),
        (sid.as_str(), PodSandboxState::Ready)
    );
    let st = env.runtime.container_status(&id).await.unwrap();
    assert_eq!((st.container.state, st.pid), (ContainerState::Running, pid));
    let r = env
        .runtime
        .exec_sync(&id, &["hostname".to_string()], T)
        .await
        .unwrap();
    assert_eq!(r.stdout, b"readopt\n");
    env.runtime
        .stop_container(&id, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(
        env.runtime
            .container_status(&id)
            .await
            .unwrap()
            .container
            .state,
        ContainerState::Exited
    );
}

async fn remove_leaves_nothing(env: &mut Env) {
    let (sid, scfg) = env.run_sandbox("rm").await;
    let mut cfg = container_config("c", &["sleep", "1000"]);
    let vol = env.tmp.path().join("vol");
    std::fs::create_dir_all(&vol).unwrap();
    std::fs::write(vol.join("f"), "volume").unwrap();
    cfg.mounts.push(rkube_cri::Mount {
        container_path: "/data".into(),
        host_path: vol.clone(),
        readonly: true,
        selinux_relabel: false,
    });
    let id = env.run_with(&sid, &scfg, cfg).await;
    let r = env
        .runtime
        .exec_sync(
            &id,
            &[
                "sh".to_string(),
                "-c".into(),
                "cat /data/f; touch /data/g".into(),
            ],
            T,
        )
        .await
        .unwrap();
    assert_eq!(r.stdout, b"volume");
    assert_ne!(r.exit_code, 0, "read-only mount was writable");
    env.runtime.stop_pod_sandbox(&sid).await.unwrap();
    let st = env.runtime.pod_sandbox_status(&sid).await.unwrap();
    assert_eq!(st.sandbox.state, PodSandboxState::NotReady);
    assert_eq!(
        env.runtime
            .container_status(&id)
            .await
            .unwrap()
            .container
            .state,
        ContainerState::Exited
    );
    env.runtime.stop_pod_sandbox(&sid).await.unwrap();
    env.runtime.remove_pod_sandbox(&sid).await.unwrap();
    env.runtime.remove_pod_sandbox(&sid).await.unwrap();
    assert!(env.runtime.list_containers(None).await.unwrap().is_empty());
    // cleanup() checks mounts, cgroups, shim processes and the state dirs.
}

async fn dead_shim_makes_sandbox_not_ready(env: &mut Env) {
    let (sid, id) = env.run_sleeping("deadshim").await;
    let rec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(env.root.join("sandboxes").join(&sid).join("sandbox.json")).unwrap(),
    )
    .unwrap();
    let shim = rec["shim_pid"].as_u64().unwrap() as i32;
    // SAFETY: kill(2) on the shim this test started.
    unsafe { libc::kill(shim, libc::SIGKILL) };
    let deadline = Instant::now() + T;
    while std::path::Path::new(&format!("/proc/{shim}")).exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let st = env.runtime.pod_sandbox_status(&sid).await.unwrap();
    assert_eq!(st.sandbox.state, PodSandboxState::NotReady);
    let c = env.runtime.container_status(&id).await.unwrap();
    assert_eq!(c.container.state, ContainerState::Unknown, "{c:?}");
    // Stopping still kills the orphaned container (through its cgroup) and records it.
    env.runtime.stop_pod_sandbox(&sid).await.unwrap();
    let c = env.runtime.container_status(&id).await.unwrap();
    assert_eq!(
        (c.container.state, c.exit_code),
        (ContainerState::Exited, 137)
    );
}
