//! What the store writes: Herald's own record types and their encoding,
//! format version [`FORMAT`]. Protobuf messages never reach the disk, so
//! editing `agent.proto` cannot change what is on it. Each record is one
//! kind byte followed by its fields in the order written here (see
//! `codec.rs`); a new field goes at the end of its record with a new
//! format version, or into a new kind of record that replaces the old one
//! (as `CHECKPOINT_2` did `CHECKPOINT`), and decoding of every older
//! version and kind stays.

use super::codec::{Dec, DecodeError, Enc};

/// The version of the record encoding this build writes (and reads).
pub const FORMAT: u32 = 1;

/// Where a record lives: segment number and byte offset of its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Loc {
    /// Segment number (its file is `seg-{seg:010}.log`).
    pub seg: u32,
    /// Offset of the record's header in the segment.
    pub off: u32,
}

/// A delivery id (`dlv_` + 24 hex digits) as its 12 bytes; their order is
/// the order of the strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct IdKey(pub [u8; 12]);

impl IdKey {
    /// Parses `dlv_` + 24 lowercase hex digits.
    pub fn parse(id: &str) -> Option<IdKey> {
        let hex = id.strip_prefix("dlv_")?.as_bytes();
        if hex.len() != 24 {
            return None;
        }
        let digit = |b: u8| match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            _ => None,
        };
        let mut out = [0u8; 12];
        for (i, pair) in hex.chunks(2).enumerate() {
            out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
        }
        Some(IdKey(out))
    }

    /// The key whose 96 bits are the low bits of `n` (tests).
    #[cfg(test)]
    pub fn from_num(n: u128) -> IdKey {
        let mut out = [0u8; 12];
        out.copy_from_slice(&n.to_be_bytes()[4..]);
        IdKey(out)
    }
}

impl std::fmt::Display for IdKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dlv_")?;
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// Orders a delivery within its slot on every agent: the slot-map epoch
/// under which an agent accepted it, then that agent's sequence number.
/// Within one epoch a slot has one owner, so stamps of one slot never tie
/// and their order is the order of acceptance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Stamp {
    /// Slot-map epoch at acceptance.
    pub epoch: u64,
    /// The accepting agent's sequence number.
    pub seq: u64,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Queued, not attempted yet.
    Pending = 1,
    /// Queued, attempted and failed; another attempt is scheduled.
    Retrying = 2,
    /// Delivered.
    Succeeded = 3,
    /// The retry schedule is spent.
    Failed = 4,
}

impl Status {
    fn from_u8(v: u8) -> Result<Status, DecodeError> {
        Ok(match v {
            1 => Status::Pending,
            2 => Status::Retrying,
            3 => Status::Succeeded,
            4 => Status::Failed,
            _ => return Err(DecodeError("unknown status")),
        })
    }

    /// Still queued (or parked).
    pub fn is_queued(self) -> bool {
        matches!(self, Status::Pending | Status::Retrying)
    }
}

/// A delivery's mutable state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryState {
    /// Pending, retrying, succeeded or failed.
    pub status: Status,
    /// Attempts made.
    pub attempts: u32,
    /// When the next attempt is due (ms); 0: now (or none).
    pub next_attempt_at_ms: i64,
    /// When it finished (ms); 0 while queued.
    pub finished_at_ms: i64,
    /// Status code of the last attempt; 0 when it got no answer.
    pub last_status_code: u32,
    /// Place in its endpoint's queue; 0 while parked or finished.
    pub position: u64,
}

impl DeliveryState {
    /// A delivery just accepted.
    pub fn pending() -> Self {
        DeliveryState {
            status: Status::Pending,
            attempts: 0,
            next_attempt_at_ms: 0,
            finished_at_ms: 0,
            last_status_code: 0,
            position: 0,
        }
    }
}

/// One event for one endpoint, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeliveryRec {
    /// `dlv_…`.
    pub delivery_id: String,
    pub endpoint_id: String,
    pub tenant_id: String,
    pub slot: u32,
    pub event_id: String,
    pub event_type: String,
    pub payload_json: String,
    /// The publisher named a resource (its fields may still be empty).
    pub has_resource: bool,
    pub resource_type: String,
    pub resource_id: String,
    /// The publisher named an actor.
    pub has_actor: bool,
    pub actor_type: String,
    pub actor_id: String,
    pub actor_name: String,
    pub occurred_at_ms: i64,
    /// When it was created (the publish or the resend).
    pub published_at_ms: i64,
    /// The delivery this one re-sends ("" when none).
    pub resend_of: String,
    /// Made by a test-event call.
    pub test: bool,
    /// Delivered after newer events (its agent was given up for dead).
    pub late_backlog: bool,
    /// W3C trace context of the publish.
    pub traceparent: String,
    pub tracestate: String,
}

