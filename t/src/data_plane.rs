//! A standalone data plane (`role: data_plane`, `config_provider: yaml`) on a free loopback
//! stream port, serving the `conf/apisix.yaml` the test writes; it has no Admin API to wait on.

use std::net::SocketAddr;
use std::process::{Child, ExitStatus};

use anyhow::{ensure, Result};

use crate::{config_with_tcp, free_port, launch};

pub struct DataPlane {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub stream: SocketAddr,
    /// The control API's port.
    pub control: u16,
}

impl DataPlane {
    /// Starts on `apisix_yaml` without waiting: readiness is whatever the test polls for.
    pub fn start(apisix_yaml: &str) -> Result<DataPlane> {
        let stream = free_port();
        let shipped = config_with_tcp(free_port(), &[format!("\"127.0.0.1:{stream}\"")]);
        let config = shipped.replacen(
            "  role: traditional\n",
            "  role: data_plane\n  role_data_plane:\n    config_provider: yaml\n",
            1,
        );
        ensure!(config != shipped, "the shipped config changed shape");
        let (config, control) = crate::extremes::with_control(&config);
        let mut node = DataPlane {
            child: None,
            dir: tempfile::tempdir()?,
            stream: SocketAddr::from(([127, 0, 0, 1], stream)),
            control,
        };
        std::fs::create_dir(node.dir.path().join("conf"))?;
        std::fs::write(node.dir.path().join("conf/config.yaml"), config)?;
        node.write(apisix_yaml)?;
        node.spawn()?;
        Ok(node)
    }

    fn spawn(&mut self) -> Result<()> {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("streamgate.log"))?;
        self.child = Some(launch(self.dir.path(), log, &[])?);
        Ok(())
    }

    /// Replaces `conf/apisix.yaml`.
    pub fn write(&self, text: &str) -> Result<()> {
        Ok(std::fs::write(
            self.dir.path().join("conf/apisix.yaml"),
            text,
        )?)
    }

    /// Everything logged so far, over all starts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("streamgate.log")).unwrap_or_default()
    }

    /// How the process ended, if it has.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// `kill -9`, then the same files again.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.spawn()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        self.kill();
    }
}
