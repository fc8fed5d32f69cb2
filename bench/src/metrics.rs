//! What the report shows for each scenario: the metrics, their units and the targets of
//! issue #7 (as ratios to HAProxy).

use std::time::Duration;

use crate::report::RunResult;
use crate::stats::Latency;

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// How a ratio to HAProxy is judged.
#[derive(Clone, Copy)]
pub enum Target {
    AtLeast(f64),
    AtMost(f64),
}

impl Target {
    pub fn text(self) -> String {
        match self {
            Target::AtLeast(x) => format!("≥ {x:.1}×"),
            Target::AtMost(x) => format!("≤ {x:.1}×"),
        }
    }

    pub fn met(self, ratio: f64) -> bool {
        match self {
            Target::AtLeast(x) => ratio >= x,
            Target::AtMost(x) => ratio <= x,
        }
    }
}

pub struct Metric {
    pub name: &'static str,
    pub get: fn(&RunResult) -> Option<f64>,
    pub format: fn(f64) -> String,
    pub target: Option<Target>,
}

fn bytes(v: f64) -> String {
    format!("{} B", group(v))
}
fn per_s(v: f64) -> String {
    format!("{}/s", group(v))
}
fn millis(v: f64) -> String {
    format!("{v:.2} ms")
}
fn secs(v: f64) -> String {
    format!("{v:.2} s")
}
fn percent(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}
fn cpu_ms(v: f64) -> String {
    format!("{:.1} ms", v * 1000.0)
}

/// `v` rounded, with thin thousands separators.
fn group(v: f64) -> String {
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < -0.5 {
        out.insert(0, '-');
    }
    out
}

fn p50(l: Latency) -> f64 {
    ms(l.p50)
}
fn p99(l: Latency) -> f64 {
    ms(l.p99)
}

