//! `syslog`: one entry per session, proxied or refused, sent to a syslog server in batches by
//! a task off the data path. The `log` hook renders the entry and hands it to a queue bounded
//! in bytes; when the server is down or slow, entries beyond the bound are dropped and
//! counted, and the session never waits.

mod batch;
mod entry;
mod queue;
mod transport;

use std::sync::Arc;
use std::time::SystemTime;

use prometheus_client::metrics::counter::Counter;
use sg_model::resource::SyslogConf;
use tracing::warn;

use super::{priority_of, Ctx, SessionEnd, StreamPlugin};
use crate::metrics::logs::{self, LogKind};
use crate::metrics::{DropLabels, METRICS};
use entry::Format;
pub use queue::flush_all;
use queue::{Entry, Queue};

pub struct Syslog {
    format: Format,
    queue: Arc<Queue>,
    route: String,
    buffer_full: Counter,
    send_failed: Counter,
}

impl Syslog {
    pub fn new(route_id: &str, route_name: Option<&str>, conf: &SyslogConf) -> Self {
        let dropped = |reason| {
            METRICS.syslog_dropped.get_or_create_owned(&DropLabels {
                route: route_id.to_owned(),
                reason,
            })
        };
        Syslog {
            format: Format::compile(conf.log_format.as_ref(), route_id, route_name),
            queue: queue::shared(conf),
            route: route_id.to_owned(),
            buffer_full: dropped("buffer_full"),
            send_failed: dropped("send_failed"),
        }
    }
}

impl StreamPlugin for Syslog {
    fn name(&self) -> &'static str {
        "syslog"
    }

    fn priority(&self) -> i32 {
        priority_of(self.name())
    }

    fn log(&self, ctx: &Ctx, end: &SessionEnd) {
        let entry = Entry {
            bytes: self.format.render(SystemTime::now(), ctx, end),
            failed: self.send_failed.clone(),
        };
        if self.queue.push(entry).is_err() {
            self.buffer_full.inc();
            if logs::allow(LogKind::Syslog) {
                warn!(
                    route = %self.route,
                    server = %self.queue.server,
                    "syslog buffer full (drop_limit reached): entry dropped"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests;
