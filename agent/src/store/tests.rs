use super::*;

fn delivery(ep: &str, event: &str) -> pb::Delivery {
    pb::Delivery {
        endpoint_id: ep.into(),
        tenant_id: "acme".into(),
        event_id: event.into(),
        event_type: "invoice.paid".into(),
        payload_json: "{}".into(),
        ..Default::default()
    }
}

fn attempt(status: u32) -> pb::Attempt {
    pb::Attempt {
        started_at_ms: 1,
        response_status: status,
        response_body: "x".repeat(1000),
        ..Default::default()
    }
}

async fn reopen(dir: &Path) -> Store {
    // The writer thread lets go of the file once the last handle drops.
    loop {
        match Store::open(dir) {
            Ok(s) => return s,
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
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
        let streak = s
            .record_failure(
                a[1].seq,
                attempt(500),
                AttemptResult::Retry { next_at_ms: 1234 },
            )
            .await
            .unwrap();
        assert_eq!(streak, 0, "a retry is not a delivery failed for good");
        s.record_success(a[0].seq, attempt(200)).await;
        // A later insert is ordered behind the success by the single writer.
        s.insert(vec![]).await.unwrap();
    }
    let s = reopen(dir.path()).await;
    let a = s.pending("a", 0, 10).unwrap();
    assert_eq!(a.len(), 2);
    assert_eq!(a[0].delivery.event_id, "e2");
    assert_eq!(
        (a[0].attempts, a[0].next_attempt_at_ms),
        (1, 1234),
        "retry state survives"
    );
    assert_eq!((a[1].attempts, a[1].next_attempt_at_ms), (0, 0));
    assert_eq!(s.endpoints_with_pending().unwrap(), ["a", "b"]);
    let st = s.stats("a").unwrap();
    assert_eq!(
        (
            st.events,
            st.attempts,
            st.successes,
            st.failures,
            st.queue_depth
        ),
        (3, 2, 1, 0, 2),
        "counters survive: {st:?}"
    );
    assert_eq!(
        st.failures_since_last_success, 0,
        "the success came after the failure"
    );
    assert_eq!(st.last_failure.as_ref().unwrap().status_code, 500);
    assert_eq!(st.last_failure.as_ref().unwrap().response_body.len(), 256);
    assert_eq!(s.purge("a").await.unwrap(), 2);
    assert_eq!(s.endpoints_with_pending().unwrap(), ["b"]);
    assert_eq!(s.queue_len().unwrap(), 1);
    assert_eq!(s.stats("a").unwrap().events, 0, "purge drops the counters");
    // The idempotency record outlives the delivery, until pruned.
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

#[tokio::test]
async fn log_records_attempts_and_final_states() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    s.insert(vec![delivery("a", "e1"), delivery("a", "e2")])
        .await
        .unwrap();
    let q = s.pending("a", 0, 10).unwrap();
    s.record_failure(
        q[0].seq,
        attempt(503),
        AttemptResult::Retry { next_at_ms: 5 },
    )
    .await
    .unwrap();
    s.record_success(q[0].seq, attempt(200)).await;
    s.record_failure(q[1].seq, attempt(500), AttemptResult::FailedForGood)
        .await
        .unwrap();
    let id0 = &q[0].delivery.delivery_id;
    let d = s.get("acme", id0).unwrap().unwrap();
    let sum = d.summary.unwrap();
    assert_eq!(sum.status, pb::DeliveryStatus::Succeeded as i32);
    let numbers: Vec<_> = d
        .attempts
        .iter()
        .map(|a| (a.number, a.response_status))
        .collect();
    assert_eq!(numbers, [(1, 503), (2, 200)]);
    assert!(s.get("globex", id0).unwrap().is_none(), "tenant-scoped");
    let st = s.stats("a").unwrap();
    assert_eq!(
        (st.successes, st.failures, st.deliveries_failed_in_a_row),
        (1, 1, 1)
    );
    assert_eq!(st.queue_depth, 0);
    assert_eq!(st.next_attempt_at_ms, 0);
    s.reset_failure_streak("a").await;
    s.insert(vec![]).await.unwrap();
    assert_eq!(s.stats("a").unwrap().deliveries_failed_in_a_row, 0);
    let failed = s
        .list(
            &pb::ListDeliveriesRequest {
                tenant_id: "acme".into(),
                statuses: vec![pb::DeliveryStatus::Failed as i32],
                ..Default::default()
            },
            None,
            10,
        )
        .unwrap();
    assert_eq!(failed.deliveries.len(), 1);
    assert_eq!(failed.deliveries[0].event_id, "e2");
}

#[tokio::test]
async fn list_pages_newest_first_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let mut all = Vec::new();
    for i in 0..50 {
        let mut d = delivery(if i % 2 == 0 { "a" } else { "b" }, &format!("e{i}"));
        // Several share a millisecond: the id breaks the tie.
        d.published_at_ms = 1000 + i / 3;
        all.push(d);
    }
    s.insert(all).await.unwrap();
    let filter = pb::ListDeliveriesRequest {
        tenant_id: "acme".into(),
        ..Default::default()
    };
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = s.list(&filter, cursor.as_ref(), 7).unwrap();
        seen.extend(
            page.deliveries
                .iter()
                .map(|d| (d.created_at_ms, d.delivery_id.clone())),
        );
        match page.scanned_to {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 50);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(seen, sorted, "newest first");
    sorted.dedup();
    assert_eq!(sorted.len(), 50, "each once");
    let only_b = s
        .list(
            &pb::ListDeliveriesRequest {
                endpoint_id: "b".into(),
                since_ms: 1005,
                until_ms: 1010,
                ..filter.clone()
            },
            None,
            100,
        )
        .unwrap();
    assert!(only_b.scanned_to.is_none());
    assert!(!only_b.deliveries.is_empty());
    assert!(
        only_b
            .deliveries
            .iter()
            .all(|d| d.endpoint_id == "b" && (1005..1010).contains(&d.created_at_ms))
    );
}

