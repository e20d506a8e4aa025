//! The agent's durable store: an append-only log of Herald's own records,
//! and in-memory indexes rebuilt from it at start.
//!
//! # What we persist
//!
//! Files, in `<data-dir>/store/`:
//! - `seg-NNNNNNNNNN.log`: segments of the log (`segment.rs`), each a
//!   header and checksummed frames of records (`record.rs`, format
//!   [`record::FORMAT`]). A new segment starts at 64 MiB.
//! - `seen/seg-NNNNNNNNNN.log`: the ids log, same format: `Seen` records
//!   with the ids of deliveries whose records compaction dropped while
//!   they were inside the 24 h idempotency window, each written once. A
//!   segment is deleted when its newest id is outside the window.
//! - `LOCK`: held while an agent has the store open.
//!
//! Records: `Accept` (a delivery with its stamp and state, written when it
//! is accepted, handed over, or carried forward by compaction), `Attempt`
//! (one HTTP attempt and its outcome, linked to the delivery's previous
//! attempt), `Queue` (parked work joins its queues, at these positions),
//! `Drop` (handed away or dropped by retention; ids remembered), `Purge`
//! (endpoint deleted), `MarkLate`, `ResetStreak`, `Seen` (in the ids log:
//! ids remembered after their records went), `Checkpoint`
//! (counters and sequence numbers, written by each compaction).
//!
//! Rebuilt at start by replaying the ids log, then every record of the
//! main log in order, through
//! [`index::Index::apply`], the same function that applies them while
//! running: the queues and their order, parked work, retry state, the
//! idempotency window, the log lists by endpoint and tenant, the finished
//! set for retention, and the counters (the last checkpoint plus what
//! follows it).
//!
//! Crash consistency: a request is answered only after the frame holding
//! its records is written and `fdatasync`ed, and the index changes only
//! after that. A crash leaves at most one torn frame at the end of the
//! last segment, which was never answered and is cut off at open. A
//! failed sync exits the process (what is on disk is then unknown; the
//! restart reads it back). Compaction writes the live records of the
//! oldest segment again, with a checkpoint, syncs, and only then deletes
//! the segment, so a crash in between replays both copies and the later
//! one wins.

use std::path::Path;
use std::sync::{Arc, RwLock};

use herald_proto::v1 as pb;
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};

mod codec;
mod convert;
mod handed;
mod index;
mod migrate;
mod order;
mod read;
mod record;
mod segment;
mod write;

pub use read::ListPage;
pub use segment::LogError;
use write::WriteOp;

/// Segments of the ids log (`seen/`) start every this many bytes, so that
/// expired ids go in small steps.
const SEEN_SEGMENT_BYTES: u32 = 4 << 20;

/// How long an (endpoint, delivery id) pair is remembered.
pub const DEDUP_WINDOW_MS: i64 = 24 * 3600 * 1000;

/// The record format this build writes, and reads in handoff streams.
pub const RECORD_FORMAT: u32 = record::FORMAT;

/// Whether `id` has the form of a delivery id (`dlv_` + 24 hex digits),
/// the only form the store keeps.
pub fn is_delivery_id(id: &str) -> bool {
    record::IdKey::parse(id).is_some()
}

/// A queued delivery and its place in its endpoint's queue.
#[derive(Debug, Clone)]
pub struct Queued {
    /// Its id in this store.
    pub seq: u64,
    /// Its place in the endpoint's queue.
    pub position: u64,
    /// The delivery.
    pub delivery: pb::Delivery,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due (ms since the epoch; 0: now).
    pub next_attempt_at_ms: i64,
}

/// What an insert did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Inserted {
    /// Endpoints that got new work, with how many deliveries each.
    pub endpoints: Vec<(String, u64)>,
    /// How many were stored.
    pub stored: u32,
    /// How many were already held and dropped.
    pub duplicates: u32,
}

