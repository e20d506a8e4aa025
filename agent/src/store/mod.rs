//! The agent's durable store (redb): per-endpoint queues, retry state, the
//! delivery and attempt log, endpoint counters and idempotency records.
//!
//! Persisted: every accepted delivery, its state and every attempt, until
//! retention drops it after it finished (never while it is queued); the
//! counters of each endpoint; (endpoint, delivery id) pairs for 24 h.
//! Workers re-read their queues from here after a restart.
//!
//! All writes go through one writer thread ([`write`]) that commits them in
//! groups; reads ([`read`]) use their own read transactions and never wait
//! for it.

use std::path::Path;
use std::sync::Arc;

use herald_proto::v1 as pb;
use redb::{Database, ReadableDatabase};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};

mod feed;
mod read;
mod tables;
mod write;

pub use feed::{Subscription, Taken};
pub use read::ListPage;
use write::WriteOp;

/// How long an (endpoint, delivery id) pair is remembered.
pub const DEDUP_WINDOW_MS: i64 = 24 * 3600 * 1000;

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

/// Default page cache of the store.
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

/// Handle to the store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    writer: mpsc::Sender<WriteOp>,
    feeds: Arc<feed::Feeds>,
    /// Deliveries with a seq below this were stored before this start.
    first_seq_of_this_run: u64,
}

impl Store {
    /// Opens (or creates) the store in `dir` with the default page cache.
    pub fn open(dir: &Path) -> Result<Store> {
        Self::open_with_cache(dir, DEFAULT_CACHE_BYTES)
    }

