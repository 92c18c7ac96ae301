//! `kubectl exec -it` and `kubectl attach -it` end to end through a real terminal: the real
//! kubectl runs on the slave side of a pty the test opens (kubectl allocates a TTY only when
//! its stdin is a terminal), and the test types into the master and reads what kubectl
//! shows, as a person at a terminal would. Covered: a shell's output, a terminal in the
//! container (`tty`), the window size and its changes (`stty size`), Ctrl-C reaching the
//! foreground process, exit codes, and attach/detach/re-attach to a `stdin: true, tty: true`
//! container.

mod support;

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use support::{BUSYBOX, Server, eventually};

/// How long any one expected output may take to show up.
const EXPECT: Duration = Duration::from_secs(20);

/// A process running on the slave side of a pty, as its controlling terminal.
struct Term {
    master: OwnedFd,
    child: Child,
    /// Everything read from the master so far.
    out: Vec<u8>,
    /// Matches are searched after this offset (the end of the previous match).
    seen: usize,
    /// The master read EOF/EIO: every slave fd is closed.
    eof: bool,
}

fn winsize(rows: u16, cols: u16) -> libc::winsize {
    libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

impl Term {
    /// Starts `cmd` in a new session whose controlling terminal is a fresh pty of
    /// `rows`×`cols`.
    fn spawn(mut cmd: Command, rows: u16, cols: u16) -> Term {
        let (mut m, mut s) = (-1, -1);
        let ws = winsize(rows, cols);
        // SAFETY: openpty with out-pointers to two ints, no name buffer, default termios.
        let r =
            unsafe { libc::openpty(&mut m, &mut s, std::ptr::null_mut(), std::ptr::null(), &ws) };
        assert_eq!(r, 0, "openpty: {}", io::Error::last_os_error());
        // SAFETY: openpty returned two fresh fds we now own.
        let (master, slave) = unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)) };
        // SAFETY: fcntl on an fd we own; the master must not leak into kubectl.
        unsafe { libc::fcntl(master.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                // A new session, with the pty (now stdin) as its controlling terminal: the
                // kernel then sends SIGWINCH to kubectl when the test resizes the window.
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start kubectl on a pty");
        // `cmd` (and with it the parent's copies of the slave) is dropped here, so the master
        // reads EOF once kubectl is gone.
        drop(cmd);
        Term {
            master,
            child,
            out: Vec::new(),
            seen: 0,
            eof: false,
        }
    }

    /// Types `bytes` at the terminal.
    fn send(&self, bytes: &str) {
        let mut rest = bytes.as_bytes();
        while !rest.is_empty() {
            // SAFETY: write from a valid slice to an fd we own.
            let n = unsafe {
                libc::write(
                    self.master.as_raw_fd(),
                    rest.as_ptr() as *const libc::c_void,
                    rest.len(),
                )
            };
            assert!(
                n > 0,
                "typing at the terminal: {}",
                io::Error::last_os_error()
            );
            rest = &rest[n as usize..];
        }
    }

    /// Changes the window size (the kernel sends SIGWINCH to kubectl).
    fn resize(&self, rows: u16, cols: u16) {
        let ws = winsize(rows, cols);
        // SAFETY: TIOCSWINSZ with a valid winsize on an fd we own.
        let r = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        assert_eq!(r, 0, "TIOCSWINSZ: {}", io::Error::last_os_error());
    }

    /// Reads what is available within `wait`; false once the terminal has no writer left.
    fn read_some(&mut self, wait: Duration) -> bool {
        if self.eof {
            return false;
        }
        let mut pfd = libc::pollfd {
            fd: self.master.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, wait.as_millis().min(i32::MAX as u128) as i32) };
        if r <= 0 {
            return true;
        }
        let mut buf = [0u8; 4096];
        // SAFETY: read into a local buffer from an fd we own.
        let n = unsafe {
            libc::read(
                self.master.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
            )
        };
        if n <= 0 {
            // EIO: the last slave fd closed (kubectl exited).
            self.eof = true;
            return false;
        }
        self.out.extend_from_slice(&buf[..n as usize]);
        true
    }

    /// Everything the terminal showed, for failure messages.
    fn transcript(&self) -> String {
        String::from_utf8_lossy(&self.out).into_owned()
    }

    /// Waits up to `timeout` for `needle` after the previous match; true if it came.
    fn wait_for(&mut self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(at) = find(&self.out[self.seen..], needle.as_bytes()) {
                self.seen += at + needle.len();
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.read_some(left.min(Duration::from_millis(200))) {
                // One last look at what arrived with the EOF.
                if let Some(at) = find(&self.out[self.seen..], needle.as_bytes()) {
                    self.seen += at + needle.len();
                    return true;
                }
                if self.eof || left.is_zero() {
                    return false;
                }
            }
        }
    }

    /// Like [`Term::wait_for`], failing the test with the transcript if `needle` does not come.
    fn expect(&mut self, needle: &str) {
        assert!(
            self.wait_for(needle, EXPECT),
            "the terminal did not show {needle:?} within {EXPECT:?}; it showed:\n{}",
            self.transcript()
        );
    }

    /// Waits for kubectl to exit (reading the terminal meanwhile so it never blocks on a
    /// full pty).
    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                while self.read_some(Duration::from_millis(50)) {}
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "kubectl did not exit within {timeout:?}; the terminal showed:\n{}",
                self.transcript()
            );
            if !self.read_some(Duration::from_millis(100)) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Sends `sig` to kubectl.
    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Runs `line` (Enter included) until `want` shows, retrying while something asynchronous
