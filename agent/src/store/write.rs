//! The writer thread: turns requests into records, commits them in
//! groups, then applies them to the index.
//!
//! It takes whatever requests queued up while the previous commit was
//! syncing and writes their records as one frame with one `fdatasync`, so
//! throughput grows with load instead of being capped at one sync per
//! request. Records are built from the committed index (plus what the
//! group itself added) and applied with [`Index::apply`] only after the
//! sync: readers never see what is not durable, and what they see is what
//! recovery would rebuild. Requests that reorganise queues (unpark, drop,
//! purge, mark late, retention) are committed alone, so that they see
//! every earlier request applied.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use herald_proto::v1 as pb;
use tokio::sync::{mpsc, oneshot};

use super::convert;
use super::handed::Handed;
use super::index::Index;
use super::migrate::Imported;
use super::record::*;
use super::segment::{CommitError, Frame, Log, LogError};
use super::{AttemptResult, DEDUP_WINDOW_MS, Inserted};
use crate::error::{Error, Result};

/// Most requests folded into one commit.
const MAX_GROUP: usize = 512;
/// Most finished deliveries one retention pass drops (bounds a commit).
pub const RETAIN_BATCH: usize = 5_000;
/// Most segments one retention pass compacts (bounds its time).
const COMPACT_PER_PASS: usize = 8;
/// The oldest sealed segment is compacted once its live bytes are at most
/// this share (1/4) of the dead bytes compaction can reach (see
/// [`worth_compacting`]).
const COMPACT_LIVE_DIVISOR: u64 = 4;

/// Whether to compact the oldest sealed segment, given (live, length) of
/// every sealed segment, oldest first. Compaction goes oldest first (a
/// younger segment may hold the Drop that buries an older one's delivery),
/// so a mostly live oldest segment blocks the rest: it is moved once the
/// dead bytes of all sealed segments are at least 4 times what moving it
/// copies. Each byte copied thus frees at least 4, and a long-lived
/// delivery at the head of the log cannot keep a growing tail of dead
/// segments on disk.
pub(super) fn worth_compacting(sealed: &[(u64, u64)]) -> bool {
    let Some(&(live, _)) = sealed.first() else {
        return false;
    };
    let dead: u64 = sealed
        .iter()
        .map(|(live, len)| len.saturating_sub(*live))
        .sum();
    dead > 0 && live * COMPACT_LIVE_DIVISOR <= dead
}

/// One request to the writer.
pub(super) enum WriteOp {
    /// New deliveries accepted at `epoch`; those in `parked` slots wait.
    Insert {
        epoch: u64,
        deliveries: Vec<pb::Delivery>,
        parked: Vec<u32>,
        reply: oneshot::Sender<Result<Inserted>>,
    },
    /// Deliveries another agent handed over.
    InsertHanded {
        epoch: u64,
        items: Vec<Handed>,
        late: bool,
        parked: Vec<u32>,
        reply: oneshot::Sender<Result<Inserted>>,
    },
    Attempt {
        seq: u64,
        record: Box<pb::Attempt>,
        result: AttemptResult,
        /// Told the endpoint's deliveries failed for good in a row.
        reply: Option<oneshot::Sender<Result<u32>>>,
    },
    ResetStreak(String),
    /// Queues a slot's parked deliveries; replies with their endpoints.
    Unpark(u32, oneshot::Sender<Result<Vec<String>>>),
    /// Forgets deliveries that were handed to another agent.
    DropHanded(Vec<u64>, oneshot::Sender<Result<u64>>),
    /// Marks queued deliveries up to a seq as late backlog.
    MarkLate(u64, oneshot::Sender<Result<u64>>),
    Purge(String, oneshot::Sender<Result<u64>>),
    PruneSeen(i64),
    Retain {
        cutoff_ms: i64,
        max_finished: u64,
        reply: oneshot::Sender<Result<u64>>,
    },
    /// Deliveries of an old store, in queue order (`migrate.rs`).
    Import(Vec<Imported>, oneshot::Sender<Result<()>>),
    /// The counters of an old store (`migrate.rs`).
    ImportCounters(Vec<(String, Counters)>, oneshot::Sender<Result<()>>),
}

