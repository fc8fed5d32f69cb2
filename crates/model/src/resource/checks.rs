//! An upstream's typed `checks`, with the defaults of APISIX's schema and of
//! lua-resty-healthcheck.

use serde::Deserialize;

use super::{Count, Int, Port, Seconds};

/// The `type` of a check. streamgate probes every type with a TCP connect (stream upstreams
/// speak no HTTP); the configured name is kept for the control API.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CheckType {
    #[default]
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
    pub timeout: Seconds,
    /// The most probes of this upstream in flight at once (1 to 1024).
    pub concurrency: usize,
    /// Shown as the nodes' `hostname` (APISIX sends it as the HTTP Host of HTTP probes).
    pub host: Option<String>,
    /// Probes go to this port instead of the node's.
    pub port: Option<u16>,
    /// Between two probes of a healthy node, and of an unhealthy one.
    pub healthy_interval: Seconds,
    pub unhealthy_interval: Seconds,
    pub thresholds: Thresholds,
}

/// `checks`: active probes, and the thresholds connection attempts are counted against.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(from = "RawChecks")]
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

/// The most probes of one upstream in flight at once, whatever `concurrency` says.
pub const MAX_CONCURRENCY: usize = 1024;

#[derive(Deserialize)]
struct RawChecks {
    #[serde(default)]
    active: Option<RawActive>,
    #[serde(default)]
    passive: Option<RawPassive>,
}

#[derive(Default, Deserialize)]
struct RawCounters {
    #[serde(default)]
    interval: Option<Seconds>,
    #[serde(default)]
    successes: Option<Count>,
    #[serde(default)]
    tcp_failures: Option<Count>,
    #[serde(default)]
    timeouts: Option<Count>,
}

#[derive(Deserialize)]
struct RawActive {
    #[serde(rename = "type", default)]
    kind: CheckType,
    #[serde(default)]
    timeout: Option<Seconds>,
    /// The schema sets no minimum.
    #[serde(default)]
    concurrency: Option<Int>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    port: Option<Port>,
    #[serde(default)]
    healthy: RawCounters,
    #[serde(default)]
    unhealthy: RawCounters,
}

#[derive(Deserialize)]
struct RawPassive {
    #[serde(rename = "type", default)]
    kind: CheckType,
    #[serde(default)]
    healthy: RawCounters,
    #[serde(default)]
    unhealthy: RawCounters,
}

/// A threshold: counters above 254 mean 254, as lua-resty-healthcheck's schema caps them.
fn threshold(count: Option<Count>, default: u8) -> u8 {
    count.map_or(default, |Count(n)| u8::try_from(n.min(254)).unwrap_or(254))
}

/// A probe interval or timeout: 0 (or absent) means the default of 1 s.
fn interval(value: Option<Seconds>) -> Seconds {
    value
        .and_then(Seconds::positive)
        .unwrap_or(Seconds::from_secs(1))
}

impl From<RawChecks> for Checks {
    fn from(raw: RawChecks) -> Checks {
        let active = raw.active.map(|a| Active {
            kind: a.kind,
            timeout: interval(a.timeout),
            concurrency: a.concurrency.map_or(10, |Int(n)| {
                usize::try_from(n.max(1)).map_or(MAX_CONCURRENCY, |n| n.min(MAX_CONCURRENCY))
            }),
            host: a.host,
            port: a.port.map(|p| p.0),
            healthy_interval: interval(a.healthy.interval),
            unhealthy_interval: interval(a.unhealthy.interval),
            thresholds: Thresholds {
                successes: threshold(a.healthy.successes, 2),
                tcp_failures: threshold(a.unhealthy.tcp_failures, 2),
                timeouts: threshold(a.unhealthy.timeouts, 3),
            },
        });
        let kind = match (&active, &raw.passive) {
            (Some(active), _) => active.kind,
            (None, Some(passive)) => passive.kind,
            (None, None) => CheckType::Http,
        };
        let passive = raw.passive.as_ref();
        Checks {
            kind,
            active,
            passive: Thresholds {
                successes: threshold(passive.and_then(|p| p.healthy.successes), 5),
                tcp_failures: threshold(passive.and_then(|p| p.unhealthy.tcp_failures), 2),
                timeouts: threshold(passive.and_then(|p| p.unhealthy.timeouts), 7),
            },
            passive_configured: passive.is_some(),
        }
    }
}
