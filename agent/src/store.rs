//! The agent's durable store (redb): the per-endpoint queues and the
//! idempotency records.
//!
//! Persisted: every accepted delivery until it succeeds, finally fails or
//! its endpoint is deleted; the retry state of those that failed; and
//! (endpoint, event id) pairs for 24 h. Rebuilt at start:
//! nothing else; workers re-read their queues from here.
//!
//! One writer thread owns all writes and commits them in groups: it takes
//! whatever requests have queued up while the previous commit was syncing
//! and makes them durable with a single fsync, so throughput grows with
//! load instead of being capped at one fsync per request.

use std::path::Path;
use std::sync::Arc;

use herald_proto::v1 as pb;
use prost::Message as _;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};

/// (endpoint id, sequence) → encoded [`pb::Delivery`]. The sequence is
/// global and grows with each insert, so key order is arrival order.
const QUEUE: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("queue");
/// (endpoint id, event id) → when it was stored (ms). Drops re-sent events.
const SEEN: TableDefinition<(&str, &str), i64> = TableDefinition::new("seen");
/// (endpoint id, sequence) → (failed attempts, next attempt time in ms), for
/// queued items that have failed at least once; so a restarted agent
/// continues the retry schedule instead of starting it over.
const RETRIES: TableDefinition<(&str, u64), (u32, i64)> = TableDefinition::new("retries");
/// Counters: "next_seq".
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// How long an (endpoint, event id) pair is remembered.
pub const DEDUP_WINDOW_MS: i64 = 24 * 3600 * 1000;
/// Most requests folded into one commit.
const MAX_GROUP: usize = 512;

/// A queued delivery and its place in its endpoint's queue.
#[derive(Debug, Clone)]
pub struct Queued {
    /// Position in the queue.
    pub seq: u64,
    /// The delivery.
    pub delivery: pb::Delivery,
    /// Attempts that failed so far.
    pub failed: u32,
    /// When the next attempt is due (ms since the epoch; 0: now).
    pub next_attempt_at_ms: i64,
}

/// What an insert did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Inserted {
    /// Endpoints that got new work.
    pub endpoints: Vec<String>,
    /// How many were stored.
    pub stored: u32,
    /// How many were already held and dropped.
    pub duplicates: u32,
}

enum WriteOp {
    Insert(Vec<pb::Delivery>, oneshot::Sender<Result<Inserted>>),
    Remove(String, u64),
    RecordFailure(String, u64, u32, i64, oneshot::Sender<Result<()>>),
    Purge(String, oneshot::Sender<Result<u64>>),
    Prune(i64),
}

/// Handle to the store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    writer: mpsc::Sender<WriteOp>,
}

