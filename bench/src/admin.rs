//! A minimal Admin API client: one keep-alive HTTP/1.1 connection, as a deployment script
//! would hold while it writes routes one after another.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use sg_blackbox::ADMIN_KEY;

pub struct Admin {
    base: String,
    agent: ureq::Agent,
}

impl Admin {
    pub fn new(port: u16) -> Admin {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        Admin {
            base: format!("http://127.0.0.1:{port}/apisix/admin"),
            agent,
        }
    }

    /// Polls until the Admin API answers (bounded).
    pub fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.agent.head(&self.base).call().is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("streamgate's Admin API did not come up")
    }

    /// PUTs `body` at `path` (e.g. `stream_routes/1`) and reads the whole answer: only a body
    /// read to its end lets the connection go back to the pool for the next call.
    pub fn put(&self, path: &str, body: serde_json::Value) -> Result<()> {
        let mut reply = self
            .agent
            .put(&format!("{}/{path}", self.base))
            .header("X-API-KEY", ADMIN_KEY)
            .send(body.to_string())?;
        let status = reply.status().as_u16();
        let text = reply.body_mut().read_to_string().unwrap_or_default();
        if status >= 300 {
            bail!("PUT {path}: {status} {text}");
        }
        Ok(())
    }
}
