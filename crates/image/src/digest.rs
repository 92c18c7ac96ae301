//! sha256 digests: parsing `sha256:<hex>` and hashing while streaming.

use std::io::{self, Read};

use sha2::{Digest as _, Sha256};

/// The hex part of a `sha256:<64 hex>` digest, or an error naming the bad digest.
pub(crate) fn sha256_hex(digest: &str) -> Result<&str, String> {
    match digest.strip_prefix("sha256:") {
        Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(hex),
        _ => Err(format!(
            "unsupported or invalid digest {digest:?} (only sha256:<64 hex digits> is supported)"
        )),
    }
}

/// `sha256:<hex>` of bytes.
pub(crate) fn sha256_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Incremental sha256 with a byte count.
#[derive(Default, Clone)]
pub(crate) struct Hasher {
    inner: Sha256,
    count: u64,
}

impl Hasher {
    /// Adds bytes.
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.inner.update(bytes);
        self.count += bytes.len() as u64;
    }
    /// Bytes seen so far.
    pub(crate) fn count(&self) -> u64 {
        self.count
    }
    /// `sha256:<hex>` of everything seen.
    pub(crate) fn digest(self) -> String {
        format!("sha256:{}", hex(&self.inner.finalize()))
    }
}

/// A reader that hashes what passes through it (used to compute a layer's diff id while
/// unpacking it).
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Hasher::default(),
        }
    }
    /// Reads the rest of the stream (tar archives end before their padding does) and returns
    /// the digest of everything read.
    pub(crate) fn finish(mut self) -> io::Result<String> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(self.hasher.digest())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests() {
        assert_eq!(
            sha256_of(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let mut r = HashingReader::new(&b"abc"[..]);
        let mut first = [0u8; 1];
        r.read_exact(&mut first).unwrap();
        assert_eq!(r.finish().unwrap(), sha256_of(b"abc"));
        assert!(sha256_hex("sha256:abc").is_err());
        assert!(sha256_hex("md5:00").is_err());
    }
}
