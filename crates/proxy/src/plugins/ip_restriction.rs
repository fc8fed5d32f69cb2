//! `ip-restriction`: accept or refuse a connection by client address (whitelist or blacklist
//! of IPs and CIDRs).

use ipnet::IpNet;
use sg_model::resource::IpRestrictionConf;

use super::{priority_of, Ctx, Input, Preread, Reads, Reject, StreamPlugin};

pub struct IpRestriction {
    list: Vec<IpNet>,
    /// True for a whitelist (only listed clients pass), false for a blacklist.
    allow_listed: bool,
    code: u16,
}

impl IpRestriction {
    pub fn new(conf: &IpRestrictionConf) -> Self {
        IpRestriction {
            list: conf.list.clone(),
            allow_listed: conf.allow_listed,
            code: conf.response_code,
        }
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
