//! The delivery log (D9, O1 to O5) on real parts: every attempt recorded
//! with what was sent and received (bodies cut at the limit, redirects
//! logged and not followed), lists with filters and pages, resend,
//! recover, test events, endpoint statistics, and the cap on an unordered
//! endpoint's requests in flight.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use herald_proto::v1 as pb;
use herald_tests::cluster::{Clients, Cluster};
use herald_tests::receiver::Receiver;
use serde_json::json;

const TENANT: &str = "acme";

fn spec(url: &str, types: &[&str], delays_ms: Vec<u32>) -> pb::EndpointSpec {
    pb::EndpointSpec {
        name: "log test".into(),
        url: url.into(),
        enabled: true,
        event_types: types.iter().map(|s| s.to_string()).collect(),
        retry: Some(pb::RetryPolicy { delays_ms }),
        // These tests fail deliveries on purpose; keep the endpoints enabled.
        disable_after_failures: 10_000,
        ..Default::default()
    }
}

async fn create(api: &mut Clients, spec: pb::EndpointSpec) -> anyhow::Result<String> {
    let created = api
        .endpoints
        .create_endpoint(pb::CreateEndpointRequest {
            tenant_id: TENANT.into(),
            spec: Some(spec),
        })
        .await?
        .into_inner();
    Ok(created.endpoint.map(|e| e.id).unwrap_or_default())
}

async fn setup(types: &[&str]) -> anyhow::Result<Cluster> {
    let mut c = Cluster::start().await?;
    for t in types {
        c.api.event_type(t).await?;
    }
    c.api.tenant(TENANT).await?;
    Ok(c)
}

