//! Herald's own events (issue 19, O10): an endpoint disabled by a 410 or
//! enabled again, a delivery that failed for good, and an endpoint whose
//! failure rate crossed the threshold are published as `herald.*` events,
//! signed and delivered like any other, to the affected tenant's endpoints
//! and the operators' tenant that subscribe to them, never to a catch-all
//! `*`, and without feeding on their own failures.

use std::time::Duration;

use herald_proto::v1 as pb;
use herald_tests::cluster::{Agent, Clients, ControlPlane, Etcd};
use herald_tests::receiver::{Received, Receiver};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

/// etcd, a control plane with operators' tenant `ops`, an agent with
/// `agent_flags`; tenants `acme` and `ops`; event type `order.created`.
struct Setup {
    api: Clients,
    _agent: Agent,
    _cp: ControlPlane,
    _etcd: Etcd,
}

async fn setup(agent_flags: &[&str]) -> anyhow::Result<Setup> {
    let etcd = Etcd::start()?;
    let cp = ControlPlane::start(&etcd, &["--operator-tenant", "ops"])?;
    let agent = Agent::start(&etcd, &[&cp], agent_flags)?;
    let mut api = cp.clients().await?;
    api.event_type("order.created").await?;
    api.tenant("acme").await?;
    api.tenant("ops").await?;
    Ok(Setup {
        api,
        _agent: agent,
        _cp: cp,
        _etcd: etcd,
    })
}

