//! `limit-conn`: caps concurrent connections per key (`conn`, plus `burst` delayed ones), as
//! APISIX's plugin over lua-resty-limit-traffic does. A connection holds its slot until it ends.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use parking_lot::Mutex;
use sg_model::resource::{KeyType, LimitConnConf, MAX_DURATION};

use super::{priority_of, Ctx, Input, Preread, Reads, Reject, StreamPlugin};
use crate::session::vars::{key_buf, Var};

/// Active connections per `<route>:<conf digest>:<key>`, process-wide like nginx's shared dict,
/// so a counter survives snapshot recompilations and connections release what they took.
static ACTIVE: LazyLock<Mutex<HashMap<Arc<str>, u64>>> = LazyLock::new(Default::default);

/// How the key is built.
enum KeySpec {
    Var(Option<Var>),
    /// `$remote_addr $server_port`-style template: literal text and variables.
    Combination(Vec<Part>),
}

enum Part {
    Text(String),
    Var(Option<Var>),
}

pub struct LimitConn {
    scope: String,
    conn: u64,
    burst: u64,
    delay: Duration,
    only_default_delay: bool,
    key: KeySpec,
    code: u16,
}

fn parse_combination(template: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('$') {
        if start > 0 {
            parts.push(Part::Text(rest[..start].to_owned()));
        }
        let name_len = rest[start + 1..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len() - start - 1);
        parts.push(Part::Var(Var::from_name(
            &rest[start + 1..start + 1 + name_len],
        )));
        rest = &rest[start + 1 + name_len..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_owned()));
    }
    parts
}

impl LimitConn {
    pub fn new(route_id: &str, conf: &LimitConnConf) -> Self {
        let key = match conf.key_type {
            KeyType::VarCombination => KeySpec::Combination(parse_combination(&conf.key)),
            KeyType::Var => KeySpec::Var(Var::from_name(&conf.key)),
        };
        LimitConn {
            // The conf is part of the scope: changing the limit starts fresh counters, as
            // APISIX's conf_version-scoped keys do.
            scope: format!("{route_id}:{conf:?}"),
            conn: conf.conn,
            burst: conf.burst,
            delay: conf.default_conn_delay.get(),
            only_default_delay: conf.only_use_default_delay,
            key,
            code: conf.rejected_code,
        }
    }

    /// The limit key of this connection. A key that comes out empty (a variable not set, a
    /// combination none of whose variables is set) is the client's address, as in APISIX: an
    /// empty key must not let a connection past the limit.
    fn key(&self, ctx: &Ctx) -> String {
        let mut buf = key_buf();
        let remote_addr = |buf| String::from_utf8_lossy(ctx.vars.hash_key(None, buf)).into_owned();
        match &self.key {
            KeySpec::Var(var) => {
                String::from_utf8_lossy(ctx.vars.hash_key(*var, &mut buf)).into_owned()
            }
            KeySpec::Combination(parts) => {
                let mut key = String::new();
                let mut resolved = false;
                for part in parts {
                    match part {
                        Part::Text(text) => key.push_str(text),
                        Part::Var(Some(var)) => {
                            if let Some(value) = ctx.vars.get(*var, &mut buf) {
                                key.push_str(&String::from_utf8_lossy(value));
                                resolved = true;
                            }
                        }
                        Part::Var(None) => {}
                    }
                }
                if resolved {
                    key
                } else {
                    remote_addr(&mut buf)
                }
            }
        }
    }
}

/// A taken slot, released when the session ends.
struct Slot(Arc<str>);

impl Drop for Slot {
    fn drop(&mut self) {
        let mut active = ACTIVE.lock();
        if let Some(count) = active.get_mut(&self.0) {
            *count -= 1;
            if *count == 0 {
                active.remove(&self.0);
            }
        }
    }
}

impl StreamPlugin for LimitConn {
    fn name(&self) -> &'static str {
        "limit-conn"
    }

    fn priority(&self) -> i32 {
        priority_of(self.name())
    }

    fn reads(&self) -> Reads {
        Reads::Connection
    }

    fn preread(&self, ctx: &mut Ctx, _input: Input<'_>) -> Preread {
        let key = self.key(ctx);
        let full: Arc<str> = format!("{}:{key}", self.scope).into();
        let count = {
            let mut active = ACTIVE.lock();
            let count = active.entry(full.clone()).or_insert(0);
            if *count >= self.conn.saturating_add(self.burst) {
                return Preread::Reject(Reject::silent(self.code));
            }
            *count += 1;
            *count
        };
        ctx.leases.push(Box::new(Slot(full)));
        if count <= self.conn {
            return Preread::Continue;
        }
        let delay = if self.only_default_delay {
            self.delay
        } else {
            let excess = u32::try_from((count - 1) / self.conn).unwrap_or(u32::MAX);
            self.delay.saturating_mul(excess).min(MAX_DURATION)
        };
        Preread::Delay(delay)
    }
}
