//! `herald-control-plane`: parses flags and runs the server until SIGTERM or
//! Ctrl-C.

use herald_control_plane::{config::Config, server};
use herald_shared::process;
use tokio_util::sync::CancellationToken;

herald_shared::use_jemalloc!();

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: Config = herald_shared::config_file::parse(&["bootstrap_key"]);
    // Kept until main returns, so buffered spans are flushed on the way out.
    let _telemetry = herald_shared::telemetry::init("herald-control-plane", &config.log_format);
    if let Some(id) = &config.new_secrets_key {
        println!(
            "{}",
            herald_control_plane::sealing::KeyRing::new_key_line(id)
        );
        return Ok(());
    }
    if config.reseal_secrets {
        let n = server::reseal(&config).await?;
        println!("resealed {n} endpoint records");
        return Ok(());
    }
    if config.create_admin_key {
        let client = etcd_client::Client::connect(&config.etcd_endpoints, None).await?;
        let store = herald_control_plane::store::Store::new(client, &config.etcd_prefix);
        let key = herald_control_plane::api::access::create_admin(&store).await?;
        // The one place the key is shown.
        println!("{key}");
        return Ok(());
    }
    let cancel = CancellationToken::new();
    tokio::spawn(process::cancel_on_signal(cancel.clone()));
    server::run(config, cancel, |addr| {
        // Machine-readable line for scripts and tests that start us on port 0.
        println!("herald-control-plane listening on {addr}");
    })
    .await
}
