//! rustls over a buffer of TLS bytes: decrypted records to a reader's buffer (then a stash),
//! records to send appended to the outgoing queue.

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, UnbufferedStatus};
use tokio::io::ReadBuf;

use super::Next;

/// Where decrypted records go: the reader's buffer while it has room, then the stash.
pub(super) struct Sink<'a, 'b> {
    pub(super) buf: Option<&'a mut ReadBuf<'b>>,
    pub(super) stash: &'a mut Vec<u8>,
}

impl Sink<'_, '_> {
    fn put(&mut self, mut payload: &[u8]) {
        if let Some(buf) = self.buf.as_deref_mut() {
            let n = payload.len().min(buf.remaining());
            buf.put_slice(&payload[..n]);
            payload = &payload[n..];
        }
        self.stash.extend_from_slice(payload);
    }
}

/// Runs rustls over `incoming` (the undiscarded bytes) until it needs something: decrypted
/// records go to `sink`, records to send are appended to `outgoing`. Returns what it needs and
/// how many bytes of `incoming` it is done with.
pub(super) fn process(
    conn: &mut UnbufferedServerConnection,
    incoming: &mut [u8],
    outgoing: &mut Vec<u8>,
    sink: &mut Sink<'_, '_>,
) -> (usize, Result<Next, rustls::Error>) {
    let mut done = 0;
    loop {
        let UnbufferedStatus { discard, state } = conn.process_tls_records(&mut incoming[done..]);
        done += discard;
        let state = match state {
            Ok(state) => state,
            Err(error) => {
                // A fatal alert rustls queued goes out before the connection closes.
                if let Ok(ConnectionState::EncodeTlsData(mut encoder)) =
                    conn.process_tls_records(&mut []).state
                {
                    let _ = encode(&mut encoder, outgoing);
                }
                return (done, Err(error));
            }
        };
        let next = match state {
            ConnectionState::ReadTraffic(mut records) => {
                while let Some(record) = records.next_record() {
                    match record {
                        Ok(record) => sink.put(record.payload),
                        Err(error) => return (done, Err(error)),
                    }
                }
                continue;
            }
            ConnectionState::ReadEarlyData(mut records) => {
                while let Some(record) = records.next_record() {
                    match record {
                        Ok(record) => sink.put(record.payload),
                        Err(error) => return (done, Err(error)),
                    }
                }
                continue;
            }
            ConnectionState::EncodeTlsData(mut encoder) => {
                if let Err(error) = encode(&mut encoder, outgoing) {
                    return (done, Err(error));
                }
                continue;
            }
            // Queued in `outgoing`, which goes out before anything encrypted later.
            ConnectionState::TransmitTlsData(transmit) => {
                transmit.done();
                continue;
            }
            ConnectionState::BlockedHandshake => Next::Read,
            ConnectionState::PeerClosed | ConnectionState::Closed => Next::PeerClosed,
            _ => Next::Idle,
        };
        // A TLS 1.3 server may send before the client's Finished: the handshake goes on.
        if next == Next::Idle && conn.is_handshaking() {
            return (done, Ok(Next::Read));
        }
        return (done, Ok(next));
    }
}

/// Appends the handshake record `encoder` holds to `outgoing`.
pub(super) fn encode(
    encoder: &mut rustls::unbuffered::EncodeTlsData<'_, rustls::server::ServerConnectionData>,
    outgoing: &mut Vec<u8>,
) -> Result<(), rustls::Error> {
    let start = outgoing.len();
    let mut room = 1024;
    loop {
        outgoing.resize(start + room, 0);
        match encoder.encode(&mut outgoing[start..]) {
            Ok(written) => {
                outgoing.truncate(start + written);
                return Ok(());
            }
            Err(EncodeError::InsufficientSize(needed)) => room = needed.required_size,
            Err(EncodeError::AlreadyEncoded) => {
                outgoing.truncate(start);
                return Ok(());
            }
        }
    }
}
