//! A cursor over one message's bytes. Every read checks what is left first, so short or hostile
//! input is a [`DecodeError`] naming the field and offset, never a panic; and every count is
//! checked against what is left before anything is allocated for it.

use super::error::DecodeError;

pub(super) struct Reader<'a> {
    rest: &'a [u8],
    len: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Reader {
            rest: bytes,
            len: bytes.len(),
        }
    }

    /// Offset of the next unread byte from the start of the message.
    pub(super) fn offset(&self) -> usize {
        self.len - self.rest.len()
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let Some((head, rest)) = self.rest.split_first_chunk::<N>() else {
            return Err(DecodeError::UnexpectedEnd {
                field,
                offset: self.offset(),
                needed: N,
                remaining: self.rest.len(),
            });
        };
        self.rest = rest;
        Ok(*head)
    }

    pub(super) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        self.array::<1>(field).map(|[byte]| byte)
    }

    pub(super) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        self.array(field).map(u32::from_be_bytes)
    }

    pub(super) fn i32(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        self.array(field).map(i32::from_be_bytes)
    }

    pub(super) fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        self.array(field).map(u64::from_be_bytes)
    }

    pub(super) fn i64(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        self.array(field).map(i64::from_be_bytes)
    }

    /// A NUL-terminated UTF-8 string (the protocol's `String`), without its NUL.
    pub(super) fn cstr(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        let offset = self.offset();
        let nul = self.rest.iter().position(|&b| b == 0);
        let Some((text, rest)) = nul.and_then(|at| self.rest.split_at_checked(at)) else {
            return Err(DecodeError::UnterminatedString { field, offset });
        };
        let text = utf8(text, field, offset)?;
        self.rest = rest.get(1..).unwrap_or_default();
        Ok(text)
    }

    /// An `Int32` byte length followed by that many bytes.
    pub(super) fn counted_bytes(&mut self, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let offset = self.offset();
        let value = self.i32(field)?;
        let length = usize::try_from(value).map_err(|_| DecodeError::NegativeLength {
            field,
            offset,
            value,
        })?;
        let Some((bytes, rest)) = self.rest.split_at_checked(length) else {
            return Err(DecodeError::LengthExceedsInput {
                field,
                offset,
                length,
                remaining: self.rest.len(),
            });
        };
        self.rest = rest;
        Ok(bytes)
    }

    /// An `Int32` byte length followed by that many bytes of UTF-8.
    pub(super) fn counted_str(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        let offset = self.offset() + 4;
        let bytes = self.counted_bytes(field)?;
        utf8(bytes, field, offset)
    }

    /// An `Int16` count of entries that take at least `min_size` bytes each, checked against
    /// what is left so the caller may allocate for it.
    pub(super) fn count16(
        &mut self,
        field: &'static str,
        min_size: usize,
    ) -> Result<usize, DecodeError> {
        let offset = self.offset();
        let value = i16::from_be_bytes(self.array(field)?);
        self.check_count(field, offset, i32::from(value), min_size)
    }

    /// An `Int32` count of entries that take at least `min_size` bytes each, checked against
    /// what is left so the caller may allocate for it.
    pub(super) fn count32(
        &mut self,
        field: &'static str,
        min_size: usize,
    ) -> Result<usize, DecodeError> {
        let offset = self.offset();
        let value = self.i32(field)?;
        self.check_count(field, offset, value, min_size)
    }

    fn check_count(
        &self,
        field: &'static str,
        offset: usize,
        value: i32,
        min_size: usize,
    ) -> Result<usize, DecodeError> {
        let count = usize::try_from(value).map_err(|_| DecodeError::NegativeLength {
            field,
            offset,
            value,
        })?;
        let remaining = self.rest.len();
        if count.saturating_mul(min_size) > remaining {
            return Err(DecodeError::CountExceedsInput {
                field,
                offset,
                count,
                min_size,
                remaining,
            });
        }
        Ok(count)
    }

    /// Bytes left to read.
    pub(super) fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// Checks that the whole message was read.
    pub(super) fn finish(&self, message: &'static str) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                message,
                offset: self.offset(),
                count: self.rest.len(),
            })
        }
    }
}

fn utf8<'a>(bytes: &'a [u8], field: &'static str, offset: usize) -> Result<&'a str, DecodeError> {
    std::str::from_utf8(bytes).map_err(|e| DecodeError::InvalidUtf8 {
        field,
        offset,
        invalid_at: offset + e.valid_up_to(),
    })
}
