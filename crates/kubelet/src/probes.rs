//! Liveness, readiness and startup probes (upstream's `prober/`), and the lifecycle hook
//! handlers (postStart / preStop) that share the exec and httpGet code.
//!
//! httpGet and tcpSocket connect through `RuntimeService::port_forward`, which opens the socket
//! inside the pod's network namespace, so the kubelet needs no route to the pod network.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, HTTPGetAction, LifecycleHandler, Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use rkube_cri::RuntimeService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

use crate::events::{Recorder, WARNING, container_field_path};

/// Which probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    /// Restart the container when it fails.
    Liveness,
    /// Take the container out of endpoints when it fails.
    Readiness,
    /// Gate the other probes until it succeeds once.
    Startup,
}

impl ProbeKind {
    /// `Liveness` / `Readiness` / `Startup`, as in event messages.
    pub fn name(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        }
    }
}

/// The outcome of one probe or hook run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It passed.
    Success,
    /// It failed, with upstream-style detail.
    Failure(String),
}

/// Where a probe runs.
#[derive(Clone)]
pub struct Target {
    /// The runtime.
    pub runtime: Arc<dyn RuntimeService>,
    /// The pod's sandbox.
    pub sandbox_id: String,
    /// The container.
    pub container_id: String,
    /// The pod's IP (for messages and the default `Host` header).
    pub pod_ip: String,
}

/// The timing and thresholds of a probe, defaulted as the apiserver does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Delay after the container starts.
    pub initial_delay: Duration,
    /// Period between runs (10 s).
    pub period: Duration,
    /// Timeout of one run (1 s).
    pub timeout: Duration,
    /// Consecutive successes to pass (1).
    pub success_threshold: u32,
    /// Consecutive failures to fail (3).
    pub failure_threshold: u32,
}

impl Timing {
    /// From a probe spec.
    pub fn of(p: &Probe) -> Timing {
        let secs =
            |v: Option<i32>, d: i32| Duration::from_secs(v.filter(|v| *v > 0).unwrap_or(d) as u64);
        Timing {
            initial_delay: Duration::from_secs(p.initial_delay_seconds.unwrap_or(0).max(0) as u64),
            period: secs(p.period_seconds, 10),
            timeout: secs(p.timeout_seconds, 1),
            success_threshold: p.success_threshold.filter(|v| *v > 0).unwrap_or(1) as u32,
            failure_threshold: p.failure_threshold.filter(|v| *v > 0).unwrap_or(3) as u32,
        }
    }
}

/// Consecutive-result bookkeeping of one probe (upstream's worker `resultRun` logic).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracker {
    success_threshold: u32,
    failure_threshold: u32,
    last: Option<bool>,
    run: u32,
    /// The current verdict: `None` until a threshold is first reached.
    pub result: Option<bool>,
}

impl Tracker {
    /// A tracker with the probe's thresholds.
    pub fn new(t: &Timing) -> Tracker {
        Tracker {
            success_threshold: t.success_threshold,
            failure_threshold: t.failure_threshold,
            last: None,
            run: 0,
            result: None,
        }
    }

    /// Records one run; returns the new verdict when it changed.
    pub fn record(&mut self, ok: bool) -> Option<bool> {
        if self.last == Some(ok) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(ok);
            self.run = 1;
        }
        let threshold = if ok {
            self.success_threshold
        } else {
            self.failure_threshold
        };
        if self.run < threshold || self.result == Some(ok) {
            return None;
        }
        self.result = Some(ok);
        Some(ok)
    }
}

/// Probe verdicts of a pod's containers, by container id.
#[derive(Debug, Default)]
pub struct ProbeResults {
    inner: Mutex<HashMap<String, ContainerVerdicts>>,
    /// Woken on every verdict change, so the pod worker syncs at once.
    pub changed: Notify,
}

/// The verdicts of one container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerVerdicts {
    /// Readiness passed (containers without a readiness probe are ready when started).
    pub ready: bool,
    /// Startup passed.
    pub started: bool,
    /// Liveness or startup failed: the kill message.
    pub unhealthy: Option<String>,
}

impl ProbeResults {
    /// The verdicts of one container.
    pub fn get(&self, container_id: &str) -> ContainerVerdicts {
        let m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        m.get(container_id).cloned().unwrap_or_default()
    }

    /// Every container's verdicts.
    pub fn all(&self) -> HashMap<String, ContainerVerdicts> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn update(&self, container_id: &str, f: impl FnOnce(&mut ContainerVerdicts)) {
        {
            let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            f(m.entry(container_id.to_string()).or_default());
        }
        self.changed.notify_one();
    }

    /// Forgets containers not in `keep`.
    pub fn retain(&self, keep: &dyn Fn(&str) -> bool) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|k, _| keep(k));
    }
}

/// Resolves a probe/hook port (a number, or a `containerPorts` name).
pub fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("invalid port number: {n}")),
        IntOrString::String(name) => {
            if let Ok(n) = name.parse::<u16>() {
                return Ok(n);
            }
            container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| format!("couldn't find port: {name} in {}", container.name))
        }
    }
}

