//! Migration of a store written by earlier Herald versions (redb, file
//! `<data-dir>/herald-agent.redb`) into the log, once, at open.
//!
//! Every delivery the old store held is imported with its state, queue
//! order, parked flag and attempts, and the endpoint counters with a
//! checkpoint; then the old file is renamed `herald-agent.redb.migrated`
//! (kept, not deleted, so an operator can go back). A crash part-way just
//! runs it again: deliveries already imported are skipped by id.

use std::path::Path;

use herald_proto::v1 as pb;
use prost::Message as _;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::record::{AttemptLog, Counters, DeliveryState, Status};
use super::segment::LogError;
use super::{Store, convert};
use crate::error::Result;

const DELIVERIES: TableDefinition<u64, &[u8]> = TableDefinition::new("deliveries");
/// (status, attempts, next attempt ms, finished ms, last status code, position).
const STATE: TableDefinition<u64, (u8, u32, i64, i64, u32, u64)> =
    TableDefinition::new("delivery_state");
const ATTEMPTS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("attempts");
const STATS: TableDefinition<&str, &[u8]> = TableDefinition::new("endpoint_stats");

/// Deliveries per import commit.
const BATCH: usize = 2_000;

/// One delivery of the old store, ready to import.
pub(super) struct Imported {
    pub delivery: pb::Delivery,
    pub state: DeliveryState,
    /// Its old queue position (order among the queued), 0 when parked.
    pub old_position: u64,
    pub attempts: Vec<AttemptLog>,
}

fn io(e: impl std::fmt::Display) -> LogError {
    LogError::Io(std::io::Error::other(format!(
        "migrating the redb store: {e}"
    )))
}

/// Imports `<data_dir>/herald-agent.redb` into `store` if it is there.
pub(super) fn from_redb_if_present(data_dir: &Path, store: &Store) -> Result<()> {
    let path = data_dir.join("herald-agent.redb");
    if !path.exists() {
        return Ok(());
    }
    tracing::info!(file = %path.display(), "migrating the store of an earlier version");
    let db = redb::Database::open(&path).map_err(io)?;
    let tx = db.begin_read().map_err(io)?;
    let counters = read_counters(&tx)?;
    let mut all = read_deliveries(&tx)?;
    drop(tx);
    drop(db);
    // Queue order: the old positions; parked and finished ones after.
    all.sort_by_key(|d| (d.old_position == 0, d.old_position));
    let n = all.len();
    let rt = tokio::runtime::Handle::try_current();
    let run = |batch: Vec<Imported>| -> Result<()> {
        let store = store.clone();
        let fut = async move { store.import(batch).await };
        match &rt {
            Ok(h) => tokio::task::block_in_place(|| h.block_on(fut)),
            Err(_) => tokio::runtime::Builder::new_current_thread()
                .build()
                .map_err(LogError::Io)?
                .block_on(fut),
        }
    };
    let mut rest = all;
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(BATCH));
        run(std::mem::replace(&mut rest, tail))?;
    }
    let store2 = store.clone();
    let fut = async move { store2.import_counters(counters).await };
    match &rt {
        Ok(h) => tokio::task::block_in_place(|| h.block_on(fut))?,
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(LogError::Io)?
            .block_on(fut)?,
    }
    std::fs::rename(&path, data_dir.join("herald-agent.redb.migrated")).map_err(LogError::Io)?;
    tracing::info!(
        deliveries = n,
        "store migrated; the old file is kept as herald-agent.redb.migrated"
    );
    Ok(())
}

fn read_counters(tx: &redb::ReadTransaction) -> Result<Vec<(String, Counters)>> {
    let Ok(t) = tx.open_table(STATS) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for row in t.iter().map_err(io)? {
        let (k, v) = row.map_err(io)?;
        let Ok(s) = pb::EndpointStats::decode(v.value()) else {
            continue;
        };
        let brief = |a: Option<pb::AttemptSummary>| {
            a.map(|a| super::record::AttemptBrief {
                // The old store never recorded which delivery it was.
                delivery: None,
                at_ms: a.at_ms,
                status_code: a.status_code,
                error_kind: u8::try_from(a.error_kind).unwrap_or(0),
                error: a.error,
                response_body: a.response_body,
                duration_ms: a.duration_ms,
            })
        };
        out.push((
            k.value().to_string(),
            Counters {
                events: s.events,
                attempts: s.attempts,
                successes: s.successes,
                failures: s.failures,
                failures_since_last_success: s.failures_since_last_success,
                deliveries_failed_in_a_row: s.deliveries_failed_in_a_row,
                last_event_at_ms: s.last_event_at_ms,
                last_success: brief(s.last_success),
                last_failure: brief(s.last_failure),
            },
        ));
    }
    Ok(out)
}

