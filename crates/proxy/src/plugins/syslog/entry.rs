//! A syslog entry as APISIX writes one for a stream session: the route's `log_format` rendered
//! as a JSON object (`$var` values are session variables, an unset or unknown one leaves its
//! key out, `route_id` comes last), in an RFC 5424 frame with facility SYSLOG, severity INFO.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::OffsetDateTime;

use crate::plugins::{Ctx, SessionEnd};
use crate::session::vars::{key_buf, Var};

/// `<PRI>`: facility SYSLOG (5) × 8 + severity INFO (6), as APISIX's rfc5424 encoder sets it.
const PRI: u8 = 46;

/// Nesting deeper than this in `log_format` renders as an empty object (as APISIX truncates).
const MAX_DEPTH: usize = 5;

/// The format used when a route sets no `log_format`: APISIX then logs nothing (its stream
/// subsystem has no default entry), streamgate logs the session's essentials.
const DEFAULT_FORMAT: &[(&str, &str)] = &[
    ("@timestamp", "$time_iso8601"),
    ("client_ip", "$remote_addr"),
    ("client_port", "$remote_port"),
    ("server_port", "$server_port"),
    ("upstream_addr", "$upstream_addr"),
    ("status", "$status"),
    ("bytes_received", "$bytes_received"),
    ("bytes_sent", "$bytes_sent"),
    ("session_time", "$session_time"),
    ("mqtt_client_id", "$mqtt_client_id"),
];

/// A variable an entry may hold: one of the connection's, or one of how its session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LogVar {
    Conn(Var),
    Session(SessionVar),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SessionVar {
    Status,
    BytesSent,
    BytesReceived,
    UpstreamAddr,
    SessionTime,
    TimeIso8601,
    Msec,
    Pid,
    Protocol,
}

impl LogVar {
    fn from_name(name: &str) -> Option<LogVar> {
        let session = match name {
            "status" => SessionVar::Status,
            // What the client sends goes to the upstream and back: nginx counts both sides.
            "bytes_sent" | "upstream_bytes_received" => SessionVar::BytesSent,
            "bytes_received" | "upstream_bytes_sent" => SessionVar::BytesReceived,
            "upstream_addr" => SessionVar::UpstreamAddr,
            "session_time" => SessionVar::SessionTime,
            "time_iso8601" => SessionVar::TimeIso8601,
            "msec" => SessionVar::Msec,
            "pid" => SessionVar::Pid,
            "protocol" => SessionVar::Protocol,
            other => return Var::from_name(other).map(LogVar::Conn),
        };
        Some(LogVar::Session(session))
    }
}

enum Rendered {
    Var(LogVar),
    /// JSON text, rendered once at compile time.
    Literal(String),
    Object(Vec<Field>),
    /// APISIX reads a JSON array as a Lua table too: its `$var`s are resolved, an unset one is
    /// `null` (a hole in the Lua array).
    Array(Vec<Rendered>),
}

struct Field {
    /// `"key":`, escaped once at compile time.
    key: String,
    value: Rendered,
}

/// A route's compiled entry format.
pub(super) struct Format {
    fields: Vec<Field>,
    /// `"route_id":"<id>"`.
    route_id: String,
    /// Bytes to reserve for an entry, so that rendering allocates once.
    estimate: usize,
}

/// The route a format is compiled for (`$route_id` and `$route_name` are constants of it).
#[derive(Clone, Copy)]
struct RouteNames<'a> {
    id: &'a str,
    name: Option<&'a str>,
}

/// What the variables of one entry are read from.
struct Values<'a> {
    since_epoch: Duration,
    ctx: &'a Ctx,
    end: &'a SessionEnd,
}

fn json_text(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// A format value compiled; `None` for a `$var` that can never be set (its key is left out).
fn compile_value(value: &Value, route: RouteNames<'_>, depth: usize) -> Option<Rendered> {
    Some(match value {
        Value::String(text) => match text.strip_prefix('$') {
            Some("route_id") => Rendered::Literal(json_text(&route.id)),
            Some("route_name") => Rendered::Literal(json_text(&route.name?)),
            Some(name) => Rendered::Var(LogVar::from_name(name)?),
            None => Rendered::Literal(json_text(text)),
        },
        Value::Object(_) | Value::Array(_) if depth >= MAX_DEPTH => Rendered::Object(Vec::new()),
        Value::Object(inner) => Rendered::Object(compile_object(inner, route, depth + 1)),
        Value::Array(items) => Rendered::Array(
            items
                .iter()
                .map(|item| {
                    compile_value(item, route, depth + 1)
                        .unwrap_or_else(|| Rendered::Literal("null".to_owned()))
                })
                .collect(),
        ),
        other => Rendered::Literal(json_text(other)),
    })
}

fn compile_object(format: &Map<String, Value>, route: RouteNames<'_>, depth: usize) -> Vec<Field> {
    format
        .iter()
        // APISIX sets `route_id` after the format's own keys, replacing one of that name.
        .filter(|(key, _)| depth > 1 || key.as_str() != "route_id")
        .filter_map(|(key, value)| {
            Some(Field {
                key: format!("{}:", json_text(key)),
                value: compile_value(value, route, depth)?,
            })
        })
        .collect()
}

/// Bytes to reserve for a value (a variable's: an IPv6 address and port, a client id…).
fn estimate(value: &Rendered) -> usize {
    match value {
        Rendered::Var(_) => 48,
        Rendered::Literal(text) => text.len(),
        Rendered::Object(fields) => 2 + estimate_fields(fields),
        Rendered::Array(items) => 2 + items.iter().map(|item| 1 + estimate(item)).sum::<usize>(),
    }
}

fn estimate_fields(fields: &[Field]) -> usize {
    fields
        .iter()
        .map(|field| field.key.len() + 1 + estimate(&field.value))
        .sum()
}

impl Format {
    pub(super) fn compile(
        format: Option<&Map<String, Value>>,
        route_id: &str,
        route_name: Option<&str>,
    ) -> Format {
        let default: Map<String, Value>;
        let format = match format {
            Some(format) => format,
            None => {
                default = DEFAULT_FORMAT
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
                    .collect();
                &default
            }
        };
        let route = RouteNames {
            id: route_id,
            name: route_name,
        };
        let fields = compile_object(format, route, 1);
        let route_id = format!("\"route_id\":{}", json_text(&route_id));
        // The frame: `<46>1 ` + timestamp (24) + ` - apisix ` + pid + ` - - ` + `{…}\n`.
        let estimate = 64 + estimate_fields(&fields) + route_id.len();
        Format {
            fields,
            route_id,
            estimate,
        }
    }

    /// The framed entry of a session that ended at `now`: one line, ended by `\n` (JSON
    /// escapes every control character, so the entry holds no other).
    pub(super) fn render(&self, now: SystemTime, ctx: &Ctx, end: &SessionEnd) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.estimate);
        let values = Values {
            since_epoch: now.duration_since(UNIX_EPOCH).unwrap_or_default(),
            ctx,
            end,
        };
        let _ = write!(out, "<{PRI}>1 ");
        if !write_time(&mut out, values.since_epoch, RFC3339_MILLIS) {
            // RFC 5424's NILVALUE: the clock cannot be shown.
            out.push(b'-');
        }
        let _ = write!(out, " - apisix {} - - {{", std::process::id());
        if write_fields(&mut out, &self.fields, &values) {
            out.push(b',');
        }
        out.extend_from_slice(self.route_id.as_bytes());
        out.extend_from_slice(b"}\n");
        out
    }
}

