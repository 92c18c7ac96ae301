//! SPDY/3.1 framing, as `kubectl port-forward` speaks it (through moby/spdystream): control
//! frames SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE
//! and DATA frames, with zlib-compressed header blocks.
//!
//! spdystream neither sends WINDOW_UPDATE nor honours the peer's windows, so flow control is
//! parsed but not enforced here either: enforcing it would stall after 64 KiB.

pub mod headers;

use bytes::{Buf, BufMut, Bytes, BytesMut};

pub use headers::{HeaderCompressor, HeaderDecompressor, Headers};

/// SPDY version spoken.
pub const VERSION: u16 = 3;
/// FIN flag (control and data frames).
pub const FLAG_FIN: u8 = 0x01;
/// UNIDIRECTIONAL flag of SYN_STREAM.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;
/// Largest frame payload the format can carry (24-bit length).
pub const MAX_FRAME_LEN: usize = (1 << 24) - 1;

/// RST_STREAM status codes used here.
pub mod rst {
    /// PROTOCOL_ERROR.
    pub const PROTOCOL_ERROR: u32 = 1;
    /// INVALID_STREAM.
    pub const INVALID_STREAM: u32 = 2;
    /// REFUSED_STREAM.
    pub const REFUSED_STREAM: u32 = 3;
    /// CANCEL.
    pub const CANCEL: u32 = 5;
    /// INTERNAL_ERROR.
    pub const INTERNAL_ERROR: u32 = 6;
}

/// Malformed input on a SPDY session.
#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    /// The peer broke the protocol.
    #[error("SPDY protocol error: {0}")]
    Protocol(String),
}

/// One SPDY frame, unpacked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Opens a stream.
    SynStream {
        /// New stream's id (odd from the client).
        stream_id: u32,
        /// Stream it is associated to (0 for none).
        associated_to: u32,
        /// Priority, 0 (highest) to 7.
        priority: u8,
        /// FIN / UNIDIRECTIONAL.
        flags: u8,
        /// Request headers.
        headers: Headers,
    },
    /// Accepts a stream.
    SynReply {
        /// Stream answered.
        stream_id: u32,
        /// FIN.
        flags: u8,
        /// Reply headers.
        headers: Headers,
    },
    /// Aborts a stream.
    RstStream {
        /// Stream aborted.
        stream_id: u32,
        /// Why (see [`rst`]).
        status: u32,
    },
    /// Session settings: (flags, id, value) triples.
    Settings {
        /// CLEAR_SETTINGS.
        flags: u8,
        /// Entries.
        entries: Vec<(u8, u32, u32)>,
    },
    /// Liveness check; echoed back by the receiver.
    Ping {
        /// Ping id (odd from the client).
        id: u32,
    },
    /// The sender stops accepting streams.
    GoAway {
        /// Last stream the sender handled.
        last_good_stream_id: u32,
        /// 0 OK, 1 PROTOCOL_ERROR, 2 INTERNAL_ERROR.
        status: u32,
    },
    /// More headers for a stream.
    Headers {
        /// Stream.
        stream_id: u32,
        /// FIN.
        flags: u8,
        /// Headers.
        headers: Headers,
    },
    /// Flow-control credit.
    WindowUpdate {
        /// Stream (0 = session).
        stream_id: u32,
        /// Bytes added.
        delta: u32,
    },
    /// Payload.
    Data {
        /// Stream.
        stream_id: u32,
        /// FIN.
        flags: u8,
        /// Bytes.
        data: Bytes,
    },
    /// A control frame type this implementation does not know (ignored, as the spec says).
    Unknown {
        /// Its type.
        frame_type: u16,
    },
}

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

const STREAM_ID_MASK: u32 = 0x7fff_ffff;

/// Writes frames, compressing header blocks through one zlib stream.
#[derive(Default)]
pub struct FrameEncoder {
    compressor: HeaderCompressor,
}

