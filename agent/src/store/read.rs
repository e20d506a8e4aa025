//! Reads: the queue for the workers, and the delivery log and counters for
//! the query API. Each runs in its own read transaction (a snapshot), so it
//! never waits for the writer. They block: call them off the async runtime.

use std::collections::BTreeMap;

use herald_proto::v1 as pb;
use prost::Message as _;
use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata};

use super::tables::*;
use super::{Queued, Store};
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

fn e(err: impl Into<redb::Error>) -> crate::error::Error {
    crate::error::Error::Store(err.into())
}

fn delivery(tx: &ReadTransaction, seq: u64) -> Result<Option<pb::Delivery>> {
    let t = tx.open_table(DELIVERIES).map_err(e)?;
    let Some(v) = t.get(seq).map_err(e)? else {
        return Ok(None);
    };
    match pb::Delivery::decode(v.value()) {
        Ok(d) => Ok(Some(d)),
        Err(err) => {
            tracing::error!(seq, error = %err, "undecodable delivery skipped");
            Ok(None)
        }
    }
}

fn state(tx: &ReadTransaction, seq: u64) -> Result<State> {
    let t = tx.open_table(STATE).map_err(e)?;
    Ok(t.get(seq)
        .map_err(e)?
        .map(|v| State::from_tuple(v.value()))
        .unwrap_or_else(State::pending))
}

impl Store {
    /// Up to `limit` queued items of an endpoint, in queue order, from the
    /// position after `after`; fewer only when the queue has no more.
    pub fn pending(&self, endpoint_id: &str, after: u64, limit: usize) -> Result<Vec<Queued>> {
        let tx = self.read()?;
        let queue = tx.open_table(QUEUE).map_err(e)?;
        let mut out = Vec::new();
        if after == u64::MAX {
            return Ok(out);
        }
        for row in queue
            .range((endpoint_id, after + 1)..=(endpoint_id, u64::MAX))
            .map_err(e)?
        {
            // Fewer than `limit` means the queue ended (workers rely on it).
            if out.len() >= limit {
                break;
            }
            let (k, v) = row.map_err(e)?;
            let (position, seq) = (k.value().1, v.value());
            let Some(delivery) = delivery(&tx, seq)? else {
                continue;
            };
            let st = state(&tx, seq)?;
            out.push(Queued {
                seq,
                position,
                delivery,
                attempts: st.attempts,
                next_attempt_at_ms: st.next_attempt_at_ms,
            });
        }
        Ok(out)
    }

    /// Every endpoint with at least one queued item.
    pub fn endpoints_with_pending(&self) -> Result<Vec<String>> {
        let tx = self.read()?;
        let t = tx.open_table(QUEUE).map_err(e)?;
        let mut out: Vec<String> = Vec::new();
        let mut from = String::new();
        // Jump from endpoint to endpoint instead of reading every item.
        loop {
            let next = t
                .range((from.as_str(), 0)..)
                .map_err(e)?
                .next()
                .transpose()
                .map_err(e)?;
            let Some((k, _)) = next else { break };
            let ep = k.value().0.to_string();
            from = format!("{ep}\0");
            out.push(ep);
        }
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
        let tx = self.read()?;
        for row in tx.open_table(PARKED).map_err(e)?.iter().map_err(e)? {
            slots.entry(row.map_err(e)?.0.value().0).or_default();
        }
        Ok(slots)
    }

    /// Up to `limit` deliveries of `slot` to hand over, each with its seq:
    /// every queued one of `endpoints` (the slot's, from
    /// [`Store::slots_with_work`]), endpoint by endpoint in queue order,
    /// then the parked ones in arrival order.
    pub fn handoff_items(
        &self,
        slot: u32,
        endpoints: &[String],
        limit: usize,
    ) -> Result<Vec<(u64, pb::HandedDelivery)>> {
        let tx = self.read()?;
        let mut seqs = Vec::new();
        let queue = tx.open_table(QUEUE).map_err(e)?;
        for ep in endpoints {
            if seqs.len() >= limit {
                break;
            }
            for row in queue
                .range((ep.as_str(), 0)..=(ep.as_str(), u64::MAX))
                .map_err(e)?
                .take(limit - seqs.len())
            {
                seqs.push(row.map_err(e)?.1.value());
            }
        }
        if seqs.len() < limit {
            let parked = tx.open_table(PARKED).map_err(e)?;
            for row in parked
                .range((slot, 0)..=(slot, u64::MAX))
                .map_err(e)?
                .take(limit - seqs.len())
            {
                seqs.push(row.map_err(e)?.0.value().1);
            }
        }
        let mut out = Vec::with_capacity(seqs.len());
        for seq in seqs {
            let Some(d) = delivery(&tx, seq)? else {
                continue;
            };
            let st = state(&tx, seq)?;
            let mut attempt_log = Vec::new();
            for row in tx
                .open_table(ATTEMPTS)
                .map_err(e)?
                .range((seq, 0)..=(seq, u32::MAX))
                .map_err(e)?
            {
                if let Ok(a) = pb::Attempt::decode(row.map_err(e)?.1.value()) {
                    attempt_log.push(a);
                }
            }
            out.push((
                seq,
                pb::HandedDelivery {
                    delivery: Some(d),
                    status: st.status as i32,
                    attempts: st.attempts,
                    next_attempt_at_ms: st.next_attempt_at_ms,
                    last_status_code: st.last_status_code,
                    attempt_log,
                },
            ));
        }
        Ok(out)
    }

