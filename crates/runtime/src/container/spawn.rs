//! Creating container processes from the (single-threaded) shim: the main process, cloned
//! into fresh mount and PID namespaces so the shim is its direct parent, and exec'd processes
//! that join a running container's namespaces and cgroup.
//!
//! Errors from the child (a failed mount, a missing executable) come back through a
//! close-on-exec pipe: EOF means exec succeeded, anything else is the error text.

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rkube_cri::SecurityContext;

use super::{caps, rootfs, user};
use crate::cgroups::Cgroups;
use crate::state::ContainerSpec;

/// The child's ends of its stdio.
pub(crate) struct ChildStdio {
    stdin: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
    tty: bool,
    /// Console socket: the child creates its terminal and sends the master here.
    console: Option<OwnedFd>,
}

/// The supervisor's ends: pipes to read output from and write input to, or a pty master.
#[derive(Default)]
pub(crate) struct ParentStdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    pub pty: Option<OwnedFd>,
}

fn cloexec_pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)
}

fn dev_null(write: bool) -> std::io::Result<OwnedFd> {
    let f = std::fs::OpenOptions::new()
        .read(!write)
        .write(write)
        .open("/dev/null")?;
    Ok(OwnedFd::from(f))
}

pub(crate) fn set_cloexec(fd: RawFd) {
    // SAFETY: fcntl on an fd we own.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
}

/// Opens a new pty on the devpts instance of `ptmx` (a container's own `/dev/ptmx`, so the
/// terminal's name resolves inside the container): (master, slave).
pub(crate) fn open_pty_in(ptmx: &Path) -> std::io::Result<(OwnedFd, OwnedFd)> {
    let master = OwnedFd::from(
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
            .open(ptmx)?,
    );
    let unlock: libc::c_int = 0;
    // SAFETY: pty ioctls on the master we just opened.
    let slave = unsafe {
        if libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fd = libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        OwnedFd::from_raw_fd(fd)
    };
    Ok((master, slave))
}

fn send_fd(sock: &OwnedFd, fd: RawFd) -> std::io::Result<()> {
    let iov = [std::io::IoSlice::new(b"t")];
    let fds = [fd];
    let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
    nix::sys::socket::sendmsg::<()>(
        sock.as_raw_fd(),
        &iov,
        &cmsg,
        nix::sys::socket::MsgFlags::empty(),
        None,
    )
    .map(|_| ())
    .map_err(std::io::Error::from)
}

fn recv_fd(sock: &OwnedFd) -> Option<OwnedFd> {
    let mut buf = [0u8; 1];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let msg = nix::sys::socket::recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .ok()?;
    for c in msg.cmsgs().ok()? {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: the kernel just installed this fd for us.
            return fds.first().map(|fd| unsafe { OwnedFd::from_raw_fd(*fd) });
        }
    }
    None
}

/// Stdio of a container whose terminal is created inside it, after its /dev/pts exists
/// (as runc's console socket): the child sends the pty master back over a socket pair.
pub(crate) fn make_console_stdio() -> std::io::Result<(ChildStdio, OwnedFd)> {
    let (parent, child) = nix::sys::socket::socketpair(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::Stream,
        None,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
    )
    .map_err(std::io::Error::from)?;
    let stdio = ChildStdio {
        stdin: dev_null(false)?,
        stdout: dev_null(true)?,
        stderr: dev_null(true)?,
        tty: false,
        console: Some(child),
    };
    Ok((stdio, parent))
}

/// Creates stdio for a new process: a pty (stdin/stdout/stderr all on its slave) or pipes
/// for the wanted streams (/dev/null for the others).
/// With `ptmx`, the terminal is allocated on that devpts instance (an exec'd process gets
/// one in its container's `/dev/pts`).
pub(crate) fn make_stdio(
    tty: bool,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    ptmx: Option<&Path>,
) -> std::io::Result<(ChildStdio, ParentStdio)> {
    if tty {
        let (master, slave) = match ptmx.map(open_pty_in) {
            Some(Ok(pair)) => pair,
            _ => {
                let pty = nix::pty::openpty(None, None).map_err(std::io::Error::from)?;
                set_cloexec(pty.master.as_raw_fd());
                set_cloexec(pty.slave.as_raw_fd());
                (pty.master, pty.slave)
            }
        };
        let child = ChildStdio {
            stdin: slave.try_clone()?,
            stdout: slave.try_clone()?,
            stderr: slave,
            tty: true,
            console: None,
        };
        return Ok((
            child,
            ParentStdio {
                pty: Some(master),
                ..Default::default()
            },
        ));
    }
    let mut parent = ParentStdio::default();
    let child_in = if stdin {
        let (r, w) = cloexec_pipe()?;
        parent.stdin = Some(w);
        r
    } else {
        dev_null(false)?
    };
    let out = |want: bool, slot: &mut Option<OwnedFd>| -> std::io::Result<OwnedFd> {
        if want {
            let (r, w) = cloexec_pipe()?;
            *slot = Some(r);
            Ok(w)
        } else {
            dev_null(true)
        }
    };
    let child_out = out(stdout, &mut parent.stdout)?;
    let child_err = out(stderr, &mut parent.stderr)?;
    Ok((
        ChildStdio {
            stdin: child_in,
            stdout: child_out,
            stderr: child_err,
            tty: false,
            console: None,
        },
        parent,
    ))
}

