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
                "a",
                a[1].seq,
                attempt(500),
                AttemptResult::Retry { next_at_ms: 1234 },
            )
            .await
            .unwrap();
        assert_eq!(streak, 0, "a retry is not a delivery failed for good");
        s.record_success("a", a[0].seq, attempt(200)).await;
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
        "a",
        q[0].seq,
        attempt(503),
        AttemptResult::Retry { next_at_ms: 5 },
    )
    .await
    .unwrap();
    s.record_success("a", q[0].seq, attempt(200)).await;
    s.record_failure("a", q[1].seq, attempt(500), AttemptResult::FailedForGood)
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
        s.record_success("a", item.seq, attempt(200)).await;
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
    s.insert_parking(vec![fresh], vec![slot("a")])
        .await
        .unwrap();
    assert!(
        s.pending("a", 0, 10).unwrap().is_empty(),
        "parked, not queued"
    );
    // ...the handed deliveries are queued as they come, with their state...
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
        }
    };
    let r = s
        .insert_handed(vec![handed("old1"), handed("old2")], false)
        .await
        .unwrap();
    assert_eq!(r.stored, 2);
    // ...and once the handoff is done the parked work goes behind them.
    assert_eq!(s.unpark(slot("a")).await.unwrap(), ["a"]);
    let q = s.pending("a", 0, 10).unwrap();
    let events: Vec<_> = q.iter().map(|q| q.delivery.event_id.as_str()).collect();
    assert_eq!(events, ["old1", "old2", "new"]);
    assert_eq!((q[0].attempts, q[0].next_attempt_at_ms), (2, 99));
    let d = s.get("acme", &q[0].delivery.delivery_id).unwrap().unwrap();
    assert_eq!(d.attempts.len(), 2, "the attempt log moved too");
    // Handing them away forgets them here; taking them back stores them
    // again (the idempotency record must not drop them: that lost events).
    let seqs: Vec<u64> = q[..2].iter().map(|q| q.seq).collect();
    assert_eq!(s.drop_handed(seqs).await.unwrap(), 2);
    assert_eq!(s.pending("a", 0, 10).unwrap().len(), 1);
    let r = s.insert_handed(vec![handed("old1")], true).await.unwrap();
    assert_eq!((r.stored, r.duplicates), (1, 0));
    let again = s.insert_handed(vec![handed("old1")], true).await.unwrap();
    assert_eq!(again.duplicates, 1, "a repeated batch is skipped");
    let q = s.pending("a", 0, 10).unwrap();
    assert!(
        q.last().unwrap().delivery.late_backlog,
        "leftovers are marked"
    );
    assert_eq!(s.stats("a").unwrap().queue_depth, 2);
}

#[tokio::test]
async fn a_store_from_before_the_id_index_merge_keeps_its_ids_and_idempotency_records() {
    let dir = tempfile::tempdir().unwrap();
    {
        // The layout of older stores: ids and idempotency records apart.
        let db = redb::Database::create(dir.path().join("herald-agent.redb")).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(tables::OLD_IDS)
            .unwrap()
            .insert("dlv_held", 7)
            .unwrap();
        tx.open_table(tables::OLD_SEEN)
            .unwrap()
            .insert(("a", "dlv_gone"), 1_000)
            .unwrap();
        tx.commit().unwrap();
    }
    let s = Store::open(dir.path()).unwrap();
    let mut gone = delivery("a", "e1");
    gone.delivery_id = "dlv_gone".into();
    let mut held = delivery("a", "e2");
    held.delivery_id = "dlv_held".into();
    let r = s
        .insert(vec![gone, held, delivery("a", "e3")])
        .await
        .unwrap();
    assert_eq!((r.stored, r.duplicates), (1, 2));
    let tx = s.read().unwrap();
    use redb::TableHandle as _;
    let names: Vec<String> = tx
        .list_tables()
        .unwrap()
        .map(|t| t.name().to_string())
        .collect();
    assert!(!names.contains(&"seen".to_string()), "{names:?}");
    assert!(!names.contains(&"delivery_ids".to_string()), "{names:?}");
}

