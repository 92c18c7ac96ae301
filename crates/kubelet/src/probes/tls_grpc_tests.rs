//! HTTPS and gRPC probes against real servers on loopback, reached through the fake
//! runtime's `port_forward` (which connects to a local address).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::{Container, GRPCAction, HTTPGetAction};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::pods::fake::FakeRuntime;

/// Aborts the server task when the test ends, pass or fail.
struct Server {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    /// Requests (head only) the HTTPS server saw.
    seen: Arc<Mutex<Vec<String>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A target whose pod port `port` leads to `addr` on loopback.
fn target(port: u16, addr: Option<SocketAddr>) -> Target {
    let rt = Arc::new(FakeRuntime::default());
    if let Some(a) = addr {
        rt.ports.lock().unwrap().insert(port, a);
    }
    Target {
        runtime: rt,
        sandbox_id: "sb".into(),
        container_id: "c".into(),
        pod_ip: "127.0.0.1".into(),
    }
}

fn container() -> Container {
    serde_json::from_value(json!({"name": "web"})).unwrap()
}

/// An HTTPS server with a fresh self-signed certificate: `/ok` answers 200, anything else 500.
async fn https_server() -> Server {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["pod.invalid".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(rkube_tls::ring_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], der)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let seen = seen2.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(s).await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 512];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).into_owned();
                let code = if head.starts_with("GET /ok ") {
                    "200 OK"
                } else {
                    "500 Internal Server Error"
                };
                seen.lock().unwrap().push(head);
                let resp =
                    format!("HTTP/1.1 {code}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    Server { addr, task, seen }
}

fn https_action(port: u16, path: &str) -> HTTPGetAction {
    serde_json::from_value(json!({"port": port, "path": path, "scheme": "HTTPS",
        "httpHeaders": [{"name": "Host", "value": "web.example"}]}))
    .unwrap()
}

#[tokio::test]
async fn https_probe_skips_verification_and_checks_the_status() {
    let srv = https_server().await;
    let t = target(8443, Some(srv.addr));
    let ok = run_http(
        &t,
        &https_action(8443, "/ok"),
        &container(),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(ok, Outcome::Success);
    let bad = run_http(
        &t,
        &https_action(8443, "/bad"),
        &container(),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        bad,
        Outcome::Failure("HTTP probe failed with statuscode: 500".into())
    );
    let seen = srv.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen[0].contains("\r\nHost: web.example\r\n"), "{}", seen[0]);
    assert!(
        seen[0].contains("\r\nUser-Agent: kube-probe/1.35\r\n"),
        "{}",
        seen[0]
    );
}

#[tokio::test]
async fn https_probe_against_a_plain_http_server_fails_with_the_url() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .await;
        }
    });
    let _srv = Server {
        addr,
        task,
        seen: Arc::default(),
    };
    let t = target(8443, Some(addr));
    let out = run_http(
        &t,
        &https_action(8443, "/ok"),
        &container(),
        Duration::from_secs(5),
    )
    .await;
    let Outcome::Failure(msg) = out else {
        panic!("an HTTP server must not pass an HTTPS probe")
    };
    assert!(
        msg.starts_with("Get \"https://127.0.0.1:8443/ok\": "),
        "{msg}"
    );
}

type GrpcBody =
    StreamBody<futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

/// Answers Health/Check: "" → SERVING, "sick" → NOT_SERVING, "weird" → status 7,
/// "unimpl" → UNIMPLEMENTED (trailers-only), others → NOT_FOUND "unknown service".
async fn health(req: Request<Incoming>) -> Result<Response<GrpcBody>, Infallible> {
    assert_eq!(req.uri().path(), "/grpc.health.v1.Health/Check");
    assert_eq!(req.headers()["content-type"], "application/grpc");
    assert_eq!(req.headers()["te"], "trailers");
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let msg = grpc_unframe(&body).unwrap();
    let mut m = msg;
    let mut service = String::new();
    while !m.is_empty() {
        let key = take_varint(&mut m).unwrap();
        assert_eq!(key, 0x0a, "only field 1 (string) is sent");
        let n = take_varint(&mut m).unwrap() as usize;
        service = String::from_utf8(m[..n].to_vec()).unwrap();
        m = &m[n..];
    }
    let trailers = |code: &str, msg: &str| {
        let mut t = HeaderMap::new();
        t.insert("grpc-status", HeaderValue::from_str(code).unwrap());
        if !msg.is_empty() {
            t.insert("grpc-message", HeaderValue::from_str(msg).unwrap());
        }
        t
    };
    let status = match service.as_str() {
        "" => Some(1u8),
        "sick" => Some(2),
        "weird" => Some(7),
        _ => None,
    };
    let frames = match (status, service.as_str()) {
        (Some(s), _) => vec![
            Ok(Frame::data(Bytes::from(grpc_frame(&[0x08, s])))),
            Ok(Frame::trailers(trailers("0", ""))),
        ],
        (None, "unimpl") => {
            let mut resp = Response::new(StreamBody::new(futures::stream::iter(vec![])));
            resp.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/grpc"));
            resp.headers_mut()
                .extend(trailers("12", "unknown service grpc.health.v1.Health"));
            return Ok(resp);
        }
        (None, _) => vec![Ok(Frame::trailers(trailers("5", "unknown%20service")))],
    };
    let mut resp = Response::new(StreamBody::new(futures::stream::iter(frames)));
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    Ok(resp)
}