/// fork(2) with namespace flags: the raw clone syscall without a new stack behaves as fork,
/// which is safe here because the shim is single-threaded.
fn clone_fork(flags: libc::c_int) -> std::io::Result<libc::pid_t> {
    // SAFETY: clone with a NULL stack duplicates the caller like fork; the caller has one
    // thread, so no lock can be held by a thread that does not exist in the child.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(pid as libc::pid_t)
}

/// How a new container joins a PID namespace.
pub(crate) enum PidMode<'a> {
    /// Its own (the container's main process is PID 1).
    Own,
    /// The pod's (shareProcessNamespace), held by the sandbox's pause process.
    Join(BorrowedFd<'a>),
    /// The host's (hostPID).
    Host,
}

/// Reads the child's error report: empty when it exec'd.
fn read_report(r: OwnedFd) -> String {
    let mut f = std::fs::File::from(r);
    let mut s = String::new();
    let _ = f.read_to_string(&mut s);
    s
}

fn reap(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: waitpid on our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
}

/// Starts a container's main process. Returns its host PID once it has exec'd.
#[allow(clippy::too_many_arguments)]
pub(crate) fn spawn_container(
    spec: &ContainerSpec,
    container_dir: &Path,
    sandbox_dir: &Path,
    pid_mode: PidMode<'_>,
    own_pidns: BorrowedFd<'_>,
    cgroups: &Cgroups,
    stdio: ChildStdio,
    console: Option<OwnedFd>,
) -> Result<(libc::pid_t, Option<OwnedFd>), String> {
    let (err_r, err_w) = cloexec_pipe().map_err(|e| format!("creating the error pipe: {e}"))?;
    let mut flags = libc::CLONE_NEWNS;
    match pid_mode {
        PidMode::Own => flags |= libc::CLONE_NEWPID,
        PidMode::Join(fd) => nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWPID)
            .map_err(|e| format!("joining the pod PID namespace: {e}"))?,
        PidMode::Host => {}
    }
    let pid = clone_fork(flags);
    if matches!(pid_mode, PidMode::Join(_)) {
        // Back to the shim's own namespace for later children.
        let _ = nix::sched::setns(own_pidns, nix::sched::CloneFlags::CLONE_NEWPID);
    }
    let pid = pid.map_err(|e| format!("clone: {e}"))?;
    if pid == 0 {
        drop(err_r);
        let err = container_child(spec, container_dir, sandbox_dir, cgroups, &stdio);
        report_and_exit(&err_w, &err);
    }
    drop(err_w);
    drop(stdio);
    // The child sends its terminal before exec (or closes the socket on failure).
    let master = console.as_ref().and_then(recv_fd);
    let report = read_report(err_r);
    if !report.is_empty() {
        reap(pid);
        return Err(report);
    }
    if console.is_some() && master.is_none() {
        // SAFETY: kill(2) on our child, which started without the terminal it needs.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        reap(pid);
        return Err("the container did not hand over its terminal".into());
    }
    Ok((pid, master))
}

