//! Driving an exec or attach session over a WebSocket with the channel protocol.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rkube_cri::StreamingSession;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::channel::{Outcome, Protocol, ch, frame, parse_resize, status_message};

/// How long output may keep flowing after the process ended (a background child can hold the
/// pipes open forever; the client should still get its exit status).
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// Size of one read from the process's output.
const CHUNK: usize = 32 * 1024;

async fn pump(mut r: rkube_cri::Reader, channel: u8, out: mpsc::Sender<Message>) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if out
                    .send(Message::Binary(frame(channel, &buf[..n])))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

/// How long the process may take to end once the client's side of the stream has ended.
const CLIENT_GONE_GRACE: Duration = Duration::from_secs(2);

/// What a session reports on the error channel when its process ends.
#[derive(Clone, Debug)]
pub(crate) enum Report {
    /// exec: the command's exit code (non-zero → `NonZeroExitCode`, naming the command).
    ExitCode(Vec<String>),
    /// attach: only that the stream ended. As upstream's kubelet, the container's exit code
    /// is not the attach's outcome (it is in the pod's status; `kubectl run -i` reads it
    /// there), so `kubectl attach` ends with 0 when the container exits.
    StreamEnd,
}

/// Runs `session` (or reports its start failure) over `ws` until the process ends and its
/// status has been sent, or the client goes away.
pub(crate) async fn run<S>(
    ws: WebSocketStream<S>,
    protocol: Protocol,
    session: Result<StreamingSession, String>,
    report: Report,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(32);
    // The one writer: output and the final status go out in the order they were queued.
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if sink.send(m).await.is_err() {
                return;
            }
        }
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            })))
            .await;
        let _ = sink.close().await;
    });

    let mut session = match session {
        Ok(s) => s,
        Err(e) => {
            if let Some(m) = status_message(protocol, &Outcome::Error(e)) {
                let _ = out_tx.send(Message::Binary(frame(ch::ERROR, &m))).await;
            }
            drop(out_tx);
            let _ = writer.await;
            return;
        }
    };

    let mut pumps = Vec::new();
    if let Some(r) = session.stdout.take() {
        pumps.push(tokio::spawn(pump(r, ch::STDOUT, out_tx.clone())));
    }
    if let Some(r) = session.stderr.take() {
        pumps.push(tokio::spawn(pump(r, ch::STDERR, out_tx.clone())));
    }

    // Client → process: stdin bytes, resizes, the v5 close of stdin. Resolves when the client
    // has gone (close message or broken connection).
    let mut stdin = session.stdin.take();
    let resize = session.resize.take();
    let input = async move {
        while let Some(msg) = stream.next().await {
            let data = match msg {
                Ok(Message::Binary(d)) => d,
                Ok(Message::Text(t)) => bytes::Bytes::copy_from_slice(t.as_bytes()),
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => continue,
            };
            let Some((&channel, payload)) = data.split_first() else {
                continue;
            };
            match channel {
                ch::STDIN => {
                    if let Some(w) = stdin.as_mut()
                        && w.write_all(payload).await.is_err()
                    {
                        stdin = None;
                    }
                }
                ch::RESIZE => {
                    if let (Some(tx), Some(size)) = (resize.as_ref(), parse_resize(payload)) {
                        let _ = tx.try_send(size);
                    }
                }
                ch::CLOSE if protocol >= Protocol::V5 => {
                    if payload.first() == Some(&ch::STDIN)
                        && let Some(mut w) = stdin.take()
                    {
                        let _ = w.shutdown().await;
                    }
                }
                _ => {}
            }
        }
        if let Some(mut w) = stdin.take() {
            let _ = w.shutdown().await;
        }
    };
    tokio::pin!(input);

    let exit = tokio::select! {
        code = &mut session.exit => Some(code),
        // The client's side ended first (its close, or a broken read): the process often ends
        // a moment later (stdin closed), and then its status still goes out with a proper
        // close rather than the connection being dropped under the client.
        _ = &mut input => tokio::time::timeout(CLIENT_GONE_GRACE, &mut session.exit).await.ok(),
    };
    let Some(code) = exit else {
        // The client is gone: nobody to report to.
        for p in pumps {
            p.abort();
        }
        writer.abort();
        return;
    };
    let drain = async {
        for p in pumps.iter_mut() {
            let _ = p.await;
        }
    };
    let _ = tokio::time::timeout(OUTPUT_GRACE, drain).await;
    for p in &pumps {
        p.abort();
    }
    let outcome = match (code, report) {
        (Ok(0), _) | (Ok(_), Report::StreamEnd) => Outcome::Success,
        (Ok(code), Report::ExitCode(command)) => Outcome::ExitCode { code, command },
        (Err(e), _) => Outcome::Error(e.to_string()),
    };
    if let Some(m) = status_message(protocol, &outcome) {
        let _ = out_tx.send(Message::Binary(frame(ch::ERROR, &m))).await;
    }
    drop(out_tx);
    // The writer ends with a normal close once every queued message is out.
    let _ = tokio::time::timeout(Duration::from_secs(10), writer).await;
}
