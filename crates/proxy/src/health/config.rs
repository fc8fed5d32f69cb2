//! An upstream's `checks`, read from its stored JSON with the defaults of APISIX's schema and
//! of lua-resty-healthcheck.

use std::time::Duration;

use serde_json::Value;

/// The `type` of a check. streamgate probes every type with a TCP connect (stream upstreams
/// speak no HTTP); the configured name is kept for the control API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckType {
    Http,
    Https,
    Tcp,
}

impl CheckType {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckType::Http => "http",
            CheckType::Https => "https",
            CheckType::Tcp => "tcp",
        }
    }

    fn parse(value: Option<&Value>) -> CheckType {
        match value.and_then(Value::as_str) {
            Some("tcp") => CheckType::Tcp,
            Some("https") => CheckType::Https,
            _ => CheckType::Http,
        }
    }
}

/// How many consecutive outcomes flip a node; 0 disables that kind of report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    pub successes: u8,
    pub tcp_failures: u8,
    pub timeouts: u8,
}

/// `checks.active`.
#[derive(Clone, Debug, PartialEq)]
pub struct Active {
    pub kind: CheckType,
    pub timeout: Duration,
    /// The most probes of this upstream in flight at once.
    pub concurrency: usize,
    /// Shown as the nodes' `hostname` (APISIX sends it as the HTTP Host of HTTP probes).
    pub host: Option<String>,
    /// Probes go to this port instead of the node's.
    pub port: Option<u16>,
    /// Between two probes of a healthy node, and of an unhealthy one.
    pub healthy_interval: Duration,
    pub unhealthy_interval: Duration,
    pub thresholds: Thresholds,
}

/// `checks`: active probes, and the thresholds connection attempts are counted against.
#[derive(Clone, Debug, PartialEq)]
pub struct Checks {
    /// The type the control API shows: the active check's, else the passive one's.
    pub kind: CheckType,
    pub active: Option<Active>,
    /// `checks.passive`'s thresholds, or lua-resty-healthcheck's defaults when it is absent
    /// (APISIX still reports failed connects that lead to a retry against them).
    pub passive: Thresholds,
    /// Whether `checks.passive` is configured: only then do successful connects count.
    pub passive_configured: bool,
}

fn get<'a>(value: Option<&'a Value>, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value?, |v, key| v.get(key))
}

fn count(value: Option<&Value>, path: &[&str], default: u8) -> u8 {
    get(value, path)
        .and_then(Value::as_u64)
        .map_or(default, |n| n.min(254) as u8)
}

fn seconds(value: Option<&Value>, path: &[&str], default: f64) -> Duration {
    let secs = get(value, path)
        .and_then(Value::as_f64)
        .filter(|s| *s > 0.0 && s.is_finite())
        .unwrap_or(default);
    Duration::from_secs_f64(secs)
}

impl Checks {
    /// Reads an upstream's `checks`; `None` when it has none.
    pub fn parse(conf: &Value) -> Option<Checks> {
        let checks = conf.get("checks").filter(|c| c.is_object())?;
        let active = checks.get("active").filter(|a| a.is_object()).map(|a| {
            let a = Some(a);
            Active {
                kind: CheckType::parse(get(a, &["type"])),
                timeout: seconds(a, &["timeout"], 1.0),
                concurrency: get(a, &["concurrency"])
                    .and_then(Value::as_u64)
                    .map_or(10, |n| n.clamp(1, 1024) as usize),
                host: get(a, &["host"]).and_then(Value::as_str).map(str::to_owned),
                port: get(a, &["port"])
                    .and_then(Value::as_u64)
                    .and_then(|p| u16::try_from(p).ok())
                    .filter(|p| *p > 0),
                healthy_interval: seconds(a, &["healthy", "interval"], 1.0),
                unhealthy_interval: seconds(a, &["unhealthy", "interval"], 1.0),
                thresholds: Thresholds {
                    successes: count(a, &["healthy", "successes"], 2),
                    tcp_failures: count(a, &["unhealthy", "tcp_failures"], 2),
                    timeouts: count(a, &["unhealthy", "timeouts"], 3),
                },
            }
        });
        let passive = checks.get("passive").filter(|p| p.is_object());
        let kind = match &active {
            Some(active) => active.kind,
            None => CheckType::parse(get(passive, &["type"])),
        };
        Some(Checks {
            kind,
            active,
            passive: Thresholds {
                successes: count(passive, &["healthy", "successes"], 5),
                tcp_failures: count(passive, &["unhealthy", "tcp_failures"], 2),
                timeouts: count(passive, &["unhealthy", "timeouts"], 7),
            },
            passive_configured: passive.is_some(),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn defaults_follow_the_schema_and_the_library() {
        let checks = Checks::parse(&json!({"checks": {"active": {"type": "tcp"}}})).unwrap();
        let active = checks.active.as_ref().unwrap();
        assert_eq!(active.kind, CheckType::Tcp);
        assert_eq!(active.timeout, Duration::from_secs(1));
        assert_eq!(active.concurrency, 10);
        assert_eq!(active.port, None);
        assert_eq!(active.healthy_interval, Duration::from_secs(1));
        assert_eq!(
            active.thresholds,
            Thresholds {
                successes: 2,
                tcp_failures: 2,
                timeouts: 3
            }
        );
        assert_eq!(
            checks.passive,
            Thresholds {
                successes: 5,
                tcp_failures: 2,
                timeouts: 7
            }
        );
        assert!(!checks.passive_configured);
        assert_eq!(checks.kind, CheckType::Tcp);
        assert!(Checks::parse(&json!({"nodes": {}})).is_none());
    }

    #[test]
    fn configured_values_are_read() {
        let checks = Checks::parse(&json!({"checks": {
            "active": {"timeout": 0.5, "port": 1884, "host": "probe.example", "concurrency": 2,
                       "healthy": {"interval": 3, "successes": 1},
                       "unhealthy": {"interval": 2, "tcp_failures": 4, "timeouts": 5}},
            "passive": {"type": "tcp", "healthy": {"successes": 0},
                        "unhealthy": {"tcp_failures": 1, "timeouts": 2}}}}))
        .unwrap();
        let active = checks.active.unwrap();
        assert_eq!(active.kind, CheckType::Http, "APISIX's default type");
        assert_eq!(active.timeout, Duration::from_millis(500));
        assert_eq!(
            (active.port, active.host.as_deref(), active.concurrency),
            (Some(1884), Some("probe.example"), 2)
        );
        assert_eq!(active.healthy_interval, Duration::from_secs(3));
        assert_eq!(active.unhealthy_interval, Duration::from_secs(2));
        assert_eq!(
            active.thresholds,
            Thresholds {
                successes: 1,
                tcp_failures: 4,
                timeouts: 5
            }
        );
        assert_eq!(
            checks.passive,
            Thresholds {
                successes: 0,
                tcp_failures: 1,
                timeouts: 2
            }
        );
        assert!(checks.passive_configured);
    }
}
