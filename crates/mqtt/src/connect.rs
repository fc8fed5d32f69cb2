//! The CONNECT packet's variable header and payload, parsed within the packet's bounds.

use crate::properties::{self, Scope};
use crate::reader::Reader;
use crate::Invalid;

/// A decoded CONNECT packet. Every slice borrows from the decoded buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connect<'a> {
    /// The protocol name as sent ("MQTT" for levels 4 and 5, "MQIsdp" for level 3); it is not
    /// checked against the level.
    pub protocol_name: &'a [u8],
    /// The protocol level: 3, 4 or 5.
    pub level: u8,
    /// The connect flags.
    pub flags: ConnectFlags,
    /// The keep-alive interval in seconds.
    pub keep_alive: u16,
    /// The raw MQTT 5 CONNECT properties, without their length (empty before level 5); known
    /// to be a well-formed property list.
    pub properties: &'a [u8],
    /// The client identifier, possibly empty; not checked to be UTF-8.
    pub client_id: &'a [u8],
    /// The will, present exactly when the will flag is set.
    pub will: Option<Will<'a>>,
    /// The user name, present exactly when the user name flag is set.
    pub username: Option<&'a [u8]>,
    /// The password, present exactly when the password flag is set.
    pub password: Option<&'a [u8]>,
    /// Total bytes of the CONNECT packet, fixed header included. Bytes after it in the buffer
    /// belong to later packets.
    pub packet_len: usize,
}

// === impl Connect ===

impl<'a> Connect<'a> {
    /// The client identifier as a string, or `None` when it is not valid UTF-8.
    pub fn client_id_str(&self) -> Option<&'a str> {
        core::str::from_utf8(self.client_id).ok()
    }
}

/// The will message of a CONNECT packet; its QoS and retain bit are in [`ConnectFlags`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Will<'a> {
    /// The raw MQTT 5 will properties, without their length (empty before level 5); known to
    /// be a well-formed property list.
    pub properties: &'a [u8],
    /// The will topic; not checked to be UTF-8.
    pub topic: &'a [u8],
    /// The will payload.
    pub payload: &'a [u8],
}

/// The connect flags byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectFlags(u8);

// === impl ConnectFlags ===

impl ConnectFlags {
    const RESERVED: u8 = 0x01;
    const CLEAN_START: u8 = 0x02;
    const WILL: u8 = 0x04;
    const WILL_QOS: u8 = 0x18;
    const WILL_QOS_SHIFT: u32 = 3;
    const WILL_RETAIN: u8 = 0x20;
    const PASSWORD: u8 = 0x40;
    const USERNAME: u8 = 0x80;

    /// The byte as sent.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// Clean Start (MQTT 5) or Clean Session (3.x).
    pub fn clean_start(self) -> bool {
        self.0 & Self::CLEAN_START != 0
    }

    /// Whether the payload carries a will.
    pub fn will(self) -> bool {
        self.0 & Self::WILL != 0
    }

    /// The will QoS: 0, 1 or 2 (and 0 when there is no will).
    pub fn will_qos(self) -> u8 {
        (self.0 & Self::WILL_QOS) >> Self::WILL_QOS_SHIFT
    }

    /// Whether the will is to be retained (false when there is no will).
    pub fn will_retain(self) -> bool {
        self.0 & Self::WILL_RETAIN != 0
    }

    /// Whether the payload carries a password.
    pub fn password(self) -> bool {
        self.0 & Self::PASSWORD != 0
    }

    /// Whether the payload carries a user name.
    pub fn username(self) -> bool {
        self.0 & Self::USERNAME != 0
    }

    /// Applies the spec's rules on the flags of a packet of protocol `level`.
    fn check(self, level: u8) -> Result<(), Invalid> {
        if self.0 & Self::RESERVED != 0 {
            return Err(Invalid::ReservedFlag);
        }
        let orphan_will_bits = !self.will() && self.0 & (Self::WILL_QOS | Self::WILL_RETAIN) != 0;
        // MQTT 5 allows a password without a user name; 3.1 and 3.1.1 do not.
        let orphan_password = level < 5 && self.password() && !self.username();
        if orphan_will_bits || self.will_qos() > 2 || orphan_password {
            return Err(Invalid::InconsistentFlags);
        }
        Ok(())
    }
}

/// Parses the variable header and payload of a CONNECT packet (`body`: everything after the
/// fixed header, exactly the remaining length) that is `packet_len` bytes long in total.
pub(crate) fn parse(body: &[u8], packet_len: usize) -> Result<Connect<'_>, Invalid> {
    let mut r = Reader::new(body);
    let (protocol_name, level) = protocol(&mut r)?;
    if !(3..=5).contains(&level) {
        return Err(Invalid::UnsupportedLevel(level));
    }
    let flags = ConnectFlags(r.u8().ok_or(Invalid::Truncated)?);
    flags.check(level)?;
    let keep_alive = r.u16().ok_or(Invalid::Truncated)?;
    let v5 = level == 5;
    let properties = if v5 {
        properties::read(&mut r, Scope::Connect)?
    } else {
        &[]
    };
    let client_id = r.prefixed().ok_or(Invalid::Truncated)?;
    let will = if flags.will() {
        let properties = if v5 {
            properties::read(&mut r, Scope::Will)?
        } else {
            &[]
        };
        let topic = r.prefixed().ok_or(Invalid::Truncated)?;
        let payload = r.prefixed().ok_or(Invalid::Truncated)?;
        Some(Will {
            properties,
            topic,
            payload,
        })
    } else {
        None
    };
    let username = optional_field(&mut r, flags.username())?;
    let password = optional_field(&mut r, flags.password())?;
    if !r.is_empty() {
        return Err(Invalid::TrailingBytes);
    }
    Ok(Connect {
        protocol_name,
        level,
        flags,
        keep_alive,
        properties,
        client_id,
        will,
        username,
        password,
        packet_len,
    })
}

/// Reads the protocol name and level at the start of the variable header.
pub(crate) fn protocol<'a>(r: &mut Reader<'a>) -> Result<(&'a [u8], u8), Invalid> {
    let name = r.prefixed().ok_or(Invalid::Truncated)?;
    let level = r.u8().ok_or(Invalid::Truncated)?;
    Ok((name, level))
}

/// A two-byte-length-prefixed field that is present when its connect flag is set.
fn optional_field<'a>(r: &mut Reader<'a>, present: bool) -> Result<Option<&'a [u8]>, Invalid> {
    if present {
        r.prefixed().map(Some).ok_or(Invalid::Truncated)
    } else {
        Ok(None)
    }
}
