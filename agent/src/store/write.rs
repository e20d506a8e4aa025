//! The writer thread: applies every change to the store, in groups.
//!
//! It takes whatever requests have queued up while the previous commit was
//! syncing and makes them durable with a single fsync, so throughput grows
//! with load instead of being capped at one fsync per request. Being the
//! only writer, it can read-modify-write counters without races.

use herald_proto::v1 as pb;
use prost::Message as _;
use redb::{Database, Durability, ReadableTable, Table, WriteTransaction};
use tokio::sync::{mpsc, oneshot};

use super::feed::Feeds;
use super::tables::*;
use super::{AttemptResult, Inserted, Queued};
use crate::error::{Error, Result};

/// Most requests folded into one commit.
const MAX_GROUP: usize = 512;
/// Most finished deliveries one retention pass deletes (bounds a commit).
const RETAIN_BATCH: usize = 5_000;

/// One request to the writer.
pub(super) enum WriteOp {
    /// New deliveries; those in `parked` slots are held aside.
    Insert {
        deliveries: Vec<pb::Delivery>,
        parked: Vec<u32>,
        reply: oneshot::Sender<Result<Inserted>>,
    },
    /// Deliveries another agent handed over, queued as they come.
    InsertHanded {
        items: Vec<pb::HandedDelivery>,
        late: bool,
        reply: oneshot::Sender<Result<Inserted>>,
    },
    /// Queues a slot's parked deliveries; replies with their endpoints.
    Unpark(u32, oneshot::Sender<Result<Vec<String>>>),
    /// Forgets deliveries that were handed to another agent.
    DropHanded(Vec<u64>, oneshot::Sender<Result<u64>>),
    /// Marks queued and parked deliveries up to a seq as late backlog.
    MarkLate(u64, oneshot::Sender<Result<u64>>),
    Attempt {
        endpoint_id: String,
        seq: u64,
        record: Box<pb::Attempt>,
        result: AttemptResult,
        /// Told the endpoint's deliveries failed for good in a row.
        reply: Option<oneshot::Sender<Result<u32>>>,
    },
    Purge(String, oneshot::Sender<Result<u64>>),
    ResetStreak(String),
    PruneSeen(i64),
    Retain {
        cutoff_ms: i64,
        max_finished: u64,
        reply: oneshot::Sender<Result<u64>>,
    },
}

/// A reply to send once the group is committed.
enum Reply {
    Inserted(oneshot::Sender<Result<Inserted>>, Inserted),
    Count(oneshot::Sender<Result<u64>>, u64),
    Streak(oneshot::Sender<Result<u32>>, u32),
    Endpoints(oneshot::Sender<Result<Vec<String>>>, Vec<String>),
}

impl Reply {
    fn send(self, err: Option<&redb::Error>) {
        let e = || {
            Error::Store(redb::Error::Io(std::io::Error::other(
                err.unwrap().to_string(),
            )))
        };
        match (self, err.is_some()) {
            (Reply::Inserted(tx, v), false) => drop(tx.send(Ok(v))),
            (Reply::Inserted(tx, _), true) => drop(tx.send(Err(e()))),
            (Reply::Count(tx, v), false) => drop(tx.send(Ok(v))),
            (Reply::Count(tx, _), true) => drop(tx.send(Err(e()))),
            (Reply::Streak(tx, v), false) => drop(tx.send(Ok(v))),
            (Reply::Streak(tx, _), true) => drop(tx.send(Err(e()))),
            (Reply::Endpoints(tx, v), false) => drop(tx.send(Ok(v))),
            (Reply::Endpoints(tx, _), true) => drop(tx.send(Err(e()))),
        }
    }
}

