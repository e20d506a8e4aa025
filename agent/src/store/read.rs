//! Reads: the queue for the workers, the handoff's batches, and the
//! delivery log and counters for the query API. Each looks the deliveries
//! up in the index under its read lock, lets go, then reads their records
//! from the log (`pread`, usually from the page cache). An unlinked
//! segment stays readable through the handle taken under the lock.

use std::collections::BTreeMap;

use herald_proto::v1 as pb;

use super::index::{Entry, Index, resource_hash};
use super::record::{Accept, IdKey, Loc, Record};
use super::{Queued, Store, convert, segment};
use crate::error::Result;

/// Most index rows one list call examines, so a filter that matches
/// little cannot turn one request into a scan of the whole log.
const SCAN_BUDGET: usize = 20_000;
/// Queue items looked at to find an endpoint's next attempt time (an
/// unordered endpoint has at most 100 in flight).
const NEXT_ATTEMPT_SCAN: usize = 128;

/// One page of a delivery list.
#[derive(Debug, Default)]
pub struct ListPage {
    /// Matches, newest first.
    pub deliveries: Vec<pb::DeliverySummary>,
    /// Set when the scan stopped before the end: every match newer than
    /// this was returned.
    pub scanned_to: Option<pb::DeliveryCursor>,
}

impl Store {
    fn accept_at(&self, loc: Loc) -> Result<Accept> {
        match segment::read(&self.segments, loc)? {
            Record::Accept(a) => Ok(*a),
            _ => Err(segment::LogError::Corrupt {
                file: format!("segment {}", loc.seg),
                offset: u64::from(loc.off),
                what: "expected a delivery record".into(),
            }
            .into()),
        }
    }

    /// The delivery of an entry as the wire knows it (with the late flag,
    /// which may have changed since its record was written).
    fn delivery_of(&self, e: &Entry) -> Result<pb::Delivery> {
        let mut d = self.accept_at(e.loc)?.delivery;
        d.late_backlog = e.late;
        Ok(convert::delivery(d))
    }

    /// The attempts of an entry, oldest first.
    fn attempts_of(&self, e: &Entry) -> Result<Vec<pb::Attempt>> {
        Ok(self
            .attempt_logs(e)?
            .into_iter()
            .map(convert::attempt)
            .collect())
    }

    /// The attempt records of an entry, oldest first (following the chain
    /// back from the newest).
    fn attempt_logs(&self, e: &Entry) -> Result<Vec<super::record::AttemptLog>> {
        let mut out = Vec::new();
        let mut at = e.last_attempt;
        while let Some(loc) = at {
            let Record::Attempt(a) = segment::read(&self.segments, loc)? else {
                break;
            };
            at = a.prev;
            out.push(a.log);
        }
        out.reverse();
        Ok(out)
    }

    /// Up to `limit` queued items of an endpoint, in queue order, from the
    /// position after `after`; fewer only when the queue has no more.
    pub fn pending(&self, endpoint_id: &str, after: u64, limit: usize) -> Result<Vec<Queued>> {
        let entries: Vec<(u64, u64, Entry)> = {
            let ix = self.index();
            let Some(q) = ix.syms.get(endpoint_id).and_then(|ep| ix.queues.get(&ep)) else {
                return Ok(Vec::new());
            };
            if after == u64::MAX {
                return Ok(Vec::new());
            }
            q.range(after + 1..)
                .take(limit)
                .filter_map(|(pos, seq)| ix.entries.get(seq).map(|e| (*pos, *seq, e.clone())))
                .collect()
        };
        entries
            .into_iter()
            .map(|(position, seq, e)| {
                Ok(Queued {
                    seq,
                    position,
                    delivery: self.delivery_of(&e)?,
                    attempts: e.state.attempts,
                    next_attempt_at_ms: e.state.next_attempt_at_ms,
                })
            })
            .collect()
    }

    /// Every endpoint with at least one queued item.
    pub fn endpoints_with_pending(&self) -> Result<Vec<String>> {
        let ix = self.index();
        let mut out: Vec<String> = ix
            .queues
            .keys()
            .map(|ep| ix.syms.name(*ep).to_string())
            .collect();
        out.sort();
        Ok(out)
    }

    /// Slots with queued or parked work in this store, each with the
    /// endpoints that have queued deliveries in it (none for a slot that
    /// only has parked work).
    pub fn slots_with_work(&self) -> Result<BTreeMap<u32, Vec<String>>> {
        let mut slots: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        for ep in self.endpoints_with_pending()? {
            let slot = herald_shared::slot::slot_for(&ep, herald_shared::slot::SLOT_COUNT);
            slots.entry(slot).or_default().push(ep);
        }
        for slot in self.index().parked.keys() {
            slots.entry(*slot).or_default();
        }
        Ok(slots)
    }