/// An enabled endpoint; its id and signing secret.
async fn endpoint(
    api: &mut Clients,
    tenant: &str,
    url: &str,
    types: &[&str],
    retry_ms: Vec<u32>,
) -> anyhow::Result<(String, String)> {
    let r = api
        .endpoints
        .create_endpoint(pb::CreateEndpointRequest {
            tenant_id: tenant.into(),
            spec: Some(pb::EndpointSpec {
                name: format!("{tenant} endpoint"),
                url: url.into(),
                enabled: true,
                event_types: types.iter().map(|t| t.to_string()).collect(),
                retry: Some(pb::RetryPolicy {
                    delays_ms: retry_ms,
                }),
                disable_after_failures: 100,
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    Ok((r.endpoint.unwrap_or_default().id, r.signing_secret))
}

fn of_type<'a>(got: &'a [Received], path: &str, t: &str) -> Vec<&'a Received> {
    got.iter()
        .filter(|r| r.uri.path() == path && r.json()["type"] == t)
        .collect()
}

fn verify(r: &Received, secret: &str) {
    let ts: i64 = r.header("webhook-timestamp").parse().expect("timestamp");
    herald_shared::signing::verify(
        secret,
        r.header("webhook-id"),
        ts,
        &r.body,
        r.header("webhook-signature"),
    )
    .expect("a valid signature");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_410_disables_once_and_enabling_is_reported() -> anyhow::Result<()> {
    let mut s = setup(&[]).await?;
    let api = &mut s.api;
    let watch = Receiver::start().await;
    let plain = Receiver::start().await;
    let gone = Receiver::start().await;
    gone.set_status(410);
    let (_, acme_secret) =
        endpoint(api, "acme", &watch.url("/acme"), &["herald.*"], vec![]).await?;
    let (_, ops_secret) = endpoint(
        api,
        "ops",
        &watch.url("/ops"),
        &["herald.endpoint.*"],
        vec![],
    )
    .await?;
    // A catch-all endpoint does not get Herald's events.
    endpoint(api, "acme", &plain.url("/all"), &["*"], vec![]).await?;
    let (gone_id, _) = endpoint(api, "acme", &gone.url("/gone"), &["order.*"], vec![]).await?;

    api.publish("acme", "order.created", json!({"n": 1}), "o1")
        .await?;
    // Disabled: one event at acme's watcher and one at the operators'.
    let got = watch.wait_for(2, WAIT).await;
    assert_eq!(got.len(), 2, "{got:?}");
    // Enable it again, now that the receiver is back.
    gone.set_status(200);
    let ep = api
        .endpoints
        .get_endpoint(pb::GetEndpointRequest {
            tenant_id: "acme".into(),
            id: gone_id.clone(),
        })
        .await?
        .into_inner();
    assert!(!ep.spec.as_ref().is_some_and(|s| s.enabled), "disabled");
    api.enable(&ep).await?;
    let got = watch.wait_for(4, WAIT).await;
    // A second order after the enable: once the ordered endpoints have it,
    // anything published before it has arrived too.
    api.publish("acme", "order.created", json!({"n": 2}), "o2")
        .await?;
    // The 410, then the held order delivered, then this one.
    gone.wait_for(3, WAIT).await;
    plain.wait_for(2, WAIT).await;
    let got_now = watch.received();
    assert_eq!(got_now.len(), got.len(), "no further events: {got_now:?}");

    for (path, secret) in [("/acme", &acme_secret), ("/ops", &ops_secret)] {
        let disabled = of_type(&got, path, "herald.endpoint.disabled");
        let enabled = of_type(&got, path, "herald.endpoint.enabled");
        assert_eq!((disabled.len(), enabled.len()), (1, 1), "{path}: {got:?}");
        assert!(disabled[0].at <= enabled[0].at, "in order");
        verify(disabled[0], secret);
        verify(enabled[0], secret);
        let d: Value = disabled[0].json()["data"].clone();
        assert_eq!(d["endpoint"]["id"], gone_id.as_str());
        assert_eq!(d["endpoint"]["tenant_id"], "acme");
        assert_eq!(d["disabled_by"], "herald");
        assert!(d["reason"].as_str().unwrap_or("").contains("410"), "{d}");
        assert_eq!(d["last_failure"]["status_code"], 410);
        assert!(
            d["last_failure"]["delivery_id"]
                .as_str()
                .is_some_and(|id| id.starts_with("dlv_")),
            "{d}"
        );
        let e = enabled[0].json()["data"].clone();
        assert_eq!(e["endpoint"]["id"], gone_id.as_str());
        assert!(
            e["previously_disabled_because"]
                .as_str()
                .unwrap_or("")
                .contains("410"),
            "{e}"
        );
    }
    let plain_types: Vec<Value> = plain
        .received()
        .iter()
        .map(|r| r.json()["type"].clone())
        .collect();
    assert_eq!(
        plain_types,
        [json!("order.created"), json!("order.created")]
    );
    // The held order and the new one reached the enabled endpoint.
    assert_eq!(gone.received().iter().filter(|r| r.accepted()).count(), 2);

    // They are in the delivery log, filtered by the endpoint as resource.
    let log = api
        .deliveries
        .list_deliveries(pb::ListDeliveriesRequest {
            tenant_id: "acme".into(),
            event_types: vec!["herald.*".into()],
            resource_id: gone_id.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut types: Vec<String> = log
        .deliveries
        .iter()
        .map(|d| d.event_type.clone())
        .collect();
    types.sort();
    assert_eq!(
        types,
        ["herald.endpoint.disabled", "herald.endpoint.enabled"]
    );
    Ok(())
}

/// The agent's failure-rate detector: failing at 50 % over 10 minutes,
/// from 3 attempts.
const FAILING_AT_HALF: [&str; 6] = [
    "--failing-threshold-percent",
    "50",
    "--failing-window-secs",
    "600",
    "--failing-min-attempts",
    "3",
];

#[tokio::test(flavor = "multi_thread")]
async fn exhausted_deliveries_and_a_failing_endpoint_are_reported_without_loops()
-> anyhow::Result<()> {
    let mut s = setup(&FAILING_AT_HALF).await?;
    let api = &mut s.api;
    let watch = Receiver::start().await;
    let broken = Receiver::start().await;
    broken.set_status(500);
    endpoint(api, "acme", &watch.url("/watch"), &["herald.*"], vec![]).await?;
    // A watcher that fails every exhausted event it gets: without the
    // guard, each failure would make an exhausted event for it to fail.
    let (broken_watch, _) = endpoint(
        api,
        "acme",
        &broken.url("/broken-watch"),
        &["herald.delivery.exhausted"],
        vec![],
    )
    .await?;
    // No retries: each delivery fails for good at its first attempt.
    let (flaky, _) = endpoint(api, "acme", &broken.url("/flaky"), &["order.*"], vec![]).await?;
    for n in 0..6 {
        api.publish("acme", "order.created", json!({"n": n}), &format!("o{n}"))
            .await?;
    }
    let about = |r: &Received, id: &str| r.json()["data"]["endpoint"]["id"] == id;
    let deadline = tokio::time::Instant::now() + WAIT;
    let got = loop {
        let got = watch.received();
        if of_type(&got, "/watch", "herald.delivery.exhausted").len() >= 6 {
            break got;
        }
        assert!(tokio::time::Instant::now() < deadline, "{got:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let exhausted = of_type(&got, "/watch", "herald.delivery.exhausted");
    assert!(exhausted.iter().all(|r| about(r, &flaky)), "{got:?}");
    let deliveries: std::collections::BTreeSet<String> = exhausted
        .iter()
        .map(|r| {
            let d = r.json()["data"].clone();
            assert_eq!(d["event_type"], "order.created");
            assert_eq!(d["attempts"], 1);
            assert_eq!(d["last_failure"]["status_code"], 500);
            d["delivery_id"].as_str().unwrap_or("").to_string()
        })
        .collect();
    assert_eq!(deliveries.len(), 6, "six deliveries, each named");
    assert!(deliveries.iter().all(|id| id.starts_with("dlv_")));
    // Six failures, one crossing: reported before the exhausted event of
    // the attempt that crossed, so it is here already.
    // (The broken watcher crosses too, once: that is its own crossing.)
    let failing: Vec<_> = of_type(&got, "/watch", "herald.endpoint.failing")
        .into_iter()
        .filter(|r| about(r, &flaky))
        .collect();
    assert_eq!(failing.len(), 1, "{got:?}");
    let f = failing[0].json()["data"].clone();
    assert_eq!(f["endpoint"]["id"], flaky.as_str());
    assert_eq!(f["threshold_percent"], 50);
    assert_eq!(f["attempts"], 3);

    // The broken watcher failed the exhausted events it got,
    // and that produced no exhausted event about itself. Its failures are
    // stored once its stats count them; a further event published after
    // that lands behind anything they could have caused.
    let deadline = tokio::time::Instant::now() + WAIT;
    while api.stats("acme", &broken_watch).await?.failures < 6 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the watcher never failed 6"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = watch.received().len();
    api.set_enabled("acme", &flaky, false).await?;
    let got = watch.wait_for(before + 1, WAIT).await;
    let last = got.last().expect("the disable");
    assert_eq!(last.json()["type"], "herald.endpoint.disabled");
    assert_eq!(last.json()["data"]["disabled_by"], "api");
    assert!(
        !got.iter()
            .any(|r| about(r, &broken_watch) && r.json()["type"] == "herald.delivery.exhausted"),
        "an exhausted event about an endpoint failing exhausted events: {got:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_endpoint_that_succeeds_again_is_reported_recovered_once() -> anyhow::Result<()> {
    let mut s = setup(&FAILING_AT_HALF).await?;
    let api = &mut s.api;
    let watch = Receiver::start().await;
    let target = Receiver::start().await;
    endpoint(
        api,
        "acme",
        &watch.url("/watch"),
        &["herald.endpoint.*"],
        vec![],
    )
    .await?;
    // No retries: each delivery is one attempt.
    let (ep, _) = endpoint(api, "acme", &target.url("/t"), &["order.*"], vec![]).await?;
    target.set_status(500);
    for n in 0..3 {
        api.publish("acme", "order.created", json!({"n": n}), &format!("o{n}"))
            .await?;
    }
    let failing = watch.wait_for(1, WAIT).await;
    assert_eq!(failing.len(), 1);
    assert_eq!(failing[0].json()["type"], "herald.endpoint.failing");
    // Healthy again. 3 failed of 12 is 25 %, not under half the
    // threshold; the 13th attempt is.
    target.set_status(200);
    for n in 3..15 {
        api.publish("acme", "order.created", json!({"n": n}), &format!("o{n}"))
            .await?;
    }
    target.wait_for(15, WAIT).await;
    let got = watch.wait_for(2, WAIT).await;
    assert_eq!(got.len(), 2, "{got:?}");
    let r = got[1].json();
    assert_eq!(r["type"], "herald.endpoint.recovered");
    assert_eq!(r["data"]["endpoint"]["id"], ep.as_str());
    assert_eq!(r["data"]["failed_attempts"], 3);
    assert_eq!(r["data"]["attempts"], 13);
    assert!(r["data"]["recovered_at"].is_string());
    // Once: the following successes say nothing more (the detector's
    // property tests cover every sequence; this is the cluster's view).
    for n in 15..20 {
        api.publish("acme", "order.created", json!({"n": n}), &format!("o{n}"))
            .await?;
    }
    target.wait_for(20, WAIT).await;
    // Then it fails again: 3 + 14 failed of 20 + 14 is 50 %, a new
    // report. The agent sends an endpoint's reports in order, so when it
    // arrives any second recovery from those successes would have too.
    target.set_status(500);
    for n in 20..34 {
        api.publish("acme", "order.created", json!({"n": n}), &format!("o{n}"))
            .await?;
    }
    let got = watch.wait_for(3, WAIT).await;
    let types: Vec<Value> = got.iter().map(|r| r.json()["type"].clone()).collect();
    assert_eq!(
        types,
        [
            "herald.endpoint.failing",
            "herald.endpoint.recovered",
            "herald.endpoint.failing"
        ],
        "{got:?}"
    );
    assert_eq!(got[2].json()["data"]["failed_attempts"], 17);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_herald_types_are_listed_and_reserved() -> anyhow::Result<()> {
    let mut s = setup(&[]).await?;
    let api = &mut s.api;
    let listed = api
        .catalog
        .list_event_types(pb::ListEventTypesRequest::default())
        .await?
        .into_inner();
    let mut own: Vec<&str> = listed
        .event_types
        .iter()
        .filter(|t| t.name.starts_with("herald."))
        .map(|t| t.name.as_str())
        .collect();
    own.sort();
    assert_eq!(
        own,
        [
            "herald.delivery.exhausted",
            "herald.endpoint.disabled",
            "herald.endpoint.enabled",
            "herald.endpoint.failing",
            "herald.endpoint.recovered"
        ]
    );
    let e = api
        .publish("acme", "herald.endpoint.disabled", json!({}), "fake")
        .await
        .expect_err("reserved");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().starts_with("event_type: "), "{}", e.message());
    let e = api
        .catalog
        .create_event_type(pb::CreateEventTypeRequest {
            name: "herald.mine".into(),
            ..Default::default()
        })
        .await
        .expect_err("reserved");
    assert!(e.message().starts_with("name: "), "{}", e.message());
    let e = api
        .catalog
        .archive_event_type(pb::ArchiveEventTypeRequest {
            name: "herald.endpoint.enabled".into(),
        })
        .await
        .expect_err("reserved");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    Ok(())
}
