//! The store's in-memory indexes, rebuilt at start by replaying the log.
//!
//! Every change reaches the index through [`Index::apply`], with the record
//! that made it durable: the writer applies each record after its commit,
//! and recovery applies the same records in log order, so the index after
//! a restart is the index before it (up to log retention, which is applied
//! again after replay).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::record::*;

/// An interned string (endpoint, tenant or event type).
pub type Sym = u32;

/// Interned strings; never shrinks (endpoints, tenants and types are few).
#[derive(Default)]
pub struct Syms {
    names: Vec<Arc<str>>,
    ids: HashMap<Arc<str>, Sym>,
}

impl Syms {
    /// The symbol of `s`, interning it.
    pub fn intern(&mut self, s: &str) -> Sym {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.names.len() as Sym;
        let name: Arc<str> = Arc::from(s);
        self.names.push(name.clone());
        self.ids.insert(name, id);
        id
    }

    /// The symbol of `s`, if interned.
    pub fn get(&self, s: &str) -> Option<Sym> {
        self.ids.get(s).copied()
    }

    /// The string of a symbol.
    pub fn name(&self, id: Sym) -> &Arc<str> {
        &self.names[id as usize]
    }
}

/// What the index keeps of one delivery.
#[derive(Debug, Clone)]
pub struct Entry {
    /// This store's number for it.
    pub seq: u64,
    /// Its accept record (the newest copy).
    pub loc: Loc,
    /// Its newest attempt record; each links the one before.
    pub last_attempt: Option<Loc>,
    /// Bytes of its records counted live in its accept's segment.
    pub bytes: u32,
    pub id: IdKey,
    pub stamp: Stamp,
    pub endpoint: Sym,
    pub tenant: Sym,
    pub event_type: Sym,
    pub slot: u16,
    /// Created (published) at, ms: the log's order.
    pub created_ms: i64,
    /// First accepted by this agent at, ms: the idempotency window's clock.
    pub accepted_at_ms: i64,
    /// Hash of the resource id (0: none), to filter without a read.
    pub resource: u32,
    pub late: bool,
    pub state: DeliveryState,
}

/// A place in the log lists: (created, seq). Lists are read newest first
/// by (created, delivery id): deliveries of one millisecond are sorted by
/// id when read (`read::scan`), which keeps the key at 16 bytes.
pub type LogKey = (i64, u64);

/// Bytes of a segment that hold live deliveries: their accept records,
/// and their attempt records while they sit in the same segment.
#[derive(Debug, Default, Clone, Copy)]
pub struct SegCount {
    pub live_bytes: u64,
}

/// The indexes. Guarded by the store's lock; changed only by `apply`
/// (and retention's in-memory drops).
#[derive(Default)]
pub struct Index {
    pub syms: Syms,
    pub entries: Entries,
    /// Held deliveries by id.
    pub ids: HashMap<IdKey, u64>,
    /// Ids no longer held but accepted within the idempotency window.
    pub seen: HashMap<IdKey, i64>,
    /// endpoint → position → seq: the queues, in delivery order.
    pub queues: HashMap<Sym, BTreeMap<u64, u64>>,
    /// slot → seqs parked until its handoff completes.
    pub parked: BTreeMap<u32, BTreeSet<u64>>,
    pub by_endpoint: HashMap<Sym, BTreeSet<LogKey>>,
    pub by_tenant: HashMap<Sym, BTreeSet<LogKey>>,
    /// (finished at, seq): finished deliveries, oldest first, for retention.
    pub finished: BTreeSet<(i64, u64)>,
    pub counters: HashMap<Sym, Counters>,
    pub segs: BTreeMap<u32, SegCount>,
    pub next_seq: u64,
    pub next_position: u64,
}

/// Hash of a resource id for [`Entry::resource`] (0 only for none).
pub fn resource_hash(id: &str) -> u32 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    if id.is_empty() {
        return 0;
    }
    BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(id) as u32
        | 1
}

/// The held deliveries by seq: the entries in a slab whose freed slots are
/// reused, and a small map from seq to slot. (A map of whole entries kept
/// up to twice their number in empty buckets.)
#[derive(Default)]
pub struct Entries {
    slots: Vec<Option<Entry>>,
    free: Vec<u32>,
    by_seq: HashMap<u64, u32>,
}

impl Entries {
    /// The entry of `seq`.
    pub fn get(&self, seq: &u64) -> Option<&Entry> {
        let i = *self.by_seq.get(seq)?;
        self.slots[i as usize].as_ref()
    }

