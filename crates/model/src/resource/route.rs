//! The typed `stream_route`.

use serde::Deserialize;

use super::{Id, Net, Plugins, Port, Upstream};

/// A stream route as the compiler uses it. `service_id` and `protocol` are refused by the Admin
/// API; a store that holds them anyway gets a route without them.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct StreamRoute {
    pub name: Option<String>,
    pub remote_addr: Option<Net>,
    pub server_addr: Option<Net>,
    pub server_port: Option<Port>,
    /// Lower-cased, no trailing dot; `*.x.com` wildcards allowed.
    #[serde(deserialize_with = "sni")]
    pub sni: Option<String>,
    pub upstream_id: Option<Id>,
    pub upstream: Option<Upstream>,
    pub plugins: Plugins,
}

/// Lower-case, no trailing dot: how APISIX normalises SNIs on both sides.
pub fn normalize_sni(sni: &str) -> String {
    sni.trim_end_matches('.').to_ascii_lowercase()
}

fn sni<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.map(|s| normalize_sni(&s)))
}
