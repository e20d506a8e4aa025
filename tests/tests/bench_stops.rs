//! `herald-bench` stops every process it started when it gets SIGTERM, as
//! on Ctrl-C (issue 19): no etcd, control plane or agent is left running.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The processes whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

/// Kills the listed processes when dropped, so a failing run leaves none.
struct KillOnDrop(Vec<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(p.to_string())
                .status();
        }
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().next())
            != Some("Z")
    })
}

#[test]
fn sigterm_stops_every_process_the_bench_started() -> anyhow::Result<()> {
    let mut bench = Command::new(herald_tests::process::bin("herald-bench"))
        .args(["run", "--events", "1000000", "--rate", "100"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = bench.id();
    // The bench echoes its processes' lines on stderr: wait until the agent
    // printed its address (read on a thread, so the wait is bounded).
    let stderr = bench.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("herald-agent listening on") => break,
            Ok(_) => {}
            Err(_) => {
                let _ = bench.kill();
                anyhow::bail!("the bench never started its agent");
            }
        }
    }
    let started = children(pid);
    let _guard = KillOnDrop(started.clone());
    assert!(
        started.len() >= 3,
        "etcd, control plane and agent: {started:?}"
    );
    Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()?;
    let status = bench.wait()?;
    assert!(!status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while started.iter().any(|p| alive(*p)) {
        assert!(
            Instant::now() < deadline,
            "left running: {:?}",
            started.iter().filter(|p| alive(**p)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
