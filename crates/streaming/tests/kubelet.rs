//! The streaming server driven by real clients: HTTP for logs, tungstenite for the channel
//! protocols, and a SPDY client (this crate's framing) over WebSocket and plain upgrades.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rkube_streaming::spdy::{FLAG_FIN, Frame, FrameDecoder, FrameEncoder, header};
use support::Kubelet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

async fn get(k: &Kubelet, path: &str, with_cert: bool) -> (u16, String) {
    let tls = k.connect(with_cert).await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", "node-a")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let code = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (code, String::from_utf8_lossy(&body).into_owned())
}

fn write_log(k: &Kubelet, name: &str, lines: &[&str]) {
    let mut s = lines.join("\n");
    s.push('\n');
    std::fs::write(k.log_dir.join("app").join(name), s).unwrap();
}

#[tokio::test]
async fn healthz_is_public_and_the_rest_needs_a_client_certificate() {
    let k = Kubelet::start().await;
    assert_eq!(get(&k, "/healthz", false).await, (200, "ok\n".into()));
    let (code, _) = get(&k, "/containerLogs/default/web/app", false).await;
    assert_eq!(code, 401);
    let (code, body) = get(&k, "/containerLogs/default/nope/app", true).await;
    assert_eq!(code, 404, "{body}");
    let (code, body) = get(&k, "/containerLogs/default/web/app?previous=true", true).await;
    assert_eq!(code, 400);
    assert_eq!(
        body.trim(),
        "previous terminated container \"app\" in pod \"web\" not found"
    );
}

#[tokio::test]
async fn logs_with_options_and_follow_until_exit() {
    let k = Kubelet::start().await;
    write_log(
        &k,
        "0.log",
        &[
            "2026-11-22T03:50:01.123456789Z stdout F one",
            "2026-11-22T03:50:02Z stderr P tw",
            "2026-11-22T03:50:02.5Z stderr F o",
        ],
    );
    let (code, body) = get(&k, "/containerLogs/default/web/app", true).await;
    assert_eq!((code, body.as_str()), (200, "one\ntwo\n"));
    let (_, body) = get(
        &k,
        "/containerLogs/default/web/app?timestamps=true&tailLines=1",
        true,
    )
    .await;
    assert_eq!(body, "2026-11-22T03:50:02Z two\n");
    let (_, body) = get(&k, "/containerLogs/default/web/app?limitBytes=2", true).await;
    assert_eq!(body, "on");

    // follow: a line appended later arrives, and the stream ends once the container exits.
    let path = k.log_dir.join("app/0.log");
    let rt = k.runtime.clone();
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, b"2026-11-22T03:50:03Z stdout F three\n").unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        rt.exited.store(true, Ordering::SeqCst);
    });
    let (_, body) = tokio::time::timeout(
        Duration::from_secs(10),
        get(&k, "/containerLogs/default/web/app?follow=true", true),
    )
    .await
    .expect("follow ends when the container exits");
    writer.await.unwrap();
    assert_eq!(body, "one\ntwo\nthree\n");
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

async fn websocket(k: &Kubelet, path: &str, protocol: &str) -> (Ws, Option<String>) {
    let tls = k.connect(true).await;
    let mut req = format!("wss://127.0.0.1:{}{path}", k.port)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
    let (ws, resp) = tokio_tungstenite::client_async(req, tls).await.unwrap();
    let proto = resp
        .headers()
        .get("Sec-WebSocket-Protocol")
        .map(|v| v.to_str().unwrap().to_string());
    (ws, proto)
}

/// Collects channel output until the server closes: (stdout, stderr, error channel).
async fn collect(ws: &mut Ws) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let (mut out, mut err, mut status) = (Vec::new(), Vec::new(), Vec::new());
    while let Some(m) = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("server answers")
    {
        match m.unwrap() {
            Message::Binary(d) if !d.is_empty() => match d[0] {
                1 => out.extend_from_slice(&d[1..]),
                2 => err.extend_from_slice(&d[1..]),
                3 => status.extend_from_slice(&d[1..]),
                _ => {}
            },
            Message::Close(_) => break,
            _ => {}
        }
    }
    (out, err, status)
}

