//! JSON schemas of the stream resources and plugins, compiled once, with APISIX's error grammar.

pub mod defs;
mod message;

use std::sync::LazyLock;

use jsonschema::{Draft, Validator};
use serde_json::Value;

/// A schema together with its compiled validator.
pub struct Schema {
    /// The schema document, as served by `GET /apisix/admin/schema/<name>`.
    pub document: Value,
    validator: Validator,
}

impl Schema {
    fn compile(document: Value) -> Self {
        let validator = jsonschema::options()
            .with_draft(Draft::Draft7)
            .should_validate_formats(true)
            .build(&document)
            .expect("built-in schemas are valid");
        Schema {
            document,
            validator,
        }
    }

    /// Validates `value`; the error is the first failure in APISIX's wording.
    pub fn validate(&self, value: &Value) -> Result<(), String> {
        self.validator
            .validate(value)
            .map_err(|error| message::render(&error, &self.document))
    }
}

/// All the schemas the Admin API serves and checks against.
pub struct Schemas {
    pub stream_route: Schema,
    pub upstream: Schema,
    pub ssl: Schema,
    pub mqtt_proxy: Schema,
    pub ip_restriction: Schema,
    pub limit_conn: Schema,
    pub prometheus: Schema,
    pub syslog: Schema,
}

static SCHEMAS: LazyLock<Schemas> = LazyLock::new(|| Schemas {
    stream_route: Schema::compile(defs::stream_route()),
    upstream: Schema::compile(defs::upstream()),
    ssl: Schema::compile(defs::ssl()),
    mqtt_proxy: Schema::compile(defs::mqtt_proxy()),
    ip_restriction: Schema::compile(defs::ip_restriction()),
    limit_conn: Schema::compile(defs::limit_conn()),
    prometheus: Schema::compile(defs::prometheus()),
    syslog: Schema::compile(defs::syslog()),
});

/// The process-wide compiled schemas (compiled on first use; call at start-up to pay it early).
pub fn schemas() -> &'static Schemas {
    &SCHEMAS
}

impl Schemas {
    /// The schema of a core resource by the name APISIX gives it (`stream_route`, `upstream`, `ssl`).
    pub fn by_name(&self, name: &str) -> Option<&Schema> {
        match name {
            "stream_route" => Some(&self.stream_route),
            "upstream" => Some(&self.upstream),
            "ssl" => Some(&self.ssl),
            _ => None,
        }
    }

    /// The schema of a shipped stream plugin.
    pub fn plugin(&self, name: &str) -> Option<&Schema> {
        match name {
            "mqtt-proxy" => Some(&self.mqtt_proxy),
            "ip-restriction" => Some(&self.ip_restriction),
            "limit-conn" => Some(&self.limit_conn),
            "prometheus" => Some(&self.prometheus),
            "syslog" => Some(&self.syslog),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
