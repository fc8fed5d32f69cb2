//! `limit-conn`: caps concurrent connections per key (`conn`, plus `burst` delayed ones), as
//! APISIX's plugin over lua-resty-limit-traffic does. A connection holds its slot until it ends.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::Value;

use super::{priority_of, Ctx, Input, Preread, Reads, Reject, StreamPlugin};
use crate::vars::{key_buf, Var};

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
    pub fn new(route_id: &str, conf: &Value) -> Result<Self, String> {
        let number = |field: &str| conf.get(field).and_then(Value::as_u64);
        let key_text = conf
            .get("key")
            .and_then(Value::as_str)
            .unwrap_or("remote_addr");
        let key = match conf.get("key_type").and_then(Value::as_str) {
            Some("var_combination") => KeySpec::Combination(parse_combination(key_text)),
            _ => KeySpec::Var(Var::from_name(key_text)),
        };
        Ok(LimitConn {
            // The conf is part of the scope: changing the limit starts fresh counters, as
            // APISIX's conf_version-scoped keys do.
            scope: format!("{route_id}:{conf}"),
            conn: number("conn")
                .filter(|c| *c > 0)
                .ok_or("limit-conn needs conn > 0")?,
            burst: number("burst").unwrap_or(0),
            delay: conf
                .get("default_conn_delay")
                .and_then(Value::as_f64)
                .filter(|d| *d > 0.0 && d.is_finite())
                .map(Duration::from_secs_f64)
                .ok_or("limit-conn needs default_conn_delay > 0")?,
            only_default_delay: conf
                .get("only_use_default_delay")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            key,
            code: number("rejected_code")
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(503),
        })
    }

    /// The limit key of this connection; `None` when a combination resolves to nothing.
    fn key(&self, ctx: &Ctx) -> Option<String> {
        let mut buf = key_buf();
        match &self.key {
            KeySpec::Var(var) => {
                Some(String::from_utf8_lossy(ctx.vars.hash_key(*var, &mut buf)).into_owned())
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
                resolved.then_some(key)
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
        let Some(key) = self.key(ctx) else {
            return Preread::Continue;
        };
        let full: Arc<str> = format!("{}:{key}", self.scope).into();
        let count = {
            let mut active = ACTIVE.lock();
            let count = active.entry(full.clone()).or_insert(0);
            if *count >= self.conn + self.burst {
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
            self.delay * u32::try_from((count - 1) / self.conn).unwrap_or(u32::MAX)
        };
        Preread::Delay(delay)
    }
}