pub(super) fn writer_loop(db: &Database, mut rx: mpsc::Receiver<WriteOp>, feeds: &Feeds) {
    while let Some(first) = rx.blocking_recv() {
        let mut ops = vec![first];
        while ops.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let mut replies = Vec::with_capacity(ops.len());
        let mut fed = Fed::default();
        let m = crate::metrics::get();
        m.store_commit_writes.observe(ops.len() as f64);
        let started = std::time::Instant::now();
        let result = commit_group(db, ops, &mut replies, &mut fed);
        m.store_commit_seconds
            .observe(started.elapsed().as_secs_f64());
        match &result {
            Ok(()) if !fed.invalidate => feeds.push(fed.queued),
            Ok(()) => feeds.invalidate_all(),
            Err(e) => {
                tracing::error!(error = %e, "store commit failed");
                // Positions handed out in the failed group will be reused.
                feeds.invalidate_all();
            }
        }
        // Fed before the replies, so a worker woken by one finds its items.
        for r in replies {
            r.send(result.as_ref().err());
        }
    }
}

/// What a commit group means for the workers' feeds.
#[derive(Default)]
struct Fed {
    /// Deliveries it queued, in queue order.
    queued: Vec<Queued>,
    /// It changed queues in other ways: every feed must re-read the store.
    invalidate: bool,
}

fn commit_group(
    db: &Database,
    ops: Vec<WriteOp>,
    replies: &mut Vec<Reply>,
    fed: &mut Fed,
) -> Result<(), redb::Error> {
    let mut tx = db.begin_write()?;
    tx.set_durability(Durability::Immediate)
        .map_err(|e| redb::Error::Io(std::io::Error::other(e.to_string())))?;
    let now = herald_shared::time::now_ms();
    {
        let mut t = Tables::open(&tx)?;
        for op in ops {
            t.apply(op, now, replies)?;
        }
        t.save_counters()?;
        *fed = std::mem::take(&mut t.fed);
    }
    tx.commit()?;
    Ok(())
}

/// Every table, opened once per commit group, and the counters kept in
/// `META`, read once and written back once.
struct Tables<'t> {
    deliveries: Table<'t, u64, &'static [u8]>,
    ids: Table<'t, &'static str, (u64, i64)>,
    state: Table<'t, u64, StateTuple>,
    queue: Table<'t, (&'static str, u64), u64>,
    parked: Table<'t, (u32, u64), ()>,
    by_endpoint: Table<'t, (&'static str, i64, &'static str), (u64, &'static str, &'static str)>,
    by_tenant: Table<'t, (&'static str, i64, &'static str), (u64, &'static str, &'static str)>,
    attempts: Table<'t, (u64, u32), &'static [u8]>,
    done: Table<'t, (i64, u64), ()>,
    stats: Table<'t, &'static str, &'static [u8]>,
    meta: Table<'t, &'static str, u64>,
    /// Next delivery seq (from 1).
    next_seq: u64,
    /// Next queue position (from 1).
    next_position: u64,
    /// Finished deliveries held (for retention by count).
    finished: u64,
    fed: Fed,
}

impl<'t> Tables<'t> {
    fn open(tx: &'t WriteTransaction) -> Result<Self, redb::Error> {
        let meta = tx.open_table(META)?;
        let counter = |k: &str| -> Result<u64, redb::Error> {
            Ok(meta.get(k)?.map(|v| v.value()).unwrap_or(0))
        };
        let (next_seq, next_position, finished) = (
            counter("next_seq")?.max(1),
            counter("next_position")?.max(1),
            counter("finished")?,
        );
        Ok(Tables {
            deliveries: tx.open_table(DELIVERIES)?,
            ids: tx.open_table(IDS)?,
            state: tx.open_table(STATE)?,
            queue: tx.open_table(QUEUE)?,
            parked: tx.open_table(PARKED)?,
            by_endpoint: tx.open_table(BY_ENDPOINT)?,
            by_tenant: tx.open_table(BY_TENANT)?,
            attempts: tx.open_table(ATTEMPTS)?,
            done: tx.open_table(DONE)?,
            stats: tx.open_table(STATS)?,
            meta,
            next_seq,
            next_position,
            finished,
            fed: Fed::default(),
        })
    }

    fn save_counters(&mut self) -> Result<(), redb::Error> {
        self.meta.insert("next_seq", self.next_seq)?;
        self.meta.insert("next_position", self.next_position)?;
        self.meta.insert("finished", self.finished)?;
        Ok(())
    }

    fn take_position(&mut self) -> u64 {
        let p = self.next_position;
        self.next_position += 1;
        p
    }

