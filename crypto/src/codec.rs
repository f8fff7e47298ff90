//! Canonical binary encoding helpers.
//!
//! Our encodings are specified byte for byte in `specs/` and are signed, so
//! they must never depend on what a serialisation library happens to emit
//! (field order, varint choices, trailing data). The formats are small and
//! flat, so a tiny hand-written reader/writer that rejects every
//! non-canonical form is simpler to audit than a generic serde format.

use crate::error::DecodeError;

/// Appends canonical big-endian fields to a buffer.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            buf: Vec::with_capacity(capacity),
        }
    }

    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    pub(crate) fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub(crate) fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }

    /// A string of at most 255 bytes, prefixed by its length as one byte.
    /// Callers validate the length before (labels are at most 64 bytes).
    pub(crate) fn short_str(&mut self, v: &str) -> &mut Self {
        let len = u8::try_from(v.len()).unwrap_or(u8::MAX);
        self.buf.push(len);
        self.buf
            .extend_from_slice(&v.as_bytes()[..usize::from(len)]);
        self
    }

    pub(crate) fn into_vec(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads canonical fields; every read checks the remaining length.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.buf.len())
            .ok_or(DecodeError::Truncated { what })?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    pub(crate) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn short_str(&mut self, what: &'static str) -> Result<&'a str, DecodeError> {
        let len = self.u8(what)?;
        let raw = self.take(usize::from(len), what)?;
        std::str::from_utf8(raw).map_err(|_| DecodeError::InvalidUtf8 { what })
    }

    /// Fails unless every byte was consumed: trailing bytes would make two
    /// different byte strings decode to the same value.
    pub(crate) fn finish(self, what: &'static str) -> Result<(), DecodeError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                what,
                count: self.buf.len() - self.pos,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_rejects_short_input_and_trailing_bytes() {
        let mut w = Writer::default();
        w.u8(7).u16(0x0102).u64(9).short_str("héllo");
        let bytes = w.into_vec();

        let mut r = Reader::new(&bytes);
        assert_eq!(r.u8("a").unwrap(), 7);
        assert_eq!(r.u16("b").unwrap(), 0x0102);
        assert_eq!(r.u64("c").unwrap(), 9);
        assert_eq!(r.short_str("d").unwrap(), "héllo");
        r.finish("x").unwrap();

        for cut in 0..bytes.len() {
            let mut r = Reader::new(&bytes[..cut]);
            let res = (|| {
                r.u8("a")?;
                r.u16("b")?;
                r.u64("c")?;
                r.short_str("d")?;
                Ok::<_, DecodeError>(())
            })();
            assert!(
                matches!(res, Err(DecodeError::Truncated { .. })),
                "cut {cut}"
            );
        }

        let mut longer = bytes.clone();
        longer.push(0);
        let mut r = Reader::new(&longer);
        r.take(bytes.len(), "all").unwrap();
        assert!(matches!(
            r.finish("x"),
            Err(DecodeError::TrailingBytes { count: 1, .. })
        ));
    }
}
