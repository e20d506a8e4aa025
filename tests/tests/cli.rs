//! The `herald` CLI itself against a real cluster: endpoint update, enable
//! and disable (an endpoint Herald disabled can be turned back on), with
//! table and JSON output and errors that name the field.

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