    /// The entry of `seq`, to change.
    pub fn get_mut(&mut self, seq: &u64) -> Option<&mut Entry> {
        let i = *self.by_seq.get(seq)?;
        self.slots[i as usize].as_mut()
    }

    /// Whether `seq` is held.
    pub fn contains_key(&self, seq: &u64) -> bool {
        self.by_seq.contains_key(seq)
    }

    /// Holds `e` (under `e.seq`, which must not be held).
    pub fn insert(&mut self, e: Entry) {
        let seq = e.seq;
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(e);
                i
            }
            None => {
                self.slots.push(Some(e));
                (self.slots.len() - 1) as u32
            }
        };
        self.by_seq.insert(seq, i);
    }

    /// Lets go of `seq`'s entry.
    pub fn remove(&mut self, seq: &u64) -> Option<Entry> {
        let i = self.by_seq.remove(seq)?;
        self.free.push(i);
        self.slots[i as usize].take()
    }

    /// Every entry.
    pub fn values(&self) -> impl Iterator<Item = &Entry> {
        self.slots.iter().flatten()
    }

    /// Every entry, to change.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Entry> {
        self.slots.iter_mut().flatten()
    }

    /// How many are held.
    pub fn len(&self) -> usize {
        self.by_seq.len()
    }
}

impl Index {
    /// An empty index.
    pub fn new() -> Self {
        Index {
            next_seq: 1,
            next_position: 1,
            ..Default::default()
        }
    }

    /// The counters of `endpoint`, created empty.
    pub fn counters_mut(&mut self, endpoint: Sym) -> &mut Counters {
        self.counters.entry(endpoint).or_default()
    }

    /// Applies one durable record found at `loc`.
    /// `size` is the record's size on disk.
    pub fn apply(&mut self, loc: Loc, size: u32, r: &Record) {
        match r {
            Record::Accept(a) => self.accept(loc, size, a),
            Record::Attempt(a) => self.attempt(loc, size, a),
            Record::Queue { items, .. } => {
                for &(seq, position) in items {
                    self.queue_parked(seq, position);
                }
            }
            Record::Drop { items } => {
                for &(seq, id, accepted_at) in items {
                    self.remove(seq);
                    self.seen.insert(id, accepted_at);
                }
            }
            Record::Purge { endpoint_id } => self.purge(endpoint_id),
            Record::MarkLate { up_to } => {
                for e in self.entries.values_mut() {
                    if e.state.status.is_queued() && e.seq <= *up_to {
                        e.late = true;
                    }
                }
            }
            Record::ResetStreak { endpoint_id } => {
                let ep = self.syms.intern(endpoint_id);
                self.counters_mut(ep).deliveries_failed_in_a_row = 0;
            }
            Record::Seen { ids } => {
                for (id, at) in ids {
                    if !self.ids.contains_key(id) {
                        self.seen.insert(*id, *at);
                    }
                }
            }
            Record::Checkpoint {
                next_seq,
                next_position,
                endpoints,
            } => {
                self.next_seq = self.next_seq.max(*next_seq);
                self.next_position = self.next_position.max(*next_position);
                self.counters.clear();
                for (id, c) in endpoints {
                    let ep = self.syms.intern(id);
                    self.counters.insert(ep, c.clone());
                }
            }
        }
    }

    fn accept(&mut self, loc: Loc, size: u32, a: &Accept) {
        let d = &a.delivery;
        let Some(id) = IdKey::parse(&d.delivery_id) else {
            tracing::error!(seq = a.seq, "stored delivery has a malformed id; skipped");
            return;
        };
        if a.origin == Origin::Carried {
            self.remove(a.seq);
        } else if self.entries.contains_key(&a.seq) {
            return;
        }
        let endpoint = self.syms.intern(&d.endpoint_id);
        let entry = Entry {
            seq: a.seq,
            loc,
            last_attempt: None,
            bytes: size,
            id,
            stamp: a.stamp,
            endpoint,
            tenant: self.syms.intern(&d.tenant_id),
            event_type: self.syms.intern(&d.event_type),
            slot: d.slot as u16,
            created_ms: d.published_at_ms,
            accepted_at_ms: a.accepted_at_ms,
            resource: resource_hash(&d.resource_id),
            late: d.late_backlog,
            state: a.state,
        };
        self.next_seq = self.next_seq.max(a.seq + 1);
        self.next_position = self.next_position.max(a.state.position + 1);
        self.insert(entry, a.parked);
        if a.origin == Origin::New {
            let c = self.counters_mut(endpoint);
            c.events += 1;
            c.last_event_at_ms = c.last_event_at_ms.max(a.accepted_at_ms);
        }
    }

