//! Child processes that die with their handle.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A child process, killed (SIGKILL) and reaped when dropped.
pub struct Proc {
    name: String,
    child: Child,
    /// Lines of the child's stdout, as they come.
    pub stdout: mpsc::Receiver<String>,
    /// Lines `wait_for_line` has read so far.
    pub seen: Vec<String>,
}

impl Proc {
    /// Spawns `cmd` with stdout piped (stderr goes to the test's stderr).
    pub fn spawn(name: &str, mut cmd: Command) -> anyhow::Result<Proc> {
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .stdin(Stdio::null());
        let mut child = cmd
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {name} ({cmd:?}): {e}"))?;
        let out = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        let tag = name.to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                eprintln!("[{tag}] {line}");
                let _ = tx.send(line);
            }
        });
        Ok(Proc {
            name: name.to_string(),
            child,
            stdout: rx,
            seen: Vec::new(),
        })
    }

    /// Waits for a stdout line starting with `prefix`; returns the rest.
    pub fn wait_for_line(&mut self, prefix: &str, timeout: Duration) -> anyhow::Result<String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return Ok(rest.trim().to_string());
                    }
                }
                Err(_) => {
                    let status = self.child.try_wait()?;
                    anyhow::bail!(
                        "{} printed no line starting {prefix:?} (exit status: {status:?})",
                        self.name
                    )
                }
            }
        }
    }

    /// The rest of a line already read that starts with `prefix`.
    pub fn seen_line(&self, prefix: &str) -> Option<String> {
        self.seen
            .iter()
            .find_map(|l| l.strip_prefix(prefix).map(|r| r.trim().to_string()))
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, as an operator stopping it would; waits up to `timeout`
    /// for it to exit and says whether it did.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if self.exited() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The OS process id (to read `/proc/<pid>/` for CPU and memory).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A port that was free a moment ago (for programs that cannot bind port 0
/// and report it, like etcd).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port on loopback")
}

/// Path of a workspace binary built by `cargo build --bins`.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|d| {
            if d.ends_with("deps") {
                d.parent()
            } else {
                Some(d)
            }
        })
        .expect("test binary has a parent dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (`cargo build --workspace --bins`, which the test script does)",
        path.display()
    );
    path
}

/// The etcd binary: $HERALD_TEST_ETCD, or `etcd` on PATH (the test script
/// installs Debian's etcd-server when it is missing).
pub fn etcd_bin() -> PathBuf {
    std::env::var_os("HERALD_TEST_ETCD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("etcd"))
}
