//! rkube-streaming: the kubelet's streaming HTTPS server, which the apiserver's `pods/log`,
//! `pods/exec`, `pods/attach` and `pods/portforward` subresources proxy to.
//!
//! Endpoints, named as the upstream kubelet names them:
//! - `GET /containerLogs/{ns}/{pod}/{container}?follow&previous&sinceSeconds&sinceTime&timestamps&tailLines&limitBytes`
//!   ([`logs`]);
//! - `/exec/{ns}/{pod}/{container}?command=…&stdin&stdout&stderr&tty` and
//!   `/attach/{ns}/{pod}/{container}?…`: WebSocket with the channel protocols ([`channel`]);
//! - `/portForward/{ns}/{pod}`: SPDY/3.1 ([`spdy`], [`portforward`]) either tunnelled in a
//!   WebSocket (`SPDY/3.1+portforward.k8s.io`, what kubectl v1.35 tries first) or as a plain
//!   `Upgrade: SPDY/3.1`;
//! - `/healthz`, the only path served without a client certificate.
//!
//! The kubelet supplies the pod lookup ([`PodResolver`]) and the CRI runtime.
#![warn(missing_docs)]

pub mod channel;
mod exec;
pub mod logs;
pub mod portforward;
pub mod spdy;
pub mod tls;

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rkube_cri::{RuntimeService, StreamOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

pub use tls::{TlsError, kubelet_tls_config};

/// Where a streaming request leads, as the kubelet resolves it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamTarget {
    /// The pod's sandbox (port-forward dials inside it).
    pub sandbox_id: String,
    /// The container's current runtime id; `None` if it was never created.
    pub container_id: Option<String>,
    /// The container's name (empty for port-forward).
    pub container_name: String,
    /// The pod's log directory: `<data-dir>/agent/logs/pods/<ns>_<pod>_<uid>`.
    pub log_dir: PathBuf,
    /// The pod's UID (messages only; may be empty).
    pub pod_uid: String,
}

/// Why a pod or container could not be resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResolveError {
    /// No such pod on this node.
    PodNotFound,
    /// The pod has no such container (the message names it).
    ContainerNotFound(String),
    /// The container exists but cannot be streamed to now (the message says why).
    NotRunning(String),
}

/// The kubelet's view of its pods, for the streaming server.
#[async_trait::async_trait]
pub trait PodResolver: Send + Sync {
    /// Finds `container` of pod `namespace/pod`. Port-forward passes an empty container name
    /// and needs only the sandbox.
    async fn resolve(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> Result<StreamTarget, ResolveError>;
}

/// Response body of the streaming server.
pub type Body = BoxBody<Bytes, Infallible>;

struct State {
    runtime: Arc<dyn RuntimeService>,
    pods: Arc<dyn PodResolver>,
}

/// Serves the streaming endpoints on `listener` with `tls` (see [`kubelet_tls_config`])
/// until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    runtime: Arc<dyn RuntimeService>,
    pods: Arc<dyn PodResolver>,
) {
    let state = Arc::new(State { runtime, pods });
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("kubelet streaming server: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let state = state.clone();
        tokio::spawn(async move {
            let stream = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!("kubelet streaming server: TLS handshake: {e}");
                    return;
                }
            };
            // rustls has already verified a presented certificate against the cluster CA.
            let authenticated = stream.get_ref().1.peer_certificates().is_some();
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(state, req, authenticated).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!("kubelet streaming server: connection: {e}");
            }
        });
    }
}

