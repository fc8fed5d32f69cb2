//! Fixed vectors: the APISIX `mqtt-proxy` test packets, and one or more packets per rejection.

use sg_mqtt::{decode_connect, protocol, protocol_prefix, Connect, Decoded, Invalid, Will};

/// Parses space-separated hex bytes.
fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).expect("hex byte"))
        .collect()
}

/// A CONNECT packet with `body` as variable header and payload.
fn packet(body: &[u8]) -> Vec<u8> {
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

/// A v4 (3.1.1) variable header with these connect flags, then `payload`.
fn v4(flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut body = b"\x00\x04MQTT\x04".to_vec();
    body.extend_from_slice(&[flags, 0x00, 0x3c]);
    body.extend_from_slice(payload);
    packet(&body)
}

/// A v5 variable header with these connect flags and properties, then `payload`.
fn v5(flags: u8, properties: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = b"\x00\x04MQTT\x05".to_vec();
    body.extend_from_slice(&[flags, 0x00, 0x3c, properties.len() as u8]);
    body.extend_from_slice(properties);
    body.extend_from_slice(payload);
    packet(&body)
}

fn connect(buf: &[u8]) -> Connect<'_> {
    match decode_connect(buf) {
        Decoded::Connect(connect) => connect,
        other => panic!("expected a CONNECT, got {other:?}"),
    }
}

fn invalid(buf: &[u8]) -> Invalid {
    match decode_connect(buf) {
        Decoded::Invalid(invalid) => invalid,
        other => panic!("expected an invalid packet, got {other:?}"),
    }
}

#[test]
fn apisix_v4_client_id() {
    let buf = hex("10 0f 00 04 4d 51 54 54 04 02 00 3c 00 03 66 6f 6f");
    let c = connect(&buf);
    assert_eq!(c.protocol_name, b"MQTT");
    assert_eq!(c.level, 4);
    assert!(c.flags.clean_start());
    assert_eq!(c.flags.bits(), 0x02);
    assert_eq!(c.keep_alive, 60);
    assert_eq!(c.properties, b"");
    assert_eq!(c.client_id_str(), Some("foo"));
    assert_eq!((c.will, c.username, c.password), (None, None, None));
    assert_eq!(c.packet_len, 17);
}

#[test]
fn apisix_v4_empty_client_id() {
    let buf = hex("10 0c 00 04 4d 51 54 54 04 02 00 3c 00 00");
    let c = connect(&buf);
    assert_eq!((c.client_id, c.packet_len), (&b""[..], 14));
}

#[test]
fn apisix_v5_empty_properties_and_client_id() {
    let buf = hex("10 0d 00 04 4d 51 54 54 05 02 00 3c 00 00 00");
    let c = connect(&buf);
    assert_eq!(
        (c.level, c.properties, c.client_id),
        (5, &b""[..], &b""[..])
    );
    assert_eq!(c.packet_len, 15);
}

#[test]
fn apisix_v5_session_expiry_property() {
    let buf = hex(
        "10 1b 00 04 4d 51 54 54 05 02 00 3c 05 11 00 00 0e 10 00 09 63 6c 69 6e 74 2d 31 31 31",
    );
    let c = connect(&buf);
    assert_eq!(c.properties, hex("11 00 00 0e 10"));
    assert_eq!(c.client_id_str(), Some("clint-111"));
    assert_eq!(c.packet_len, 29);
}

#[test]
fn apisix_v5_one_letter_ids() {
    let f = hex("10 0e 00 04 4d 51 54 54 05 02 00 3c 00 00 01 66");
    assert_eq!(connect(&f).client_id_str(), Some("f"));
    let g = hex("10 0e 00 04 4d 51 54 54 05 02 00 3c 00 00 01 67");
    assert_eq!(connect(&g).client_id_str(), Some("g"));
}

#[test]
fn level_3_and_mismatched_names_decode() {
    let mut body = b"\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x03foo".to_vec();
    let buf = packet(&body);
    let c = connect(&buf);
    assert_eq!((c.protocol_name, c.level), (&b"MQIsdp"[..], 3));
    // The name is not checked against the level: the plugin compares it with its config.
    body[2..8].copy_from_slice(b"MQTTxx");
    body[8] = 4;
    assert_eq!(connect(&packet(&body)).protocol_name, b"MQTTxx");
}

#[test]
fn will_username_and_password_v4() {
    let payload = b"\x00\x02id\x00\x03a/b\x00\x02hi\x00\x04user\x00\x02pw";
    // user name, password, will retain, will QoS 1, will, clean session.
    let buf = v4(0b1110_1110, payload);
    let c = connect(&buf);
    assert_eq!(c.flags.will_qos(), 1);
    assert!(c.flags.will() && c.flags.will_retain() && c.flags.username() && c.flags.password());
    let will = Will {
        properties: b"",
        topic: b"a/b",
        payload: b"hi",
    };
    assert_eq!(c.will, Some(will));
    assert_eq!(
        (c.username, c.password),
        (Some(&b"user"[..]), Some(&b"pw"[..]))
    );
}