    /// Every delivery of `slot` to hand over, by seq: the queued ones of
    /// `endpoints` (the slot's, from [`Store::slots_with_work`]), endpoint
    /// by endpoint in queue order, then the parked ones.
    pub fn handoff_seqs(&self, slot: u32, endpoints: &[String]) -> Vec<u64> {
        let ix = self.index();
        let mut seqs: Vec<u64> = Vec::new();
        for ep in endpoints {
            if let Some(q) = ix.syms.get(ep).and_then(|s| ix.queues.get(&s)) {
                seqs.extend(q.values());
            }
        }
        if let Some(parked) = ix.parked.get(&slot) {
            seqs.extend(parked.iter());
        }
        seqs
    }

    /// The records a handoff stream carries for `seqs` (as
    /// [`Store::insert_handed_records`] reads them): each delivery with its
    /// state, stamp and attempts. Deliveries gone meanwhile are left out.
    pub fn handoff_records(&self, seqs: &[u64]) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        for seq in seqs {
            let Some(e) = self.index().entries.get(seq).cloned() else {
                continue;
            };
            let mut delivery = self.accept_at(e.loc)?.delivery;
            delivery.late_backlog = e.late;
            let mut state = e.state;
            state.position = 0;
            let attempts = self.attempt_logs(&e)?;
            let h = super::handed::Handed {
                stamp: Some(e.stamp),
                state,
                delivery,
                attempts,
            };
            super::handed::encode(&mut buf, *seq, &h);
        }
        Ok(buf)
    }

    /// Number of queued items over all endpoints.
    pub fn queue_len(&self) -> Result<u64> {
        let ix = self.index();
        Ok(ix.queues.values().map(|q| q.len() as u64).sum())
    }

    /// Deliveries matching `filter`, newest first, strictly older than
    /// `before`, at most `limit`.
    pub fn list(
        &self,
        filter: &pb::ListDeliveriesRequest,
        before: Option<&pb::DeliveryCursor>,
        limit: usize,
    ) -> Result<ListPage> {
        let (matches, scanned_to) = {
            let ix = self.index();
            scan(&ix, filter, before, limit)
        };
        let mut page = ListPage {
            deliveries: Vec::with_capacity(matches.len()),
            scanned_to,
        };
        for e in matches {
            let d = self.accept_at(e.loc)?.delivery;
            // The index filtered by a hash of the resource id.
            if !filter.resource_id.is_empty() && d.resource_id != filter.resource_id {
                continue;
            }
            page.deliveries
                .push(convert::summary(&self.index(), &e, &d));
        }
        Ok(page)
    }

    /// One delivery with its payload and attempts, if this agent holds it
    /// for `tenant_id`.
    pub fn get(&self, tenant_id: &str, delivery_id: &str) -> Result<Option<pb::DeliveryDetail>> {
        let Some(id) = IdKey::parse(delivery_id) else {
            return Ok(None);
        };
        let e = {
            let ix = self.index();
            let Some(e) = ix.ids.get(&id).and_then(|s| ix.entries.get(s)) else {
                return Ok(None);
            };
            if &**ix.syms.name(e.tenant) != tenant_id {
                return Ok(None);
            }
            e.clone()
        };
        let d = self.accept_at(e.loc)?.delivery;
        let summary = convert::summary(&self.index(), &e, &d);
        let (payload_json, occurred_at_ms) = (d.payload_json.clone(), d.occurred_at_ms);
        Ok(Some(pb::DeliveryDetail {
            summary: Some(summary),
            payload_json,
            actor: convert::delivery(d).actor,
            occurred_at_ms,
            attempts: self.attempts_of(&e)?,
        }))
    }

    /// The endpoint's counters, with the time its next attempt is due.
    pub fn stats(&self, endpoint_id: &str) -> Result<pb::EndpointStats> {
        let ix = self.index();
        let Some(ep) = ix.syms.get(endpoint_id) else {
            return Ok(pb::EndpointStats {
                endpoint_id: endpoint_id.to_string(),
                ..Default::default()
            });
        };
        let mut s = convert::stats(
            endpoint_id,
            &ix.counters.get(&ep).cloned().unwrap_or_default(),
            ix.queue_depth(ep),
        );
        // The earliest scheduled retry among the items at the head of the
        // queue; with none, an untried item is due now. (Untried items
        // behind a retrying head wait for it.)
        let mut next: Option<i64> = None;
        let mut untried = false;
        for seq in ix
            .queues
            .get(&ep)
            .into_iter()
            .flat_map(|q| q.values())
            .take(NEXT_ATTEMPT_SCAN)
        {
            let Some(e) = ix.entries.get(seq) else {
                continue;
            };
            if e.state.status == super::record::Status::Retrying && e.state.next_attempt_at_ms > 0 {
                let at = e.state.next_attempt_at_ms;
                next = Some(next.map_or(at, |n| n.min(at)));
            } else {
                untried = true;
            }
        }
        if next.is_none() && untried {
            next = Some(herald_shared::time::now_ms());
        }
        s.next_attempt_at_ms = next.unwrap_or(0);
        Ok(s)
    }
}

