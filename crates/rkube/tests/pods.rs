//! Pods as real Linux containers on the server's own node, driven by the real kubectl: run,
//! logs, exec, cp, port-forward, describe, delete; the seeds' Secret and ConfigMap pods;
//! OOMKilled, CrashLoopBackOff, liveness restarts, bad commands; an agent restart that keeps
//! containers running.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;
use std::time::Duration;

use support::{BUSYBOX, Server, eventually};

/// Waits for a pod phase.
fn wait_phase(s: &Server, pod: &str, phase: &str) {
    let ok = eventually(Duration::from_secs(60), || {
        s.jsonpath_or_empty(&["pod", pod], "{.status.phase}") == phase
    });
    assert!(
        ok,
        "pod {pod} never reached {phase}:\n{}",
        s.run(&["describe", "pod", pod], None).stdout
    );
}

/// Processes on the host whose command line contains `needle`.
fn host_processes(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                out.push(pid);
            }
        }
    }
    out
}

#[test]
fn run_logs_exec_cp_port_forward_describe_and_delete() {
    let s = Server::start_node();
    s.ok(&[
        "run",
        "web",
        &format!("--image={BUSYBOX}"),
        "--",
        "httpd",
        "-f",
        "-p",
        "80",
    ]);
    s.wait_ready("web");
    let uid = s.jsonpath_or_empty(&["pod", "web"], "{.metadata.uid}");
    let pod_ip = s.jsonpath_or_empty(&["pod", "web"], "{.status.podIP}");
    assert!(
        pod_ip.starts_with("10.42."),
        "pod IP {pod_ip:?} is from the node's pod CIDR"
    );
    assert_eq!(
        s.jsonpath_or_empty(&["pod", "web"], "{.status.qosClass}"),
        "BestEffort"
    );

    // exec: the pod's hostname is its name; exit codes come back; stdin reaches the process.
    assert_eq!(s.ok(&["exec", "web", "--", "hostname"]).trim(), "web");
    let r = s.run(&["exec", "web", "--", "sh", "-c", "exit 3"], None);
    assert_eq!(r.code, 3, "exec exit code: {}", r.stderr);
    let echoed = s.ok_stdin(&["exec", "-i", "web", "--", "cat"], "hello from stdin\n");
    assert_eq!(echoed, "hello from stdin\n");
    // The container sees its own processes only, not the host's.
    let ps = s.ok(&["exec", "web", "--", "ps"]);
    assert!(ps.contains("httpd"), "{ps}");
    assert!(
        !ps.contains("rkube"),
        "the host's processes are hidden: {ps}"
    );

    // cp both ways (tar over exec).
    let local = s.write_file("upload.txt", "copied in\n");
    s.ok(&["cp", local.to_str().unwrap(), "web:/tmp/upload.txt"]);
    assert_eq!(
        s.ok(&["exec", "web", "--", "cat", "/tmp/upload.txt"]),
        "copied in\n"
    );
    let back = s.dir.path().join("passwd.out");
    s.ok(&["cp", "web:/etc/passwd", back.to_str().unwrap()]);
    assert!(std::fs::read_to_string(&back).unwrap().contains("root:"));

    // port-forward to busybox httpd.
    s.ok(&["exec", "web", "--", "sh", "-c", "echo served > /index.html"]);
    let local_port = support::free_port();
    let mut pf = s
        .kubectl_cmd(&["port-forward", "pod/web", &format!("{local_port}:80")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(pf.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(
        first.contains("Forwarding from"),
        "port-forward said {first:?}"
    );
    // Keep reading: kubectl writes a line per connection and dies if nobody reads them.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", local_port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    let _ = pf.kill();
    let _ = pf.wait();
    assert!(
        answer.starts_with("HTTP/1.") && answer.contains("served"),
        "{answer}"
    );

    // describe shows the kubelet's events.
    let describe = s.ok(&["describe", "pod", "web"]);
    assert!(
        describe.contains("Successfully assigned default/web to node-1"),
        "{describe}"
    );
    for reason in ["Scheduled", "Created", "Started"] {
        assert!(
            describe.contains(reason),
            "describe lacks {reason}:\n{describe}"
        );
    }
    assert!(
        describe.contains("already present on machine") || describe.contains("Pulled"),
        "{describe}"
    );

    // Deleting leaves no process, mount or cgroup behind.
    assert!(!host_processes("httpd -f -p 80").is_empty());
    s.ok(&["delete", "pod", "web", "--grace-period=1"]);
    assert!(
        eventually(Duration::from_secs(20), || host_processes("httpd -f -p 80")
            .is_empty()),
        "httpd still runs after the pod was deleted"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let data_dir = s.dir.path().to_string_lossy().to_string();
    assert!(
        !mounts
            .lines()
            .any(|l| l.contains(&data_dir) && l.contains(&uid)),
        "mounts of the pod remain"
    );
    let cgroups = std::process::Command::new("find")
        .args([
            "/sys/fs/cgroup",
            "-maxdepth",
            "5",
            "-name",
            &format!("pod{uid}"),
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&cgroups.stdout).trim().is_empty(),
        "cgroups of the pod remain: {}",
        String::from_utf8_lossy(&cgroups.stdout)
    );
}

#[test]
fn logs_with_tail_timestamps_previous_and_selectors() {
    let s = Server::start_node();
    s.ok(&[
        "run",
        "talker",
        &format!("--image={BUSYBOX}"),
        "--restart=Never",
        "--labels=app=talker",
        "--",
        "sh",
        "-c",
        // stdout and stderr are separate pipes: pauses keep the interleaving deterministic.
        "echo one; sleep 0.2; echo two >&2; sleep 0.2; echo three",
    ]);
    wait_phase(&s, "talker", "Succeeded");
    assert_eq!(s.ok(&["logs", "talker"]), "one\ntwo\nthree\n");
    assert_eq!(s.ok(&["logs", "talker", "--tail=1"]), "three\n");
    let stamped = s.ok(&["logs", "talker", "--timestamps"]);
    assert!(
        stamped
            .lines()
            .all(|l| l.len() > 20 && l.contains('T') && l.contains("Z ")),
        "{stamped}"
    );
    assert_eq!(s.ok(&["logs", "-l", "app=talker"]), "one\ntwo\nthree\n");
    let terminated = s.jsonpath_or_empty(
        &["pod", "talker"],
        "{.status.containerStatuses[0].state.terminated.reason}",
    );
    assert_eq!(terminated, "Completed");

    // --previous shows the run before a restart; -f follows new lines.
    s.ok(&[
        "run",
        "counter",
        &format!("--image={BUSYBOX}"),
        "--",
        "sh",
        "-c",
        "echo run; sleep 2; exit 1",
    ]);
    assert!(
        eventually(Duration::from_secs(60), || {
            s.jsonpath_or_empty(
                &["pod", "counter"],
                "{.status.containerStatuses[0].restartCount}",
            )
            .parse::<u32>()
            .unwrap_or(0)
                >= 1
        }),
        "counter never restarted"
    );
    assert_eq!(s.ok(&["logs", "counter", "--previous"]), "run\n");
    let r = s.run(&["logs", "talker", "--previous"], None);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("previous terminated container"),
        "{}",
        r.stderr
    );
}

#[test]
fn seed_secret_and_configmap_pods() {
    let s = Server::start_node();
    s.ok(&[
        "create",
        "secret",
        "generic",
        "firstsecret",
        "--from-literal=dbpass=mypassword",
    ]);
    s.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: secretmount
spec:
  containers:
  - name: secretmount
    image: {BUSYBOX}
    command: [sleep, '3600']
    volumeMounts:
    - name: foo
      mountPath: /etc/foo
      readOnly: true
  terminationGracePeriodSeconds: 1
  volumes:
  - name: foo
    secret:
      secretName: firstsecret
"
    ));
    s.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: secret-env
spec:
  containers:
  - name: secret-env
    image: {BUSYBOX}
    command: [sh, -c, 'echo $SECRET_USERNAME']
    env:
    - name: SECRET_USERNAME
      valueFrom:
        secretKeyRef:
          name: firstsecret
          key: dbpass
  restartPolicy: Never
"
    ));
    let props = s.write_file("dev.properties", "environment=dev\nlevel=debug\n");
    s.ok(&[
        "create",
        "configmap",
        "dev-properties",
        &format!("--from-file={}", props.display()),
    ]);
    s.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: configmap-pod