    /// Number of queued items over all endpoints.
    pub fn queue_len(&self) -> Result<u64> {
        let tx = self.read()?;
        let t = tx.open_table(QUEUE).map_err(e)?;
        t.len().map_err(e)
    }

    /// Deliveries matching `filter`, newest first, strictly older than
    /// `before`, at most `limit`.
    pub fn list(
        &self,
        filter: &pb::ListDeliveriesRequest,
        before: Option<&pb::DeliveryCursor>,
        limit: usize,
    ) -> Result<ListPage> {
        let tx = self.read()?;
        let (index, owner) = if filter.endpoint_id.is_empty() {
            (
                tx.open_table(BY_TENANT).map_err(e)?,
                filter.tenant_id.as_str(),
            )
        } else {
            (
                tx.open_table(BY_ENDPOINT).map_err(e)?,
                filter.endpoint_id.as_str(),
            )
        };
        let since = if filter.since_ms > 0 {
            filter.since_ms
        } else {
            i64::MIN
        };
        // Upper bound, exclusive: the earlier of until_ms and the cursor.
        let mut upper: (i64, String) = (i64::MAX, String::new());
        if filter.until_ms > 0 {
            upper = (filter.until_ms, String::new());
        }
        if let Some(c) = before
            && (c.created_at_ms, c.delivery_id.as_str()) < (upper.0, upper.1.as_str())
        {
            upper = (c.created_at_ms, c.delivery_id.clone());
        }
        let statuses: Vec<i32> = filter.statuses.clone();
        let mut page = ListPage::default();
        let mut last: Option<(i64, String)> = None;
        let range = index
            .range((owner, since, "")..(owner, upper.0, upper.1.as_str()))
            .map_err(e)?;
        for (scanned, row) in range.rev().enumerate() {
            if page.deliveries.len() >= limit || scanned >= SCAN_BUDGET {
                page.scanned_to = last.map(|(created_at_ms, delivery_id)| pb::DeliveryCursor {
                    created_at_ms,
                    delivery_id,
                });
                return Ok(page);
            }
            let (k, v) = row.map_err(e)?;
            let (_, created, id) = k.value();
            let (seq, event_type, resource) = v.value();
            last = Some((created, id.to_string()));
            if !filter.event_types.is_empty()
                && !filter
                    .event_types
                    .iter()
                    .any(|p| herald_shared::pattern::matches(p, event_type))
            {
                continue;
            }
            if !filter.resource_id.is_empty() && filter.resource_id != resource {
                continue;
            }
            let st = state(&tx, seq)?;
            if !statuses.is_empty() && !statuses.contains(&(st.status as i32)) {
                continue;
            }
            let Some(d) = delivery(&tx, seq)? else {
                continue;
            };
            if d.tenant_id != filter.tenant_id {
                continue;
            }
            page.deliveries.push(summary(&d, &st));
        }
        Ok(page)
    }

    /// One delivery with its payload and attempts, if this agent holds it
    /// for `tenant_id`.
    pub fn get(&self, tenant_id: &str, delivery_id: &str) -> Result<Option<pb::DeliveryDetail>> {
        let tx = self.read()?;
        let Some(seq) = tx
            .open_table(IDS)
            .map_err(e)?
            .get(delivery_id)
            .map_err(e)?
            .map(|v| v.value().0)
            .filter(|seq| *seq != 0)
        else {
            return Ok(None);
        };
        let Some(d) = delivery(&tx, seq)? else {
            return Ok(None);
        };
        if d.tenant_id != tenant_id {
            return Ok(None);
        }
        let st = state(&tx, seq)?;
        let mut attempts = Vec::new();
        for row in tx
            .open_table(ATTEMPTS)
            .map_err(e)?
            .range((seq, 0)..=(seq, u32::MAX))
            .map_err(e)?
        {
            let (_, v) = row.map_err(e)?;
            if let Ok(a) = pb::Attempt::decode(v.value()) {
                attempts.push(a);
            }
        }
        Ok(Some(pb::DeliveryDetail {
            summary: Some(summary(&d, &st)),
            payload_json: d.payload_json,
            actor: d.actor,
            occurred_at_ms: d.occurred_at_ms,
            attempts,
        }))
    }

    /// The endpoint's counters, with the time its next attempt is due.
    pub fn stats(&self, endpoint_id: &str) -> Result<pb::EndpointStats> {
        let tx = self.read()?;
        let mut s = tx
            .open_table(STATS)
            .map_err(e)?
            .get(endpoint_id)
            .map_err(e)?
            .and_then(|v| pb::EndpointStats::decode(v.value()).ok())
            .unwrap_or_default();
        s.endpoint_id = endpoint_id.to_string();
        // The earliest scheduled retry among the items at the head of the
        // queue; with none, an untried item is due now. (Untried items
        // behind a retrying head wait for it.)
        let queue = tx.open_table(QUEUE).map_err(e)?;
        let mut next: Option<i64> = None;
        let mut untried = false;
        for row in queue
            .range((endpoint_id, 0)..=(endpoint_id, u64::MAX))
            .map_err(e)?
            .take(NEXT_ATTEMPT_SCAN)
        {
            let seq = row.map_err(e)?.1.value();
            let st = state(&tx, seq)?;
            if st.status == pb::DeliveryStatus::Retrying && st.next_attempt_at_ms > 0 {
                next = Some(next.map_or(st.next_attempt_at_ms, |n| n.min(st.next_attempt_at_ms)));
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