#[test]
fn v5_will_properties_and_password_without_username() {
    // Will Delay Interval 10, User Property ("k", "v").
    let will_props = hex("18 00 00 00 0a 26 00 01 6b 00 01 76");
    let mut payload = b"\x00\x00".to_vec();
    payload.push(will_props.len() as u8);
    payload.extend_from_slice(&will_props);
    payload.extend_from_slice(b"\x00\x01t\x00\x00\x00\x03pwd");
    // Receive Maximum 20, two User Properties (the only property allowed twice).
    let props = hex("21 00 14 26 00 00 00 00 26 00 00 00 00");
    let buf = v5(0b0101_0100, &props, &payload);
    let c = connect(&buf);
    assert_eq!(c.properties, props);
    let will = c.will.expect("will");
    assert_eq!(
        (will.properties, will.topic, will.payload),
        (&will_props[..], &b"t"[..], &b""[..])
    );
    assert_eq!(c.flags.will_qos(), 2);
    assert_eq!((c.username, c.password), (None, Some(&b"pwd"[..])));
}

#[test]
fn later_packets_are_ignored() {
    let mut buf = hex("10 0f 00 04 4d 51 54 54 04 02 00 3c 00 03 66 6f 6f");
    buf.extend_from_slice(&hex("30 05 00 01 74 68 69"));
    let c = connect(&buf);
    assert_eq!((c.packet_len, c.client_id), (17, &b"foo"[..]));
}

#[test]
fn incomplete_asks_for_the_next_step() {
    assert_eq!(decode_connect(b""), Decoded::Incomplete(1));
    assert_eq!(decode_connect(&hex("10")), Decoded::Incomplete(2));
    assert_eq!(decode_connect(&hex("10 ff")), Decoded::Incomplete(3));
    assert_eq!(decode_connect(&hex("10 ff ff ff")), Decoded::Incomplete(5));
    assert_eq!(decode_connect(&hex("10 0f 00 04")), Decoded::Incomplete(17));
    let max = 1 + 4 + 268_435_455;
    assert_eq!(
        decode_connect(&hex("10 ff ff ff 7f 00")),
        Decoded::Incomplete(max)
    );
    // Non-minimal remaining lengths are accepted.
    assert_eq!(
        decode_connect(&hex("10 80 00")),
        Decoded::Invalid(Invalid::Truncated)
    );
}

#[test]
fn not_connect() {
    assert_eq!(invalid(&hex("6d 6d 6d")), Invalid::NotConnect(109));
    assert_eq!(invalid(&hex("30")), Invalid::NotConnect(48));
    // APISIX accepts 16..=32, including CONNACK and CONNECT with flags; the spec does not.
    assert_eq!(invalid(&hex("20 02 00 00")), Invalid::NotConnect(32));
    assert_eq!(invalid(&hex("11")), Invalid::NotConnect(17));
    assert_eq!(invalid(&hex("00")), Invalid::NotConnect(0));
}

#[test]
fn remaining_length_too_long() {
    assert_eq!(invalid(&hex("10 ff ff ff ff 7f")), Invalid::RemainingLength);
    assert_eq!(invalid(&hex("10 80 80 80 80")), Invalid::RemainingLength);
}

#[test]
fn unsupported_level_keeps_the_name_readable() {
    let mut buf = v4(0x02, b"\x00\x00");
    buf[8] = 6;
    assert_eq!(invalid(&buf), Invalid::UnsupportedLevel(6));
    assert_eq!(protocol(&buf), Some((&b"MQTT"[..], 6)));
    buf[8] = 2;
    assert_eq!(invalid(&buf), Invalid::UnsupportedLevel(2));
    assert_eq!(protocol(&hex("10 0f 00 04")), None);
    assert_eq!(protocol(&hex("10 03 00 04 4d")), None);
}

#[test]
fn protocol_of_a_partial_connect() {
    // A v5 CONNECT announcing 2 MiB, of which only the first bytes arrived.
    let start = hex("10 80 80 80 01 00 04 4d 51 54 54 05 02");
    assert_eq!(protocol(&start), None);
    assert_eq!(protocol_prefix(&start), Some((&b"MQTT"[..], 5)));
    assert_eq!(protocol_prefix(&hex("10 80 80 80 01 00 04 4d 51")), None);
    assert_eq!(protocol_prefix(&hex("30 02 00 04 4d 51 54 54 05")), None);
    assert_eq!(protocol_prefix(&hex("10 80")), None);
}

#[test]
fn reserved_flag() {
    assert_eq!(invalid(&v4(0x03, b"\x00\x00")), Invalid::ReservedFlag);
    assert_eq!(invalid(&v5(0x01, b"", b"\x00\x00")), Invalid::ReservedFlag);
}

