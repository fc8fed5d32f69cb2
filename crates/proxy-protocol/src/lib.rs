//! The PROXY protocol (HAProxy's specification, v1 text and v2 binary) on byte slices, with
//! no I/O: [`parse`] reads the header a load balancer in front sends before the client's
//! bytes, and [`v1`] / [`v2`] build the header sent to an upstream.
//!
//! [`parse`] works on the bytes received so far and tells how long the header is, so the
//! caller can consume exactly the header and leave the client's bytes (a TLS ClientHello, an
//! MQTT CONNECT) where they are. It bounds what it waits for: a v1 header ends within
//! [`V1_MAX`] bytes and a v2 header may not announce more than [`V2_MAX`]. The syntax is
//! checked by the `ppp` crate; this crate adds the bounds, the partial-input answers and the
//! TLVs streamgate reads and writes (`PP2_TYPE_AUTHORITY` and `PP2_TYPE_SSL`).
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod ssl;

use std::net::SocketAddr;

use ppp::{v1, v2};

pub use ssl::{Ssl, CLIENT_CERT_CONN, CLIENT_SSL};

/// The longest v1 header, its CRLF included (the specification's bound).
pub const V1_MAX: usize = 107;
/// The longest v2 header accepted: its 16-byte preamble and up to 2,032 bytes of addresses
/// and TLVs. Senders put a few dozen bytes of TLVs there (AWS NLB, HAProxy's SSL TLVs); the
/// bound keeps what one connection may make the gateway wait for small.
pub const V2_MAX: usize = 2048;

const V1_PREFIX: &[u8] = b"PROXY ";
const V2_PREAMBLE: usize = 16;
const TLV_AUTHORITY: u8 = 0x02;
const TLV_SSL: u8 = 0x20;

/// The client's and the gateway's addresses as the sender saw them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addresses {
    pub source: SocketAddr,
    pub destination: SocketAddr,
}

impl Addresses {
    fn new(source: impl Into<SocketAddr>, destination: impl Into<SocketAddr>) -> Addresses {
        Addresses {
            source: source.into(),
            destination: destination.into(),
        }
    }
}

/// A received header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// `None` for a v2 `LOCAL` command (the sender's own health check), v1 `UNKNOWN` and
    /// address families other than IPv4 and IPv6: the connection's own addresses stand.
    pub addresses: Option<Addresses>,
    /// `PP2_TYPE_AUTHORITY`: the server name the client asked for.
    pub authority: Option<String>,
    /// `PP2_TYPE_SSL`: the client's TLS connection to the sender.
    pub ssl: Option<Ssl>,
}

/// What the bytes received so far hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// The start of a header: more bytes are needed.
    Incomplete,
    /// A whole header of `len` bytes; the client's bytes follow it.
    Complete { len: usize, header: Header },
}