fn ms(d: i64) -> Duration {
    Duration::from_millis(d.max(0) as u64)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_attempt_is_logged_with_request_and_response() -> anyhow::Result<()> {
    let mut c = setup(&["order.created"]).await?;
    let receiver = Receiver::start().await;
    let mut s = spec(&receiver.url("/hook"), &["*"], vec![500, 1000]);
    s.headers.insert("x-api-key".into(), "s3cret-value".into());
    let ep = create(&mut c.api, s).await?;
    receiver.script(&[(500, None), (502, None)]);
    c.api
        .publish(TENANT, "order.created", json!({"seq": 0}), "k0")
        .await?;
    let done = c
        .api
        .wait_for_status(
            TENANT,
            &ep,
            pb::DeliveryStatus::Succeeded,
            1,
            Duration::from_secs(20),
        )
        .await?;
    assert_eq!(receiver.received().len(), 3);
    let d = c.api.delivery(TENANT, &done[0].delivery_id).await?;
    let sum = d.summary.clone().unwrap_or_default();
    assert_eq!(sum.attempts, 3);
    assert_eq!(sum.last_status_code, 200);
    assert_eq!(d.payload_json, r#"{"seq":0}"#);
    let a = &d.attempts;
    assert_eq!(a.len(), 3, "three attempts in the log");
    let got: Vec<_> = a
        .iter()
        .map(|a| {
            (
                a.number,
                a.response_status,
                a.error_kind,
                a.response_body.as_str(),
            )
        })
        .collect();
    let status = pb::ErrorKind::Status as i32;
    let none = pb::ErrorKind::None as i32;
    assert_eq!(
        got,
        [
            (1, 500, status, "request 1: answered 500"),
            (2, 502, status, "request 2: answered 502"),
            (3, 200, none, "request 3: answered 200"),
        ]
    );
    // The attempts fall at the schedule's times (±10 % jitter, slack for CI).
    let g1 = ms(a[1].started_at_ms - a[0].started_at_ms);
    let g2 = ms(a[2].started_at_ms - a[1].started_at_ms);
    assert!(
        g1 >= Duration::from_millis(440) && g1 < Duration::from_millis(1500),
        "{g1:?}"
    );
    assert!(
        g2 >= Duration::from_millis(890) && g2 < Duration::from_millis(2500),
        "{g2:?}"
    );
    for at in a {
        assert_eq!(at.method, "POST");
        assert_eq!(at.url, receiver.url("/hook"));
        let h = &at.request_headers;
        assert_eq!(
            h.get("webhook-id").map(String::as_str),
            Some(sum.event_id.as_str())
        );
        assert!(
            h.get("webhook-signature")
                .is_some_and(|v| v.starts_with("v1,"))
        );
        assert_eq!(
            h.get("x-api-key").map(String::as_str),
            Some("[redacted]"),
            "custom header values are not logged"
        );
        assert_eq!(
            at.response_headers.get("x-receiver").map(String::as_str),
            Some("test")
        );
        assert!(!at.response_body_truncated);
    }
    assert!(
        !format!("{d:?}").contains("s3cret-value"),
        "no secret in the log"
    );

    let st = c.api.stats(TENANT, &ep).await?;
    assert_eq!(
        (
            st.events,
            st.attempts,
            st.successes,
            st.failures,
            st.queue_depth
        ),
        (1, 3, 1, 0, 0)
    );
    assert_eq!(st.failures_since_last_success, 0);
    // Two answers were not 2xx (seed 004's "failed responses"), though no
    // delivery failed for good.
    assert_eq!(st.failed_attempts, 2);
    assert_eq!(st.next_attempt_at_ms, 0);
    assert_eq!(st.last_success.as_ref().map(|s| s.status_code), Some(200));
    let lf = st.last_failure.clone().unwrap_or_default();
    // Which delivery they were, to open it in the log.
    assert_eq!(
        st.last_success.as_ref().map(|s| s.delivery_id.as_str()),
        Some(done[0].delivery_id.as_str())
    );
    assert_eq!(lf.delivery_id, done[0].delivery_id);
    assert_eq!(
        (lf.status_code, lf.response_body.as_str()),
        (502, "request 2: answered 502")
    );
    assert!(st.last_event_at_ms > 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn retrying_deliveries_show_when_they_are_due() -> anyhow::Result<()> {
    let mut c = setup(&["order.created"]).await?;
    let receiver = Receiver::start().await;
    receiver.set_status(503);
    let ep = create(&mut c.api, spec(&receiver.url("/"), &["*"], vec![60_000])).await?;
    let before = now_ms();
    c.api.publish_seqs(0..3).await?;
    let retrying = c
        .api
        .wait_for_status(
            TENANT,
            &ep,
            pb::DeliveryStatus::Retrying,
            1,
            Duration::from_secs(20),
        )
        .await?;
    let r = &retrying[0];
    assert_eq!(r.attempts, 1);
    assert_eq!(r.last_status_code, 503);
    let due = r.next_attempt_at_ms - before;
    assert!(
        (50_000..=70_000).contains(&due),
        "due in about a minute: {due} ms"
    );
    // Ordered: the two behind the head wait, untried.
    let pending = c
        .api
        .wait_for_status(
            TENANT,
            &ep,
            pb::DeliveryStatus::Pending,
            2,
            Duration::from_secs(5),
        )
        .await?;
    assert!(pending.iter().all(|p| p.attempts == 0));
    let st = c.api.stats(TENANT, &ep).await?;
    assert_eq!((st.events, st.attempts, st.queue_depth), (3, 1, 3));
    assert_eq!(
        st.next_attempt_at_ms, r.next_attempt_at_ms,
        "stats show the next attempt"
    );
    assert_eq!(st.failures_since_last_success, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn transport_errors_are_classified() -> anyhow::Result<()> {
    let mut c = setup(&["order.created"]).await?;
    let slow = Receiver::start().await;
    slow.set_delay(Duration::from_secs(2));
    let plain = Receiver::start().await;
    let closed = herald_tests::process::free_port();
    let mut timeout = spec(&slow.url("/"), &["*"], vec![]);
    timeout.timeout_ms = 200;
    let cases = [
        (
            create(
                &mut c.api,
                spec(&format!("http://127.0.0.1:{closed}/"), &["*"], vec![]),
            )
            .await?,
            pb::ErrorKind::Connect,
        ),
        (create(&mut c.api, timeout).await?, pb::ErrorKind::Timeout),
        (
            // A TLS handshake with a server that speaks plain HTTP.
            create(
                &mut c.api,
                spec(&format!("https://{}/", plain.addr), &["*"], vec![]),
            )
            .await?,
            pb::ErrorKind::Tls,
        ),
    ];
    c.api
        .publish(TENANT, "order.created", json!({"seq": 0}), "k0")
        .await?;
    for (ep, kind) in cases {
        let failed = c
            .api
            .wait_for_status(
                TENANT,
                &ep,
                pb::DeliveryStatus::Failed,
                1,
                Duration::from_secs(20),
            )
            .await?;
        let d = c.api.delivery(TENANT, &failed[0].delivery_id).await?;
        assert_eq!(d.attempts.len(), 1);
        let a = &d.attempts[0];
        assert_eq!(
            pb::ErrorKind::try_from(a.error_kind).ok(),
            Some(kind),
            "endpoint {ep}: {}",
            a.error
        );
        assert_eq!(a.response_status, 0);
        assert!(!a.error.is_empty());
        let st = c.api.stats(TENANT, &ep).await?;
        assert_eq!((st.failures, st.deliveries_failed_in_a_row), (1, 1));
        assert_eq!(st.last_failure.map(|f| f.error_kind), Some(kind as i32));
    }
    Ok(())
}

/// The one failed attempt of an endpoint's first delivery (no retries).
async fn only_attempt(c: &mut Cluster, ep: &str) -> anyhow::Result<pb::Attempt> {
    let failed = c
        .api
        .wait_for_status(
            TENANT,
            ep,
            pb::DeliveryStatus::Failed,
            1,
            Duration::from_secs(20),
        )
        .await?;
    let d = c.api.delivery(TENANT, &failed[0].delivery_id).await?;
    anyhow::ensure!(d.attempts.len() == 1, "one attempt: {:?}", d.attempts);
    Ok(d.attempts[0].clone())
}

/// D8: a redirect is the receiver's answer, not a new destination (it could
/// point anywhere, past the egress guard): the 302 is a failed attempt,
/// logged with its Location, and the place it names gets nothing.
#[tokio::test(flavor = "multi_thread")]
async fn redirects_are_failures_and_are_not_followed() -> anyhow::Result<()> {
    let mut c = setup(&["order.created"]).await?;
    let (redirecting, target) = (Receiver::start().await, Receiver::start().await);
    redirecting.set_status(302);
    redirecting.set_location(&target.url("/elsewhere"));
    let ep = create(&mut c.api, spec(&redirecting.url("/"), &["*"], vec![])).await?;
    c.api
        .publish(TENANT, "order.created", json!({"seq": 0}), "k0")
        .await?;
    let a = only_attempt(&mut c, &ep).await?;
    assert_eq!(
        (a.response_status, a.error_kind),
        (302, pb::ErrorKind::Status as i32)
    );
    assert_eq!(
        a.response_headers.get("location"),
        Some(&target.url("/elsewhere"))
    );
    assert_eq!(redirecting.received().len(), 1);
    // Following it would have happened inside the attempt, before its record.
    assert!(target.received().is_empty(), "the redirect was followed");
    Ok(())
}

/// D9: a response body is kept up to the agent's limit (4 KiB by default)
/// and marked cut when it was longer.
#[tokio::test(flavor = "multi_thread")]
async fn long_response_bodies_are_cut_at_the_limit() -> anyhow::Result<()> {
    let mut c = setup(&["order.created"]).await?;
    let rx = Receiver::start().await;
    rx.set_status(500);
    rx.set_body_padding(10_000);
    let ep = create(&mut c.api, spec(&rx.url("/"), &["*"], vec![])).await?;
    c.api
        .publish(TENANT, "order.created", json!({"seq": 0}), "k0")
        .await?;
    let a = only_attempt(&mut c, &ep).await?;
    assert_eq!(a.response_status, 500);
    assert_eq!(a.response_body.len(), 4096);
    assert!(a.response_body.starts_with("request 1: answered 500..."));
    assert!(a.response_body_truncated);
    let st = c.api.stats(TENANT, &ep).await?;
    let last = st.last_failure.unwrap_or_default();
    // The statistics keep a brief: the body's first 256 bytes.
    assert_eq!(last.response_body, a.response_body[..256]);
    Ok(())
}

/// D6: an unordered endpoint keeps up to `max_in_flight` requests out at
/// once, and never more, however many deliveries wait.
#[tokio::test(flavor = "multi_thread")]
async fn unordered_endpoints_keep_at_most_max_in_flight_requests_out() -> anyhow::Result<()> {
    let mut c = setup(&["order.created"]).await?;
    let rx = Receiver::start().await;
    rx.hold();
    let mut s = spec(&rx.url("/"), &["*"], vec![]);
    s.ordering = pb::Ordering::Unordered as i32;
    s.max_in_flight = 3;
    let ep = create(&mut c.api, s).await?;
    for i in 0..12 {
        c.api
            .publish(
                TENANT,
                "order.created",
                json!({ "seq": i }),
                &format!("k{i}"),
            )
            .await?;
    }
    // All twelve wait at the agent while three requests are held.
    c.api
        .wait_for_status(
            TENANT,
            &ep,
            pb::DeliveryStatus::Pending,
            12,
            Duration::from_secs(20),
        )
        .await?;
    rx.wait_held(3, Duration::from_secs(20)).await;
    assert_eq!(rx.held(), 3, "three requests out");
    // Let them through slowly: with no cap the other nine would overlap.
    rx.set_delay(Duration::from_millis(100));
    rx.release();
    let got = rx.wait_for(12, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 12);
    assert_eq!(
        rx.peak_in_progress(),
        3,
        "max_in_flight caps the requests out"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn filters_and_pages_return_exactly_the_expected_deliveries() -> anyhow::Result<()> {
    let mut c = setup(&["order.created", "invoice.paid"]).await?;
    let ok = Receiver::start().await;
    let failing = Receiver::start().await;
    failing.set_status(500);
    let a = create(&mut c.api, spec(&ok.url("/"), &["*"], vec![])).await?;
    // Unordered, so its failures do not hold each other up.
    let mut bs = spec(&failing.url("/"), &["order.*"], vec![]);
    bs.ordering = pb::Ordering::Unordered as i32;
    bs.max_in_flight = 50;
    let b = create(&mut c.api, bs).await?;

    // 400 events in a first batch, 300 in a second: 700 for A, and B gets
    // the order.* ones (even numbers), 350: 1,050 deliveries.
    let publish = |api: &mut Clients, range: std::ops::Range<u64>| {
        let mut api = api.clone();
        async move {
            for i in range {
                let (t, r) = if i % 2 == 0 {
                    ("order.created", format!("ord_{}", i % 10))
                } else {
                    ("invoice.paid", format!("inv_{}", i % 10))
                };
                api.publish
                    .publish(pb::PublishRequest {
                        tenant_id: TENANT.into(),
                        event_type: t.into(),
                        payload_json: json!({ "seq": i }).to_string(),
                        idempotency_key: format!("k{i}"),
                        resource: Some(pb::Resource {
                            r#type: "thing".into(),
                            id: r,
                        }),
                        ..Default::default()
                    })
                    .await?;
            }
            anyhow::Ok(())
        }
    };
    publish(&mut c.api, 0..400).await?;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let t0 = now_ms();
    publish(&mut c.api, 400..700).await?;
    let t1 = now_ms() + 1;
    c.api
        .wait_for_status(
            TENANT,
            &a,
            pb::DeliveryStatus::Succeeded,
            700,
            Duration::from_secs(60),
        )
        .await?;
    c.api
        .wait_for_status(
            TENANT,
            &b,
            pb::DeliveryStatus::Failed,
            350,
            Duration::from_secs(60),
        )
        .await?;

    // Paging through the tenant's 1,050 deliveries yields each once, newest first.
    let tenant = pb::ListDeliveriesRequest {
        tenant_id: TENANT.into(),
        ..Default::default()
    };
    let (all, pages) = c.api.list_all(tenant.clone(), 37).await?;
    assert_eq!(all.len(), 1050);
    assert!(pages >= 1050 / 37, "{pages} pages");
    let ids: HashSet<_> = all.iter().map(|d| d.delivery_id.clone()).collect();
    assert_eq!(ids.len(), 1050, "each delivery once");
    assert!(
        all.windows(2)
            .all(|w| (w[0].created_at_ms, &w[0].delivery_id)
                > (w[1].created_at_ms, &w[1].delivery_id)),
        "newest first"
    );
    let count = |f: &dyn Fn(&pb::DeliverySummary) -> bool| all.iter().filter(|d| f(d)).count();
    let cases: Vec<(pb::ListDeliveriesRequest, usize)> = vec![
        (
            pb::ListDeliveriesRequest {
                statuses: vec![pb::DeliveryStatus::Failed as i32],
                ..tenant.clone()
            },
            350,
        ),
        (
            pb::ListDeliveriesRequest {
                statuses: vec![pb::DeliveryStatus::Succeeded as i32],
                ..tenant.clone()
            },
            700,
        ),
        (
            pb::ListDeliveriesRequest {
                statuses: vec![
                    pb::DeliveryStatus::Pending as i32,
                    pb::DeliveryStatus::Retrying as i32,
                ],
                ..tenant.clone()
            },
            0,
        ),
        (
            pb::ListDeliveriesRequest {
                event_types: vec!["invoice.*".into()],
                ..tenant.clone()
            },
            350,
        ),
        (
            pb::ListDeliveriesRequest {
                endpoint_id: b.clone(),
                event_types: vec!["invoice.paid".into()],
                ..tenant.clone()
            },
            0,
        ),
        (
            pb::ListDeliveriesRequest {
                resource_id: "ord_4".into(),
                ..tenant.clone()
            },
            // seq ≡ 4 (mod 10): 70 events, to A and to B.
            140,
        ),
        (
            pb::ListDeliveriesRequest {
                endpoint_id: a.clone(),
                resource_id: "inv_3".into(),
                ..tenant.clone()
            },
            70,
        ),
        (
            pb::ListDeliveriesRequest {
                since_ms: t0,
                until_ms: t1,
                ..tenant.clone()
            },
            // The second batch: 300 to A, 150 to B.
            450,
        ),
        (
            pb::ListDeliveriesRequest {
                endpoint_id: a.clone(),
                until_ms: t0,
                ..tenant.clone()
            },
            400,
        ),
    ];
    for (filter, want) in cases {
        let (got, _) = c.api.list_all(filter.clone(), 64).await?;
        assert_eq!(got.len(), want, "filter {filter:?}");
        let ids: HashSet<_> = got.iter().map(|d| d.delivery_id.as_str()).collect();
        assert_eq!(ids.len(), want, "no duplicates for {filter:?}");
        // Each result really matches, checked against the full listing.
        for d in &got {
            if !filter.endpoint_id.is_empty() {
                assert_eq!(d.endpoint_id, filter.endpoint_id);
            }
            if !filter.statuses.is_empty() {
                assert!(filter.statuses.contains(&d.status));
            }
            if !filter.resource_id.is_empty() {
                assert_eq!(
                    d.resource.as_ref().map(|r| r.id.as_str()),
                    Some(filter.resource_id.as_str())
                );
            }
            if filter.since_ms > 0 {
                assert!(d.created_at_ms >= filter.since_ms);
            }
            if filter.until_ms > 0 {
                assert!(d.created_at_ms < filter.until_ms);
            }
        }
    }
    assert_eq!(count(&|d| d.endpoint_id == b), 350);

    // Bad filters name the field.
    let bad = c
        .api
        .deliveries
        .list_deliveries(pb::ListDeliveriesRequest {
            statuses: vec![42],
            ..tenant.clone()
        })
        .await
        .expect_err("unknown status");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(
        bad.message().starts_with("statuses[0]: "),
        "{}",
        bad.message()
    );
    let bad = c
        .api
        .deliveries
        .list_deliveries(pb::ListDeliveriesRequest {
            endpoint_id: "ep_nope".into(),
            ..tenant.clone()
        })
        .await
        .expect_err("unknown endpoint");
    assert_eq!(bad.code(), tonic::Code::NotFound);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn resend_recover_and_test_events_make_linked_deliveries() -> anyhow::Result<()> {
    let mut c = setup(&["order.created"]).await?;
    c.api
        .catalog
        .create_event_type(pb::CreateEventTypeRequest {
            name: "order.shipped".into(),
            group: "order".into(),
            example_json: r#"{"order":"o_123","carrier":"acme-post"}"#.into(),
            ..Default::default()
        })
        .await?;
    let receiver = Receiver::start().await;
    receiver.set_status(500);
    let ep = create(&mut c.api, spec(&receiver.url("/"), &["*"], vec![])).await?;
    let since = now_ms();
    let mut event_ids = Vec::new();
    for i in 0..5 {
        let r = c
            .api
            .publish(
                TENANT,
                "order.created",
                json!({ "seq": i }),
                &format!("k{i}"),
            )
            .await?;
        event_ids.push(r.event_id);
    }
    let failed = c
        .api
        .wait_for_status(
            TENANT,
            &ep,
            pb::DeliveryStatus::Failed,
            5,
            Duration::from_secs(20),
        )
        .await?;
    receiver.set_status(200);
    let before = receiver.received().len();

    // Resend one: a new delivery, same event id and content, linked.
    let original = failed.iter().find(|d| d.event_id == event_ids[2]).cloned();
    let original = original.ok_or_else(|| anyhow::anyhow!("no delivery of event 2"))?;
    let resent = c
        .api
        .deliveries
        .resend_delivery(pb::ResendDeliveryRequest {
            tenant_id: TENANT.into(),
            delivery_id: original.delivery_id.clone(),
        })
        .await?
        .into_inner();
    assert_ne!(resent.delivery_id, original.delivery_id);
    let got = receiver.wait_for(before + 1, Duration::from_secs(10)).await;
    let last = &got[before];
    assert_eq!(last.json()["data"]["seq"], 2);
    assert_eq!(
        last.header("webhook-id"),
        original.event_id,
        "same event id"
    );
    let copy = c.api.delivery(TENANT, &resent.delivery_id).await?;
    let s = copy.summary.unwrap_or_default();
    assert_eq!(s.resend_of, original.delivery_id);
    assert_eq!(s.event_id, original.event_id);
    assert_eq!(copy.payload_json, r#"{"seq":2}"#);
    c.api
        .wait_for_status(
            TENANT,
            &ep,
            pb::DeliveryStatus::Succeeded,
            1,
            Duration::from_secs(10),
        )
        .await?;

    // Recover: every delivery still marked failed since `since`, oldest first.
    let recovered = c
        .api
        .deliveries
        .recover_deliveries(pb::RecoverDeliveriesRequest {
            tenant_id: TENANT.into(),
            endpoint_id: ep.clone(),
            since_ms: since,
        })
        .await?
        .into_inner();
    assert_eq!(recovered.resent, 5);
    let got = receiver.wait_for(before + 6, Duration::from_secs(10)).await;
    let seqs: Vec<u64> = got[before + 1..]
        .iter()
        .map(|r| r.json()["data"]["seq"].as_u64().unwrap_or(99))
        .collect();
    assert_eq!(seqs, [0, 1, 2, 3, 4], "recovered in their original order");
    let all = c.api.deliveries_of(TENANT, &ep).await?;
    assert_eq!(all.len(), 11, "5 originals, 1 resend, 5 recovered");
    let originals: HashSet<_> = failed.iter().map(|d| d.delivery_id.as_str()).collect();
    let links: Vec<_> = all.iter().filter(|d| !d.resend_of.is_empty()).collect();
    assert_eq!(links.len(), 6);
    assert!(
        links
            .iter()
            .all(|d| originals.contains(d.resend_of.as_str()))
    );

    // Test events: the built-in ping, and a catalog type's example.
    let ping = c
        .api
        .deliveries
        .send_test_event(pb::SendTestEventRequest {
            tenant_id: TENANT.into(),
            endpoint_id: ep.clone(),
            event_type: String::new(),
        })
        .await?
        .into_inner();
    let example = c
        .api
        .deliveries
        .send_test_event(pb::SendTestEventRequest {
            tenant_id: TENANT.into(),
            endpoint_id: ep.clone(),
            event_type: "order.shipped".into(),
        })
        .await?
        .into_inner();
    let got = receiver.wait_for(before + 8, Duration::from_secs(10)).await;
    assert_eq!(got[before + 6].json()["type"], "herald.ping");
    assert_eq!(got[before + 6].header("webhook-id"), ping.event_id);
    assert_eq!(got[before + 7].json()["type"], "order.shipped");
    assert_eq!(got[before + 7].json()["data"]["carrier"], "acme-post");
    let t = c.api.delivery(TENANT, &example.delivery_id).await?;
    assert!(t.summary.is_some_and(|s| s.test));

    // A success is committed with the agent's next group, just after the
    // receiver answered: wait for the counters to catch up.
    let deadline = Instant::now() + Duration::from_secs(10);
    let st = loop {
        let st = c.api.stats(TENANT, &ep).await?;
        if st.successes >= 8 || Instant::now() >= deadline {
            break st;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!((st.events, st.successes, st.failures), (13, 8, 5));

    // Unknown deliveries and types get clear statuses.
    let e = c
        .api
        .deliveries
        .resend_delivery(pb::ResendDeliveryRequest {
            tenant_id: TENANT.into(),
            delivery_id: "dlv_000000000000000000000000".into(),
        })
        .await
        .expect_err("unknown delivery");
    assert_eq!(e.code(), tonic::Code::NotFound);
    let e = c
        .api
        .deliveries
        .send_test_event(pb::SendTestEventRequest {
            tenant_id: TENANT.into(),
            endpoint_id: ep.clone(),
            event_type: "no.such.type".into(),
        })
        .await
        .expect_err("unknown type");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().starts_with("event_type: "), "{}", e.message());
    let e = c
        .api
        .deliveries
        .recover_deliveries(pb::RecoverDeliveriesRequest {
            tenant_id: TENANT.into(),
            endpoint_id: ep.clone(),
            since_ms: 0,
        })
        .await
        .expect_err("since is required");
    assert!(e.message().starts_with("since_ms: "), "{}", e.message());
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_keeps_the_store_bounded() -> anyhow::Result<()> {
    let mut c = Cluster::start_with(&["--log-retention-secs=1", "--store-segment-mib=1"]).await?;
    c.api.event_type("order.created").await?;
    c.api.tenant(TENANT).await?;
    let receiver = Receiver::start().await;
    let ep = create(&mut c.api, spec(&receiver.url("/"), &["*"], vec![])).await?;
    let dir = c.agent.data_dir().join("store");
    let size = || -> std::io::Result<u64> {
        let mut total = 0;
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            if e.file_type()?.is_file() {
                total += e.metadata()?.len();
            }
        }
        Ok(total)
    };
    let blob = "x".repeat(32 * 1024);
    let started = Instant::now();
    let mut sizes = Vec::new();
    let mut published = 0u64;
    // 20 retention windows of steady traffic; sample the file as it goes.
    while started.elapsed() < Duration::from_secs(20) {
        c.api
            .publish(
                TENANT,
                "order.created",
                json!({ "seq": published, "blob": blob }),
                &format!("k{published}"),
            )
            .await?;
        published += 1;
        if published.is_multiple_of(40) {
            sizes.push((started.elapsed(), size()?));
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    let total = published * blob.len() as u64;
    let peak = |from: u64, to: u64| {
        sizes
            .iter()
            .filter(|(t, _)| (Duration::from_secs(from)..Duration::from_secs(to)).contains(t))
            .map(|(_, s)| *s)
            .max()
            .unwrap_or(0)
    };
    let (early, late) = (peak(0, 7), peak(7, 60));
    eprintln!(
        "published {published} events ({} MiB); largest store size in the first 7 s {} KiB, after {} KiB; samples (ms, KiB): {:?}",
        total >> 20,
        early >> 10,
        late >> 10,
        sizes
            .iter()
            .map(|(t, s)| (t.as_millis(), s >> 10))
            .collect::<Vec<_>>()
    );
    assert!(published >= 200, "enough traffic to mean something");
    // Retention frees whole segments: a little over the first third's peak
    // is tolerated, a steady climb is not.
    assert!(
        late <= 2 * early,
        "the store stops growing: at most {early} bytes in the first 7 s, {late} after"
    );
    // Without retention the store holds every payload at least once (more
    // than `total`); with it, well under half, even after one growth step.
    assert!(
        late < total / 2,
        "the store holds far less than all traffic: {late} of {total} bytes"
    );
    // Queued work is never dropped: everything was delivered.
    let st = c.api.stats(TENANT, &ep).await?;
    assert_eq!(
        st.events, published,
        "counters keep counting past retention"
    );
    let kept = c.api.deliveries_of(TENANT, &ep).await?;
    assert!(
        (kept.len() as u64) < published / 2,
        "old deliveries left the log: {}",
        kept.len()
    );
    Ok(())
}
