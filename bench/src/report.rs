//! The results of a run, as plain text or JSON.

use std::fmt::Write as _;

use serde::Serialize;

use crate::analysis::Analysis;
use crate::procstat::Sample;

/// Where the figures came from.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPUs this process may use.
    pub cores: usize,
    /// Cargo profile of this binary (and so of the Herald binaries).
    pub profile: &'static str,
}

impl Machine {
    /// This machine and build.
    pub fn here() -> Machine {
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
        }
    }
}

/// The settings of a load run.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// Events published.
    pub events: u64,
    /// Endpoints, one event type each.
    pub endpoints: u64,
    /// Publishers asked for.
    pub concurrency: usize,
    /// Publishers that had work (at most one per endpoint).
    pub publishers: usize,
    /// Events per publish call.
    pub batch_size: usize,
    /// Target events per second (None: as fast as possible).
    pub rate: Option<f64>,
    /// Payload size, bytes.
    pub payload_bytes: usize,
    /// Receiver delay before answering, ms.
    pub receiver_delay_ms: u64,
    /// Agents.
    pub agents: usize,
    /// Events per request at each endpoint.
    pub chunk_size: u32,
}

/// A process's resource use during the measured phase.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessUse {
    /// Role.
    pub name: String,
    /// CPU seconds (user + system) spent during the measured phase.
    pub cpu_secs: f64,
    /// Peak RSS over the process's life, MiB.
    pub peak_rss_mib: f64,
    /// Bytes written to storage during the measured phase.
    pub disk_write_bytes: u64,
    /// CPU seconds of its store writer thread during the measured phase.
    pub writer_cpu_secs: f64,
}

impl ProcessUse {
    /// From samples before and after the phase.
    pub fn between(name: &str, before: &Sample, after: &Sample) -> ProcessUse {
        ProcessUse {
            name: name.to_string(),
            cpu_secs: after.cpu_secs - before.cpu_secs,
            peak_rss_mib: after.peak_rss_kib as f64 / 1024.0,
            disk_write_bytes: after
                .disk_write_bytes
                .saturating_sub(before.disk_write_bytes),
            writer_cpu_secs: after.writer_cpu_secs - before.writer_cpu_secs,
        }
    }
}

/// Throughput, latency and correctness of Herald against the bare client.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// Scenario name.
    pub scenario: String,
    /// Where it ran.
    pub machine: Machine,
    /// What was asked.
    pub settings: Settings,
    /// Publish calls per second (first call start to last call end).
    pub publish_calls_per_sec: f64,
    /// Events published per second (the same, counting events).
    pub published_per_sec: f64,
    /// Publish calls that failed and were retried.
    pub publish_retries: u64,
    /// Distinct events delivered per second (first publish to last arrival).
    pub delivered_per_sec: f64,
    /// Correctness and latency.
    pub analysis: Analysis,
    /// Requests the receiver could not attribute.
    pub malformed_requests: u64,
    /// Bare client requests per second.
    pub ceiling_per_sec: f64,
    /// Concurrency of the bare client.
    pub ceiling_concurrency: usize,
    /// Body size of the bare client's requests, bytes.
    pub ceiling_body_bytes: usize,
    /// `delivered_per_sec / ceiling_per_sec`.
    pub ratio: f64,
    /// CPU time of every process (Herald's, etcd, the generator and the
    /// receiver) over the measured phase, per delivered event, µs.
    pub cpu_us_per_event: f64,
    /// CPU time of the generator process (bare client and receiver) over the
    /// ceiling run, per request, µs.
    pub ceiling_cpu_us_per_request: f64,
    /// Each process, the generator itself last.
    pub processes: Vec<ProcessUse>,
}

impl LoadReport {
    /// Whether every event arrived once, in order, and nothing else came.
    pub fn is_clean(&self) -> bool {
        self.analysis.is_clean() && self.malformed_requests == 0
    }