#[tokio::test]
async fn a_worker_feed_gets_committed_work_in_order_and_goes_stale_on_purge() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let feed = s.subscribe("a");
    assert!(
        matches!(feed.take(0, 10), Taken::Stale),
        "read the store first"
    );
    feed.refresh();
    s.insert(vec![
        delivery("a", "e1"),
        delivery("b", "e1"),
        delivery("a", "e2"),
    ])
    .await
    .unwrap();
    let Taken::Items(got) = feed.take(0, 10) else {
        panic!("the feed has the new work")
    };
    let events: Vec<_> = got.iter().map(|q| q.delivery.event_id.as_str()).collect();
    assert_eq!(events, ["e1", "e2"]);
    // The same items, with the same places, as a store read gives.
    let stored = s.pending("a", 0, 10).unwrap();
    let key = |q: &Queued| (q.seq, q.position);
    assert_eq!(
        got.iter().map(key).collect::<Vec<_>>(),
        stored.iter().map(key).collect::<Vec<_>>()
    );
    s.insert(vec![delivery("a", "e3")]).await.unwrap();
    s.purge("b").await.unwrap();
    assert!(
        matches!(feed.take(got[1].position, 10), Taken::Stale),
        "a purge is not something a feed can follow"
    );
}

/// A worker as the dispatcher runs it (store until a short read, then its
/// feed), with publishes landing at every point of that cycle, including
/// between the feed's refresh and the store read, and bursts that overflow
/// the feed: it must see every delivery once, in queue order.
#[tokio::test]
async fn a_worker_moving_between_store_and_feed_sees_everything_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let feed = s.subscribe("a");
    let limit = 64;
    let (mut from_store, mut after) = (true, 0u64);
    let mut published = 0u64;
    let mut got: Vec<u64> = Vec::new();
    let publish = |n: u64, published: &mut u64| {
        let batch: Vec<_> = (*published..*published + n)
            .map(|i| delivery("a", &format!("e{i}")))
            .collect();
        *published += n;
        batch
    };
    let seq_of = |q: &Queued| q.delivery.event_id[1..].parse::<u64>().unwrap();
    for round in 0u64..400 {
        // Mostly small publishes, now and then a burst past the feed's cap.
        let n = if round % 97 == 50 {
            1_500
        } else {
            (round * 37) % 23
        };
        s.insert(publish(n, &mut published)).await.unwrap();
        let batch = if from_store {
            feed.refresh();
            if round % 3 == 0 {
                // Lands in the feed and in the read that follows.
                s.insert(publish(5, &mut published)).await.unwrap();
            }
            let b = s.pending("a", after, limit).unwrap();
            from_store = b.len() >= limit;
            b
        } else {
            match feed.take(after, limit) {
                Taken::Items(b) => b,
                Taken::Empty => Vec::new(),
                Taken::Stale => {
                    from_store = true;
                    Vec::new()
                }
            }
        };
        for q in batch {
            after = q.position;
            got.push(seq_of(&q));
        }
    }
    // Drain what is left the same way.
    while (got.len() as u64) < published {
        let batch = if from_store {
            feed.refresh();
            let b = s.pending("a", after, limit).unwrap();
            from_store = b.len() >= limit;
            b
        } else {
            match feed.take(after, limit) {
                Taken::Items(b) => b,
                Taken::Empty => break,
                Taken::Stale => {
                    from_store = true;
                    continue;
                }
            }
        };
        for q in batch {
            after = q.position;
            got.push(seq_of(&q));
        }
    }
    assert_eq!(got.len() as u64, published, "every delivery, once");
    assert!(got.iter().copied().eq(0..published), "in publish order");
    assert!(published > 4_000, "bursts overflowed the feed: {published}");
}
