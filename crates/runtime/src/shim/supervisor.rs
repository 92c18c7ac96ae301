//! The per-pod supervisor process: holds the pod's namespaces, starts and reaps its
//! containers, records how they ended, writes their logs and serves the runtime's requests.
//! Single-threaded by design: it forks container processes, and a forked copy of a
//! single-threaded process holds no foreign locks.

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rkube_cri::NamespaceMode;

use super::protocol::{Conn, Request, Response, send};
use crate::cgroups::Cgroups;
use crate::container::spawn::{self, ParentStdio, PidMode, make_stdio, set_cloexec};
use crate::logs::{LogWriter, Stream};
use crate::state::{
    ContainerRun, ContainerSpec, Paths, SandboxRecord, now_ns, read_json, write_json,
};

/// Entry point of `__rkube-shim <root> <sandbox-id>`; returns the process exit code.
pub(crate) fn main(root: PathBuf, id: String) -> i32 {
    // Detach: the runtime waits for this first process; the grandchild becomes the shim,
    // in its own session, reparented away from the agent so the agent's exit (or a kill of
    // its process group) never reaches it.
    // SAFETY: fork/setsid in a process that has not started any thread.
    unsafe {
        match libc::fork() {
            -1 => return fail("fork", std::io::Error::last_os_error()),
            0 => {}
            _ => libc::_exit(0),
        }
        libc::setsid();
        match libc::fork() {
            -1 => return fail("fork", std::io::Error::last_os_error()),
            0 => {}
            _ => libc::_exit(0),
        }
    }
    let paths = Paths::new(&root);
    let dir = paths.sandbox(&id);
    match Supervisor::init(paths, dir, &id) {
        Ok(mut s) => {
            ready(&format!("ready {}", std::process::id()));
            s.run();
            0
        }
        Err(e) => {
            eprintln!("shim {id}: {e}");
            ready(&format!("error {e}"));
            1
        }
    }
}

fn fail(what: &str, e: std::io::Error) -> i32 {
    ready(&format!("error {what}: {e}"));
    1
}

/// Tells the runtime (reading our stdout) that we are up, then lets go of that pipe.
fn ready(msg: &str) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{msg}");
    let _ = out.flush();
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        // SAFETY: dup2 onto stdout.
        unsafe { libc::dup2(null.as_raw_fd(), 1) };
    }
}

struct Ctr {
    spec: ContainerSpec,
    pid: libc::pid_t,
    run: ContainerRun,
    exited: bool,
    outputs: Vec<(OwnedFd, Stream)>,
    stdin: Option<OwnedFd>,
    pty: Option<OwnedFd>,
    log: Option<LogWriter>,
    /// Attached readers: (stream filter, write end); `None` takes both (tty).
    subs: Vec<(Option<Stream>, OwnedFd)>,
    waiters: Vec<UnixStream>,
}

struct Supervisor {
    paths: Paths,
    dir: PathBuf,
    record: SandboxRecord,
    cgroups: Cgroups,
    listener: UnixListener,
    sigfd: OwnedFd,
    own_pidns: OwnedFd,
    pod_pidns: Option<OwnedFd>,
    pause: Option<libc::pid_t>,
    containers: HashMap<String, Ctr>,
    execs: HashMap<libc::pid_t, UnixStream>,
    stop: bool,
}

enum Tag {
    Listener,
    Signal,
    Output(String, usize),
    Exec(libc::pid_t),
}

fn nonblock(fd: RawFd) {
    // SAFETY: fcntl on an fd we own.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

/// Whether the other end of a pipe or socket has gone (a detached attach's output pipe, a
/// waiter whose client left): such fds are dropped when the next attach or wait comes, so
/// repeated attach/detach does not pile them up for the container's lifetime.
fn peer_gone(fd: RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    };
    // SAFETY: poll on one pollfd for an fd we own, without waiting.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & (libc::POLLHUP | libc::POLLERR) != 0
}

