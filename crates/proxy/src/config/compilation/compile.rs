//! Compiling one object of the state: an SSL change rebuilds the TLS table, an upstream or a
//! route is compiled on its own; a panic inside becomes an error for that object alone.

use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use sg_model::Kind;

use super::{inline_key, named_key, Compilation, UpstreamEntry};
use crate::config::error::CompileError;
use crate::config::route::Route;
use crate::config::tls::TlsTable;
use crate::config::upstream::Upstream;

/// Runs one object's compilation, turning a panic into an error for that object alone.
pub(super) fn guarded<T>(
    compile: impl FnOnce() -> Result<T, CompileError>,
) -> Result<T, CompileError> {
    catch_unwind(AssertUnwindSafe(compile)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(CompileError::Panicked(message))
    })
}

impl Compilation {
    pub(super) fn compile_tls(&mut self) {
        // Errors of decoded objects are found anew below.
        let decoded: BTreeSet<&String> = self
            .ssls
            .iter()
            .filter(|(_, e)| e.decoded.is_some())
            .map(|(id, _)| id)
            .collect();
        self.errors
            .retain(|(kind, id), _| *kind != Kind::Ssl || !decoded.contains(id));
        let mut rejected = Vec::new();
        let objects = self
            .ssls
            .iter()
            .filter_map(|(id, e)| Some((id.as_str(), e.decoded.as_ref()?)));
        let (keyring, session_tickets) = (&self.keyring, self.session_tickets);
        let previous = &self.tls;
        let table = guarded(|| {
            Ok(TlsTable::compile(
                objects,
                keyring,
                session_tickets,
                Some(previous),
                &mut |id, reason| rejected.push((id.to_owned(), reason)),
            ))
        });
        match table {
            Ok(table) => self.tls = Arc::new(table),
            // The previous table stays in force.
            Err(reason) => rejected.push(("*".to_owned(), reason)),
        }
        for (id, reason) in rejected {
            self.settle::<()>(Kind::Ssl, &id, Err(reason));
        }
    }

    pub(super) fn compile_upstream(&mut self, id: &str) {
        let Some(entry) = self.upstreams.get(id) else {
            return;
        };
        let Some(conf) = &entry.object.decoded else {
            if let Some(entry) = self.upstreams.get_mut(id) {
                entry.compiled = None;
            }
            self.index.set(&named_key(id), None);
            return;
        };
        let key = named_key(id);
        let previous = entry.compiled.as_deref();
        let (tls, keyring) = (&self.tls, &self.keyring);
        let compiled = guarded(|| Upstream::compile(key, conf, previous, tls, keyring));
        let compiled = self.settle(Kind::Upstream, id, compiled).map(Arc::new);
        self.index.set(&named_key(id), compiled.clone());
        if let Some(entry) = self.upstreams.get_mut(id) {
            entry.compiled = compiled;
        }
    }

    pub(super) fn compile_route(&mut self, id: &str) {
        let Some(entry) = self.routes.get(id) else {
            return;
        };
        let Some(conf) = &entry.object.decoded else {
            self.set_route(id, None, None);
            return;
        };
        let (tls, keyring) = (&self.tls, &self.keyring);
        let outcome = guarded(|| {
            // A route whose upstream is missing or unusable still matches, as in APISIX: its
            // connections are closed, and the reason is listed.
            let (upstream, inline, problem) = match (&conf.upstream_id, &conf.upstream) {
                (Some(up_id), _) => match self.upstreams.get(&up_id.0) {
                    Some(UpstreamEntry {
                        compiled: Some(up), ..
                    }) => (Some(up.clone()), None, None),
                    Some(_) => (
                        None,
                        None,
                        Some(CompileError::RejectedUpstream(up_id.0.clone())),
                    ),
                    None => (
                        None,
                        None,
                        Some(CompileError::MissingUpstream(up_id.0.clone())),
                    ),
                },
                (None, Some(inline)) => {
                    let key = inline_key(id);
                    match Upstream::compile(key, inline, entry.inline.as_deref(), tls, keyring) {
                        Ok(up) => {
                            let up = Arc::new(up);
                            (Some(up.clone()), Some(up), None)
                        }
                        Err(reason) => (
                            None,
                            None,
                            Some(CompileError::InlineUpstream(Box::new(reason))),
                        ),
                    }
                }
                (None, None) => (None, None, None),
            };
            let route = Arc::new(Route::compile(id, conf, upstream));
            Ok((route, inline, problem))
        });
        match outcome {
            Ok((route, inline, problem)) => {
                self.set_route(id, Some(route), inline);
                let _ = self.settle(Kind::StreamRoute, id, problem.map_or(Ok(()), Err));
            }
            Err(reason) => {
                self.set_route(id, None, None);
                self.settle::<()>(Kind::StreamRoute, id, Err(reason));
            }
        }
    }

    /// Puts a route's new compilation (and its inline upstream) in force.
    fn set_route(&mut self, id: &str, compiled: Option<Arc<Route>>, inline: Option<Arc<Upstream>>) {
        self.index.set(&inline_key(id), inline.clone());
        let old = self.routes.get_mut(id).and_then(|entry| {
            entry.inline = inline;
            std::mem::replace(&mut entry.compiled, compiled.clone())
        });
        self.table.replace(old.as_deref(), compiled);
    }
}