fn text(code: StatusCode, msg: impl Into<String>) -> http::Response<Body> {
    let mut body = msg.into();
    if !body.ends_with('\n') {
        body.push('\n');
    }
    let mut r = http::Response::new(Full::new(Bytes::from(body)).boxed());
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

async fn handle(
    state: Arc<State>,
    req: http::Request<Incoming>,
    authenticated: bool,
) -> http::Response<Body> {
    let path = req.uri().path().to_string();
    if path == "/healthz" || path == "/healthz/" {
        return text(StatusCode::OK, "ok");
    }
    if !authenticated {
        return text(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let segs: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(decode)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match (req.method(), segs.as_slice()) {
        (&Method::GET, ["containerLogs", ns, pod, container]) => {
            container_logs(&state, ns, pod, container, req.uri().query()).await
        }
        (&Method::GET | &Method::POST, [verb @ ("exec" | "attach"), ns, pod, container])
        | (&Method::GET | &Method::POST, [verb @ ("exec" | "attach"), ns, pod, _, container]) => {
            let attach = *verb == "attach";
            let (ns, pod, container) = (ns.to_string(), pod.to_string(), container.to_string());
            exec_or_attach(&state, req, &ns, &pod, &container, attach).await
        }
        (_, ["portForward", ns, pod]) | (_, ["portForward", ns, pod, _]) => {
            let (ns, pod) = (ns.to_string(), pod.to_string());
            port_forward(&state, req, &ns, &pod).await
        }
        _ => text(StatusCode::NOT_FOUND, "404 page not found"),
    }
}

fn resolve_error(e: ResolveError, ns: &str, pod: &str) -> http::Response<Body> {
    match e {
        ResolveError::PodNotFound => text(
            StatusCode::NOT_FOUND,
            format!("pod \"{ns}/{pod}\" does not exist on this node"),
        ),
        ResolveError::ContainerNotFound(m) => text(StatusCode::NOT_FOUND, m),
        ResolveError::NotRunning(m) => text(StatusCode::BAD_REQUEST, m),
    }
}

async fn container_logs(
    state: &State,
    ns: &str,
    pod: &str,
    container: &str,
    query: Option<&str>,
) -> http::Response<Body> {
    let opts = match logs::LogOptions::from_query(query) {
        Ok(o) => o,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    let target = match state.pods.resolve(ns, pod, container).await {
        Ok(t) => t,
        Err(e) => return resolve_error(e, ns, pod),
    };
    let dir = target.log_dir.join(&target.container_name);
    let files = match logs::log_files(&dir, container, pod, opts.previous) {
        Ok(Some(f)) => f,
        Ok(None) => return text(StatusCode::OK, ""),
        Err(e @ logs::LogError::NoPrevious { .. }) => {
            return text(StatusCode::BAD_REQUEST, e.to_string());
        }
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let follow = match (&target.container_id, opts.previous) {
        (Some(id), false) => Some(logs::FollowTarget {
            runtime: state.runtime.clone(),
            container_id: id.clone(),
        }),
        _ => None,
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    tokio::spawn(logs::stream_logs(files, opts, follow, tx));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(hyper::body::Frame::data(b)), rx))
    });
    let mut r = http::Response::new(BodyExt::boxed(StreamBody::new(stream)));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

fn query_flag(v: &str) -> bool {
    matches!(v, "" | "1" | "t" | "T" | "true" | "TRUE" | "True")
}

fn is_websocket(req: &http::Request<Incoming>) -> bool {
    let has = |name: header::HeaderName, token: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str()
                .unwrap_or("")
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        })
    };
    has(header::UPGRADE, "websocket") && has(header::CONNECTION, "upgrade")
}

fn offered_protocols(req: &http::Request<Incoming>) -> Vec<String> {
    req.headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The `101 Switching Protocols` answer to a WebSocket handshake, or an error response.
fn websocket_accept(
    req: &http::Request<Incoming>,
    protocol: Option<&str>,
) -> Result<http::Response<Body>, String> {
    let key = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or("missing Sec-WebSocket-Key")?;
    if req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v != "13")
    {
        return Err("unsupported Sec-WebSocket-Version: 13 is supported".into());
    }
    let mut r = http::Response::new(Full::new(Bytes::new()).boxed());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(p) = protocol
        && let Ok(v) = HeaderValue::from_str(p)
    {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
    }
    Ok(r)
}

async fn upgraded_websocket(
    on_upgrade: hyper::upgrade::OnUpgrade,
) -> Option<WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>> {
    match on_upgrade.await {
        Ok(up) => {
            Some(WebSocketStream::from_raw_socket(TokioIo::new(up), Role::Server, None).await)
        }
        Err(e) => {
            tracing::debug!("kubelet streaming server: upgrade: {e}");
            None
        }
    }
}

