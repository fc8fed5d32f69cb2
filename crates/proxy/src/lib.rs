//! The data plane, in layers:
//! - `config`: decodes and compiles the stored objects into route, upstream and TLS tables,
//!   published as one immutable `Snapshot` through `ArcSwap`;
//! - `runtime`: the worker threads, the listeners and where each new session runs;
//! - `session`: one client connection, phase by phase, from its first bytes to the relay;
//! - `datagram`: UDP listeners and their sessions, beside `session`;
//! - `plugins`: the stream plugins, a trait with no I/O that sessions call;
//! - `health`: per-node health from active probes and passive reports;
//! - `metrics`: the Prometheus series and the log lines clients can drive.
#![deny(unsafe_code)]
#![deny(rust_2018_idioms)]

mod config;
mod datagram;
mod deadline;
mod health;
mod metrics;
mod plugins;
mod runtime;
mod session;

pub use config::tls::{CertificateInfo, SslCertificates};
pub use config::{
    normalize_sni, run_compiler, Change, Compilation, CompileSettings, ConfigError, Resolver,
    Snapshot, SnapshotHandle,
};
pub use datagram::{bind_udp, UdpBound};
pub use health::{spawn_manager, NodeHealth, Outcome, Source, UpstreamHealth};
pub use metrics::{NodeFigures, METRICS};
pub use plugins::flush_syslog;
pub use runtime::{bind, Dataplane, StormGuard, Workers};
pub use session::drain::Drainer;
pub use session::preread::PrereadLimits;
pub use session::relay::tls::StreamRelay;
pub use session::relay::{End, Transfer};
pub use session::tls_io::{accept as accept_tls, client_hello_sni, ClientHello, TlsIo};
pub use session::Gateway;
