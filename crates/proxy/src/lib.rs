//! The data plane: the compiler that turns the stored object set into an immutable `Snapshot`
//! published through `ArcSwap`, and (next) the listeners and the copy loop that read it.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod compiler;
pub mod snapshot;

pub use compiler::{run_compiler, SnapshotHandle};
pub use snapshot::{ObjectSet, Snapshot};
