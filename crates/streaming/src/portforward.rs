//! `kubectl port-forward` over SPDY/3.1: for every forwarded connection the client opens an
//! error stream and a data stream (headers `streamtype`, `port`, `requestid`); the data stream
//! is piped to a TCP connection the runtime makes inside the pod's network namespace, and a
//! failure is written to the error stream as text. Both streams are finished (FIN) when the
//! pod side of the connection ends.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use rkube_cri::RuntimeService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::spdy::{FLAG_FIN, Frame, FrameDecoder, FrameEncoder, header, rst};

/// What the forwarded connections lead to.
#[derive(Clone)]
pub struct ForwardTarget {
    /// The runtime that dials inside the pod.
    pub runtime: Arc<dyn RuntimeService>,
    /// The pod's sandbox.
    pub sandbox_id: String,
    /// Pod name, for messages.
    pub pod: String,
    /// Pod UID, for messages (may be empty).
    pub uid: String,
}

/// Inbound events of a data stream.
enum Inbound {
    Data(Bytes),
    Fin,
    Reset,
}

/// Size of one read from the pod connection (one DATA frame).
const CHUNK: usize = 32 * 1024;

/// Streams of one forwarded connection, keyed by request id, until both have arrived.
#[derive(Default)]
struct Pair {
    port: u16,
    error: Option<u32>,
    data: Option<(u32, mpsc::Receiver<Inbound>)>,
}

/// Serves a SPDY port-forward session on `io` until the client goes away.
pub async fn serve_session<IO>(io: IO, target: ForwardTarget)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(io);
    let (frames_tx, mut frames_rx) = mpsc::channel::<Frame>(64);
    // One writer owns the header compressor, so compressed blocks go out in stream order.
    let writer = tokio::spawn(async move {
        let mut enc = FrameEncoder::new();
        let mut buf = BytesMut::new();
        while let Some(f) = frames_rx.recv().await {
            buf.clear();
            if let Err(e) = enc.encode(&f, &mut buf) {
                tracing::debug!("port-forward: encoding a frame: {e}");
                return;
            }
            // Queued frames go out in one write where possible.
            while let Ok(more) = frames_rx.try_recv() {
                if enc.encode(&more, &mut buf).is_err() {
                    return;
                }
            }
            if wr.write_all(&buf).await.is_err() || wr.flush().await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    });

    let mut dec = FrameDecoder::new();
    let mut inbuf = BytesMut::with_capacity(64 * 1024);
    let mut inbound: HashMap<u32, mpsc::Sender<Inbound>> = HashMap::new();
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut forwards = JoinSet::new();
    'session: loop {
        let frame = loop {
            match dec.decode(&mut inbuf) {
                Ok(Some(f)) => break f,
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!("port-forward: {e}");
                    let _ = frames_tx
                        .send(Frame::GoAway {
                            last_good_stream_id: 0,
                            status: 1,
                        })
                        .await;
                    break 'session;
                }
            }
            match rd.read_buf(&mut inbuf).await {
                Ok(0) | Err(_) => break 'session,
                Ok(_) => {}
            }
        };
        match frame {
            Frame::SynStream {
                stream_id,
                flags,
                headers,
                ..
            } => {
                let kind = header(&headers, "streamtype").unwrap_or("").to_string();
                let port = header(&headers, "port").unwrap_or("");
                let Ok(port) = port.parse::<u16>() else {
                    let _ = frames_tx
                        .send(Frame::RstStream {
                            stream_id,
                            status: rst::PROTOCOL_ERROR,
                        })
                        .await;
                    continue;
                };
                // Clients older than request ids pair streams by port.
                let request = header(&headers, "requestid")
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("port-{port}"));
                let _ = frames_tx
                    .send(Frame::SynReply {
                        stream_id,
                        flags: 0,
                        headers: vec![],
                    })
                    .await;
                let pair = pairs.entry(request.clone()).or_default();
                pair.port = port;
                match kind.as_str() {
                    "error" => pair.error = Some(stream_id),
                    "data" => {
                        let (tx, rx) = mpsc::channel(16);
                        if flags & FLAG_FIN != 0 {
                            let _ = tx.try_send(Inbound::Fin);
                        } else {
                            inbound.insert(stream_id, tx);
                        }
                        pair.data = Some((stream_id, rx));
                    }
                    _ => {
                        let _ = frames_tx
                            .send(Frame::RstStream {
                                stream_id,
                                status: rst::PROTOCOL_ERROR,
                            })
                            .await;
                        continue;
                    }
                }
                if pair.error.is_some() && pair.data.is_some() {
                    let pair = pairs.remove(&request).unwrap_or_default();
                    if let (Some(error), Some((data, rx))) = (pair.error, pair.data) {
                        forwards.spawn(forward(
                            target.clone(),
                            pair.port,
                            error,
                            data,
                            rx,
                            frames_tx.clone(),
                        ));
                    }
                }
            }
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                if let Some(tx) = inbound.get(&stream_id) {
                    if !data.is_empty() && tx.send(Inbound::Data(data)).await.is_err() {
                        inbound.remove(&stream_id);
                    }
                    if flags & FLAG_FIN != 0
                        && let Some(tx) = inbound.remove(&stream_id)
                    {
                        let _ = tx.send(Inbound::Fin).await;
                    }
                }
            }
            Frame::RstStream { stream_id, .. } => {
                if let Some(tx) = inbound.remove(&stream_id) {
                    let _ = tx.send(Inbound::Reset).await;
                }
            }
            Frame::Ping { id } => {
                let _ = frames_tx.send(Frame::Ping { id }).await;
            }
            Frame::GoAway { .. } => break 'session,
            // Flow control is not enforced (see the spdy module), settings carry nothing
            // needed here, and no stream of this protocol takes extra headers.
            Frame::Settings { .. }
            | Frame::WindowUpdate { .. }
            | Frame::Headers { .. }
            | Frame::SynReply { .. }
            | Frame::Unknown { .. } => {}
        }
    }
    forwards.abort_all();
    drop(inbound);
    drop(frames_tx);
    let _ = writer.await;
}