async fn grpc_server() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), hyper::service::service_fn(health))
                    .await;
            });
        }
    });
    Server {
        addr,
        task,
        seen: Arc::default(),
    }
}

fn grpc(port: i32, service: Option<&str>) -> GRPCAction {
    GRPCAction {
        port,
        service: service.map(String::from),
    }
}

#[tokio::test]
async fn grpc_probe_reports_the_health_status() {
    let srv = grpc_server().await;
    let t = target(9090, Some(srv.addr));
    let s = Duration::from_secs(5);
    assert_eq!(run_grpc(&t, &grpc(9090, None), s).await, Outcome::Success);
    assert_eq!(
        run_grpc(&t, &grpc(9090, Some("")), s).await,
        Outcome::Success
    );
    assert_eq!(
        run_grpc(&t, &grpc(9090, Some("sick")), s).await,
        Outcome::Failure("service unhealthy (responded with \"NOT_SERVING\")".into())
    );
    assert_eq!(
        run_grpc(&t, &grpc(9090, Some("weird")), s).await,
        Outcome::Failure("service unhealthy (responded with \"7\")".into())
    );
    assert_eq!(
        run_grpc(&t, &grpc(9090, Some("other")), s).await,
        Outcome::Failure(
            "error: health rpc probe failed: rpc error: code = NotFound desc = unknown service"
                .into()
        )
    );
    assert_eq!(
        run_grpc(&t, &grpc(9090, Some("unimpl")), s).await,
        Outcome::Failure(
            "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): unknown service grpc.health.v1.Health".into()
        )
    );
}

#[tokio::test]
async fn grpc_probe_through_run_probe() {
    let srv = grpc_server().await;
    let t = target(9090, Some(srv.addr));
    let probe: Probe = serde_json::from_value(json!({"grpc": {"port": 9090}})).unwrap();
    assert_eq!(run_probe(&t, &probe, &container()).await, Outcome::Success);
}

#[tokio::test]
async fn grpc_probe_that_cannot_connect_times_out_as_upstream() {
    // Nothing listens: every attempt is refused until the deadline.
    let t = target(9090, None);
    let start = Instant::now();
    let out = run_grpc(&t, &grpc(9090, None), Duration::from_secs(1)).await;
    assert_eq!(
        out,
        Outcome::Failure(
            "timeout: failed to connect service \"127.0.0.1:9090\" within 1s: context deadline exceeded"
                .into()
        )
    );
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[tokio::test]
async fn grpc_probe_against_an_http1_server_fails() {
    // An HTTP/1 server answers the HTTP/2 preface with garbage: the handshake never succeeds.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        }
    });
    let _srv = Server {
        addr,
        task,
        seen: Arc::default(),
    };
    let t = target(9090, Some(addr));
    let out = run_grpc(&t, &grpc(9090, None), Duration::from_secs(1)).await;
    let Outcome::Failure(msg) = out else {
        panic!("an HTTP/1 server must not pass a gRPC probe")
    };
    assert!(
        msg.starts_with("timeout: failed to connect service")
            || msg.starts_with("error: health rpc probe failed"),
        "{msg}"
    );
}

#[test]
fn protobuf_and_framing() {
    assert_eq!(health_check_request(""), Vec::<u8>::new());
    assert_eq!(health_check_request("db"), vec![0x0a, 2, b'd', b'b']);
    let long = "x".repeat(200);
    let enc = health_check_request(&long);
    assert_eq!(&enc[..3], &[0x0a, 0xc8, 0x01]);
    // Unknown fields of every wire type are skipped; status is field 1.
    let resp = [0x10, 5, 0x1a, 1, b'z', 0x25, 0, 0, 0, 0, 0x08, 2];
    assert_eq!(health_check_response_status(&resp), Ok(2));
    assert_eq!(health_check_response_status(&[]), Ok(0));
    assert!(health_check_response_status(&[0x08]).is_err());
    assert!(health_check_response_status(&[0x1a, 9, 1]).is_err());
    let f = grpc_frame(&[0x08, 1]);
    assert_eq!(f, vec![0, 0, 0, 0, 2, 0x08, 1]);
    assert_eq!(grpc_unframe(&f), Ok(&[0x08u8, 1][..]));
    assert!(grpc_unframe(&[0, 0, 0, 0, 9, 1]).is_err());
    assert!(grpc_unframe(&[1, 0, 0, 0, 0]).is_err());
}

#[test]
fn go_names_and_durations() {
    assert_eq!(go_duration(Duration::from_secs(1)), "1s");
    assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
    assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
    assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
    assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
    assert_eq!(grpc_code_name(5), "NotFound");
    assert_eq!(grpc_code_name(99), "Code(99)");
    assert_eq!(health_status_name(3), "SERVICE_UNKNOWN");
    assert_eq!(percent_decode(b"a%20b%zz%"), "a b%zz%");
    assert_eq!(join_host_port("fd00::1", 80), "[fd00::1]:80");
}
