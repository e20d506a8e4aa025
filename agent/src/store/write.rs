//! The writer thread: applies every change to the store, in groups.
//!
//! It takes whatever requests have queued up while the previous commit was
//! syncing and makes them durable with a single fsync, so throughput grows
//! with load instead of being capped at one fsync per request. Being the
//! only writer, it can read-modify-write counters without races.

use herald_proto::v1 as pb;
use prost::Message as _;
use redb::{Database, Durability, ReadableTable, WriteTransaction};
use tokio::sync::{mpsc, oneshot};

use super::tables::*;
use super::{AttemptResult, Inserted};
use crate::error::{Error, Result};

/// Most requests folded into one commit.
const MAX_GROUP: usize = 512;
/// Most finished deliveries one retention pass deletes (bounds a commit).
const RETAIN_BATCH: usize = 5_000;

/// One request to the writer.
pub(super) enum WriteOp {
    Insert(Vec<pb::Delivery>, oneshot::Sender<Result<Inserted>>),
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
        }
    }
}

pub(super) fn writer_loop(db: &Database, mut rx: mpsc::Receiver<WriteOp>) {
    while let Some(first) = rx.blocking_recv() {
        let mut ops = vec![first];
        while ops.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let mut replies = Vec::with_capacity(ops.len());
        let result = commit_group(db, ops, &mut replies);
        if let Err(e) = &result {
            tracing::error!(error = %e, "store commit failed");
        }
        for r in replies {
            r.send(result.as_ref().err());
        }
    }
}

fn commit_group(
    db: &Database,
    ops: Vec<WriteOp>,
    replies: &mut Vec<Reply>,
) -> Result<(), redb::Error> {
    let mut tx = db.begin_write()?;
    tx.set_durability(Durability::Immediate)
        .map_err(|e| redb::Error::Io(std::io::Error::other(e.to_string())))?;
    let now = herald_shared::time::now_ms();
    for op in ops {
        match op {
            WriteOp::Insert(deliveries, reply) => {
                let r = insert(&tx, deliveries, now)?;
                replies.push(Reply::Inserted(reply, r));
            }
            WriteOp::Attempt {
                endpoint_id,
                seq,
                record,
                result,
                reply,
            } => {
                let streak = attempt(&tx, &endpoint_id, seq, &record, result, now)?;
                if let Some(reply) = reply {
                    replies.push(Reply::Streak(reply, streak));
                }
            }
            WriteOp::Purge(ep, reply) => {
                let n = purge(&tx, &ep)?;
                replies.push(Reply::Count(reply, n));
            }
            WriteOp::ResetStreak(ep) => {
                update_stats(&tx, &ep, |s| s.deliveries_failed_in_a_row = 0)?;
            }
            WriteOp::PruneSeen(cutoff) => {
                tx.open_table(SEEN)?.retain(|_, at| at >= cutoff)?;
            }
            WriteOp::Retain {
                cutoff_ms,
                max_finished,
                reply,
            } => {
                let n = retain(&tx, cutoff_ms, max_finished)?;
                replies.push(Reply::Count(reply, n));
            }
        }
    }
    tx.commit()?;
    Ok(())
}

fn meta(tx: &WriteTransaction, key: &str) -> Result<u64, redb::Error> {
    Ok(tx
        .open_table(META)?
        .get(key)?
        .map(|v| v.value())
        .unwrap_or(0))
}

fn set_meta(tx: &WriteTransaction, key: &str, v: u64) -> Result<(), redb::Error> {
    tx.open_table(META)?.insert(key, v)?;
    Ok(())
}

fn update_stats(
    tx: &WriteTransaction,
    endpoint_id: &str,
    f: impl FnOnce(&mut pb::EndpointStats),
) -> Result<pb::EndpointStats, redb::Error> {
    let mut t = tx.open_table(STATS)?;
    let mut s = t
        .get(endpoint_id)?
        .and_then(|v| pb::EndpointStats::decode(v.value()).ok())
        .unwrap_or_else(|| pb::EndpointStats {
            endpoint_id: endpoint_id.to_string(),
            ..Default::default()
        });
    f(&mut s);
    t.insert(endpoint_id, s.encode_to_vec().as_slice())?;
    Ok(s)
}

fn insert(
    tx: &WriteTransaction,
    deliveries: Vec<pb::Delivery>,
    now: i64,
) -> Result<Inserted, redb::Error> {
    let mut res = Inserted::default();
    let mut next_seq = meta(tx, "next_seq")?.max(1);
    {
        let mut seen = tx.open_table(SEEN)?;
        let mut all = tx.open_table(DELIVERIES)?;
        let mut ids = tx.open_table(IDS)?;
        let mut state = tx.open_table(STATE)?;
        let mut queue = tx.open_table(QUEUE)?;
        let mut by_ep = tx.open_table(BY_ENDPOINT)?;
        let mut by_tenant = tx.open_table(BY_TENANT)?;
        for mut d in deliveries {
            if d.delivery_id.is_empty() {
                d.delivery_id = herald_shared::ids::delivery_id_for(&d.endpoint_id, &d.event_id);
            }
            if d.published_at_ms == 0 {
                d.published_at_ms = now;
            }
            let key = (d.endpoint_id.as_str(), d.delivery_id.as_str());
            if seen.get(key)?.is_some() || ids.get(d.delivery_id.as_str())?.is_some() {
                res.duplicates += 1;
                continue;
            }
            seen.insert(key, now)?;
            let seq = next_seq;
            next_seq += 1;
            all.insert(seq, d.encode_to_vec().as_slice())?;
            ids.insert(d.delivery_id.as_str(), seq)?;
            state.insert(seq, State::pending().to_tuple())?;
            queue.insert((d.endpoint_id.as_str(), seq), ())?;
            let value = (seq, d.event_type.as_str(), resource_id(&d));
            by_ep.insert(
                (
                    d.endpoint_id.as_str(),
                    d.published_at_ms,
                    d.delivery_id.as_str(),
                ),
                value,
            )?;
            by_tenant.insert(
                (
                    d.tenant_id.as_str(),
                    d.published_at_ms,
                    d.delivery_id.as_str(),
                ),
                value,
            )?;
            res.stored += 1;
            match res.endpoints.iter_mut().find(|(e, _)| *e == d.endpoint_id) {
                Some((_, n)) => *n += 1,
                None => res.endpoints.push((d.endpoint_id.clone(), 1)),
            }
        }
    }
    for (ep, n) in &res.endpoints {
        update_stats(tx, ep, |s| {
            s.events += n;
            s.queue_depth += n;
            s.last_event_at_ms = now;
        })?;
    }
    set_meta(tx, "next_seq", next_seq)?;
    Ok(res)
}