    /// Human-readable lines.
    pub fn text(&self) -> String {
        let s = &self.settings;
        let a = &self.analysis;
        let l = &a.latency;
        let mut o = String::new();
        let _ = writeln!(
            o,
            "scenario {}: {} events, {} endpoints, {} publishers ({} asked), batch {}, rate {}, payload {} B, receiver delay {} ms, chunk {}, {} agent(s); {} cores, {} build",
            self.scenario,
            s.events,
            s.endpoints,
            s.publishers,
            s.concurrency,
            s.batch_size,
            s.rate.map_or("max".into(), |r| format!("{r}/s")),
            s.payload_bytes,
            s.receiver_delay_ms,
            s.chunk_size,
            s.agents,
            self.machine.cores,
            self.machine.profile,
        );
        let _ = writeln!(
            o,
            "publish calls/s      {:>10.1}  ({:.1} events/s; retried calls: {})",
            self.publish_calls_per_sec, self.published_per_sec, self.publish_retries
        );
        let _ = writeln!(o, "delivered events/s   {:>10.1}", self.delivered_per_sec);
        let _ = writeln!(
            o,
            "bare client req/s    {:>10.1}  ({} concurrent, {} B bodies)",
            self.ceiling_per_sec, self.ceiling_concurrency, self.ceiling_body_bytes
        );
        let _ = writeln!(
            o,
            "herald / bare        {:>10.3}{}",
            self.ratio,
            if s.rate.is_some() {
                "  (rate-limited run: not a ceiling comparison)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            o,
            "CPU µs per event     {:>10.0}  (all processes; bare client + receiver: {:.0} per request, {:.1}×)",
            self.cpu_us_per_event,
            self.ceiling_cpu_us_per_request,
            if self.ceiling_cpu_us_per_request > 0.0 {
                self.cpu_us_per_event / self.ceiling_cpu_us_per_request
            } else {
                0.0
            }
        );
        let _ = writeln!(
            o,
            "latency ms           p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}",
            l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms
        );
        let _ = writeln!(
            o,
            "delivered {}  missing {}  duplicates {}  order violations {}  misrouted {}  malformed {}",
            a.delivered,
            a.missing,
            a.duplicates,
            a.order_violations,
            a.misrouted,
            self.malformed_requests
        );
        let agents_written: u64 = self
            .processes
            .iter()
            .filter(|p| p.name.starts_with("agent"))
            .map(|p| p.disk_write_bytes)
            .sum();
        let writer: f64 = self.processes.iter().map(|p| p.writer_cpu_secs).sum();
        let _ = writeln!(
            o,
            "agents' disk writes  {:>10.2} KiB per event; store writer thread {:.1} µs CPU per event",
            agents_written as f64 / 1024.0 / a.delivered.max(1) as f64,
            writer * 1e6 / a.delivered.max(1) as f64
        );
        let _ = writeln!(
            o,
            "{:<16} {:>10} {:>14} {:>14}",
            "process", "cpu s", "peak rss MiB", "disk MiB"
        );
        for p in &self.processes {
            let _ = writeln!(
                o,
                "{:<16} {:>10.2} {:>14.1} {:>14.1}",
                p.name,
                p.cpu_secs,
                p.peak_rss_mib,
                p.disk_write_bytes as f64 / 1048576.0
            );
        }
        o
    }
}

/// Memory per idle endpoint, per process.
#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    /// Scenario name.
    pub scenario: String,
    /// Where it ran.
    pub machine: Machine,
    /// Endpoints created.
    pub endpoints: u64,
    /// Endpoints created per second (sequential API calls in parallel).
    pub created_per_sec: f64,
    /// Each process's RSS before and after.
    pub processes: Vec<IdleUse>,
    /// A second control plane started on the same etcd: seconds until it
    /// had loaded every endpoint and served.
    pub cp_start_secs: f64,
    /// That control plane's RSS once serving, KiB.
    pub cp_start_rss_kib: u64,
    /// etcd's data directory once everything is created, KiB.
    pub etcd_disk_kib: u64,
}

/// One process's memory before and after creating the endpoints.
#[derive(Debug, Clone, Serialize)]
pub struct IdleUse {
    /// Role.
    pub name: String,
    /// RSS before, KiB.
    pub rss_before_kib: u64,
    /// RSS after, KiB.
    pub rss_after_kib: u64,
    /// (after - before) / endpoints, bytes.
    pub bytes_per_endpoint: f64,
}

impl IdleReport {
    /// Human-readable lines.
    pub fn text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "scenario {}: {} idle endpoints created at {:.0}/s; {} cores, {} build",
            self.scenario,
            self.endpoints,
            self.created_per_sec,
            self.machine.cores,
            self.machine.profile
        );
        let _ = writeln!(
            o,
            "{:<16} {:>14} {:>14} {:>14}",
            "process", "rss before MiB", "rss after MiB", "B/endpoint"
        );
        for p in &self.processes {
            let _ = writeln!(
                o,
                "{:<16} {:>14.1} {:>14.1} {:>14.0}",
                p.name,
                p.rss_before_kib as f64 / 1024.0,
                p.rss_after_kib as f64 / 1024.0,
                p.bytes_per_endpoint
            );
        }
        let _ = writeln!(
            o,
            "a second control plane loaded them and served in {:.2} s, at {:.1} MiB RSS; etcd data {:.1} MiB",
            self.cp_start_secs,
            self.cp_start_rss_kib as f64 / 1024.0,
            self.etcd_disk_kib as f64 / 1024.0
        );
        o
    }
}