#[tokio::test]
async fn retention_drops_finished_deliveries_only() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    s.insert((0..10).map(|i| delivery("a", &format!("e{i}"))).collect())
        .await
        .unwrap();
    let q = s.pending("a", 0, 10).unwrap();
    for item in &q[..8] {
        s.record_success(item.seq, attempt(200)).await;
    }
    let keep = Retention {
        max_age_ms: i64::MAX / 2,
        max_finished: 3,
    };
    assert_eq!(s.retain(keep).await.unwrap(), 5, "the 5 oldest finished go");
    assert!(s.get("acme", &q[0].delivery.delivery_id).unwrap().is_none());
    assert!(s.get("acme", &q[7].delivery.delivery_id).unwrap().is_some());
    let all = Retention {
        max_age_ms: -1_000,
        max_finished: 0,
    };
    assert_eq!(s.retain(all).await.unwrap(), 3);
    let left = s
        .list(
            &pb::ListDeliveriesRequest {
                tenant_id: "acme".into(),
                ..Default::default()
            },
            None,
            100,
        )
        .unwrap();
    assert_eq!(
        left.deliveries.len(),
        2,
        "queued deliveries are never dropped"
    );
    assert_eq!(s.pending("a", 0, 10).unwrap().len(), 2);
}

#[tokio::test]
async fn handed_deliveries_queue_ahead_of_parked_work_and_may_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let slot = |ep: &str| herald_shared::slot::slot_for(ep, herald_shared::slot::SLOT_COUNT);
    let mut fresh = delivery("a", "new");
    fresh.slot = slot("a");
    // New work for a slot still being handed over is parked...
    s.insert_parking(2, vec![fresh], vec![slot("a")])
        .await
        .unwrap();
    assert!(
        s.pending("a", 0, 10).unwrap().is_empty(),
        "parked, not queued"
    );
    // ...so are the handed deliveries, with their state and stamps...
    let handed = |event: &str| {
        let mut d = delivery("a", event);
        d.slot = slot("a");
        d.delivery_id = herald_shared::ids::delivery_id_for("a", event);
        pb::HandedDelivery {
            delivery: Some(d),
            status: pb::DeliveryStatus::Retrying as i32,
            attempts: 2,
            next_attempt_at_ms: 99,
            last_status_code: 503,
            attempt_log: vec![attempt(503), attempt(503)]
                .into_iter()
                .enumerate()
                .map(|(i, a)| pb::Attempt {
                    number: i as u32 + 1,
                    ..a
                })
                .collect(),
            stamp: Some(pb::DeliveryStamp {
                epoch: 1,
                seq: event.len() as u64,
            }),
        }
    };
    let r = s
        .insert_handed(
            2,
            vec![handed("old1"), handed("old22")],
            false,
            vec![slot("a")],
        )
        .await
        .unwrap();
    assert_eq!(r.stored, 2);
    assert!(s.pending("a", 0, 10).unwrap().is_empty());
    // ...and once the handoff is done all of it is queued in stamp order.
    assert_eq!(s.unpark(slot("a")).await.unwrap(), ["a"]);
    let q = s.pending("a", 0, 10).unwrap();
    let events: Vec<_> = q.iter().map(|q| q.delivery.event_id.as_str()).collect();
    assert_eq!(events, ["old1", "old22", "new"]);
    assert_eq!((q[0].attempts, q[0].next_attempt_at_ms), (2, 99));
    let d = s.get("acme", &q[0].delivery.delivery_id).unwrap().unwrap();
    assert_eq!(d.attempts.len(), 2, "the attempt log moved too");
    // Handing them away forgets them here; taking them back stores them
    // again (the idempotency record must not drop them: that lost events).
    let seqs: Vec<u64> = q[..2].iter().map(|q| q.seq).collect();
    assert_eq!(s.drop_handed(seqs).await.unwrap(), 2);
    assert_eq!(s.pending("a", 0, 10).unwrap().len(), 1);
    let r = s
        .insert_handed(3, vec![handed("old1")], true, vec![])
        .await
        .unwrap();
    assert_eq!((r.stored, r.duplicates), (1, 0));
    let again = s
        .insert_handed(3, vec![handed("old1")], true, vec![])
        .await
        .unwrap();
    assert_eq!(again.duplicates, 1, "a repeated batch is skipped");
    let q = s.pending("a", 0, 10).unwrap();
    assert!(
        q.last().unwrap().delivery.late_backlog,
        "leftovers are marked"
    );
    assert_eq!(s.stats("a").unwrap().queue_depth, 2);
}

