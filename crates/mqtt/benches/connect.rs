//! Nanoseconds per CONNECT decode: the work the mqtt-proxy plugin does once per connection.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sg_mqtt::{decode_connect, Decoded};

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// A CONNECT packet: fixed header, then `body` (variable header and payload).
fn packet(body: Vec<u8>) -> Vec<u8> {
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
    out.extend(body);
    out
}

/// MQTT 3.1.1, client id only.
fn minimal() -> Vec<u8> {
    b"\x10\x0f\x00\x04MQTT\x04\x02\x00\x3c\x00\x03foo".to_vec()
}

/// MQTT 3.1.1 as devices send it: 23-byte client id, a will, user name and password.
fn v311_full() -> Vec<u8> {
    let mut body = Vec::new();
    put_str(&mut body, b"MQTT");
    body.extend_from_slice(&[4, 0xce, 0x00, 0x3c]);
    put_str(&mut body, b"sensor-0042-eu-west-1ab");
    put_str(&mut body, b"devices/sensor-0042/status");
    put_str(&mut body, b"offline");
    put_str(&mut body, b"fleet-user");
    put_str(&mut body, b"s3cr3t-passw0rd-for-device");
    packet(body)
}

/// MQTT 5.0 with connect properties, user name and password.
fn v5_properties() -> Vec<u8> {
    let mut props = vec![0x11, 0, 0, 0x0e, 0x10, 0x21, 0, 100];
    props.push(0x26);
    put_str(&mut props, b"region");
    put_str(&mut props, b"eu-west-1");
    let mut body = Vec::new();
    put_str(&mut body, b"MQTT");
    body.extend_from_slice(&[5, 0xc2, 0x00, 0x3c, props.len() as u8]);
    body.extend(props);
    put_str(&mut body, b"sensor-0042-eu-west-1ab");
    put_str(&mut body, b"fleet-user");
    put_str(&mut body, b"s3cr3t-passw0rd-for-device");
    packet(body)
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_connect");
    for (name, bytes) in [
        ("v311_minimal", minimal()),
        ("v311_will_user_password", v311_full()),
        ("v5_properties", v5_properties()),
    ] {
        assert!(
            matches!(decode_connect(&bytes), Decoded::Connect(_)),
            "{name} must be a valid CONNECT"
        );
        group.throughput(Throughput::Elements(1));
        group.bench_function(name, |b| b.iter(|| decode_connect(black_box(&bytes))));
    }
    let full = v311_full();
    let partial = &full[..full.len() / 2];
    assert!(matches!(decode_connect(partial), Decoded::Incomplete(_)));
    group.bench_function("v311_incomplete", |b| {
        b.iter(|| decode_connect(black_box(partial)))
    });
    let publish = b"\x30\x0c\x00\x04test\x00hello".to_vec();
    assert!(matches!(decode_connect(&publish), Decoded::Invalid(_)));
    group.bench_function("not_a_connect", |b| {
        b.iter(|| decode_connect(black_box(&publish)))
    });
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