/// A delivery accepted into this store (from a publish, a handoff, or
/// carried forward by compaction, which writes its current state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accept {
    /// This store's number for it.
    pub seq: u64,
    /// Its order within its slot.
    pub stamp: Stamp,
    /// When this agent first accepted it (ms), for the idempotency window.
    pub accepted_at_ms: i64,
    /// Where it came from; says what it adds to the counters.
    pub origin: Origin,
    /// Held aside until its slot's handoff completes.
    pub parked: bool,
    /// State at the time of writing.
    pub state: DeliveryState,
    /// The delivery.
    pub delivery: DeliveryRec,
}

/// How a delivery came into this store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Published (or re-sent, or a test): counts as an event.
    New = 0,
    /// Handed over by another agent, which counted it already.
    Handed = 1,
    /// Re-written by compaction: replaces the earlier copy with its
    /// current state; the attempts that follow it are history only.
    Carried = 2,
}

/// What an attempt meant for its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered: finished.
    Succeeded,
    /// Failed; next attempt at this time (ms).
    Retry(i64),
    /// Failed; waits at the head until the endpoint is enabled again.
    Held,
    /// Failed, and the schedule is spent: finished.
    FailedForGood,
}

/// One HTTP attempt as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AttemptLog {
    pub number: u32,
    pub started_at_ms: i64,
    pub duration_ms: u32,
    pub method: String,
    pub url: String,
    pub request_headers: Vec<(String, String)>,
    pub response_status: u32,
    pub response_headers: Vec<(String, String)>,
    pub response_body: String,
    pub response_body_truncated: bool,
    /// `herald.v1.ErrorKind` number (kept as it is on the wire of the API).
    pub error_kind: u8,
    pub error: String,
}

/// An attempt of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub seq: u64,
    /// History only (re-written by compaction): state and counters stay.
    pub carried: bool,
    /// The delivery's previous attempt record, if any.
    pub prev: Option<Loc>,
    /// When it was recorded (ms): the finish time of a final outcome.
    pub at_ms: i64,
    pub outcome: Outcome,
    pub log: AttemptLog,
}

/// An endpoint's counters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Counters {
    pub events: u64,
    pub attempts: u64,
    pub successes: u64,
    pub failures: u64,
    pub failures_since_last_success: u64,
    pub deliveries_failed_in_a_row: u32,
    pub last_event_at_ms: i64,
    pub last_success: Option<AttemptBrief>,
    pub last_failure: Option<AttemptBrief>,
}

/// The short form of an attempt the counters keep.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AttemptBrief {
    /// The delivery attempted (`None` when read from a checkpoint written
    /// before briefs named it).
    pub delivery: Option<IdKey>,
    pub at_ms: i64,
    pub status_code: u32,
    pub error_kind: u8,
    pub error: String,
    pub response_body: String,
    pub duration_ms: u32,
}

/// Every record kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A delivery stored.
    Accept(Box<Accept>),
    /// An attempt made.
    Attempt(Box<Attempt>),
    /// A slot's parked deliveries joined their queues at these positions.
    Queue { slot: u32, items: Vec<(u64, u64)> },
    /// Deliveries handed to another agent or dropped by retention:
    /// forgotten here, their ids remembered for the idempotency window.
    Drop { items: Vec<(u64, IdKey, i64)> },
    /// An endpoint was deleted: everything of it is forgotten.
    Purge { endpoint_id: String },
    /// Queued deliveries up to this seq are late backlog.
    MarkLate { up_to: u64 },
    /// The endpoint's failed-in-a-row count starts over.
    ResetStreak { endpoint_id: String },
    /// Ids of deliveries no longer held but accepted within the
    /// idempotency window, with when they were accepted.
    Seen { ids: Vec<(IdKey, i64)> },
    /// Counters as of this point in the log; later records add to them.
    Checkpoint {
        next_seq: u64,
        next_position: u64,
        endpoints: Vec<(String, Counters)>,
    },
}

const ACCEPT: u8 = 1;
const ATTEMPT: u8 = 2;
const QUEUE: u8 = 3;
const DROP: u8 = 4;
const PURGE: u8 = 5;
const MARK_LATE: u8 = 6;
const RESET_STREAK: u8 = 7;
const SEEN: u8 = 8;
/// Counters whose briefs have no delivery id (read only).
const CHECKPOINT: u8 = 9;
/// Counters whose briefs name their delivery.
const CHECKPOINT_2: u8 = 10;