/// (a resize travelling kubectl → apiserver → kubelet → pty) has not landed yet.
fn run_until(t: &mut Term, line: &str, want: &str) {
    let deadline = Instant::now() + EXPECT;
    while Instant::now() < deadline {
        t.send(line);
        if t.wait_for(want, Duration::from_secs(2)) {
            return;
        }
    }
    panic!(
        "{line:?} never printed {want:?}; the terminal showed:\n{}",
        t.transcript()
    );
}

/// A node server with pod `web` (busybox sleeping an hour) running, for exec.
fn server_with_web() -> Server {
    let s = Server::start_node();
    s.ok(&[
        "run",
        "web",
        &format!("--image={BUSYBOX}"),
        "--",
        "sleep",
        "3600",
    ]);
    s.wait_ready("web");
    s
}

/// `kubectl exec -it web -- sh` on a `rows`×`cols` terminal, at the shell's first prompt.
fn exec_shell(s: &Server, rows: u16, cols: u16) -> Term {
    let mut t = Term::spawn(
        s.kubectl_cmd(&["exec", "-it", "web", "--", "sh"]),
        rows,
        cols,
    );
    // busybox ash's prompt for root.
    t.expect("# ");
    t
}

/// An attaching kubectl (`attach -it`, `run -it`) on a `rows`×`cols` terminal, once it has
/// printed its hint that the container is attached.
fn attached(cmd: Command, rows: u16, cols: u16) -> Term {
    let mut t = Term::spawn(cmd, rows, cols);
    t.expect("If you don't see a command prompt, try pressing enter.");
    t
}

/// Detaches: the attached kubectl is told to go (SIGTERM) and has gone.
fn detach(mut t: Term) {
    t.signal(libc::SIGTERM);
    t.wait_exit(EXPECT);
}

