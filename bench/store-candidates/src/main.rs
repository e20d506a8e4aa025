//! Issue 14's storage engine comparison: the agent store's write pattern
//! run on three engines with the same group commit, so that what differs
//! is the engine.
//!
//! `cargo run --release -- [EVENTS [PUBLISHERS]]` (defaults 200,000 and 32)
//!
//! The engines:
//! - `log`: an append-only file of checksummed records, as Herald's store
//!   v2 writes (one `write` and one `fdatasync` a group);
//! - `fjall`: an LSM tree with a journal (fjall 3), two keyspaces
//!   (deliveries; attempts), one write batch a group, `persist(SyncData)`;
//! - `redb-slim`: redb with the hot-path rows removed (the third
//!   candidate): two tables (deliveries; attempts), no queue, index or
//!   statistics rows; one durable write transaction a group.
//!
//! In every engine the queue is in memory (rebuilt at open), as in store
//! v2, so each delivery costs one row at ingest and one attempt row at
//! success. Phases, each on a fresh directory:
//! - **live**: PUBLISHERS threads each store one delivery at a time and
//!   wait until it is durable, then record its success without waiting
//!   (as the dispatcher does);
//! - **fill**: deliveries stored in batches of 100 (a backlog);
//! - **drain**: every delivery of the backlog marked succeeded, then one
//!   durable commit;
//! - **reopen**: open the filled store and rebuild the queue from it.
//!
//! Figures: deliveries per second, process CPU per delivery (every
//! thread, the engines' background threads included), bytes the process
//! caused to be written to storage per delivery (`write_bytes`), durable
//! commits, and the directory's size at the end.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::{Duration, Instant};

/// A delivery as stored: about what store v2 writes for the micro-bench's
/// 200-byte payload (ids, type, tenant, timestamps, payload).
fn delivery(n: u64) -> Vec<u8> {
    let mut v = format!(
        "evt_{n:010}|ep_{:05}|bench|t.created|{}|{{\"seq\":{n},\"pad\":\"",
        n % 1000,
        1_764_000_000_000u64 + n
    )
    .into_bytes();
    v.resize(v.len() + 200, b'x');
    v.extend_from_slice(b"\"}");
    v.resize(400, 0);
    v
}

/// A 2xx attempt as store v2 keeps it: status, start, duration, no headers.
fn success(n: u64) -> [u8; 24] {
    let mut a = [0u8; 24];
    a[..8].copy_from_slice(&n.to_be_bytes());
    a[8..10].copy_from_slice(&200u16.to_be_bytes());
    a[10..18].copy_from_slice(&(1_764_000_000_000u64 + n).to_be_bytes());
    a
}

/// What the writer is asked to do.
enum Op {
    Insert(Vec<u64>, SyncSender<()>),
    Success(u64),
    Sync(SyncSender<()>),
}

/// One storage engine behind the common group-commit writer.
trait Engine: Send {
    /// Adds a group's operations (not yet durable).
    fn apply(&mut self, inserts: &[u64], successes: &[u64]);
    /// Makes everything applied durable.
    fn commit(&mut self);
    /// The deliveries stored without a success: the queue, rebuilt.
    fn queued(&self) -> usize;
}

struct Log {
    file: File,
    buf: Vec<u8>,
}

impl Log {
    fn open(dir: &Path) -> Log {
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(dir.join("log"))
            .expect("open log");
        Log {
            file,
            buf: Vec::new(),
        }
    }

    fn record(&mut self, kind: u8, body: &[u8]) {
        let len = (body.len() + 1) as u32;
        let mut h = crc32fast::Hasher::new();
        h.update(&[kind]);
        h.update(body);
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.buf.extend_from_slice(&h.finalize().to_le_bytes());
        self.buf.push(kind);
        self.buf.extend_from_slice(body);
    }
}

impl Engine for Log {
    fn apply(&mut self, inserts: &[u64], successes: &[u64]) {
        for n in inserts {
            self.record(1, &delivery(*n));
        }
        for n in successes {
            self.record(2, &success(*n));
        }
        self.file.write_all(&self.buf).expect("write");
        self.buf.clear();
    }

    fn commit(&mut self) {
        self.file.sync_data().expect("fdatasync");
    }

    fn queued(&self) -> usize {
        let mut r = std::io::BufReader::new(File::open(self.file_path()).expect("open"));
        let (mut inserted, mut done) = (0usize, 0usize);
        let mut head = [0u8; 8];
        let mut body = Vec::new();
        while r.read_exact(&mut head).is_ok() {
            let len = u32::from_le_bytes(head[..4].try_into().expect("4")) as usize;
            body.resize(len, 0);
            r.read_exact(&mut body).expect("torn record");
            assert_eq!(
                crc32fast::hash(&body),
                u32::from_le_bytes(head[4..].try_into().expect("4"))
            );
            match body[0] {
                1 => inserted += 1,
                _ => done += 1,
            }
        }
        inserted - done
    }
}