/// What an attempt means for its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    /// Delivered: the delivery is finished.
    Succeeded,
    /// Failed; the next attempt is due at this time.
    Retry {
        /// ms since the epoch.
        next_at_ms: i64,
    },
    /// Failed, and the delivery waits at the head until its endpoint is
    /// enabled again (410 Gone).
    Held,
    /// Failed, and the retry schedule is spent: the delivery is finished.
    FailedForGood,
}

/// Retention of the delivery log.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Finished deliveries are kept this long (ms).
    pub max_age_ms: i64,
    /// At most this many finished deliveries are kept (the oldest go first).
    pub max_finished: u64,
}

/// Handle to the store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    index: Arc<RwLock<index::Index>>,
    segments: segment::Segments,
    writer: mpsc::Sender<WriteOp>,
    /// Deliveries with a seq below this were stored before this start.
    first_seq_of_this_run: u64,
    /// See [`Store::limit_undelivered`].
    max_undelivered: Arc<std::sync::atomic::AtomicU64>,
}

impl Store {
    /// Opens (or creates) the store under `data_dir`, replays its log and
    /// starts its writer thread. Migrates a store of the earlier format
    /// (redb) first.
    pub fn open(data_dir: &Path) -> Result<Store> {
        Self::open_with_segment_bytes(data_dir, segment::SEGMENT_BYTES)
    }

