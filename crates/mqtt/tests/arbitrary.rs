//! Property tests on hostile input: arbitrary bytes, well-framed garbage and mutated valid
//! packets never panic, and every outcome keeps the API's promises.

use proptest::prelude::*;
use sg_mqtt::{decode_connect, Decoded};

/// Whether `part` lies inside `whole` (pointer ranges; empty slices may point anywhere).
fn within(whole: &[u8], part: &[u8]) -> bool {
    let (w, p) = (whole.as_ptr_range(), part.as_ptr_range());
    part.is_empty() || (w.start <= p.start && p.end <= w.end)
}

/// Decodes `buf` and checks the outcome's invariants.
fn check(buf: &[u8]) {
    match decode_connect(buf) {
        Decoded::Incomplete(n) => assert!(n > buf.len(), "Incomplete({n}) for {} bytes", buf.len()),
        Decoded::Invalid(_) => {}
        Decoded::Connect(c) => {
            assert!(c.packet_len <= buf.len());
            let packet = &buf[..c.packet_len];
            let mut slices = vec![c.protocol_name, c.properties, c.client_id];
            if let Some(will) = c.will {
                slices.extend([will.properties, will.topic, will.payload]);
            }
            slices.extend(c.username.into_iter().chain(c.password));
            assert!(slices.iter().all(|s| within(packet, s)), "{c:?}");
            assert!(matches!(c.level, 3..=5));
            assert_eq!(c.will.is_some(), c.flags.will());
            assert_eq!(c.username.is_some(), c.flags.username());
            assert_eq!(c.password.is_some(), c.flags.password());
            assert!(c.flags.will_qos() <= 2);
            assert_eq!(decode_connect(packet), Decoded::Connect(c));
        }
    }
}

/// A CONNECT fixed header with the right remaining length for `body`.
fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = vec![0x10];
    let mut len = body.len();
    loop {
        let byte = (len % 128) as u8;
        len /= 128;
        out.push(if len > 0 { byte | 0x80 } else { byte });
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// A valid v5 CONNECT with properties, will, user name and password, to be mutated.
fn seed() -> Vec<u8> {
    let mut body = b"\x00\x04MQTT\x05\xf6\x00\x3c".to_vec();
    body.extend_from_slice(b"\x08\x11\x00\x00\x0e\x10\x21\x00\x10"); // properties
    body.extend_from_slice(b"\x00\x03foo");
    body.extend_from_slice(b"\x07\x18\x00\x00\x00\x05\x01\x01\x00\x03a/b\x00\x02hi"); // will
    body.extend_from_slice(b"\x00\x04user\x00\x02pw");
    framed(&body)
}

#[test]
fn seed_is_valid() {
    let packet = seed();
    let Decoded::Connect(c) = decode_connect(&packet) else {
        panic!("{:?}", decode_connect(&packet))
    };
    assert_eq!(
        (c.client_id, c.username, c.password),
        (&b"foo"[..], Some(&b"user"[..]), Some(&b"pw"[..]))
    );
    assert_eq!(c.will.map(|w| w.topic), Some(&b"a/b"[..]));
}

proptest! {
    #[test]
    fn arbitrary_bytes(buf in prop::collection::vec(any::<u8>(), 0..96)) {
        check(&buf);
    }

    #[test]
    fn framed_garbage(
        level in prop_oneof![Just(3u8), Just(4), Just(5), any::<u8>()],
        rest in prop::collection::vec(any::<u8>(), 0..64),
        extra in prop::collection::vec(any::<u8>(), 0..4),
    ) {
        let mut body = b"\x00\x04MQTT".to_vec();
        body.push(level);
        body.extend_from_slice(&rest);
        let mut buf = framed(&body);
        for k in 0..buf.len() {
            check(&buf[..k]);
        }
        buf.extend_from_slice(&extra);
        check(&buf);
    }

    #[test]
    fn mutated_packets(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut buf = seed();
        for (at, byte) in edits {
            let i = at.index(buf.len());
            buf[i] = byte;
        }
        check(&buf);
        check(&buf[..cut.index(buf.len())]);
    }
}