/// How long a group nobody waits for may wait for company.
const UNAWAITED_LINGER: std::time::Duration = std::time::Duration::from_millis(2);

/// Adds what is queued now to `ops`, up to a group's size.
fn gather(rx: &mut mpsc::Receiver<WriteOp>, ops: &mut Vec<WriteOp>) {
    while ops.len() < MAX_GROUP {
        match rx.try_recv() {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
}

impl WriteOp {
    /// Whether no caller waits for its commit.
    fn unawaited(&self) -> bool {
        matches!(
            self,
            WriteOp::Attempt { reply: None, .. } | WriteOp::ResetStreak(_)
        )
    }

    /// Whether it must be committed alone (see the module doc).
    fn alone(&self) -> bool {
        !matches!(
            self,
            WriteOp::Insert { .. }
                | WriteOp::InsertHanded { .. }
                | WriteOp::Attempt { .. }
                | WriteOp::ResetStreak(_)
        )
    }
}

/// A reply to send once the group is committed and applied.
enum Reply {
    Inserted(oneshot::Sender<Result<Inserted>>, Inserted),
    Count(oneshot::Sender<Result<u64>>, u64),
    /// The streak is read from the index after the apply.
    Streak(oneshot::Sender<Result<u32>>, u64),
    Endpoints(oneshot::Sender<Result<Vec<String>>>, Vec<String>),
    Done(oneshot::Sender<Result<()>>),
}

impl Reply {
    /// Answers with the result, or with `err` when the commit failed.
    fn send(self, index: &Index, err: Option<&str>) {
        fn or<T>(v: T, err: Option<&str>) -> Result<T> {
            err.map_or(Ok(v), failed)
        }
        match self {
            Reply::Inserted(tx, v) => drop(tx.send(or(v, err))),
            Reply::Count(tx, v) => drop(tx.send(or(v, err))),
            Reply::Endpoints(tx, v) => drop(tx.send(or(v, err))),
            Reply::Done(tx) => drop(tx.send(or((), err))),
            Reply::Streak(tx, seq) => {
                let streak = index
                    .entries
                    .get(&seq)
                    .and_then(|e| index.counters.get(&e.endpoint))
                    .map_or(0, |c| c.deliveries_failed_in_a_row);
                drop(tx.send(or(streak, err)));
            }
        }
    }
}

/// The writer's state: the log's end and the counters it hands out.
pub(super) struct Writer {
    log: Log,
    /// The ids log (`seen/`): ids of deliveries no longer in the main log
    /// but within the idempotency window, each written once.
    seen_log: Log,
    /// Per ids-log segment, the newest acceptance time in it: the segment
    /// goes once that is outside the window.
    seen_newest: std::collections::BTreeMap<u32, i64>,
    index: Arc<RwLock<Index>>,
    next_seq: u64,
    next_position: u64,
    /// Most undelivered deliveries new work may bring the store to (0: no
    /// limit); set through [`super::Store::limit_undelivered`].
    max_undelivered: Arc<AtomicU64>,
}

/// One commit being built.
struct Group {
    frame: Frame,
    records: Vec<(Loc, u32, Record)>,
    replies: Vec<Reply>,
    /// Ids stored by this group (not in the index yet).
    ids: HashSet<IdKey>,
    /// Attempts recorded by this group: seq → (attempts, last record).
    attempts: HashMap<u64, (u32, Loc)>,
}

impl Group {
    fn push(&mut self, r: Record) -> Loc {
        let (loc, size) = self.frame.push(&r);
        self.records.push((loc, size, r));
        loc
    }

    /// Earlier attempts of delivery `seq` that came with it (a handoff, a
    /// migration): history only, chained oldest first.
    fn push_history(&mut self, seq: u64, attempts: Vec<AttemptLog>) {
        let mut prev = None;
        for log in attempts {
            prev = Some(self.push(Record::Attempt(Box::new(Attempt {
                seq,
                carried: true,
                at_ms: log.started_at_ms,
                prev,
                outcome: Outcome::Held,
                log,
            }))));
        }
    }
}

impl Writer {
    pub(super) fn new(
        log: Log,
        seen_log: Log,
        seen_newest: std::collections::BTreeMap<u32, i64>,
        index: Arc<RwLock<Index>>,
        max_undelivered: Arc<AtomicU64>,
    ) -> Self {
        let (next_seq, next_position) = {
            let ix = index.read().unwrap_or_else(|p| p.into_inner());
            (ix.next_seq.max(1), ix.next_position.max(1))
        };
        Writer {
            log,
            seen_log,
            seen_newest,
            index,
            next_seq,
            next_position,
            max_undelivered,
        }
    }

    fn read_index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    fn group(&mut self) -> Result<Group> {
        Ok(Group {
            frame: self.log.frame().map_err(LogError::Io)?,
            records: Vec::new(),
            replies: Vec::new(),
            ids: HashSet::new(),
            attempts: HashMap::new(),
        })
    }

    pub(super) fn run(mut self, mut rx: mpsc::Receiver<WriteOp>) {
        // Only for the linger's timer.
        let timer = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build();
        while let Some(first) = rx.blocking_recv() {
            let mut ops = vec![first];
            gather(&mut rx, &mut ops);
            if let Ok(timer) = &timer
                && ops.iter().all(WriteOp::unawaited)
            {
                // Nobody waits for these (successes): they wait a moment
                // for something that needs a sync anyway, and share it.
                // Whatever comes first is committed at once with them.
                if let Ok(Some(op)) = timer
                    .block_on(async { tokio::time::timeout(UNAWAITED_LINGER, rx.recv()).await })
                {
                    ops.push(op);
                    gather(&mut rx, &mut ops);
                }
            }
            let m = crate::metrics::get();
            m.store_commit_writes.observe(ops.len() as f64);
            let started = std::time::Instant::now();
            self.run_ops(ops);
            m.store_commit_seconds
                .observe(started.elapsed().as_secs_f64());
        }
    }

    fn run_ops(&mut self, ops: Vec<WriteOp>) {
        let mut group: Option<Group> = None;
        for op in ops {
            if op.alone() {
                if let Some(g) = group.take() {
                    self.commit(g);
                }
                self.run_alone(op);
                continue;
            }
            if group.is_none() {
                match self.group() {
                    Ok(g) => group = Some(g),
                    Err(e) => {
                        fail_op(op, &e.to_string());
                        continue;
                    }
                }
            }
            if let Some(g) = group.as_mut() {
                self.build(g, op);
            }
        }
        if let Some(g) = group {
            self.commit(g);
        }
    }

    /// Writes the group's frame, applies its records, answers.
    fn commit(&mut self, g: Group) {
        let Group {
            frame,
            records,
            replies,
            ..
        } = g;
        match self.log.commit(frame) {
            Ok(()) => {
                let mut ix = self.index.write().unwrap_or_else(|p| p.into_inner());
                for (loc, size, r) in &records {
                    ix.apply(*loc, *size, r);
                }
                let ix = std::sync::RwLockWriteGuard::downgrade(ix);
                for r in replies {
                    r.send(&ix, None);
                }
            }
            Err(CommitError::Write(e)) => {
                tracing::error!(error = %e, "store commit failed; nothing of it was stored");
                let ix = self.read_index();
                let msg = e.to_string();
                for r in replies {
                    r.send(&ix, Some(&msg));
                }
            }
            Err(CommitError::Sync(e)) => {
                // After a failed fsync the page cache cannot be trusted to
                // say what is on disk; a restart recovers what is.
                tracing::error!(error = %e, "store sync failed; exiting to recover from disk");
                std::process::exit(70);
            }
        }
    }

    /// Adds a request that can share a commit.
    fn build(&mut self, g: &mut Group, op: WriteOp) {
        let now = herald_shared::time::now_ms();
        match op {
            WriteOp::Insert {
                epoch,
                deliveries,
                parked,
                reply,
            } => {
                if let Err(e) = self.room_for(g, &deliveries) {
                    // Nothing of it is stored.
                    let _ = reply.send(Err(e));
                    return;
                }
                let r = self.build_insert(g, epoch, deliveries, &parked, now);
                g.replies.push(Reply::Inserted(reply, r));
            }
            WriteOp::InsertHanded {
                epoch,
                items,
                late,
                parked,
                reply,
            } => {
                let r = self.build_handed(g, epoch, items, late, &parked, now);
                g.replies.push(Reply::Inserted(reply, r));
            }
            WriteOp::Attempt {
                seq,
                record,
                result,
                reply,
            } => {
                self.build_attempt(g, seq, *record, result, now);
                if let Some(reply) = reply {
                    g.replies.push(Reply::Streak(reply, seq));
                }
            }
            WriteOp::ResetStreak(endpoint_id) => {
                g.push(Record::ResetStreak { endpoint_id });
            }
            other => fail_op(other, "internal: not a grouped request"),
        }
    }

    /// Refuses new deliveries that would take the undelivered ones held
    /// past the limit. The indexes live in memory, so without a bound an
    /// endpoint down long enough would take all of it, and the agent would
    /// fail at every restart. Handed-over work is never refused: it was
    /// accepted already. Duplicates need no room.
    fn room_for(&self, g: &Group, deliveries: &[pb::Delivery]) -> Result<()> {
        let limit = self.max_undelivered.load(Ordering::Relaxed);
        if limit == 0 {
            return Ok(());
        }
        let held = {
            let ix = self.read_index();
            (ix.entries.len().saturating_sub(ix.finished.len()) + g.ids.len()) as u64
        };
        if held + deliveries.len() as u64 <= limit {
            return Ok(());
        }
        let new = deliveries
            .iter()
            .filter(|d| {
                let id = if d.delivery_id.is_empty() {
                    herald_shared::ids::delivery_id_for(&d.endpoint_id, &d.event_id)
                } else {
                    d.delivery_id.clone()
                };
                IdKey::parse(&id).is_some_and(|id| !self.is_duplicate(g, id, true))
            })
            .count() as u64;
        if new == 0 || held + new <= limit {
            return Ok(());
        }
        Err(Error::Full { held, limit })
    }

    /// Whether `id` is held, or (for new work, `check_seen`) was accepted
    /// within the idempotency window. Handed-over deliveries skip the
    /// window: one that left this agent earlier and comes back is taken.
    fn is_duplicate(&self, g: &Group, id: IdKey, check_seen: bool) -> bool {
        let ix = self.read_index();
        g.ids.contains(&id) || ix.ids.contains_key(&id) || (check_seen && ix.seen.contains_key(&id))
    }

    fn take_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    fn take_position(&mut self) -> u64 {
        let p = self.next_position;
        self.next_position += 1;
        p
    }

    fn build_insert(
        &mut self,
        g: &mut Group,
        epoch: u64,
        deliveries: Vec<pb::Delivery>,
        parked: &[u32],
        now: i64,
    ) -> Inserted {
        let mut res = Inserted::default();
        for mut d in deliveries {
            if d.delivery_id.is_empty() {
                d.delivery_id = herald_shared::ids::delivery_id_for(&d.endpoint_id, &d.event_id);
            }
            if d.published_at_ms == 0 {
                d.published_at_ms = now;
            }
            let Some(id) = IdKey::parse(&d.delivery_id) else {
                res.duplicates += 1;
                continue;
            };
            if self.is_duplicate(g, id, true) {
                res.duplicates += 1;
                continue;
            }
            g.ids.insert(id);
            let park = parked.contains(&d.slot);
            let seq = self.take_seq();
            let mut state = DeliveryState::pending();
            if !park {
                state.position = self.take_position();
            }
            note_endpoint(&mut res, &d.endpoint_id);
            g.push(Record::Accept(Box::new(Accept {
                seq,
                stamp: Stamp { epoch, seq },
                accepted_at_ms: now,
                origin: Origin::New,
                parked: park,
                state,
                delivery: convert::delivery_rec(d),
            })));
        }
        res
    }

    fn build_handed(
        &mut self,
        g: &mut Group,
        epoch: u64,
        items: Vec<Handed>,
        late: bool,
        parked: &[u32],
        now: i64,
    ) -> Inserted {
        let mut res = Inserted::default();
        for h in items {
            let Some(id) = IdKey::parse(&h.delivery.delivery_id) else {
                res.duplicates += 1;
                continue;
            };
            if self.is_duplicate(g, id, false) {
                res.duplicates += 1;
                continue;
            }
            g.ids.insert(id);
            let seq = self.take_seq();
            // Late work goes behind what was delivered meanwhile: it is
            // stamped as if accepted now. Otherwise it keeps its place.
            let stamp = match (h.stamp, late) {
                (Some(s), false) => s,
                _ => Stamp { epoch, seq },
            };
            let mut state = h.state;
            let park = parked.contains(&h.delivery.slot);
            state.position = if park { 0 } else { self.take_position() };
            let mut delivery = h.delivery;
            delivery.late_backlog |= late;
            note_endpoint(&mut res, &delivery.endpoint_id);
            g.push(Record::Accept(Box::new(Accept {
                seq,
                stamp,
                accepted_at_ms: now,
                origin: Origin::Handed,
                parked: park,
                state,
                delivery,
            })));
            g.push_history(seq, h.attempts);
        }
        res
    }

    fn build_attempt(
        &mut self,
        g: &mut Group,
        seq: u64,
        record: pb::Attempt,
        result: AttemptResult,
        now: i64,
    ) {
        let (attempts, prev) = match g.attempts.get(&seq) {
            Some(&(n, loc)) => (n, Some(loc)),
            None => {
                let ix = self.read_index();
                // Purged or finished meanwhile: nothing to record.
                let Some(e) = ix.entries.get(&seq).filter(|e| e.state.status.is_queued()) else {
                    return;
                };
                (e.state.attempts, e.last_attempt)
            }
        };
        let outcome = match result {
            AttemptResult::Succeeded => Outcome::Succeeded,
            AttemptResult::Retry { next_at_ms } => Outcome::Retry(next_at_ms),
            AttemptResult::Held => Outcome::Held,
            AttemptResult::FailedForGood => Outcome::FailedForGood,
        };
        let mut log = convert::attempt_log(record);
        log.number = attempts + 1;
        let loc = g.push(Record::Attempt(Box::new(Attempt {
            seq,
            carried: false,
            at_ms: now,
            prev,
            outcome,
            log,
        })));
        g.attempts.insert(seq, (attempts + 1, loc));
    }

    /// Runs a request that is committed alone.
    fn run_alone(&mut self, op: WriteOp) {
        let mut g = match self.group() {
            Ok(g) => g,
            Err(e) => return fail_op(op, &e.to_string()),
        };
        match op {
            WriteOp::Unpark(slot, reply) => {
                let (record, endpoints) = self.unpark_record(slot);
                if let Some(r) = record {
                    g.push(r);
                }
                g.replies.push(Reply::Endpoints(reply, endpoints));
            }
            WriteOp::DropHanded(seqs, reply) => {
                let items = self.read_index().drop_items(&seqs);
                let n = items.len() as u64;
                if n > 0 {
                    g.push(Record::Drop { items });
                }
                g.replies.push(Reply::Count(reply, n));
            }
            WriteOp::MarkLate(up_to, reply) => {
                let n = self
                    .read_index()
                    .entries
                    .values()
                    .filter(|e| e.seq <= up_to && e.state.status.is_queued() && !e.late)
                    .count() as u64;
                if n > 0 {
                    g.push(Record::MarkLate { up_to });
                }
                g.replies.push(Reply::Count(reply, n));
            }
            WriteOp::Purge(endpoint_id, reply) => {
                let n = {
                    let ix = self.read_index();
                    ix.syms.get(&endpoint_id).map_or(0, |ep| ix.queue_depth(ep))
                };
                g.push(Record::Purge { endpoint_id });
                g.replies.push(Reply::Count(reply, n));
            }
            WriteOp::PruneSeen(cutoff) => {
                self.index
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .prune_seen(cutoff);
                return;
            }
            WriteOp::Retain {
                cutoff_ms,
                max_finished,
                reply,
            } => {
                let victims =
                    self.read_index()
                        .retention_victims(cutoff_ms, max_finished, RETAIN_BATCH);
                let items = self.read_index().drop_items(&victims);
                let n = items.len() as u64;
                if n > 0 {
                    g.push(Record::Drop { items });
                }
                self.commit(g);
                let mut compacted = Ok(true);
                for _ in 0..COMPACT_PER_PASS {
                    compacted = self.compact();
                    if !matches!(compacted, Ok(true)) {
                        break;
                    }
                }
                let _ = reply.send(compacted.map(|_| n));
                return;
            }
            WriteOp::Import(items, reply) => {
                self.build_import(&mut g, items);
                g.replies.push(Reply::Done(reply));
            }
            WriteOp::ImportCounters(counters, reply) => {
                g.push(Record::Checkpoint {
                    next_seq: self.next_seq,
                    next_position: self.next_position,
                    endpoints: counters,
                });
                g.replies.push(Reply::Done(reply));
            }
            other => return fail_op(other, "internal: not a lone request"),
        }
        self.commit(g);
    }

    /// Deliveries of an old store, with their state and attempts, in the
    /// order given (queue order); held ones are skipped.
    fn build_import(&mut self, g: &mut Group, items: Vec<Imported>) {
        let now = herald_shared::time::now_ms();
        for item in items {
            let Some(id) = IdKey::parse(&item.delivery.delivery_id) else {
                continue;
            };
            if self.is_duplicate(g, id, false) {
                continue;
            }
            g.ids.insert(id);
            let seq = self.take_seq();
            let mut state = item.state;
            let parked = state.status.is_queued() && item.old_position == 0;
            if state.status.is_queued() && !parked {
                state.position = self.take_position();
            }
            g.push(Record::Accept(Box::new(Accept {
                seq,
                stamp: Stamp { epoch: 0, seq },
                accepted_at_ms: now,
                origin: Origin::Carried,
                parked,
                state,
                delivery: convert::delivery_rec(item.delivery),
            })));
            g.push_history(seq, item.attempts);
        }
    }

    /// The `Queue` record that moves `slot`'s parked deliveries into their
    /// queues in the slot's one order ([`super::order::merge`]), and their
    /// endpoints.
    fn unpark_record(&mut self, slot: u32) -> (Option<Record>, Vec<String>) {
        let (mut items, endpoints) = {
            let ix = self.read_index();
            let Some(parked) = ix.parked.get(&slot) else {
                return (None, Vec::new());
            };
            let mut items = Vec::with_capacity(parked.len());
            let mut endpoints: Vec<String> = Vec::new();
            for seq in parked {
                let Some(e) = ix.entries.get(seq) else {
                    continue;
                };
                items.push((e.stamp, e.id, *seq));
                let name = ix.syms.name(e.endpoint);
                if !endpoints.iter().any(|x| x.as_str() == &**name) {
                    endpoints.push(name.to_string());
                }
            }
            (items, endpoints)
        };
        super::order::merge(&mut items);
        let items = items
            .into_iter()
            .map(|(_, _, seq)| (seq, self.take_position()))
            .collect();
        (Some(Record::Queue { slot, items }), endpoints)
    }

    /// Compacts the oldest sealed segment if little of it is live: its live
    /// deliveries are written again at the end of the log (with their
    /// attempts), the ids it remembered are written again, the counters are
    /// checkpointed, and the segment is deleted. Returns whether it did.
    fn compact(&mut self) -> Result<bool> {
        let segments = self.log.segments();
        let Some(oldest) = segments
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .next()
            .copied()
        else {
            return Ok(false);
        };
        if oldest >= self.log.active_segment() {
            return Ok(false);
        }
        if !worth_compacting(&self.sealed_segments()) {
            return Ok(false);
        }
        let records = self.log.read_segment(oldest)?;
        let mut g = self.group()?;
        let window_start = herald_shared::time::now_ms() - DEDUP_WINDOW_MS;
        let mut seen = Vec::new();
        for (loc, r) in records {
            match r {
                Record::Accept(a) => self.carry(&mut g, loc, *a)?,
                Record::Drop { items } => {
                    seen.extend(items.into_iter().map(|(_, id, at)| (id, at)));
                }
                Record::Seen { ids } => seen.extend(ids),
                _ => {}
            }
        }
        {
            let ix = self.read_index();
            seen.retain(|(id, at)| *at >= window_start && !ix.ids.contains_key(id));
        }
        self.remember(seen)?;
        g.push(self.checkpoint());
        self.commit(g);
        self.log.remove(oldest).map_err(LogError::Io)?;
        self.index
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .segs
            .remove(&oldest);
        tracing::debug!(segment = oldest, "store segment compacted");
        Ok(true)
    }

    /// (live bytes, length) of each sealed segment, oldest first.
    fn sealed_segments(&self) -> Vec<(u64, u64)> {
        let active = self.log.active_segment();
        let seg_numbers: Vec<u32> = self
            .log
            .segments()
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .filter(|s| *s < active)
            .collect();
        let ix = self.read_index();
        seg_numbers
            .into_iter()
            .map(|s| {
                let live = ix.segs.get(&s).map_or(0, |c| c.live_bytes);
                (live, self.log.segment_len(s))
            })
            .collect()
    }

    /// Writes ids to the ids log (before the main log lets go of them),
    /// and deletes the ids-log segments that are all outside the window.
    fn remember(&mut self, ids: Vec<(IdKey, i64)>) -> Result<()> {
        let window_start = herald_shared::time::now_ms() - DEDUP_WINDOW_MS;
        if let Some(newest) = ids.iter().map(|(_, at)| *at).max() {
            let mut f = self.seen_log.frame().map_err(LogError::Io)?;
            let _ = f.push(&Record::Seen { ids });
            self.seen_log.commit(f).map_err(|e| match e {
                CommitError::Write(e) => LogError::Io(e),
                CommitError::Sync(e) => {
                    tracing::error!(error = %e, "ids log sync failed; exiting to recover from disk");
                    std::process::exit(70);
                }
            })?;
            let seg = self.seen_log.active_segment();
            let n = self.seen_newest.entry(seg).or_insert(newest);
            *n = (*n).max(newest);
        }
        let active = self.seen_log.active_segment();
        let expired: Vec<u32> = self
            .seen_newest
            .iter()
            .filter(|(seg, newest)| **seg < active && **newest < window_start)
            .map(|(seg, _)| *seg)
            .collect();
        for seg in expired {
            self.seen_log.remove(seg).map_err(LogError::Io)?;
            self.seen_newest.remove(&seg);
        }
        Ok(())
    }

    /// Writes a delivery accepted at `loc` again, with its current state
    /// and its attempts, if `loc` is still its live copy.
    fn carry(&mut self, g: &mut Group, loc: Loc, mut a: Accept) -> Result<()> {
        let Some(e) = self
            .read_index()
            .entries
            .get(&a.seq)
            .filter(|e| e.loc == loc)
            .cloned()
        else {
            return Ok(());
        };
        let mut chain = Vec::new();
        let mut at = e.last_attempt;
        let segments = self.log.segments();
        while let Some(l) = at {
            let Record::Attempt(att) = super::segment::read(&segments, l)? else {
                break;
            };
            at = att.prev;
            chain.push(*att);
        }
        a.origin = Origin::Carried;
        a.parked = e.state.status.is_queued() && e.state.position == 0;
        a.state = e.state;
        a.delivery.late_backlog = e.late;
        g.push(Record::Accept(Box::new(a)));
        let mut prev = None;
        for mut att in chain.into_iter().rev() {
            att.carried = true;
            att.prev = prev;
            prev = Some(g.push(Record::Attempt(Box::new(att))));
        }
        Ok(())
    }

    fn checkpoint(&self) -> Record {
        let ix = self.read_index();
        Record::Checkpoint {
            next_seq: self.next_seq,
            next_position: self.next_position,
            endpoints: ix
                .counters
                .iter()
                .map(|(ep, c)| (ix.syms.name(*ep).to_string(), c.clone()))
                .collect(),
        }
    }
}

/// The error a request gets when its commit did not happen.
fn failed<T>(msg: &str) -> Result<T> {
    Err(Error::Store(LogError::Io(std::io::Error::other(
        msg.to_string(),
    ))))
}

/// Answers a request that could not even be started.
fn fail_op(op: WriteOp, msg: &str) {
    match op {
        WriteOp::Insert { reply, .. } | WriteOp::InsertHanded { reply, .. } => {
            drop(reply.send(failed(msg)))
        }
        WriteOp::Attempt { reply, .. } => {
            if let Some(r) = reply {
                drop(r.send(failed(msg)));
            }
        }
        WriteOp::Unpark(_, reply) => drop(reply.send(failed(msg))),
        WriteOp::DropHanded(_, reply)
        | WriteOp::MarkLate(_, reply)
        | WriteOp::Purge(_, reply)
        | WriteOp::Retain { reply, .. } => drop(reply.send(failed(msg))),
        WriteOp::Import(_, reply) | WriteOp::ImportCounters(_, reply) => {
            drop(reply.send(failed(msg)))
        }
        WriteOp::ResetStreak(_) | WriteOp::PruneSeen(_) => {}
    }
}

fn note_endpoint(res: &mut Inserted, endpoint_id: &str) {
    res.stored += 1;
    match res.endpoints.iter_mut().find(|(e, _)| e == endpoint_id) {
        Some((_, n)) => *n += 1,
        None => res.endpoints.push((endpoint_id.to_string(), 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::worth_compacting;
    use proptest::prelude::*;

    #[test]
    fn a_mostly_dead_oldest_segment_is_compacted() {
        assert!(worth_compacting(&[(100, 4096)]));
        assert!(!worth_compacting(&[(2000, 4096)]), "mostly live, alone");
        assert!(!worth_compacting(&[]));
        assert!(!worth_compacting(&[(0, 0)]), "nothing to free");
    }

    #[test]
    fn a_live_head_moves_once_enough_is_dead_behind_it() {
        let head = (1133, 4134);
        assert!(!worth_compacting(&[head, (0, 1000)]));
        assert!(worth_compacting(&[head, (0, 4096), (0, 4096)]));
    }

    proptest! {
        /// More dead segments behind the head never stop a compaction,
        /// and enough of them always start one: a live head cannot hold
        /// an ever-growing dead tail on disk.
        #[test]
        fn dead_segments_behind_the_head_unblock_it(
            segs in proptest::collection::vec((0u64..5000, 0u64..5000), 1..8),
            dead_len in 1u64..5000,
        ) {
            let segs: Vec<(u64, u64)> = segs.into_iter().map(|(a, b)| (a.min(b), b)).collect();
            let mut more = segs.clone();
            more.push((0, dead_len));
            prop_assert!(!worth_compacting(&segs) || worth_compacting(&more));
            let head_live = segs[0].0;
            let tail = (head_live * 4).div_ceil(dead_len) as usize;
            more.extend(std::iter::repeat_n((0, dead_len), tail));
            prop_assert!(worth_compacting(&more));
        }
    }
}
