//! Fuzz target for `sg_proxy_protocol::parse`: any input parses or fails without panicking, a
//! whole header never claims more bytes than it was given nor more than the bounds, and a
//! prefix of a whole header only ever asks for more.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sg_proxy_protocol::{parse, Parsed, V2_MAX};

fuzz_target!(|buf: &[u8]| {
    if let Ok(Parsed::Complete { len, .. }) = parse(buf) {
        assert!(len <= buf.len() && len <= V2_MAX);
        for cut in 0..len {
            assert_eq!(parse(&buf[..cut]).ok(), Some(Parsed::Incomplete));
        }
    }
});