#[test]
fn exec_it_shell_terminal_resize_ctrl_c_and_exit_code() {
    let s = server_with_web();

    let mut t = exec_shell(&s, 40, 100);
    // The shell reads what is typed and its output comes back.
    t.send("echo $((6*7))\r");
    t.expect("42\r\n");
    // A terminal in the container: `tty` names a pts, not "not a tty".
    t.send("tty\r");
    t.expect("/dev/pts/");
    // As containerd, a process exec'd with a terminal gets TERM=xterm.
    t.send("echo term=$TERM\r");
    t.expect("term=xterm\r\n");
    // kubectl sends the terminal's size when it starts, and again on SIGWINCH.
    run_until(&mut t, "stty size\r", "40 100\r\n");
    t.resize(50, 120);
    run_until(&mut t, "stty size\r", "50 120\r\n");

    // Ctrl-C reaches the foreground process in the container (the shell's job, through the
    // container pty's line discipline), and the prompt comes back at once.
    t.send("sleep 100\r");
    // Let the shell start sleep and hand it the terminal's foreground.
    std::thread::sleep(Duration::from_millis(700));
    let interrupted = Instant::now();
    t.send("\x03");
    t.send("echo rc=$?\r");
    t.expect("rc=130");
    assert!(
        interrupted.elapsed() < Duration::from_secs(10),
        "Ctrl-C took {:?} to end sleep 100",
        interrupted.elapsed()
    );
    // The shell itself survived the interrupt.
    t.send("echo still-$((1+1))\r");
    t.expect("still-2");

    // The exit code of the shell is kubectl's.
    t.send("exit 3\r");
    let st = t.wait_exit(EXPECT);
    assert_eq!(
        st.code(),
        Some(3),
        "kubectl exec -it exit status {st}; the terminal showed:\n{}",
        t.transcript()
    );
    // Nothing is left behind in the container: only its main process runs.
    let ps = s.ok(&["exec", "web", "--", "ps", "-o", "pid,args"]);
    assert!(
        !ps.lines()
            .any(|l| l.trim_end().ends_with(" sh") || l.contains("sleep 100")),
        "the exec'd shell and its job are gone: {ps}"
    );
}

#[test]
fn attach_it_to_a_tty_container_detach_and_exit() {
    let s = Server::start_node();
    s.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: shell
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: shell
    image: {BUSYBOX}
    command: [sh]
    stdin: true
    tty: true
"
    ));
    s.wait_ready("shell");
    let attach = || s.kubectl_cmd(&["attach", "-it", "shell"]);

    // Attach: typed commands reach the container's shell, its output comes back, and the
    // container's terminal takes the attaching terminal's size.
    let mut t = attached(attach(), 30, 90);
    t.send("echo $((7*6)) term=$TERM\r");
    t.expect("42 term=xterm\r\n");
    run_until(&mut t, "stty size\r", "30 90\r\n");
    t.send("echo $$ > /tmp/first-attach\r");
    std::thread::sleep(Duration::from_millis(300));

    // Detach (the terminal's kubectl goes away): the container keeps running, unrestarted.
    detach(t);
    std::thread::sleep(Duration::from_secs(1));
    let state = s.jsonpath(
        &["pod", "shell"],
        "{.status.containerStatuses[0].state.running.startedAt} {.status.containerStatuses[0].restartCount}",
    );
    assert!(
        state.ends_with(" 0") && state.len() > 2,
        "after a detach the container still runs, never restarted: {state:?}"
    );
    assert_eq!(
        s.ok(&["exec", "shell", "--", "cat", "/tmp/first-attach"])
            .trim(),
        "1",
        "the attached shell is the container's main process"
    );

    // Attach and detach again and again: nothing piles up in the pod's supervisor (each
    // detached attach leaves an output pipe and a wait connection to be dropped).
    let mut fds_after = Vec::new();
    for i in 0..4 {
        let mut t = attached(attach(), 30, 90);
        t.send(&format!("echo round-$((100+{i}))\r"));
        t.expect(&format!("round-{}\r\n", 100 + i));
        detach(t);
        // The kubelet gives a session whose client left 2 s for its process to end before
        // it lets go of the session.
        std::thread::sleep(Duration::from_millis(2500));
        // The fewest of a few looks: the kubelet's own calls open short-lived connections.
        let fewest = (0..5)
            .map(|_| {
                std::thread::sleep(Duration::from_millis(100));
                supervisor_fds(&s)
            })
            .min();
        fds_after.push(fewest.unwrap());
    }
    assert!(
        fds_after[3] <= fds_after[0],
        "the pod supervisor's open fds grow with every attach/detach: {fds_after:?}"
    );

    // Re-attach: the same shell answers; `exit 7` ends the container, and kubectl attach
    // ends normally (as upstream's, it reports the stream's end, not the exit code).
    let mut t = attached(attach(), 30, 90);
    t.send("echo again-$((1+1)) $$\r");
    t.expect("again-2 1\r\n");
    t.send("exit 7\r");
    let st = t.wait_exit(EXPECT);
    assert_eq!(
        st.code(),
        Some(0),
        "kubectl attach -it after the container exited: {st}; the terminal showed:\n{}",
        t.transcript()
    );
    let ok = eventually(Duration::from_secs(30), || {
        s.jsonpath_or_empty(
            &["pod", "shell"],
            "{.status.phase} {.status.containerStatuses[0].state.terminated.exitCode}",
        ) == "Failed 7"
    });
    assert!(
        ok,
        "the container's exit 7 is recorded:\n{}",
        s.run(&["describe", "pod", "shell"], None).stdout
    );

    // `kubectl run -it --rm --restart=Never`: create, attach, and then the pod's exit code
    // (from its status) becomes kubectl's, and the pod is deleted.
    let mut t = attached(
        s.kubectl_cmd(&[
            "run",
            "-it",
            "--rm",
            "--restart=Never",
            "oneshot",
            &format!("--image={BUSYBOX}"),
            "--",
            "sh",
        ]),
        24,
        80,
    );
    t.send("echo one-$((2*2))\r");
    t.expect("one-4\r\n");
    t.send("exit 4\r");
    let st = t.wait_exit(Duration::from_secs(60));
    assert_eq!(
        st.code(),
        Some(4),
        "kubectl run -it --rm exit status {st}; the terminal showed:\n{}",
        t.transcript()
    );
    assert!(
        t.transcript().contains("pod \"oneshot\" deleted"),
        "{}",
        t.transcript()
    );
}

