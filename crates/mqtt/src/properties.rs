//! MQTT 5 property lists: checks that a CONNECT or will property list is well formed without
//! interpreting the values.

use crate::reader::{Reader, VarintError};
use crate::Invalid;

/// Which packet part a property list belongs to; each allows its own set of identifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The CONNECT variable header (MQTT 5 §3.1.2.11).
    Connect,
    /// The will properties in the CONNECT payload (MQTT 5 §3.1.3.2).
    Will,
}

/// How a property's value is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value {
    /// A byte, two-byte or four-byte integer of this many bytes.
    Fixed(usize),
    /// A UTF-8 string or binary data: a two-byte length, then that many bytes.
    Prefixed,
    /// A UTF-8 string pair (user property): two prefixed fields.
    Pair,
}

/// The only property that may appear more than once in a list.
const USER_PROPERTY: u32 = 0x26;

impl Scope {
    /// The encoding of property `id`, or `None` when `id` is not allowed in this list.
    fn value(self, id: u32) -> Option<Value> {
        let value = match (self, id) {
            (_, USER_PROPERTY) => Value::Pair,
            // Session Expiry Interval, Maximum Packet Size.
            (Self::Connect, 0x11 | 0x27) => Value::Fixed(4),
            // Receive Maximum, Topic Alias Maximum.
            (Self::Connect, 0x21 | 0x22) => Value::Fixed(2),
            // Request Response Information, Request Problem Information.
            (Self::Connect, 0x19 | 0x17) => Value::Fixed(1),
            // Authentication Method, Authentication Data.
            (Self::Connect, 0x15 | 0x16) => Value::Prefixed,
            // Will Delay Interval, Message Expiry Interval.
            (Self::Will, 0x18 | 0x02) => Value::Fixed(4),
            // Payload Format Indicator.
            (Self::Will, 0x01) => Value::Fixed(1),
            // Content Type, Response Topic, Correlation Data.
            (Self::Will, 0x03 | 0x08 | 0x09) => Value::Prefixed,
            _ => return None,
        };
        Some(value)
    }
}

/// Reads a property list (its variable byte integer length, then the properties) from the
/// packet and returns the raw properties without the length.
///
/// A length that runs past the packet is [`Invalid::Truncated`]; anything wrong inside the list
/// (including a length varint longer than four bytes) is [`Invalid::Properties`].
pub(crate) fn read<'a>(packet: &mut Reader<'a>, scope: Scope) -> Result<&'a [u8], Invalid> {
    let len = packet.varint().map_err(|e| match e {
        VarintError::Short => Invalid::Truncated,
        VarintError::TooLong => Invalid::Properties,
    })?;
    let len = usize::try_from(len).map_err(|_| Invalid::Truncated)?;
    let list = packet.take(len).ok_or(Invalid::Truncated)?;
    validate(list, scope)?;
    Ok(list)
}

/// Checks that `list` is a sequence of properties allowed in `scope`, each complete, with no
/// property other than User Property repeated.
fn validate(list: &[u8], scope: Scope) -> Result<(), Invalid> {
    let mut props = Reader::new(list);
    // Every allowed identifier is below 64, so one bit per identifier fits in a `u64`.
    let mut seen = 0u64;
    while !props.is_empty() {
        let id = props.varint().map_err(|_| Invalid::Properties)?;
        let value = scope.value(id).ok_or(Invalid::Properties)?;
        if id != USER_PROPERTY {
            let bit = 1u64 << id;
            if seen & bit != 0 {
                return Err(Invalid::Properties);
            }
            seen |= bit;
        }
        let complete = match value {
            Value::Fixed(n) => props.take(n).is_some(),
            Value::Prefixed => props.prefixed().is_some(),
            Value::Pair => props.prefixed().and_then(|_| props.prefixed()).is_some(),
        };
        if !complete {
            return Err(Invalid::Properties);
        }
    }
    Ok(())
}
