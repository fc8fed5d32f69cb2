//! The immutable, compiled view of the configuration that connections read.

use std::collections::HashMap;
use std::sync::Arc;

use crate::compilation::ConfigError;
use crate::route::RouteTable;
use crate::tls::TlsTable;
use crate::upstream::Upstream;

/// One published configuration: what every new connection sees.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The store revision this snapshot reflects.
    pub revision: u64,
    pub routes: RouteTable,
    /// Server SSL objects by SNI and client SSL objects by id.
    pub tls: Arc<TlsTable>,
    /// Compiled upstreams by key (`upstreams/<id>`, `stream_routes/<id>` for inline ones).
    upstreams: HashMap<String, Arc<Upstream>>,
    /// Stored objects the data plane leaves out or cannot connect, by kind and id.
    errors: Vec<ConfigError>,
}

impl Snapshot {
    pub fn new(
        revision: u64,
        routes: RouteTable,
        tls: Arc<TlsTable>,
        upstreams: HashMap<String, Arc<Upstream>>,
        errors: Vec<ConfigError>,
    ) -> Snapshot {
        Snapshot {
            revision,
            routes,
            tls,
            upstreams,
            errors,
        }
    }

    /// Every compiled upstream (named and inline), in no particular order.
    pub fn upstreams(&self) -> impl Iterator<Item = &Arc<Upstream>> {
        self.upstreams.values()
    }

    /// The stored objects the compiler could not use, and why.
    pub fn errors(&self) -> &[ConfigError] {
        &self.errors
    }

    /// Every (upstream key, node `host:port`) the snapshot can send sessions to.
    pub fn nodes(&self) -> impl Iterator<Item = (&str, String)> {
        self.upstreams.iter().flat_map(|(key, u)| {
            u.balancer
                .nodes()
                .iter()
                .map(move |n| (key.as_str(), n.address()))
        })
    }

    /// Node hosts that are domain names, to be resolved before a connection needs them.
    pub fn domains(&self) -> impl Iterator<Item = &str> {
        self.upstreams
            .values()
            .flat_map(|u| u.balancer.nodes())
            .map(|node| node.host.as_str())
            .filter(|host| !host.starts_with('[') && host.parse::<std::net::IpAddr>().is_err())
    }
}
