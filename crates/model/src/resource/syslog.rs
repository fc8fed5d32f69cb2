//! The `syslog` stream plugin's typed conf: APISIX's schema fields, its batch-processor fields
//! and their defaults. `flush_limit` and `pool_size` are accepted and unused (streamgate writes
//! each batch at once, over one connection per distinct server conf).

use std::time::Duration;

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use super::{Int, Seconds, MAX_DURATION};

/// How entries travel to the syslog server.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum SockType {
    #[default]
    Tcp,
    Udp,
}

/// `syslog`.
#[derive(Clone, Debug, PartialEq)]
pub struct SyslogConf {
    pub host: String,
    /// 0 when the stored port is out of range (APISIX's schema has no bounds): every send fails.
    pub port: u16,
    pub sock_type: SockType,
    /// TLS over TCP; the server's certificate is not verified, as in APISIX.
    pub tls: bool,
    /// Connect and write timeout (APISIX's `timeout`, in milliseconds).
    pub timeout: Duration,
    /// Bytes of entries waiting to be sent beyond which new entries are dropped.
    pub drop_limit: u64,
    /// The entry's fields: `$var` values are session variables, anything else is literal.
    pub log_format: Option<Map<String, Value>>,
    /// The batch processor's name, in log lines.
    pub name: String,
    pub batch_max_size: u64,
    /// Send a batch when no entry came for this long…
    pub inactive_timeout: Duration,
    /// …or when its first entry is this old.
    pub buffer_duration: Duration,
    /// Sends of a failed batch after the first; then it is dropped.
    pub max_retry_count: u64,
    pub retry_delay: Duration,
}

#[derive(Deserialize)]
struct RawSyslog {
    host: String,
    port: Int,
    #[serde(default)]
    sock_type: SockType,
    #[serde(default)]
    tls: bool,
    #[serde(default)]
    timeout: Option<Int>,
    #[serde(default)]
    drop_limit: Option<Int>,
    #[serde(default)]
    log_format: Option<Map<String, Value>>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    batch_max_size: Option<Int>,
    #[serde(default)]
    inactive_timeout: Option<Seconds>,
    #[serde(default)]
    buffer_duration: Option<Seconds>,
    #[serde(default)]
    max_retry_count: Option<Int>,
    #[serde(default)]
    retry_delay: Option<Seconds>,
}

/// A duration where APISIX's schema has `minimum: 1`: 0 from an unchecked store means unset.
fn at_least_one(value: Option<Seconds>, default: u64) -> Duration {
    value
        .and_then(Seconds::positive)
        .unwrap_or(Seconds::from_secs(default))
        .get()
}

/// A count where APISIX's schema has `minimum: 1`: 0 or less from an unchecked store means
/// unset.
fn positive(value: Option<Int>, default: u64) -> u64 {
    value
        .and_then(|n| u64::try_from(n.0).ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

/// A count where a negative value can only come from an unchecked store: it counts as 0.
fn non_negative(value: Option<Int>, default: u64) -> u64 {
    value.map_or(default, |n| u64::try_from(n.0).unwrap_or(0))
}

impl<'de> Deserialize<'de> for SyslogConf {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = RawSyslog::deserialize(deserializer)?;
        Ok(SyslogConf {
            host: raw.host,
            port: u16::try_from(raw.port.0).unwrap_or(0),
            sock_type: raw.sock_type,
            tls: raw.tls,
            timeout: Duration::from_millis(positive(raw.timeout, 3000)).min(MAX_DURATION),
            drop_limit: non_negative(raw.drop_limit, 1_048_576),
            log_format: raw.log_format,
            name: raw.name.unwrap_or_else(|| "stream sys logger".to_owned()),
            batch_max_size: positive(raw.batch_max_size, 1000),
            inactive_timeout: at_least_one(raw.inactive_timeout, 5),
            buffer_duration: at_least_one(raw.buffer_duration, 60),
            max_retry_count: non_negative(raw.max_retry_count, 0),
            retry_delay: raw.retry_delay.unwrap_or(Seconds::from_secs(1)).get(),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::resource::decode;

    #[test]
    fn apisix_defaults() {
        let conf: SyslogConf = decode(&json!({"host": "127.0.0.1", "port": 514})).unwrap();
        assert_eq!(conf.sock_type, SockType::Tcp);
        assert!(!conf.tls);
        assert_eq!(conf.timeout, Duration::from_secs(3));
        assert_eq!(conf.drop_limit, 1_048_576);
        assert_eq!(conf.log_format, None);
        assert_eq!(conf.name, "stream sys logger");
        assert_eq!(conf.batch_max_size, 1000);
        assert_eq!(conf.inactive_timeout, Duration::from_secs(5));
        assert_eq!(conf.buffer_duration, Duration::from_secs(60));
        assert_eq!(conf.max_retry_count, 0);
        assert_eq!(conf.retry_delay, Duration::from_secs(1));
    }

    #[test]
    fn bounds_hold_for_unchecked_values() {
        let conf: SyslogConf = decode(&json!({"host": "h", "port": 514, "sock_type": "udp",
            "timeout": 1e300, "inactive_timeout": 0, "buffer_duration": 1e300,
            "retry_delay": 0, "batch_max_size": 0, "max_retry_count": 1e300,
            "drop_limit": -1}))
        .unwrap();
        assert_eq!(conf.sock_type, SockType::Udp);
        assert_eq!(conf.timeout, MAX_DURATION);
        assert_eq!(conf.inactive_timeout, Duration::from_secs(5));
        assert_eq!(conf.buffer_duration, MAX_DURATION);
        assert_eq!(conf.retry_delay, Duration::ZERO);
        assert_eq!(conf.batch_max_size, 1000);
        assert_eq!(conf.max_retry_count, i64::MAX as u64, "saturated");
        assert_eq!(conf.drop_limit, 0);
        // Values APISIX's schema lets through load: the route keeps serving, its sends fail.
        for port in [json!(0), json!(-1), json!(70000), json!(1e300)] {
            let conf: SyslogConf = decode(&json!({"host": "h", "port": port})).unwrap();
            assert_eq!(conf.port, 0, "{port}");
        }
        let negative: SyslogConf =
            decode(&json!({"host": "h", "port": 514, "timeout": -5, "max_retry_count": -2}))
                .unwrap();
        assert_eq!(negative.timeout, Duration::from_secs(3));
        assert_eq!(negative.max_retry_count, 0);
    }
}