impl FrameEncoder {
    /// A fresh encoder (one per session direction).
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `frame` to `out`.
    pub fn encode(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<(), SpdyError> {
        let control = |ty: u16, flags: u8, payload: &[u8], out: &mut BytesMut| {
            out.put_u16(0x8000 | VERSION);
            out.put_u16(ty);
            out.put_u32((u32::from(flags) << 24) | payload.len() as u32);
            out.put_slice(payload);
        };
        let mut p = BytesMut::new();
        match frame {
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                flags,
                headers,
            } => {
                p.put_u32(stream_id & STREAM_ID_MASK);
                p.put_u32(associated_to & STREAM_ID_MASK);
                p.put_u8((priority & 0x7) << 5);
                p.put_u8(0);
                p.put_slice(&self.compressor.compress(headers)?);
                control(SYN_STREAM, *flags, &p, out);
            }
            Frame::SynReply {
                stream_id,
                flags,
                headers,
            } => {
                p.put_u32(stream_id & STREAM_ID_MASK);
                p.put_slice(&self.compressor.compress(headers)?);
                control(SYN_REPLY, *flags, &p, out);
            }
            Frame::RstStream { stream_id, status } => {
                p.put_u32(stream_id & STREAM_ID_MASK);
                p.put_u32(*status);
                control(RST_STREAM, 0, &p, out);
            }
            Frame::Settings { flags, entries } => {
                p.put_u32(entries.len() as u32);
                for (f, id, v) in entries {
                    p.put_u32((u32::from(*f) << 24) | (id & 0x00ff_ffff));
                    p.put_u32(*v);
                }
                control(SETTINGS, *flags, &p, out);
            }
            Frame::Ping { id } => control(PING, 0, &id.to_be_bytes(), out),
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                p.put_u32(last_good_stream_id & STREAM_ID_MASK);
                p.put_u32(*status);
                control(GOAWAY, 0, &p, out);
            }
            Frame::Headers {
                stream_id,
                flags,
                headers,
            } => {
                p.put_u32(stream_id & STREAM_ID_MASK);
                p.put_slice(&self.compressor.compress(headers)?);
                control(HEADERS, *flags, &p, out);
            }
            Frame::WindowUpdate { stream_id, delta } => {
                p.put_u32(stream_id & STREAM_ID_MASK);
                p.put_u32(delta & STREAM_ID_MASK);
                control(WINDOW_UPDATE, 0, &p, out);
            }
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                if data.len() > MAX_FRAME_LEN {
                    return Err(SpdyError::Protocol("data frame too large".into()));
                }
                out.put_u32(stream_id & STREAM_ID_MASK);
                out.put_u32((u32::from(*flags) << 24) | data.len() as u32);
                out.put_slice(data);
            }
            Frame::Unknown { frame_type } => control(*frame_type, 0, &[], out),
        }
        Ok(())
    }
}

/// Reads frames, decompressing header blocks through one zlib stream.
#[derive(Default)]
pub struct FrameDecoder {
    decompressor: HeaderDecompressor,
}

impl FrameDecoder {
    /// A fresh decoder (one per session direction).
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one whole frame from the front of `buf`, or `None` when more bytes are needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, SpdyError> {
        if buf.len() < 8 {
            return Ok(None);
        }
        let len = (u32::from_be_bytes([0, buf[5], buf[6], buf[7]])) as usize;
        if buf.len() < 8 + len {
            buf.reserve(8 + len - buf.len());
            return Ok(None);
        }
        let mut frame = buf.split_to(8 + len).freeze();
        let first = frame.get_u32();
        let flags_len = frame.get_u32();
        let flags = (flags_len >> 24) as u8;
        if first & 0x8000_0000 == 0 {
            return Ok(Some(Frame::Data {
                stream_id: first & STREAM_ID_MASK,
                flags,
                data: frame,
            }));
        }
        let version = ((first >> 16) & 0x7fff) as u16;
        if version != VERSION {
            return Err(SpdyError::Protocol(format!(
                "unsupported SPDY version {version}"
            )));
        }
        let ty = (first & 0xffff) as u16;
        let need = |n: usize, f: &Bytes| {
            if f.len() < n {
                Err(SpdyError::Protocol(format!(
                    "control frame type {ty} too short"
                )))
            } else {
                Ok(())
            }
        };
        let parsed = match ty {
            SYN_STREAM => {
                need(10, &frame)?;
                let stream_id = frame.get_u32() & STREAM_ID_MASK;
                let associated_to = frame.get_u32() & STREAM_ID_MASK;
                let priority = frame.get_u8() >> 5;
                let _slot = frame.get_u8();
                let headers = self.decompressor.decompress(&frame)?;
                Frame::SynStream {
                    stream_id,
                    associated_to,
                    priority,
                    flags,
                    headers,
                }
            }
            SYN_REPLY | HEADERS => {
                need(4, &frame)?;
                let stream_id = frame.get_u32() & STREAM_ID_MASK;
                let headers = self.decompressor.decompress(&frame)?;
                if ty == SYN_REPLY {
                    Frame::SynReply {
                        stream_id,
                        flags,
                        headers,
                    }
                } else {
                    Frame::Headers {
                        stream_id,
                        flags,
                        headers,
                    }
                }
            }
            RST_STREAM => {
                need(8, &frame)?;
                Frame::RstStream {
                    stream_id: frame.get_u32() & STREAM_ID_MASK,
                    status: frame.get_u32(),
                }
            }
            SETTINGS => {
                need(4, &frame)?;
                let n = frame.get_u32() as usize;
                if frame.len() < n.saturating_mul(8) {
                    return Err(SpdyError::Protocol("SETTINGS frame too short".into()));
                }
                let entries = (0..n)
                    .map(|_| {
                        let a = frame.get_u32();
                        ((a >> 24) as u8, a & 0x00ff_ffff, frame.get_u32())
                    })
                    .collect();
                Frame::Settings { flags, entries }
            }
            PING => {
                need(4, &frame)?;
                Frame::Ping {
                    id: frame.get_u32(),
                }
            }
            GOAWAY => {
                need(4, &frame)?;
                let last_good_stream_id = frame.get_u32() & STREAM_ID_MASK;
                // SPDY/2 peers omit the status.
                let status = if frame.len() >= 4 { frame.get_u32() } else { 0 };
                Frame::GoAway {
                    last_good_stream_id,
                    status,
                }
            }
            WINDOW_UPDATE => {
                need(8, &frame)?;
                Frame::WindowUpdate {
                    stream_id: frame.get_u32() & STREAM_ID_MASK,
                    delta: frame.get_u32() & STREAM_ID_MASK,
                }
            }
            other => Frame::Unknown { frame_type: other },
        };
        Ok(Some(parsed))
    }
}

