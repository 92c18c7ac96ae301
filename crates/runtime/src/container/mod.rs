//! Containers: the spec a container is started from (merged from the image config and the
//! CRI config), and the process-side machinery that turns it into a running process.

pub(crate) mod caps;
pub(crate) mod rootfs;
pub(crate) mod spawn;
pub(crate) mod user;

use rkube_cri::{ContainerConfig, ImageConfig};

/// PATH when neither the image nor the config sets one (runc's and Docker's default).
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// argv as upstream computes it: `command` replaces ENTRYPOINT (and then CMD is dropped
/// unless `args` is given), `args` replaces CMD.
pub(crate) fn merge_args(image: &ImageConfig, config: &ContainerConfig) -> Vec<String> {
    if !config.command.is_empty() {
        config
            .command
            .iter()
            .chain(config.args.iter())
            .cloned()
            .collect()
    } else if !config.args.is_empty() {
        image
            .entrypoint
            .iter()
            .chain(config.args.iter())
            .cloned()
            .collect()
    } else {
        image
            .entrypoint
            .iter()
            .chain(image.cmd.iter())
            .cloned()
            .collect()
    }
}

/// The terminal type a process with a terminal gets, as containerd sets it.
const TERM_XTERM: &str = "TERM=xterm";

/// The image's ENV with the config's envs over it (same name: the config wins, in place),
/// then HOSTNAME and PATH defaults when missing, and `TERM=xterm` for a container with a
/// terminal unless the image or the config names a TERM (containerd's `WithTTY`: without a
/// TERM, full-screen programs in `kubectl attach -it` fall back to a dumb terminal).
pub(crate) fn merge_env(
    image: &ImageConfig,
    config: &ContainerConfig,
    hostname: &str,
) -> Vec<String> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: &str| match env.iter_mut().find(|(ek, _)| ek == k) {
        Some(e) => e.1 = v.to_string(),
        None => env.push((k.to_string(), v.to_string())),
    };
    for kv in &image.env {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        set(k, v);
    }
    for (k, v) in &config.envs {
        set(k, v);
    }
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.insert(0, ("PATH".to_string(), DEFAULT_PATH.to_string()));
    }
    if !env.iter().any(|(k, _)| k == "HOSTNAME") && !hostname.is_empty() {
        env.push(("HOSTNAME".to_string(), hostname.to_string()));
    }
    if config.tty && !env.iter().any(|(k, _)| k == "TERM") {
        env.push(("TERM".to_string(), "xterm".to_string()));
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// `env` for a process exec'd with a terminal (`kubectl exec -t`): `TERM=xterm` in place of
/// any TERM the container has, as containerd's exec does.
pub(crate) fn exec_tty_env(env: &[String]) -> Vec<String> {
    env.iter()
        .filter(|kv| !kv.starts_with("TERM="))
        .cloned()
        .chain(std::iter::once(TERM_XTERM.to_string()))
        .collect()
}

/// Parses a STOPSIGNAL (`SIGTERM`, `TERM`, `15`, `SIGRTMIN+3`); empty means SIGTERM.
pub(crate) fn parse_signal(s: &str) -> Result<i32, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(libc::SIGTERM);
    }
    if let Ok(n) = s.parse::<i32>() {
        return Ok(n);
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    let table: &[(&str, i32)] = &[
        ("HUP", libc::SIGHUP),
        ("INT", libc::SIGINT),
        ("QUIT", libc::SIGQUIT),
        ("KILL", libc::SIGKILL),
        ("USR1", libc::SIGUSR1),
        ("USR2", libc::SIGUSR2),
        ("TERM", libc::SIGTERM),
        ("STOP", libc::SIGSTOP),
        ("CONT", libc::SIGCONT),
        ("WINCH", libc::SIGWINCH),
        ("PWR", libc::SIGPWR),
        ("ALRM", libc::SIGALRM),
    ];
    if let Some((_, n)) = table.iter().find(|(n, _)| *n == name) {
        return Ok(*n);
    }
    if let Some(off) = name.strip_prefix("RTMIN+")
        && let Ok(o) = off.parse::<i32>()
    {
        return Ok(libc::SIGRTMIN() + o);
    }
    if name == "RTMIN" {
        return Ok(libc::SIGRTMIN());
    }
    Err(format!("invalid stop signal {s:?} in the image config"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn args_merge_as_upstream() {
        let img = ImageConfig {
            entrypoint: s(&["/ep"]),
            cmd: s(&["c1"]),
            ..Default::default()
        };
        let mut c = ContainerConfig::default();
        assert_eq!(merge_args(&img, &c), s(&["/ep", "c1"]));
        c.args = s(&["a"]);
        assert_eq!(merge_args(&img, &c), s(&["/ep", "a"]));
        c.command = s(&["cmd"]);
        assert_eq!(merge_args(&img, &c), s(&["cmd", "a"]));
        c.args.clear();
        assert_eq!(merge_args(&img, &c), s(&["cmd"]));
    }

    #[test]
    fn env_merge() {
        let img = ImageConfig {
            env: s(&["A=1", "B=2"]),
            ..Default::default()
        };
        let c = ContainerConfig {
            envs: vec![("B".into(), "3".into()), ("C".into(), "4".into())],
            ..Default::default()
        };
        assert_eq!(
            merge_env(&img, &c, "h"),
            s(&[
                &format!("PATH={DEFAULT_PATH}"),
                "A=1",
                "B=3",
                "C=4",
                "HOSTNAME=h"
            ])
        );
    }

    #[test]
    fn terminals_get_xterm() {
        let img = ImageConfig {
            env: s(&["A=1"]),
            ..Default::default()
        };
        let mut c = ContainerConfig {
            tty: true,
            ..Default::default()
        };
        assert_eq!(
            merge_env(&img, &c, ""),
            s(&[&format!("PATH={DEFAULT_PATH}"), "A=1", "TERM=xterm"])
        );
        c.envs = vec![("TERM".into(), "vt100".into())];
        assert!(merge_env(&img, &c, "").contains(&"TERM=vt100".to_string()));
        c.tty = false;
        c.envs.clear();
        assert!(
            !merge_env(&img, &c, "")
                .iter()
                .any(|e| e.starts_with("TERM="))
        );
        assert_eq!(
            exec_tty_env(&s(&["TERM=vt100", "A=1"])),
            s(&["A=1", "TERM=xterm"])
        );
    }

    #[test]
    fn signals() {
        assert_eq!(parse_signal("").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("SIGQUIT").unwrap(), libc::SIGQUIT);
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert!(parse_signal("SIGNOPE").is_err());
    }
}
