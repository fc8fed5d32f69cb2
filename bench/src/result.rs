//! What one system measured in one round, and its one-line progress summary.

use std::fmt::Write as _;

use crate::metrics::ms;
use crate::scenario::{publish::Publish, storm::Storm};

/// What one system measured in one round.
#[derive(Debug, Default)]
pub struct RunResult {
    pub idle: Option<f64>,
    pub silent: Option<f64>,
    pub idle_tls: Option<f64>,
    pub idle_mtls: Option<f64>,
    pub idle_tls_upstream: Option<f64>,
    pub storm: Option<Storm>,
    pub tls: Option<Storm>,
    pub tls_resumed: Option<Storm>,
    pub qos0: Option<Publish>,
    pub qos1: Option<Publish>,
    pub qos0_tls: Option<Publish>,
    pub errors: Vec<String>,
}

impl RunResult {
    /// A one-line progress summary.
    pub fn line(&self) -> String {
        let mut s = String::new();
        if let Some(b) = self.idle {
            let _ = write!(s, "idle {b:.0} B/conn; ");
        }
        if let Some(b) = self.silent {
            let _ = write!(s, "silent {b:.0} B/conn; ");
        }
        if let Some(x) = self.storm {
            let _ = write!(s, "storm {:.0}/s p99 {:.2} ms; ", x.rate, ms(x.latency.p99));
        }
        for (name, held) in [
            ("idle tls", self.idle_tls),
            ("idle mtls", self.idle_mtls),
            ("idle tls-upstream", self.idle_tls_upstream),
        ] {
            if let Some(b) = held {
                let _ = write!(s, "{name} {b:.0} B/conn; ");
            }
        }
        if let Some(x) = self.tls {
            let _ = write!(s, "tls {:.0}/s p99 {:.2} ms; ", x.rate, ms(x.latency.p99));
        }
        if let Some(x) = self.tls_resumed {
            let share = x.resumed.unwrap_or(0.0) * 100.0;
            let _ = write!(s, "tls resumed {:.0}/s ({share:.0}% resumed); ", x.rate);
        }
        for (q, p) in [("0", self.qos0), ("1", self.qos1), ("0 tls", self.qos0_tls)] {
            if let Some(p) = p {
                let _ = write!(
                    s,
                    "qos{q} {:.0} msg/s ({} msgs) p99 {:.2} ms cpu/M {}; ",
                    p.rate,
                    p.messages,
                    ms(p.latency.p99),
                    p.cpu_per_million
                        .map_or("-".to_owned(), |c| format!("{c:.2} s"))
                );
            }
        }
        for e in &self.errors {
            let _ = write!(s, "ERROR {e}; ");
        }
        s
    }
}
