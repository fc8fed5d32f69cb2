//! A stream route's typed `plugins`: one conf type per shipped stream plugin, with APISIX's
//! defaults. Disabled plugins (`_meta.disable`) are left out, whatever their conf holds.

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use super::{decode, Count, DecodeError, Int, Net, Seconds, SyslogConf};

/// The enabled plugins of a route, in the order they were stored.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plugins(pub Vec<PluginConf>);

/// One enabled plugin's conf.
#[derive(Clone, Debug, PartialEq)]
pub enum PluginConf {
    MqttProxy(MqttProxyConf),
    IpRestriction(IpRestrictionConf),
    LimitConn(LimitConnConf),
    Prometheus(PrometheusConf),
    Syslog(SyslogConf),
}

impl PluginConf {
    /// The plugin's name as APISIX spells it.
    pub fn name(&self) -> &'static str {
        match self {
            PluginConf::MqttProxy(_) => "mqtt-proxy",
            PluginConf::IpRestriction(_) => "ip-restriction",
            PluginConf::LimitConn(_) => "limit-conn",
            PluginConf::Prometheus(_) => "prometheus",
            PluginConf::Syslog(_) => "syslog",
        }
    }
}

fn is_disabled(conf: &Value) -> bool {
    conf.pointer("/_meta/disable").and_then(Value::as_bool) == Some(true)
}

/// A plugin of a route that streamgate cannot run.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("unknown plugin [{0}]")]
    Unknown(String),
    #[error("failed to check the configuration of stream plugin [{name}]: {error}")]
    Invalid { name: String, error: DecodeError },
}

impl TryFrom<&Map<String, Value>> for Plugins {
    type Error = PluginError;

    fn try_from(plugins: &Map<String, Value>) -> Result<Plugins, PluginError> {
        let mut enabled = Vec::new();
        for (name, conf) in plugins.iter().filter(|(_, conf)| !is_disabled(conf)) {
            let typed = match name.as_str() {
                "mqtt-proxy" => decode(conf).map(PluginConf::MqttProxy),
                "ip-restriction" => decode(conf).map(PluginConf::IpRestriction),
                "limit-conn" => decode(conf).map(PluginConf::LimitConn),
                "prometheus" => decode(conf).map(PluginConf::Prometheus),
                "syslog" => decode(conf).map(PluginConf::Syslog),
                other => return Err(PluginError::Unknown(other.to_owned())),
            };
            enabled.push(typed.map_err(|error| PluginError::Invalid {
                name: name.clone(),
                error,
            })?);
        }
        Ok(Plugins(enabled))
    }
}

impl<'de> Deserialize<'de> for Plugins {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = Map::deserialize(deserializer)?;
        Plugins::try_from(&map).map_err(serde::de::Error::custom)
    }
}

/// `mqtt-proxy`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct MqttProxyConf {
    #[serde(default = "mqtt")]
    pub protocol_name: String,
    /// Required by the schema; 4 (MQTT 3.1.1) when an unchecked store leaves it out.
    #[serde(default = "level_4")]
    pub protocol_level: Int,
    /// Answer a name or level mismatch with a CONNACK before closing (streamgate extension).
    #[serde(default)]
    pub reject_with_connack: bool,
    /// A session whose CONNECT declares a keep-alive of K > 0 seconds stays up while idle for
    /// at least 1.5 × K, as the broker keeps it (streamgate extension, on by default).
    #[serde(default = "yes")]
    pub keepalive_idle_timeout: bool,
}

fn yes() -> bool {
    true
}

fn mqtt() -> String {
    "MQTT".to_owned()
}

fn level_4() -> Int {
    Int(4)
}

/// `ip-restriction`: a whitelist or a blacklist.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(try_from = "RawIpRestriction")]
pub struct IpRestrictionConf {
    pub list: Vec<IpNet>,
    /// True for a whitelist (only listed clients pass), false for a blacklist.
    pub allow_listed: bool,
    pub response_code: u16,
}

#[derive(Deserialize)]
struct RawIpRestriction {
    #[serde(default)]
    whitelist: Option<Vec<Net>>,
    #[serde(default)]
    blacklist: Option<Vec<Net>>,
    #[serde(default)]
    response_code: Option<Count>,
}

impl TryFrom<RawIpRestriction> for IpRestrictionConf {
    type Error = &'static str;

    fn try_from(raw: RawIpRestriction) -> Result<Self, Self::Error> {
        let (list, allow_listed) = match (raw.whitelist, raw.blacklist) {
            (Some(list), _) => (list, true),
            (None, Some(list)) => (list, false),
            (None, None) => return Err("ip-restriction needs a whitelist or a blacklist"),
        };
        Ok(IpRestrictionConf {
            list: list.into_iter().map(|net| net.0).collect(),
            allow_listed,
            response_code: raw.response_code.map_or(403, Count::saturating_u16),
        })
    }
}

/// How `limit-conn` builds its key.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum KeyType {
    #[default]
    Var,
    VarCombination,
}

/// `limit-conn` (local policy).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(try_from = "RawLimitConn")]
pub struct LimitConnConf {
    /// Connections served at once per key, at least 1.
    pub conn: u64,
    /// Connections beyond `conn` that are delayed instead of refused.
    pub burst: u64,
    pub default_conn_delay: Seconds,
    pub only_use_default_delay: bool,
    pub key_type: KeyType,
    pub key: String,
    pub rejected_code: u16,
}

#[derive(Deserialize)]
struct RawLimitConn {
    conn: Count,
    #[serde(default)]
    burst: Option<Count>,
    default_conn_delay: Seconds,
    #[serde(default)]
    only_use_default_delay: bool,
    #[serde(default)]
    key_type: KeyType,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    rejected_code: Option<Count>,
}

impl TryFrom<RawLimitConn> for LimitConnConf {
    type Error = &'static str;

    fn try_from(raw: RawLimitConn) -> Result<Self, Self::Error> {
        if raw.conn.0 == 0 {
            return Err("limit-conn needs conn > 0");
        }
        let default_conn_delay = raw
            .default_conn_delay
            .positive()
            .ok_or("limit-conn needs default_conn_delay > 0")?;
        Ok(LimitConnConf {
            conn: raw.conn.0,
            burst: raw.burst.map_or(0, |b| b.0),
            default_conn_delay,
            only_use_default_delay: raw.only_use_default_delay,
            key_type: raw.key_type,
            key: raw.key.unwrap_or_else(|| "remote_addr".to_owned()),
            rejected_code: raw.rejected_code.map_or(503, Count::saturating_u16),
        })
    }
}

/// The `prometheus` stream plugin.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct PrometheusConf {
    /// Label metrics with the route's name instead of its id.
    #[serde(default)]
    pub prefer_name: bool,
}