/// Runs an exec action.
pub async fn run_exec(t: &Target, cmd: &[String], timeout: Duration) -> Outcome {
    let fut = t.runtime.exec_sync(&t.container_id, cmd, timeout);
    match tokio::time::timeout(timeout + Duration::from_secs(1), fut).await {
        Ok(Ok(r)) if r.exit_code == 0 => Outcome::Success,
        Ok(Ok(r)) => {
            let mut out = String::from_utf8_lossy(&r.stdout).into_owned();
            out.push_str(&String::from_utf8_lossy(&r.stderr));
            Outcome::Failure(out)
        }
        Ok(Err(e)) => Outcome::Failure(e.to_string()),
        Err(_) => Outcome::Failure(format!("command {:?} timed out", cmd.join(" "))),
    }
}

/// Runs an httpGet action: HTTP/1.1 GET through a socket in the pod; 200–399 passes.
pub async fn run_http(
    t: &Target,
    action: &HTTPGetAction,
    container: &Container,
    timeout: Duration,
) -> Outcome {
    let port = match resolve_port(&action.port, container) {
        Ok(p) => p,
        Err(e) => return Outcome::Failure(e),
    };
    let path = action
        .path
        .clone()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/".into());
    let path = if path.starts_with('/') {
        path
    } else {
        format!("/{path}")
    };
    let host_ip = action
        .host
        .clone()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| t.pod_ip.clone());
    let url = format!("http://{host_ip}:{port}{path}");
    let scheme_https = action.scheme.as_deref() == Some("HTTPS");
    let fut = async {
        let mut stream = t
            .runtime
            .port_forward(&t.sandbox_id, port)
            .await
            .map_err(|e| format!("Get \"{url}\": dial tcp {host_ip}:{port}: {e}"))?;
        if scheme_https {
            // No TLS client here: a connection counts, as a TCP check would.
            return Ok(200u16);
        }
        let mut host_header = format!("{host_ip}:{port}");
        let mut extra = String::new();
        for h in action.http_headers.iter().flatten() {
            if h.name.eq_ignore_ascii_case("host") {
                host_header = h.value.clone();
            } else {
                extra.push_str(&format!("{}: {}\r\n", h.name, h.value));
            }
        }
        let mut req =
            format!("GET {path} HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n");
        if !extra.to_ascii_lowercase().contains("user-agent:") {
            req.push_str("User-Agent: kube-probe/1.35\r\n");
        }
        if !extra.to_ascii_lowercase().contains("accept:") {
            req.push_str("Accept: */*\r\n");
        }
        req.push_str(&extra);
        req.push_str("\r\n");
        stream
            .write_all(req.as_bytes())
            .await
            .map_err(|e| format!("Get \"{url}\": {e}"))?;
        let mut buf = Vec::with_capacity(256);
        let mut chunk = [0u8; 256];
        while !buf.windows(2).any(|w| w == b"\r\n") && buf.len() < 8192 {
            let n = stream
                .read(&mut chunk)
                .await
                .map_err(|e| format!("Get \"{url}\": {e}"))?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let line = String::from_utf8_lossy(&buf);
        let code = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| format!("Get \"{url}\": malformed HTTP response"))?;
        Ok(code)
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(code)) if (200..400).contains(&code) => Outcome::Success,
        Ok(Ok(code)) => Outcome::Failure(format!("HTTP probe failed with statuscode: {code}")),
        Ok(Err(e)) => Outcome::Failure(e),
        Err(_) => Outcome::Failure(format!(
            "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        )),
    }
}

/// Runs a tcpSocket action: a connection inside the pod passes.
pub async fn run_tcp(
    t: &Target,
    port: &IntOrString,
    container: &Container,
    timeout: Duration,
) -> Outcome {
    let port = match resolve_port(port, container) {
        Ok(p) => p,
        Err(e) => return Outcome::Failure(e),
    };
    let addr = format!("{}:{port}", t.pod_ip);
    match tokio::time::timeout(timeout, t.runtime.port_forward(&t.sandbox_id, port)).await {
        Ok(Ok(_)) => Outcome::Success,
        Ok(Err(e)) => Outcome::Failure(format!("dial tcp {addr}: {e}")),
        Err(_) => Outcome::Failure(format!("dial tcp {addr}: i/o timeout")),
    }
}

/// Runs one probe.
pub async fn run_probe(t: &Target, probe: &Probe, container: &Container) -> Outcome {
    let timing = Timing::of(probe);
    if let Some(e) = &probe.exec {
        return run_exec(t, e.command.as_deref().unwrap_or(&[]), timing.timeout).await;
    }
    if let Some(h) = &probe.http_get {
        return run_http(t, h, container, timing.timeout).await;
    }
    if let Some(s) = &probe.tcp_socket {
        return run_tcp(t, &s.port, container, timing.timeout).await;
    }
    if probe.grpc.is_some() {
        return Outcome::Failure("gRPC probes are not supported by rkube".into());
    }
    Outcome::Success
}

