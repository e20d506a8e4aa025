//! Command-line settings of a run, and each scenario's defaults for those
//! not given.

use clap::Args;

/// Flags every scenario takes; unset ones get the scenario's default.
#[derive(Debug, Clone, Default, Args)]
pub struct Opts {
    /// Events to publish.
    #[arg(long)]
    pub events: Option<u64>,
    /// Endpoints, each subscribed to its own event type `t{i}.created`.
    #[arg(long)]
    pub endpoints: Option<u64>,
    /// Concurrent publishers (each owns a share of the endpoints, so at most
    /// one per endpoint does work); also the bare client's concurrency.
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Events per publish call: 1 uses `Publish`, 2 to 100 `PublishBatch`.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub batch_size: Option<u16>,
    /// Target events per second over all publishers (default: as fast as
    /// possible).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Size of each event payload, bytes.
    #[arg(long)]
    pub payload_bytes: Option<usize>,
    /// How long the receiver waits before answering, ms.
    #[arg(long)]
    pub receiver_delay_ms: Option<u64>,
    /// Agents to start.
    #[arg(long)]
    pub agents: Option<usize>,
    /// Concurrency of the bare client (default: the publishers').
    #[arg(long)]
    pub ceiling_concurrency: Option<usize>,
    /// API calls in parallel while creating event types and endpoints.
    #[arg(long)]
    pub setup_concurrency: Option<usize>,
    /// Give up waiting for deliveries after this long without one, s.
    #[arg(long)]
    pub stall_secs: Option<u64>,
    /// Events per request at each endpoint (1 to 100).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub chunk_size: Option<u32>,
    /// Backlog runs: kill -9 the agent once the backlog is stored, restart
    /// it, and time how long until deliveries resume.
    #[arg(long)]
    pub restart_agent: bool,
    /// Each agent's `--max-concurrency` (default: the agent's own, 512).
    /// Behind a slow receiver it is what an agent can deliver.
    #[arg(long)]
    pub agent_max_concurrency: Option<usize>,
}

/// The settings of one run, every field decided.
#[derive(Debug, Clone)]
pub struct Params {
    /// Events to publish.
    pub events: u64,
    /// Endpoints.
    pub endpoints: u64,
    /// Publishers asked for.
    pub concurrency: usize,
    /// Events per publish call.
    pub batch_size: usize,
    /// Events per second, or as fast as possible.
    pub rate: Option<f64>,
    /// Payload size, bytes.
    pub payload_bytes: usize,
    /// Receiver delay, ms.
    pub receiver_delay_ms: u64,
    /// Agents.
    pub agents: usize,
    /// Bare client concurrency; None: the publishers'.
    pub ceiling_concurrency: Option<usize>,
    /// Parallel API calls during setup.
    pub setup_concurrency: usize,
    /// Longest wait without a new delivery, s.
    pub stall_secs: u64,
    /// Events per request.
    pub chunk_size: u32,
    /// Backlog runs: crash and restart the agent before the drain.
    pub restart_agent: bool,
    /// Each agent's `--max-concurrency`; None: the agent's default.
    pub agent_max_concurrency: Option<usize>,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            events: 1_000,
            endpoints: 1,
            concurrency: 16,
            batch_size: 1,
            rate: None,
            payload_bytes: 256,
            receiver_delay_ms: 0,
            agents: 1,
            ceiling_concurrency: None,
            setup_concurrency: 16,
            stall_secs: 30,
            chunk_size: 1,
            restart_agent: false,
            agent_max_concurrency: None,
        }
    }
}

impl Opts {
    /// `defaults`, overridden by every flag given.
    pub fn over(&self, d: Params) -> Params {
        Params {
            events: self.events.unwrap_or(d.events),
            endpoints: self.endpoints.unwrap_or(d.endpoints).max(1),
            concurrency: self.concurrency.unwrap_or(d.concurrency).max(1),
            batch_size: self.batch_size.map_or(d.batch_size, usize::from),
            rate: self.rate.or(d.rate).filter(|r| *r > 0.0),
            payload_bytes: self.payload_bytes.unwrap_or(d.payload_bytes),
            receiver_delay_ms: self.receiver_delay_ms.unwrap_or(d.receiver_delay_ms),
            agents: self.agents.unwrap_or(d.agents).max(1),
            ceiling_concurrency: self.ceiling_concurrency.or(d.ceiling_concurrency),
            setup_concurrency: self.setup_concurrency.unwrap_or(d.setup_concurrency).max(1),
            stall_secs: self.stall_secs.unwrap_or(d.stall_secs),
            chunk_size: self.chunk_size.unwrap_or(d.chunk_size),
            restart_agent: self.restart_agent || d.restart_agent,
            agent_max_concurrency: self.agent_max_concurrency.or(d.agent_max_concurrency),
        }
    }
}
