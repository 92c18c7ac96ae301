//! The protobuf wire format: varints, keys and length-delimited fields, read without panics.

use super::DecodeError;

/// How a field is encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireType {
    /// 0: a varint.
    Varint,
    /// 1: eight bytes.
    Fixed64,
    /// 2: a length and that many bytes.
    Len,
    /// 5: four bytes.
    Fixed32,
}

/// A cursor over an encoded message.
pub struct Reader<'a> {
    buf: &'a [u8],
}

fn truncated() -> DecodeError {
    DecodeError("unexpected end of protobuf data".into())
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    /// Whether everything has been read.
    pub fn done(&self) -> bool {
        self.buf.is_empty()
    }

    /// A varint.
    pub fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let (&b, rest) = self.buf.split_first().ok_or_else(truncated)?;
            self.buf = rest;
            v |= ((b & 0x7f) as u64) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError("protobuf varint too long".into()))
    }

    /// The next field's tag and wire type, or None at the end.
    pub fn key(&mut self) -> Result<Option<(u64, WireType)>, DecodeError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let k = self.varint()?;
        let wt = match k & 7 {
            0 => WireType::Varint,
            1 => WireType::Fixed64,
            2 => WireType::Len,
            5 => WireType::Fixed32,
            other => {
                return Err(DecodeError(format!(
                    "unsupported protobuf wire type {other}"
                )));
            }
        };
        Ok(Some((k >> 3, wt)))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() {
            return Err(truncated());
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// A length-delimited field's bytes.
    pub fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = usize::try_from(self.varint()?).map_err(|_| truncated())?;
        self.take(n)
    }

    /// A length-delimited field as UTF-8 text.
    pub fn string(&mut self) -> Result<String, DecodeError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec())
            .map_err(|_| DecodeError("invalid UTF-8 in protobuf string".into()))
    }

    /// Eight little-endian bytes.
    pub fn fixed64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().map_err(|_| truncated())?))
    }

    /// Four little-endian bytes.
    pub fn fixed32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes(b.try_into().map_err(|_| truncated())?))
    }

    /// Skips a field's value.
    pub fn skip(&mut self, wt: WireType) -> Result<(), DecodeError> {
        match wt {
            WireType::Varint => self.varint().map(|_| ()),
            WireType::Fixed64 => self.take(8).map(|_| ()),
            WireType::Fixed32 => self.take(4).map(|_| ()),
            WireType::Len => self.bytes().map(|_| ()),
        }
    }
}
