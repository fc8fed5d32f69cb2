//! Fuzz target for `sg_mqtt::decode_connect`: any input must decode without panicking, and the
//! outcome must keep the API's promises.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sg_mqtt::{decode_connect, Decoded};

/// Whether `part` lies inside `whole` (empty slices may point anywhere).
fn within(whole: &[u8], part: &[u8]) -> bool {
    let (w, p) = (whole.as_ptr_range(), part.as_ptr_range());
    part.is_empty() || (w.start <= p.start && p.end <= w.end)
}

fuzz_target!(|buf: &[u8]| {
    match decode_connect(buf) {
        Decoded::Incomplete(n) => assert!(n > buf.len()),
        Decoded::Invalid(_) => {}
        Decoded::Connect(c) => {
            assert!(c.packet_len <= buf.len());
            let packet = &buf[..c.packet_len];
            let will = c
                .will
                .map_or([&[][..]; 3], |w| [w.properties, w.topic, w.payload]);
            let fields = [c.protocol_name, c.properties, c.client_id];
            let login = [
                c.username.unwrap_or_default(),
                c.password.unwrap_or_default(),
            ];
            for field in fields.iter().chain(&will).chain(&login) {
                assert!(within(packet, field));
            }
            assert_eq!(c.will.is_some(), c.flags.will());
            assert_eq!(c.username.is_some(), c.flags.username());
            assert_eq!(c.password.is_some(), c.flags.password());
            assert_eq!(decode_connect(packet), Decoded::Connect(c));
        }
    }
});
