//! Property tests: CONNECT packets encoded by rumqttc (3.1.1 and 5.0) decode to exactly the
//! fields that were encoded, every strict prefix asks for more bytes, and later packets in the
//! buffer are ignored.

use bytes::BytesMut;
use proptest::prelude::*;
use rumqttc::mqttbytes::{v4, QoS as QoS4};
use rumqttc::v5::mqttbytes::{v5, QoS as QoS5};
use sg_mqtt::{decode_connect, Connect, Decoded};

/// The will of a generated CONNECT.
#[derive(Debug, Clone)]
struct WillSpec {
    topic: String,
    payload: Vec<u8>,
    qos: u8,
    retain: bool,
    /// MQTT 5 only: Will Delay Interval and Content Type properties.
    delay: Option<u32>,
    content_type: Option<String>,
}

/// The fields of a generated CONNECT; empty user name / password mean absent.
#[derive(Debug, Clone)]
struct Spec {
    client_id: String,
    keep_alive: u16,
    clean: bool,
    will: Option<WillSpec>,
    username: String,
    password: String,
    /// MQTT 5 only: CONNECT properties.
    session_expiry: Option<u32>,
    receive_max: Option<u16>,
    user_properties: Vec<(String, String)>,
}

fn text(max: usize) -> impl Strategy<Value = String> {
    prop::string::string_regex(&format!("\\PC{{0,{max}}}")).expect("regex")
}

fn will_spec() -> impl Strategy<Value = WillSpec> {
    (
        text(20),
        prop::collection::vec(any::<u8>(), 0..300),
        0u8..3,
        any::<bool>(),
        any::<Option<u32>>(),
        prop::option::of(text(10)),
    )
        .prop_map(
            |(topic, payload, qos, retain, delay, content_type)| WillSpec {
                topic,
                payload,
                qos,
                retain,
                delay,
                content_type,
            },
        )
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        (text(30), any::<u16>(), any::<bool>()),
        prop::option::of(will_spec()),
        (text(12), text(12)),
        (any::<Option<u32>>(), any::<Option<u16>>()),
        prop::collection::vec((text(8), text(8)), 0..3),
    )
        .prop_map(
            |((client_id, keep_alive, clean), will, login, props, users)| Spec {
                client_id,
                keep_alive,
                clean,
                will,
                username: login.0,
                password: login.1,
                session_expiry: props.0,
                receive_max: props.1,
                user_properties: users,
            },
        )
}

fn qos4(qos: u8) -> QoS4 {
    [QoS4::AtMostOnce, QoS4::AtLeastOnce, QoS4::ExactlyOnce][usize::from(qos)]
}

fn qos5(qos: u8) -> QoS5 {
    [QoS5::AtMostOnce, QoS5::AtLeastOnce, QoS5::ExactlyOnce][usize::from(qos)]
}

/// Encodes `spec` with rumqttc's MQTT 3.1.1 encoder; a password needs a user name there.
fn encode_v4(spec: &Spec) -> Vec<u8> {
    let connect = v4::Connect {
        protocol: rumqttc::mqttbytes::Protocol::V4,
        keep_alive: spec.keep_alive,
        client_id: spec.client_id.clone(),
        clean_session: spec.clean,
        last_will: spec
            .will
            .as_ref()
            .map(|w| v4::LastWill::new(w.topic.clone(), w.payload.clone(), qos4(w.qos), w.retain)),
        login: (!spec.username.is_empty())
            .then(|| v4::Login::new(spec.username.clone(), spec.password.clone())),
    };
    let mut buf = BytesMut::new();
    let written = connect.write(&mut buf).expect("encodable");
    assert_eq!(written, buf.len());
    buf.to_vec()
}