fn dup(fd: &OwnedFd) -> std::io::Result<OwnedFd> {
    let d = fd.try_clone()?;
    set_cloexec(d.as_raw_fd());
    Ok(d)
}

impl Supervisor {
    fn init(paths: Paths, dir: PathBuf, id: &str) -> Result<Supervisor, String> {
        std::env::set_current_dir(&dir).map_err(|e| format!("chdir {}: {e}", dir.display()))?;
        if let Ok(log) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open("shim.log")
        {
            // SAFETY: dup2 onto stderr.
            unsafe { libc::dup2(log.as_raw_fd(), 2) };
        }
        // SAFETY: ignoring SIGPIPE so a vanished client turns into EPIPE, not our death.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        let record: SandboxRecord = read_json(&dir.join("sandbox.json"))
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{}/sandbox.json is missing", dir.display()))?;
        let cgroups = Cgroups::detect().map_err(|e| e.to_string())?;
        let ns = record.config.namespace_options;
        let own_pidns = std::fs::File::open("/proc/self/ns/pid")
            .map(OwnedFd::from)
            .map_err(|e| format!("open pid ns: {e}"))?;

        let mut flags = nix::sched::CloneFlags::empty();
        if ns.network != NamespaceMode::Node {
            flags |= nix::sched::CloneFlags::CLONE_NEWNET | nix::sched::CloneFlags::CLONE_NEWUTS;
        }
        if ns.ipc != NamespaceMode::Node {
            flags |= nix::sched::CloneFlags::CLONE_NEWIPC;
        }
        nix::sched::unshare(flags).map_err(|e| format!("unshare {flags:?}: {e}"))?;
        if ns.network != NamespaceMode::Node {
            if !record.config.hostname.is_empty() {
                nix::unistd::sethostname(&record.config.hostname)
                    .map_err(|e| format!("sethostname: {e}"))?;
            }
            // The netns outlives this process through a bind mount, which network plugins
            // and port-forward use, like `ip netns` does.
            let netns = dir.join("netns");
            std::fs::File::create(&netns)
                .map_err(|e| format!("creating {}: {e}", netns.display()))?;
            crate::container::rootfs::mount(
                Some(Path::new("/proc/self/ns/net")),
                &netns,
                None,
                libc::MS_BIND,
                None,
            )?;
        }
        for (k, v) in &record.config.sysctls {
            let path = format!("/proc/sys/{}", k.replace('.', "/"));
            if let Err(e) = std::fs::write(&path, v) {
                return Err(format!("setting sysctl {k}={v}: {e}"));
            }
        }
        let shm = dir.join("shm");
        std::fs::create_dir_all(&shm).map_err(|e| format!("mkdir {}: {e}", shm.display()))?;
        crate::container::rootfs::mount(
            Some(Path::new("shm")),
            &shm,
            Some("tmpfs"),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            Some("mode=1777,size=65536k"),
        )?;

        let (pause, pod_pidns) = if ns.pid == NamespaceMode::Pod {
            start_pause(&record.cgroup, &cgroups)?
        } else {
            (None, None)
        };

        // Orphans of host-PID containers come to us, not to init, so they are reaped.
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        let sigfd = signal_fd()?;
        let _ = std::fs::remove_file("shim.sock");
        // Bound relative to our cwd: absolute socket paths are limited to 108 bytes.
        let listener =
            UnixListener::bind("shim.sock").map_err(|e| format!("bind shim.sock: {e}"))?;
        eprintln!("shim {id}: ready (pid {})", std::process::id());
        Ok(Supervisor {
            paths,
            dir,
            record,
            cgroups,
            listener,
            sigfd,
            own_pidns,
            pod_pidns,
            pause,
            containers: HashMap::new(),
            execs: HashMap::new(),
            stop: false,
        })
    }