    /// Opens (or creates) the store in `dir`, caching at most
    /// `cache_bytes` of pages in memory, and starts its writer thread.
    pub fn open_with_cache(dir: &Path, cache_bytes: usize) -> Result<Store> {
        // redb's own default is a 1 GiB cache, which an agent with a large
        // backlog fills: its RSS would grow with the store instead of
        // staying flat.
        let db = redb::Builder::new()
            .set_cache_size(cache_bytes)
            .create(dir.join("herald-agent.redb"))
            .map_err(redb::Error::from)?;
        let tx = db.begin_write().map_err(redb::Error::from)?;
        {
            use tables::*;
            // Create every table, so readers never meet a missing one.
            tx.open_table(DELIVERIES).map_err(redb::Error::from)?;
            tx.open_table(IDS).map_err(redb::Error::from)?;
            tx.open_table(STATE).map_err(redb::Error::from)?;
            tx.open_table(QUEUE).map_err(redb::Error::from)?;
            tx.open_table(PARKED).map_err(redb::Error::from)?;
            tx.open_table(BY_ENDPOINT).map_err(redb::Error::from)?;
            tx.open_table(BY_TENANT).map_err(redb::Error::from)?;
            tx.open_table(ATTEMPTS).map_err(redb::Error::from)?;
            tx.open_table(DONE).map_err(redb::Error::from)?;
            tx.open_table(STATS).map_err(redb::Error::from)?;
            tx.open_table(META).map_err(redb::Error::from)?;
        }
        migrate_id_index(&tx).map_err(Error::Store)?;
        tx.commit().map_err(redb::Error::from)?;
        let first_seq_of_this_run = {
            use redb::ReadableDatabase as _;
            let rtx = db.begin_read().map_err(redb::Error::from)?;
            let meta = rtx.open_table(tables::META).map_err(redb::Error::from)?;
            meta.get("next_seq")
                .map_err(redb::Error::from)?
                .map(|v| v.value())
                .unwrap_or(1)
        };
        let db = Arc::new(db);
        let (writer, rx) = mpsc::channel(8192);
        let wdb = db.clone();
        let feeds = Arc::new(feed::Feeds::default());
        let wfeeds = feeds.clone();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                let run = std::panic::AssertUnwindSafe(|| write::writer_loop(&wdb, rx, &wfeeds));
                if std::panic::catch_unwind(run).is_err() {
                    // Without its writer the agent can store nothing and
                    // would fail every call forever; a restart recovers
                    // everything committed.
                    tracing::error!("the store writer panicked; exiting");
                    std::process::exit(70);
                }
            })
            .map_err(|e| Error::Store(redb::Error::Io(e)))?;
        Ok(Store {
            db,
            writer,
            feeds,
            first_seq_of_this_run,
        })
    }

    /// Subscribes to the deliveries queued for `endpoint_id` from now on
    /// (see `store/feed.rs`): one subscription per endpoint worker.
    pub fn subscribe(&self, endpoint_id: &str) -> Subscription {
        Subscription::new(self.feeds.clone(), endpoint_id)
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
        self.insert_parking(deliveries, Vec::new()).await
    }

    /// Like [`Store::insert`]; deliveries in `parked` slots (still being
    /// handed over) are held aside until [`Store::unpark`].
    pub async fn insert_parking(
        &self,
        deliveries: Vec<pb::Delivery>,
        parked: Vec<u32>,
    ) -> Result<Inserted> {
        self.call(|reply| WriteOp::Insert {
            deliveries,
            parked,
            reply,
        })
        .await
    }

    /// Queues deliveries handed over by another agent, with their state and
    /// attempts; `late` marks them as a dead agent's leftovers.
    pub async fn insert_handed(
        &self,
        items: Vec<pb::HandedDelivery>,
        late: bool,
    ) -> Result<Inserted> {
        self.call(|reply| WriteOp::InsertHanded { items, late, reply })
            .await
    }

    /// Queues the deliveries parked for `slot`; returns their endpoints.
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

    /// Records an attempt. For a failure it returns once the retry state is
    /// on disk, with how many of the endpoint's deliveries in a row have now
    /// failed for good.
    pub async fn record_failure(
        &self,
        endpoint_id: &str,
        seq: u64,
        record: pb::Attempt,
        result: AttemptResult,
    ) -> Result<u32> {
        self.call(|tx| WriteOp::Attempt {
            endpoint_id: endpoint_id.to_string(),
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
    pub async fn record_success(&self, endpoint_id: &str, seq: u64, record: pb::Attempt) {
        let _ = self
            .writer
            .send(WriteOp::Attempt {
                endpoint_id: endpoint_id.to_string(),
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

    /// Applies log retention once; returns how many finished deliveries
    /// were dropped (at most a batch: call again while it returns a batch).
    pub async fn retain(&self, r: Retention) -> Result<u64> {
        self.call(|tx| WriteOp::Retain {
            cutoff_ms: herald_shared::time::now_ms() - r.max_age_ms,
            max_finished: r.max_finished,
            reply: tx,
        })
        .await
    }

    fn read(&self) -> Result<redb::ReadTransaction> {
        Ok(self.db.begin_read().map_err(redb::Error::from)?)
    }
}

/// Folds the id and idempotency tables of stores written before they were
/// merged into [`tables::IDS`], and drops them.
fn migrate_id_index(tx: &redb::WriteTransaction) -> Result<(), redb::Error> {
    use redb::{ReadableTable, TableHandle};
    let names: Vec<String> = tx.list_tables()?.map(|t| t.name().to_string()).collect();
    let has = |name: &str| names.iter().any(|n| n == name);
    let (old_ids, old_seen) = (has(tables::OLD_IDS.name()), has(tables::OLD_SEEN.name()));
    if !old_ids && !old_seen {
        return Ok(());
    }
    let mut ids = tx.open_table(tables::IDS)?;
    let now = herald_shared::time::now_ms();
    if old_ids {
        let old = tx.open_table(tables::OLD_IDS)?;
        for row in old.iter()? {
            let (id, seq) = row?;
            ids.insert(id.value(), (seq.value(), now))?;
        }
    }
    if old_seen {
        let old = tx.open_table(tables::OLD_SEEN)?;
        for row in old.iter()? {
            let (key, at) = row?;
            let id = key.value().1;
            if ids.get(id)?.is_none() {
                ids.insert(id, (0, at.value()))?;
            }
        }
    }
    drop(ids);
    tx.delete_table(tables::OLD_IDS)?;
    tx.delete_table(tables::OLD_SEEN)?;
    Ok(())
}

#[cfg(test)]
mod tests;
