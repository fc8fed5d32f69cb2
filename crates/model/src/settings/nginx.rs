//! `nginx_config`: the error log level, the stream access log switch and `worker_processes`, the
//! number of data-plane worker threads.

use std::num::NonZeroUsize;

use serde_json::Value;

use super::tree::Node;
use super::ConfigError;

/// The tracing filter matching APISIX's error log level and stream access log switch.
pub(super) fn parse_log_filter(nginx: &Node<'_>) -> Result<String, ConfigError> {
    let level_node = nginx.child("error_log_level");
    let level = match level_node.str_or("warn")? {
        "debug" => "debug",
        "info" | "notice" => "info",
        "warn" => "warn",
        "error" | "crit" | "alert" | "emerg" => "error",
        other => return Err(level_node.error(format!("unknown log level {other:?}"))),
    };
    let access = nginx
        .child("stream")
        .child("enable_access_log")
        .bool_or(false)?;
    Ok(if access {
        format!("{level},streamgate::access=info")
    } else {
        level.to_owned()
    })
}

/// `worker_processes`: `auto` (APISIX's default; `None`) or a positive count.
pub(super) fn parse_workers(node: &Node<'_>) -> Result<Option<NonZeroUsize>, ConfigError> {
    match node.value() {
        None => Ok(None),
        Some(Value::String(s)) if s == "auto" => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .and_then(NonZeroUsize::new)
            .map(Some)
            .ok_or_else(|| node.error("expected \"auto\" or a number >= 1")),
    }
}
