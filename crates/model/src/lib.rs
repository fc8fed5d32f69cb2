//! Resource types, JSON schemas and validation with APISIX's messages, the keyring, and the
//! `conf/config.yaml` settings.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod accept_any;
pub mod check;
pub mod keyring;
pub mod pem;
pub mod resource;
pub mod schema;
pub mod secret;
pub mod settings;

pub use keyring::Keyring;
pub use resource::{decode, DecodeError, Kind};
pub use settings::Settings;