spec:
  containers:
  - name: test-container
    image: {BUSYBOX}
    command: [sh, -c, 'cat /etc/config/dev.properties; sleep 3600']
    volumeMounts:
    - name: config-volume
      mountPath: /etc/config
  terminationGracePeriodSeconds: 1
  volumes:
  - name: config-volume
    configMap:
      name: dev-properties
  restartPolicy: Never
"
    ));
    s.wait_ready("secretmount");
    assert_eq!(
        s.ok(&["exec", "secretmount", "--", "cat", "/etc/foo/dbpass"]),
        "mypassword"
    );
    wait_phase(&s, "secret-env", "Succeeded");
    assert_eq!(s.ok(&["logs", "secret-env"]), "mypassword\n");
    s.wait_ready("configmap-pod");
    assert_eq!(
        s.ok(&["logs", "configmap-pod"]),
        "environment=dev\nlevel=debug\n"
    );
    // The projected service-account volume is there too.
    let sa = s.ok(&[
        "exec",
        "secretmount",
        "--",
        "ls",
        "/var/run/secrets/kubernetes.io/serviceaccount",
    ]);
    for f in ["ca.crt", "namespace", "token"] {
        assert!(sa.contains(f), "{sa}");
    }
    // ConfigMap updates reach the running pod.
    s.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dev-properties\ndata:\n  dev.properties: environment=prod\n",
    );
    assert!(
        eventually(Duration::from_secs(90), || {
            s.ok(&[
                "exec",
                "configmap-pod",
                "--",
                "cat",
                "/etc/config/dev.properties",
            ]) == "environment=prod"
        }),
        "the ConfigMap update did not reach the volume"
    );

    // A missing Secret keeps the pod waiting with CreateContainerConfigError.
    s.ok(&[
        "run",
        "needs-secret",
        &format!("--image={BUSYBOX}"),
        "--overrides",
        r#"{"spec":{"containers":[{"name":"needs-secret","image":"busybox:1.36","command":["sleep","3600"],"env":[{"name":"X","valueFrom":{"secretKeyRef":{"name":"nope","key":"k"}}}]}]}}"#,
    ]);
    assert!(
        eventually(Duration::from_secs(30), || {
            s.jsonpath_or_empty(
                &["pod", "needs-secret"],
                "{.status.containerStatuses[0].state.waiting.reason}",
            ) == "CreateContainerConfigError"
        }),
        "{}",
        s.run(&["describe", "pod", "needs-secret"], None).stdout
    );
    let msg = s.jsonpath(
        &["pod", "needs-secret"],
        "{.status.containerStatuses[0].state.waiting.message}",
    );
    assert!(msg.contains("secret \"nope\" not found"), "{msg}");
}

