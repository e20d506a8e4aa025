//! `herald-agent`: parses flags and runs the agent until SIGTERM or Ctrl-C.

use herald_agent::{config::Config, server};
use herald_shared::process;
use tokio_util::sync::CancellationToken;

herald_shared::use_jemalloc!();

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: Config = herald_shared::config_file::parse(&["api_key"]);
    // Kept until main returns, so buffered spans are flushed on the way out.
    let _telemetry = herald_shared::telemetry::init("herald-agent", &config.log_format);
    let cancel = CancellationToken::new();
    tokio::spawn(process::cancel_on_signal(cancel.clone()));
    server::run(config, cancel, |addr| {
        // Machine-readable line for scripts and tests that start us on port 0.
        println!("herald-agent listening on {addr}");
    })
    .await
}
