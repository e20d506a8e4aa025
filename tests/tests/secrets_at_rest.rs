//! Secrets at rest (issue 16): with a key file, no endpoint secret is in
//! etcd in clear, neither its text nor its decoded bytes, nor on the
//! agent's disk; after a key rotation every record opens with the new key
//! alone, and deliveries still verify at the receiver.

use std::time::Duration;

use base64::Engine as _;
use herald_proto::v1 as pb;
use herald_tests::cluster::{Agent, ControlPlane, Etcd};
use herald_tests::receiver::{Received, Receiver};
use hmac::{Hmac, Mac};
use sha2::Sha256;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn key_line(id: &str) -> String {
    let key: [u8; 32] = rand::random();
    format!("{id}:{}", B64.encode(key))
}

/// Standard Webhooks, from the specification.
fn verifies(secret: &str, r: &Received) -> bool {
    let key = B64.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(
        format!(
            "{}.{}.",
            r.header("webhook-id"),
            r.header("webhook-timestamp")
        )
        .as_bytes(),
    );
    mac.update(&r.body);
    let expected = format!("v1,{}", B64.encode(mac.finalize().into_bytes()));
    r.header("webhook-signature")
        .split(' ')
        .any(|s| s == expected)
}

/// Every value under the prefix, read raw.
async fn raw_values(etcd: &Etcd) -> anyhow::Result<Vec<Vec<u8>>> {
    let endpoints: Vec<String> = etcd.url.split(',').map(String::from).collect();
    let mut c = etcd_client::Client::connect(endpoints, None).await?;
    let resp = c
        .get(
            "/herald/",
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await?;
    Ok(resp.kvs().iter().map(|kv| kv.value().to_vec()).collect())
}

/// The forms a secret could be found in: its text, and the bytes its
/// base64 part decodes to.
fn forms(secret: &str) -> Vec<Vec<u8>> {
    let mut out = vec![secret.as_bytes().to_vec()];
    for prefix in ["whsec_", "whsk_"] {
        if let Some(b) = secret.strip_prefix(prefix) {
            out.push(b.as_bytes().to_vec());
            if let Ok(raw) = B64.decode(b) {
                out.push(raw);
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn files_under(dir: &std::path::Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else if let Ok(bytes) = std::fs::read(&p) {
            out.push(bytes);
        }
    }
    out
}

fn assert_nowhere(secrets: &[String], blobs: &[Vec<u8>], place: &str) {
    for s in secrets {
        for form in forms(s) {
            assert!(
                !blobs.iter().any(|b| contains(b, &form)),
                "a secret in clear in {place}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_are_sealed_and_keys_rotate_while_deliveries_verify() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (k1, k2) = (key_line("k1"), key_line("k2"));
    let file = |name: &str, lines: &[&str]| -> anyhow::Result<String> {
        let p = dir.path().join(name);
        std::fs::write(&p, lines.join("\n"))?;
        Ok(p.to_string_lossy().into_owned())
    };
    let only_k1 = file("k1", &[&k1])?;
    let etcd = Etcd::start()?;
    let cp = ControlPlane::start(&etcd, &["--secrets-key-file", &only_k1])?;
    let agent = Agent::start(&etcd, &[&cp], &[])?;
    let mut api = cp.clients().await?;
    api.event_type("order.created").await?;
    api.tenant("acme").await?;
    let receiver = Receiver::start().await;

    // Every kind of secret: a generated HMAC secret rotated with an overlap
    // (so a previous one is kept), a Basic password, a JWT secret, an
    // Ed25519 key.
    let hmac_ep = api
        .endpoint("acme", &receiver.url("/hmac"), &["order.created"])
        .await?;
    let id = hmac_ep.endpoint.unwrap().id;
    let first = hmac_ep.signing_secret;
    let rotated = api
        .endpoints
        .rotate_secret(pb::RotateSecretRequest {
            tenant_id: "acme".into(),
            id: id.clone(),
            overlap_secs: Some(3600),
            ..Default::default()
        })
        .await?
        .into_inner()
        .secret;
    let password = format!("pw-{}", rand::random::<u64>());
    let jwt = format!("jwt-secret-{:032x}", rand::random::<u128>());
    let spec = |path: &str, auth| pb::EndpointSpec {
        name: path.into(),
        url: receiver.url(path),
        event_types: vec!["order.created".into()],
        auth,
        ..Default::default()
    };
    let basic = Some(pb::ReceiverAuth {
        kind: Some(pb::receiver_auth::Kind::Basic(pb::BasicAuth {
            username: "u".into(),
            password: password.clone(),
        })),
    });
    let jwt_auth = Some(pb::ReceiverAuth {
        kind: Some(pb::receiver_auth::Kind::Jwt(pb::JwtAuth {
            secret: jwt.clone(),
            ttl_secs: 0,
            ..Default::default()
        })),
    });
    let mut secrets = vec![first, rotated.clone(), password, jwt];
    for s in [
        spec("/basic", basic),
        spec("/jwt", jwt_auth),
        pb::EndpointSpec {
            signature_scheme: pb::SignatureScheme::Ed25519 as i32,
            ..spec("/ed", None)
        },
    ] {
        let created = api
            .endpoints
            .create_endpoint(pb::CreateEndpointRequest {
                tenant_id: "acme".into(),
                spec: Some(s),
            })
            .await?
            .into_inner();
        secrets.push(created.signing_secret);
    }

    // Delivered and verified with the current secret.
    api.publish("acme", "order.created", serde_json::json!({"n": 1}), "")
        .await?;
    let got = receiver.wait_for(1, Duration::from_secs(20)).await;
    let hmac_got = got
        .iter()
        .find(|r| r.uri.path() == "/hmac")
        .expect("the HMAC endpoint's delivery");
    assert!(verifies(&rotated, hmac_got));

    let values = raw_values(&etcd).await?;
    assert_nowhere(&secrets, &values, "etcd");
    assert_nowhere(
        &secrets,
        &files_under(agent.data_dir()),
        "the agent's data dir",
    );
    let sealed = |values: &[Vec<u8>], id: &str| {
        values
            .iter()
            .filter(|v| contains(v, format!("hsec1:{id}:").as_bytes()))
            .count()
    };
    assert_eq!(
        sealed(&values, "k1"),
        4,
        "four endpoint records sealed with k1"
    );

    // Rotation: k2 first, k1 kept to open; every control plane restarts
    // with that file, then the records are resealed while it runs.
    let both = file("both", &[&k2, &k1])?;
    // The agent leaves cleanly, so its slots move at once.
    let mut agent = agent;
    assert!(agent.terminate(Duration::from_secs(30)));
    drop(cp);
    let cp = ControlPlane::start(&etcd, &["--secrets-key-file", &both])?;
    let out = std::process::Command::new(herald_tests::process::bin("herald-control-plane"))
        .args([
            "--etcd-endpoints",
            &etcd.url,
            "--secrets-key-file",
            &both,
            "--reseal-secrets",
        ])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "resealed 4 endpoint records"
    );
    let values = raw_values(&etcd).await?;
    assert_eq!(sealed(&values, "k1"), 0, "a record still sealed with k1");
    assert_eq!(sealed(&values, "k2"), 4);
    assert_nowhere(&secrets, &values, "etcd after the rotation");
    drop(cp);

    // k1 gone: a control plane with k2 alone serves every endpoint, and
    // deliveries still verify at the receiver.
    let only_k2 = file("k2", &[&k2])?;
    let cp = ControlPlane::start(&etcd, &["--secrets-key-file", &only_k2])?;
    let _agent = Agent::start(&etcd, &[&cp], &[])?;
    let mut api = cp.clients().await?;
    let listed = api
        .endpoints
        .list_endpoints(pb::ListEndpointsRequest {
            tenant_id: "acme".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(listed.endpoints.len(), 4);
    // UNAVAILABLE while the new agent takes the slots: retry with the key.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while let Err(e) = api
        .publish("acme", "order.created", serde_json::json!({"n": 2}), "n2")
        .await
    {
        assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
        assert!(
            std::time::Instant::now() < deadline,
            "publish never got through"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = receiver.received();
        if let Some(r) = got
            .iter()
            .find(|r| r.uri.path() == "/hmac" && r.json()["data"]["n"] == 2)
        {
            assert!(verifies(&rotated, r));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no delivery after the rotation"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
