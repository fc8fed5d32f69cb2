//! Just enough MQTT 3.1.1 for the load generator: packet builders and a reader that splits a
//! byte stream into packets, so clients cost little CPU beside the systems they measure.

use anyhow::{bail, Result};
use tokio::io::{AsyncRead, AsyncReadExt};

pub const CONNACK: u8 = 0x20;
pub const PUBLISH: u8 = 0x30;
pub const PUBACK: u8 = 0x40;
pub const SUBACK: u8 = 0x90;
/// DISCONNECT, a whole packet.
pub const DISCONNECT: [u8; 2] = [0xe0, 0x00];

/// Appends the remaining-length varint of `len`.
fn put_len(out: &mut Vec<u8>, mut len: usize) {
    loop {
        let byte = (len % 128) as u8;
        len /= 128;
        if len == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A CONNECT (level 4, clean session) for `client_id`.
pub fn connect(client_id: &str, keep_alive: u16) -> Vec<u8> {
    let body_len = 10 + 2 + client_id.len();
    let mut out = Vec::with_capacity(body_len + 5);
    out.push(0x10);
    put_len(&mut out, body_len);
    put_str(&mut out, "MQTT");
    out.extend_from_slice(&[4, 0x02]);
    out.extend_from_slice(&keep_alive.to_be_bytes());
    put_str(&mut out, client_id);
    out
}

/// A SUBSCRIBE with packet id 1 for `(topic, qos)` filters.
pub fn subscribe(filters: &[(&str, u8)]) -> Vec<u8> {
    let body_len = 2 + filters.iter().map(|(t, _)| 3 + t.len()).sum::<usize>();
    let mut out = Vec::with_capacity(body_len + 5);
    out.push(0x82);
    put_len(&mut out, body_len);
    out.extend_from_slice(&1u16.to_be_bytes());
    for (topic, qos) in filters {
        put_str(&mut out, topic);
        out.push(*qos);
    }
    out
}

/// Appends a PUBLISH of `payload` to `topic`; `packet_id` is used when `qos` is 1.
pub fn put_publish(
    out: &mut Vec<u8>,
    topic: &str,
    qos: u8,
    retain: bool,
    packet_id: u16,
    payload: &[u8],
) {
    out.push(PUBLISH | (qos << 1) | u8::from(retain));
    let id_len = if qos > 0 { 2 } else { 0 };
    put_len(out, 2 + topic.len() + id_len + payload.len());
    put_str(out, topic);
    if qos > 0 {
        out.extend_from_slice(&packet_id.to_be_bytes());
    }
    out.extend_from_slice(payload);
}

/// Appends a PUBACK for `packet_id`.
pub fn put_puback(out: &mut Vec<u8>, packet_id: u16) {
    out.extend_from_slice(&[PUBACK, 2]);
    out.extend_from_slice(&packet_id.to_be_bytes());
}

/// A received PUBLISH, borrowed from the reader's buffer.
pub struct Publish<'a> {
    pub topic: &'a [u8],
    pub packet_id: Option<u16>,
    pub payload: &'a [u8],
}

/// Parses the body of a PUBLISH whose first byte was `header`.
pub fn parse_publish(header: u8, body: &[u8]) -> Option<Publish<'_>> {
    let qos = (header >> 1) & 3;
    let topic_len = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
    let topic = body.get(2..2 + topic_len)?;
    let mut rest = body.get(2 + topic_len..)?;
    let mut packet_id = None;
    if qos > 0 {
        packet_id = Some(u16::from_be_bytes([*rest.first()?, *rest.get(1)?]));
        rest = rest.get(2..)?;
    }
    Some(Publish {
        topic,
        packet_id,
        payload: rest,
    })
}

/// Splits what a socket delivers into MQTT packets without copying each one.
pub struct PacketReader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Default for PacketReader {
    fn default() -> Self {
        PacketReader {
            buf: vec![0; 64 * 1024],
            start: 0,
            end: 0,
        }
    }
}

impl PacketReader {
    /// The next complete packet already buffered, as (first byte, body range), or `None`.
    fn buffered(&self) -> Option<(u8, usize, usize)> {
        let bytes = &self.buf[self.start..self.end];
        let header = *bytes.first()?;
        let (mut len, mut shift, mut i) = (0usize, 0, 1);
        loop {
            let b = *bytes.get(i)?;
            len |= usize::from(b & 0x7f) << shift;
            i += 1;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        (bytes.len() >= i + len).then_some((header, self.start + i, self.start + i + len))
    }

    /// Reads until a whole packet is buffered; returns its first byte and body. `Ok(None)` at
    /// end of stream.
    pub async fn next<R: AsyncRead + Unpin>(&mut self, io: &mut R) -> Result<Option<(u8, &[u8])>> {
        loop {
            if let Some((header, from, to)) = self.buffered() {
                self.start = to;
                return Ok(Some((header, &self.buf[from..to])));
            }
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.end == self.buf.len() {
                bail!("packet larger than {} bytes", self.buf.len());
            }
            let n = io.read(&mut self.buf[self.end..]).await?;
            if n == 0 {
                return Ok(None);
            }
            self.end += n;
        }
    }

    /// Whether a whole packet is already buffered (the next `next` will not read).
    pub fn has_packet(&self) -> bool {
        self.buffered().is_some()
    }
}

/// Reads a CONNACK and checks that it accepted the connection.
pub async fn expect_connack<R: AsyncRead + Unpin>(io: &mut R) -> Result<()> {
    let mut ack = [0u8; 4];
    io.read_exact(&mut ack).await?;
    if ack != [CONNACK, 2, 0, 0] {
        bail!("unexpected CONNACK {ack:02x?}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_matches_the_reference_packet() {
        assert_eq!(
            connect("foo", 60),
            b"\x10\x0f\x00\x04MQTT\x04\x02\x00\x3c\x00\x03foo"
        );
    }

    #[tokio::test]
    async fn reader_splits_packets_and_parses_publish() {
        let mut bytes = Vec::new();
        put_publish(&mut bytes, "a/b", 1, false, 7, &[9; 200]);
        put_puback(&mut bytes, 7);
        let mut reader = PacketReader::default();
        let mut io = &bytes[..];
        let (header, body) = reader.next(&mut io).await.unwrap().unwrap();
        let publish = parse_publish(header, body).unwrap();
        assert_eq!(
            (publish.topic, publish.packet_id, publish.payload.len()),
            (&b"a/b"[..], Some(7), 200)
        );
        let (header, body) = reader.next(&mut io).await.unwrap().unwrap();
        assert_eq!((header, body), (PUBACK, &[0, 7][..]));
        assert!(reader.next(&mut io).await.unwrap().is_none());
    }
}