fn read_deliveries(tx: &redb::ReadTransaction) -> Result<Vec<Imported>> {
    let (Ok(deliveries), Ok(state), Ok(attempts)) = (
        tx.open_table(DELIVERIES),
        tx.open_table(STATE),
        tx.open_table(ATTEMPTS),
    ) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for row in deliveries.iter().map_err(io)? {
        let (k, v) = row.map_err(io)?;
        let seq = k.value();
        let Ok(delivery) = pb::Delivery::decode(v.value()) else {
            tracing::warn!(seq, "undecodable delivery in the old store skipped");
            continue;
        };
        let Some(st) = state.get(seq).map_err(io)?.map(|v| v.value()) else {
            continue;
        };
        let status = match st.0 {
            2 => Status::Retrying,
            3 => Status::Succeeded,
            4 => Status::Failed,
            _ => Status::Pending,
        };
        let mut log = Vec::new();
        for a in attempts.range((seq, 0)..=(seq, u32::MAX)).map_err(io)? {
            if let Ok(a) = pb::Attempt::decode(a.map_err(io)?.1.value()) {
                log.push(convert::attempt_log(a));
            }
        }
        out.push(Imported {
            delivery,
            state: DeliveryState {
                status,
                attempts: st.1,
                next_attempt_at_ms: st.2,
                finished_at_ms: st.3,
                last_status_code: st.4,
                position: 0,
            },
            old_position: if status.is_queued() { st.5 } else { 0 },
            attempts: log,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn an_old_store_is_imported_with_its_queue_order_history_and_counters() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = redb::Database::create(dir.path().join("herald-agent.redb")).unwrap();
            let tx = db.begin_write().unwrap();
            {
                let mut d = tx.open_table(DELIVERIES).unwrap();
                let mut s = tx.open_table(STATE).unwrap();
                let mut a = tx.open_table(ATTEMPTS).unwrap();
                let mut st = tx.open_table(STATS).unwrap();
                // seq 1 queued second, seq 2 queued first, seq 3 succeeded.
                for (seq, pos, status) in [(1u64, 9u64, 2u8), (2, 4, 1), (3, 0, 3)] {
                    let del = pb::Delivery {
                        endpoint_id: "ep_a".into(),
                        tenant_id: "acme".into(),
                        event_id: format!("evt_{seq}"),
                        event_type: "t.x".into(),
                        payload_json: "{}".into(),
                        delivery_id: herald_shared::ids::delivery_id_for(
                            "ep_a",
                            &format!("evt_{seq}"),
                        ),
                        published_at_ms: seq as i64,
                        ..Default::default()
                    };
                    d.insert(seq, del.encode_to_vec().as_slice()).unwrap();
                    s.insert(seq, (status, u32::from(status == 2), 0, 0, 500, pos))
                        .unwrap();
                }
                let att = pb::Attempt {
                    number: 1,
                    response_status: 500,
                    ..Default::default()
                };
                a.insert((1, 1), att.encode_to_vec().as_slice()).unwrap();
                let stats = pb::EndpointStats {
                    events: 3,
                    successes: 1,
                    ..Default::default()
                };
                st.insert("ep_a", stats.encode_to_vec().as_slice()).unwrap();
            }
            tx.commit().unwrap();
            let _ = db.begin_read();
        }
        let store = Store::open(dir.path()).unwrap();
        let q = store.pending("ep_a", 0, 10).unwrap();
        let events: Vec<_> = q.iter().map(|q| q.delivery.event_id.as_str()).collect();
        assert_eq!(events, ["evt_2", "evt_1"]);
        assert_eq!(q[1].attempts, 1);
        let stats = store.stats("ep_a").unwrap();
        assert_eq!(
            (stats.events, stats.successes, stats.queue_depth),
            (3, 1, 2)
        );
        let id = herald_shared::ids::delivery_id_for("ep_a", "evt_1");
        let detail = store.get("acme", &id).unwrap().unwrap();
        assert_eq!(detail.attempts.len(), 1);
        assert!(dir.path().join("herald-agent.redb.migrated").exists());
        assert!(!dir.path().join("herald-agent.redb").exists());
    }
}