impl Log {
    fn file_path(&self) -> std::path::PathBuf {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.file);
        std::fs::read_link(format!("/proc/self/fd/{fd}")).expect("path")
    }
}

struct Fjall {
    db: fjall::Database,
    deliveries: fjall::Keyspace,
    attempts: fjall::Keyspace,
}

impl Fjall {
    fn open(dir: &Path) -> Fjall {
        let db = fjall::Database::builder(dir).open().expect("open fjall");
        let deliveries = db
            .keyspace("deliveries", fjall::KeyspaceCreateOptions::default)
            .expect("keyspace");
        let attempts = db
            .keyspace("attempts", fjall::KeyspaceCreateOptions::default)
            .expect("keyspace");
        Fjall {
            db,
            deliveries,
            attempts,
        }
    }
}

impl Engine for Fjall {
    fn apply(&mut self, inserts: &[u64], successes: &[u64]) {
        let mut b = self.db.batch();
        for n in inserts {
            b.insert(&self.deliveries, n.to_be_bytes(), delivery(*n));
        }
        for n in successes {
            b.insert(&self.attempts, n.to_be_bytes(), success(*n));
        }
        b.commit().expect("batch");
    }

    fn commit(&mut self) {
        self.db
            .persist(fjall::PersistMode::SyncData)
            .expect("persist");
    }

    fn queued(&self) -> usize {
        // Every delivery without an attempt row, as a restart rebuilds it.
        let mut n = 0;
        for kv in self.deliveries.iter() {
            let k = kv.key().expect("read");
            if !self.attempts.contains_key(&k).expect("read") {
                n += 1;
            }
        }
        n
    }
}

const DELIVERIES: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("deliveries");
const ATTEMPTS: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("attempts");

struct RedbSlim {
    db: redb::Database,
    /// Operations applied since the last commit: redb has no
    /// write-without-sync, so a group is written in the durable commit.
    pending: Vec<(bool, u64)>,
}

impl RedbSlim {
    fn open(dir: &Path) -> RedbSlim {
        let db = redb::Database::create(dir.join("redb")).expect("open redb");
        RedbSlim {
            db,
            pending: Vec::new(),
        }
    }
}

impl Engine for RedbSlim {
    fn apply(&mut self, inserts: &[u64], successes: &[u64]) {
        self.pending.extend(inserts.iter().map(|n| (true, *n)));
        self.pending.extend(successes.iter().map(|n| (false, *n)));
    }

    fn commit(&mut self) {
        let txn = self.db.begin_write().expect("txn");
        {
            let mut d = txn.open_table(DELIVERIES).expect("table");
            let mut a = txn.open_table(ATTEMPTS).expect("table");
            for (insert, n) in self.pending.drain(..) {
                if insert {
                    d.insert(n, delivery(n).as_slice()).expect("insert");
                } else {
                    a.insert(n, success(n).as_slice()).expect("insert");
                }
            }
        }
        txn.commit().expect("commit");
    }

    fn queued(&self) -> usize {
        use redb::{ReadableDatabase, ReadableTable};
        let r = self.db.begin_read().expect("read");
        let d = r.open_table(DELIVERIES).expect("table");
        let a = r.open_table(ATTEMPTS).expect("table");
        let mut n = 0;
        for kv in d.iter().expect("iter") {
            let (k, _) = kv.expect("read");
            if a.get(k.value()).expect("read").is_none() {
                n += 1;
            }
        }
        n
    }
}

/// The group-commit writer: takes what is waiting, applies it as one
/// group, and commits durably when someone waits for it (successes alone
/// ride on the next durable commit, as in store v2).
fn writer(mut engine: Box<dyn Engine>, ops: Receiver<Op>, commits: Arc<AtomicU64>) {
    while let Ok(first) = ops.recv() {
        let (mut inserts, mut successes, mut waiters) = (Vec::new(), Vec::new(), Vec::new());
        let mut take = |op: Op| match op {
            Op::Insert(ns, tx) => {
                inserts.extend(ns);
                waiters.push(tx);
            }
            Op::Success(n) => successes.push(n),
            Op::Sync(tx) => waiters.push(tx),
        };
        take(first);
        while let Ok(op) = ops.try_recv() {
            take(op);
        }
        engine.apply(&inserts, &successes);
        if !waiters.is_empty() {
            engine.commit();
            commits.fetch_add(1, Ordering::Relaxed);
            for w in waiters {
                let _ = w.send(());
            }
        }
    }
}

