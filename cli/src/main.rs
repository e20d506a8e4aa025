//! `herald`: the Herald operator CLI. It manages event types, tenants and
//! endpoints over the control plane's gRPC API, publishes events, inspects
//! and resends deliveries, shows the cluster and drains agents, and runs a
//! sample webhook receiver that verifies Standard Webhooks signatures.

mod api_key;
mod cluster;
mod connect;
mod delivery;
mod dev_certs;
mod endpoint;
mod endpoint_update;
mod event_type;
mod output;
mod publish;
mod publish_file;
mod receiver;
mod tenant;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use output::Format;

/// Herald operator CLI.
#[derive(Debug, Parser)]
#[command(name = "herald", version, about)]
struct Cli {
    /// Control plane gRPC address.
    #[arg(
        long,
        global = true,
        env = "HERALD_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    server: String,
    /// API key (`hk_...`) sent with every call.
    #[arg(long, global = true, env = "HERALD_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// PEM CA certificate that signs an `https://` server's certificate
    /// (default: the system's roots).
    #[arg(long, global = true, env = "HERALD_CA_FILE")]
    ca_file: Option<std::path::PathBuf>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    output: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Manage the event type catalog.
    #[command(subcommand)]
    EventType(event_type::Cmd),
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(tenant::Cmd),
    /// Manage a tenant's endpoints.
    #[command(subcommand)]
    Endpoint(endpoint::Cmd),
    /// Inspect and resend deliveries.
    #[command(subcommand)]
    Delivery(delivery::Cmd),
    /// Show the cluster's leader, slot map and agents; drain agents.
    #[command(subcommand)]
    Cluster(cluster::Cmd),
    /// Publish an event.
    Publish(publish::PublishArgs),
    /// Manage API keys (needs an admin key).
    #[command(subcommand)]
    ApiKey(api_key::Cmd),
    /// Print a shell completion script: `herald completion bash >
    /// /etc/bash_completion.d/herald`.
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Make a private CA and certificates for loopback (development).
    DevCerts(dev_certs::DevCertsArgs),
    /// Run a sample webhook receiver that verifies signatures.
    Receiver(receiver::ReceiverArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match e.downcast_ref::<tonic::Status>() {
                Some(s) => eprintln!("error: {}: {}", code_name(s.code()), s.message()),
                None => eprintln!("error: {e:#}"),
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let channel = || connect::channel(&cli.server, cli.api_key.as_deref(), cli.ca_file.as_deref());
    let out = cli.output;
    match cli.command {
        Command::EventType(cmd) => event_type::run(channel()?, out, cmd).await,
        Command::Tenant(cmd) => tenant::run(channel()?, out, cmd).await,
        Command::Endpoint(cmd) => endpoint::run(channel()?, out, cmd).await,
        Command::Delivery(cmd) => delivery::run(channel()?, out, cmd).await,
        Command::Cluster(cmd) => cluster::run(channel()?, out, cmd).await,
        Command::Publish(args) => publish::run(channel()?, out, args).await,
        Command::ApiKey(cmd) => api_key::run(channel()?, out, cmd).await,
        Command::DevCerts(args) => dev_certs::run(args),
        Command::Completion { shell } => {
            use clap::CommandFactory as _;
            // Into a buffer: clap_complete panics when stdout closes early.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "herald", &mut script);
            std::io::Write::write_all(&mut std::io::stdout(), &script)?;
            Ok(())
        }
        Command::Receiver(args) => receiver::run(args).await,
    }
}

/// The canonical gRPC name of a status code, e.g. `NOT_FOUND`.
fn code_name(code: tonic::Code) -> String {
    let camel = format!("{code:?}");
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn grpc_code_names() {
        assert_eq!(code_name(tonic::Code::NotFound), "NOT_FOUND");
        assert_eq!(code_name(tonic::Code::Ok), "OK");
        assert_eq!(
            code_name(tonic::Code::FailedPrecondition),
            "FAILED_PRECONDITION"
        );
    }
}