/// The value of header `name` (case-insensitive), first of several.
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.split('\0').next().unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(frames: Vec<Frame>) {
        let mut enc = FrameEncoder::new();
        let mut dec = FrameDecoder::new();
        let mut buf = BytesMut::new();
        for f in &frames {
            enc.encode(f, &mut buf).unwrap();
        }
        // Feed byte by byte: decoding must wait for whole frames.
        let wire = buf.freeze();
        let mut inbuf = BytesMut::new();
        let mut got = Vec::new();
        for b in wire.iter() {
            inbuf.put_u8(*b);
            while let Some(f) = dec.decode(&mut inbuf).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, frames);
    }

    #[test]
    fn every_frame_type_roundtrips() {
        let h = |t: &str| -> Headers {
            vec![
                ("streamtype".into(), t.into()),
                ("port".into(), "80".into()),
                ("requestid".into(), "7".into()),
            ]
        };
        roundtrip(vec![
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 0,
                flags: 0,
                headers: h("error"),
            },
            Frame::SynReply {
                stream_id: 1,
                flags: 0,
                headers: vec![],
            },
            Frame::SynStream {
                stream_id: 3,
                associated_to: 0,
                priority: 7,
                flags: FLAG_FIN,
                headers: h("data"),
            },
            Frame::Data {
                stream_id: 3,
                flags: 0,
                data: Bytes::from_static(b"GET / HTTP/1.0\r\n\r\n"),
            },
            Frame::Data {
                stream_id: 3,
                flags: FLAG_FIN,
                data: Bytes::new(),
            },
            Frame::RstStream {
                stream_id: 3,
                status: rst::CANCEL,
            },
            Frame::Settings {
                flags: 0,
                entries: vec![(0, 7, 65536), (1, 4, 100)],
            },
            Frame::Ping { id: 1 },
            Frame::Headers {
                stream_id: 1,
                flags: 0,
                headers: vec![("a".into(), "b\0c".into())],
            },
            Frame::WindowUpdate {
                stream_id: 0,
                delta: 1 << 20,
            },
            Frame::GoAway {
                last_good_stream_id: 3,
                status: 0,
            },
        ]);
    }

    #[test]
    fn wire_layout_matches_the_spec() {
        let mut enc = FrameEncoder::new();
        let mut buf = BytesMut::new();
        enc.encode(&Frame::Ping { id: 5 }, &mut buf).unwrap();
        assert_eq!(&buf[..], &[0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 5]);
        buf.clear();
        enc.encode(
            &Frame::Data {
                stream_id: 2,
                flags: FLAG_FIN,
                data: Bytes::from_static(b"hi"),
            },
            &mut buf,
        )
        .unwrap();
        assert_eq!(&buf[..], &[0, 0, 0, 2, 1, 0, 0, 2, b'h', b'i']);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let mut dec = FrameDecoder::new();
        // Version 2 control frame.
        let mut b = BytesMut::from(&[0x80u8, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1][..]);
        assert!(dec.decode(&mut b).is_err());
        // A PING with a short payload.
        let mut b = BytesMut::from(&[0x80u8, 3, 0, 6, 0, 0, 0, 1, 0][..]);
        assert!(dec.decode(&mut b).is_err());
        // SETTINGS claiming more entries than it holds.
        let mut b = BytesMut::from(&[0x80u8, 3, 0, 4, 0, 0, 0, 4, 0, 0, 1, 0][..]);
        assert!(dec.decode(&mut b).is_err());
    }
}
