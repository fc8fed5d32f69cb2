//! The benchmark scenarios, each a function of the system's addresses and the proxy's pid,
//! except configuration scale and UDP idle sessions, which start a streamgate of their own.

pub mod config_scale;
pub mod idle;
pub mod publish;
pub mod storm;
pub mod udp_idle;