/// Runs a lifecycle hook (postStart / preStop); `Err` carries the event message.
pub async fn run_hook(
    t: &Target,
    h: &LifecycleHandler,
    pod_desc: &str,
    container: &Container,
    timeout: Duration,
) -> Result<(), String> {
    if let Some(e) = &h.exec {
        let cmd = e.command.clone().unwrap_or_default();
        return match run_exec(t, &cmd, timeout).await {
            Outcome::Success => Ok(()),
            Outcome::Failure(out) => Err(format!(
                "Exec lifecycle hook ([{}]) for Container \"{}\" in Pod \"{pod_desc}\" failed - error: command '{}' exited with non-zero status, message: {out:?}",
                cmd.join(" "),
                container.name,
                cmd.join(" ")
            )),
        };
    }
    if let Some(g) = &h.http_get {
        return match run_http(t, g, container, timeout).await {
            Outcome::Success => Ok(()),
            Outcome::Failure(msg) => Err(format!(
                "HTTP lifecycle hook ({}) for Container \"{}\" in Pod \"{pod_desc}\" failed - error: {msg}",
                g.path.as_deref().unwrap_or("/"),
                container.name
            )),
        };
    }
    if let Some(s) = &h.sleep {
        tokio::time::sleep(Duration::from_secs(s.seconds.max(0) as u64).min(timeout)).await;
        return Ok(());
    }
    if let Some(s) = &h.tcp_socket {
        return match run_tcp(t, &s.port, container, timeout).await {
            Outcome::Success => Ok(()),
            Outcome::Failure(m) => Err(m),
        };
    }
    Ok(())
}

/// The kill message for a failed liveness/startup probe.
pub fn kill_message(kind: ProbeKind, container: &str) -> String {
    format!(
        "Container {container} failed {} probe, will be restarted",
        kind.name().to_lowercase()
    )
}

/// Probes one container until the task is aborted (the pod worker aborts it when the
/// container stops). Readiness starts failed, liveness and startup start passed/unknown.
pub async fn probe_worker(
    kind: ProbeKind,
    pod: Pod,
    container: Container,
    target: Target,
    results: Arc<ProbeResults>,
    recorder: Recorder,
) {
    let probe = match kind {
        ProbeKind::Liveness => container.liveness_probe.clone(),
        ProbeKind::Readiness => container.readiness_probe.clone(),
        ProbeKind::Startup => container.startup_probe.clone(),
    };
    let Some(probe) = probe else { return };
    let timing = Timing::of(&probe);
    let mut tracker = Tracker::new(&timing);
    let id = target.container_id.clone();
    tokio::time::sleep(timing.initial_delay).await;
    loop {
        let gated = kind != ProbeKind::Startup
            && container.startup_probe.is_some()
            && !results.get(&id).started;
        if !gated {
            let outcome = run_probe(&target, &probe, &container).await;
            if let Outcome::Failure(msg) = &outcome {
                recorder.pod_event(
                    &pod,
                    Some(container_field_path(&pod, &container.name)),
                    WARNING,
                    "Unhealthy",
                    format!("{} probe failed: {msg}", kind.name()),
                );
            }
            if let Some(ok) = tracker.record(outcome == Outcome::Success) {
                let name = container.name.clone();
                results.update(&id, |v| match kind {
                    ProbeKind::Readiness => v.ready = ok,
                    ProbeKind::Startup => {
                        v.started = ok;
                        if !ok {
                            v.unhealthy = Some(kill_message(kind, &name));
                        }
                    }
                    ProbeKind::Liveness => {
                        if !ok {
                            v.unhealthy = Some(kill_message(kind, &name));
                        }
                    }
                });
                if kind == ProbeKind::Startup && ok {
                    // A startup probe stops once it has passed.
                    return;
                }
            }
        }
        tokio::time::sleep(timing.period).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn thresholds() {
        let t = Timing::of(
            &serde_json::from_value(json!({"failureThreshold": 3, "successThreshold": 2})).unwrap(),
        );
        assert_eq!(t.period, Duration::from_secs(10));
        assert_eq!(t.timeout, Duration::from_secs(1));
        let mut tr = Tracker::new(&t);
        assert_eq!(tr.record(true), None);
        assert_eq!(tr.record(true), Some(true));
        assert_eq!(tr.record(true), None);
        assert_eq!(tr.record(false), None);
        assert_eq!(tr.record(false), None);
        assert_eq!(tr.record(true), None);
        assert_eq!(tr.record(false), None);
        assert_eq!(tr.record(false), None);
        assert_eq!(tr.record(false), Some(false));
        assert_eq!(tr.result, Some(false));
    }

    #[test]
    fn named_ports() {
        let c: Container = serde_json::from_value(json!({"name": "web",
            "ports": [{"name": "http", "containerPort": 8080}]}))
        .unwrap();
        assert_eq!(
            resolve_port(&IntOrString::String("http".into()), &c),
            Ok(8080)
        );
        assert_eq!(resolve_port(&IntOrString::Int(81), &c), Ok(81));
        assert!(resolve_port(&IntOrString::String("nope".into()), &c).is_err());
    }

    #[test]
    fn messages() {
        assert_eq!(
            kill_message(ProbeKind::Liveness, "web"),
            "Container web failed liveness probe, will be restarted"
        );
    }
}
