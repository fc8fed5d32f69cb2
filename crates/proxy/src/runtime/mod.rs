//! The runtime layer: worker threads, listeners, and where each new session runs.
//!
//! Design: one single-threaded tokio runtime per worker thread (`worker_processes`, one per
//! core by default), not one work-stealing runtime. On a few cores shared with brokers,
//! spreading every session's wake-ups over all threads costs cross-thread hand-offs and leaves
//! each wake-up fewer ready sockets to batch; measured, this is streamgate's lower CPU per
//! message. A session stays on the worker it started on.
//!
//! Vocabulary, used throughout this layer:
//! - **home** is the first worker, the thread that runs `main`'s runtime. It runs the accept
//!   loops and starts new sessions on itself while it keeps up, so light traffic costs what
//!   one thread costs.
//! - A worker is **saturated** once it has run tasks without parking for [`SATURATED`](workers::SATURATED);
//!   its **busy stretch** is that time without a pause.
//! - **Hand-off**: a saturated home starts the second and later sessions of one busy
//!   stretch on the least busy worker ([`Workers::place`]); the first stays home, so a lone
//!   connection made while home serves steady traffic stays with the connections it will
//!   likely talk to.
//!
//! Also here: deferred accept on listeners whose clients speak first (`deferred`) and the
//! connect-storm guard applied at accept (`storm`).

pub(crate) mod deferred;
pub(crate) mod listener;
pub(crate) mod storm;
pub(crate) mod workers;

pub use listener::{bind, Dataplane};
pub use storm::StormGuard;
pub use workers::Workers;