#[tokio::test]
async fn exec_v5_streams_binary_stdin_to_eof() {
    let k = Kubelet::start().await;
    let (ws, proto) = websocket(
        &k,
        "/exec/default/web/app?command=cat&stdin=true&stdout=true&stderr=true",
        "v4.channel.k8s.io, v5.channel.k8s.io",
    )
    .await;
    assert_eq!(proto.as_deref(), Some("v5.channel.k8s.io"));
    // 3 MiB of every byte value, in uneven chunks, then the v5 close of stdin (tar-like).
    let data: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i * 7 % 256) as u8).collect();
    let (mut sink, mut stream) = ws.split();
    let sent = data.clone();
    let send = tokio::spawn(async move {
        for chunk in sent.chunks(100_003) {
            let mut m = vec![0u8];
            m.extend_from_slice(chunk);
            sink.send(Message::Binary(m.into())).await.unwrap();
        }
        sink.send(Message::Binary(vec![255u8, 0].into()))
            .await
            .unwrap();
        sink
    });
    let mut out = Vec::new();
    let mut status = Vec::new();
    while let Some(m) = stream.next().await {
        match m.unwrap() {
            Message::Binary(d) if d[0] == 1 => out.extend_from_slice(&d[1..]),
            Message::Binary(d) if d[0] == 3 => status.extend_from_slice(&d[1..]),
            Message::Close(_) => break,
            _ => {}
        }
    }
    let _ = send.await.unwrap();
    assert!(
        out == data,
        "stdout differs ({} of {} bytes)",
        out.len(),
        data.len()
    );
    assert_eq!(status, br#"{"metadata":{},"status":"Success"}"#);
}

#[tokio::test]
async fn exec_reports_exit_codes_stderr_and_start_failures() {
    let k = Kubelet::start().await;
    let (mut ws, _) = websocket(
        &k,
        "/exec/default/web/app?command=exit&command=3&stdout=true&stderr=true",
        "v5.channel.k8s.io",
    )
    .await;
    let (_, _, status) = collect(&mut ws).await;
    let v: serde_json::Value = serde_json::from_slice(&status).unwrap();
    assert_eq!(v["reason"], "NonZeroExitCode");
    assert_eq!(v["details"]["causes"][0]["reason"], "ExitCode");
    assert_eq!(v["details"]["causes"][0]["message"], "3");
    assert_eq!(
        v["message"],
        "command terminated with non-zero exit code: error executing command [exit 3], exit code 3"
    );

    let (mut ws, _) = websocket(
        &k,
        "/exec/default/web/app?command=stderr&command=oops&stdout=true&stderr=true",
        "v4.channel.k8s.io",
    )
    .await;
    let (out, err, status) = collect(&mut ws).await;
    assert_eq!((out.as_slice(), err.as_slice()), (&b""[..], &b"oops"[..]));
    assert_eq!(status, br#"{"metadata":{},"status":"Success"}"#);

    let (mut ws, _) = websocket(
        &k,
        "/exec/default/web/app?command=missing&stdout=true",
        "v5.channel.k8s.io",
    )
    .await;
    let (_, _, status) = collect(&mut ws).await;
    let v: serde_json::Value = serde_json::from_slice(&status).unwrap();
    assert_eq!(v["status"], "Failure");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("executable file not found")
    );

    // v1 has plain-text errors.
    let (mut ws, proto) = websocket(
        &k,
        "/exec/default/web/app?command=exit&command=2&stdout=true",
        "channel.k8s.io",
    )
    .await;
    assert_eq!(proto.as_deref(), Some("channel.k8s.io"));
    let (_, _, status) = collect(&mut ws).await;
    assert!(String::from_utf8(status).unwrap().ends_with("exit code 2"));
}

