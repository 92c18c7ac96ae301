//! The connect subresources of pods: `pods/log`, `pods/exec`, `pods/attach` and
//! `pods/portforward`, proxied to the kubelet of the pod's node.
//!
//! Logs are a streaming GET to the kubelet's `/containerLogs/...`; exec, attach and
//! port-forward forward the client's HTTP Upgrade (WebSocket, or plain SPDY/3.1) to the
//! kubelet's `/exec/...`, `/attach/...`, `/portForward/...` and, once the kubelet answers
//! `101 Switching Protocols`, answer the client with the same headers and copy bytes both
//! ways: the apiserver does not look inside the streams.
//!
//! The apiserver authenticates to kubelets with a client certificate signed by the cluster CA
//! ([`ApiServer::set_kubelet_client`]). Kubelets serve self-signed certificates, which are
//! not verified, as k3s's and kubeadm's defaults (`--kubelet-certificate-authority` unset)
//! and `--kubelet-insecure-tls` do.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper_util::rt::TokioIo;
use rkube_core::status::ApiError;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;

use super::Ctx;
use crate::ApiServer;
use crate::response::{Response, raw};

/// Default kubelet port when the Node does not report one.
const KUBELET_PORT: u16 = 10250;
/// How long dialling a kubelet may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest kubelet error body read.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The TLS client configuration the apiserver presents to kubelets.
pub struct KubeletClient {
    tls: Arc<rustls::ClientConfig>,
}

impl ApiServer {
    /// Sets the client certificate (signed by the cluster CA, in group `system:masters`) the
    /// apiserver presents to kubelets for logs, exec, attach and port-forward. Call once at
    /// start-up; later calls are ignored.
    pub fn set_kubelet_client(&self, pki: &crate::pki::Pki) -> Result<(), String> {
        let (cert, key) = pki
            .issue_client_cert("kube-apiserver-kubelet-client", Some("system:masters"))
            .map_err(|e| e.to_string())?;
        self.set_kubelet_client_pem(&cert, &key)
    }

    /// [`ApiServer::set_kubelet_client`] with an explicit certificate and key (PEM).
    pub fn set_kubelet_client_pem(&self, cert_pem: &str, key_pem: &str) -> Result<(), String> {
        let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("kubelet client certificate: {e}"))?;
        let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_bytes())
            .map_err(|e| format!("kubelet client key: {e}"))?
            .ok_or("kubelet client key: no private key in the PEM")?;
        // Kubelet serving certificates are self-signed: not verified (signatures still are).
        let mut cfg = rkube_tls::insecure_client_builder()
            .map_err(|e| format!("kubelet client TLS setup: {e}"))?
            .with_client_auth_cert(certs, key)
            .map_err(|e| format!("kubelet client certificate: {e}"))?;
        // Upgrades need HTTP/1.1.
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let _ = self
            .kubelet_client
            .set(KubeletClient { tls: Arc::new(cfg) });
        Ok(())
    }
}

/// All container names of a pod (init, regular, ephemeral), as upstream lists them.
fn container_names(pod: &Value) -> Vec<String> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| {
            pod["spec"][k]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
        })
        .collect()
}

/// Picks the container: `container` if given (it must exist), else the
/// `kubectl.kubernetes.io/default-container` annotation, else the only container.
fn pick_container(pod: &Value, name: &str, container: Option<&str>) -> Result<String, ApiError> {
    let all = container_names(pod);
    if let Some(c) = container.filter(|c| !c.is_empty()) {
        if all.iter().any(|n| n == c) {
            return Ok(c.to_string());
        }
        return Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {name}"
        )));
    }
    if let Some(d) = pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"]
        .as_str()
        .filter(|d| all.iter().any(|n| n == d))
    {
        return Ok(d.to_string());
    }
    let regular: Vec<&str> = pod["spec"]["containers"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    match regular.as_slice() {
        [only] => Ok(only.to_string()),
        [] => Err(ApiError::bad_request(format!(
            "the pod {name} does not have a container"
        ))),
        _ => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            all.join(" ")
        ))),
    }
}