#[test]
fn oom_crash_loop_liveness_and_bad_command() {
    let s = Server::start_node();
    s.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: memory-hog
spec:
  restartPolicy: Never
  containers:
  - name: hog
    image: {BUSYBOX}
    command: [sh, -c, 'head -c 500000000 /dev/zero | tail']
    resources:
      limits:
        memory: 32Mi
---
apiVersion: v1
kind: Pod
metadata:
  name: crasher
spec:
  containers:
  - name: crasher
    image: {BUSYBOX}
    command: [sh, -c, 'echo crashing; exit 1']
---
apiVersion: v1
kind: Pod
metadata:
  name: liveness
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: liveness
    image: {BUSYBOX}
    command: [sh, -c, 'touch /tmp/healthy; sleep 3; rm /tmp/healthy; sleep 600']
    livenessProbe:
      exec:
        command: [cat, /tmp/healthy]
      initialDelaySeconds: 1
      periodSeconds: 1
      failureThreshold: 1
---
apiVersion: v1
kind: Pod
metadata:
  name: bad-command
spec:
  restartPolicy: Never
  containers:
  - name: bad
    image: {BUSYBOX}
    command: [no-such-binary]
"
    ));
    // OOMKilled.
    assert!(
        eventually(Duration::from_secs(60), || {
            s.jsonpath_or_empty(
                &["pod", "memory-hog"],
                "{.status.containerStatuses[0].state.terminated.reason}",
            ) == "OOMKilled"
        }),
        "{}",
        s.run(&["describe", "pod", "memory-hog"], None).stdout
    );
    assert_eq!(
        s.jsonpath(&["pod", "memory-hog"], "{.status.phase}"),
        "Failed"
    );
    // CrashLoopBackOff with a growing restart count.
    assert!(
        eventually(Duration::from_secs(60), || {
            s.jsonpath_or_empty(
                &["pod", "crasher"],
                "{.status.containerStatuses[0].state.waiting.reason}",
            ) == "CrashLoopBackOff"
        }),
        "{}",
        s.run(&["describe", "pod", "crasher"], None).stdout
    );
    let describe = s.ok(&["describe", "pod", "crasher"]);
    assert!(
        describe.contains("Back-off restarting failed container"),
        "{describe}"
    );
    // A failing liveness probe restarts the container.
    assert!(
        eventually(Duration::from_secs(60), || {
            s.jsonpath_or_empty(
                &["pod", "liveness"],
                "{.status.containerStatuses[0].restartCount}",
            )
            .parse::<u32>()
            .unwrap_or(0)
                >= 1
        }),
        "{}",
        s.run(&["describe", "pod", "liveness"], None).stdout
    );
    let describe = s.ok(&["describe", "pod", "liveness"]);
    assert!(describe.contains("Liveness probe failed"), "{describe}");
    // A command that does not exist fails with the runtime's reason, not a hang.
    assert!(
        eventually(Duration::from_secs(30), || {
            s.jsonpath_or_empty(&["pod", "bad-command"], "{.status.containerStatuses[0]}")
                .contains("executable file not found")
        }),
        "{}",
        s.run(&["describe", "pod", "bad-command"], None).stdout
    );
}