    fn run(&mut self) {
        while !self.stop {
            let mut pfds: Vec<libc::pollfd> = Vec::new();
            let mut tags: Vec<Tag> = Vec::new();
            let mut push = |fd: RawFd, tag: Tag| {
                pfds.push(libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                });
                tags.push(tag);
            };
            push(self.listener.as_raw_fd(), Tag::Listener);
            push(self.sigfd.as_raw_fd(), Tag::Signal);
            for (id, c) in &self.containers {
                for (i, (fd, _)) in c.outputs.iter().enumerate() {
                    push(fd.as_raw_fd(), Tag::Output(id.clone(), i));
                }
            }
            for (pid, conn) in &self.execs {
                push(conn.as_raw_fd(), Tag::Exec(*pid));
            }
            // SAFETY: poll over a vector of pollfds we own.
            let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, -1) };
            if n < 0 {
                continue;
            }
            // Outputs first (in reverse so indexes stay valid while removing), then the rest.
            let mut dead_outputs: Vec<(String, usize)> = Vec::new();
            for (p, tag) in pfds.iter().zip(tags.iter()) {
                if p.revents == 0 {
                    continue;
                }
                match tag {
                    Tag::Output(id, i) if self.pump(id, *i) == Pumped::Eof => {
                        dead_outputs.push((id.clone(), *i));
                    }
                    Tag::Exec(pid) => {
                        // The client went away (exec_sync timeout, closed stream): end the process.
                        // SAFETY: kill(2) on our child.
                        unsafe { libc::kill(*pid, libc::SIGKILL) };
                    }
                    _ => {}
                }
            }
            dead_outputs.sort_by_key(|d| std::cmp::Reverse(d.1));
            for (id, i) in dead_outputs {
                if let Some(c) = self.containers.get_mut(&id)
                    && i < c.outputs.len()
                {
                    c.outputs.remove(i);
                }
            }
            for (p, tag) in pfds.iter().zip(tags.iter()) {
                if p.revents == 0 {
                    continue;
                }
                match tag {
                    Tag::Signal => self.reap(),
                    Tag::Listener => self.accept(),
                    _ => {}
                }
            }
        }
    }

    /// Moves one chunk from a container's output to its log and attached readers (a pty
    /// master reads EIO once the last slave closed: that is its EOF).
    fn pump(&mut self, id: &str, i: usize) -> Pumped {
        let Some(c) = self.containers.get_mut(id) else {
            return Pumped::Eof;
        };
        let Some((fd, stream)) = c.outputs.get(i) else {
            return Pumped::Eof;
        };
        let stream = *stream;
        let mut buf = [0u8; 32 * 1024];
        // SAFETY: read into a local buffer.
        let n = unsafe {
            libc::read(
                fd.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            return match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => Pumped::Again,
                _ => Pumped::Eof,
            };
        }
        if n == 0 {
            return Pumped::Eof;
        }
        let data = &buf[..n as usize];
        if let Some(log) = c.log.as_mut()
            && let Err(e) = log.write_chunk(stream, data)
        {
            eprintln!("container {id}: writing log: {e}");
        }
        c.subs.retain(|(filter, w)| {
            if filter.is_some_and(|f| f != stream) {
                return true;
            }
            // SAFETY: write to a non-blocking pipe we own; a full or closed pipe drops the
            // reader (the log stays complete).
            let r = unsafe {
                libc::write(
                    w.as_raw_fd(),
                    data.as_ptr() as *const libc::c_void,
                    data.len(),
                )
            };
            r == data.len() as isize
        });
        Pumped::Data
    }

    /// Reads everything already written to a container's outputs.
    fn drain(&mut self, id: &str) {
        loop {
            let n = self
                .containers
                .get(id)
                .map(|c| c.outputs.len())
                .unwrap_or(0);
            let mut data = false;
            for i in (0..n).rev() {
                match self.pump(id, i) {
                    Pumped::Data => data = true,
                    Pumped::Again => {}
                    Pumped::Eof => {
                        if let Some(c) = self.containers.get_mut(id) {
                            c.outputs.remove(i);
                        }
                    }
                }
            }
            if !data {
                return;
            }
        }
    }

    fn reap(&mut self) {
        let mut buf = [0u8; 128 * 8];
        // SAFETY: draining the signalfd into a local buffer.
        while unsafe {
            libc::read(
                self.sigfd.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
            )
        } > 0
        {}
        loop {
            let mut status = 0;
            // SAFETY: waitpid for any child, non-blocking.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                return;
            }
            self.on_child_exit(pid, status);
        }
    }

    fn on_child_exit(&mut self, pid: libc::pid_t, status: libc::c_int) {
        let code = if libc::WIFSIGNALED(status) {
            128 + libc::WTERMSIG(status)
        } else {
            libc::WEXITSTATUS(status)
        };
        if let Some(conn) = self.execs.remove(&pid) {
            let _ = send(
                &conn,
                &Response {
                    exit_code: Some(code),
                    ..Default::default()
                },
                &[],
            );
            return;
        }
        if Some(pid) == self.pause {
            eprintln!("pause process {pid} exited with {code}");
            self.pause = None;
            return;
        }
        let Some(id) = self
            .containers
            .iter()
            .find(|(_, c)| c.pid == pid && !c.exited)
            .map(|(id, _)| id.clone())
        else {
            return;
        };
        // Everything the process wrote is in the pipes by now: log it before the exit
        // becomes visible, so a reader who waited for the exit sees the whole log.
        self.drain(&id);
        let oom = self
            .containers
            .get(&id)
            .map(|c| self.cgroups.oom_kills(&c.spec.cgroup))
            .unwrap_or(0);
        let Some(c) = self.containers.get_mut(&id) else {
            return;
        };
        c.exited = true;
        c.run.finished_at = now_ns();
        c.run.exit_code = code;
        c.run.reason = if oom > 0 && code != 0 {
            "OOMKilled"
        } else if code == 0 {
            "Completed"
        } else {
            "Error"
        }
        .to_string();
        if let Err(e) = write_json(&self.paths.container(&id).join("state.json"), &c.run) {
            eprintln!("container {id}: recording exit: {e}");
        }
        eprintln!(
            "container {id}: pid {pid} exited with {code} ({})",
            c.run.reason
        );
        c.stdin = None;
        c.subs.clear();
        for w in c.waiters.drain(..) {
            let _ = send(
                &w,
                &Response {
                    exit_code: Some(code),
                    ..Default::default()
                },
                &[],
            );
        }
    }

    fn accept(&mut self) {
        let Ok((stream, _)) = self.listener.accept() else {
            return;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
        let mut conn = Conn::new(stream);
        let req = match conn.recv::<Request>() {
            Ok((r, _)) => r,
            Err(e) => {
                let _ = send(
                    &conn.stream,
                    &Response::err(format!("bad request: {e}")),
                    &[],
                );
                return;
            }
        };
        let stream = conn.stream;
        let (resp, fds) = self.handle(req, &stream);
        if let Some(resp) = resp {
            let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
            if let Err(e) = send(&stream, &resp, &raw) {
                eprintln!("replying: {e}");
            }
        }
    }

    /// Handles one request. `None` = the connection was kept to answer later.
    fn handle(&mut self, req: Request, stream: &UnixStream) -> (Option<Response>, Vec<OwnedFd>) {
        let r = |resp: Response| (Some(resp), Vec::new());
        match req {
            Request::Ping => r(Response::default()),
            Request::Start { id } => r(self.start(&id)),
            Request::Kill { id, signal, all } => {
                if let Some(c) = self.containers.get(&id).filter(|c| !c.exited) {
                    // SAFETY: kill(2) on our child.
                    unsafe { libc::kill(c.pid, signal) };
                    if all {
                        for p in self.cgroups.procs(&c.spec.cgroup) {
                            // SAFETY: kill(2).
                            unsafe { libc::kill(p, signal) };
                        }
                    }
                }
                r(Response::default())
            }
            Request::Wait { id } => match self.containers.get_mut(&id) {
                Some(c) if !c.exited => {
                    c.waiters.retain(|w| !peer_gone(w.as_raw_fd()));
                    if let Ok(s) = stream.try_clone() {
                        c.waiters.push(s);
                    }
                    (None, Vec::new())
                }
                Some(c) => r(Response {
                    exit_code: Some(c.run.exit_code),
                    ..Default::default()
                }),
                None => r(Response::err(format!(
                    "container {id} is not running in this sandbox"
                ))),
            },
            Request::Exec {
                id,
                args,
                tty,
                stdin,
                stdout,
                stderr,
            } => match self.exec(&id, &args, tty, stdin, stdout, stderr) {
                Ok((pid, resp, fds)) => {
                    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
                    match send(stream, &resp, &raw) {
                        Ok(()) => {
                            if let Ok(s) = stream.try_clone() {
                                let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
                                self.execs.insert(pid, s);
                            }
                        }
                        // SAFETY: kill(2) on our child, whose caller is gone.
                        Err(_) => unsafe {
                            libc::kill(pid, libc::SIGKILL);
                        },
                    }
                    (None, Vec::new())
                }
                Err(resp) => r(resp),
            },
            Request::Attach {
                id,
                stdin,
                stdout,
                stderr,
            } => match self.attach(&id, stdin, stdout, stderr) {
                Ok((resp, fds)) => (Some(resp), fds),
                Err(e) => r(Response::err(e)),
            },
            Request::ReopenLog { id } => {
                match self.containers.get_mut(&id).and_then(|c| c.log.as_mut()) {
                    Some(log) => match log.reopen() {
                        Ok(()) => r(Response::default()),
                        Err(e) => r(Response::err(format!("reopening the log of {id}: {e}"))),
                    },
                    None => r(Response::default()),
                }
            }
            Request::Remove { id } => {
                if self.containers.get(&id).is_some_and(|c| !c.exited) {
                    return r(Response::err(format!(
                        "container {id} is still running: stop it first"
                    )));
                }
                self.containers.remove(&id);
                r(Response::default())
            }
            Request::Shutdown => {
                self.shutdown();
                r(Response::default())
            }
        }
    }

    fn start(&mut self, id: &str) -> Response {
        if self.containers.get(id).is_some_and(|c| !c.exited) {
            return Response::err(format!("container {id} is already running"));
        }
        let cdir = self.paths.container(id);
        let spec: ContainerSpec = match read_json(&cdir.join("spec.json")) {
            Ok(Some(s)) => s,
            Ok(None) => return Response::err(format!("container {id} not found")),
            Err(e) => return Response::err(e.to_string()),
        };
        let cfg = &spec.config;
        let stdio = if cfg.tty {
            spawn::make_console_stdio()
                .map(|(child, sock)| (child, ParentStdio::default(), Some(sock)))
        } else {
            make_stdio(false, cfg.stdin, true, true, None).map(|(c, p)| (c, p, None))
        };
        let (child, mut parent, console) = match stdio {
            Ok(x) => x,
            Err(e) => return Response::err(format!("creating stdio: {e}")),
        };
        let log = match LogWriter::open(&spec.log_path) {
            Ok(l) => Some(l),
            Err(e) => {
                return Response::err(format!("opening log {}: {e}", spec.log_path.display()));
            }
        };
        let ns = self.record.config.namespace_options;
        let pid_mode = match (ns.pid, &self.pod_pidns) {
            (NamespaceMode::Node, _) => PidMode::Host,
            (NamespaceMode::Pod, Some(fd)) => PidMode::Join(fd.as_fd()),
            _ => PidMode::Own,
        };
        let pid = match spawn::spawn_container(
            &spec,
            &cdir,
            &self.dir,
            pid_mode,
            self.own_pidns.as_fd(),
            &self.cgroups,
            child,
            console,
        ) {
            Ok((pid, master)) => {
                if master.is_some() {
                    parent.pty = master;
                }
                pid
            }
            Err(e) => {
                return Response {
                    error: Some(e),
                    container_error: true,
                    ..Default::default()
                };
            }
        };
        let mut outputs = Vec::new();
        let mut stdin = parent.stdin;
        let pty = parent.pty;
        if let Some(m) = &pty {
            nonblock(m.as_raw_fd());
            if let Ok(d) = dup(m) {
                outputs.push((d, Stream::Stdout));
            }
            if cfg.stdin {
                stdin = dup(m).ok();
            }
        }
        for (fd, s) in [
            (parent.stdout, Stream::Stdout),
            (parent.stderr, Stream::Stderr),
        ] {
            if let Some(fd) = fd {
                nonblock(fd.as_raw_fd());
                outputs.push((fd, s));
            }
        }
        let run = ContainerRun {
            pid: pid as u32,
            started_at: now_ns(),
            ..Default::default()
        };
        if let Err(e) = write_json(&cdir.join("state.json"), &run) {
            eprintln!("container {id}: recording start: {e}");
        }
        eprintln!("container {id}: started pid {pid}");
        self.containers.insert(
            id.to_string(),
            Ctr {
                spec,
                pid,
                run,
                exited: false,
                outputs,
                stdin,
                pty,
                log,
                subs: Vec::new(),
                waiters: Vec::new(),
            },
        );
        Response {
            pid: Some(pid as u32),
            ..Default::default()
        }
    }

    #[allow(clippy::type_complexity)]
    fn exec(
        &mut self,
        id: &str,
        args: &[String],
        tty: bool,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> Result<(libc::pid_t, Response, Vec<OwnedFd>), Response> {
        let c = match self.containers.get(id) {
            Some(c) if !c.exited => c,
            _ => return Err(Response::err(format!("container {id} is not running"))),
        };
        let ptmx = PathBuf::from(format!("/proc/{}/root/dev/pts/ptmx", c.pid));
        let (child, parent) = make_stdio(tty, stdin, stdout, stderr, Some(&ptmx))
            .map_err(|e| Response::err(format!("creating stdio: {e}")))?;
        let host_pid = self.record.config.namespace_options.pid == NamespaceMode::Node;
        let pid = spawn::spawn_exec(
            &c.spec,
            c.pid,
            host_pid,
            self.own_pidns.as_fd(),
            &self.cgroups,
            args,
            child,
        )
        .map_err(|e| Response {
            error: Some(e),
            container_error: true,
            ..Default::default()
        })?;
        let mut names = Vec::new();
        let mut fds = Vec::new();
        for (name, fd) in [
            ("stdin", parent.stdin),
            ("stdout", parent.stdout),
            ("stderr", parent.stderr),
            ("pty", parent.pty),
        ] {
            if let Some(fd) = fd {
                names.push(name.to_string());
                fds.push(fd);
            }
        }
        Ok((
            pid,
            Response {
                pid: Some(pid as u32),
                fds: names,
                ..Default::default()
            },
            fds,
        ))
    }

    fn attach(
        &mut self,
        id: &str,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> Result<(Response, Vec<OwnedFd>), String> {
        let c = match self.containers.get_mut(id) {
            Some(c) if !c.exited => c,
            _ => return Err(format!("container {id} is not running")),
        };
        let mut names = Vec::new();
        let mut fds = Vec::new();
        if stdin && c.spec.config.stdin {
            let fd = if c.pty.is_none() && c.spec.config.stdin_once {
                // stdin_once: the caller gets the only write end, so its close is the
                // container's EOF.
                c.stdin.take()
            } else {
                c.stdin.as_ref().and_then(|f| dup(f).ok())
            };
            if let Some(fd) = fd {
                names.push("stdin".to_string());
                fds.push(fd);
            }
        }
        c.subs.retain(|(_, w)| !peer_gone(w.as_raw_fd()));
        let tty = c.pty.is_some();
        let wanted: Vec<(Option<Stream>, &str)> = if tty {
            if stdout {
                vec![(None, "stdout")]
            } else {
                vec![]
            }
        } else {
            let mut v = Vec::new();
            if stdout {
                v.push((Some(Stream::Stdout), "stdout"));
            }
            if stderr {
                v.push((Some(Stream::Stderr), "stderr"));
            }
            v
        };
        for (filter, name) in wanted {
            let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| format!("pipe: {e}"))?;
            nonblock(w.as_raw_fd());
            c.subs.push((filter, w));
            names.push(name.to_string());
            fds.push(r);
        }
        if let Some(m) = &c.pty
            && let Ok(d) = dup(m)
        {
            names.push("pty".to_string());
            fds.push(d);
        }
        Ok((
            Response {
                fds: names,
                ..Default::default()
            },
            fds,
        ))
    }

    /// Kills every container (and the pause process), records their exits, and stops the
    /// loop.
    fn shutdown(&mut self) {
        let running: Vec<(String, libc::pid_t, String)> = self
            .containers
            .iter()
            .filter(|(_, c)| !c.exited)
            .map(|(id, c)| (id.clone(), c.pid, c.spec.cgroup.clone()))
            .collect();
        for (_, pid, cg) in &running {
            // SAFETY: kill(2).
            unsafe { libc::kill(*pid, libc::SIGKILL) };
            for p in self.cgroups.procs(cg) {
                // SAFETY: kill(2).
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
        }
        if let Some(p) = self.pause {
            // SAFETY: kill(2) on our child.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline
            && (self.containers.values().any(|c| !c.exited) || self.pause.is_some())
        {
            let mut status = 0;
            // SAFETY: waitpid for any child.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid > 0 {
                self.on_child_exit(pid, status);
            } else if pid < 0 {
                break;
            } else {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        for (pid, _) in self.execs.drain() {
            // SAFETY: kill(2).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        self.stop = true;
    }
}

/// Outcome of one read from a container output.
#[derive(PartialEq, Eq)]
enum Pumped {
    Data,
    Again,
    Eof,
}

/// SIGCHLD as a readable fd, so the poll loop sees child exits.
fn signal_fd() -> Result<OwnedFd, String> {
    // SAFETY: sigset manipulation and signalfd on locals.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
        if fd < 0 {
            return Err(format!("signalfd: {}", std::io::Error::last_os_error()));
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

extern "C" fn noop(_: libc::c_int) {}

/// The pod's PID namespace holder (shareProcessNamespace): PID 1 of the namespace, reaping
/// orphans. Dies with the shim, taking the namespace's processes with it.
fn start_pause(
    cgroup: &str,
    cgroups: &Cgroups,
) -> Result<(Option<libc::pid_t>, Option<OwnedFd>), String> {
    // SAFETY: raw clone as fork (single-threaded caller), then only async-signal-safe calls
    // and a loop in the child.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_NEWPID | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid < 0 {
        return Err(format!("clone pause: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        let _ = cgroups.join_self(cgroup);
        // SAFETY: child-only setup then an endless reap loop.
        unsafe {
            // Not even the runtime's ready pipe (our stdout) may stay open here.
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            );
            libc::prctl(
                libc::PR_SET_NAME,
                c"pause".as_ptr() as libc::c_ulong,
                0,
                0,
                0,
            );
            libc::signal(libc::SIGCHLD, noop as *const () as libc::sighandler_t);
            loop {
                let mut st = 0;
                while libc::waitpid(-1, &mut st, libc::WNOHANG) > 0 {}
                libc::pause();
            }
        }
    }
    let pid = pid as libc::pid_t;
    let fd = std::fs::File::open(format!("/proc/{pid}/ns/pid"))
        .map(OwnedFd::from)
        .map_err(|e| format!("open pause pid ns: {e}"))?;
    Ok((Some(pid), Some(fd)))
}