/// A running engine behind its writer thread.
struct Store {
    ops: SyncSender<Op>,
    commits: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl Store {
    fn start(engine: Box<dyn Engine>) -> Store {
        let (ops, rx) = sync_channel(4096);
        let commits = Arc::new(AtomicU64::new(0));
        let c = commits.clone();
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer(engine, rx, c))
            .expect("writer");
        Store {
            ops,
            commits,
            thread,
        }
    }

    fn insert(&self, ns: Vec<u64>) {
        let (tx, rx) = sync_channel(1);
        self.ops.send(Op::Insert(ns, tx)).expect("writer");
        rx.recv().expect("durable");
    }

    fn sync(&self) {
        let (tx, rx) = sync_channel(1);
        self.ops.send(Op::Sync(tx)).expect("writer");
        rx.recv().expect("durable");
    }

    fn stop(self) {
        drop(self.ops);
        self.thread.join().expect("writer");
    }
}

fn open(name: &str, dir: &Path) -> Box<dyn Engine> {
    match name {
        "log" => Box::new(Log::open(dir)),
        "fjall" => Box::new(Fjall::open(dir)),
        "redb-slim" => Box::new(RedbSlim::open(dir)),
        other => panic!("unknown engine {other}"),
    }
}

/// Process CPU time (every thread), from /proc.
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// Bytes this process caused to be written to storage.
fn written() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("write_bytes: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Measures `f` over `events` deliveries and prints one line.
fn measure(engine: &str, phase: &str, events: u64, f: impl FnOnce() -> u64) {
    // Dirty pages of earlier phases are written back first, so that they
    // are not counted here.
    nix_sync();
    let (t0, c0, w0) = (Instant::now(), cpu(), written());
    let commits = f();
    let wall = t0.elapsed();
    nix_sync();
    let (cpu_us, bytes) = (
        (cpu() - c0).as_secs_f64() * 1e6 / events as f64,
        (written() - w0) as f64 / events as f64,
    );
    println!(
        "{engine:<10} {phase:<6} {:>9.0}/s  {cpu_us:>6.1} µs CPU  {:>6.2} KiB written  {commits:>6} commits",
        events as f64 / wall.as_secs_f64(),
        bytes / 1024.0,
    );
}

fn nix_sync() {
    // sync(2) through the coreutils command: no libc binding needed.
    let _ = std::process::Command::new("sync").status();
}

fn live(engine: &str, events: u64, publishers: u64) {
    let dir = tempfile::tempdir().expect("dir");
    let store = Arc::new(Store::start(open(engine, dir.path())));
    measure(engine, "live", events, || {
        let next = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..publishers)
            .map(|_| {
                let (store, next) = (store.clone(), next.clone());
                std::thread::spawn(move || {
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= events {
                            return;
                        }
                        store.insert(vec![n]);
                        store.ops.send(Op::Success(n)).expect("writer");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("publisher");
        }
        store.sync();
        store.commits.load(Ordering::Relaxed)
    });
    let store = Arc::into_inner(store).expect("one handle");
    store.stop();
    println!(
        "{engine:<10} size   {:>9.1} MiB on disk after live",
        dir_size(dir.path()) as f64 / 1048576.0
    );
}

fn backlog(engine: &str, events: u64) {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::start(open(engine, dir.path()));
    measure(engine, "fill", events, || {
        let all: Vec<u64> = (0..events).collect();
        for part in all.chunks(100) {
            store.insert(part.to_vec());
        }
        store.commits.load(Ordering::Relaxed)
    });
    store.stop();
    let t0 = Instant::now();
    let reopened = open(engine, dir.path());
    let queued = reopened.queued();
    println!(
        "{engine:<10} reopen {:>9.0} ms to rebuild a queue of {queued}",
        t0.elapsed().as_secs_f64() * 1e3
    );
    assert_eq!(queued as u64, events);
    let store = Store::start(reopened);
    measure(engine, "drain", events, || {
        let before = store.commits.load(Ordering::Relaxed);
        for n in 0..events {
            store.ops.send(Op::Success(n)).expect("writer");
        }
        store.sync();
        store.commits.load(Ordering::Relaxed) - before
    });
    store.stop();
    assert_eq!(open(engine, dir.path()).queued(), 0, "all drained");
    println!(
        "{engine:<10} size   {:>9.1} MiB on disk after drain",
        dir_size(dir.path()) as f64 / 1048576.0
    );
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let events = args.first().copied().unwrap_or(200_000);
    let publishers = args.get(1).copied().unwrap_or(32);
    let engines: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a.parse::<u64>().is_err())
        .collect();
    let engines = if engines.is_empty() {
        vec!["log".into(), "fjall".into(), "redb-slim".into()]
    } else {
        engines
    };
    println!("{events} deliveries of 400 bytes, {publishers} publishers");
    for e in &engines {
        live(e, events, publishers);
    }
    for e in &engines {
        backlog(e, events);
    }
}
