//! The systems a run can measure, and how each is named on the command line and in the report.

use anyhow::{Context, Result};

/// What the clients connect to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Straight to the brokers (client `i` to broker `i % 2`).
    Direct,
    Streamgate,
    /// streamgate with `RUST_LOG=info`: its per-connection info lines and span on (the
    /// shipped default before the configured level became APISIX's `warn`).
    StreamgateInfo,
    /// streamgate with `nginx_config.worker_processes: 1` (the default is one per core).
    StreamgateOneWorker,
    /// The same streamgate build and settings again, as a system of its own: its spread from
    /// `streamgate` in the same run is the noise floor (an A/A comparison).
    StreamgateTwin,
    /// streamgate whose plain listener reads the PROXY protocol; its clients send a v1 header
    /// first. Only the idle hold runs on it: what such a listener costs per connection.
    StreamgateProxyProtocol,
    /// Another streamgate build (`--candidate`) with the same settings, judged against
    /// `streamgate` beside the A/A floor: does a change move a figure beyond the noise?
    StreamgateCandidate,
    Haproxy,
    /// HAProxy with `nbthread 1`: the thread count of `streamgate-1w`.
    HaproxyOneThread,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::Direct,
        Kind::Streamgate,
        Kind::StreamgateInfo,
        Kind::StreamgateOneWorker,
        Kind::StreamgateTwin,
        Kind::StreamgateCandidate,
        Kind::StreamgateProxyProtocol,
        Kind::Haproxy,
        Kind::HaproxyOneThread,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::Streamgate => "streamgate",
            Kind::StreamgateInfo => "streamgate-info",
            Kind::StreamgateOneWorker => "streamgate-1w",
            Kind::StreamgateTwin => "streamgate-aa",
            Kind::StreamgateCandidate => "streamgate-b",
            Kind::StreamgateProxyProtocol => "streamgate-pp",
            Kind::Haproxy => "haproxy",
            Kind::HaproxyOneThread => "haproxy-1t",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Kind::Direct => "direct to mosquitto",
            Kind::Streamgate => "streamgate",
            Kind::StreamgateInfo => "streamgate, RUST_LOG=info",
            Kind::StreamgateOneWorker => "streamgate, 1 worker",
            Kind::StreamgateTwin => "streamgate again (A/A)",
            Kind::StreamgateCandidate => "candidate build (B)",
            Kind::StreamgateProxyProtocol => "streamgate, PROXY protocol listener",
            Kind::Haproxy => "HAProxy",
            Kind::HaproxyOneThread => "HAProxy, nbthread 1",
        }
    }

    /// A streamgate run other than the default one, judged against HAProxy in a column of its
    /// own.
    pub fn is_streamgate_variant(self) -> bool {
        matches!(
            self,
            Kind::StreamgateInfo
                | Kind::StreamgateOneWorker
                | Kind::StreamgateTwin
                | Kind::StreamgateCandidate
                | Kind::StreamgateProxyProtocol
        )
    }

    /// Whether its plain listener expects a PROXY protocol header first.
    pub fn proxied(self) -> bool {
        self == Kind::StreamgateProxyProtocol
    }

    /// What this streamgate run adds to the shipped `nginx_config`.
    pub fn nginx_settings(self) -> Option<&'static str> {
        match self {
            Kind::StreamgateOneWorker => Some("worker_processes: 1"),
            _ => None,
        }
    }

    pub fn parse(s: &str) -> Result<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .with_context(|| {
                let names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown system {s:?} ({})", names.join(", "))
            })
    }
}