/// Open fds of the server's pod supervisors (`rkube __rkube-shim <root> <sandbox>`).
fn supervisor_fds(s: &Server) -> usize {
    let root = s.dir.path().to_string_lossy().into_owned();
    let mut n = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains("__rkube-shim") && cmd.contains(&root) {
            n += std::fs::read_dir(format!("/proc/{pid}/fd"))
                .map(|d| d.count())
                .unwrap_or(0);
        }
    }
    assert!(n > 0, "no pod supervisor found for {root}");
    n
}

/// The container's processes whose command line contains `needle` (ps inside the container).
fn container_processes(s: &Server, pod: &str, needle: &str) -> Vec<String> {
    s.ok(&["exec", pod, "--", "ps", "-o", "pid,args"])
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_vanished_kubectl_ends_its_exec() {
    let s = server_with_web();

    // With a terminal: the terminal hangs up, so the shell and its foreground job end.
    let mut t = exec_shell(&s, 24, 80);
    t.send("sleep 1001\r");
    assert!(
        eventually(EXPECT, || !container_processes(&s, "web", "sleep 1001")
            .is_empty()),
        "sleep 1001 never started; the terminal showed:\n{}",
        t.transcript()
    );
    t.signal(libc::SIGKILL);
    t.wait_exit(EXPECT);
    assert!(
        eventually(EXPECT, || container_processes(&s, "web", "sleep 1001")
            .is_empty()),
        "the job of a vanished kubectl exec -it keeps running: {:?}",
        container_processes(&s, "web", "sleep 1001")
    );

    // Without one: the kubelet closes the process's session, and the runtime ends it.
    let mut plain = s
        .kubectl_cmd(&["exec", "web", "--", "sleep", "1002"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        eventually(EXPECT, || !container_processes(&s, "web", "sleep 1002")
            .is_empty()),
        "sleep 1002 never started"
    );
    let _ = plain.kill();
    let _ = plain.wait();
    assert!(
        eventually(EXPECT, || container_processes(&s, "web", "sleep 1002")
            .is_empty()),
        "the process of a vanished kubectl exec keeps running: {:?}",
        container_processes(&s, "web", "sleep 1002")
    );
}