#[test]
fn inconsistent_flags() {
    // Will QoS 1 without the will flag; will retain without it.
    assert_eq!(invalid(&v4(0x0a, b"\x00\x00")), Invalid::InconsistentFlags);
    assert_eq!(invalid(&v4(0x22, b"\x00\x00")), Invalid::InconsistentFlags);
    // Will QoS 3.
    let will = b"\x00\x00\x00\x01t\x00\x00";
    assert_eq!(invalid(&v4(0x1e, will)), Invalid::InconsistentFlags);
    // Password without user name: forbidden in 3.1.1, allowed in 5.0.
    assert_eq!(
        invalid(&v4(0x42, b"\x00\x00\x00\x01p")),
        Invalid::InconsistentFlags
    );
    assert_eq!(
        connect(&v5(0x42, b"", b"\x00\x00\x00\x01p")).password,
        Some(&b"p"[..])
    );
}

#[test]
fn truncated_fields() {
    let cases = [
        // The client id claims 9 bytes; 3 are there.
        "10 0f 00 04 4d 51 54 54 04 02 00 3c 00 09 66 6f 6f",
        "10 02 00 04",
        "10 01 00",
        "10 06 00 04 4d 51 54 54",
        "10 07 00 04 4d 51 54 54 04",
        "10 09 00 04 4d 51 54 54 04 02 00",
        "10 0b 00 04 4d 51 54 54 04 02 00 3c 00",
        // v5: the property length points past the end (apache/apisix#13952).
        "10 0d 00 04 4d 51 54 54 05 02 00 3c 05 00 00",
        "10 0b 00 04 4d 51 54 54 05 02 00 3c ff",
        // Will, user name and password missing.
        "10 0c 00 04 4d 51 54 54 04 06 00 3c 00 00",
        "10 0e 00 04 4d 51 54 54 04 06 00 3c 00 00 00 00",
        "10 0c 00 04 4d 51 54 54 04 82 00 3c 00 00",
        "10 0e 00 04 4d 51 54 54 04 c2 00 3c 00 00 00 00",
        // v5 will properties missing.
        "10 0d 00 04 4d 51 54 54 05 06 00 3c 00 00 00",
    ];
    for case in cases {
        assert_eq!(invalid(&hex(case)), Invalid::Truncated, "{case}");
    }
}

#[test]
fn malformed_properties() {
    let empty_id = b"\x00\x00";
    let cases: [&[u8]; 8] = [
        // Topic Alias: valid in MQTT 5 but not in CONNECT.
        &[0x23, 0x00, 0x01],
        // Will Delay Interval belongs to the will properties.
        &[0x18, 0, 0, 0, 1],
        // Session Expiry Interval twice.
        &[0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 1],
        // Values running past the list's end.
        &[0x11, 0x00],
        &[0x15, 0x00, 0x05, b'a'],
        &[0x26, 0x00, 0x00, 0x00],
        // An identifier that is not a valid variable byte integer, then an unknown one.
        &[0xff, 0xff, 0xff, 0xff],
        &[0x00],
    ];
    for props in cases {
        assert_eq!(
            invalid(&v5(0x02, props, empty_id)),
            Invalid::Properties,
            "{props:x?}"
        );
    }
    // A property length longer than four bytes.
    let long = hex("10 10 00 04 4d 51 54 54 05 02 00 3c ff ff ff ff 7f 00 00");
    assert_eq!(invalid(&long), Invalid::Properties);
    // Session Expiry Interval is a CONNECT property, not a will property.
    let will = b"\x00\x00\x05\x11\x00\x00\x00\x01\x00\x01t\x00\x00";
    assert_eq!(invalid(&v5(0x06, b"", will)), Invalid::Properties);
}

#[test]
fn trailing_bytes() {
    let buf = hex("10 10 00 04 4d 51 54 54 04 02 00 3c 00 03 66 6f 6f 00");
    assert_eq!(invalid(&buf), Invalid::TrailingBytes);
}

#[test]
fn client_id_str_checks_utf8() {
    let buf = v4(0x02, b"\x00\x02\xc3\x28");
    let c = connect(&buf);
    assert_eq!((c.client_id, c.client_id_str()), (&b"\xc3\x28"[..], None));
    assert_eq!(
        connect(&v4(0x02, "\x00\x02é".as_bytes())).client_id_str(),
        Some("é")
    );
}

#[test]
fn display_uses_apisix_wording() {
    let e = Invalid::NotConnect(109);
    assert_eq!(
        e.to_string(),
        "Received unexpected MQTT packet type+flags: 109"
    );
    assert_eq!(
        Invalid::UnsupportedLevel(6).to_string(),
        "unsupported protocol level: 6"
    );
    let source: &dyn std::error::Error = &Invalid::Truncated;
    assert_eq!(
        source.to_string(),
        "a field runs past the end of the packet"
    );
}