/// Encodes `spec` with rumqttc's MQTT 5 encoder.
fn encode_v5(spec: &Spec) -> Vec<u8> {
    let properties = v5::ConnectProperties {
        session_expiry_interval: spec.session_expiry,
        receive_maximum: spec.receive_max,
        user_properties: spec.user_properties.clone(),
        ..v5::ConnectProperties::new()
    };
    let connect = v5::Connect {
        keep_alive: spec.keep_alive,
        client_id: spec.client_id.clone(),
        clean_start: spec.clean,
        properties: Some(properties),
    };
    let will = spec.will.as_ref().map(|w| {
        let properties = v5::LastWillProperties {
            delay_interval: w.delay,
            payload_format_indicator: None,
            message_expiry_interval: None,
            content_type: w.content_type.clone(),
            response_topic: None,
            correlation_data: None,
            user_properties: Vec::new(),
        };
        let topic = w.topic.clone();
        v5::LastWill::new(
            topic,
            w.payload.clone(),
            qos5(w.qos),
            w.retain,
            Some(properties),
        )
    });
    let login = (!spec.username.is_empty() || !spec.password.is_empty())
        .then(|| v5::Login::new(spec.username.clone(), spec.password.clone()));
    let mut buf = BytesMut::new();
    let written = connect.write(&will, &login, &mut buf).expect("encodable");
    assert_eq!(written, buf.len());
    buf.to_vec()
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The raw CONNECT properties rumqttc writes for `spec`.
fn connect_properties(spec: &Spec) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(v) = spec.session_expiry {
        out.push(0x11);
        out.extend_from_slice(&v.to_be_bytes());
    }
    if let Some(v) = spec.receive_max {
        out.push(0x21);
        out.extend_from_slice(&v.to_be_bytes());
    }
    for (key, value) in &spec.user_properties {
        out.push(0x26);
        put_str(&mut out, key);
        put_str(&mut out, value);
    }
    out
}

/// The raw will properties rumqttc writes for `will`.
fn will_properties(will: &WillSpec) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(v) = will.delay {
        out.push(0x18);
        out.extend_from_slice(&v.to_be_bytes());
    }
    if let Some(content_type) = &will.content_type {
        out.push(0x03);
        put_str(&mut out, content_type);
    }
    out
}

fn non_empty(s: &str) -> Option<&[u8]> {
    (!s.is_empty()).then_some(s.as_bytes())
}

/// Asserts that `c`, decoded from `packet`, holds exactly the fields of `spec`.
fn check_fields(c: &Connect<'_>, spec: &Spec, level: u8, packet: &[u8]) {
    assert_eq!(c.protocol_name, b"MQTT");
    assert_eq!(c.level, level);
    assert_eq!(c.keep_alive, spec.keep_alive);
    assert_eq!(c.flags.clean_start(), spec.clean);
    assert_eq!(c.client_id, spec.client_id.as_bytes());
    assert_eq!(c.client_id_str(), Some(spec.client_id.as_str()));
    let props = if level == 5 {
        connect_properties(spec)
    } else {
        Vec::new()
    };
    assert_eq!(c.properties, props);
    assert_eq!(c.flags.will(), spec.will.is_some());
    match (&c.will, &spec.will) {
        (Some(got), Some(want)) => {
            assert_eq!(got.topic, want.topic.as_bytes());
            assert_eq!(got.payload, want.payload);
            let props = if level == 5 {
                will_properties(want)
            } else {
                Vec::new()
            };
            assert_eq!(got.properties, props);
            assert_eq!(c.flags.will_qos(), want.qos);
            assert_eq!(c.flags.will_retain(), want.retain);
        }
        (None, None) => assert_eq!((c.flags.will_qos(), c.flags.will_retain()), (0, false)),
        (got, want) => panic!("will mismatch: {got:?} vs {want:?}"),
    }
    assert_eq!(c.username, non_empty(&spec.username));
    assert_eq!(c.flags.username(), !spec.username.is_empty());
    assert_eq!(c.password, non_empty(&spec.password));
    assert_eq!(c.flags.password(), !spec.password.is_empty());
    assert_eq!(c.packet_len, packet.len());
}

/// Decodes `packet`, each of its strict prefixes, and `packet` followed by a PUBLISH.
fn check_roundtrip(spec: &Spec, level: u8, packet: &[u8]) {
    let Decoded::Connect(c) = decode_connect(packet) else {
        panic!("{:?} from {packet:x?}", decode_connect(packet));
    };
    check_fields(&c, spec, level, packet);
    for k in 0..packet.len() {
        match decode_connect(&packet[..k]) {
            Decoded::Incomplete(n) => assert!(k < n && n <= packet.len(), "{k} -> {n}"),
            other => panic!("prefix of {k} bytes gave {other:?}"),
        }
    }
    let mut pipelined = packet.to_vec();
    pipelined.extend_from_slice(&[0x30, 0x05, 0x00, 0x01, b't', b'h', b'i']);
    assert_eq!(decode_connect(&pipelined), Decoded::Connect(c));
}

proptest! {
    #[test]
    fn v4_roundtrip(mut spec in spec()) {
        // MQTT 3.1.1 forbids a password without a user name.
        if spec.username.is_empty() {
            spec.password.clear();
        }
        let packet = encode_v4(&spec);
        check_roundtrip(&spec, 4, &packet);
    }

    #[test]
    fn v5_roundtrip(spec in spec()) {
        let packet = encode_v5(&spec);
        check_roundtrip(&spec, 5, &packet);
    }
}