    /// Like [`Store::open`], starting a new segment every `segment_bytes`
    /// (small ones make compaction observable in tests and benchmarks).
    pub fn open_with_segment_bytes(data_dir: &Path, segment_bytes: u32) -> Result<Store> {
        let dir = data_dir.join("store");
        std::fs::create_dir_all(&dir).map_err(LogError::Io)?;
        let lock = std::fs::File::create(dir.join("LOCK")).map_err(LogError::Io)?;
        lock.try_lock().map_err(|_| {
            LogError::Io(std::io::Error::other(format!(
                "{} is in use by another agent",
                dir.display()
            )))
        })?;
        let mut index = index::Index::new();
        let started = std::time::Instant::now();
        // Ids first: a delivery the main log still holds takes its id back.
        let mut seen_newest = std::collections::BTreeMap::new();
        let seen_log =
            segment::Log::open(&dir.join("seen"), SEEN_SEGMENT_BYTES, |loc, size, r| {
                if let record::Record::Seen { ids } = &r
                    && let Some(newest) = ids.iter().map(|(_, at)| *at).max()
                {
                    let n = seen_newest.entry(loc.seg).or_insert(newest);
                    *n = (*n).max(newest);
                }
                index.apply(loc, size, &r);
                Ok(())
            })?;
        let log = segment::Log::open(&dir, segment_bytes, |loc, size, r| {
            index.apply(loc, size, &r);
            Ok(())
        })?;
        let replayed = started.elapsed();
        let index = Arc::new(RwLock::new(index));
        let first_seq_of_this_run = index.read().unwrap_or_else(|p| p.into_inner()).next_seq;
        let segments = log.segments();
        let (writer, rx) = mpsc::channel(8192);
        let max_undelivered = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let w = write::Writer::new(
            log,
            seen_log,
            seen_newest,
            index.clone(),
            max_undelivered.clone(),
        );
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                let _lock = lock;
                let run = std::panic::AssertUnwindSafe(|| w.run(rx));
                if std::panic::catch_unwind(run).is_err() {
                    // Without its writer the agent can store nothing and
                    // would fail every call forever; a restart recovers
                    // everything committed.
                    tracing::error!("the store writer panicked; exiting");
                    std::process::exit(70);
                }
            })
            .map_err(LogError::Io)?;
        let store = Store {
            index,
            segments,
            writer,
            first_seq_of_this_run,
            max_undelivered,
        };
        {
            let ix = store.index();
            tracing::info!(
                deliveries = ix.entries.len(),
                queued = ix.queues.values().map(|q| q.len()).sum::<usize>(),
                replay_ms = replayed.as_millis() as u64,
                "store opened"
            );
        }
        migrate::from_redb_if_present(data_dir, &store)?;
        Ok(store)
    }

    /// Refuses new deliveries ([`Store::insert`]) once the store would hold
    /// more than `limit` undelivered ones (queued, retrying or parked), with
    /// [`Error::Full`]; 0 means no limit (the default). Handed-over work is
    /// always taken.
    pub fn limit_undelivered(&self, limit: u64) {
        self.max_undelivered
            .store(limit, std::sync::atomic::Ordering::Relaxed);
    }

    /// The segment files the log has now (for tests and benchmarks).
    pub fn segment_count(&self) -> usize {
        self.segments
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    fn index(&self) -> std::sync::RwLockReadGuard<'_, index::Index> {
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    async fn call<T>(&self, op: impl FnOnce(oneshot::Sender<Result<T>>) -> WriteOp) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.writer
            .send(op(tx))
            .await
            .map_err(|_| Error::WriterGone)?;
        rx.await.map_err(|_| Error::WriterGone)?
    }

    /// Stores deliveries durably; those already held for (endpoint,
    /// delivery id) are dropped. A delivery without an id gets the one
    /// derived from (endpoint, event id). Returns once the commit is on disk.
    pub async fn insert(&self, deliveries: Vec<pb::Delivery>) -> Result<Inserted> {
        self.insert_parking(0, deliveries, Vec::new()).await
    }

    /// Like [`Store::insert`], for work accepted at `epoch` (its stamp);
    /// deliveries in `parked` slots (still being handed over) are held
    /// aside until [`Store::unpark`].
    pub async fn insert_parking(
        &self,
        epoch: u64,
        deliveries: Vec<pb::Delivery>,
        parked: Vec<u32>,
    ) -> Result<Inserted> {
        self.call(|reply| WriteOp::Insert {
            epoch,
            deliveries,
            parked,
            reply,
        })
        .await
    }

    /// Stores deliveries handed over by another agent, with their state,
    /// stamp and attempts; those in `parked` slots wait for
    /// [`Store::unpark`], the others are queued at once. `late` marks them
    /// as a dead agent's leftovers, which go behind newer work (they are
    /// stamped at `epoch` as if accepted now).
    pub async fn insert_handed(
        &self,
        epoch: u64,
        items: Vec<pb::HandedDelivery>,
        late: bool,
        parked: Vec<u32>,
    ) -> Result<Inserted> {
        self.insert_handed_as(epoch, handed::from_wire(items), late, parked)
            .await
    }

    /// Like [`Store::insert_handed`], for a `HandoffStream` frame: records
    /// in the store's own encoding ([`Store::handoff_records`] wrote them).
    /// A frame that does not parse, or holds anything but queued
    /// deliveries of `slot` with their attempts, is refused with the
    /// reason (`InvalidArgument` on field `records`) and nothing stored.
    pub async fn insert_handed_records(
        &self,
        epoch: u64,
        slot: u32,
        records: &[u8],
        late: bool,
        parked: Vec<u32>,
    ) -> Result<Inserted> {
        let invalid = |reason: String| Error::InvalidArgument {
            field: "records".into(),
            reason,
        };
        let items = segment::parse_records(records)
            .and_then(handed::from_records)
            .map_err(invalid)?;
        for (i, h) in items.iter().enumerate() {
            let d = &h.delivery;
            if !is_delivery_id(&d.delivery_id) {
                return Err(invalid(format!("delivery {i}: malformed delivery id")));
            }
            if d.slot != slot
                || herald_shared::slot::slot_for(&d.endpoint_id, herald_shared::slot::SLOT_COUNT)
                    != slot
            {
                return Err(invalid(format!("delivery {i}: not of slot {slot}")));
            }
        }
        self.insert_handed_as(epoch, items, late, parked).await
    }

    async fn insert_handed_as(
        &self,
        epoch: u64,
        items: Vec<handed::Handed>,
        late: bool,
        parked: Vec<u32>,
    ) -> Result<Inserted> {
        self.call(|reply| WriteOp::InsertHanded {
            epoch,
            items,
            late,
            parked,
            reply,
        })
        .await
    }

    /// Queues the deliveries parked for `slot` in the slot's one order
    /// (`store/order.rs`); returns their endpoints.
    pub async fn unpark(&self, slot: u32) -> Result<Vec<String>> {
        self.call(|reply| WriteOp::Unpark(slot, reply)).await
    }

    /// Forgets deliveries the receiving agent has stored; returns how many.
    pub async fn drop_handed(&self, seqs: Vec<u64>) -> Result<u64> {
        self.call(|reply| WriteOp::DropHanded(seqs, reply)).await
    }

    /// Marks every delivery held from before this start as late backlog
    /// (the agent was given up for dead meanwhile); returns how many.
    pub async fn mark_leftovers_late(&self) -> Result<u64> {
        let up_to = self.first_seq_of_this_run.saturating_sub(1);
        self.call(|reply| WriteOp::MarkLate(up_to, reply)).await
    }

    /// Returns once every write sent before it is committed.
    pub async fn sync(&self) -> Result<()> {
        self.insert(Vec::new()).await.map(|_| ())
    }

    /// Records a failed attempt; returns once the retry state is on disk,
    /// with how many of the endpoint's deliveries in a row have now failed
    /// for good.
    pub async fn record_failure(
        &self,
        seq: u64,
        record: pb::Attempt,
        result: AttemptResult,
    ) -> Result<u32> {
        self.call(|tx| WriteOp::Attempt {
            seq,
            record: Box::new(record),
            result,
            reply: Some(tx),
        })
        .await
    }

    /// Records a successful attempt without waiting for the commit: if the
    /// agent dies first, the delivery is made again (at least once) and
    /// that attempt is recorded instead.
    pub async fn record_success(&self, seq: u64, record: pb::Attempt) {
        let _ = self
            .writer
            .send(WriteOp::Attempt {
                seq,
                record: Box::new(record),
                result: AttemptResult::Succeeded,
                reply: None,
            })
            .await;
    }

    /// Starts counting the endpoint's failed deliveries in a row over (it
    /// was disabled for them).
    pub async fn reset_failure_streak(&self, endpoint_id: &str) {
        let _ = self
            .writer
            .send(WriteOp::ResetStreak(endpoint_id.to_string()))
            .await;
    }

    /// Drops everything held for a deleted endpoint; returns how many
    /// queued deliveries went with it.
    pub async fn purge(&self, endpoint_id: &str) -> Result<u64> {
        self.call(|tx| WriteOp::Purge(endpoint_id.to_string(), tx))
            .await
    }

    /// Forgets idempotency records older than `cutoff_ms`.
    pub async fn prune_seen(&self, cutoff_ms: i64) {
        let _ = self.writer.send(WriteOp::PruneSeen(cutoff_ms)).await;
    }

    /// Applies log retention once, and compacts the oldest segment if
    /// little of it is live; returns how many finished deliveries were
    /// dropped (at most [`RETAIN_BATCH`]: call again while it returns that).
    pub async fn retain(&self, r: Retention) -> Result<u64> {
        self.call(|tx| WriteOp::Retain {
            cutoff_ms: herald_shared::time::now_ms() - r.max_age_ms,
            max_finished: r.max_finished,
            reply: tx,
        })
        .await
    }
}

impl Store {
    /// Imports deliveries of an old store (see `migrate.rs`).
    async fn import(&self, items: Vec<migrate::Imported>) -> Result<()> {
        self.call(|reply| WriteOp::Import(items, reply)).await
    }

    /// Sets the counters of an old store (see `migrate.rs`).
    async fn import_counters(&self, counters: Vec<(String, record::Counters)>) -> Result<()> {
        self.call(|reply| WriteOp::ImportCounters(counters, reply))
            .await
    }
}

/// Most finished deliveries one [`Store::retain`] call drops.
pub const RETAIN_BATCH: u64 = write::RETAIN_BATCH as u64;

#[cfg(test)]
mod tests;
