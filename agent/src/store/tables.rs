//! The store's tables and the small records kept in them.
//!
//! A delivery is identified inside one agent by its sequence number (`seq`),
//! which grows with each insert, and everywhere by its delivery id.

use herald_proto::v1 as pb;
use redb::TableDefinition;

/// seq → encoded [`pb::Delivery`] (with its delivery id set). Kept until
/// retention drops the finished delivery.
pub const DELIVERIES: TableDefinition<u64, &[u8]> = TableDefinition::new("deliveries");
/// delivery id → (seq, when it was accepted (ms)): the deliveries held,
/// and (with seq 0) the ones that no longer are but were accepted within
/// the idempotency window, so that re-sent work is dropped. One table for
/// both, as each insert touches a random leaf of it.
pub const IDS: TableDefinition<&str, (u64, i64)> = TableDefinition::new("delivery_index");
/// seq → [`State`] as a tuple.
pub const STATE: TableDefinition<u64, StateTuple> = TableDefinition::new("delivery_state");
/// (endpoint id, queue position) → seq: the queued deliveries in delivery
/// order. Positions come from a counter of their own, so deliveries handed
/// over by another agent can be queued ahead of work stored meanwhile.
pub const QUEUE: TableDefinition<(&str, u64), u64> = TableDefinition::new("queue");
/// (slot, seq) → (): new work for a slot still being handed over, held
/// aside until the handoff completes and then queued behind what came.
pub const PARKED: TableDefinition<(u32, u64), ()> = TableDefinition::new("parked");
/// (endpoint id, created ms, delivery id) → (seq, event type, resource id):
/// the log of an endpoint in list order.
pub const BY_ENDPOINT: TableDefinition<(&str, i64, &str), (u64, &str, &str)> =
    TableDefinition::new("log_by_endpoint");
/// (tenant id, created ms, delivery id) → (seq, event type, resource id).
pub const BY_TENANT: TableDefinition<(&str, i64, &str), (u64, &str, &str)> =
    TableDefinition::new("log_by_tenant");
/// (seq, attempt number) → encoded [`pb::Attempt`].
pub const ATTEMPTS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("attempts");
/// (finished ms, seq) → (): finished deliveries, oldest first, for retention.
pub const DONE: TableDefinition<(i64, u64), ()> = TableDefinition::new("finished");
/// endpoint id → encoded [`pb::EndpointStats`] (without next attempt time).
pub const STATS: TableDefinition<&str, &[u8]> = TableDefinition::new("endpoint_stats");
/// The two tables `IDS` replaced (stores written before it), migrated at open.
pub const OLD_IDS: TableDefinition<&str, u64> = TableDefinition::new("delivery_ids");
/// See [`OLD_IDS`]: (endpoint id, delivery id) → accepted (ms).
pub const OLD_SEEN: TableDefinition<(&str, &str), i64> = TableDefinition::new("seen");
/// Counters: "next_seq", "next_position", "finished".
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// (status, attempts, next attempt ms, finished ms, last status code,
/// queue position).
pub type StateTuple = (u8, u32, i64, i64, u32, u64);

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    /// Pending, retrying, succeeded or failed.
    pub status: pb::DeliveryStatus,
    /// Attempts made.
    pub attempts: u32,
    /// When the next attempt is due (ms); 0: none scheduled (or now).
    pub next_attempt_at_ms: i64,
    /// When it finished (ms); 0 while queued.
    pub finished_at_ms: i64,
    /// Status code of the last attempt; 0 when it got no answer.
    pub last_status_code: u32,
    /// Its key in `QUEUE` while queued; 0 while parked or finished.
    pub position: u64,
}

impl State {
    /// A delivery just stored.
    pub fn pending() -> Self {
        State {
            status: pb::DeliveryStatus::Pending,
            attempts: 0,
            next_attempt_at_ms: 0,
            finished_at_ms: 0,
            last_status_code: 0,
            position: 0,
        }
    }

    /// As stored.
    pub fn to_tuple(self) -> StateTuple {
        (
            self.status as u8,
            self.attempts,
            self.next_attempt_at_ms,
            self.finished_at_ms,
            self.last_status_code,
            self.position,
        )
    }

    /// From storage; an unknown status reads as pending.
    pub fn from_tuple(t: StateTuple) -> Self {
        State {
            status: pb::DeliveryStatus::try_from(i32::from(t.0))
                .unwrap_or(pb::DeliveryStatus::Pending),
            attempts: t.1,
            next_attempt_at_ms: t.2,
            finished_at_ms: t.3,
            last_status_code: t.4,
            position: t.5,
        }
    }

    /// Still queued.
    pub fn is_queued(&self) -> bool {
        matches!(
            self.status,
            pb::DeliveryStatus::Pending | pb::DeliveryStatus::Retrying
        )
    }
}

/// The summary of a delivery, as lists show it.
pub fn summary(d: &pb::Delivery, st: &State) -> pb::DeliverySummary {
    pb::DeliverySummary {
        delivery_id: d.delivery_id.clone(),
        tenant_id: d.tenant_id.clone(),
        endpoint_id: d.endpoint_id.clone(),
        event_id: d.event_id.clone(),
        event_type: d.event_type.clone(),
        resource: d.resource.clone(),
        status: st.status as i32,
        attempts: st.attempts,
        created_at_ms: d.published_at_ms,
        next_attempt_at_ms: st.next_attempt_at_ms,
        finished_at_ms: st.finished_at_ms,
        last_status_code: st.last_status_code,
        resend_of: d.resend_of.clone(),
        test: d.test,
        late_backlog: d.late_backlog,
    }
}

/// The resource id a delivery is indexed under ("" when it has none).
pub fn resource_id(d: &pb::Delivery) -> &str {
    d.resource.as_ref().map_or("", |r| r.id.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips() {
        let s = State {
            status: pb::DeliveryStatus::Retrying,
            attempts: 3,
            next_attempt_at_ms: 42,
            finished_at_ms: 0,
            last_status_code: 503,
            position: 7,
        };
        assert_eq!(State::from_tuple(s.to_tuple()), s);
        assert!(s.is_queued());
        assert_eq!(
            State::from_tuple((99, 0, 0, 0, 0, 0)).status,
            pb::DeliveryStatus::Pending
        );
    }
}