impl Store {
    /// Opens (or creates) the store in `dir` and starts its writer thread.
    pub fn open(dir: &Path) -> Result<Store> {
        let db = Database::create(dir.join("herald-agent.redb")).map_err(redb::Error::from)?;
        let tx = db.begin_write().map_err(redb::Error::from)?;
        {
            tx.open_table(QUEUE).map_err(redb::Error::from)?;
            tx.open_table(SEEN).map_err(redb::Error::from)?;
            tx.open_table(RETRIES).map_err(redb::Error::from)?;
            tx.open_table(META).map_err(redb::Error::from)?;
        }
        tx.commit().map_err(redb::Error::from)?;
        let db = Arc::new(db);
        let (writer, rx) = mpsc::channel(8192);
        let wdb = db.clone();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(&wdb, rx))
            .map_err(|e| Error::Store(redb::Error::Io(e)))?;
        Ok(Store { db, writer })
    }

    /// Stores deliveries durably; those already held for (endpoint, event
    /// id) are dropped. Returns once the commit is on disk.
    pub async fn insert(&self, deliveries: Vec<pb::Delivery>) -> Result<Inserted> {
        let (tx, rx) = oneshot::channel();
        self.writer
            .send(WriteOp::Insert(deliveries, tx))
            .await
            .map_err(|_| Error::WriterGone)?;
        rx.await.map_err(|_| Error::WriterGone)?
    }

    /// Removes a delivered item. Not awaited: if the agent dies before the
    /// commit, the item is delivered again (at least once).
    pub async fn remove(&self, endpoint_id: &str, seq: u64) {
        let _ = self
            .writer
            .send(WriteOp::Remove(endpoint_id.to_string(), seq))
            .await;
    }

    /// Durably records that an item failed `failed` times and is due again
    /// at `next_at_ms`.
    pub async fn record_failure(
        &self,
        endpoint_id: &str,
        seq: u64,
        failed: u32,
        next_at_ms: i64,
    ) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.writer
            .send(WriteOp::RecordFailure(
                endpoint_id.to_string(),
                seq,
                failed,
                next_at_ms,
                tx,
            ))
            .await
            .map_err(|_| Error::WriterGone)?;
        rx.await.map_err(|_| Error::WriterGone)?
    }

    /// Drops an endpoint's whole queue (the endpoint was deleted).
    pub async fn purge(&self, endpoint_id: &str) -> Result<u64> {
        let (tx, rx) = oneshot::channel();
        self.writer
            .send(WriteOp::Purge(endpoint_id.to_string(), tx))
            .await
            .map_err(|_| Error::WriterGone)?;
        rx.await.map_err(|_| Error::WriterGone)?
    }

    /// Forgets idempotency records older than `cutoff_ms`.
    pub async fn prune_seen(&self, cutoff_ms: i64) {
        let _ = self.writer.send(WriteOp::Prune(cutoff_ms)).await;
    }

    /// Up to `limit` queued items of an endpoint with a sequence above `after`.
    pub fn pending(&self, endpoint_id: &str, after: u64, limit: usize) -> Result<Vec<Queued>> {
        let tx = self.db.begin_read().map_err(redb::Error::from)?;
        let t = tx.open_table(QUEUE).map_err(redb::Error::from)?;
        let retries = tx.open_table(RETRIES).map_err(redb::Error::from)?;
        let mut out = Vec::new();
        if after == u64::MAX {
            return Ok(out);
        }
        for row in t
            .range((endpoint_id, after + 1)..=(endpoint_id, u64::MAX))
            .map_err(redb::Error::from)?
            .take(limit)
        {
            let (k, v) = row.map_err(redb::Error::from)?;
            let seq = k.value().1;
            let (failed, next_attempt_at_ms) = retries
                .get((endpoint_id, seq))
                .map_err(redb::Error::from)?
                .map(|g| g.value())
                .unwrap_or((0, 0));
            match pb::Delivery::decode(v.value()) {
                Ok(delivery) => out.push(Queued {
                    seq,
                    delivery,
                    failed,
                    next_attempt_at_ms,
                }),
                Err(e) => {
                    tracing::error!(endpoint = endpoint_id, seq, error = %e, "undecodable queue item skipped")
                }
            }
        }
        Ok(out)
    }

    /// Every endpoint with at least one queued item.
    pub fn endpoints_with_pending(&self) -> Result<Vec<String>> {
        let tx = self.db.begin_read().map_err(redb::Error::from)?;
        let t = tx.open_table(QUEUE).map_err(redb::Error::from)?;
        let mut out: Vec<String> = Vec::new();
        let mut from = String::new();
        // Jump from endpoint to endpoint instead of reading every item.
        loop {
            let next = t
                .range((from.as_str(), 0)..)
                .map_err(redb::Error::from)?
                .next()
                .transpose()
                .map_err(redb::Error::from)?;
            let Some((k, _)) = next else { break };
            let ep = k.value().0.to_string();
            from = format!("{ep}\0");
            out.push(ep);
        }
        Ok(out)
    }

    /// Number of queued items over all endpoints.
    pub fn queue_len(&self) -> Result<u64> {
        let tx = self.db.begin_read().map_err(redb::Error::from)?;
        let t = tx.open_table(QUEUE).map_err(redb::Error::from)?;
        Ok(t.len().map_err(redb::Error::from)?)
    }
}

fn writer_loop(db: &Database, mut rx: mpsc::Receiver<WriteOp>) {
    while let Some(first) = rx.blocking_recv() {
        let mut ops = vec![first];
        while ops.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let result = commit_group(db, &mut ops);
        for op in ops {
            match (op, &result) {
                (WriteOp::Insert(_, reply), Ok(results)) => {
                    let _ = reply.send(Ok(results.take_insert()));
                }
                (WriteOp::Purge(_, reply), Ok(results)) => {
                    let _ = reply.send(Ok(results.take_purge()));
                }
                (WriteOp::RecordFailure(.., reply), Ok(_)) => {
                    let _ = reply.send(Ok(()));
                }
                (WriteOp::RecordFailure(.., reply), Err(e)) => {
                    let _ = reply.send(Err(Error::Store(clone_err(e))));
                }
                (WriteOp::Insert(_, reply), Err(e)) => {
                    let _ = reply.send(Err(Error::Store(clone_err(e))));
                }
                (WriteOp::Purge(_, reply), Err(e)) => {
                    let _ = reply.send(Err(Error::Store(clone_err(e))));
                }
                _ => {}
            }
        }
        if let Err(e) = result {
            tracing::error!(error = %e, "store commit failed");
        }
    }
}

fn clone_err(e: &redb::Error) -> redb::Error {
    redb::Error::Io(std::io::Error::other(e.to_string()))
}

/// Per-op results of one group, handed out in op order.
struct GroupResults {
    inserts: std::cell::RefCell<std::collections::VecDeque<Inserted>>,
    purges: std::cell::RefCell<std::collections::VecDeque<u64>>,
}

impl GroupResults {
    fn take_insert(&self) -> Inserted {
        self.inserts.borrow_mut().pop_front().unwrap_or_default()
    }
    fn take_purge(&self) -> u64 {
        self.purges.borrow_mut().pop_front().unwrap_or_default()
    }
}

