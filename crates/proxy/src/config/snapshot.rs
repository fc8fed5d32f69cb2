//! The immutable, compiled view of the configuration that connections read.

use std::sync::Arc;

use imbl::HashMap;

use crate::config::compilation::ConfigError;
use crate::config::route::RouteTable;
use crate::config::tls::TlsTable;
use crate::config::upstream::Upstream;
use crate::metrics::METRICS;

/// One published configuration: what every new connection sees.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The store revision this snapshot reflects.
    pub revision: u64,
    pub routes: RouteTable,
    /// Server SSL objects by SNI and client SSL objects by id.
    pub tls: Arc<TlsTable>,
    upstreams: Upstreams,
    /// Stored objects the data plane leaves out or cannot connect, by kind and id.
    errors: Vec<ConfigError>,
}

impl Snapshot {
    pub fn new(
        revision: u64,
        routes: RouteTable,
        tls: Arc<TlsTable>,
        upstreams: Upstreams,
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
        self.upstreams.all.values()
    }

    /// The upstream with this key (`upstreams/<id>`, or `stream_routes/<id>` for an inline one).
    pub fn upstream(&self, key: &str) -> Option<&Arc<Upstream>> {
        self.upstreams.all.get(key)
    }

    /// The upstreams with active health checks.
    pub fn checked_upstreams(&self) -> impl Iterator<Item = &Arc<Upstream>> {
        self.upstreams.checked.values()
    }

    /// The stored objects the compiler could not use, and why.
    pub fn errors(&self) -> &[ConfigError] {
        &self.errors
    }

    /// Whether `node` (`host:port`) is still a node of the upstream with key `upstream`.
    pub fn has_node(&self, upstream: &str, node: &str) -> bool {
        self.upstream(upstream)
            .is_some_and(|up| up.balancer.nodes().iter().any(|n| n.address() == node))
    }

    /// Node hosts that are domain names, to be resolved before a connection needs them.
    pub fn domains(&self) -> impl Iterator<Item = &str> {
        self.upstreams
            .named_by_domain
            .values()
            .flat_map(|u| u.balancer.nodes())
            .map(|node| node.host.as_str())
            .filter(|host| is_domain(host))
    }
}

fn is_domain(host: &str) -> bool {
    !host.starts_with('[') && host.parse::<std::net::IpAddr>().is_err()
}

/// The compiled upstreams by key (`upstreams/<id>`, `stream_routes/<id>` for inline ones), in
/// persistent maps: a snapshot shares them with the next one, which changes only what changed,
/// so publishing costs the same at 10,000 upstreams as at 10. The smaller maps hold what
/// background tasks walk on every publication.
#[derive(Clone, Debug, Default)]
pub struct Upstreams {
    all: HashMap<String, Arc<Upstream>>,
    /// Those with a node named by a domain, for the resolver.
    named_by_domain: HashMap<String, Arc<Upstream>>,
    /// Those with active checks, for the health checkers.
    checked: HashMap<String, Arc<Upstream>>,
}

impl Upstreams {
    /// Sets (or with `None` removes) the upstream with key `key`. The metric series of the
    /// nodes that left it are dropped.
    pub fn set(&mut self, key: &str, upstream: Option<Arc<Upstream>>) {
        if let Some(old) = self.all.get(key) {
            let staying = |address: &str| {
                upstream
                    .as_ref()
                    .is_some_and(|up| up.balancer.nodes().iter().any(|n| n.address() == address))
            };
            for node in old.balancer.nodes() {
                let address = node.address();
                if !staying(&address) {
                    METRICS.forget_node(key, &address);
                }
            }
        }
        let Some(upstream) = upstream else {
            self.all.remove(key);
            self.named_by_domain.remove(key);
            self.checked.remove(key);
            return;
        };
        let domains = upstream
            .balancer
            .nodes()
            .iter()
            .any(|node| is_domain(&node.host));
        let checked = upstream
            .health
            .as_ref()
            .is_some_and(|h| h.checks().active.is_some());
        for (map, wanted) in [
            (&mut self.named_by_domain, domains),
            (&mut self.checked, checked),
        ] {
            if wanted {
                map.insert(key.to_owned(), upstream.clone());
            } else {
                map.remove(key);
            }
        }
        self.all.insert(key.to_owned(), upstream);
    }
}
