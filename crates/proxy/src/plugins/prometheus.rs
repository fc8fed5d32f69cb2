//! `prometheus`: counts the route's sessions in APISIX's `apisix_stream_connection_total`,
//! labelled with the route id (or its name with `prefer_name`).

use prometheus_client::metrics::counter::Counter;
use sg_model::resource::PrometheusConf;

use super::{priority_of, Ctx, SessionEnd, StreamPlugin};
use crate::metrics::{RouteLabels, METRICS};

pub struct Prometheus {
    sessions: Counter,
}

impl Prometheus {
    pub fn new(route_id: &str, route_name: Option<&str>, conf: &PrometheusConf) -> Self {
        let route = match route_name {
            Some(name) if conf.prefer_name => name,
            _ => route_id,
        };
        let labels = RouteLabels {
            route: route.to_owned(),
        };
        Prometheus {
            sessions: METRICS.connection_total.get_or_create_owned(&labels),
        }
    }
}

impl StreamPlugin for Prometheus {
    fn name(&self) -> &'static str {
        "prometheus"
    }

    fn priority(&self) -> i32 {
        priority_of(self.name())
    }

    fn log(&self, _ctx: &Ctx, _end: &SessionEnd) {
        self.sessions.inc();
    }
}
