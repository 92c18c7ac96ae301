//! SPDY/3 header blocks: the name/value block layout and its zlib compression.
//!
//! Every header block in one direction of a session goes through one zlib stream primed with
//! the SPDY/3 dictionary, flushed with `Z_SYNC_FLUSH` after each block, so the compressor and
//! the decompressor are long-lived and must see blocks in wire order.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::SpdyError;

/// Header names and values of one block. Names are lower case on the wire; several values of
/// one name are joined with NUL, as SPDY/3 sends them.
pub type Headers = Vec<(String, String)>;

/// The words of the SPDY/3 dictionary that are stored with a 4-byte big-endian length prefix,
/// in order (SPDY draft 3, section 2.6.10.1).
const DICTIONARY_WORDS: &[&str] = &[
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

/// The dictionary's tail, stored without length prefixes.
const DICTIONARY_TAIL: &str = concat!(
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
    "203 Non-Authoritative Information",
    "204 No Content",
    "301 Moved Permanently",
    "400 Bad Request",
    "401 Unauthorized",
    "403 Forbidden",
    "404 Not Found",
    "500 Internal Server Error",
    "501 Not Implemented",
    "503 Service Unavailable",
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec",
    " 00:00:00",
    " Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,",
    "text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdch",
    "charset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
);

/// The SPDY/3 zlib dictionary (1423 bytes), built from its parts.
pub fn dictionary() -> &'static [u8] {
    static DICT: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    DICT.get_or_init(|| {
        let mut d = Vec::with_capacity(1423);
        for w in DICTIONARY_WORDS {
            d.extend_from_slice(&(w.len() as u32).to_be_bytes());
            d.extend_from_slice(w.as_bytes());
        }
        d.extend_from_slice(DICTIONARY_TAIL.as_bytes());
        d
    })
}

/// Serialises a header block (uncompressed).
pub fn encode_block(headers: &Headers) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        out.extend_from_slice(&(name.len() as u32).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// Parses an uncompressed header block.
pub fn decode_block(mut b: &[u8]) -> Result<Headers, SpdyError> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], SpdyError> {
        if b.len() < n {
            return Err(SpdyError::Protocol("truncated header block".into()));
        }
        let (head, rest) = b.split_at(n);
        *b = rest;
        Ok(head)
    }
    fn u32_of(b: &mut &[u8]) -> Result<usize, SpdyError> {
        let v = take(b, 4)?;
        Ok(u32::from_be_bytes([v[0], v[1], v[2], v[3]]) as usize)
    }
    let count = u32_of(&mut b)?;
    // Each pair takes at least 8 bytes: a count beyond that is a lie, not a reason to allocate.
    if count > b.len() / 8 + 1 {
        return Err(SpdyError::Protocol(format!(
            "header block claims {count} headers"
        )));
    }
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        let n = u32_of(&mut b)?;
        let name = String::from_utf8_lossy(take(&mut b, n)?).into_owned();
        let n = u32_of(&mut b)?;
        let value = String::from_utf8_lossy(take(&mut b, n)?).into_owned();
        headers.push((name, value));
    }
    Ok(headers)
}

/// The compressing half: one per sending direction of a session.
pub struct HeaderCompressor {
    z: Compress,
}

impl Default for HeaderCompressor {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderCompressor {
    /// A compressor primed with the SPDY dictionary.
    pub fn new() -> Self {
        let mut z = Compress::new(Compression::best(), true);
        // Cannot fail on a fresh stream; if it did, the peer would report a bad block.
        let _ = z.set_dictionary(dictionary());
        HeaderCompressor { z }
    }