fn slot_of(ep: &str) -> u32 {
    herald_shared::slot::slot_for(ep, herald_shared::slot::SLOT_COUNT)
}

fn in_slot(ep: &str, event: &str) -> pb::Delivery {
    let mut d = delivery(ep, event);
    d.slot = slot_of(ep);
    d.delivery_id = herald_shared::ids::delivery_id_for(ep, event);
    d
}

fn events(q: &[Queued]) -> Vec<String> {
    q.iter().map(|q| q.delivery.event_id.clone()).collect()
}

/// The gap ARCHITECTURE.md used to list: B, the new owner, parked its own
/// work (epoch 2) and died; the interim owner A parked newer work (epoch 3)
/// and, when B came back, handed it over. B's own older work must go first,
/// whatever order things reached it in.
#[tokio::test]
async fn own_parked_work_goes_before_newer_handed_work() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let parked = vec![slot_of("a")];
    s.insert_parking(
        2,
        vec![in_slot("a", "b1"), in_slot("a", "b2")],
        parked.clone(),
    )
    .await
    .unwrap();
    let handed = |event: &str, seq: u64| pb::HandedDelivery {
        delivery: Some(in_slot("a", event)),
        status: pb::DeliveryStatus::Pending as i32,
        stamp: Some(pb::DeliveryStamp { epoch: 3, seq }),
        ..Default::default()
    };
    // A's sequence numbers are its own and far above B's: only epochs compare.
    s.insert_handed(
        4,
        vec![handed("a1", 1), handed("a2", 2)],
        false,
        parked.clone(),
    )
    .await
    .unwrap();
    s.insert_parking(4, vec![in_slot("a", "b3")], parked.clone())
        .await
        .unwrap();
    assert!(
        s.pending("a", 0, 10).unwrap().is_empty(),
        "nothing goes before the handoff is done"
    );
    s.unpark(slot_of("a")).await.unwrap();
    assert_eq!(
        events(&s.pending("a", 0, 10).unwrap()),
        ["b1", "b2", "a1", "a2", "b3"]
    );
}