async fn exec_or_attach(
    state: &State,
    mut req: http::Request<Incoming>,
    ns: &str,
    pod: &str,
    container: &str,
    attach: bool,
) -> http::Response<Body> {
    let mut command = Vec::new();
    let mut opts = StreamOptions::default();
    for (k, v) in url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "command" => command.push(v.into_owned()),
            "stdin" | "input" => opts.stdin = query_flag(&v),
            "stdout" | "output" => opts.stdout = query_flag(&v),
            "stderr" | "error" => opts.stderr = query_flag(&v),
            "tty" => opts.tty = query_flag(&v),
            _ => {}
        }
    }
    if !opts.stdin && !opts.stdout && !opts.stderr {
        return text(
            StatusCode::BAD_REQUEST,
            "you must specify at least 1 of stdin, stdout, stderr",
        );
    }
    if !attach && command.is_empty() {
        return text(
            StatusCode::BAD_REQUEST,
            "you must specify at least one command for the container",
        );
    }
    if opts.tty {
        // The terminal carries both outputs.
        opts.stderr = false;
    }
    if !is_websocket(&req) {
        return text(
            StatusCode::BAD_REQUEST,
            "this kubelet serves exec and attach over WebSocket (v5.channel.k8s.io … channel.k8s.io) only",
        );
    }
    let protocol =
        match channel::Protocol::negotiate(offered_protocols(&req).iter().map(String::as_str)) {
            Ok(p) => p,
            Err(e) => return text(StatusCode::BAD_REQUEST, e),
        };
    let target = match state.pods.resolve(ns, pod, container).await {
        Ok(t) => t,
        Err(e) => return resolve_error(e, ns, pod),
    };
    let Some(container_id) = target.container_id.clone() else {
        return text(
            StatusCode::BAD_REQUEST,
            format!("container not found ({container:?})"),
        );
    };
    let resp = match websocket_accept(&req, protocol.map(channel::Protocol::name)) {
        Ok(r) => r,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let runtime = state.runtime.clone();
    let protocol = protocol.unwrap_or(channel::Protocol::V1);
    tokio::spawn(async move {
        let Some(ws) = upgraded_websocket(on_upgrade).await else {
            return;
        };
        let (session, report) = if attach {
            (
                runtime.attach(&container_id, &opts).await,
                exec::Report::StreamEnd,
            )
        } else {
            (
                runtime.exec(&container_id, &command, &opts).await,
                exec::Report::ExitCode(command),
            )
        };
        exec::run(ws, protocol, session.map_err(|e| e.to_string()), report).await;
    });
    resp
}

/// WebSocket subprotocol of SPDY tunnelled in WebSocket binary messages.
pub const SPDY_TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
/// The port-forward protocol name (`X-Stream-Protocol-Version`).
pub const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";

async fn port_forward(
    state: &State,
    mut req: http::Request<Incoming>,
    ns: &str,
    pod: &str,
) -> http::Response<Body> {
    let target = match state.pods.resolve(ns, pod, "").await {
        Ok(t) => t,
        Err(e) => return resolve_error(e, ns, pod),
    };
    let fwd = portforward::ForwardTarget {
        runtime: state.runtime.clone(),
        sandbox_id: target.sandbox_id.clone(),
        pod: format!("{ns}/{pod}"),
        uid: target.pod_uid.clone(),
    };
    if is_websocket(&req) {
        if !offered_protocols(&req)
            .iter()
            .any(|p| p == SPDY_TUNNEL_PROTOCOL)
        {
            return text(
                StatusCode::BAD_REQUEST,
                format!("port-forward over WebSocket needs the {SPDY_TUNNEL_PROTOCOL} subprotocol"),
            );
        }
        let resp = match websocket_accept(&req, Some(SPDY_TUNNEL_PROTOCOL)) {
            Ok(r) => r,
            Err(e) => return text(StatusCode::BAD_REQUEST, e),
        };
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Some(ws) = upgraded_websocket(on_upgrade).await {
                portforward::serve_session(websocket_bytes(ws), fwd).await;
            }
        });
        return resp;
    }
    let spdy = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("SPDY/3.1"));
    if !spdy {
        return text(
            StatusCode::BAD_REQUEST,
            "port-forward needs an Upgrade to SPDY/3.1 or a WebSocket with SPDY/3.1+portforward.k8s.io",
        );
    }
    let offered: Vec<String> = req
        .headers()
        .get_all("X-Stream-Protocol-Version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .collect();
    if !offered.is_empty() && !offered.iter().any(|p| p == PORT_FORWARD_PROTOCOL) {
        return text(
            StatusCode::FORBIDDEN,
            format!(
                "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports [\"{PORT_FORWARD_PROTOCOL}\"]"
            ),
        );
    }
    let mut resp = http::Response::new(Full::new(Bytes::new()).boxed());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    h.insert(
        "X-Stream-Protocol-Version",
        HeaderValue::from_static(PORT_FORWARD_PROTOCOL),
    );
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(up) => portforward::serve_session(TokioIo::new(up), fwd).await,
            Err(e) => tracing::debug!("kubelet streaming server: SPDY upgrade: {e}"),
        }
    });
    resp
}

/// Turns a WebSocket into a byte stream: binary messages in, one message per write out (as
/// client-go's tunnelling connection does).
fn websocket_bytes<S>(ws: WebSocketStream<S>) -> tokio::io::DuplexStream
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let (mut rd, mut wr) = tokio::io::split(ours);
    let (mut sink, mut stream) = ws.split();
    tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            match msg {
                Message::Binary(d) if wr.write_all(&d).await.is_err() => break,
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = wr.shutdown().await;
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sink
                        .send(Message::Binary(Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
        let _ = sink.send(Message::Close(None)).await;
        let _ = sink.close().await;
    });
    theirs
}