impl Record {
    /// Appends the kind byte and the fields.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        let mut e = Enc(buf);
        match self {
            Record::Accept(a) => {
                e.u8(ACCEPT);
                encode_accept(&mut e, a);
            }
            Record::Attempt(a) => {
                e.u8(ATTEMPT);
                encode_attempt(&mut e, a);
            }
            Record::Queue { slot, items } => {
                e.u8(QUEUE);
                e.var(u64::from(*slot));
                e.var(items.len() as u64);
                for (seq, pos) in items {
                    e.var(*seq);
                    e.var(*pos);
                }
            }
            Record::Drop { items } => {
                e.u8(DROP);
                e.var(items.len() as u64);
                for (seq, id, at) in items {
                    e.var(*seq);
                    encode_id(&mut e, *id);
                    e.int(*at);
                }
            }
            Record::Purge { endpoint_id } => {
                e.u8(PURGE);
                e.str(endpoint_id);
            }
            Record::MarkLate { up_to } => {
                e.u8(MARK_LATE);
                e.var(*up_to);
            }
            Record::ResetStreak { endpoint_id } => {
                e.u8(RESET_STREAK);
                e.str(endpoint_id);
            }
            Record::Seen { ids } => {
                e.u8(SEEN);
                e.var(ids.len() as u64);
                for (id, at) in ids {
                    encode_id(&mut e, *id);
                    e.int(*at);
                }
            }
            Record::Checkpoint {
                next_seq,
                next_position,
                endpoints,
            } => {
                e.u8(CHECKPOINT_2);
                e.var(*next_seq);
                e.var(*next_position);
                e.var(endpoints.len() as u64);
                for (id, c) in endpoints {
                    e.str(id);
                    encode_counters(&mut e, c);
                }
            }
        }
    }

    /// Reads a record written by [`Record::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
        Self::decode_with(bytes, true)
    }

    /// Like [`Record::decode`], leaving an `Accept`'s payload empty (recovery
    /// rebuilds indexes, which never hold payloads).
    pub fn decode_without_payload(bytes: &[u8]) -> Result<Record, DecodeError> {
        Self::decode_with(bytes, false)
    }

    fn decode_with(bytes: &[u8], payload: bool) -> Result<Record, DecodeError> {
        let mut d = Dec(bytes);
        let r = match d.u8()? {
            ACCEPT => Record::Accept(Box::new(decode_accept(&mut d, payload)?)),
            ATTEMPT => Record::Attempt(Box::new(decode_attempt(&mut d)?)),
            QUEUE => {
                let slot = d.u32()?;
                let n = d.var()? as usize;
                let mut items = Vec::with_capacity(n.min(4096));
                for _ in 0..n {
                    items.push((d.var()?, d.var()?));
                }
                Record::Queue { slot, items }
            }
            DROP => {
                let n = d.var()? as usize;
                let mut items = Vec::with_capacity(n.min(4096));
                for _ in 0..n {
                    items.push((d.var()?, decode_id(&mut d)?, d.int()?));
                }
                Record::Drop { items }
            }
            PURGE => Record::Purge {
                endpoint_id: d.str()?,
            },
            MARK_LATE => Record::MarkLate { up_to: d.var()? },
            RESET_STREAK => Record::ResetStreak {
                endpoint_id: d.str()?,
            },
            SEEN => {
                let n = d.var()? as usize;
                let mut ids = Vec::with_capacity(n.min(4096));
                for _ in 0..n {
                    ids.push((decode_id(&mut d)?, d.int()?));
                }
                Record::Seen { ids }
            }
            kind @ (CHECKPOINT | CHECKPOINT_2) => {
                let named = kind == CHECKPOINT_2;
                let next_seq = d.var()?;
                let next_position = d.var()?;
                let n = d.var()? as usize;
                let mut endpoints = Vec::with_capacity(n.min(4096));
                for _ in 0..n {
                    endpoints.push((d.str()?, decode_counters(&mut d, named)?));
                }
                Record::Checkpoint {
                    next_seq,
                    next_position,
                    endpoints,
                }
            }
            _ => return Err(DecodeError("unknown record kind")),
        };
        if !d.is_empty() {
            return Err(DecodeError("trailing bytes"));
        }
        Ok(r)
    }
}