    fn insert(&mut self, e: Entry, parked: bool) {
        let seq = e.seq;
        self.ids.insert(e.id, seq);
        self.seen.remove(&e.id);
        let key = (e.created_ms, seq);
        self.by_endpoint.entry(e.endpoint).or_default().insert(key);
        self.by_tenant.entry(e.tenant).or_default().insert(key);
        if e.state.status.is_queued() {
            if parked || e.state.position == 0 {
                self.parked
                    .entry(u32::from(e.slot))
                    .or_default()
                    .insert(seq);
            } else {
                self.queues
                    .entry(e.endpoint)
                    .or_default()
                    .insert(e.state.position, seq);
            }
        } else {
            self.finished.insert((e.state.finished_at_ms, seq));
        }
        self.segs.entry(e.loc.seg).or_default().live_bytes += u64::from(e.bytes);
        self.entries.insert(e);
    }

    /// Forgets a delivery (its id is not remembered: `Drop` does that).
    fn remove(&mut self, seq: u64) -> Option<Entry> {
        let e = self.entries.remove(&seq)?;
        self.ids.remove(&e.id);
        let key = (e.created_ms, seq);
        remove_key(&mut self.by_endpoint, e.endpoint, &key);
        remove_key(&mut self.by_tenant, e.tenant, &key);
        self.unqueue(seq, &e);
        if let Some(c) = self.segs.get_mut(&e.loc.seg) {
            c.live_bytes = c.live_bytes.saturating_sub(u64::from(e.bytes));
        }
        Some(e)
    }

    /// Takes a delivery out of its queue, parking or finished set.
    fn unqueue(&mut self, seq: u64, e: &Entry) {
        if !e.state.status.is_queued() {
            self.finished.remove(&(e.state.finished_at_ms, seq));
        } else if e.state.position == 0 {
            let slot = u32::from(e.slot);
            if let Some(p) = self.parked.get_mut(&slot) {
                p.remove(&seq);
                if p.is_empty() {
                    self.parked.remove(&slot);
                }
            }
        } else if let Some(q) = self.queues.get_mut(&e.endpoint) {
            q.remove(&e.state.position);
            if q.is_empty() {
                self.queues.remove(&e.endpoint);
            }
        }
    }

    fn queue_parked(&mut self, seq: u64, position: u64) {
        let Some(e) = self.entries.get(&seq).cloned() else {
            return;
        };
        if !e.state.status.is_queued() || e.state.position != 0 {
            return;
        }
        self.unqueue(seq, &e);
        self.next_position = self.next_position.max(position + 1);
        let ep = e.endpoint;
        if let Some(entry) = self.entries.get_mut(&seq) {
            entry.state.position = position;
        }
        self.queues.entry(ep).or_default().insert(position, seq);
    }

    fn attempt(&mut self, loc: Loc, size: u32, a: &Attempt) {
        let Some(e) = self.entries.get(&a.seq).cloned() else {
            return; // purged meanwhile
        };
        if loc.seg == e.loc.seg {
            // Compaction moves it with its delivery.
            self.segs.entry(loc.seg).or_default().live_bytes += u64::from(size);
            if let Some(entry) = self.entries.get_mut(&a.seq) {
                entry.bytes += size;
            }
        }
        if a.carried {
            if let Some(entry) = self.entries.get_mut(&a.seq) {
                entry.last_attempt = Some(loc);
            }
            return;
        }
        if !e.state.status.is_queued() {
            return;
        }
        let mut st = e.state;
        st.attempts += 1;
        st.last_status_code = a.log.response_status;
        match a.outcome {
            Outcome::Succeeded | Outcome::FailedForGood => {
                st.status = if a.outcome == Outcome::Succeeded {
                    Status::Succeeded
                } else {
                    Status::Failed
                };
                st.next_attempt_at_ms = 0;
                st.finished_at_ms = a.at_ms;
                st.position = 0;
            }
            Outcome::Retry(at) => {
                st.status = Status::Retrying;
                st.next_attempt_at_ms = at;
            }
            Outcome::Held => {
                st.status = Status::Retrying;
                st.next_attempt_at_ms = 0;
            }
        }
        if !st.status.is_queued() {
            self.unqueue(a.seq, &e);
            self.finished.insert((st.finished_at_ms, a.seq));
        }
        if let Some(entry) = self.entries.get_mut(&a.seq) {
            entry.state = st;
            entry.last_attempt = Some(loc);
        }
        count_attempt(self.counters_mut(e.endpoint), a, e.id);
    }