    fn apply(
        &mut self,
        op: WriteOp,
        now: i64,
        replies: &mut Vec<Reply>,
    ) -> Result<(), redb::Error> {
        match op {
            WriteOp::Insert {
                deliveries,
                parked,
                reply,
            } => {
                let r = self.insert(deliveries, &parked, now)?;
                replies.push(Reply::Inserted(reply, r));
            }
            WriteOp::InsertHanded { items, late, reply } => {
                let r = self.insert_handed(items, late, now)?;
                replies.push(Reply::Inserted(reply, r));
            }
            WriteOp::Unpark(slot, reply) => {
                let eps = self.unpark(slot)?;
                replies.push(Reply::Endpoints(reply, eps));
            }
            WriteOp::MarkLate(up_to, reply) => {
                self.fed.invalidate = true;
                let n = self.mark_late(up_to)?;
                replies.push(Reply::Count(reply, n));
            }
            WriteOp::DropHanded(seqs, reply) => {
                self.fed.invalidate = true;
                let mut n = 0;
                for seq in seqs {
                    if let Some(ep) = self.drop_delivery(seq, true)? {
                        self.update_stats(&ep, |s| {
                            s.queue_depth = s.queue_depth.saturating_sub(1)
                        })?;
                        n += 1;
                    }
                }
                replies.push(Reply::Count(reply, n));
            }
            WriteOp::Attempt {
                endpoint_id,
                seq,
                record,
                result,
                reply,
            } => {
                let streak = self.attempt(&endpoint_id, seq, &record, result, now)?;
                if let Some(reply) = reply {
                    replies.push(Reply::Streak(reply, streak));
                }
            }
            WriteOp::Purge(ep, reply) => {
                self.fed.invalidate = true;
                let n = self.purge(&ep)?;
                replies.push(Reply::Count(reply, n));
            }
            WriteOp::ResetStreak(ep) => {
                self.update_stats(&ep, |s| s.deliveries_failed_in_a_row = 0)?;
            }
            WriteOp::PruneSeen(cutoff) => {
                // Held deliveries keep their entry whatever its age.
                self.ids.retain(|_, (seq, at)| seq != 0 || at >= cutoff)?;
            }
            WriteOp::Retain {
                cutoff_ms,
                max_finished,
                reply,
            } => {
                let n = self.retain(cutoff_ms, max_finished)?;
                replies.push(Reply::Count(reply, n));
            }
        }
        Ok(())
    }

    fn update_stats(
        &mut self,
        endpoint_id: &str,
        f: impl FnOnce(&mut pb::EndpointStats),
    ) -> Result<pb::EndpointStats, redb::Error> {
        let mut s = self
            .stats
            .get(endpoint_id)?
            .and_then(|v| pb::EndpointStats::decode(v.value()).ok())
            .unwrap_or_else(|| pb::EndpointStats {
                endpoint_id: endpoint_id.to_string(),
                ..Default::default()
            });
        f(&mut s);
        self.stats
            .insert(endpoint_id, s.encode_to_vec().as_slice())?;
        Ok(s)
    }