/// Creates the container's terminal in its own /dev/pts, hands the master to the shim and
/// makes the slave its stdio and controlling terminal.
fn console_setup(sock: &OwnedFd) -> Result<(), String> {
    let (master, slave) = open_pty_in(Path::new("/dev/ptmx"))
        .map_err(|e| format!("creating the container's terminal: {e}"))?;
    send_fd(sock, master.as_raw_fd())
        .map_err(|e| format!("sending the terminal to the shim: {e}"))?;
    // SAFETY: dup2/ioctl on fds we own.
    unsafe {
        for target in 0..3 {
            if libc::dup2(slave.as_raw_fd(), target) < 0 {
                return Err(format!("dup2: {}", std::io::Error::last_os_error()));
            }
        }
        if libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
            return Err(format!(
                "setting the controlling terminal: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

fn report_and_exit(w: &OwnedFd, msg: &str) -> ! {
    // SAFETY: write + _exit in the child.
    unsafe {
        libc::write(
            w.as_raw_fd(),
            msg.as_ptr() as *const libc::c_void,
            msg.len(),
        );
        libc::_exit(127)
    }
}

fn container_child(
    spec: &ContainerSpec,
    container_dir: &Path,
    sandbox_dir: &Path,
    cgroups: &Cgroups,
    stdio: &ChildStdio,
) -> String {
    if let Err(e) = wire_stdio(stdio) {
        return e;
    }
    if let Err(e) = cgroups.join_self(&spec.cgroup) {
        return e.to_string();
    }
    set_oom_score_adj(spec.config.resources.oom_score_adj);
    if let Err(e) = rootfs::setup(spec, container_dir, sandbox_dir) {
        return e;
    }
    if let Some(sock) = &stdio.console
        && let Err(e) = console_setup(sock)
    {
        return e;
    }
    finish_and_exec(&Process::of(spec, &spec.args, &spec.env))
}

/// New session, controlling terminal, stdio on 0/1/2, every other fd close-on-exec.
fn wire_stdio(stdio: &ChildStdio) -> Result<(), String> {
    // SAFETY: plain syscalls on fds this process owns.
    unsafe {
        libc::setsid();
        if stdio.tty && libc::ioctl(stdio.stdin.as_raw_fd(), libc::TIOCSCTTY, 0) != 0 {
            return Err(format!(
                "setting the controlling terminal: {}",
                std::io::Error::last_os_error()
            ));
        }
        for (fd, target) in [(&stdio.stdin, 0), (&stdio.stdout, 1), (&stdio.stderr, 2)] {
            if libc::dup2(fd.as_raw_fd(), target) < 0 {
                return Err(format!("dup2: {}", std::io::Error::last_os_error()));
            }
        }
        // Nothing of the shim's (its socket, other containers' pipes, log files) may leak
        // into the container.
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
    Ok(())
}

fn set_oom_score_adj(v: i64) {
    // Negative values need CAP_SYS_RESOURCE, which some hosts lack: best effort.
    let _ = std::fs::write("/proc/self/oom_score_adj", v.to_string());
}

/// What to exec, as whom.
pub(crate) struct Process<'a> {
    pub args: &'a [String],
    pub env: &'a [String],
    pub cwd: &'a str,
    pub image_user: &'a str,
    pub sec: &'a SecurityContext,
    pub caps: &'a [u32],
}

impl<'a> Process<'a> {
    /// `args` with `env`, run in `spec`'s container as its main process or an exec is: the
    /// container's working directory (else the image's), user and security settings.
    fn of(spec: &'a ContainerSpec, args: &'a [String], env: &'a [String]) -> Self {
        Process {
            args,
            env,
            cwd: spec
                .config
                .working_dir
                .as_deref()
                .filter(|w| !w.is_empty())
                .unwrap_or(&spec.cwd),
            image_user: &spec.image_user,
            sec: &spec.config.security,
            caps: &spec.capabilities,
        }
    }
}

/// User, capabilities, no_new_privs, working directory, exec. Returns only on failure,
/// with runc-like error text.
fn finish_and_exec(p: &Process<'_>) -> String {
    match try_exec(p) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

fn try_exec(p: &Process<'_>) -> Result<std::convert::Infallible, String> {
    let u = user::resolve(p.image_user, p.sec)?;
    let mut env: Vec<String> = p.env.to_vec();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", u.home));
    }
    let cwd = if p.cwd.is_empty() { "/" } else { p.cwd };
    let _ = std::fs::create_dir_all(cwd);
    std::env::set_current_dir(cwd)
        .map_err(|e| format!("chdir to cwd ({cwd:?}) set in config.json failed: {e}"))?;
    caps::drop_bounding(p.caps).map_err(|e| format!("dropping capabilities: {e}"))?;
    let _ = caps::set_inheritable(p.caps);
    let groups: Vec<libc::gid_t> = u.groups.clone();
    // SAFETY: plain credential syscalls.
    unsafe {
        if libc::setgroups(groups.len(), groups.as_ptr()) != 0 {
            return Err(format!("setgroups: {}", std::io::Error::last_os_error()));
        }
        if libc::setgid(u.gid) != 0 {
            return Err(format!(
                "setgid {}: {}",
                u.gid,
                std::io::Error::last_os_error()
            ));
        }
        if libc::setuid(u.uid) != 0 {
            return Err(format!(
                "setuid {}: {}",
                u.uid,
                std::io::Error::last_os_error()
            ));
        }
        if p.sec.no_new_privs && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(format!("no_new_privs: {}", std::io::Error::last_os_error()));
        }
    }
    let Some(cmd) = p.args.first() else {
        return Err("no command specified".to_string());
    };
    let path_env = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(super::DEFAULT_PATH);
    let exe = lookup(cmd, path_env)?;
    let to_c = |v: &[String]| -> Vec<CString> {
        v.iter()
            .map(|s| CString::new(s.as_bytes()).unwrap_or_default())
            .collect()
    };
    let argv = to_c(p.args);
    let envp = to_c(&env);
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|c| c.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|c| c.as_ptr()).collect();
    envp_p.push(std::ptr::null());
    let exe_c = CString::new(exe.as_bytes()).unwrap_or_default();
    // SAFETY: null-terminated arrays of valid C strings.
    unsafe { libc::execve(exe_c.as_ptr(), argv_p.as_ptr(), envp_p.as_ptr()) };
    let e = std::io::Error::last_os_error();
    Err(format!("exec {exe}: {}", errno_text(&e)))
}

/// Go's wording of common errnos (what runc prints).
fn errno_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOENT) => "no such file or directory".into(),
        Some(libc::EACCES) => "permission denied".into(),
        Some(libc::ENOEXEC) => "exec format error".into(),
        _ => e.to_string(),
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Finds `cmd` as Go's exec.LookPath does (runc's messages).
fn lookup(cmd: &str, path_env: &str) -> Result<String, String> {
    if cmd.contains('/') {
        return match std::fs::metadata(cmd) {
            Ok(_) => Ok(cmd.to_string()),
            Err(e) => Err(format!("exec: \"{cmd}\": stat {cmd}: {}", errno_text(&e))),
        };
    }
    for dir in path_env.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(cmd);
        if is_executable(&candidate) {
            return Ok(candidate.display().to_string());
        }
    }
    Err(format!(
        "exec: \"{cmd}\": executable file not found in $PATH"
    ))
}

