//! Compiled stream routes and APISIX's matching: routes with `sni` first, then the others in
//! store order; the first whose `remote_addr`, `server_addr` and `server_port` all hold wins.

use std::cmp::Reverse;
use std::net::SocketAddr;
use std::sync::Arc;

use imbl::OrdMap;
use ipnet::IpNet;
use sg_model::resource::StreamRoute;

use crate::config::upstream::Upstream;
use crate::metrics::{NodeMetrics, RouteMetrics};
use crate::plugins::{self, Reads, StreamPlugin};

/// One stream route, ready to match.
#[derive(Debug)]
pub struct Route {
    pub id: String,
    pub remote_addr: Option<IpNet>,
    pub server_addr: Option<IpNet>,
    pub server_port: Option<u16>,
    /// Lower-cased SNI, `*.x.com` wildcards allowed (matched once TLS lands).
    pub sni: Option<String>,
    /// `None` when the route names an upstream that does not exist: matching connections close.
    pub upstream: Option<Arc<Upstream>>,
    /// The route's enabled plugins, highest priority first.
    pub plugins: Vec<Arc<dyn StreamPlugin>>,
    /// Nothing happens on this route before the client's first bytes (the first plugin to act
    /// in the pre-read phase reads them): its connections wait for those bytes holding only
    /// their socket and a deadline.
    pub waits_for_client: bool,
    /// A plugin knows the server answers the client's first bytes at once (mqtt-proxy's
    /// CONNACK): connects wait for that answer (see `connect`).
    pub server_answers: bool,
    pub metrics: RouteMetrics,
}

impl std::fmt::Debug for dyn StreamPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Route {
    /// Compiles a stream route whose upstream has already been resolved.
    pub fn compile(id: &str, conf: &StreamRoute, upstream: Option<Arc<Upstream>>) -> Route {
        let plugins = plugins::compile(id, conf.name.as_deref(), &conf.plugins);
        let waits_for_client = plugins
            .iter()
            .map(|plugin| plugin.reads())
            .find(|reads| *reads != Reads::Nothing)
            == Some(Reads::ClientBytes);
        let server_answers = plugins.iter().any(|plugin| plugin.server_answers());
        Route {
            id: id.to_owned(),
            remote_addr: conf.remote_addr.map(|net| net.0),
            server_addr: conf.server_addr.map(|net| net.0),
            server_port: conf.server_port.map(|port| port.0),
            sni: conf.sni.clone(),
            upstream,
            metrics: RouteMetrics::for_route(id),
            plugins,
            waits_for_client,
            server_answers,
        }
    }

    /// The series of node `index` of the route's upstream.
    pub fn node_metrics(&self, index: usize) -> Option<&NodeMetrics> {
        self.upstream.as_ref()?.node_metrics(index)
    }

    /// Whether every address condition present holds for this connection.
    pub fn matches_addrs(&self, remote: SocketAddr, server: SocketAddr) -> bool {
        let (remote_ip, server_ip) = (remote.ip().to_canonical(), server.ip().to_canonical());
        self.remote_addr.is_none_or(|net| net.contains(&remote_ip))
            && self.server_addr.is_none_or(|net| net.contains(&server_ip))
            && self.server_port.is_none_or(|port| port == server.port())
    }
}

/// Does a route's `sni` pattern cover the client's SNI? Exact, `*` (everything), or `*.x.com`
/// (any name ending in `.x.com`, at any depth, as APISIX's reversed-prefix match does).
fn sni_matches(pattern: &str, sni: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_prefix('*') {
        Some(suffix) => sni.ends_with(suffix) && sni.len() > suffix.len(),
        None => pattern == sni,
    }
}

/// How specific an SNI pattern is: exact names beat longer wildcards beat shorter ones.
fn sni_rank(pattern: &str) -> (bool, usize) {
    (!pattern.starts_with('*'), pattern.len())
}

/// Where a route with `sni` sorts: most specific pattern first, store (id) order within one.
type SniKey = (Reverse<(bool, usize)>, String);

/// The routes of a snapshot in matching order, in persistent maps: the next snapshot shares
/// them and changes only the routes that changed, so publishing costs the same at 10,000
/// routes as at 10.
#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    with_sni: OrdMap<SniKey, Arc<Route>>,
    /// Routes without `sni`, in store order.
    without_sni: OrdMap<String, Arc<Route>>,
    /// Routes that do not wait for their client's first bytes.
    speak_first: usize,
}

fn sni_key(route: &Route) -> Option<SniKey> {
    let pattern = route.sni.as_deref()?;
    Some((Reverse(sni_rank(pattern)), route.id.clone()))
}

impl RouteTable {
    /// Orders compiled routes for matching.
    #[cfg(test)]
    pub(crate) fn new(routes: Vec<Arc<Route>>) -> RouteTable {
        let mut table = RouteTable::default();
        for route in routes {
            table.insert(route);
        }
        table
    }

    /// Adds a route, or replaces the route with the same id (which must be `remove`d first if
    /// its `sni` changed: see [`RouteTable::replace`]).
    fn insert(&mut self, route: Arc<Route>) {
        if !route.waits_for_client {
            self.speak_first += 1;
        }
        match sni_key(&route) {
            Some(key) => self.with_sni.insert(key, route),
            None => self.without_sni.insert(route.id.clone(), route),
        };
    }

    fn remove(&mut self, route: &Route) {
        let removed = match sni_key(route) {
            Some(key) => self.with_sni.remove(&key),
            None => self.without_sni.remove(&route.id),
        };
        if removed.is_some_and(|r| !r.waits_for_client) {
            self.speak_first -= 1;
        }
    }

    /// Replaces `old` (the route's previous compilation, if any) with `new`.
    pub fn replace(&mut self, old: Option<&Route>, new: Option<Arc<Route>>) {
        if let Some(old) = old {
            self.remove(old);
        }
        if let Some(new) = new {
            self.insert(new);
        }
    }

    /// Whether a plain connection's client speaks first whatever route it matches, so plain
    /// listeners may defer accepting until it has (see [`crate::runtime::deferred`]). Not when there is
    /// no route: connections then close at once.
    pub fn clients_speak_first(&self) -> bool {
        !self.is_empty() && self.speak_first == 0
    }

    /// The route for a connection, if any.
    pub fn find(
        &self,
        sni: Option<&str>,
        remote: SocketAddr,
        server: SocketAddr,
    ) -> Option<&Arc<Route>> {
        let by_sni = sni.and_then(|sni| {
            self.with_sni.values().find(|route| {
                sni_matches(route.sni.as_deref().unwrap_or_default(), sni)
                    && route.matches_addrs(remote, server)
            })
        });
        by_sni.or_else(|| {
            self.without_sni
                .values()
                .find(|route| route.matches_addrs(remote, server))
        })
    }

    /// Every route, in matching order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.with_sni.values().chain(self.without_sni.values())
    }

    pub fn len(&self) -> usize {
        self.with_sni.len() + self.without_sni.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests;