    /// Stores one delivery with its state, indexes and idempotency record;
    /// queues it unless `park` (then it waits in `PARKED`). Returns its seq
    /// and queue position (0 when parked), or None if a delivery with its id is already held, or (for new work,
    /// `check_seen`) was accepted within the idempotency window. Handed-over
    /// deliveries skip that check: one that left this agent earlier and
    /// comes back must be taken again.
    fn store_delivery(
        &mut self,
        d: &pb::Delivery,
        mut st: State,
        park: bool,
        check_seen: bool,
        now: i64,
    ) -> Result<Option<(u64, u64)>, redb::Error> {
        let id = d.delivery_id.as_str();
        if let Some((held, _)) = self.ids.get(id)?.map(|v| v.value())
            && (held != 0 || check_seen)
        {
            return Ok(None);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.ids.insert(id, (seq, now))?;
        if park {
            self.parked.insert((d.slot, seq), ())?;
            st.position = 0;
        } else {
            st.position = self.take_position();
            self.queue
                .insert((d.endpoint_id.as_str(), st.position), seq)?;
        }
        self.deliveries.insert(seq, d.encode_to_vec().as_slice())?;
        self.state.insert(seq, st.to_tuple())?;
        let value = (seq, d.event_type.as_str(), resource_id(d));
        self.by_endpoint
            .insert((d.endpoint_id.as_str(), d.published_at_ms, id), value)?;
        self.by_tenant
            .insert((d.tenant_id.as_str(), d.published_at_ms, id), value)?;
        Ok(Some((seq, st.position)))
    }

    fn insert(
        &mut self,
        deliveries: Vec<pb::Delivery>,
        parked: &[u32],
        now: i64,
    ) -> Result<Inserted, redb::Error> {
        let mut res = Inserted::default();
        for mut d in deliveries {
            if d.delivery_id.is_empty() {
                d.delivery_id = herald_shared::ids::delivery_id_for(&d.endpoint_id, &d.event_id);
            }
            if d.published_at_ms == 0 {
                d.published_at_ms = now;
            }
            let park = parked.contains(&d.slot);
            match self.store_delivery(&d, State::pending(), park, true, now)? {
                Some((seq, position)) => {
                    note_endpoint(&mut res, &d.endpoint_id);
                    if !park {
                        self.fed.queued.push(Queued {
                            seq,
                            position,
                            delivery: d,
                            attempts: 0,
                            next_attempt_at_ms: 0,
                        });
                    }
                }
                None => res.duplicates += 1,
            }
        }
        for (ep, n) in &res.endpoints {
            self.update_stats(ep, |s| {
                s.events += n;
                s.queue_depth += n;
                s.last_event_at_ms = now;
            })?;
        }
        Ok(res)
    }

    /// Queues handed-over deliveries with their state and attempts. The
    /// sender counted them as events already; here they only add to the
    /// queue.
    fn insert_handed(
        &mut self,
        items: Vec<pb::HandedDelivery>,
        late: bool,
        now: i64,
    ) -> Result<Inserted, redb::Error> {
        let mut res = Inserted::default();
        for item in items {
            let Some(mut d) = item.delivery else { continue };
            d.late_backlog |= late;
            let status = match pb::DeliveryStatus::try_from(item.status) {
                Ok(pb::DeliveryStatus::Retrying) => pb::DeliveryStatus::Retrying,
                _ => pb::DeliveryStatus::Pending,
            };
            let st = State {
                status,
                attempts: item.attempts,
                next_attempt_at_ms: item.next_attempt_at_ms,
                finished_at_ms: 0,
                last_status_code: item.last_status_code,
                position: 0,
            };
            let Some((seq, position)) = self.store_delivery(&d, st, false, false, now)? else {
                res.duplicates += 1;
                continue;
            };
            for a in &item.attempt_log {
                self.attempts
                    .insert((seq, a.number), a.encode_to_vec().as_slice())?;
            }
            note_endpoint(&mut res, &d.endpoint_id);
            self.fed.queued.push(Queued {
                seq,
                position,
                delivery: d,
                attempts: st.attempts,
                next_attempt_at_ms: st.next_attempt_at_ms,
            });
        }
        for (ep, n) in &res.endpoints {
            self.update_stats(ep, |s| s.queue_depth += n)?;
        }
        Ok(res)
    }

    /// Queues every parked delivery of `slot`, in arrival order, behind
    /// what is queued now (the handed-over work); returns their endpoints.
    fn unpark(&mut self, slot: u32) -> Result<Vec<String>, redb::Error> {
        let mut seqs = Vec::new();
        self.parked
            .retain_in((slot, 0)..=(slot, u64::MAX), |(_, seq), _| {
                seqs.push(seq);
                false
            })?;
        let mut endpoints: Vec<String> = Vec::new();
        for seq in seqs {
            let Some(d) = self
                .deliveries
                .get(seq)?
                .and_then(|v| pb::Delivery::decode(v.value()).ok())
            else {
                continue;
            };
            let Some(mut st) = self.state.get(seq)?.map(|v| State::from_tuple(v.value())) else {
                continue;
            };
            st.position = self.take_position();
            self.state.insert(seq, st.to_tuple())?;
            self.queue
                .insert((d.endpoint_id.as_str(), st.position), seq)?;
            if !endpoints.contains(&d.endpoint_id) {
                endpoints.push(d.endpoint_id.clone());
            }
            self.fed.queued.push(Queued {
                seq,
                position: st.position,
                delivery: d,
                attempts: st.attempts,
                next_attempt_at_ms: st.next_attempt_at_ms,
            });
        }
        Ok(endpoints)
    }

    /// Records one attempt and what it means for the delivery and the
    /// endpoint's counters; returns the deliveries failed in a row.
    fn attempt(
        &mut self,
        endpoint_id: &str,
        seq: u64,
        record: &pb::Attempt,
        result: AttemptResult,
        now: i64,
    ) -> Result<u32, redb::Error> {
        let Some(mut st) = self.state.get(seq)?.map(|v| State::from_tuple(v.value())) else {
            // Purged meanwhile (the endpoint was deleted): nothing to record.
            return Ok(0);
        };
        if !st.is_queued() {
            // Already finished: a duplicate report (cannot happen with one worker).
            return Ok(0);
        }
        st.attempts += 1;
        st.last_status_code = record.response_status;
        let finished = match result {
            AttemptResult::Succeeded => Some(pb::DeliveryStatus::Succeeded),
            AttemptResult::FailedForGood => Some(pb::DeliveryStatus::Failed),
            AttemptResult::Retry { next_at_ms } => {
                st.status = pb::DeliveryStatus::Retrying;
                st.next_attempt_at_ms = next_at_ms;
                None
            }
            AttemptResult::Held => {
                st.status = pb::DeliveryStatus::Retrying;
                st.next_attempt_at_ms = 0;
                None
            }
        };
        if let Some(status) = finished {
            st.status = status;
            st.next_attempt_at_ms = 0;
            st.finished_at_ms = now;
            self.queue.remove((endpoint_id, st.position))?;
            st.position = 0;
            self.done.insert((now, seq), ())?;
            self.finished += 1;
        }
        self.state.insert(seq, st.to_tuple())?;
        self.attempts.insert(
            (seq, st.attempts),
            pb::Attempt {
                number: st.attempts,
                ..record.clone()
            }
            .encode_to_vec()
            .as_slice(),
        )?;
        let short = attempt_summary(record);
        let stats = self.update_stats(endpoint_id, |s| {
            s.attempts += 1;
            match result {
                AttemptResult::Succeeded => {
                    s.successes += 1;
                    s.failures_since_last_success = 0;
                    s.deliveries_failed_in_a_row = 0;
                    s.queue_depth = s.queue_depth.saturating_sub(1);
                    s.last_success = Some(short);
                }
                AttemptResult::Retry { .. } | AttemptResult::Held => {
                    s.failures_since_last_success += 1;
                    s.last_failure = Some(short);
                }
                AttemptResult::FailedForGood => {
                    s.failures += 1;
                    s.failures_since_last_success += 1;
                    s.deliveries_failed_in_a_row += 1;
                    s.queue_depth = s.queue_depth.saturating_sub(1);
                    s.last_failure = Some(short);
                }
            }
        })?;
        Ok(stats.deliveries_failed_in_a_row)
    }

    /// Forgets everything held for a deleted endpoint; returns how many
    /// queued deliveries were dropped.
    fn purge(&mut self, endpoint_id: &str) -> Result<u64, redb::Error> {
        let mut seqs = Vec::new();
        self.by_endpoint.retain_in(
            (endpoint_id, i64::MIN, "")..(endpoint_id, i64::MAX, "\u{10FFFF}"),
            |_, (seq, _, _)| {
                seqs.push(seq);
                false
            },
        )?;
        let mut queued = 0;
        for seq in seqs {
            if self.drop_delivery(seq, false)?.is_some() {
                queued += 1;
            }
        }
        self.stats.remove(endpoint_id)?;
        Ok(queued)
    }

    /// Deletes one delivery and its attempts; returns its endpoint if it
    /// was still queued (or parked). `by_endpoint` says whether its
    /// endpoint index entry still needs removing.
    fn drop_delivery(
        &mut self,
        seq: u64,
        by_endpoint: bool,
    ) -> Result<Option<String>, redb::Error> {
        let Some(bytes) = self.deliveries.remove(seq)?.map(|v| v.value().to_vec()) else {
            return Ok(None);
        };
        let st = self
            .state
            .remove(seq)?
            .map(|v| State::from_tuple(v.value()))
            .unwrap_or_else(State::pending);
        self.attempts
            .retain_in((seq, 0)..=(seq, u32::MAX), |_, _| false)?;
        let Ok(d) = pb::Delivery::decode(bytes.as_slice()) else {
            tracing::error!(seq, "undecodable delivery dropped; its index entries stay");
            return Ok(None);
        };
        let id = d.delivery_id.as_str();
        // No longer held, but still remembered as accepted until the
        // idempotency window has passed (`PruneSeen`).
        let accepted = self.ids.get(id)?.map_or(0, |v| v.value().1);
        self.ids.insert(id, (0, accepted))?;
        self.by_tenant
            .remove((d.tenant_id.as_str(), d.published_at_ms, id))?;
        if by_endpoint {
            self.by_endpoint
                .remove((d.endpoint_id.as_str(), d.published_at_ms, id))?;
        }
        if st.is_queued() {
            if st.position > 0 {
                self.queue.remove((d.endpoint_id.as_str(), st.position))?;
            } else {
                self.parked.remove((d.slot, seq))?;
            }
            Ok(Some(d.endpoint_id))
        } else {
            if self.done.remove((st.finished_at_ms, seq))?.is_some() {
                self.finished = self.finished.saturating_sub(1);
            }
            Ok(None)
        }
    }

    /// Retention: drops finished deliveries that finished before
    /// `cutoff_ms`, and the oldest beyond `max_finished`; queued ones are
    /// never dropped.
    fn retain(&mut self, cutoff_ms: i64, max_finished: u64) -> Result<u64, redb::Error> {
        let over = self.finished.saturating_sub(max_finished);
        let mut victims = Vec::new();
        for row in self.done.iter()? {
            let (k, _) = row?;
            let (finished, seq) = k.value();
            if (victims.len() as u64) >= over && finished >= cutoff_ms {
                break;
            }
            victims.push(seq);
            if victims.len() >= RETAIN_BATCH {
                break;
            }
        }
        let n = victims.len() as u64;
        for seq in victims {
            self.drop_delivery(seq, true)?;
        }
        Ok(n)
    }

    /// Marks every queued or parked delivery with a seq up to `up_to` as
    /// late.
    fn mark_late(&mut self, up_to: u64) -> Result<u64, redb::Error> {
        let mut seqs: Vec<u64> = Vec::new();
        for row in self.queue.iter()? {
            seqs.push(row?.1.value());
        }
        for row in self.parked.iter()? {
            seqs.push(row?.0.value().1);
        }
        let mut n = 0;
        for seq in seqs.into_iter().filter(|s| *s <= up_to) {
            let Some(mut d) = self
                .deliveries
                .get(seq)?
                .and_then(|v| pb::Delivery::decode(v.value()).ok())
            else {
                continue;
            };
            if !d.late_backlog {
                d.late_backlog = true;
                self.deliveries.insert(seq, d.encode_to_vec().as_slice())?;
                n += 1;
            }
        }
        Ok(n)
    }
}

fn note_endpoint(res: &mut Inserted, endpoint_id: &str) {
    res.stored += 1;
    match res.endpoints.iter_mut().find(|(e, _)| e == endpoint_id) {
        Some((_, n)) => *n += 1,
        None => res.endpoints.push((endpoint_id.to_string(), 1)),
    }
}

/// Bytes of the response body kept in the statistics' last success/failure.
const SUMMARY_BODY: usize = 256;

fn attempt_summary(a: &pb::Attempt) -> pb::AttemptSummary {
    let mut body = a.response_body.clone();
    if body.len() > SUMMARY_BODY {
        let mut cut = SUMMARY_BODY;
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        body.truncate(cut);
    }
    pb::AttemptSummary {
        at_ms: a.started_at_ms,
        status_code: a.response_status,
        error_kind: a.error_kind,
        error: a.error.clone(),
        response_body: body,
        duration_ms: a.duration_ms,
    }
}
