//! Liveness, readiness and startup probes (upstream's `prober/`), and the lifecycle hook
//! handlers (postStart / preStop) that share the exec and httpGet code.
//!
//! httpGet (HTTP and HTTPS), grpc and tcpSocket connect through `RuntimeService::port_forward`, which opens the socket
//! inside the pod's network namespace, so the kubelet needs no route to the pod network.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::{
    Container, GRPCAction, HTTPGetAction, LifecycleHandler, Pod, Probe,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use rkube_cri::RuntimeService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
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
/// `scheme: HTTPS` does a TLS handshake first without verifying the certificate, as
/// upstream's prober (`InsecureSkipVerify`) does.
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
    // Upstream lower-cases the scheme before choosing the transport.
    let https = action
        .scheme
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("HTTPS"));
    let host_port = join_host_port(&host_ip, port);
    let url = format!(
        "{}://{host_port}{path}",
        if https { "https" } else { "http" }
    );
    let fut = async {
        let stream = t
            .runtime
            .port_forward(&t.sandbox_id, port)
            .await
            .map_err(|e| format!("Get \"{url}\": dial tcp {host_port}: {e}"))?;
        let mut host_header = host_port.clone();
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
        if https {
            let mut tls = tls_connect(&host_ip, stream)
                .await
                .map_err(|e| format!("Get \"{url}\": {e}"))?;
            http_status(&mut tls, &req, &url).await
        } else {
            let mut stream = stream;
            http_status(&mut stream, &req, &url).await
        }
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

/// `host:port`, with IPv6 addresses bracketed (Go's `net.JoinHostPort`).
fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The probes' TLS client: any certificate, ALPN `http/1.1`. Built once; rustls configs are
/// immutable and shareable.
fn probe_tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut cfg = rkube_tls::insecure_client_config()
                .map_err(|e| format!("TLS client setup: {e}"))?;
            cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
            Ok(Arc::new(cfg))
        })
        .clone()
}

/// Does the TLS handshake of an HTTPS probe over `stream`. The server name only feeds SNI
/// (the certificate is not checked): IP hosts send none, as Go does.
async fn tls_connect(
    host: &str,
    stream: tokio::net::TcpStream,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let cfg = probe_tls_config()?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let name = rustls::pki_types::ServerName::try_from(bare.to_string())
        .map_err(|e| format!("invalid host {host:?} for TLS: {e}"))?;
    tokio_rustls::TlsConnector::from(cfg)
        .connect(name, stream)
        .await
        .map_err(|e| e.to_string())
}

/// Sends `req` and reads the status code of the response's status line.
async fn http_status<S>(stream: &mut S, req: &str, url: &str) -> Result<u16, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
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
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("Get \"{url}\": malformed HTTP response"))
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

