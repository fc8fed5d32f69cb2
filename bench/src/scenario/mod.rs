//! The benchmark scenarios, each a function of the system's addresses and the proxy's pid.

pub mod idle;
pub mod publish;
pub mod storm;