/// Everything the index holds comes back after a restart: queue order,
/// parked work, retry state, attempts, counters, the idempotency window.
#[tokio::test]
async fn a_restart_rebuilds_every_index_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let before;
    {
        let s = Store::open(dir.path()).unwrap();
        s.insert_parking(
            1,
            vec![in_slot("a", "e1"), in_slot("a", "e2"), in_slot("b", "p1")],
            vec![slot_of("b")],
        )
        .await
        .unwrap();
        let q = s.pending("a", 0, 10).unwrap();
        s.record_failure(
            q[0].seq,
            attempt(503),
            AttemptResult::Retry { next_at_ms: 77 },
        )
        .await
        .unwrap();
        s.record_success(q[1].seq, attempt(200)).await;
        s.sync().await.unwrap();
        before = (s.pending("a", 0, 10).unwrap(), s.stats("a").unwrap());
    }
    let s = reopen(dir.path()).await;
    let q = s.pending("a", 0, 10).unwrap();
    assert_eq!(events(&q), events(&before.0));
    assert_eq!(
        (q[0].attempts, q[0].next_attempt_at_ms, q[0].position),
        (1, 77, before.0[0].position)
    );
    assert_eq!(s.stats("a").unwrap(), before.1);
    assert!(s.pending("b", 0, 10).unwrap().is_empty(), "still parked");
    assert_eq!(s.unpark(slot_of("b")).await.unwrap(), ["b"]);
    assert_eq!(events(&s.pending("b", 0, 10).unwrap()), ["p1"]);
    let detail = s.get("acme", &q[0].delivery.delivery_id).unwrap().unwrap();
    assert_eq!(detail.attempts.len(), 1);
    assert_eq!(
        s.insert(vec![in_slot("a", "e2")]).await.unwrap().duplicates,
        1
    );
}

/// Retention drops whole segments, oldest first, once little of them is
/// live: the live deliveries move forward with their attempts, counters
/// survive in a checkpoint, and the ids of what was dropped are still
/// remembered for the idempotency window.
#[tokio::test]
async fn compaction_drops_old_segments_and_keeps_what_is_live() {
    let dir = tempfile::tempdir().unwrap();
    let keep_event = "e0";
    {
        let s = Store::open_with_segment_bytes(dir.path(), 4096).unwrap();
        for i in 0..200 {
            s.insert(vec![in_slot("a", &format!("e{i}"))])
                .await
                .unwrap();
        }
        let q = s.pending("a", 0, 1000).unwrap();
        // The first stays queued, with a failed attempt; the rest succeed.
        s.record_failure(
            q[0].seq,
            attempt(500),
            AttemptResult::Retry { next_at_ms: 5 },
        )
        .await
        .unwrap();
        for (i, item) in q[1..].iter().enumerate() {
            s.record_success(item.seq, attempt(200)).await;
            if i % 4 == 0 {
                s.sync().await.unwrap();
            }
        }
        s.sync().await.unwrap();
        let segments_before = s.segment_count();
        assert!(segments_before > 10, "{segments_before}");
        let r = Retention {
            max_age_ms: i64::MAX / 2,
            max_finished: 0,
        };
        assert_eq!(s.retain(r).await.unwrap(), 199);
        // Each call compacts at most the oldest segment.
        for _ in 0..3 * segments_before {
            s.retain(r).await.unwrap();
        }
        assert!(
            s.segment_count() <= 3,
            "{} of {segments_before}",
            s.segment_count()
        );
    }
    let s = reopen(dir.path()).await;
    let q = s.pending("a", 0, 10).unwrap();
    assert_eq!(events(&q), [keep_event]);
    assert_eq!(
        s.get("acme", &q[0].delivery.delivery_id)
            .unwrap()
            .unwrap()
            .attempts
            .len(),
        1
    );
    let st = s.stats("a").unwrap();
    assert_eq!(
        (st.events, st.successes, st.attempts, st.queue_depth),
        (200, 199, 200, 1)
    );
    // The checkpoint keeps which delivery the last success and failure were.
    let named = |b: &Option<pb::AttemptSummary>| b.as_ref().map(|b| b.delivery_id.clone());
    assert_eq!(
        named(&st.last_failure),
        Some(q[0].delivery.delivery_id.clone())
    );
    let last = named(&st.last_success).unwrap_or_default();
    assert!(
        last.starts_with("dlv_") && last != q[0].delivery.delivery_id,
        "{last}"
    );
    let all = pb::ListDeliveriesRequest {
        tenant_id: "acme".into(),
        ..Default::default()
    };
    assert_eq!(s.list(&all, None, 1000).unwrap().deliveries.len(), 1);
    // Dropped by retention, still within the window: a re-sent publish is
    // a duplicate.
    assert_eq!(
        s.insert(vec![in_slot("a", "e5")]).await.unwrap().duplicates,
        1
    );
}