/// Runs a grpc action: `grpc.health.v1.Health/Check` over HTTP/2 cleartext to the pod's IP;
/// `SERVING` passes. Messages follow upstream's `pkg/probe/grpc`.
pub async fn run_grpc(t: &Target, action: &GRPCAction, timeout: Duration) -> Outcome {
    let Some(port) = u16::try_from(action.port).ok().filter(|p| *p > 0) else {
        return Outcome::Failure(format!("invalid port number: {}", action.port));
    };
    let addr = join_host_port(&t.pod_ip, port);
    let service = action.service.clone().unwrap_or_default();
    let deadline = tokio::time::Instant::now() + timeout;
    // Upstream dials with `WithBlock`: gRPC retries the connection until the probe's
    // deadline, so a server that comes up within the timeout still passes.
    let connect_timeout = || {
        Outcome::Failure(format!(
            "timeout: failed to connect service {addr:?} within {}: context deadline exceeded",
            go_duration(timeout)
        ))
    };
    let mut backoff = Duration::from_millis(100);
    let (mut sender, conn) = loop {
        match tokio::time::timeout_at(deadline, grpc_connect(t, port)).await {
            Ok(Ok(c)) => break c,
            Ok(Err(e)) => {
                tracing::debug!(%addr, error = %e, "gRPC probe: connection attempt failed");
                if tokio::time::Instant::now() + backoff >= deadline {
                    // As upstream, a refused connection is reported once the deadline passes.
                    tokio::time::sleep_until(deadline).await;
                    return connect_timeout();
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            Err(_) => return connect_timeout(),
        }
    };
    // Aborted on return so the connection task never outlives the probe.
    let _conn = AbortOnDrop(tokio::spawn(conn));
    let call = grpc_health_check(&mut sender, &addr, &service);
    match tokio::time::timeout_at(deadline, call).await {
        Err(_) => Outcome::Failure(format!(
            "timeout: health rpc did not complete within {}",
            go_duration(timeout)
        )),
        Ok(Err(GrpcError::Status(12, msg))) => Outcome::Failure(format!(
            "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): {msg}"
        )),
        Ok(Err(GrpcError::Status(4, _))) => Outcome::Failure(format!(
            "timeout: health rpc did not complete within {}",
            go_duration(timeout)
        )),
        Ok(Err(GrpcError::Status(code, msg))) => Outcome::Failure(format!(
            "error: health rpc probe failed: rpc error: code = {} desc = {msg}",
            grpc_code_name(code)
        )),
        Ok(Err(GrpcError::Other(e))) => {
            Outcome::Failure(format!("error: health rpc probe failed: {e}"))
        }
        Ok(Ok(1)) => Outcome::Success,
        Ok(Ok(status)) => Outcome::Failure(format!(
            "service unhealthy (responded with {:?})",
            health_status_name(status)
        )),
    }
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<Result<(), hyper::Error>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The HTTP/2 client half of a gRPC connection and the task driving it.
type GrpcConn = (
    hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    hyper::client::conn::http2::Connection<
        TokioIo<tokio::net::TcpStream>,
        Full<Bytes>,
        TokioExecutor,
    >,
);

/// Opens a socket in the pod and does the HTTP/2 (prior knowledge) handshake.
async fn grpc_connect(t: &Target, port: u16) -> Result<GrpcConn, String> {
    let stream = t
        .runtime
        .port_forward(&t.sandbox_id, port)
        .await
        .map_err(|e| e.to_string())?;
    hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())
}

/// Why a gRPC call failed.
#[derive(Debug)]
enum GrpcError {
    /// The server answered with a non-OK `grpc-status` (code, decoded `grpc-message`).
    Status(u32, String),
    /// Transport or framing trouble.
    Other(String),
}

/// Calls `/grpc.health.v1.Health/Check` and returns the response's `status` enum value.
async fn grpc_health_check(
    sender: &mut hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    addr: &str,
    service: &str,
) -> Result<u64, GrpcError> {
    let other = |e: &dyn std::fmt::Display| GrpcError::Other(e.to_string());
    sender.ready().await.map_err(|e| other(&e))?;
    let req = http::Request::post(format!("http://{addr}/grpc.health.v1.Health/Check"))
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .header(http::header::USER_AGENT, "kube-probe/1.35")
        .body(Full::new(Bytes::from(grpc_frame(&health_check_request(
            service,
        )))))
        .map_err(|e| other(&e))?;
    let resp = sender.send_request(req).await.map_err(|e| other(&e))?;
    let (head, body) = resp.into_parts();
    if head.status != http::StatusCode::OK {
        // gRPC's mapping of HTTP statuses (grpc/doc/http-grpc-status-mapping.md).
        let code = match head.status.as_u16() {
            400 => 13,
            401 => 16,
            403 => 7,
            404 => 12,
            429 | 502..=504 => 14,
            _ => 2,
        };
        return Err(GrpcError::Status(
            code,
            format!(
                "unexpected HTTP status code received from server: {} ({})",
                head.status.as_u16(),
                head.status.canonical_reason().unwrap_or("")
            ),
        ));
    }
    // A "Trailers-Only" answer carries grpc-status in the headers and has no body.
    if let Some(err) = grpc_status(&head.headers) {
        return Err(err);
    }
    let collected = body.collect().await.map_err(|e| other(&e))?;
    if let Some(err) = collected.trailers().and_then(grpc_status) {
        return Err(err);
    }
    let data = collected.to_bytes();
    let message = grpc_unframe(&data).map_err(|e| other(&e))?;
    health_check_response_status(message).map_err(|e| other(&e))
}

/// A non-OK `grpc-status` in `headers`, as an error.
fn grpc_status(headers: &http::HeaderMap) -> Option<GrpcError> {
    let code = headers.get("grpc-status")?;
    let code = match code.to_str().ok().and_then(|c| c.parse::<u32>().ok()) {
        Some(0) => return None,
        Some(c) => c,
        None => {
            return Some(GrpcError::Other(format!(
                "malformed grpc-status {code:?} in the response"
            )));
        }
    };
    let msg = headers
        .get("grpc-message")
        .map(|m| percent_decode(m.as_bytes()))
        .unwrap_or_default();
    Some(GrpcError::Status(code, msg))
}

/// Decodes gRPC's percent-encoded `grpc-message`.
fn percent_decode(b: &[u8]) -> String {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `HealthCheckRequest` message: field 1 (`service`, string); empty when `service` is
/// empty (proto3 omits default values).
fn health_check_request(service: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(service.len() + 6);
    if !service.is_empty() {
        m.push(0x0a); // field 1, wire type 2 (length-delimited)
        put_varint(&mut m, service.len() as u64);
        m.extend_from_slice(service.as_bytes());
    }
    m
}

/// The `status` (field 1, enum) of a `HealthCheckResponse`; absent means 0 (`UNKNOWN`).
fn health_check_response_status(mut m: &[u8]) -> Result<u64, String> {
    let mut status = 0;
    while !m.is_empty() {
        let key = take_varint(&mut m)?;
        match key & 7 {
            0 => {
                let v = take_varint(&mut m)?;
                if key >> 3 == 1 {
                    status = v;
                }
            }
            1 | 5 => {
                let n = if key & 7 == 1 { 8 } else { 4 };
                m = m.get(n..).ok_or("truncated HealthCheckResponse")?;
            }
            2 => {
                let n = usize::try_from(take_varint(&mut m)?)
                    .map_err(|_| "oversized field in HealthCheckResponse")?;
                m = m.get(n..).ok_or("truncated HealthCheckResponse")?;
            }
            w => return Err(format!("HealthCheckResponse: unsupported wire type {w}")),
        }
    }
    Ok(status)
}

/// Appends a protobuf base-128 varint.
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a protobuf base-128 varint from the front of `m`.
fn take_varint(m: &mut &[u8]) -> Result<u64, String> {
    let mut v = 0u64;
    for i in 0..10 {
        let (&b, rest) = m
            .split_first()
            .ok_or("truncated varint in protobuf message")?;
        *m = rest;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint longer than 10 bytes in protobuf message".into())
}

/// Wraps a message in gRPC's length-prefixed framing (uncompressed).
fn grpc_frame(message: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(5 + message.len());
    f.push(0);
    f.extend_from_slice(&(message.len() as u32).to_be_bytes());
    f.extend_from_slice(message);
    f
}

/// The first message of a gRPC response body.
fn grpc_unframe(data: &[u8]) -> Result<&[u8], String> {
    let Some((head, rest)) = data.split_first_chunk::<5>() else {
        return Err("server closed the stream without sending a response message".into());
    };
    if head[0] != 0 {
        return Err("compressed gRPC response, but no compression was offered".into());
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    rest.get(..len)
        .ok_or_else(|| "truncated gRPC response message".to_string())
}

/// Go's name of a `HealthCheckResponse_ServingStatus` value.
fn health_status_name(v: u64) -> String {
    match v {
        0 => "UNKNOWN".into(),
        1 => "SERVING".into(),
        2 => "NOT_SERVING".into(),
        3 => "SERVICE_UNKNOWN".into(),
        n => n.to_string(),
    }
}

/// Go's name of a gRPC status code (`codes.Code.String()`).
fn grpc_code_name(code: u32) -> String {
    const NAMES: [&str; 17] = [
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    NAMES
        .get(code as usize)
        .map(|n| n.to_string())
        .unwrap_or_else(|| format!("Code({code})"))
}

/// A duration as Go's `time.Duration.String()` prints it (`1s`, `1m30s`, `1h0m0s`, `1.5s`,
/// `500ms`); probe timeouts are whole seconds, so sub-millisecond precision is dropped.
fn go_duration(d: Duration) -> String {
    let trim = |whole: u64, frac: u64, digits: usize| {
        let f = format!("{frac:0digits$}");
        let f = f.trim_end_matches('0');
        if f.is_empty() {
            whole.to_string()
        } else {
            format!("{whole}.{f}")
        }
    };
    if d.is_zero() {
        return "0s".into();
    }
    let ms = d.as_millis() as u64;
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = ms / 1000;
    let s = format!("{}s", trim(secs % 60, ms % 1000, 3));
    match (secs / 3600, secs % 3600 / 60) {
        (0, 0) => s,
        (0, m) => format!("{m}m{s}"),
        (h, m) => format!("{h}h{m}m{s}"),
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
    if let Some(g) = &probe.grpc {
        return run_grpc(t, g, timing.timeout).await;
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

#[cfg(test)]
mod tls_grpc_tests;