/// A delivery id is 96 bits: 12 bytes.
fn encode_id(e: &mut Enc, id: IdKey) {
    e.bytes(&id.0);
}

fn decode_id(d: &mut Dec) -> Result<IdKey, DecodeError> {
    let arr: [u8; 12] = d
        .bytes()?
        .try_into()
        .map_err(|_| DecodeError("id length"))?;
    Ok(IdKey(arr))
}

fn encode_state(e: &mut Enc, s: &DeliveryState) {
    e.u8(s.status as u8);
    e.var(u64::from(s.attempts));
    e.int(s.next_attempt_at_ms);
    e.int(s.finished_at_ms);
    e.var(u64::from(s.last_status_code));
    e.var(s.position);
}

fn decode_state(d: &mut Dec) -> Result<DeliveryState, DecodeError> {
    Ok(DeliveryState {
        status: Status::from_u8(d.u8()?)?,
        attempts: d.u32()?,
        next_attempt_at_ms: d.int()?,
        finished_at_ms: d.int()?,
        last_status_code: d.u32()?,
        position: d.var()?,
    })
}

fn encode_accept(e: &mut Enc, a: &Accept) {
    e.var(a.seq);
    e.var(a.stamp.epoch);
    e.var(a.stamp.seq);
    e.int(a.accepted_at_ms);
    e.u8(a.origin as u8 | (u8::from(a.parked) << 2));
    encode_state(e, &a.state);
    let d = &a.delivery;
    for s in [
        &d.delivery_id,
        &d.endpoint_id,
        &d.tenant_id,
        &d.event_id,
        &d.event_type,
        &d.resource_type,
        &d.resource_id,
        &d.actor_type,
        &d.actor_id,
        &d.actor_name,
        &d.resend_of,
        &d.traceparent,
        &d.tracestate,
    ] {
        e.str(s);
    }
    e.var(u64::from(d.slot));
    e.int(d.occurred_at_ms);
    e.int(d.published_at_ms);
    e.u8(u8::from(d.test)
        | (u8::from(d.late_backlog) << 1)
        | (u8::from(d.has_resource) << 2)
        | (u8::from(d.has_actor) << 3));
    // Last, so that readers of the index fields stop before it.
    e.str(&d.payload_json);
}

fn decode_accept(d: &mut Dec, payload: bool) -> Result<Accept, DecodeError> {
    let seq = d.var()?;
    let stamp = Stamp {
        epoch: d.var()?,
        seq: d.var()?,
    };
    let accepted_at_ms = d.int()?;
    let flags = d.u8()?;
    let origin = match flags & 3 {
        0 => Origin::New,
        1 => Origin::Handed,
        2 => Origin::Carried,
        _ => return Err(DecodeError("unknown origin")),
    };
    let state = decode_state(d)?;
    let mut r = DeliveryRec {
        delivery_id: d.str()?,
        endpoint_id: d.str()?,
        tenant_id: d.str()?,
        event_id: d.str()?,
        event_type: d.str()?,
        resource_type: d.str()?,
        resource_id: d.str()?,
        actor_type: d.str()?,
        actor_id: d.str()?,
        actor_name: d.str()?,
        resend_of: d.str()?,
        traceparent: d.str()?,
        tracestate: d.str()?,
        ..Default::default()
    };
    r.slot = d.u32()?;
    r.occurred_at_ms = d.int()?;
    r.published_at_ms = d.int()?;
    let dflags = d.u8()?;
    r.test = dflags & 1 != 0;
    r.late_backlog = dflags & 2 != 0;
    r.has_resource = dflags & 4 != 0;
    r.has_actor = dflags & 8 != 0;
    if payload {
        r.payload_json = d.str()?;
    } else {
        d.str_ref()?;
    }
    Ok(Accept {
        seq,
        stamp,
        accepted_at_ms,
        origin,
        parked: flags & 4 != 0,
        state,
        delivery: r,
    })
}

fn encode_attempt(e: &mut Enc, a: &Attempt) {
    e.var(a.seq);
    e.bool(a.carried);
    e.int(a.at_ms);
    match a.prev {
        Some(l) => {
            e.var(u64::from(l.seg) + 1);
            e.var(u64::from(l.off));
        }
        None => e.var(0),
    }
    match a.outcome {
        Outcome::Succeeded => e.u8(1),
        Outcome::Retry(at) => {
            e.u8(2);
            e.int(at);
        }
        Outcome::Held => e.u8(3),
        Outcome::FailedForGood => e.u8(4),
    }
    let l = &a.log;
    e.var(u64::from(l.number));
    e.int(l.started_at_ms);
    e.var(u64::from(l.duration_ms));
    e.str(&l.method);
    e.str(&l.url);
    e.pairs(&l.request_headers);
    e.var(u64::from(l.response_status));
    e.pairs(&l.response_headers);
    e.str(&l.response_body);
    e.bool(l.response_body_truncated);
    e.u8(l.error_kind);
    e.str(&l.error);
}

