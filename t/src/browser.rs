//! Headless Chromium driven over WebDriver: Debian's `chromedriver` started on a free port,
//! and a fantoccini session on it, for the dashboard's tests.

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use crate::free_port;

/// How long a page may take to show what a test waits for.
pub const PATIENCE: Duration = Duration::from_secs(15);

/// A browser session; [`Browser::close`] ends it, and dropping it stops the driver and every
/// browser process it started.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
    shots: PathBuf,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile; screenshots go to
    /// `shots`.
    pub async fn start(shots: &Path) -> Result<Browser> {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so that dropping the browser ends Chromium's processes too.
            .process_group(0)
            .spawn()
            .context("starting chromedriver (make test installs chromium-driver)")?;
        let profile = tempfile::tempdir()?;
        let browser = Browser {
            client: connect(port, &profile).await?,
            driver,
            _profile: profile,
            shots: shots.to_owned(),
        };
        browser.client.set_window_size(1280, 1600).await?;
        std::fs::create_dir_all(&browser.shots)?;
        Ok(browser)
    }

    /// Saves a PNG of the page as `<name>.png` and returns its path.
    pub async fn screenshot(&self, name: &str) -> Result<PathBuf> {
        let png = self.client.screenshot().await?;
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png)?;
        eprintln!("screenshot: {}", path.display());
        Ok(path)
    }

    /// The element `css` selects, once the page shows it.
    pub async fn find(&self, css: &str) -> Result<Element> {
        self.client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
            .with_context(|| format!("no element {css}"))
    }

    /// Every element `css` selects now.
    pub async fn all(&self, css: &str) -> Result<Vec<Element>> {
        Ok(self.client.find_all(Locator::Css(css)).await?)
    }

    /// Returns once nothing matches `css`.
    pub async fn wait_gone(&self, css: &str) -> Result<()> {
        let deadline = Instant::now() + PATIENCE;
        while !self.all(css).await?.is_empty() {
            if Instant::now() > deadline {
                bail!("{css} is still shown");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// The text of the element `css` selects, once `accept` holds for it.
    pub async fn wait_text(&self, css: &str, accept: impl Fn(&str) -> bool) -> Result<String> {
        let deadline = Instant::now() + PATIENCE;
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Ok(element) = self.client.find(Locator::Css(css)).await {
                // The page may replace the element between finding and reading it.
                if let Ok(text) = element.text().await {
                    if accept(&text) {
                        return Ok(text);
                    }
                    last = text;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("{css} never showed what was expected; last text: {last:?}")
    }

    pub async fn close(mut self) -> Result<()> {
        self.client.clone().close().await?;
        stop(&mut self.driver);
        Ok(())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        stop(&mut self.driver);
    }
}

fn stop(driver: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", driver.id())])
        .status();
    let _ = driver.wait();
}

async fn connect(port: u16, profile: &tempfile::TempDir) -> Result<Client> {
    let deadline = Instant::now() + PATIENCE;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("chromedriver did not listen on {port}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Without the background-networking flags Chromium tries Google's hosts, which a closed
    // network refuses at every start.
    let options = json!({
        "binary": "/usr/bin/chromium",
        "args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-dev-shm-usage",
            format!("--user-data-dir={}", profile.path().display()),
        ],
    });
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("goog:chromeOptions".into(), options);
    ClientBuilder::new(HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .context("opening a Chromium session")
}
