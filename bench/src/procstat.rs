//! CPU time and memory of a process, read from `/proc/<pid>/`.

use serde::Serialize;

/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

/// One reading of a process's counters.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Sample {
    /// User plus system CPU seconds since the process started.
    pub cpu_secs: f64,
    /// Resident memory now (VmRSS), KiB.
    pub rss_kib: u64,
    /// Peak resident memory (VmHWM), KiB.
    pub peak_rss_kib: u64,
    /// Bytes the process caused to be written to storage (`write_bytes`
    /// of `/proc/<pid>/io`: whole pages, as the disk sees them).
    pub disk_write_bytes: u64,
    /// CPU seconds of the process's `store-writer` thread (agents), 0 when
    /// it has none.
    pub writer_cpu_secs: f64,
}

/// Reads `pid`'s counters; zeros when the process is gone (it is then not
/// worth failing a whole run over).
pub fn sample(pid: u32) -> Sample {
    Sample {
        cpu_secs: cpu_secs(pid).unwrap_or(0.0),
        rss_kib: status_kib(pid, "VmRSS:").unwrap_or(0),
        peak_rss_kib: status_kib(pid, "VmHWM:").unwrap_or(0),
        disk_write_bytes: io_field(pid, "write_bytes:").unwrap_or(0),
        writer_cpu_secs: thread_cpu_secs(pid, "store-writer").unwrap_or(0.0),
    }
}

/// utime + stime of `pid`'s thread named `name`, in seconds.
fn thread_cpu_secs(pid: u32, name: &str) -> Option<f64> {
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let tid = t.ok()?.file_name();
        let tid = tid.to_string_lossy();
        let comm = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).ok()?;
        if comm.trim() == name {
            return cpu_secs_at(&format!("/proc/{pid}/task/{tid}/stat"));
        }
    }
    None
}

/// A field of `/proc/<pid>/io`.
fn io_field(pid: u32, key: &str) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let line = io.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].trim().parse().ok()
}

/// utime + stime, in seconds.
fn cpu_secs(pid: u32) -> Option<f64> {
    cpu_secs_at(&format!("/proc/{pid}/stat"))
}

/// utime + stime from a `stat` file, in seconds.
fn cpu_secs_at(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) may hold spaces and parentheses; the
    // fields after the last ')' start at field 3 (state).
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after field 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_SEC)
}

/// A `kB` line of `/proc/<pid>/status`.
fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let s = sample(std::process::id());
        assert!(s.rss_kib > 0);
        assert!(s.peak_rss_kib >= s.rss_kib);
        assert!(s.cpu_secs >= 0.0);
    }
}