#[tokio::test]
async fn exec_tty_gets_resizes_and_attach_echoes() {
    let k = Kubelet::start().await;
    let (mut ws, _) = websocket(
        &k,
        "/exec/default/web/app?command=size&stdin=true&stdout=true&tty=true",
        "v5.channel.k8s.io",
    )
    .await;
    let mut m = vec![4u8];
    m.extend_from_slice(br#"{"Width":120,"Height":40}"#);
    ws.send(Message::Binary(m.into())).await.unwrap();
    let (out, _, status) = collect(&mut ws).await;
    assert_eq!(out, b"120x40 tty=true\n");
    assert_eq!(status, br#"{"metadata":{},"status":"Success"}"#);

    let (mut ws, _) = websocket(
        &k,
        "/attach/default/web/app?stdin=true&stdout=true",
        "v5.channel.k8s.io",
    )
    .await;
    ws.send(Message::Binary(vec![0, b'h', b'i'].into()))
        .await
        .unwrap();
    ws.send(Message::Binary(vec![255, 0].into())).await.unwrap();
    let (out, _, _) = collect(&mut ws).await;
    assert_eq!(out, b"hi");
}

/// A minimal SPDY client over any byte stream.
struct SpdyClient<S> {
    io: S,
    enc: FrameEncoder,
    dec: FrameDecoder,
    buf: BytesMut,
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> SpdyClient<S> {
    fn new(io: S) -> Self {
        SpdyClient {
            io,
            enc: FrameEncoder::new(),
            dec: FrameDecoder::new(),
            buf: BytesMut::new(),
        }
    }

    async fn send(&mut self, f: Frame) {
        let mut out = BytesMut::new();
        self.enc.encode(&f, &mut out).unwrap();
        self.io.write_all(&out).await.unwrap();
        self.io.flush().await.unwrap();
    }

    async fn recv(&mut self) -> Frame {
        loop {
            if let Some(f) = self.dec.decode(&mut self.buf).unwrap() {
                return f;
            }
            let n = tokio::time::timeout(Duration::from_secs(10), self.io.read_buf(&mut self.buf))
                .await
                .expect("a frame in time")
                .unwrap();
            assert!(n > 0, "connection closed");
        }
    }

    fn syn(id: u32, kind: &str, port: u16, request: u32) -> Frame {
        Frame::SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            flags: 0,
            headers: vec![
                ("streamtype".into(), kind.into()),
                ("port".into(), port.to_string()),
                ("requestid".into(), request.to_string()),
            ],
        }
    }

    /// One forwarded connection: sends `payload`, FINs, and returns (data echoed, error text).
    async fn forward(
        &mut self,
        first_id: u32,
        port: u16,
        request: u32,
        payload: &[u8],
    ) -> (Vec<u8>, String) {
        let (eid, did) = (first_id, first_id + 2);
        self.send(Self::syn(eid, "error", port, request)).await;
        self.send(Frame::Data {
            stream_id: eid,
            flags: FLAG_FIN,
            data: Bytes::new(),
        })
        .await;
        self.send(Self::syn(did, "data", port, request)).await;
        self.send(Frame::Data {
            stream_id: did,
            flags: 0,
            data: Bytes::copy_from_slice(payload),
        })
        .await;
        self.send(Frame::Data {
            stream_id: did,
            flags: FLAG_FIN,
            data: Bytes::new(),
        })
        .await;
        self.send(Frame::Ping { id: 1 }).await;
        let (mut data, mut err) = (Vec::new(), Vec::new());
        let (mut data_fin, mut err_fin, mut replies, mut pong) = (false, false, 0, false);
        while !(data_fin && err_fin && replies == 2 && pong) {
            match self.recv().await {
                Frame::SynReply { stream_id, .. } => {
                    assert!(stream_id == eid || stream_id == did);
                    replies += 1;
                }
                Frame::Ping { id } => {
                    assert_eq!(id, 1);
                    pong = true;
                }
                Frame::Data {
                    stream_id,
                    flags,
                    data: d,
                } => {
                    let fin = flags & FLAG_FIN != 0;
                    if stream_id == did {
                        data.extend_from_slice(&d);
                        data_fin |= fin;
                    } else if stream_id == eid {
                        err.extend_from_slice(&d);
                        err_fin |= fin;
                    }
                }
                other => panic!("unexpected frame {other:?}"),
            }
        }
        (data, String::from_utf8(err).unwrap())
    }
}

/// A WebSocket as a byte stream (what client-go's tunnelling connection does).
fn ws_stream(ws: Ws) -> tokio::io::DuplexStream {
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    let (mut rd, mut wr) = tokio::io::split(ours);
    let (mut sink, mut stream) = ws.split();
    tokio::spawn(async move {
        while let Some(Ok(Message::Binary(d))) = stream.next().await {
            if wr.write_all(&d).await.is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        loop {
            let n = rd.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            if sink
                .send(Message::Binary(buf[..n].to_vec().into()))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    theirs
}

#[tokio::test]
async fn port_forward_spdy_over_websocket() {
    let k = Kubelet::start().await;
    let (ws, proto) = websocket(
        &k,
        "/portForward/default/web",
        "SPDY/3.1+portforward.k8s.io",
    )
    .await;
    assert_eq!(proto.as_deref(), Some("SPDY/3.1+portforward.k8s.io"));
    let mut c = SpdyClient::new(ws_stream(ws));
    let big: Vec<u8> = (0..200_000).map(|i| (i % 251) as u8).collect();
    let (data, err) = c.forward(1, 80, 0, &big).await;
    assert_eq!(err, "");
    assert!(data == big, "echoed {} of {} bytes", data.len(), big.len());
    // A second connection on the same session, to a closed port.
    let (data, err) = c.forward(5, 81, 1, b"x").await;
    assert!(data.is_empty());
    assert!(
        err.starts_with("error forwarding port 81 to pod sandbox-web, uid uid-web: failed to connect to localhost:81"),
        "{err}"
    );
}

#[tokio::test]
async fn port_forward_plain_spdy_upgrade() {
    let k = Kubelet::start().await;
    let mut tls = k.connect(true).await;
    tls.write_all(
        b"POST /portForward/default/web HTTP/1.1\r\nHost: node-a\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: portforward.k8s.io\r\nContent-Length: 0\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        tls.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains("x-stream-protocol-version: portforward.k8s.io"),
        "{head}"
    );
    let mut c = SpdyClient::new(tls);
    let (data, err) = c.forward(1, 80, 0, b"hello").await;
    assert_eq!((data.as_slice(), err.as_str()), (&b"hello"[..], ""));
    let _ = header;
}
