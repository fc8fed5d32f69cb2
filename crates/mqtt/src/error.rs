//! Why the first packet of a connection is not an acceptable CONNECT.

use core::fmt;

/// Why the first packet is not an acceptable CONNECT. Every variant is final: more bytes
/// cannot make the packet valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// The first byte is not `0x10` (packet type 1 with reserved flags 0).
    NotConnect(u8),
    /// The remaining length is a variable byte integer longer than four bytes.
    RemainingLength,
    /// The protocol level is not 3 (MQTT 3.1), 4 (3.1.1) or 5 (5.0).
    UnsupportedLevel(u8),
    /// The reserved bit 0 of the connect flags is set.
    ReservedFlag,
    /// The connect flags contradict each other: will QoS or will retain without the will flag,
    /// will QoS 3, or (before MQTT 5) the password flag without the user name flag.
    InconsistentFlags,
    /// A field (protocol name, client id, will, user name, password or property list) runs
    /// past the packet's remaining length.
    Truncated,
    /// An MQTT 5 property list is malformed: a bad variable byte integer, an identifier not
    /// allowed in that list, a repeated property, or a value running past the list's end.
    Properties,
    /// The fields end before the packet's remaining length does.
    TrailingBytes,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // APISIX's wording, which its error log tests grep for.
            Self::NotConnect(byte) => {
                write!(f, "Received unexpected MQTT packet type+flags: {byte}")
            }
            Self::RemainingLength => f.write_str("remaining length is longer than 4 bytes"),
            Self::UnsupportedLevel(level) => write!(f, "unsupported protocol level: {level}"),
            Self::ReservedFlag => f.write_str("reserved connect flag is set"),
            Self::InconsistentFlags => f.write_str("inconsistent connect flags"),
            Self::Truncated => f.write_str("a field runs past the end of the packet"),
            Self::Properties => f.write_str("malformed properties"),
            Self::TrailingBytes => f.write_str("unexpected bytes after the last field"),
        }
    }
}

impl core::error::Error for Invalid {}