    fn purge(&mut self, endpoint_id: &str) {
        let Some(ep) = self.syms.get(endpoint_id) else {
            return;
        };
        let seqs: Vec<u64> = self
            .by_endpoint
            .get(&ep)
            .map(|s| s.iter().map(|k| k.1).collect())
            .unwrap_or_default();
        for seq in seqs {
            // Remembered like any dropped delivery; once the segment of the
            // purge is compacted the ids go, which is harmless: nothing is
            // routed to a deleted endpoint, and its id is never reused.
            if let Some(e) = self.remove(seq) {
                self.seen.insert(e.id, e.accepted_at_ms);
            }
        }
        // Parked deliveries are in the log lists too, so none is left.
        self.counters.remove(&ep);
    }

    /// Queued deliveries of `endpoint` (in its queue or parked).
    pub fn queue_depth(&self, endpoint: Sym) -> u64 {
        let queued = self.queues.get(&endpoint).map_or(0, |q| q.len() as u64);
        let parked = self
            .parked
            .values()
            .flatten()
            .filter(|s| self.entries.get(s).is_some_and(|e| e.endpoint == endpoint))
            .count() as u64;
        queued + parked
    }

    /// Up to `batch` finished deliveries that retention drops: those that
    /// finished before `cutoff_ms`, and the oldest beyond `max_finished`.
    pub fn retention_victims(&self, cutoff_ms: i64, max_finished: u64, batch: usize) -> Vec<u64> {
        let over = (self.finished.len() as u64).saturating_sub(max_finished);
        let mut victims = Vec::new();
        for &(finished, seq) in &self.finished {
            if (victims.len() as u64) >= over && finished >= cutoff_ms {
                break;
            }
            victims.push(seq);
            if victims.len() >= batch {
                break;
            }
        }
        victims
    }

    /// What a `Drop` of `seqs` records: each held one with its id and
    /// acceptance time.
    pub fn drop_items(&self, seqs: &[u64]) -> Vec<(u64, IdKey, i64)> {
        seqs.iter()
            .filter_map(|s| self.entries.get(s).map(|e| (*s, e.id, e.accepted_at_ms)))
            .collect()
    }

    /// Forgets seen ids accepted before `cutoff_ms`.
    pub fn prune_seen(&mut self, cutoff_ms: i64) {
        self.seen.retain(|_, at| *at >= cutoff_ms);
    }
}

fn remove_key(index: &mut HashMap<Sym, BTreeSet<LogKey>>, owner: Sym, key: &LogKey) {
    if let Some(s) = index.get_mut(&owner) {
        s.remove(key);
        if s.is_empty() {
            index.remove(&owner);
        }
    }
}

/// Bytes of the response body kept in the counters' last success/failure.
const BRIEF_BODY: usize = 256;

fn brief(a: &Attempt, delivery: IdKey) -> AttemptBrief {
    let mut body = a.log.response_body.clone();
    if body.len() > BRIEF_BODY {
        let mut cut = BRIEF_BODY;
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        body.truncate(cut);
    }
    AttemptBrief {
        delivery: Some(delivery),
        at_ms: a.log.started_at_ms,
        status_code: a.log.response_status,
        error_kind: a.log.error_kind,
        error: a.log.error.clone(),
        response_body: body,
        duration_ms: a.log.duration_ms,
    }
}

fn count_attempt(c: &mut Counters, a: &Attempt, delivery: IdKey) {
    c.attempts += 1;
    match a.outcome {
        Outcome::Succeeded => {
            c.successes += 1;
            c.failures_since_last_success = 0;
            c.deliveries_failed_in_a_row = 0;
            c.last_success = Some(brief(a, delivery));
        }
        Outcome::Retry(_) | Outcome::Held => {
            c.failures_since_last_success += 1;
            c.last_failure = Some(brief(a, delivery));
        }
        Outcome::FailedForGood => {
            c.failures += 1;
            c.failures_since_last_success += 1;
            c.deliveries_failed_in_a_row += 1;
            c.last_failure = Some(brief(a, delivery));
        }
    }
}
