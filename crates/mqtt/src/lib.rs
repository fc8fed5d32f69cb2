//! Decoder of the first packet of an MQTT connection (a CONNECT of MQTT 3.1, 3.1.1 or 5.0),
//! for the `mqtt-proxy` stream plugin, which peeks at that packet to route by client id.
//!
//! [`decode_connect`] works on the bytes received so far: it never performs I/O, never
//! allocates (the crate is `no_std` without `alloc`), never panics, and borrows every field
//! from the input. It either asks for more bytes, rejects the packet for good, or returns the
//! decoded [`Connect`], strictly validated against the MQTT specifications.
//!
//! Checked: the first byte (exactly `0x10`), the remaining length, the level (3, 4 or 5), the
//! connect flags (reserved bit, will QoS/retain without a will, will QoS 3, and before 5.0 a
//! password without a user name), every length against the packet's end, no trailing bytes,
//! and MQTT 5 property lists (identifiers allowed in that list, complete values, no repeats
//! except User Property). Left to the caller or the broker: the protocol name (the plugin
//! compares it with its config), UTF-8 validity ([`Connect::client_id_str`]), property values
//! and client-id rules (an empty id is accepted).
//!
//! ```
//! use sg_mqtt::{decode_connect, Decoded};
//!
//! let packet = b"\x10\x0f\x00\x04MQTT\x04\x02\x00\x3c\x00\x03foo";
//! assert_eq!(decode_connect(&packet[..1]), Decoded::Incomplete(2));
//! assert_eq!(decode_connect(&packet[..5]), Decoded::Incomplete(17));
//! let Decoded::Connect(connect) = decode_connect(packet) else { panic!("a valid CONNECT") };
//! assert_eq!(connect.client_id_str(), Some("foo"));
//! assert_eq!((connect.level, connect.keep_alive, connect.packet_len), (4, 60, 17));
//! ```

#![no_std]
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
// Input-derived values must never panic: no indexing, unwrapping or unchecked arithmetic.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

mod connect;
mod error;
mod properties;
mod reader;

pub use connect::{Connect, ConnectFlags, Will};
pub use error::Invalid;

use reader::{Reader, VarintError};

/// The first byte of a CONNECT packet: type 1, reserved flags 0.
const CONNECT: u8 = 0x10;

/// The outcome of decoding the bytes received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// More bytes are needed: the total number of bytes (from the start of the buffer) needed
    /// before decoding can progress. It is 2 when the buffer is `[0x10]`, and the whole packet's
    /// length once the remaining length is known. Always greater than the buffer's length.
    Incomplete(usize),
    /// The packet is not an acceptable CONNECT, whatever bytes follow.
    Invalid(Invalid),
    /// A complete, valid CONNECT packet.
    Connect(Connect<'a>),
}

/// Decodes the CONNECT packet at the start of `buf`, the bytes received so far on a connection.
///
/// The first byte is checked as soon as it is present. The packet is only parsed once all of
/// it is in `buf`; bytes after it (pipelined packets) are ignored.
pub fn decode_connect(buf: &[u8]) -> Decoded<'_> {
    let (body, packet_len) = match frame(buf) {
        Ok(frame) => frame,
        Err(Unframed::Incomplete(needed)) => return Decoded::Incomplete(needed),
        Err(Unframed::Invalid(invalid)) => return Decoded::Invalid(invalid),
    };
    match connect::parse(body, packet_len) {
        Ok(connect) => Decoded::Connect(connect),
        Err(invalid) => Decoded::Invalid(invalid),
    }
}

/// The protocol name and level of the complete CONNECT packet at the start of `buf`, or
/// `None` when they cannot be read.
///
/// It lets a caller that got [`Invalid::UnsupportedLevel`] check the protocol name first,
/// as APISIX does.
pub fn protocol(buf: &[u8]) -> Option<(&[u8], u8)> {
    let (body, _) = frame(buf).ok()?;
    connect::protocol(&mut Reader::new(body)).ok()
}

/// The protocol name and level of the CONNECT at the start of `buf`, read from its first bytes
/// even when the rest of the packet has not arrived (or would not fit), or `None` when they
/// cannot be read yet.
///
/// It lets a caller refusing an oversized CONNECT answer in the client's protocol version.
pub fn protocol_prefix(buf: &[u8]) -> Option<(&[u8], u8)> {
    let mut r = Reader::new(buf);
    if r.u8()? != CONNECT {
        return None;
    }
    r.varint().ok()?;
    connect::protocol(&mut r).ok()
}

/// Why the fixed header does not frame a complete CONNECT packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unframed {
    /// As [`Decoded::Incomplete`].
    Incomplete(usize),
    /// As [`Decoded::Invalid`].
    Invalid(Invalid),
}

/// Checks the fixed header and returns the packet's body (exactly its remaining length) and
/// total length.
fn frame(buf: &[u8]) -> Result<(&[u8], usize), Unframed> {
    let mut r = Reader::new(buf);
    let first = r.u8().ok_or(Unframed::Incomplete(1))?;
    if first != CONNECT {
        return Err(Unframed::Invalid(Invalid::NotConnect(first)));
    }
    let remaining = match r.varint() {
        Ok(remaining) => remaining,
        // A slice never holds more than `isize::MAX` bytes, so this never saturates.
        Err(VarintError::Short) => return Err(Unframed::Incomplete(buf.len().saturating_add(1))),
        Err(VarintError::TooLong) => return Err(Unframed::Invalid(Invalid::RemainingLength)),
    };
    // The reader never holds more than `buf`, so this never saturates.
    let header_len = buf.len().saturating_sub(r.remaining());
    let too_long = Unframed::Invalid(Invalid::RemainingLength);
    let body_len = usize::try_from(remaining).map_err(|_| too_long)?;
    let packet_len = header_len.checked_add(body_len).ok_or(too_long)?;
    let body = r.take(body_len).ok_or(Unframed::Incomplete(packet_len))?;
    Ok((body, packet_len))
}