/// Walks the tenant's or endpoint's log list backwards from the cursor,
/// filtering by what the index holds; returns the matches (at most
/// `limit`) and, if it stopped early, where.
fn scan(
    ix: &Index,
    filter: &pb::ListDeliveriesRequest,
    before: Option<&pb::DeliveryCursor>,
    limit: usize,
) -> (Vec<Entry>, Option<pb::DeliveryCursor>) {
    let list = if filter.endpoint_id.is_empty() {
        ix.syms
            .get(&filter.tenant_id)
            .and_then(|t| ix.by_tenant.get(&t))
    } else {
        ix.syms
            .get(&filter.endpoint_id)
            .and_then(|e| ix.by_endpoint.get(&e))
    };
    let Some(list) = list else {
        return (Vec::new(), None);
    };
    let tenant = ix.syms.get(&filter.tenant_id);
    let since = if filter.since_ms > 0 {
        filter.since_ms
    } else {
        i64::MIN
    };
    // The newest place to list: created at most `top`, and at `top` only
    // ids below `id_below` (the cursor's), if set.
    let (mut top, mut id_below) = (i64::MAX, None);
    if filter.until_ms > 0 {
        top = filter.until_ms - 1;
    }
    if let Some(c) = before
        && c.created_at_ms <= top
    {
        top = c.created_at_ms;
        // A cursor id that does not parse sorts below every real id.
        id_below = Some(IdKey::parse(&c.delivery_id).unwrap_or_default());
    }
    let resource = resource_hash(&filter.resource_id);
    let mut out = Vec::new();
    let mut last: Option<(i64, IdKey)> = None;
    let mut scanned = 0;
    // The lists hold (created, seq); deliveries created in the same
    // millisecond are put in id order here, a millisecond at a time.
    let mut keys = list.range((since, 0)..=(top, u64::MAX)).rev().peekable();
    let mut group: Vec<(IdKey, u64)> = Vec::new();
    while let Some(&&(created, _)) = keys.peek() {
        group.clear();
        while let Some(&&(c, seq)) = keys.peek() {
            if c != created {
                break;
            }
            keys.next();
            if let Some(e) = ix.entries.get(&seq) {
                group.push((e.id, seq));
            }
        }
        group.sort_unstable_by(|a, b| b.cmp(a));
        for &(id, seq) in &group {
            if created == top && id_below.is_some_and(|below| id >= below) {
                continue;
            }
            if out.len() >= limit || scanned >= SCAN_BUDGET {
                let cursor = last.map(|(created_at_ms, id)| pb::DeliveryCursor {
                    created_at_ms,
                    delivery_id: id.to_string(),
                });
                return (out, cursor);
            }
            scanned += 1;
            last = Some((created, id));
            let Some(e) = ix.entries.get(&seq) else {
                continue;
            };
            if matches(ix, e, filter, tenant, resource) {
                out.push(e.clone());
            }
        }
    }
    (out, None)
}

/// Whether `e` passes the list's filters (all but the exact resource id,
/// which is checked against the record).
fn matches(
    ix: &Index,
    e: &Entry,
    filter: &pb::ListDeliveriesRequest,
    tenant: Option<super::index::Sym>,
    resource: u32,
) -> bool {
    if Some(e.tenant) != tenant || (resource != 0 && e.resource != resource) {
        return false;
    }
    if !filter.event_types.is_empty() {
        let t = ix.syms.name(e.event_type);
        if !filter
            .event_types
            .iter()
            .any(|p| herald_shared::pattern::matches(p, t))
        {
            return false;
        }
    }
    filter.statuses.is_empty()
        || filter
            .statuses
            .contains(&(convert::status(e.state.status) as i32))
}
