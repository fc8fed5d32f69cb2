//! `mqtt-proxy`: reads the client's CONNECT, checks its protocol name and level against the
//! route's conf, and exposes the client id as `mqtt_client_id` for chash upstreams. The CONNECT
//! bytes reach the broker unchanged. Log lines and levels follow APISIX's plugin.

use std::time::Duration;

use sg_model::resource::MqttProxyConf;
use sg_mqtt::{decode_connect, protocol, protocol_prefix, Connect, Decoded, Invalid};
use tracing::info;

use super::{priority_of, Ctx, Input, InputEnd, Preread, Reads, Reject, SessionEnd, StreamPlugin};
use crate::metrics::logs::printable;
use crate::metrics::{ReasonLabels, METRICS};

/// An mqtt-proxy refusal line, under the per-kind rate limit (see `crate::metrics::logs`).
macro_rules! mqtt_error {
    ($($arg:tt)+) => {
        if crate::metrics::logs::allow(crate::metrics::logs::LogKind::Mqtt) {
            tracing::error!($($arg)+)
        }
    };
}

/// The code APISIX's plugin returns on every refusal.
const REFUSED: u16 = 503;
/// CONNACK, MQTT 3.x: return code 0x01 "unacceptable protocol version".
const CONNACK_V3_BAD_VERSION: &[u8] = &[0x20, 0x02, 0x00, 0x01];
/// CONNACK, MQTT 5.0: reason 0x84 "unsupported protocol version", no properties.
const CONNACK_V5_BAD_VERSION: &[u8] = &[0x20, 0x03, 0x00, 0x84, 0x00];
/// CONNACK, MQTT 5.0: reason 0x95 "packet too large", no properties (3.x has no such code).
const CONNACK_V5_TOO_LARGE: &[u8] = &[0x20, 0x03, 0x00, 0x95, 0x00];

pub struct MqttProxy {
    protocol_name: String,
    protocol_level: i64,
    /// Answer a name/level mismatch with a CONNACK before closing (streamgate extension).
    reject_with_connack: bool,
    /// Keep an idle session up for 1.5 × the client's keep-alive (streamgate extension).
    keepalive_idle_timeout: bool,
    /// The conf as APISIX's log phase prints it.
    conf: String,
}

impl MqttProxy {
    pub fn new(conf: &MqttProxyConf) -> Self {
        MqttProxy {
            protocol_name: conf.protocol_name.clone(),
            protocol_level: conf.protocol_level.0,
            reject_with_connack: conf.reject_with_connack,
            keepalive_idle_timeout: conf.keepalive_idle_timeout,
            conf: serde_json::json!({
                "protocol_name": conf.protocol_name,
                "protocol_level": conf.protocol_level.0,
            })
            .to_string(),
        }
    }

    fn refuse(&self, reason: &'static str) -> Preread {
        count(reason);
        Preread::Reject(Reject::silent(REFUSED))
    }

    /// Refuses a client speaking another protocol version, with a CONNACK if configured.
    fn refuse_version(&self, reason: &'static str, client_level: u8) -> Preread {
        count(reason);
        let reply = self.reject_with_connack.then(|| {
            if client_level == 5 {
                CONNACK_V5_BAD_VERSION
            } else {
                CONNACK_V3_BAD_VERSION
            }
            .to_vec()
        });
        Preread::Reject(Reject {
            code: REFUSED,
            reply,
        })
    }

    fn check(&self, ctx: &mut Ctx, connect: &Connect<'_>) -> Preread {
        if connect.protocol_name != self.protocol_name.as_bytes() {
            mqtt_error!(
                "expect protocol name: {}, but got {}",
                self.protocol_name,
                printable(connect.protocol_name)
            );
            return self.refuse_version("protocol_name", connect.level);
        }
        if i64::from(connect.level) != self.protocol_level {
            mqtt_error!(
                "expect protocol level: {}, but got {}",
                self.protocol_level,
                connect.level
            );
            return self.refuse_version("protocol_level", connect.level);
        }
        info!("mqtt client id: {}", printable(connect.client_id));
        let id = String::from_utf8_lossy(connect.client_id);
        if !id.is_empty() {
            ctx.vars.mqtt_client_id = Some(id.into());
        }
        // The broker closes a client silent for 1.5 × its keep-alive (MQTT 3.1.1 §3.1.2.10,
        // 5.0 §3.1.2.10); 0 means no keep-alive, and the configured timeout stays.
        if self.keepalive_idle_timeout && connect.keep_alive > 0 {
            ctx.idle_at_least = Some(Duration::from_millis(u64::from(connect.keep_alive) * 1500));
        }
        Preread::Continue
    }
}

fn count(reason: &'static str) {
    METRICS
        .mqtt_rejected
        .get_or_create(&ReasonLabels { reason })
        .inc();
}

fn incomplete(end: InputEnd) -> &'static str {
    match end {
        InputEnd::Closed => "closed_early",
        InputEnd::Timeout => "timeout",
    }
}

impl StreamPlugin for MqttProxy {
    fn name(&self) -> &'static str {
        "mqtt-proxy"
    }

    fn priority(&self) -> i32 {
        priority_of(self.name())
    }

    fn reads(&self) -> Reads {
        Reads::ClientBytes
    }

    fn server_answers(&self) -> bool {
        true
    }

    fn too_large(&self, input: Input<'_>) -> Reject {
        count("too_large");
        let v5 = protocol_prefix(input.data).is_some_and(|(_, level)| level == 5);
        Reject {
            code: REFUSED,
            reply: (self.reject_with_connack && v5).then(|| CONNACK_V5_TOO_LARGE.to_vec()),
        }
    }

    fn preread(&self, ctx: &mut Ctx, input: Input<'_>) -> Preread {
        match decode_connect(input.data) {
            Decoded::Incomplete(needed) => match input.end {
                None => Preread::NeedBytes(needed),
                Some(end) if input.data.len() < 2 => {
                    mqtt_error!("failed to read the msg header: {end}");
                    self.refuse(incomplete(end))
                }
                Some(end) => {
                    mqtt_error!("failed to read the Connect Command: {end}");
                    self.refuse(incomplete(end))
                }
            },
            Decoded::Invalid(Invalid::NotConnect(byte)) => {
                mqtt_error!("failed to parse the msg header: Received unexpected MQTT packet type+flags: {byte}");
                self.refuse("not_connect")
            }
            // APISIX checks the name before the level.
            Decoded::Invalid(Invalid::UnsupportedLevel(level))
                if protocol(input.data)
                    .is_some_and(|(name, _)| name != self.protocol_name.as_bytes()) =>
            {
                let name = protocol(input.data)
                    .map(|(name, _)| name)
                    .unwrap_or_default();
                mqtt_error!(
                    "expect protocol name: {}, but got {}",
                    self.protocol_name,
                    printable(name)
                );
                self.refuse_version("protocol_name", level)
            }
            Decoded::Invalid(Invalid::UnsupportedLevel(level)) => {
                mqtt_error!(
                    "expect protocol level: {}, but got {level}",
                    self.protocol_level
                );
                self.refuse_version("protocol_level", level)
            }
            Decoded::Invalid(reason) => {
                mqtt_error!("failed to parse mqtt request: {reason}");
                self.refuse("malformed")
            }
            Decoded::Connect(connect) => self.check(ctx, &connect),
        }
    }

    fn log(&self, _ctx: &Ctx, _end: &SessionEnd) {
        info!("plugin log phase, conf: {}", self.conf);
    }
}
