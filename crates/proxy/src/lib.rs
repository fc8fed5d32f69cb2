//! The data plane: the compiler that turns the stored object set into an immutable `Snapshot`
//! published through `ArcSwap`, and the listeners, sessions and copy loop that read it.
#![deny(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod compilation;
pub mod compiler;
pub mod connect;
pub mod copy;
pub mod deadline;
pub mod deferred;
pub mod drain;
pub mod health;
pub mod listener;
pub mod logs;
pub mod metrics;
pub mod plugin;
pub mod preread;
pub mod relay_io;
pub mod resolve;
pub mod route;
pub mod session;
pub mod snapshot;
pub mod storm;
pub mod tls;
pub mod upstream;
pub mod vars;
pub mod waiting;
pub mod workers;

pub use compilation::{Compilation, ConfigError};
pub use compiler::{run_compiler, SnapshotHandle};
pub use listener::Dataplane;
pub use session::Gateway;
pub use snapshot::Snapshot;
