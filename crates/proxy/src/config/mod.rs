//! The configuration layer: stored objects decoded into typed resources, compiled one by one
//! into route, upstream and TLS tables, and published as one immutable [`Snapshot`] that the
//! sessions read.

pub(crate) mod compilation;
pub(crate) mod compiler;
pub(crate) mod error;
pub(crate) mod resolve;
pub(crate) mod route;
pub(crate) mod snapshot;
pub(crate) mod tls;
pub(crate) mod upstream;

pub use compilation::{Change, Compilation, CompileSettings, ConfigError};
pub use compiler::{run_compiler, SnapshotHandle};
pub use resolve::Resolver;
pub use snapshot::Snapshot;
pub use tls::normalize_sni;