/// Writes `fields` as the members of an object, leaving out unset variables; says whether any
/// was written.
fn write_fields(out: &mut Vec<u8>, fields: &[Field], values: &Values<'_>) -> bool {
    let mut any = false;
    for field in fields {
        let start = out.len();
        if any {
            out.push(b',');
        }
        out.extend_from_slice(field.key.as_bytes());
        if write_value(out, &field.value, values) {
            any = true;
        } else {
            out.truncate(start);
        }
    }
    any
}

/// Writes a value; false, with nothing written, when it is an unset variable.
fn write_value(out: &mut Vec<u8>, value: &Rendered, values: &Values<'_>) -> bool {
    match value {
        Rendered::Var(var) => return write_var(out, *var, values),
        Rendered::Literal(text) => out.extend_from_slice(text.as_bytes()),
        Rendered::Object(fields) => {
            out.push(b'{');
            write_fields(out, fields, values);
            out.push(b'}');
        }
        Rendered::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                if !write_value(out, item, values) {
                    out.extend_from_slice(b"null");
                }
            }
            out.push(b']');
        }
    }
    true
}

/// Writes a variable's value as a JSON string (nginx's variables are strings); false, with
/// nothing written, when it is unset.
fn write_var(out: &mut Vec<u8>, var: LogVar, values: &Values<'_>) -> bool {
    let (now, end) = (values.since_epoch, values.end);
    let var = match var {
        LogVar::Conn(var) => {
            let mut buf = key_buf();
            let Some(value) = values.ctx.vars.get(var, &mut buf) else {
                return false;
            };
            // A client id is the client's bytes: escaped as JSON.
            let _ = serde_json::to_writer(&mut *out, String::from_utf8_lossy(value).as_ref());
            return true;
        }
        LogVar::Session(var) => var,
    };
    let start = out.len();
    out.push(b'"');
    let written = match var {
        SessionVar::Status => write!(out, "{}", end.status).is_ok(),
        SessionVar::BytesSent => write!(out, "{}", end.to_client).is_ok(),
        SessionVar::BytesReceived => write!(out, "{}", end.from_client).is_ok(),
        SessionVar::UpstreamAddr => end
            .upstream
            .is_some_and(|addr| write!(out, "{addr}").is_ok()),
        SessionVar::SessionTime => write!(
            out,
            "{}.{:03}",
            end.duration.as_secs(),
            end.duration.subsec_millis()
        )
        .is_ok(),
        SessionVar::TimeIso8601 => write_time(out, now, ISO8601),
        SessionVar::Msec => write!(out, "{}.{:03}", now.as_secs(), now.subsec_millis()).is_ok(),
        SessionVar::Pid => write!(out, "{}", std::process::id()).is_ok(),
        SessionVar::Protocol => write!(out, "{}", end.protocol).is_ok(),
    };
    if !written {
        out.truncate(start);
        return false;
    }
    out.push(b'"');
    true
}

/// `2024-05-01T10:00:00.123Z`, the RFC 5424 header's timestamp (APISIX's rfc3339 zulu).
const RFC3339_MILLIS: &[BorrowedFormatItem<'_>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// `2024-05-01T10:00:00+00:00`: nginx's `$time_iso8601`, in UTC.
const ISO8601: &[BorrowedFormatItem<'_>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]+00:00");

/// Writes `since_epoch` in `format`; false when the clock is past what a calendar date can
/// show (year 9999).
fn write_time(out: &mut Vec<u8>, since_epoch: Duration, format: &[BorrowedFormatItem<'_>]) -> bool {
    let Some(time) = i128::try_from(since_epoch.as_nanos())
        .ok()
        .and_then(|nanos| OffsetDateTime::from_unix_timestamp_nanos(nanos).ok())
    else {
        return false;
    };
    time.format_into(out, format).is_ok()
}

#[cfg(test)]
mod tests;
