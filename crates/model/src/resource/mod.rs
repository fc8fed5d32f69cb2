//! The resource kinds the Admin API manages, and their typed form: what a stored object
//! deserializes into after schema validation, with every default and bound in one place. The
//! data plane compiles these types and never reads JSON.

mod checks;
mod number;
mod plugins;
mod route;
mod ssl;
mod syslog;
mod upstream;

use ipnet::IpNet;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

pub use checks::{Active, CheckType, Checks, Thresholds};
pub use number::{Count, Int, Port, Seconds, MAX_DURATION};
pub use plugins::{
    IpRestrictionConf, KeyType, LimitConnConf, MqttProxyConf, PluginConf, PluginError, Plugins,
    PrometheusConf,
};
pub use route::{normalize_sni, StreamRoute};
pub use ssl::{Ssl, SslClient, SslType};
pub use syslog::{SockType, SyslogConf};
pub use upstream::{Balancing, HashOn, Node, Timeouts, Upstream, UpstreamTls};

/// A stored resource collection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    StreamRoute,
    Upstream,
    Ssl,
}

impl Kind {
    /// Every kind, in the order the compiler needs them (dependencies first).
    pub const ALL: [Kind; 3] = [Kind::Ssl, Kind::Upstream, Kind::StreamRoute];

    /// The collection's path segment and store directory (`stream_routes`, `upstreams`, `ssls`).
    pub fn from_dir(dir: &str) -> Option<Kind> {
        match dir {
            "stream_routes" => Some(Kind::StreamRoute),
            "upstreams" => Some(Kind::Upstream),
            "ssls" => Some(Kind::Ssl),
            _ => None,
        }
    }

    /// The collection's directory name.
    pub fn dir(self) -> &'static str {
        match self {
            Kind::StreamRoute => "stream_routes",
            Kind::Upstream => "upstreams",
            Kind::Ssl => "ssls",
        }
    }

    /// The singular word APISIX uses in messages (`missing stream route id`).
    pub fn label(self) -> &'static str {
        match self {
            Kind::StreamRoute => "stream route",
            Kind::Upstream => "upstream",
            Kind::Ssl => "ssl",
        }
    }

    /// Whether PATCH is allowed (APISIX refuses it for stream routes).
    pub fn supports_patch(self) -> bool {
        !matches!(self, Kind::StreamRoute)
    }
}

/// The stream plugins streamgate ships, with their APISIX priorities (run highest first).
pub const STREAM_PLUGINS: &[(&str, i32)] = &[
    ("ip-restriction", 3000),
    ("limit-conn", 1003),
    ("mqtt-proxy", 1000),
    ("prometheus", 500),
    ("syslog", 401),
];

/// An object id: APISIX allows a string or a positive integer, and `1` and `"1"` name the
/// same object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(pub String);

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::String(s) => Ok(Id(s)),
            Value::Number(n) => Ok(Id(n.to_string())),
            other => Err(D::Error::custom(format!(
                "expected a string or an integer id, got {other}"
            ))),
        }
    }
}

/// An IP address or CIDR (`remote_addr`, `server_addr`, ip-restriction lists), host bits
/// cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net(pub IpNet);

impl<'de> Deserialize<'de> for Net {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        crate::check::parse_ip_or_cidr(&text)
            .map(|net| Net(net.trunc()))
            .ok_or_else(|| D::Error::custom(format!("invalid ip address: {text}")))
    }
}

/// A stored object that does not decode into its typed form.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The object as a whole is wrong (not an object, or a rule across its fields).
    #[error("{0}")]
    Object(serde_json::Error),
    /// One field is wrong, named by its path (`timeout.connect`, `nodes[0].port`).
    #[error("{path}: {error}")]
    Field {
        path: String,
        error: serde_json::Error,
    },
}

/// Decodes a stored object into its typed form; the error names the field that is wrong.
pub fn decode<'a, T: Deserialize<'a>>(value: &'a Value) -> Result<T, DecodeError> {
    serde_path_to_error::deserialize(value).map_err(|e| match e.path().to_string() {
        path if path == "." => DecodeError::Object(e.into_inner()),
        path => DecodeError::Field {
            path,
            error: e.into_inner(),
        },
    })
}

#[cfg(test)]
mod tests;