/// The kubelet's own check before serving logs (upstream `validateContainerLogStatus`), done
/// here from the pod's status so the answer does not depend on the kubelet being reachable.
fn check_log_status(
    pod: &Value,
    pod_name: &str,
    container: &str,
    previous: bool,
) -> Result<(), ApiError> {
    let statuses = [
        "containerStatuses",
        "initContainerStatuses",
        "ephemeralContainerStatuses",
    ]
    .iter()
    .flat_map(|k| pod["status"][k].as_array().cloned().unwrap_or_default())
    .find(|s| s["name"].as_str() == Some(container));
    let Some(s) = statuses else {
        return Err(ApiError::bad_request(format!(
            "container {container:?} in pod {pod_name:?} is waiting to start: ContainerCreating"
        )));
    };
    let state = &s["state"];
    let last_terminated = s["lastState"]["terminated"].is_object();
    if previous {
        if !last_terminated {
            return Err(ApiError::bad_request(format!(
                "previous terminated container {container:?} in pod {pod_name:?} not found"
            )));
        }
        return Ok(());
    }
    if state["running"].is_object() || state["terminated"].is_object() || last_terminated {
        return Ok(());
    }
    if state["waiting"].is_object() {
        let reason = match state["waiting"]["reason"].as_str().unwrap_or("") {
            "ErrImagePull" => "image can't be pulled".to_string(),
            "ImagePullBackOff" => "trying and failing to pull image".to_string(),
            "" => "ContainerCreating".to_string(),
            r => r.to_string(),
        };
        return Err(ApiError::bad_request(format!(
            "container {container:?} in pod {pod_name:?} is waiting to start: {reason}"
        )));
    }
    Ok(())
}

/// The kubelet's address of `node`: its InternalIP (else ExternalIP, else Hostname) and the
/// reported kubelet port.
async fn kubelet_address(ctx: &Ctx<'_>, node: &str) -> Result<String, ApiError> {
    let rt = ctx
        .srv
        .registry
        .read()
        .expect("registry lock")
        .lookup("", "v1", "nodes")
        .cloned()
        .ok_or_else(|| ApiError::internal("nodes are not served"))?;
    let obj = match ctx.srv.store.get(&rt.key(None, node)).await {
        Ok(Some(kv)) => crate::codec::decode(&kv.value, kv.mod_revision),
        Ok(None) => return Err(ApiError::not_found("", "nodes", node)),
        Err(e) => return Err(ApiError::internal(e)),
    };
    let addresses = obj["status"]["addresses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ip = ["InternalIP", "ExternalIP", "Hostname"]
        .iter()
        .find_map(|t| {
            addresses
                .iter()
                .find(|a| a["type"].as_str() == Some(t))
                .and_then(|a| a["address"].as_str())
                .filter(|a| !a.is_empty())
                .map(str::to_string)
        });
    let Some(ip) = ip else {
        return Err(ApiError::internal(format!(
            "no preferred addresses found for node {node}; known addresses: {}",
            Value::Array(addresses)
        )));
    };
    let port = obj["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .filter(|p| *p > 0 && *p <= u64::from(u16::MAX))
        .map_or(KUBELET_PORT, |p| p as u16);
    Ok(if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    })
}

/// The query string without `container` (the kubelet takes it in the path).
fn forwarded_query(raw: Option<&str>) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if k != "container" {
            out.append_pair(&k, &v);
        }
    }
    out.finish()
}

fn seg(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

type KubeletSender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

/// Dials the kubelet at `addr` over TLS and returns an HTTP/1.1 sender (its connection task,
/// upgrades included, runs on its own).
async fn dial(srv: &ApiServer, addr: &str, url: &str) -> Result<KubeletSender, ApiError> {
    let client = srv.kubelet_client.get().ok_or_else(|| {
        ApiError::internal(
            "the apiserver has no kubelet client certificate (ApiServer::set_kubelet_client was not called)",
        )
    })?;
    let fail = |what: String| ApiError::new(500, "InternalError", format!("Get {url:?}: {what}"));
    let tcp = match tokio::time::timeout(DIAL_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let why = if e.kind() == std::io::ErrorKind::ConnectionRefused {
                "connect: connection refused".to_string()
            } else {
                e.to_string()
            };
            return Err(fail(format!("dial tcp {addr}: {why}")));
        }
        Err(_) => return Err(fail(format!("dial tcp {addr}: i/o timeout"))),
    };
    let _ = tcp.set_nodelay(true);
    let host = addr
        .rsplit_once(':')
        .map_or(addr, |(h, _)| h)
        .trim_matches(|c| c == '[' || c == ']');
    let name = ServerName::try_from(host.to_string())
        .unwrap_or_else(|_| ServerName::try_from("kubelet").expect("static name is valid"));
    let tls = tokio_rustls::TlsConnector::from(client.tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| fail(format!("remote error: tls: {e}")))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| fail(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!("kubelet connection: {e}");
        }
    });
    Ok(sender)
}