    /// Compresses one header block, sync-flushed so the peer can decode it at once.
    pub fn compress(&mut self, headers: &Headers) -> Result<Vec<u8>, SpdyError> {
        let input = encode_block(headers);
        let mut out = Vec::with_capacity(input.len() + 64);
        let start_in = self.z.total_in();
        loop {
            let consumed = (self.z.total_in() - start_in) as usize;
            if out.capacity() - out.len() < 64 {
                out.reserve(256);
            }
            self.z
                .compress_vec(&input[consumed..], &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError::Protocol(format!("compressing headers: {e}")))?;
            let consumed = (self.z.total_in() - start_in) as usize;
            // Done once all input is in and the flush left spare room in the output.
            if consumed == input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// The decompressing half: one per receiving direction of a session.
pub struct HeaderDecompressor {
    z: Decompress,
}

impl Default for HeaderDecompressor {
    fn default() -> Self {
        Self::new()
    }
}

/// Largest decompressed header block accepted.
const MAX_HEADER_BLOCK: usize = 1 << 20;

impl HeaderDecompressor {
    /// A decompressor that supplies the SPDY dictionary when the stream asks for it.
    pub fn new() -> Self {
        HeaderDecompressor {
            z: Decompress::new(true),
        }
    }

    /// Decompresses one header block and parses it.
    pub fn decompress(&mut self, input: &[u8]) -> Result<Headers, SpdyError> {
        let mut out = Vec::with_capacity(input.len() * 4 + 64);
        let start_in = self.z.total_in();
        loop {
            let consumed = (self.z.total_in() - start_in) as usize;
            if out.capacity() - out.len() < 256 {
                out.reserve(1024);
            }
            let before_out = out.len();
            match self
                .z
                .decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)
            {
                Ok(Status::StreamEnd) => break,
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.z
                        .set_dictionary(dictionary())
                        .map_err(|e| SpdyError::Protocol(format!("header dictionary: {e}")))?;
                    continue;
                }
                Err(e) => {
                    return Err(SpdyError::Protocol(format!("decompressing headers: {e}")));
                }
            }
            let consumed = (self.z.total_in() - start_in) as usize;
            if out.len() > MAX_HEADER_BLOCK {
                return Err(SpdyError::Protocol("header block too large".into()));
            }
            // All input used and the output not filled to the brim: the block is complete.
            if consumed == input.len() && out.len() < out.capacity() {
                break;
            }
            if consumed == input.len() && out.len() == before_out {
                break;
            }
        }
        decode_block(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    #[test]
    fn dictionary_is_the_spdy3_one() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        let hex: String = sha2::Sha256::digest(d)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02"
        );
    }

    #[test]
    fn blocks_roundtrip_through_one_zlib_stream() {
        let mut c = HeaderCompressor::new();
        let mut d = HeaderDecompressor::new();
        let a: Headers = vec![
            ("streamtype".into(), "error".into()),
            ("port".into(), "8080".into()),
            ("requestid".into(), "0".into()),
        ];
        let b: Headers = vec![
            ("streamtype".into(), "data".into()),
            ("port".into(), "8080".into()),
            ("requestid".into(), "0".into()),
        ];
        let ca = c.compress(&a).unwrap();
        let cb = c.compress(&b).unwrap();
        let empty = c.compress(&Vec::new()).unwrap();
        // A zlib header announcing a preset dictionary (FDICT) opens the stream.
        assert_eq!(ca[1] & 0x20, 0x20);
        assert_eq!(d.decompress(&ca).unwrap(), a);
        assert_eq!(d.decompress(&cb).unwrap(), b);
        assert_eq!(d.decompress(&empty).unwrap(), Vec::new());
    }

    #[test]
    fn names_are_lowercased_and_bad_blocks_rejected() {
        let block = encode_block(&vec![("StreamType".into(), "data".into())]);
        assert_eq!(
            decode_block(&block).unwrap(),
            vec![("streamtype".to_string(), "data".to_string())]
        );
        assert!(decode_block(&[0, 0, 0, 9]).is_err());
        assert!(decode_block(&[0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(HeaderDecompressor::new().decompress(b"not zlib").is_err());
    }
}
