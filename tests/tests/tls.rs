//! TLS on the public API (issue 16): certificates made in the test; the
//! whole path (publish over TLS, agents' control streams over TLS) works;
//! a client that does not trust the CA, or speaks plain text, gets nothing.

use std::time::Duration;

use herald_proto::v1 as pb;
use herald_tests::cluster::{Agent, Clients, ControlPlane, Etcd};
use herald_tests::pki::Pki;
use herald_tests::receiver::Receiver;

fn cli(args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    let out = std::process::Command::new(herald_tests::process::bin("herald"))
        .args(args)
        .env_remove("HERALD_API_KEY")
        .env_remove("HERALD_CA_FILE")
        .output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_speaks_tls_to_clients_that_trust_its_ca() -> anyhow::Result<()> {
    let pki = Pki::new("api")?;
    let etcd = Etcd::start()?;
    let cp = ControlPlane::start_tls(&etcd, &pki.issue("control-plane")?, &[])?;
    assert!(cp.url.starts_with("https://"));
    let ca = pki.ca.to_string_lossy().into_owned();
    let _agent = Agent::start_with_env(&etcd, &[&cp], &[], &[("HERALD_CONTROL_PLANE_CA", &ca)])?;

    // The whole path over TLS: config, publish, the agent's control stream.
    let mut api = Clients::connect_tls(&cp.url, Some(&etcd.admin_key), &pki.ca).await?;
    api.event_type("order.created").await?;
    api.tenant("acme").await?;
    let receiver = Receiver::start().await;
    api.endpoint("acme", &receiver.url("/tls"), &["order.created"])
        .await?;
    api.publish("acme", "order.created", serde_json::json!({"n": 1}), "")
        .await?;
    let got = receiver.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(got[0].json()["data"]["n"], 1);

    // A client trusting another CA, or speaking plain text, gets nothing.
    let other = Pki::new("other")?;
    assert!(
        Clients::connect_tls(&cp.url, Some(&etcd.admin_key), &other.ca)
            .await
            .is_err()
    );
    let plain = cp.url.replacen("https://", "http://", 1);
    let mut p = Clients::connect(&plain, Some(&etcd.admin_key)).await?;
    assert!(
        p.tenants
            .list_tenants(pb::ListTenantsRequest::default())
            .await
            .is_err()
    );

    // The CLI, with the CA file; without it, the system's roots do not
    // trust a private CA.
    let key = etcd.admin_key.as_str();
    let (ok, out, err) = cli(&[
        "--server",
        &cp.url,
        "--api-key",
        key,
        "--ca-file",
        &ca,
        "tenant",
        "list",
    ])?;
    assert!(ok && out.contains("acme"), "{out}{err}");
    let (ok, _, err) = cli(&["--server", &cp.url, "--api-key", key, "tenant", "list"])?;
    assert!(!ok, "trusted a private CA without --ca-file: {err}");
    Ok(())
}