/// Turns a kubelet error response into the Status the client sees (upstream's generic
/// response checker: the body is the message).
async fn kubelet_error(resp: http::Response<hyper::body::Incoming>) -> ApiError {
    let code = resp.status().as_u16();
    let body = http_body_util::Limited::new(resp.into_body(), MAX_ERROR_BODY)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim().to_string();
    let reason = match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        _ => "InternalError",
    };
    let text = if text.is_empty() {
        format!("the kubelet answered {code}")
    } else {
        text
    };
    ApiError::new(code, reason, text)
}

/// The pod, its node and the chosen container.
async fn prepare(
    ctx: &Ctx<'_>,
    needs_container: bool,
) -> Result<(Value, Option<String>, String), ApiError> {
    let (pod, _) = super::load(ctx).await?;
    let name = ctx.name().to_string();
    let container = if needs_container {
        pick_container(&pod, &name, ctx.query.get("container"))?
    } else {
        String::new()
    };
    let node = pod["spec"]["nodeName"]
        .as_str()
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    Ok((pod, node, container))
}

/// `GET pods/{name}/log`.
pub(crate) async fn log(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    if ctx.query.get("sinceSeconds").is_some() && ctx.query.get("sinceTime").is_some() {
        return Err(ApiError::bad_request(
            "at most one of `sinceTime` or `sinceSeconds` may be specified",
        ));
    }
    let (pod, node, container) = prepare(ctx, true).await?;
    let Some(node) = node else {
        // Upstream answers an empty log for a pod not yet scheduled.
        return Ok(raw(200, "text/plain", Bytes::new()));
    };
    let name = ctx.name().to_string();
    check_log_status(&pod, &name, &container, ctx.query.flag("previous"))?;
    let ns = ctx.namespace().unwrap_or_default().to_string();
    let addr = kubelet_address(ctx, &node).await?;
    let query = forwarded_query(ctx.req.uri().query());
    let path = format!(
        "/containerLogs/{}/{}/{}{}{}",
        seg(&ns),
        seg(&name),
        seg(&container),
        if query.is_empty() { "" } else { "?" },
        query
    );
    let url = format!("https://{addr}{path}");
    let mut sender = dial(ctx.srv, &addr, &url).await?;
    let req = http::Request::get(&path)
        .header(header::HOST, &addr)
        .body(Empty::new())
        .map_err(ApiError::internal)?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| ApiError::new(500, "InternalError", format!("Get {url:?}: {e}")))?;
    if resp.status() != StatusCode::OK {
        return Err(kubelet_error(resp).await);
    }
    // Stream the kubelet's body through; a broken kubelet connection ends the log.
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let mut body = resp.into_body();
    tokio::spawn(async move {
        let _keep = sender;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { break };
            if let Ok(data) = frame.into_data()
                && tx.send(data).await.is_err()
            {
                break;
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| {
            (
                Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(b)),
                rx,
            )
        })
    });
    let mut r = http::Response::new(BodyExt::boxed(StreamBody::new(stream)));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(r)
}

/// Request headers passed on to the kubelet for an upgrade.
const FORWARDED_HEADERS: &[&str] = &[
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "x-stream-protocol-version",
    "user-agent",
];