/// Records one attempt and what it means for the delivery and the
/// endpoint's counters; returns the deliveries failed in a row.
fn attempt(
    tx: &WriteTransaction,
    endpoint_id: &str,
    seq: u64,
    record: &pb::Attempt,
    result: AttemptResult,
    now: i64,
) -> Result<u32, redb::Error> {
    let mut states = tx.open_table(STATE)?;
    let Some(mut st) = states.get(seq)?.map(|v| State::from_tuple(v.value())) else {
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
        tx.open_table(QUEUE)?.remove((endpoint_id, seq))?;
        tx.open_table(DONE)?.insert((now, seq), ())?;
        let n = meta(tx, "finished")?;
        set_meta(tx, "finished", n + 1)?;
    }
    states.insert(seq, st.to_tuple())?;
    drop(states);
    tx.open_table(ATTEMPTS)?.insert(
        (seq, st.attempts),
        pb::Attempt {
            number: st.attempts,
            ..record.clone()
        }
        .encode_to_vec()
        .as_slice(),
    )?;
    let short = attempt_summary(record);
    let stats = update_stats(tx, endpoint_id, |s| {
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

/// Forgets everything held for a deleted endpoint; returns how many
/// queued deliveries were dropped.
fn purge(tx: &WriteTransaction, endpoint_id: &str) -> Result<u64, redb::Error> {
    let mut seqs = Vec::new();
    tx.open_table(BY_ENDPOINT)?.retain_in(
        (endpoint_id, i64::MIN, "")..(endpoint_id, i64::MAX, "\u{10FFFF}"),
        |_, (seq, _, _)| {
            seqs.push(seq);
            false
        },
    )?;
    let mut queued = 0;
    for seq in seqs {
        if drop_delivery(tx, seq, false)? {
            queued += 1;
        }
    }
    tx.open_table(STATS)?.remove(endpoint_id)?;
    Ok(queued)
}

/// Deletes one delivery and its attempts; true if it was still queued.
/// `by_endpoint` says whether its endpoint index entry still needs removing.
fn drop_delivery(tx: &WriteTransaction, seq: u64, by_endpoint: bool) -> Result<bool, redb::Error> {
    let Some(bytes) = tx
        .open_table(DELIVERIES)?
        .remove(seq)?
        .map(|v| v.value().to_vec())
    else {
        return Ok(false);
    };
    let st = tx
        .open_table(STATE)?
        .remove(seq)?
        .map(|v| State::from_tuple(v.value()))
        .unwrap_or_else(State::pending);
    tx.open_table(ATTEMPTS)?
        .retain_in((seq, 0)..=(seq, u32::MAX), |_, _| false)?;
    let Ok(d) = pb::Delivery::decode(bytes.as_slice()) else {
        tracing::error!(seq, "undecodable delivery dropped; its index entries stay");
        return Ok(false);
    };
    tx.open_table(IDS)?.remove(d.delivery_id.as_str())?;
    let key = |owner: &str| (owner.to_string(), d.published_at_ms, d.delivery_id.clone());
    let (t, c, i) = key(&d.tenant_id);
    tx.open_table(BY_TENANT)?
        .remove((t.as_str(), c, i.as_str()))?;
    if by_endpoint {
        let (e, c, i) = key(&d.endpoint_id);
        tx.open_table(BY_ENDPOINT)?
            .remove((e.as_str(), c, i.as_str()))?;
    }
    if st.is_queued() {
        tx.open_table(QUEUE)?
            .remove((d.endpoint_id.as_str(), seq))?;
        Ok(true)
    } else {
        if tx
            .open_table(DONE)?
            .remove((st.finished_at_ms, seq))?
            .is_some()
        {
            let n = meta(tx, "finished")?;
            set_meta(tx, "finished", n.saturating_sub(1))?;
        }
        Ok(false)
    }
}

/// Retention: drops finished deliveries that finished before `cutoff_ms`,
/// and the oldest beyond `max_finished`; queued ones are never dropped.
fn retain(tx: &WriteTransaction, cutoff_ms: i64, max_finished: u64) -> Result<u64, redb::Error> {
    let total = meta(tx, "finished")?;
    let over = total.saturating_sub(max_finished);
    let mut victims = Vec::new();
    {
        let done = tx.open_table(DONE)?;
        for row in done.iter()? {
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
    }
    let n = victims.len() as u64;
    for seq in victims {
        drop_delivery(tx, seq, true)?;
    }
    Ok(n)
}