/// Pipes one forwarded connection.
async fn forward(
    target: ForwardTarget,
    port: u16,
    error_stream: u32,
    data_stream: u32,
    mut inbound: mpsc::Receiver<Inbound>,
    frames: mpsc::Sender<Frame>,
) {
    let fin = |stream_id| Frame::Data {
        stream_id,
        flags: FLAG_FIN,
        data: Bytes::new(),
    };
    let conn = match target.runtime.port_forward(&target.sandbox_id, port).await {
        Ok(c) => c,
        Err(e) => {
            let msg = format!(
                "error forwarding port {port} to pod {}, uid {}: {e}",
                target.sandbox_id, target.uid
            );
            tracing::debug!("port-forward to pod {}: {msg}", target.pod);
            let _ = frames
                .send(Frame::Data {
                    stream_id: error_stream,
                    flags: 0,
                    data: Bytes::from(msg),
                })
                .await;
            let _ = frames.send(fin(error_stream)).await;
            let _ = frames.send(fin(data_stream)).await;
            return;
        }
    };
    let _ = conn.set_nodelay(true);
    let (mut pod_rd, mut pod_wr) = conn.into_split();
    // Client → pod. Returns true when the client reset the stream.
    let to_pod = async {
        while let Some(ev) = inbound.recv().await {
            match ev {
                Inbound::Data(d) => {
                    if pod_wr.write_all(&d).await.is_err() {
                        return false;
                    }
                }
                Inbound::Fin => {
                    let _ = pod_wr.shutdown().await;
                    return false;
                }
                Inbound::Reset => return true,
            }
        }
        false
    };
    // Pod → client, until the pod closes its side.
    let to_client = async {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match pod_rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let f = Frame::Data {
                        stream_id: data_stream,
                        flags: 0,
                        data: Bytes::copy_from_slice(&buf[..n]),
                    };
                    if frames.send(f).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    tokio::pin!(to_pod, to_client);
    let mut client_done = false;
    let mut reset = false;
    loop {
        tokio::select! {
            r = &mut to_pod, if !client_done => {
                client_done = true;
                if r {
                    reset = true;
                    break;
                }
            }
            _ = &mut to_client => break,
        }
    }
    if !reset {
        let _ = frames.send(fin(data_stream)).await;
    }
    let _ = frames.send(fin(error_stream)).await;
}