/// Starts a process inside a running container: its PID and mount namespaces (network, IPC
/// and UTS are the shim's, i.e. the pod's), its cgroup, its user and environment.
#[allow(clippy::too_many_arguments)]
pub(crate) fn spawn_exec(
    spec: &ContainerSpec,
    container_pid: libc::pid_t,
    host_pid: bool,
    own_pidns: BorrowedFd<'_>,
    cgroups: &Cgroups,
    args: &[String],
    stdio: ChildStdio,
) -> Result<libc::pid_t, String> {
    let open_ns = |kind: &str| -> Result<OwnedFd, String> {
        std::fs::File::open(format!("/proc/{container_pid}/ns/{kind}"))
            .map(OwnedFd::from)
            .map_err(|e| {
                format!("container process {container_pid} is gone ({kind} namespace: {e})")
            })
    };
    let mnt = open_ns("mnt")?;
    let pidns = if host_pid {
        None
    } else {
        Some(open_ns("pid")?)
    };
    let env = if stdio.tty {
        super::exec_tty_env(&spec.env)
    } else {
        spec.env.clone()
    };
    let (err_r, err_w) = cloexec_pipe().map_err(|e| format!("creating the error pipe: {e}"))?;
    if let Some(fd) = &pidns {
        nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWPID)
            .map_err(|e| format!("joining the container's PID namespace: {e}"))?;
    }
    let pid = clone_fork(0);
    if pidns.is_some() {
        let _ = nix::sched::setns(own_pidns, nix::sched::CloneFlags::CLONE_NEWPID);
    }
    let pid = pid.map_err(|e| format!("fork: {e}"))?;
    if pid == 0 {
        drop(err_r);
        let err = (|| {
            wire_stdio(&stdio)?;
            cgroups.join_self(&spec.cgroup).map_err(|e| e.to_string())?;
            set_oom_score_adj(spec.config.resources.oom_score_adj);
            nix::sched::setns(&mnt, nix::sched::CloneFlags::CLONE_NEWNS)
                .map_err(|e| format!("joining the container's mount namespace: {e}"))?;
            Err::<(), String>(finish_and_exec(&Process::of(spec, args, &env)))
        })()
        .unwrap_err();
        report_and_exit(&err_w, &err);
    }
    drop(err_w);
    drop(stdio);
    let report = read_report(err_r);
    if !report.is_empty() {
        reap(pid);
        return Err(report);
    }
    Ok(pid)
}

/// Wraps a raw fd received from elsewhere.
///
/// # Safety
/// `fd` must be open and owned by nobody else.
pub(crate) unsafe fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: per the contract above.
    unsafe { OwnedFd::from_raw_fd(fd) }
}
