//! Bounds-checked cursor over a byte slice: the only place that reads MQTT's primitive types.

/// Where each byte's seven value bits go in an MQTT variable byte integer (at most four bytes).
const VARINT_SHIFTS: [u32; 4] = [0, 7, 14, 21];

/// Why a variable byte integer could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VarintError {
    /// The input ends before the byte without a continuation bit.
    Short,
    /// The fourth byte still has its continuation bit set.
    TooLong,
}

/// A forward-only reader: every method returns `None` (or an error) instead of reading past the
/// end. After a failure the position is unspecified; callers stop at the first failure.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { rest: buf }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.rest.split_at_checked(n)?;
        self.rest = tail;
        Some(head)
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        let (&byte, tail) = self.rest.split_first()?;
        self.rest = tail;
        Some(byte)
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        let (head, tail) = self.rest.split_first_chunk::<2>()?;
        self.rest = tail;
        Some(u16::from_be_bytes(*head))
    }

    /// A field prefixed by a two-byte big-endian length (UTF-8 string or binary data).
    pub(crate) fn prefixed(&mut self) -> Option<&'a [u8]> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    /// A variable byte integer of at most four bytes. Non-minimal encodings are accepted.
    pub(crate) fn varint(&mut self) -> Result<u32, VarintError> {
        let mut value = 0u32;
        // Seven bits per byte, least significant group first.
        for shift in VARINT_SHIFTS {
            let byte = self.u8().ok_or(VarintError::Short)?;
            value |= u32::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(VarintError::TooLong)
    }

    /// How many bytes have not been read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }
}
