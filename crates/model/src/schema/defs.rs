//! The JSON schemas of APISIX's stream resources, written as APISIX defines them.

use serde_json::{json, Value};

const IPV4_CIDR: &str = "^([0-9]|[1-9][0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5])\\.([0-9]|[1-9][0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5])\\.([0-9]|[1-9][0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5])\\.([0-9]|[1-9][0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5])/([12]?[0-9]|3[0-2])$";
const IPV6_CIDR: &str =
    "^([a-fA-F0-9]{0,4}:){1,8}(:[a-fA-F0-9]{0,4}){0,8}([a-fA-F0-9]{0,4})?/[0-9]{1,3}$";
const HOST_PATTERN: &str = "^\\*$|^\\*?[0-9a-zA-Z-._\\[\\]:]+$";
/// Variables a `chash` upstream may hash on with `hash_on: vars`.
pub const HASH_VARS_PATTERN: &str = "^((uri|server_name|server_addr|request_uri|remote_port|remote_addr|query_string|host|hostname|mqtt_client_id)|arg_[0-9a-zA-z_-]+)$";
/// Header and cookie names a `chash` upstream may hash on.
pub const HASH_HEADER_PATTERN: &str = "^[a-zA-Z0-9-_]+$";

fn id_schema() -> Value {
    json!({"anyOf": [
        {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[a-zA-Z0-9-_.]+$"},
        {"type": "integer", "minimum": 1}
    ]})
}

fn ip_def() -> Value {
    json!([
        {"title": "IPv4", "type": "string", "format": "ipv4"},
        {"title": "IPv4/CIDR", "type": "string", "pattern": IPV4_CIDR},
        {"title": "IPv6", "type": "string", "format": "ipv6"},
        {"title": "IPv6/CIDR", "type": "string", "pattern": IPV6_CIDR}
    ])
}

fn host_def() -> Value {
    json!({"type": "string", "pattern": HOST_PATTERN})
}

fn labels_def() -> Value {
    json!({"type": "object", "patternProperties": {
        ".*": {"type": "string", "pattern": "^\\S+$", "minLength": 1, "maxLength": 256}
    }})
}

fn certificate() -> Value {
    json!({"type": "string", "minLength": 128, "maxLength": 65536})
}

fn private_key() -> Value {
    json!({"type": "string", "minLength": 64, "maxLength": 65536})
}

/// A reference to a secret kept elsewhere (`$secret://…`, `$ENV://…`).
fn secret_reference() -> Value {
    json!({"type": "string", "pattern": "^\\$(secret|env|ENV)://"})
}

/// A certificate or key field of an SSL object: the PEM text, or a secret reference.
fn pem_or_reference(pem: Value) -> Value {
    json!({"oneOf": [pem, secret_reference()]})
}

fn status_list(default: Value) -> Value {
    json!({"type": "array", "minItems": 1, "uniqueItems": true,
           "items": {"type": "integer", "minimum": 200, "maximum": 599}, "default": default})
}

fn counter(min: u32, default: u32) -> Value {
    json!({"type": "integer", "minimum": min, "maximum": 254, "default": default})
}

fn health_checks() -> Value {
    let kind = json!({"type": "string", "enum": ["http", "https", "tcp"], "default": "http"});
    let active = json!({"type": "object", "properties": {
        "type": kind,
        "timeout": {"type": "number", "default": 1},
        "concurrency": {"type": "integer", "default": 10},
        "host": host_def(),
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "http_method": {"type": "string", "enum": ["GET", "POST", "PUT", "DELETE", "PATCH",
            "HEAD", "OPTIONS", "CONNECT", "TRACE", "PURGE"], "default": "GET"},
        "http_path": {"type": "string", "default": "/"},
        "http_req_body": {"type": "string", "default": ""},
        "https_verify_certificate": {"type": "boolean", "default": true},
        "healthy": {"type": "object", "properties": {
            "interval": {"type": "integer", "minimum": 1, "default": 1},
            "http_statuses": status_list(json!([200, 302])),
            "successes": counter(1, 2)
        }},
        "unhealthy": {"type": "object", "properties": {
            "interval": {"type": "integer", "minimum": 1, "default": 1},
            "http_statuses": status_list(json!([429, 404, 500, 501, 502, 503, 504, 505])),
            "http_failures": counter(1, 5),
            "tcp_failures": counter(1, 2),
            "timeouts": counter(1, 3)
        }},
        "req_headers": {"type": "array", "minItems": 1, "items": {"type": "string"}}
    }});
    let passive = json!({"type": "object", "properties": {
        "type": kind,
        "healthy": {"type": "object", "properties": {
            "http_statuses": status_list(json!([200, 201, 202, 203, 204, 205, 206, 207, 208,
                226, 300, 301, 302, 303, 304, 305, 306, 307, 308])),
            "successes": counter(0, 5)
        }},
        "unhealthy": {"type": "object", "properties": {
            "http_statuses": status_list(json!([429, 500, 503])),
            "tcp_failures": counter(0, 2),
            "timeouts": counter(0, 7),
            "http_failures": counter(0, 5)
        }}
    }});
    json!({"type": "object", "properties": {"active": active, "passive": passive},
           "anyOf": [{"required": ["active"]}, {"required": ["active", "passive"]}]})
}

fn nodes() -> Value {
    json!({"anyOf": [
        {"type": "object", "patternProperties": {".*": {"type": "integer", "minimum": 0}}},
        {"type": "array", "items": {"type": "object", "properties": {
            "host": host_def(),
            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
            "weight": {"type": "integer", "minimum": 0},
            "priority": {"type": "integer", "default": 0},
            "metadata": {"type": "object"}
        }, "required": ["host", "weight"]}}
    ]})
}

/// The `upstream` schema (also used inline in a stream route).
pub fn upstream() -> Value {
    json!({
        "type": "object",
        "properties": {
            "id": id_schema(),
            "name": {"type": "string", "minLength": 1, "maxLength": 256},
            "desc": {"type": "string", "maxLength": 256},
            "labels": labels_def(),
            "create_time": {"type": "integer"},
            "update_time": {"type": "integer"},
            "nodes": nodes(),
            "retries": {"type": "integer", "minimum": 0},
            "retry_timeout": {"type": "number", "minimum": 0},
            "timeout": {"type": "object", "properties": {
                "connect": {"type": "number", "exclusiveMinimum": 0},
                "send": {"type": "number", "exclusiveMinimum": 0},
                "read": {"type": "number", "exclusiveMinimum": 0}
            }, "required": ["connect", "send", "read"]},
            "tls": {"type": "object", "properties": {
                "client_cert_id": id_schema(),
                "client_cert": certificate(),
                "client_key": private_key(),
                "verify": {"type": "boolean", "default": false}
            }, "dependencies": {
                "client_cert": ["client_key"],
                "client_key": ["client_cert"],
                "client_cert_id": {"not": {"required": ["client_cert", "client_key"]}}
            }},
            "keepalive_pool": {"type": "object", "properties": {
                "size": {"type": "integer", "minimum": 1, "default": 320},
                "idle_timeout": {"type": "number", "minimum": 0, "default": 60},
                "requests": {"type": "integer", "minimum": 1, "default": 1000}
            }},
            "type": {"type": "string", "default": "roundrobin"},
            "checks": health_checks(),
            "hash_on": {"type": "string", "default": "vars",
                "enum": ["vars", "header", "cookie", "consumer", "vars_combinations"]},
            "key": {"type": "string"},
            "scheme": {"type": "string", "default": "http",
                "enum": ["grpc", "grpcs", "http", "https", "tcp", "tls", "udp", "kafka"]},
            "discovery_type": {"type": "string"},
            "discovery_args": {"type": "object", "properties": {
                "namespace_id": {"type": "string"},
                "group_name": {"type": "string"}
            }},
            "pass_host": {"type": "string", "enum": ["pass", "node", "rewrite"], "default": "pass"},
            "upstream_host": host_def(),
            "service_name": {"type": "string", "minLength": 1, "maxLength": 256}
        },
        "oneOf": [{"required": ["nodes"]}, {"required": ["service_name", "discovery_type"]}],
        "additionalProperties": false
    })
}

/// The `stream_route` schema.
pub fn stream_route() -> Value {
    json!({
        "type": "object",
        "properties": {
            "id": id_schema(),
            "name": {"type": "string", "minLength": 1, "maxLength": 256},
            "desc": {"type": "string", "maxLength": 256},
            "labels": labels_def(),
            "create_time": {"type": "integer"},
            "update_time": {"type": "integer"},
            "remote_addr": {"type": "string", "anyOf": ip_def()},
            "server_addr": {"type": "string", "anyOf": ip_def()},
            "server_port": {"type": "integer", "minimum": 1, "maximum": 65535},
            "sni": host_def(),
            "upstream": upstream(),
            "upstream_id": id_schema(),
            "service_id": id_schema(),
            "plugins": {"type": "object"},
            "protocol": {"type": "object", "properties": {
                "name": {"type": "string"},
                "superior_id": id_schema(),
                "conf": {"type": "object"},
                "logger": {"type": "array", "items": {"type": "object", "properties": {
                    "name": {"type": "string"},
                    "filter": {"type": "array"},
                    "conf": {"type": "object"}
                }, "dependencies": {"name": ["conf"]}, "additionalProperties": false}}
            }, "required": ["name"]}
        },
        "additionalProperties": false
    })
}

/// The `ssl` schema.
pub fn ssl() -> Value {
    json!({
        "type": "object",
        "properties": {
            "id": id_schema(),
            "desc": {"type": "string", "maxLength": 256},
            "labels": labels_def(),
            "create_time": {"type": "integer"},
            "update_time": {"type": "integer"},
            "type": {"type": "string", "enum": ["server", "client"], "default": "server"},
            "cert": pem_or_reference(certificate()),
            "key": pem_or_reference(private_key()),
            "sni": host_def(),
            "snis": {"type": "array", "minItems": 1, "items": host_def()},
            "certs": {"type": "array", "items": pem_or_reference(certificate())},
            "keys": {"type": "array", "items": pem_or_reference(private_key())},
            "client": {"type": "object", "properties": {
                "ca": certificate(),
                "depth": {"type": "integer", "minimum": 0, "default": 1},
                "skip_mtls_uri_regex": {"type": "array", "minItems": 1, "uniqueItems": true,
                    "items": {"type": "string"}}
            }, "required": ["ca"]},
            "status": {"type": "integer", "enum": [1, 0], "default": 1},
            "ssl_protocols": {"type": "array", "maxItems": 3, "uniqueItems": true,
                "items": {"type": "string", "enum": ["TLSv1.1", "TLSv1.2", "TLSv1.3"]}}
        },
        "if": {"properties": {"type": {"enum": ["server"]}}},
        "then": {"oneOf": [{"required": ["sni", "key", "cert"]}, {"required": ["snis", "key", "cert"]}]},
        "else": {"required": ["key", "cert"]},
        "additionalProperties": false
    })
}

/// The `_meta` property APISIX injects into every plugin schema.
fn plugin_meta() -> Value {
    json!({"type": "object", "additionalProperties": false, "properties": {
        "disable": {"type": "boolean"},
        "error_response": {"oneOf": [{"type": "string"}, {"type": "object"}]},
        "priority": {"type": "integer"},
        "filter": {"type": "array"},
        "pre_function": {"type": "string"}
    }})
}

const PLUGIN_MARK: &str = "this is a mark for our injected plugin schema";

/// The `mqtt-proxy` plugin schema, with `_meta` injected as APISIX serves it, plus
/// streamgate's opt-in `reject_with_connack` and `keepalive_idle_timeout` (on by default).
pub fn mqtt_proxy() -> Value {
    json!({
        "type": "object",
        "$comment": PLUGIN_MARK,
        "properties": {
            "protocol_name": {"type": "string", "default": "MQTT"},
            "protocol_level": {"type": "integer"},
            "reject_with_connack": {"type": "boolean", "default": false},
            "keepalive_idle_timeout": {"type": "boolean", "default": true},
            "_meta": plugin_meta()
        },
        "required": ["protocol_level"]
    })
}

/// The `ip-restriction` plugin schema.
pub fn ip_restriction() -> Value {
    let list = json!({"type": "array", "minItems": 1, "items": {"anyOf": ip_def()}});
    json!({
        "type": "object",
        "$comment": PLUGIN_MARK,
        "properties": {
            "message": {"type": "string", "minLength": 1, "maxLength": 1024,
                        "default": "Your IP address is not allowed"},
            "response_code": {"type": "integer", "minimum": 403, "maximum": 404, "default": 403},
            "whitelist": list,
            "blacklist": list,
            "_meta": plugin_meta()
        },
        "oneOf": [{"required": ["whitelist"]}, {"required": ["blacklist"]}]
    })
}

/// The `limit-conn` plugin schema (the local policy; Redis policies are not shipped).
pub fn limit_conn() -> Value {
    json!({
        "type": "object",
        "$comment": PLUGIN_MARK,
        "properties": {
            "conn": {"type": "integer", "exclusiveMinimum": 0},
            "burst": {"type": "integer", "minimum": 0},
            "default_conn_delay": {"type": "number", "exclusiveMinimum": 0},
            "only_use_default_delay": {"type": "boolean", "default": false},
            "key_type": {"type": "string", "enum": ["var", "var_combination"], "default": "var"},
            "key": {"type": "string"},
            "rejected_code": {"type": "integer", "minimum": 200, "maximum": 599, "default": 503},
            "rejected_msg": {"type": "string", "minLength": 1},
            "allow_degradation": {"type": "boolean", "default": false},
            "policy": {"type": "string", "enum": ["local"], "default": "local"},
            "_meta": plugin_meta()
        },
        "required": ["conn", "burst", "default_conn_delay", "key"]
    })
}

/// The `prometheus` stream plugin schema.
pub fn prometheus() -> Value {
    json!({
        "type": "object",
        "$comment": PLUGIN_MARK,
        "properties": {
            "prefer_name": {"type": "boolean", "default": false},
            "_meta": plugin_meta()
        }
    })
}

/// The `syslog` stream plugin schema: its own fields, then the batch processor's (`name`
/// defaults to the stream logger's name).
pub fn syslog() -> Value {
    json!({
        "type": "object",
        "$comment": PLUGIN_MARK,
        "properties": {
            "host": {"type": "string"},
            "port": {"type": "integer"},
            "flush_limit": {"type": "integer", "minimum": 1, "default": 4096},
            "drop_limit": {"type": "integer", "default": 1048576},
            "timeout": {"type": "integer", "minimum": 1, "default": 3000},
            "log_format": {"type": "object"},
            "sock_type": {"type": "string", "default": "tcp", "enum": ["tcp", "udp"]},
            "pool_size": {"type": "integer", "minimum": 5, "default": 5},
            "tls": {"type": "boolean", "default": false},
            "name": {"type": "string", "default": "stream sys logger"},
            "max_retry_count": {"type": "integer", "minimum": 0, "default": 0},
            "retry_delay": {"type": "integer", "minimum": 0, "default": 1},
            "buffer_duration": {"type": "integer", "minimum": 1, "default": 60},
            "inactive_timeout": {"type": "integer", "minimum": 1, "default": 5},
            "batch_max_size": {"type": "integer", "minimum": 1, "default": 1000},
            "_meta": plugin_meta()
        },
        "required": ["host", "port"]
    })
}