fn decode_attempt(d: &mut Dec) -> Result<Attempt, DecodeError> {
    let seq = d.var()?;
    let carried = d.bool()?;
    let at_ms = d.int()?;
    let prev = match d.var()? {
        0 => None,
        s => Some(Loc {
            seg: u32::try_from(s - 1).map_err(|_| DecodeError("segment"))?,
            off: d.u32()?,
        }),
    };
    let outcome = match d.u8()? {
        1 => Outcome::Succeeded,
        2 => Outcome::Retry(d.int()?),
        3 => Outcome::Held,
        4 => Outcome::FailedForGood,
        _ => return Err(DecodeError("unknown outcome")),
    };
    let log = AttemptLog {
        number: d.u32()?,
        started_at_ms: d.int()?,
        duration_ms: d.u32()?,
        method: d.str()?,
        url: d.str()?,
        request_headers: d.pairs()?,
        response_status: d.u32()?,
        response_headers: d.pairs()?,
        response_body: d.str()?,
        response_body_truncated: d.bool()?,
        error_kind: d.u8()?,
        error: d.str()?,
    };
    Ok(Attempt {
        seq,
        carried,
        at_ms,
        prev,
        outcome,
        log,
    })
}

fn encode_brief(e: &mut Enc, b: &Option<AttemptBrief>) {
    let Some(b) = b else {
        e.bool(false);
        return;
    };
    e.bool(true);
    match b.delivery {
        Some(id) => {
            e.bool(true);
            encode_id(e, id);
        }
        None => e.bool(false),
    }
    e.int(b.at_ms);
    e.var(u64::from(b.status_code));
    e.u8(b.error_kind);
    e.str(&b.error);
    e.str(&b.response_body);
    e.var(u64::from(b.duration_ms));
}

/// `named`: written as `CHECKPOINT_2`, with the delivery's id.
fn decode_brief(d: &mut Dec, named: bool) -> Result<Option<AttemptBrief>, DecodeError> {
    if !d.bool()? {
        return Ok(None);
    }
    let delivery = if named && d.bool()? {
        Some(decode_id(d)?)
    } else {
        None
    };
    Ok(Some(AttemptBrief {
        delivery,
        at_ms: d.int()?,
        status_code: d.u32()?,
        error_kind: d.u8()?,
        error: d.str()?,
        response_body: d.str()?,
        duration_ms: d.u32()?,
    }))
}

fn encode_counters(e: &mut Enc, c: &Counters) {
    e.var(c.events);
    e.var(c.attempts);
    e.var(c.successes);
    e.var(c.failures);
    e.var(c.failures_since_last_success);
    e.var(u64::from(c.deliveries_failed_in_a_row));
    e.int(c.last_event_at_ms);
    encode_brief(e, &c.last_success);
    encode_brief(e, &c.last_failure);
}

