//! Which endpoints an event reaches, and with what (P2 to P5): content
//! filters, skip keys, on-field-change, load-only, and batch publishing.

use std::collections::BTreeMap;
use std::time::Duration;

use herald_proto::v1 as pb;
use herald_tests::cluster::{Clients, Cluster};
use herald_tests::receiver::Receiver;
use serde_json::json;

fn filter(path: &str, op: pb::FilterOp, value: &str) -> pb::Filter {
    pb::Filter {
        path: path.into(),
        op: op as i32,
        value_json: value.into(),
    }
}

fn spec(receiver: &Receiver, name: &str) -> pb::EndpointSpec {
    pb::EndpointSpec {
        name: name.into(),
        url: receiver.url(&format!("/{name}")),
        enabled: true,
        event_types: vec!["*".into()],
        ..Default::default()
    }
}

async fn create(api: &mut Clients, spec: pb::EndpointSpec) -> Result<(), tonic::Status> {
    api.endpoints
        .create_endpoint(pb::CreateEndpointRequest {
            tenant_id: "acme".into(),
            spec: Some(spec),
        })
        .await
        .map(|_| ())
}

fn event(key: &str, data: serde_json::Value) -> pb::PublishRequest {
    pb::PublishRequest {
        tenant_id: "acme".into(),
        event_type: "order.updated".into(),
        payload_json: data.to_string(),
        idempotency_key: key.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rules_decide_who_gets_what() -> anyhow::Result<()> {
    let mut c = Cluster::start().await?;
    let receiver = Receiver::start().await;
    c.api.event_type("order.updated").await?;
    c.api.tenant("acme").await?;
    let api = &mut c.api;
    create(api, spec(&receiver, "all")).await?;
    create(
        api,
        pb::EndpointSpec {
            filters: vec![filter("status", pb::FilterOp::Eq, r#""open""#)],
            ..spec(&receiver, "open")
        },
    )
    .await?;
    create(
        api,
        pb::EndpointSpec {
            filters: vec![
                filter("amount", pb::FilterOp::Gt, "100"),
                filter("currency", pb::FilterOp::In, r#"["EUR","USD"]"#),
            ],
            ..spec(&receiver, "big")
        },
    )
    .await?;
    create(
        api,
        pb::EndpointSpec {
            skip_keys: vec!["sync".into()],
            ..spec(&receiver, "skipping")
        },
    )
    .await?;
    create(
        api,
        pb::EndpointSpec {
            on_field_change: vec!["email".into()],
            ..spec(&receiver, "email")
        },
    )
    .await?;
    create(
        api,
        pb::EndpointSpec {
            load_only: vec!["id".into(), "customer.email".into()],
            ..spec(&receiver, "slim")
        },
    )
    .await?;

    let base = json!({"id": 1, "status": "open", "amount": 50, "currency": "EUR",
                      "email": "a@x", "customer": {"email": "c@x", "name": "C"}});
    let mut e1 = event("e1", base.clone());
    e1.changed_fields = vec![];
    let mut e2 = event(
        "e2",
        json!({"id": 2, "status": "closed", "amount": 150, "currency": "USD", "email": "a@x"}),
    );
    e2.skip_key = "sync".into();
    e2.previous_payload_json = json!({"email": "old@x"}).to_string();
    let mut e3 = event(
        "e3",
        json!({"id": 3, "status": "open", "amount": 500, "currency": "GBP", "email": "a@x"}),
    );
    e3.previous_payload_json = json!({"email": "a@x"}).to_string();
    let mut e4 = event("e4", json!({"id": 4, "status": "won", "email": "b@x"}));
    e4.changed_fields = vec!["email".into()];
    e4.skip_key = "other".into();
    let mut matched = Vec::new();
    for e in [e1, e2, e3, e4] {
        matched.push(api.publish.publish(e).await?.into_inner().endpoints_matched);
    }
    // Expected recipients, by event id in the payload.
    let want: BTreeMap<&str, Vec<u64>> = BTreeMap::from([
        ("/all", vec![1, 2, 3, 4]),
        ("/open", vec![1, 3]),
        ("/big", vec![2]),
        ("/skipping", vec![1, 3, 4]),
        // e1 says nothing about changes (sent); e2 changed the email; e3
        // did not; e4 names it.
        ("/email", vec![1, 2, 4]),
        ("/slim", vec![1, 2, 3, 4]),
    ]);
    let total: usize = want.values().map(Vec::len).sum();
    assert_eq!(
        matched.iter().sum::<u32>() as usize,
        total,
        "matched counts"
    );
    let got = receiver.wait_for(total, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut by_path: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in receiver.received() {
        let id = r.json()["data"]["id"].as_u64().unwrap_or(0);
        by_path
            .entry(r.uri.path().to_string())
            .or_default()
            .push(id);
    }
    for ids in by_path.values_mut() {
        ids.sort();
    }
    let want: BTreeMap<String, Vec<u64>> =
        want.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    assert_eq!(by_path, want);
    assert_eq!(got.len(), total);
    // load_only: only the listed fields, nesting kept.
    let slim = receiver
        .received()
        .into_iter()
        .find(|r| r.uri.path() == "/slim" && r.json()["data"]["id"] == 1)
        .ok_or_else(|| anyhow::anyhow!("no slim delivery"))?;
    assert_eq!(
        slim.json()["data"],
        json!({"id": 1, "customer": {"email": "c@x"}})
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_answers_per_event_and_keeps_order() -> anyhow::Result<()> {
    let (mut c, receiver, _) = Cluster::with_endpoint("order.updated", "/", &["*"]).await?;
    let mut events: Vec<pb::PublishRequest> = (0..5)
        .map(|i| event(&format!("b{i}"), json!({ "seq": i })))
        .collect();
    events[2].payload_json = "[1]".into();
    let results = c
        .api
        .publish
        .publish_batch(pb::PublishBatchRequest { events })
        .await?
        .into_inner()
        .results;
    let codes: Vec<&str> = results.iter().map(|r| r.code.as_str()).collect();
    assert_eq!(codes, ["OK", "OK", "INVALID_ARGUMENT", "OK", "OK"]);
    assert!(
        results[2].message.starts_with("events[2].payload_json: "),
        "{}",
        results[2].message
    );
    assert!(results[2].event_id.is_empty());
    assert!(
        results
            .iter()
            .filter(|r| r.code == "OK")
            .all(|r| r.endpoints_matched == 1)
    );
    let got = receiver.wait_for(4, Duration::from_secs(10)).await;
    let seqs: Vec<u64> = got
        .iter()
        .map(|r| r.json()["data"]["seq"].as_u64().unwrap_or(99))
        .collect();
    assert_eq!(seqs, [0, 1, 3, 4], "the valid events, in order");

    let too_many = (0..101)
        .map(|i| event(&format!("x{i}"), json!({})))
        .collect();
    let e = c
        .api
        .publish
        .publish_batch(pb::PublishBatchRequest { events: too_many })
        .await
        .expect_err("over the limit");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().starts_with("events: "), "{}", e.message());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_rules_are_refused_naming_the_field() -> anyhow::Result<()> {
    let mut c = Cluster::start().await?;
    let receiver = Receiver::start().await;
    c.api.event_type("order.updated").await?;
    c.api.tenant("acme").await?;
    let cases = [
        (
            pb::EndpointSpec {
                filters: vec![pb::Filter {
                    path: "status".into(),
                    op: 99,
                    value_json: "1".into(),
                }],
                ..spec(&receiver, "x")
            },
            "spec.filters[0].op",
        ),
        (
            pb::EndpointSpec {
                filters: vec![filter("a..b", pb::FilterOp::Eq, "1")],
                ..spec(&receiver, "x")
            },
            "spec.filters[0].path",
        ),
        (
            pb::EndpointSpec {
                filters: vec![
                    filter("a", pb::FilterOp::Exists, ""),
                    filter("b", pb::FilterOp::Eq, "{"),
                ],
                ..spec(&receiver, "x")
            },
            "spec.filters[1].value_json",
        ),
        (
            pb::EndpointSpec {
                filters: vec![filter("a", pb::FilterOp::In, r#""x""#)],
                ..spec(&receiver, "x")
            },
            "spec.filters[0].value_json",
        ),
        (
            pb::EndpointSpec {
                load_only: vec!["id".into(), "".into()],
                ..spec(&receiver, "x")
            },
            "spec.load_only[1]",
        ),
        (
            pb::EndpointSpec {
                on_field_change: vec!["a[0]".into()],
                ..spec(&receiver, "x")
            },
            "spec.on_field_change[0]",
        ),
        (
            pb::EndpointSpec {
                skip_keys: vec![String::new()],
                ..spec(&receiver, "x")
            },
            "spec.skip_keys[0]",
        ),
    ];
    for (s, field) in cases {
        let e = create(&mut c.api, s).await.expect_err(field);
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{field}");
        assert!(
            e.message().starts_with(&format!("{field}: ")),
            "{field}: {}",
            e.message()
        );
    }
    // Publishes: bad change information names its field too.
    let mut e = event("k", json!({}));
    e.previous_payload_json = "nope".into();
    let err = c.api.publish.publish(e).await.expect_err("bad previous");
    assert!(
        err.message().starts_with("previous_payload_json: "),
        "{}",
        err.message()
    );
    let mut e = event("k", json!({}));
    e.changed_fields = vec!["ok".into(), "..".into()];
    let err = c.api.publish.publish(e).await.expect_err("bad field name");
    assert!(
        err.message().starts_with("changed_fields[1]: "),
        "{}",
        err.message()
    );
    Ok(())
}

/// An event fanned out to many endpoints of one agent can exceed gRPC's
/// default 4 MiB message: the control plane hands it over in parts, and
/// every endpoint gets the whole event.
#[tokio::test(flavor = "multi_thread")]
async fn a_large_event_fanned_out_to_many_endpoints_reaches_each() -> anyhow::Result<()> {
    let mut c = Cluster::start().await?;
    let receiver = Receiver::start().await;
    c.api.event_type("order.updated").await?;
    c.api.tenant("acme").await?;
    let endpoints = 24;
    for i in 0..endpoints {
        create(&mut c.api, spec(&receiver, &format!("ep{i}"))).await?;
    }
    // 24 deliveries of 200 KiB: about 4.8 MiB for the one agent.
    let pad = "x".repeat(200 * 1024);
    c.api
        .publish
        .publish(event("big", json!({ "pad": pad })))
        .await?;
    let got = receiver.wait_for(endpoints, Duration::from_secs(30)).await;
    assert_eq!(got.len(), endpoints);
    let paths: std::collections::BTreeSet<String> =
        got.iter().map(|r| r.uri.path().to_string()).collect();
    assert_eq!(paths.len(), endpoints, "one delivery per endpoint");
    for r in &got {
        assert_eq!(r.json()["data"]["pad"].as_str(), Some(pad.as_str()));
    }
    Ok(())
}

fn rule(types: &[&str], all_of: Vec<pb::Filter>, any_of: Vec<pb::Filter>) -> pb::FilterRule {
    pb::FilterRule {
        event_types: types.iter().map(|t| t.to_string()).collect(),
        all_of,
        any_of,
    }
}

/// Seed 003's filters: operators with bounds and exclusions, any-of
/// groups, and rules that differ by entity inside one webhook.
#[tokio::test(flavor = "multi_thread")]
async fn rules_by_event_type_any_of_groups_and_bounds() -> anyhow::Result<()> {
    use pb::FilterOp::{Eq, Gte, Lte, NotIn};
    let mut c = Cluster::start().await?;
    let receiver = Receiver::start().await;
    for t in ["Contact.created", "Account.updated", "Lead.created"] {
        c.api.event_type(t).await?;
    }
    c.api.tenant("acme").await?;
    let api = &mut c.api;
    // One webhook, filtered per entity: French contacts; gold accounts or
    // big ones; no lost leads (a filter for every type).
    create(
        api,
        pb::EndpointSpec {
            filters: vec![filter("stage", NotIn, r#"["lost"]"#)],
            filter_rules: vec![
                rule(
                    &["Contact.*"],
                    vec![filter("country", Eq, r#""FR""#)],
                    vec![],
                ),
                rule(
                    &["Account.*"],
                    vec![],
                    vec![
                        filter("tier", Eq, r#""gold""#),
                        filter("revenue", Gte, "1000000"),
                    ],
                ),
            ],
            ..spec(&receiver, "crm")
        },
    )
    .await?;
    // Inclusive bounds: 100 ≤ amount ≤ 200.
    create(
        api,
        pb::EndpointSpec {
            filters: vec![filter("amount", Gte, "100"), filter("amount", Lte, "200")],
            ..spec(&receiver, "range")
        },
    )
    .await?;
    let events = [
        (
            "Contact.created",
            json!({"id": 1, "country": "FR", "amount": 100}),
        ),
        (
            "Contact.created",
            json!({"id": 2, "country": "DE", "amount": 200}),
        ),
        (
            "Account.updated",
            json!({"id": 3, "tier": "gold", "amount": 99}),
        ),
        (
            "Account.updated",
            json!({"id": 4, "revenue": 1000000, "amount": 201}),
        ),
        ("Account.updated", json!({"id": 5, "revenue": 999999})),
        (
            "Lead.created",
            json!({"id": 6, "stage": "new", "amount": 150}),
        ),
        (
            "Lead.created",
            json!({"id": 7, "stage": "lost", "amount": 150}),
        ),
        // Reaches both; each endpoint is ordered, so seeing it means every
        // earlier event that matched has arrived.
        (
            "Lead.created",
            json!({"id": 8, "country": "FR", "tier": "gold", "amount": 100}),
        ),
    ];
    for (i, (t, data)) in events.iter().enumerate() {
        let mut e = event(&format!("r{i}"), data.clone());
        e.event_type = t.to_string();
        api.publish.publish(e).await?;
    }
    let want = BTreeMap::from([
        ("/crm".to_string(), vec![1, 3, 4, 6, 8]),
        ("/range".to_string(), vec![1, 2, 6, 7, 8]),
    ]);
    let total: usize = want.values().map(Vec::len).sum();
    receiver.wait_for(total, Duration::from_secs(15)).await;
    let mut got: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in receiver.received() {
        let id = r.json()["data"]["id"].as_u64().unwrap_or(0);
        got.entry(r.uri.path().to_string()).or_default().push(id);
    }
    assert_eq!(got, want, "ordered endpoints, so in publish order");

    // The endpoint reads back as it was given.
    let listed = api
        .endpoints
        .list_endpoints(pb::ListEndpointsRequest {
            tenant_id: "acme".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let crm = listed
        .endpoints
        .iter()
        .find_map(|e| e.spec.as_ref().filter(|s| s.name == "crm"))
        .ok_or_else(|| anyhow::anyhow!("crm not listed"))?;
    assert_eq!(crm.filter_rules.len(), 2);
    assert_eq!(crm.filter_rules[1].any_of[1].op, Gte as i32);
    assert_eq!(crm.filters[0].op, NotIn as i32);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_filter_rules_are_refused_naming_the_field() -> anyhow::Result<()> {
    use pb::FilterOp::{Eq, NotIn};
    let mut c = Cluster::start().await?;
    let receiver = Receiver::start().await;
    c.api.event_type("order.updated").await?;
    c.api.tenant("acme").await?;
    let ok = || filter("a", Eq, "1");
    let cases = [
        (
            vec![rule(&["order.unknown"], vec![ok()], vec![])],
            "spec.filter_rules[0].event_types[0]",
        ),
        (
            vec![
                rule(&["order.*"], vec![ok()], vec![]),
                rule(&[], vec![], vec![]),
            ],
            "spec.filter_rules[1]",
        ),
        (
            vec![rule(&[], vec![ok()], vec![filter("a", NotIn, r#""x""#)])],
            "spec.filter_rules[0].any_of[0].value_json",
        ),
        (
            vec![rule(
                &[],
                vec![ok(), filter("a", pb::FilterOp::Unspecified, "1")],
                vec![],
            )],
            "spec.filter_rules[0].all_of[1].op",
        ),
        (
            vec![rule(&["bad pattern"], vec![ok()], vec![])],
            "spec.filter_rules[0].event_types[0]",
        ),
        (
            (0..21).map(|_| rule(&[], vec![ok()], vec![])).collect(),
            "spec.filter_rules",
        ),
    ];
    for (rules, field) in cases {
        let s = pb::EndpointSpec {
            filter_rules: rules,
            ..spec(&receiver, "x")
        };
        let e = create(&mut c.api, s).await.expect_err(field);
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{field}");
        assert!(
            e.message().starts_with(&format!("{field}: ")),
            "{field}: {}",
            e.message()
        );
    }
    Ok(())
}
