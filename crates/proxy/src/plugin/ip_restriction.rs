//! `ip-restriction`: accept or refuse a connection by client address (whitelist or blacklist
//! of IPs and CIDRs).

use ipnet::IpNet;
use serde_json::Value;
use sg_model::check::parse_ip_or_cidr;

use super::{priority_of, Ctx, Input, Preread, Reads, Reject, StreamPlugin};

pub struct IpRestriction {
    list: Vec<IpNet>,
    /// True for a whitelist (only listed clients pass), false for a blacklist.
    allow_listed: bool,
    code: u16,
}

impl IpRestriction {
    pub fn new(conf: &Value) -> Result<Self, String> {
        let (field, allow_listed) = match conf.get("whitelist") {
            Some(_) => ("whitelist", true),
            None => ("blacklist", false),
        };
        let list = conf
            .get(field)
            .and_then(Value::as_array)
            .ok_or_else(|| "ip-restriction needs a whitelist or a blacklist".to_owned())?
            .iter()
            .map(|v| {
                let text = v.as_str().unwrap_or_default();
                parse_ip_or_cidr(text)
                    .map(|n| n.trunc())
                    .ok_or_else(|| format!("invalid ip address: {text}"))
            })
            .collect::<Result<_, _>>()?;
        let code = conf
            .get("response_code")
            .and_then(Value::as_u64)
            .and_then(|c| u16::try_from(c).ok())
            .unwrap_or(403);
        Ok(IpRestriction {
            list,
            allow_listed,
            code,
        })
    }
}

impl StreamPlugin for IpRestriction {
    fn name(&self) -> &'static str {
        "ip-restriction"
    }

    fn priority(&self) -> i32 {
        priority_of(self.name())
    }

    fn reads(&self) -> Reads {
        Reads::Connection
    }

    fn preread(&self, ctx: &mut Ctx, _input: Input<'_>) -> Preread {
        let ip = ctx.vars.remote.ip().to_canonical();
        let listed = self.list.iter().any(|net| net.contains(&ip));
        if listed == self.allow_listed {
            Preread::Continue
        } else {
            Preread::Reject(Reject::silent(self.code))
        }
    }
}
