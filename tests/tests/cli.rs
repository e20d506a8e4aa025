//! The `herald` CLI itself against a real cluster: endpoint update, enable
//! and disable (an endpoint Herald disabled can be turned back on), secret
//! rotation and read-back, the catalog, publishing from a file, the
//! delivery log with resend and recover, statistics, the cluster view and
//! drain, deletes; table and JSON output and errors that name the field.

use herald_tests::cluster::Cluster;

/// Runs `herald` against the cluster with its admin key; (ok, stdout, stderr).
fn herald(c: &Cluster, args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    let out = std::process::Command::new(herald_tests::process::bin("herald"))
        .arg("--server")
        .arg(&c.cp.url)
        .args(args)
        .env("HERALD_API_KEY", &c.etcd.admin_key)
        .env_remove("HERALD_CA_FILE")
        .output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

fn json(c: &Cluster, args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    let (ok, out, err) = herald(c, &all)?;
    anyhow::ensure!(ok, "herald {args:?}: {err}");
    Ok(serde_json::from_str(&out)?)
}

/// Runs `herald --output json ARGS` until `ready` holds of its output, for
/// up to 20 s; the last output either way.
async fn json_when(
    c: &Cluster,
    args: &[&str],
    ready: impl Fn(&serde_json::Value) -> bool,
) -> anyhow::Result<serde_json::Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let out = json(c, args)?;
        if ready(&out) || std::time::Instant::now() >= deadline {
            return Ok(out);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn endpoint_update_enable_and_disable() -> anyhow::Result<()> {
    let (mut c, receiver) = Cluster::with_receiver("order.created").await?;
    c.api.event_type("order.paid").await?;
    let created = json(
        &c,
        &[
            "endpoint",
            "create",
            "--tenant",
            "acme",
            "--name",
            "e",
            "--url",
            &receiver.url("/e"),
            "--event-type",
            "order.created",
        ],
    )?;
    let id = created["endpoint"]["id"].as_str().unwrap().to_string();
    let id = id.as_str();

    let updated = json(
        &c,
        &[
            "endpoint",
            "update",
            "--tenant",
            "acme",
            "--id",
            id,
            "--name",
            "renamed",
            "--event-type",
            "order.created",
            "--event-type",
            "order.paid",
            "--header",
            "x-team=billing",
            "--label",
            "env=prod",
            "--timeout-ms",
            "2500",
            "--retry-delays-ms",
            "100,200",
            "--ordering",
            "unordered",
            "--max-in-flight",
            "7",
            "--skip-key",
            "internal",
            "--filter",
            "amount gt 10",
            "--filter-rule",
            r#"{"event_types": ["order.paid"], "any_of": ["currency not_in [\"XXX\"]", "amount gte 100"]}"#,
            "--load-only",
            "amount",
            "--chunk-size",
            "5",
            "--chunk-delay-ms",
            "50",
            "--rate-limit",
            "20",
            "--queue-while-disabled",
            "true",
        ],
    )?;
    let spec = &updated["spec"];
    assert_eq!(
        updated["name"].as_str().or(spec["name"].as_str()),
        Some("renamed"),
        "{updated}"
    );
    let got = c
        .api
        .endpoints
        .get_endpoint(herald_proto::v1::GetEndpointRequest {
            tenant_id: "acme".into(),
            id: id.into(),
        })
        .await?
        .into_inner();
    let s = got.spec.unwrap();
    assert_eq!(s.name, "renamed");
    assert_eq!(s.event_types, ["order.created", "order.paid"]);
    assert_eq!(s.headers.get("x-team").map(String::as_str), Some("billing"));
    assert_eq!(s.labels.get("env").map(String::as_str), Some("prod"));
    assert_eq!(s.timeout_ms, 2500);
    assert_eq!(s.retry.unwrap().delays_ms, [100, 200]);
    assert_eq!(
        (s.ordering, s.max_in_flight),
        (herald_proto::v1::Ordering::Unordered as i32, 7)
    );
    assert_eq!(s.skip_keys, ["internal"]);
    assert_eq!(s.filters.len(), 1);
    assert_eq!(s.filter_rules.len(), 1);
    assert_eq!(s.filter_rules[0].event_types, ["order.paid"]);
    assert_eq!(
        s.filter_rules[0].any_of[0].op,
        herald_proto::v1::FilterOp::NotIn as i32
    );
    // The JSON output shows rules as the flag takes them.
    assert_eq!(
        updated["filter_rules"][0]["any_of"][1], "amount gte 100",
        "{updated}"
    );
    assert_eq!(s.load_only, ["amount"]);
    assert_eq!(
        (s.chunk_size, s.chunk_delay_ms, s.rate_limit_per_sec),
        (5, 50, 20)
    );
    assert!(s.queue_while_disabled);
    assert!(!s.enabled);

    // Enable and disable, revision handled by the CLI; table output.
    let (ok, out, err) = herald(&c, &["endpoint", "enable", "--tenant", "acme", "--id", id])?;
    assert!(ok, "{err}");
    assert!(out.contains("renamed"), "{out}");
    let listed = json(&c, &["endpoint", "list", "--tenant", "acme"])?;
    assert_eq!(listed[0]["enabled"], true, "{listed}");
    json(&c, &["endpoint", "disable", "--tenant", "acme", "--id", id])?;
    let listed = json(&c, &["endpoint", "list", "--tenant", "acme"])?;
    assert_eq!(listed[0]["enabled"], false, "{listed}");

    // Rotate, then read the secrets back: the new one signs, and the first
    // is listed as still signing until its overlap ends.
    let first = created["signing_secret"].as_str().unwrap().to_string();
    let rotated = json(&c, &["endpoint", "rotate-secret", "--tenant", "acme", id])?;
    let second = rotated["secret"].as_str().unwrap();
    assert!(second.starts_with("whsec_") && second != first, "{rotated}");
    let secrets = json(&c, &["endpoint", "secret", "--tenant", "acme", id])?;
    assert_eq!(secrets["signing_secret"], second, "{secrets}");
    assert_eq!(
        secrets["previous_signing_secrets"][0]["secret"], first,
        "{secrets}"
    );
    let (ok, out, err) = herald(&c, &["endpoint", "secret", "--tenant", "acme", id])?;
    assert!(
        ok && out.contains(second) && out.contains("previous (until"),
        "{out}{err}"
    );

    // Errors print the server's message naming the field, and exit non-zero.
    let (ok, _, err) = herald(
        &c,
        &[
            "endpoint",
            "update",
            "--tenant",
            "acme",
            "--id",
            id,
            "--timeout-ms",
            "1",
        ],
    )?;
    assert!(
        !ok && err.contains("INVALID_ARGUMENT") && err.contains("spec.timeout_ms"),
        "{err}"
    );
    let (ok, _, err) = herald(
        &c,
        &[
            "endpoint",
            "enable",
            "--tenant",
            "acme",
            "--id",
            "ep_missing",
        ],
    )?;
    assert!(!ok && err.contains("NOT_FOUND"), "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn catalog_tenant_publish_from_a_file_and_completions() -> anyhow::Result<()> {
    let (mut c, receiver) = Cluster::with_receiver("order.created").await?;
    c.api
        .endpoint("acme", &receiver.url("/e"), &["order.created"])
        .await?;

    // event-type get and update (revision handled), tenant get.
    let t = json(
        &c,
        &[
            "event-type",
            "update",
            "--name",
            "order.created",
            "--description",
            "An order was placed",
            "--example-json",
            r#"{"order":"o_1"}"#,
        ],
    )?;
    assert_eq!(t["description"], "An order was placed");
    // Display names (seeds 001, 002): shown by the CLI; the dotted name
    // stays the key; control characters are refused naming the field.
    let t = json(
        &c,
        &[
            "event-type",
            "update",
            "--name",
            "order.created",
            "--display-name",
            "Order Created",
        ],
    )?;
    assert_eq!(t["name"], "order.created");
    assert_eq!(t["display_name"], "Order Created");
    let (ok, out, _) = herald(&c, &["event-type", "list"])?;
    assert!(
        ok && out.contains("DISPLAY NAME") && out.contains("Order Created"),
        "{out}"
    );
    let (ok, _, err) = herald(
        &c,
        &[
            "event-type",
            "update",
            "--name",
            "order.created",
            "--display-name",
            "a\x01b\x07",
        ],
    )?;
    assert!(
        !ok && err.contains("display_name: must not hold control characters"),
        "{err}"
    );
    let (ok2, _, err2) = herald(
        &c,
        &[
            "event-type",
            "create",
            "--name",
            "order.shipped",
            "--display-name",
            &"x".repeat(129),
        ],
    )?;
    assert!(
        !ok2 && err2.contains("display_name: must be at most 128"),
        "{err2}"
    );
    let t = json(&c, &["event-type", "get", "--name", "order.created"])?;
    assert_eq!(t["example"]["order"], "o_1");
    assert_eq!(t["group"], "order", "untouched settings stay");
    let tenant = json(&c, &["tenant", "get", "--id", "acme"])?;
    assert_eq!(tenant["id"], "acme");
    let (ok, out, _) = herald(&c, &["tenant", "get", "--id", "acme"])?;
    assert!(ok && out.contains("acme"), "{out}");

    // publish --file: 250 events in order (3 batches), one bad line
    // reported with its number, the rest published; exit non-zero.
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("events.jsonl");
    let mut lines = Vec::new();
    for seq in 0..250 {
        lines.push(serde_json::json!({ "tenant": "acme", "type": "order.created", "data": { "seq": seq }, "idempotency_key": format!("k{seq}") }).to_string());
        if seq == 100 {
            lines.push(r#"{"tenant":"acme","type":"order.unknown","data":{}}"#.to_string());
        }
    }
    std::fs::write(&file, lines.join("\n"))?;
    let (ok, out, err) = herald(
        &c,
        &[
            "--output",
            "json",
            "publish",
            "--file",
            file.to_str().unwrap(),
        ],
    )?;
    assert!(!ok, "a failed line must fail the command");
    assert!(
        err.contains("line 102: INVALID_ARGUMENT: event_type: unknown event type"),
        "{err}"
    );
    let summary: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(
        (summary["published"].as_u64(), summary["failed"].as_u64()),
        (Some(250), Some(1))
    );
    let got = receiver
        .wait_for(250, std::time::Duration::from_secs(30))
        .await;
    let by_path = herald_tests::ordering::seqs_by_path(&got);
    herald_tests::ordering::assert_in_order(&by_path);
    assert_eq!(by_path["/e"].len(), 250);

    // Archive, then publishing the type is refused.
    json(&c, &["event-type", "archive", "--name", "order.created"])?;
    let (ok, _, err) = herald(
        &c,
        &[
            "publish",
            "--tenant",
            "acme",
            "--type",
            "order.created",
            "--data",
            "{}",
        ],
    )?;
    assert!(!ok && err.contains("archived"), "{err}");

    // A type created with a group and a schema; lists by group, and
    // archived types only on request (C1).
    let schema = r#"{"type":"object","required":["invoice"]}"#;
    let t = json(
        &c,
        &[
            "event-type",
            "create",
            "--name",
            "invoice.paid",
            "--group",
            "invoice",
            "--schema-json",
            schema,
        ],
    )?;
    assert_eq!(t["schema"]["required"][0], "invoice");
    let (ok, _, err) = herald(
        &c,
        &[
            "event-type",
            "create",
            "--name",
            "invoice.voided",
            "--schema-json",
            "{not json",
        ],
    )?;
    assert!(!ok && err.contains("schema_json"), "{err}");
    let names = |v: serde_json::Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|t| t["name"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let invoice = names(json(&c, &["event-type", "list", "--group", "invoice"])?);
    assert_eq!(invoice, ["invoice.paid"]);
    let live = names(json(&c, &["event-type", "list"])?);
    assert!(!live.contains(&"order.created".to_string()), "{live:?}");
    let all = names(json(&c, &["event-type", "list", "--include-archived"])?);
    assert!(all.contains(&"order.created".to_string()), "{all:?}");

    // Shell completions.
    for shell in ["bash", "zsh", "fish"] {
        let (ok, out, err) = herald(&c, &["completion", shell])?;
        assert!(
            ok && out.contains("api-key") && out.contains("endpoint"),
            "{shell}: {err}"
        );
    }
    Ok(())
}

/// The operator's day from the CLI (O7): the delivery log, one delivery
/// with its attempts, resend, recover, a test event, statistics, the
/// cluster view and a drain, deletes; JSON checked field by field, and a
/// table printed for each.
#[tokio::test(flavor = "multi_thread")]
async fn deliveries_stats_cluster_and_deletes() -> anyhow::Result<()> {
    let (mut c, receiver) = Cluster::with_receiver("order.created").await?;
    receiver.set_status(500);
    // No retries: each event fails at once, for good.
    let ep = c
        .api
        .endpoint_with_retry("acme", &receiver.url("/e"), &["order.created"], vec![])
        .await?
        .endpoint
        .unwrap_or_default()
        .id;
    let ep = ep.as_str();
    for seq in 0..2 {
        let data = format!(r#"{{"seq":{seq}}}"#);
        let out = json(
            &c,
            &[
                "publish",
                "--tenant",
                "acme",
                "--type",
                "order.created",
                "--data",
                &data,
            ],
        )?;
        assert_eq!(out["endpoints_matched"], 1, "{out}");
    }
    let failed = [
        "delivery",
        "list",
        "--tenant",
        "acme",
        "--endpoint",
        ep,
        "--status",
        "failed",
    ];
    let page = json_when(&c, &failed, |p| p["deliveries"][1].is_object()).await?;
    let list = page["deliveries"].as_array().cloned().unwrap_or_default();
    assert_eq!(list.len(), 2, "{list:?}");
    let first = list[1]["delivery_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    let d = json(&c, &["delivery", "get", "--tenant", "acme", &first])?;
    assert_eq!(d["payload"]["seq"], 0);
    assert_eq!(d["summary"]["status"], "failed");
    assert_eq!(d["attempts"][0]["response_status"], 500);
    assert_eq!(d["attempts"][0]["error_kind"], "status");
    let (ok, table, _) = herald(&c, &["delivery", "get", "--tenant", "acme", &first])?;
    assert!(
        ok && table.contains("DURATION MS") && table.contains("500"),
        "{table}"
    );

    // The receiver is back: resend one, then recover the failed ones.
    receiver.set_status(200);
    let resent = json(&c, &["delivery", "resend", "--tenant", "acme", &first])?;
    assert_eq!(resent["resend_of"], first.as_str());
    let resent_id = resent["delivery_id"].as_str().unwrap_or_default();
    assert!(!resent_id.is_empty() && resent_id != first);
    let recover = ["delivery", "recover", "--tenant", "acme", "--endpoint", ep];
    let (ok, _, err) = herald(&c, &[&recover[..], &["--since-ms", "0"]].concat())?;
    assert!(!ok && err.contains("since_ms: is required"), "{err}");
    let hour_ago = (herald_shared::time::now_ms() - 3_600_000).to_string();
    let recovered = json(&c, &[&recover[..], &["--since-ms", &hour_ago]].concat())?;
    assert_eq!(recovered["resent"], 2);
    let test = json(&c, &["endpoint", "test", "--tenant", "acme", ep])?;
    assert!(test["delivery_id"].as_str().is_some_and(|s| !s.is_empty()));
    // 2 failed requests, then the resend, the two recovered and the test.
    let got = receiver
        .wait_for(6, std::time::Duration::from_secs(20))
        .await;
    assert_eq!(got.len(), 6);
    let pings = got.iter().filter(|r| r.json()["type"] == "herald.ping");
    assert_eq!(pings.count(), 1, "the test event");

    let stats_args = ["endpoint", "stats", "--tenant", "acme", ep];
    let stats = json_when(&c, &stats_args, |s| s["successes"] == 4).await?;
    assert_eq!(
        (
            &stats["events"],
            &stats["successes"],
            &stats["failures"],
            &stats["queue_depth"]
        ),
        (&6.into(), &4.into(), &2.into(), &0.into()),
        "{stats}"
    );
    assert_eq!(stats["last_failure"]["status_code"], 500);

    // The cluster: one agent holding every slot; drained, it says so.
    let cluster = json(&c, &["cluster", "show"])?;
    let agent = cluster["agents"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(cluster["agents"][0]["slots"], cluster["slot_count"]);
    assert_eq!(cluster["agents"][0]["draining"], false);
    let (ok, table, err) = herald(&c, &["cluster", "show"])?;
    assert!(
        ok && table.contains(&agent) && table.contains("leader"),
        "{table}{err}"
    );
    let (ok, _, err) = herald(&c, &["cluster", "drain", &agent])?;
    assert!(ok, "{err}");
    // The view follows etcd's watch: wait for the drain to show.
    let cluster = json_when(&c, &["cluster", "show"], |c| {
        c["agents"][0]["draining"] == true
    })
    .await?;
    assert_eq!(cluster["agents"][0]["draining"], true, "{cluster}");
    let (ok, _, err) = herald(&c, &["cluster", "drain", "no-such-agent"])?;
    assert!(!ok && err.contains("NOT_FOUND"), "{err}");

    // Deletes: the endpoint, then the tenant.
    json(&c, &["endpoint", "delete", "--tenant", "acme", "--id", ep])?;
    let (ok, _, err) = herald(&c, &["endpoint", "get", "--tenant", "acme", "--id", ep])?;
    assert!(!ok && err.contains("NOT_FOUND"), "{err}");
    json(&c, &["tenant", "delete", "--id", "acme"])?;
    let tenants = json(&c, &["tenant", "list"])?;
    assert_eq!(tenants, serde_json::json!([]), "{tenants}");
    Ok(())
}