pub fn metrics() -> Vec<Metric> {
    vec![
        Metric {
            name: "Idle hold: proxy RSS per idle connection",
            get: |r| r.idle,
            format: bytes,
            target: Some(Target::AtMost(0.6)),
        },
        Metric {
            name: "Silent clients (no CONNECT yet): proxy RSS per connection",
            get: |r| r.silent,
            format: bytes,
            target: None,
        },
        Metric {
            name: "Idle TLS hold: proxy RSS per idle TLS connection",
            get: |r| r.idle_tls,
            format: bytes,
            target: Some(Target::AtMost(0.5)),
        },
        Metric {
            name: "Idle mTLS hold (client certificate verified): proxy RSS per connection",
            get: |r| r.idle_mtls,
            format: bytes,
            target: Some(Target::AtMost(0.5)),
        },
        Metric {
            name: "Idle TLS hold, TLS to the brokers too: proxy RSS per connection",
            get: |r| r.idle_tls_upstream,
            format: bytes,
            target: Some(Target::AtMost(0.5)),
        },
        Metric {
            name: "Connect storm: connections/s",
            get: |r| r.storm.map(|s| s.rate),
            format: per_s,
            target: Some(Target::AtLeast(1.0)),
        },
        Metric {
            name: "Connect storm: p50 CONNECT→CONNACK",
            get: |r| r.storm.map(|s| p50(s.latency)),
            format: millis,
            target: None,
        },
        Metric {
            name: "Connect storm: p99 CONNECT→CONNACK",
            get: |r| r.storm.map(|s| p99(s.latency)),
            format: millis,
            target: Some(Target::AtMost(1.0)),
        },
        Metric {
            name: "Connect storm: proxy CPU per 1000 connections",
            get: |r| r.storm.and_then(|s| s.cpu_per_1k),
            format: cpu_ms,
            target: None,
        },
        Metric {
            name: "Connect storm: machine idle (all cores)",
            get: |r| r.storm.and_then(|s| s.machine_idle),
            format: percent,
            target: None,
        },
        Metric {
            name: "QoS 0 publish: messages/s",
            get: |r| r.qos0.map(|p| p.rate),
            format: per_s,
            target: Some(Target::AtLeast(1.0)),
        },
        Metric {
            name: "QoS 0 publish: p50 latency",
            get: |r| r.qos0.map(|p| p50(p.latency)),
            format: millis,
            target: None,
        },
        Metric {
            name: "QoS 0 publish: p99 latency",
            get: |r| r.qos0.map(|p| p99(p.latency)),
            format: millis,
            target: Some(Target::AtMost(1.0)),
        },
        Metric {
            name: "QoS 0 publish: proxy CPU per million messages",
            get: |r| r.qos0.and_then(|p| p.cpu_per_million),
            format: secs,
            target: Some(Target::AtMost(0.8)),
        },
        Metric {
            name: "QoS 1 publish: messages/s",
            get: |r| r.qos1.map(|p| p.rate),
            format: per_s,
            target: None,
        },
        Metric {
            name: "QoS 1 publish: p50 latency",
            get: |r| r.qos1.map(|p| p50(p.latency)),
            format: millis,
            target: None,
        },
        Metric {
            name: "QoS 1 publish: p99 latency",
            get: |r| r.qos1.map(|p| p99(p.latency)),
            format: millis,
            target: None,
        },
        Metric {
            name: "QoS 1 publish: proxy CPU per million messages",
            get: |r| r.qos1.and_then(|p| p.cpu_per_million),
            format: secs,
            target: None,
        },
        Metric {
            name: "TLS connect storm: handshakes/s",
            get: |r| r.tls.map(|s| s.rate),
            format: per_s,
            target: Some(Target::AtLeast(1.0)),
        },
        Metric {
            name: "TLS connect storm: p50 handshake",
            get: |r| r.tls.and_then(|s| s.handshake).map(p50),
            format: millis,
            target: None,
        },
        Metric {
            name: "TLS connect storm: p99 handshake",
            get: |r| r.tls.and_then(|s| s.handshake).map(p99),
            format: millis,
            target: None,
        },
        Metric {
            name: "TLS connect storm: p50 TLS + CONNECT→CONNACK",
            get: |r| r.tls.map(|s| p50(s.latency)),
            format: millis,
            target: Some(Target::AtMost(1.0)),
        },
        Metric {
            name: "TLS connect storm: p99 TLS + CONNECT→CONNACK",
            get: |r| r.tls.map(|s| p99(s.latency)),
            format: millis,
            target: None,
        },
        Metric {
            name: "TLS connect storm: proxy CPU per 1000 handshakes",
            get: |r| r.tls.and_then(|s| s.cpu_per_1k),
            format: cpu_ms,
            target: None,
        },
        Metric {
            name: "TLS connect storm: machine idle (all cores)",
            get: |r| r.tls.and_then(|s| s.machine_idle),
            format: percent,
            target: None,
        },
        Metric {
            name: "QoS 0 publish over TLS: messages/s",
            get: |r| r.qos0_tls.map(|p| p.rate),
            format: per_s,
            target: Some(Target::AtLeast(1.0)),
        },
        Metric {
            name: "QoS 0 publish over TLS: p99 latency",
            get: |r| r.qos0_tls.map(|p| p99(p.latency)),
            format: millis,
            target: None,
        },
        Metric {
            name: "QoS 0 publish over TLS: proxy CPU per million messages",
            get: |r| r.qos0_tls.and_then(|p| p.cpu_per_million),
            format: secs,
            target: Some(Target::AtMost(0.8)),
        },
        Metric {
            name: "TLS reconnect storm (resuming clients): handshakes/s",
            get: |r| r.tls_resumed.map(|s| s.rate),
            format: per_s,
            target: Some(Target::AtLeast(1.2)),
        },
        Metric {
            name: "TLS reconnect storm: share of handshakes resumed",
            get: |r| r.tls_resumed.and_then(|s| s.resumed),
            format: percent,
            target: None,
        },
        Metric {
            name: "TLS reconnect storm: p99 TLS + CONNECT→CONNACK",
            get: |r| r.tls_resumed.map(|s| p99(s.latency)),
            format: millis,
            target: None,
        },
        Metric {
            name: "TLS reconnect storm: proxy CPU per 1000 handshakes",
            get: |r| r.tls_resumed.and_then(|s| s.cpu_per_1k),
            format: cpu_ms,
            target: None,
        },
    ]
}