fn commit_group(db: &Database, ops: &mut [WriteOp]) -> Result<GroupResults, redb::Error> {
    let mut tx = db.begin_write()?;
    tx.set_durability(Durability::Immediate)
        .map_err(|e| redb::Error::Io(std::io::Error::other(e.to_string())))?;
    let mut inserts = std::collections::VecDeque::new();
    let mut purges = std::collections::VecDeque::new();
    {
        let mut queue = tx.open_table(QUEUE)?;
        let mut seen = tx.open_table(SEEN)?;
        let mut retries = tx.open_table(RETRIES)?;
        let mut meta = tx.open_table(META)?;
        let mut next_seq = meta.get("next_seq")?.map(|v| v.value()).unwrap_or(1);
        let now = herald_shared::time::now_ms();
        for op in ops.iter_mut() {
            match op {
                WriteOp::Insert(deliveries, _) => {
                    let mut res = Inserted::default();
                    for d in deliveries.drain(..) {
                        let key = (d.endpoint_id.as_str(), d.event_id.as_str());
                        if seen.get(key)?.is_some() {
                            res.duplicates += 1;
                            continue;
                        }
                        seen.insert(key, now)?;
                        queue.insert(
                            (d.endpoint_id.as_str(), next_seq),
                            d.encode_to_vec().as_slice(),
                        )?;
                        next_seq += 1;
                        res.stored += 1;
                        if !res.endpoints.contains(&d.endpoint_id) {
                            res.endpoints.push(d.endpoint_id);
                        }
                    }
                    inserts.push_back(res);
                }
                WriteOp::Remove(ep, seq) => {
                    queue.remove((ep.as_str(), *seq))?;
                    retries.remove((ep.as_str(), *seq))?;
                }
                WriteOp::RecordFailure(ep, seq, failed, next_at, _) => {
                    retries.insert((ep.as_str(), *seq), (*failed, *next_at))?;
                }
                WriteOp::Purge(ep, _) => {
                    let mut n = 0u64;
                    queue.retain_in((ep.as_str(), 0)..=(ep.as_str(), u64::MAX), |_, _| {
                        n += 1;
                        false
                    })?;
                    retries.retain_in((ep.as_str(), 0)..=(ep.as_str(), u64::MAX), |_, _| false)?;
                    purges.push_back(n);
                }
                WriteOp::Prune(cutoff) => {
                    let cutoff = *cutoff;
                    seen.retain(|_, at| at >= cutoff)?;
                }
            }
        }
        meta.insert("next_seq", next_seq)?;
    }
    tx.commit()?;
    Ok(GroupResults {
        inserts: inserts.into(),
        purges: purges.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(ep: &str, event: &str) -> pb::Delivery {
        pb::Delivery {
            endpoint_id: ep.into(),
            event_id: event.into(),
            payload_json: "{}".into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn insert_dedup_order_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            let r = s
                .insert(vec![
                    delivery("a", "e1"),
                    delivery("b", "e1"),
                    delivery("a", "e2"),
                ])
                .await
                .unwrap();
            assert_eq!((r.stored, r.duplicates), (3, 0));
            let r = s
                .insert(vec![delivery("a", "e1"), delivery("a", "e3")])
                .await
                .unwrap();
            assert_eq!((r.stored, r.duplicates), (1, 1));
            let a = s.pending("a", 0, 10).unwrap();
            let events: Vec<_> = a.iter().map(|q| q.delivery.event_id.as_str()).collect();
            assert_eq!(events, ["e1", "e2", "e3"]);
            s.record_failure("a", a[1].seq, 2, 1234).await.unwrap();
            s.remove("a", a[0].seq).await;
            // A later insert is ordered behind the removal by the single writer.
            s.insert(vec![]).await.unwrap();
        }
        // The writer thread lets go of the file once the last handle drops.
        let s = loop {
            match Store::open(dir.path()) {
                Ok(s) => break s,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        };
        let a = s.pending("a", 0, 10).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].delivery.event_id, "e2");
        assert_eq!(
            (a[0].failed, a[0].next_attempt_at_ms),
            (2, 1234),
            "retry state survives"
        );
        assert_eq!((a[1].failed, a[1].next_attempt_at_ms), (0, 0));
        assert_eq!(s.endpoints_with_pending().unwrap(), ["a", "b"]);
        assert_eq!(s.purge("a").await.unwrap(), 2);
        assert_eq!(s.endpoints_with_pending().unwrap(), ["b"]);
        assert_eq!(s.queue_len().unwrap(), 1);
        // The idempotency record outlives delivery, until pruned.
        assert_eq!(
            s.insert(vec![delivery("a", "e2")])
                .await
                .unwrap()
                .duplicates,
            1
        );
        s.prune_seen(i64::MAX).await;
        assert_eq!(s.insert(vec![delivery("a", "e2")]).await.unwrap().stored, 1);
    }
}
