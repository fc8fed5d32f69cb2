use std::net::SocketAddr;

use proptest::prelude::*;

use super::*;

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn complete(input: &[u8]) -> (usize, Header) {
    match parse(input) {
        Ok(Parsed::Complete { len, header }) => (len, header),
        other => panic!("expected a whole header, got {other:?}"),
    }
}

#[test]
fn v1_headers_give_the_client_and_leave_the_bytes_after_them() {
    let input = b"PROXY TCP4 192.0.2.10 198.51.100.1 51234 1883\r\n\x10\x0f";
    let (len, header) = complete(input);
    assert_eq!(&input[len..], b"\x10\x0f");
    let addresses = header.addresses.unwrap();
    assert_eq!(addresses.source, addr("192.0.2.10:51234"));
    assert_eq!(addresses.destination, addr("198.51.100.1:1883"));

    let (_, header) = complete(b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 8883\r\n");
    assert_eq!(header.addresses.unwrap().source, addr("[2001:db8::1]:4000"));
    // UNKNOWN: the connection's own addresses stand.
    assert_eq!(complete(b"PROXY UNKNOWN\r\n").1.addresses, None);
}

#[test]
fn partial_headers_ask_for_more_and_bounds_hold() {
    for input in [&b""[..], b"P", b"PROXY TCP4 192.0.2.10", b"\r\n\r\n\0\r\nQ"] {
        assert_eq!(parse(input).unwrap(), Parsed::Incomplete, "{input:?}");
    }
    let endless = [b"PROXY TCP4 ".as_slice(), &[b'1'; 100]].concat();
    assert!(matches!(parse(&endless), Err(Error::V1TooLong)));
    let mut huge = v2::PROTOCOL_PREFIX.to_vec();
    huge.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
    assert!(matches!(parse(&huge), Err(Error::V2TooLong(65551))));
    // A v2 header waits for exactly the length it announces.
    let whole = v2(
        addr("192.0.2.10:1"),
        addr("198.51.100.1:2"),
        Some("a.example"),
        None,
    );
    assert_eq!(
        parse(&whole[..whole.len() - 1]).unwrap(),
        Parsed::Incomplete
    );
    assert_eq!(complete(&whole).0, whole.len());
}

#[test]
fn hostile_headers_are_refused() {
    assert!(matches!(
        parse(b"\x10\x0f\x00\x04MQTT"),
        Err(Error::Missing)
    ));
    assert!(matches!(parse(b"GET / HTTP/1.1\r\n"), Err(Error::Missing)));
    assert!(matches!(
        parse(b"PROXY TCP4 999.0.2.10 198.51.100.1 1 2\r\n"),
        Err(Error::V1(_))
    ));
    assert!(matches!(
        parse(b"PROXY TCP4 192.0.2.10 198.51.100.1 1 99999\r\n"),
        Err(Error::V1(_))
    ));
    // A v2 header whose length cannot hold its IPv4 addresses.
    let mut short = v2::PROTOCOL_PREFIX.to_vec();
    short.extend_from_slice(&[0x21, 0x11, 0x00, 0x04, 1, 2, 3, 4]);
    assert!(matches!(parse(&short), Err(Error::V2(_))));
    // A wrong version nibble.
    let mut version = v2::PROTOCOL_PREFIX.to_vec();
    version.extend_from_slice(&[0x31, 0x11, 0x00, 0x00]);
    assert!(matches!(parse(&version), Err(Error::V2(_))));
    // A TLV running past the header's end.
    let mut tlv = v2(addr("192.0.2.10:1"), addr("198.51.100.1:2"), None, None);
    tlv[15] += 3;
    tlv.extend_from_slice(&[0x02, 0x00, 0x09]);
    assert!(parse(&tlv).is_err());
}

#[test]
fn a_local_command_keeps_the_connection_addresses() {
    let mut local = v2::PROTOCOL_PREFIX.to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    assert_eq!(complete(&local), (16, Header::default()));
}

#[test]
fn the_ssl_tlv_sent_after_mtls_parses_back() {
    let ssl = Ssl {
        client: CLIENT_SSL | CLIENT_CERT_CONN,
        verify: 0,
        version: Some("TLSv1.3".into()),
        cipher: Some("TLS_AES_128_GCM_SHA256".into()),
        cn: Some("device-0042".into()),
    };
    let header = v2(
        addr("192.0.2.10:51234"),
        addr("[2001:db8::2]:8883"),
        Some("mqtt.example.com"),
        Some(&ssl),
    );
    let (len, parsed) = complete(&header);
    assert_eq!(len, header.len());
    assert_eq!(parsed.authority.as_deref(), Some("mqtt.example.com"));
    assert_eq!(parsed.ssl, Some(ssl));
    // Mixed families travel as IPv6, the IPv4 client mapped.
    assert_eq!(
        parsed.addresses.unwrap().source,
        addr("[::ffff:192.0.2.10]:51234")
    );
}

fn socket_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| (ip, port).into()),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| (ip, port).into()),
    ]
}

proptest! {
    #[test]
    fn any_input_parses_or_fails_without_panicking(input in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse(&input);
        let mut prefixed = v2::PROTOCOL_PREFIX.to_vec();
        prefixed.extend_from_slice(&input);
        if let Ok(Parsed::Complete { len, .. }) = parse(&prefixed) {
            prop_assert!(len <= prefixed.len());
        }
    }

    #[test]
    fn built_headers_parse_back(source in socket_addr(), destination in socket_addr(), name in "[a-z.]{0,40}") {
        let (s, d) = same_family(source, destination);
        let (len, header) = complete(&v1(source, destination));
        prop_assert!(len <= V1_MAX);
        prop_assert_eq!(header.addresses, Some(Addresses { source: s, destination: d }));
        let built = v2(source, destination, Some(&name), None);
        let (len, header) = complete(&built);
        prop_assert_eq!(len, built.len());
        prop_assert_eq!(header.addresses, Some(Addresses { source: s, destination: d }));
        prop_assert_eq!(header.authority, Some(name));
    }
}