#[tokio::test]
async fn a_damaged_record_in_the_middle_stops_the_store_from_opening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Store::open(dir.path()).unwrap();
        for i in 0..3 {
            s.insert(vec![in_slot("a", &format!("e{i}"))])
                .await
                .unwrap();
        }
    }
    let path = dir.path().join("store/seg-0000000000.log");
    // Wait for the writer to let go of the lock, then damage the first commit.
    let _ = reopen(dir.path()).await;
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[40] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let err = loop {
        match Store::open(dir.path()) {
            Err(e) if e.to_string().contains("in use") => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await
            }
            Err(e) => break e,
            Ok(_) => panic!("a damaged store opened"),
        }
    };
    assert!(err.to_string().contains("corrupt"), "{err}");
}

#[tokio::test]
async fn new_work_past_the_undelivered_limit_is_refused_and_nothing_of_it_stored() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    s.limit_undelivered(3);
    let r = s
        .insert(vec![delivery("a", "e1"), delivery("a", "e2")])
        .await
        .unwrap();
    assert_eq!(r.stored, 2);
    // Two more would make four: all or nothing, so neither is stored.
    let e = s
        .insert(vec![delivery("a", "e3"), delivery("b", "e4")])
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Full { held: 2, limit: 3 }), "{e}");
    assert!(e.to_string().contains("--max-undelivered 3"), "{e}");
    assert_eq!(s.queue_len().unwrap(), 2);
    assert!(s.pending("b", 0, 10).unwrap().is_empty());
    // One fits; then a duplicate needs no room, a new one is refused.
    assert_eq!(s.insert(vec![delivery("a", "e3")]).await.unwrap().stored, 1);
    let dup = s.insert(vec![delivery("a", "e1")]).await.unwrap();
    assert_eq!((dup.stored, dup.duplicates), (0, 1));
    assert!(matches!(
        s.insert(vec![delivery("a", "e5")]).await,
        Err(Error::Full { held: 3, .. })
    ));
    // Handed-over work was accepted elsewhere already: always taken.
    let mut d = delivery("c", "h1");
    d.slot = slot_of("c");
    d.delivery_id = herald_shared::ids::delivery_id_for("c", "h1");
    let handed = pb::HandedDelivery {
        delivery: Some(d),
        status: pb::DeliveryStatus::Pending as i32,
        stamp: Some(pb::DeliveryStamp { epoch: 1, seq: 1 }),
        ..Default::default()
    };
    let r = s
        .insert_handed(2, vec![handed], false, vec![])
        .await
        .unwrap();
    assert_eq!(r.stored, 1);
    assert_eq!(s.queue_len().unwrap(), 4);
    // Delivering makes room again.
    for q in s.pending("a", 0, 10).unwrap() {
        s.record_success(q.seq, attempt(200)).await;
    }
    s.sync().await.unwrap();
    assert_eq!(s.insert(vec![delivery("a", "e5")]).await.unwrap().stored, 1);
    // 0 is no limit.
    s.limit_undelivered(0);
    let many: Vec<_> = (0..10).map(|i| delivery("d", &format!("m{i}"))).collect();
    assert_eq!(s.insert(many).await.unwrap().stored, 10);
}
