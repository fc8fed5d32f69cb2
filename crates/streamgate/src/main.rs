//! streamgate: an APISIX-compatible stream (L4) gateway. `main` reads the configuration, builds
//! the data plane's workers and the control plane's runtime, then runs the gateway.
#![forbid(unsafe_code)]

mod app;
mod control_plane;
mod exporter;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use sg_model::Settings;
use sg_proxy::Workers;

// jemalloc: tokio's 128-aligned blocks leave no glibc fragment (~30% less per idle connection).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Exit code for an unusable configuration (sysexits' EX_USAGE, as linkerd uses).
const EX_USAGE: u8 = 64;

#[derive(Parser)]
#[command(
    version,
    about = "APISIX-compatible stream gateway with MQTT-aware balancing"
)]
struct Cli {
    /// APISIX-style configuration file.
    #[arg(short = 'c', long = "config", default_value = "conf/config.yaml")]
    config: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(&cli.config) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("streamgate: {}: {e}", cli.config.display());
            return ExitCode::from(EX_USAGE);
        }
    };
    // RUST_LOG, when set, overrides the configured level.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&settings.log_filter)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let (runtime, workers) = match Workers::build(settings.workers) {
        Ok(built) => built,
        Err(e) => {
            eprintln!("streamgate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let control = match control_plane::runtime() {
        Ok(control) => control,
        Err(e) => {
            eprintln!("streamgate: cannot start the control runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ended = runtime.block_on(app::run(
        settings,
        Arc::new(workers),
        control.handle().clone(),
    ));
    // Background tasks left on the control runtime (watchers, checkers) are dropped here.
    control.shutdown_background();
    match ended {
        Ok(()) => ExitCode::SUCCESS,
        Err(app::StartError::Usage(e)) => {
            eprintln!("streamgate: {e:#}");
            ExitCode::from(EX_USAGE)
        }
        Err(app::StartError::Fatal(e)) => {
            eprintln!("streamgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}