/// Why the bytes are not a header the gateway accepts.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no PROXY protocol header")]
    Missing,
    #[error("PROXY protocol v1 header longer than {V1_MAX} bytes")]
    V1TooLong,
    #[error("PROXY protocol v2 header of {0} bytes, more than {V2_MAX}")]
    V2TooLong(usize),
    #[error("malformed PROXY protocol v1 header")]
    V1(#[source] v1::BinaryParseError),
    #[error("malformed PROXY protocol v2 header")]
    V2(#[source] v2::ParseError),
    #[error("malformed PROXY protocol v2 TLV")]
    Tlv,
}

/// Reads the header at the start of `input`.
pub fn parse(input: &[u8]) -> Result<Parsed, Error> {
    if starts_like(input, v2::PROTOCOL_PREFIX) {
        parse_v2(input)
    } else if starts_like(input, V1_PREFIX) {
        parse_v1(input)
    } else {
        Err(Error::Missing)
    }
}

/// Whether `input` and `prefix` agree on their common length.
fn starts_like(input: &[u8], prefix: &[u8]) -> bool {
    let n = input.len().min(prefix.len());
    input[..n] == prefix[..n]
}

fn parse_v1(input: &[u8]) -> Result<Parsed, Error> {
    let window = &input[..input.len().min(V1_MAX)];
    let Some(end) = window.windows(2).position(|pair| pair == b"\r\n") else {
        return if input.len() >= V1_MAX {
            Err(Error::V1TooLong)
        } else {
            Ok(Parsed::Incomplete)
        };
    };
    let len = end + 2;
    let header = v1::Header::try_from(&input[..len]).map_err(Error::V1)?;
    let addresses = match header.addresses {
        v1::Addresses::Tcp4(a) => Some(Addresses::new(
            (a.source_address, a.source_port),
            (a.destination_address, a.destination_port),
        )),
        v1::Addresses::Tcp6(a) => Some(Addresses::new(
            (a.source_address, a.source_port),
            (a.destination_address, a.destination_port),
        )),
        v1::Addresses::Unknown => None,
    };
    Ok(Parsed::Complete {
        len,
        header: Header {
            addresses,
            ..Header::default()
        },
    })
}

fn parse_v2(input: &[u8]) -> Result<Parsed, Error> {
    if input.len() < V2_PREAMBLE {
        return Ok(Parsed::Incomplete);
    }
    let len = V2_PREAMBLE + usize::from(u16::from_be_bytes([input[14], input[15]]));
    if len > V2_MAX {
        return Err(Error::V2TooLong(len));
    }
    if input.len() < len {
        return Ok(Parsed::Incomplete);
    }
    let parsed = v2::Header::try_from(&input[..len]).map_err(Error::V2)?;
    let mut header = Header::default();
    if parsed.command == v2::Command::Proxy {
        header.addresses = match parsed.addresses {
            v2::Addresses::IPv4(a) => Some(Addresses::new(
                (a.source_address, a.source_port),
                (a.destination_address, a.destination_port),
            )),
            v2::Addresses::IPv6(a) => Some(Addresses::new(
                (a.source_address, a.source_port),
                (a.destination_address, a.destination_port),
            )),
            v2::Addresses::Unspecified | v2::Addresses::Unix(_) => None,
        };
    }
    for tlv in parsed.tlvs() {
        let tlv = tlv.map_err(Error::V2)?;
        match tlv.kind {
            TLV_AUTHORITY => {
                let name = std::str::from_utf8(&tlv.value).map_err(|_| Error::Tlv)?;
                header.authority = Some(name.to_owned());
            }
            TLV_SSL => header.ssl = Some(Ssl::decode(&tlv.value).ok_or(Error::Tlv)?),
            _ => {}
        }
    }
    Ok(Parsed::Complete { len, header })
}

/// Both addresses in one family: an IPv4 one is mapped into IPv6 when the other is IPv6.
fn same_family(source: SocketAddr, destination: SocketAddr) -> (SocketAddr, SocketAddr) {
    let v6 = |addr: SocketAddr| match addr {
        SocketAddr::V4(v4) => SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port()),
        v6 => v6,
    };
    match (source, destination) {
        (SocketAddr::V4(_), SocketAddr::V4(_)) | (SocketAddr::V6(_), SocketAddr::V6(_)) => {
            (source, destination)
        }
        _ => (v6(source), v6(destination)),
    }
}

/// The v1 header for a client at `source` that reached `destination`, as nginx's
/// `proxy_protocol on` sends it.
pub fn v1(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    v1::Addresses::from(same_family(source, destination))
        .to_string()
        .into_bytes()
}

/// The v2 header for a client at `source` that reached `destination`, with the server name
/// it asked for and its TLS connection to the gateway when there are.
pub fn v2(
    source: SocketAddr,
    destination: SocketAddr,
    authority: Option<&str>,
    ssl: Option<&Ssl>,
) -> Vec<u8> {
    let mut tlvs: Vec<(u8, Vec<u8>)> = Vec::new();
    if let Some(name) = authority {
        tlvs.push((TLV_AUTHORITY, name.as_bytes().to_vec()));
    }
    if let Some(ssl) = ssl {
        tlvs.push((TLV_SSL, ssl.encode()));
    }
    // Only TLVs longer than 64 KiB fail, which a server name and a CN never are; the
    // addresses alone always fit.
    v2_with(source, destination, &tlvs)
        .or_else(|_| v2_with(source, destination, &[]))
        .unwrap_or_default()
}

fn v2_with(
    source: SocketAddr,
    destination: SocketAddr,
    tlvs: &[(u8, Vec<u8>)],
) -> std::io::Result<Vec<u8>> {
    let mut builder = v2::Builder::with_addresses(
        v2::Version::Two | v2::Command::Proxy,
        v2::Protocol::Stream,
        same_family(source, destination),
    );
    for (kind, value) in tlvs {
        builder = builder.write_tlv(*kind, value)?;
    }
    builder.build()
}

#[cfg(test)]
mod tests;