fn decode_counters(d: &mut Dec, named: bool) -> Result<Counters, DecodeError> {
    Ok(Counters {
        events: d.var()?,
        attempts: d.var()?,
        successes: d.var()?,
        failures: d.var()?,
        failures_since_last_success: d.var()?,
        deliveries_failed_in_a_row: d.u32()?,
        last_event_at_ms: d.int()?,
        last_success: decode_brief(d, named)?,
        last_failure: decode_brief(d, named)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn accept(seq: u64, payload: String) -> Record {
        Record::Accept(Box::new(Accept {
            seq,
            stamp: Stamp { epoch: 7, seq },
            accepted_at_ms: 1_700_000_000_000,
            origin: if seq.is_multiple_of(2) {
                Origin::Carried
            } else {
                Origin::Handed
            },
            parked: seq.is_multiple_of(3),
            state: DeliveryState {
                status: Status::Retrying,
                attempts: 2,
                next_attempt_at_ms: -5,
                finished_at_ms: 0,
                last_status_code: 503,
                position: seq.wrapping_mul(3),
            },
            delivery: DeliveryRec {
                delivery_id: "dlv_00112233445566778899aabb".into(),
                endpoint_id: "ep_1".into(),
                tenant_id: "acme".into(),
                slot: 1023,
                event_id: "evt_1".into(),
                event_type: "invoice.paid".into(),
                payload_json: payload,
                resource_id: "in_1".into(),
                test: true,
                late_backlog: true,
                ..Default::default()
            },
        }))
    }

    #[test]
    fn every_kind_round_trips() {
        let records = vec![
            accept(6, "{\"a\":1}".into()),
            Record::Attempt(Box::new(Attempt {
                seq: 9,
                carried: false,
                at_ms: 77,
                prev: Some(Loc { seg: 0, off: 32 }),
                outcome: Outcome::Retry(123),
                log: AttemptLog {
                    number: 2,
                    request_headers: vec![("a".into(), "b".into())],
                    response_status: 500,
                    error_kind: 5,
                    ..Default::default()
                },
            })),
            Record::Queue {
                slot: 4,
                items: vec![(1, 2), (3, 4)],
            },
            Record::Drop {
                items: vec![(1, IdKey::from_num(2), 3)],
            },
            Record::Purge {
                endpoint_id: "ep".into(),
            },
            Record::MarkLate { up_to: 99 },
            Record::ResetStreak {
                endpoint_id: "ep".into(),
            },
            Record::Seen {
                ids: vec![(IdKey::from_num(u128::from(u64::MAX) << 32 | 7), 5)],
            },
            Record::Checkpoint {
                next_seq: 10,
                next_position: 11,
                endpoints: vec![(
                    "ep".into(),
                    Counters {
                        events: 3,
                        last_success: Some(AttemptBrief {
                            delivery: Some(IdKey::from_num(42)),
                            status_code: 204,
                            ..Default::default()
                        }),
                        last_failure: Some(AttemptBrief {
                            status_code: 500,
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                )],
            },
        ];
        for r in records {
            let mut buf = Vec::new();
            r.encode(&mut buf);
            assert_eq!(Record::decode(&buf).unwrap(), r);
        }
    }

    /// A checkpoint of the first kind (briefs without delivery ids), as
    /// stores written before `CHECKPOINT_2` hold, still reads.
    #[test]
    fn a_checkpoint_of_the_first_kind_reads() {
        let mut buf = Vec::new();
        let mut e = Enc(&mut buf);
        e.u8(CHECKPOINT);
        e.var(10); // next_seq
        e.var(11); // next_position
        e.var(1);
        e.str("ep");
        for v in [3, 4, 1, 2, 3, 2] {
            e.var(v); // events … deliveries_failed_in_a_row
        }
        e.int(99); // last_event_at_ms
        e.bool(false); // no last success
        e.bool(true); // last failure: at, status, kind, error, body, duration
        e.int(98);
        e.var(500);
        e.u8(5);
        e.str("boom");
        e.str("body");
        e.var(12);
        let Record::Checkpoint { endpoints, .. } = Record::decode(&buf).unwrap() else {
            panic!("not a checkpoint");
        };
        let c = &endpoints[0].1;
        assert_eq!(
            (c.events, c.failures, c.deliveries_failed_in_a_row),
            (3, 2, 2)
        );
        let f = c.last_failure.as_ref().unwrap();
        assert_eq!((f.delivery, f.status_code, f.duration_ms), (None, 500, 12));
        assert_eq!(f.error, "boom");
    }

    #[test]
    fn delivery_ids_parse_to_keys_in_string_order() {
        let a = IdKey::parse("dlv_00000000000000000000000f").unwrap();
        let b = IdKey::parse("dlv_0000000000000000000000f0").unwrap();
        assert!(a < b);
        assert_eq!(b.to_string(), "dlv_0000000000000000000000f0");
        assert!(IdKey::parse("dlv_0000000000000000000000F0").is_none());
        assert!(IdKey::parse("dlv_00").is_none());
        assert!(IdKey::parse("evt_0000000000000000000000f0").is_none());
    }

    proptest! {
        #[test]
        fn accepts_round_trip(seq in any::<u64>(), payload in ".{0,200}") {
            let r = accept(seq, payload);
            let mut buf = Vec::new();
            r.encode(&mut buf);
            prop_assert_eq!(Record::decode(&buf).unwrap(), r);
        }

        #[test]
        fn any_cut_of_a_record_fails_to_decode(cut in 0usize..80) {
            let mut buf = Vec::new();
            accept(5, "{}".into()).encode(&mut buf);
            prop_assume!(cut < buf.len());
            prop_assert!(Record::decode(&buf[..cut]).is_err());
        }
    }
}