#[test]
fn restarting_the_server_keeps_containers_running() {
    let mut s = Server::start_node();
    s.ok(&[
        "run",
        "keeper",
        &format!("--image={BUSYBOX}"),
        "--",
        "sleep",
        "3601",
    ]);
    s.wait_ready("keeper");
    let id = s.jsonpath(
        &["pod", "keeper"],
        "{.status.containerStatuses[0].containerID}",
    );
    let pids = host_processes("sleep 3601");
    s.restart();
    assert!(
        eventually(Duration::from_secs(30), || {
            s.kubectl(&["get", "pod", "keeper"]).status.success()
        }),
        "the API did not come back"
    );
    std::thread::sleep(Duration::from_secs(3));
    s.wait_ready("keeper");
    assert_eq!(
        s.jsonpath(
            &["pod", "keeper"],
            "{.status.containerStatuses[0].containerID}"
        ),
        id
    );
    assert_eq!(
        s.jsonpath(
            &["pod", "keeper"],
            "{.status.containerStatuses[0].restartCount}"
        ),
        "0"
    );
    assert_eq!(
        host_processes("sleep 3601"),
        pids,
        "the container was not restarted"
    );
    assert_eq!(s.ok(&["exec", "keeper", "--", "hostname"]).trim(), "keeper");
}
