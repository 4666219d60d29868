//! The bounds-checked byte cursor.

/// Why a [`Reader`] refused a read. Offsets are relative to the reader's own input
/// (a [`Reader::sub`] reader counts from the start of its part).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// Fewer bytes than the field needs.
    #[error("{field} needs {need} bytes at offset {offset}, {have} left")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Where it starts.
        offset: usize,
        /// Its size.
        need: usize,
        /// The bytes from `offset` to the end of the input.
        have: usize,
    },
    /// A length the input declares is larger than what follows it.
    #[error("{field} declares {declared} bytes but only {available} follow")]
    Length {
        /// The field whose length was declared.
        field: &'static str,
        /// Where it starts.
        offset: usize,
        /// The declared length.
        declared: usize,
        /// The bytes that follow.
        available: usize,
    },
    /// A length or count the input declares is over its named bound.
    #[error("{what} is {len}, over the limit of {max}")]
    TooLarge {
        /// What was declared.
        what: &'static str,
        /// The declared value.
        len: usize,
        /// The bound.
        max: usize,
    },
}

/// A cursor over untrusted bytes. Sequential reads (`take`, `u32`, `sub`, ...) move
/// it; the `*_at` reads address the whole input by absolute offset and do not.
/// Integers are little-endian, as in every format it reads.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    /// The whole input's length.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether the whole input is empty.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Bytes read so far: the offset of the next sequential read.
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// How many bytes are left to read.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// The bytes left to read.
    pub fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
    }

    /// Takes `n` bytes, or fails naming `field`.
    pub fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], CodecError> {
        let s = self.bytes_at(self.pos, n, field)?;
        self.pos += n;
        Ok(s)
    }

    /// Takes `N` bytes as an array.
    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], CodecError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, field)?);
        Ok(a)
    }

    /// Takes one byte.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, CodecError> {
        Ok(self.array::<1>(field)?[0])
    }

    /// Takes a little-endian `u16`.
    pub fn u16(&mut self, field: &'static str) -> Result<u16, CodecError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    /// Takes a little-endian `u32`.
    pub fn u32(&mut self, field: &'static str) -> Result<u32, CodecError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    /// Takes a little-endian `u64`.
    pub fn u64(&mut self, field: &'static str) -> Result<u64, CodecError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    /// Takes a little-endian `u32` length and checks it against `max` before it is
    /// used: over it is [`CodecError::TooLarge`] naming `what`.
    pub fn len_u32(
        &mut self,
        field: &'static str,
        what: &'static str,
        max: usize,
    ) -> Result<usize, CodecError> {
        let len = usize::try_from(self.u32(field)?).unwrap_or(usize::MAX);
        if len > max {
            return Err(CodecError::TooLarge { what, len, max });
        }
        Ok(len)
    }

    /// A reader over the next `n` bytes, where `n` came from the input: a length
    /// larger than what remains is [`CodecError::Length`], not a truncation of one
    /// field. The sub-reader's offsets start at 0.
    pub fn sub(&mut self, n: usize, field: &'static str) -> Result<Reader<'a>, CodecError> {
        if n > self.remaining() {
            return Err(CodecError::Length {
                field,
                offset: self.pos,
                declared: n,
                available: self.remaining(),
            });
        }
        Ok(Reader::new(self.take(n, field)?))
    }

    /// `n` bytes at absolute `offset` of the input.
    pub fn bytes_at(
        &self,
        offset: usize,
        n: usize,
        field: &'static str,
    ) -> Result<&'a [u8], CodecError> {
        offset
            .checked_add(n)
            .and_then(|end| self.buf.get(offset..end))
            .ok_or(CodecError::Truncated {
                field,
                offset,
                need: n,
                have: self.buf.len().saturating_sub(offset),
            })
    }

    /// `N` bytes at absolute `offset` as an array.
    pub fn array_at<const N: usize>(
        &self,
        offset: usize,
        field: &'static str,
    ) -> Result<[u8; N], CodecError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes_at(offset, N, field)?);
        Ok(a)
    }

    /// A little-endian `u16` at absolute `offset`.
    pub fn u16_at(&self, offset: usize, field: &'static str) -> Result<u16, CodecError> {
        self.array_at(offset, field).map(u16::from_le_bytes)
    }

    /// A little-endian `u32` at absolute `offset`.
    pub fn u32_at(&self, offset: usize, field: &'static str) -> Result<u32, CodecError> {
        self.array_at(offset, field).map(u32::from_le_bytes)
    }

    /// A little-endian `u64` at absolute `offset`.
    pub fn u64_at(&self, offset: usize, field: &'static str) -> Result<u64, CodecError> {
        self.array_at(offset, field).map(u64::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_overruns() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16("a").unwrap(), 0x0201);
        assert_eq!(
            r.u16("b").unwrap_err(),
            CodecError::Truncated {
                field: "b",
                offset: 2,
                need: 2,
                have: 1
            }
        );
        assert!(r.take(usize::MAX, "huge").is_err());
        assert_eq!(
            r.sub(usize::MAX, "huge").unwrap_err(),
            CodecError::Length {
                field: "huge",
                offset: 2,
                declared: usize::MAX,
                available: 1
            }
        );
        assert_eq!(r.rest(), &[3]);
        assert_eq!(r.take(1, "c").unwrap(), &[3]);
        assert_eq!(r.remaining(), 0);
        assert!(r.rest().is_empty());
        assert_eq!(r.offset(), 3);
    }

    #[test]
    fn sub_readers_count_from_their_start() {
        let mut r = Reader::new(&[9, 1, 0, 0, 0, 7]);
        r.u8("skip").unwrap();
        let mut s = r.sub(4, "part").unwrap();
        assert_eq!(s.u32("v").unwrap(), 1);
        assert_eq!(
            s.u8("w").unwrap_err(),
            CodecError::Truncated {
                field: "w",
                offset: 4,
                need: 1,
                have: 0
            }
        );
        assert_eq!(r.u8("last").unwrap(), 7);
    }

    #[test]
    fn absolute_reads_do_not_move() {
        let r = Reader::new(&[1, 0, 2, 0, 0, 0]);
        assert_eq!(r.u16_at(0, "a").unwrap(), 1);
        assert_eq!(r.u32_at(2, "b").unwrap(), 2);
        assert_eq!(r.offset(), 0);
        assert_eq!(
            r.u64_at(2, "c").unwrap_err(),
            CodecError::Truncated {
                field: "c",
                offset: 2,
                need: 8,
                have: 4
            }
        );
        assert_eq!(
            r.bytes_at(usize::MAX, 2, "d").unwrap_err(),
            CodecError::Truncated {
                field: "d",
                offset: usize::MAX,
                need: 2,
                have: 0
            }
        );
    }

    #[test]
    fn declared_lengths_are_bounded() {
        let mut r = Reader::new(&[5, 0, 0, 0, 4, 0, 0, 0]);
        assert_eq!(
            r.len_u32("n", "count", 4).unwrap_err(),
            CodecError::TooLarge {
                what: "count",
                len: 5,
                max: 4
            }
        );
        assert_eq!(r.len_u32("m", "count", 4).unwrap(), 4);
    }
}