/// `pods/{name}/exec`, `pods/{name}/attach`, `pods/{name}/portforward`.
pub(crate) async fn connect(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let sub = ctx.info.subresource.as_str();
    let (_pod, node, container) = prepare(ctx, sub != "portforward").await?;
    let name = ctx.name().to_string();
    let Some(node) = node else {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    };
    let ns = ctx.namespace().unwrap_or_default().to_string();
    let addr = kubelet_address(ctx, &node).await?;
    let query = forwarded_query(ctx.req.uri().query());
    let path = match sub {
        "portforward" => format!("/portForward/{}/{}", seg(&ns), seg(&name)),
        verb => format!("/{verb}/{}/{}/{}", seg(&ns), seg(&name), seg(&container)),
    };
    let path = if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    };
    let url = format!("https://{addr}{path}");
    let Some(client_upgrade) = ctx
        .req
        .extensions()
        .get::<hyper::upgrade::OnUpgrade>()
        .cloned()
    else {
        return Err(ApiError::bad_request(format!(
            "{sub} needs a connection upgrade (WebSocket or SPDY/3.1)"
        )));
    };
    let mut sender = dial(ctx.srv, &addr, &url).await?;
    let mut req = http::Request::builder()
        .method(ctx.req.method())
        .uri(&path)
        .header(header::HOST, &addr);
    for name in FORWARDED_HEADERS {
        for v in ctx.req.headers().get_all(*name) {
            req = req.header(*name, v);
        }
    }
    let req = req.body(Empty::new()).map_err(ApiError::internal)?;
    let mut resp = sender.send_request(req).await.map_err(|e| {
        ApiError::new(
            500,
            "InternalError",
            format!("error dialing backend: {url}: {e}"),
        )
    })?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(kubelet_error(resp).await);
    }
    let mut out = http::Response::new(crate::response::full(Bytes::new()));
    *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for (k, v) in resp.headers() {
        out.headers_mut().append(k, v.clone());
    }
    let kubelet_upgrade = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        let _keep = sender;
        let (client, kubelet) = match tokio::join!(client_upgrade, kubelet_upgrade) {
            (Ok(c), Ok(k)) => (c, k),
            (c, k) => {
                tracing::debug!(
                    "connect upgrade failed: client {:?}, kubelet {:?}",
                    c.err(),
                    k.err()
                );
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut kubelet = TokioIo::new(kubelet);
        let _ = tokio::io::copy_bidirectional(&mut client, &mut kubelet).await;
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(containers: &[&str]) -> Value {
        json!({
            "metadata": {"name": "web"},
            "spec": {"containers": containers.iter().map(|c| json!({"name": c})).collect::<Vec<_>>()},
        })
    }

    #[test]
    fn container_choice() {
        assert_eq!(pick_container(&pod(&["a"]), "web", None).unwrap(), "a");
        assert_eq!(
            pick_container(&pod(&["a", "b"]), "web", None)
                .unwrap_err()
                .message,
            "a container name must be specified for pod web, choose one of: [a b]"
        );
        assert_eq!(
            pick_container(&pod(&["a"]), "web", Some("nope"))
                .unwrap_err()
                .message,
            "container nope is not valid for pod web"
        );
        let mut p = pod(&["a", "b"]);
        p["metadata"]["annotations"] = json!({"kubectl.kubernetes.io/default-container": "b"});
        assert_eq!(pick_container(&p, "web", None).unwrap(), "b");
    }

    #[test]
    fn log_status_checks() {
        let mut p = pod(&["a"]);
        assert!(
            check_log_status(&p, "web", "a", false)
                .unwrap_err()
                .message
                .contains("is waiting to start: ContainerCreating")
        );
        p["status"] = json!({"containerStatuses": [{"name": "a", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]});
        assert_eq!(
            check_log_status(&p, "web", "a", false).unwrap_err().message,
            "container \"a\" in pod \"web\" is waiting to start: trying and failing to pull image"
        );
        assert_eq!(
            check_log_status(&p, "web", "a", true).unwrap_err().message,
            "previous terminated container \"a\" in pod \"web\" not found"
        );
        p["status"] = json!({"containerStatuses": [{"name": "a", "state": {"running": {}}}]});
        assert!(check_log_status(&p, "web", "a", false).is_ok());
    }

    #[test]
    fn query_drops_container() {
        assert_eq!(
            forwarded_query(Some("container=a&command=sh&command=-c&stdin=true")),
            "command=sh&command=-c&stdin=true"
        );
    }
}
