//! The WebSocket channel protocols of `kubectl exec` / `attach` / `cp`
//! (`channel.k8s.io`, `v2`…`v5.channel.k8s.io`): each binary message starts with a channel
//! byte, 0 stdin, 1 stdout, 2 stderr, 3 error (the exit status), 4 terminal resize; v5 adds
//! channel 255, whose payload names a stream the client has closed (stdin EOF).

use bytes::Bytes;
use serde_json::json;

/// Channel numbers.
pub mod ch {
    /// Client → process.
    pub const STDIN: u8 = 0;
    /// Process → client.
    pub const STDOUT: u8 = 1;
    /// Process → client.
    pub const STDERR: u8 = 2;
    /// The outcome, once, at the end.
    pub const ERROR: u8 = 3;
    /// Terminal size changes (JSON `{"Width":…,"Height":…}`).
    pub const RESIZE: u8 = 4;
    /// v5: `[255, channel]` half-closes `channel`.
    pub const CLOSE: u8 = 255;
}

/// A negotiated channel protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    /// `channel.k8s.io` (or none given): plain-text errors, no resize.
    V1,
    /// `v2.channel.k8s.io`.
    V2,
    /// `v3.channel.k8s.io`: adds resize.
    V3,
    /// `v4.channel.k8s.io`: the error channel carries a JSON `metav1.Status`.
    V4,
    /// `v5.channel.k8s.io`: adds the close signal.
    V5,
}

impl Protocol {
    /// The subprotocol name.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::V1 => "channel.k8s.io",
            Protocol::V2 => "v2.channel.k8s.io",
            Protocol::V3 => "v3.channel.k8s.io",
            Protocol::V4 => "v4.channel.k8s.io",
            Protocol::V5 => "v5.channel.k8s.io",
        }
    }

    fn from_name(n: &str) -> Option<Protocol> {
        Some(match n {
            "channel.k8s.io" => Protocol::V1,
            "v2.channel.k8s.io" => Protocol::V2,
            "v3.channel.k8s.io" => Protocol::V3,
            "v4.channel.k8s.io" => Protocol::V4,
            "v5.channel.k8s.io" => Protocol::V5,
            _ => return None,
        })
    }

    /// Picks the newest protocol the client offers (`Sec-WebSocket-Protocol`, comma
    /// separated, possibly repeated). `Ok(None)`: the client offered none, so no subprotocol
    /// is answered and V1 is spoken. `Err`: it offered only protocols not served.
    pub fn negotiate<'a>(
        offered: impl IntoIterator<Item = &'a str>,
    ) -> Result<Option<Protocol>, String> {
        let mut any = false;
        let mut best: Option<Protocol> = None;
        let mut names = Vec::new();
        for list in offered {
            for p in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                any = true;
                names.push(p.to_string());
                if let Some(v) = Protocol::from_name(p) {
                    best = best.max(Some(v));
                }
            }
        }
        match (any, best) {
            (false, _) => Ok(None),
            (true, Some(b)) => Ok(Some(b)),
            (true, None) => Err(format!(
                "requested protocol(s) are not supported: {names:?}; supports [\"v5.channel.k8s.io\" \"v4.channel.k8s.io\" \"v3.channel.k8s.io\" \"v2.channel.k8s.io\" \"channel.k8s.io\"]"
            )),
        }
    }
}

/// A message on `channel`.
pub fn frame(channel: u8, data: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    Bytes::from(v)
}

/// How a command ended, for the error channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Exit code 0.
    Success,
    /// Ran and exited non-zero.
    ExitCode {
        /// The code.
        code: i32,
        /// The command, for the message.
        command: Vec<String>,
    },
    /// Could not run (or the stream broke): the runtime's message.
    Error(String),
}

/// The error-channel payload for `outcome` in `protocol` (`None`: nothing to send, V1–V3 on
/// success).
pub fn status_message(protocol: Protocol, outcome: &Outcome) -> Option<Vec<u8>> {
    let message = match outcome {
        Outcome::Success => None,
        Outcome::ExitCode { code, command } => Some(format!(
            "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
            command.join(" ")
        )),
        Outcome::Error(e) => Some(format!("Internal error occurred: {e}")),
    };
    if protocol < Protocol::V4 {
        return message.map(String::into_bytes);
    }
    let status = match outcome {
        Outcome::Success => json!({"metadata": {}, "status": "Success"}),
        Outcome::ExitCode { code, .. } => json!({
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Outcome::Error(e) => json!({
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": "InternalError",
            "details": {"causes": [{"message": e}]},
            "code": 500,
        }),
    };
    serde_json::to_vec(&status).ok()
}

/// A terminal size as the resize channel carries it.
#[derive(serde::Deserialize)]
struct WireSize {
    #[serde(rename = "Width")]
    width: u16,
    #[serde(rename = "Height")]
    height: u16,
}

/// Parses a resize message payload.
pub fn parse_resize(data: &[u8]) -> Option<rkube_cri::TerminalSize> {
    // kubectl may send several JSON objects back to back in one message; take the last.
    let mut last = None;
    for s in serde_json::Deserializer::from_slice(data).into_iter::<WireSize>() {
        match s {
            Ok(s) => last = Some(s),
            Err(_) => break,
        }
    }
    last.map(|s| rkube_cri::TerminalSize {
        width: s.width,
        height: s.height,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_prefers_newest() {
        assert_eq!(
            Protocol::negotiate(["v4.channel.k8s.io, v5.channel.k8s.io"]),
            Ok(Some(Protocol::V5))
        );
        assert_eq!(
            Protocol::negotiate(["channel.k8s.io", "v3.channel.k8s.io"]),
            Ok(Some(Protocol::V3))
        );
        assert_eq!(Protocol::negotiate([]), Ok(None));
        assert!(Protocol::negotiate(["base64.channel.k8s.io"]).is_err());
    }

    #[test]
    fn status_shapes() {
        let ok = status_message(Protocol::V5, &Outcome::Success).unwrap();
        assert_eq!(ok, br#"{"metadata":{},"status":"Success"}"#);
        let fail = status_message(
            Protocol::V4,
            &Outcome::ExitCode {
                code: 3,
                command: vec!["sh".into(), "-c".into(), "exit 3".into()],
            },
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&fail).unwrap();
        assert_eq!(
            v,
            json!({"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}})
        );
        assert_eq!(status_message(Protocol::V1, &Outcome::Success), None);
        assert_eq!(
            status_message(Protocol::V2, &Outcome::Error("boom".into())).unwrap(),
            b"Internal error occurred: boom"
        );
    }

    #[test]
    fn frames_and_resize() {
        assert_eq!(&frame(ch::STDOUT, b"hi")[..], &[1, b'h', b'i']);
        assert_eq!(
            parse_resize(br#"{"Width":80,"Height":24}"#),
            Some(rkube_cri::TerminalSize {
                width: 80,
                height: 24
            })
        );
        assert_eq!(
            parse_resize(br#"{"Width":80,"Height":24}{"Width":100,"Height":30}"#)
                .unwrap()
                .width,
            100
        );
        assert_eq!(parse_resize(b"nope"), None);
    }
}
