//! The benchmark scenarios, each a function of the system's addresses and the proxy's pid,
//! except configuration scale, which starts a streamgate of its own.

pub mod config_scale;
pub mod idle;
pub mod publish;
pub mod storm;
