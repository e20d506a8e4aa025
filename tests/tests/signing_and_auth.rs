//! How receivers verify Herald (D1 to D3): Standard Webhooks signatures,
//! body HMAC headers, Basic and JWT auth, and secret rotation. Every check
//! here is written from the specs in this file (HMAC computed with the
//! hmac crate, JWTs decoded by jsonwebtoken with the shared secret), not
//! with Herald's own signing code.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use herald_proto::v1 as pb;
use herald_tests::cluster::{Clients, Cluster};
use herald_tests::receiver::{Received, Receiver};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tonic::Code;

const WAIT: Duration = Duration::from_secs(20);

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

/// Standard Webhooks: base64(HMAC(base64-decoded secret, "id.ts.body")),
/// listed as "v1,<sig>" entries separated by spaces.
fn standard_ok(r: &Received, secret: &str) -> bool {
    let key = B64
        .decode(secret.strip_prefix("whsec_").expect("whsec_ secret"))
        .expect("base64 secret");
    let (id, ts) = (r.header("webhook-id"), r.header("webhook-timestamp"));
    let want = B64.encode(hmac(
        &key,
        &[id.as_bytes(), b".", ts.as_bytes(), b".", &r.body],
    ));
    r.header("webhook-signature")
        .split(' ')
        .any(|s| s.strip_prefix("v1,") == Some(want.as_str()))
}

/// Body HMAC: HMAC(secret text, raw body), hex or base64, ", "-separated.
fn body_ok(r: &Received, header: &str, secret: &str, base64: bool) -> bool {
    let mac = hmac(secret.as_bytes(), &[&r.body]);
    let want = if base64 {
        B64.encode(&mac)
    } else {
        mac.iter().map(|b| format!("{b:02x}")).collect()
    };
    r.header(header).split(", ").any(|v| v == want)
}

/// The JWT's claims, if it verifies (HS256, exp checked) with `secret`.
fn jwt_claims(r: &Received, secret: &str) -> Option<Value> {
    let token = r.header("authorization").strip_prefix("Bearer ")?;
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    v.required_spec_claims = ["exp".to_string()].into();
    jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()),
        &v,
    )
    .ok()
    .map(|d| d.claims)
}

fn spec(receiver: &Receiver, path: &str) -> pb::EndpointSpec {
    pb::EndpointSpec {
        name: path.into(),
        url: receiver.url(&format!("/{path}")),
        enabled: true,
        event_types: vec!["*".into()],
        ..Default::default()
    }
}

async fn create(
    api: &mut Clients,
    spec: pb::EndpointSpec,
) -> anyhow::Result<pb::CreateEndpointResponse> {
    Ok(api
        .endpoints
        .create_endpoint(pb::CreateEndpointRequest {
            tenant_id: "acme".into(),
            spec: Some(spec),
        })
        .await?
        .into_inner())
}

async fn setup() -> anyhow::Result<Cluster> {
    let mut c = Cluster::start().await?;
    c.api.event_type("order.created").await?;
    c.api.tenant("acme").await?;
    Ok(c)
}

/// The requests that arrived on `path`.
fn on(r: &[Received], path: &str) -> Vec<Received> {
    r.iter().filter(|x| x.uri.path() == path).cloned().collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_signing_and_auth_mode_verifies_at_the_receiver() -> anyhow::Result<()> {
    let mut c = setup().await?;
    let rx = Receiver::start().await;
    let api = &mut c.api;
    let standard = create(api, spec(&rx, "standard")).await?;
    let hex_only = create(
        api,
        pb::EndpointSpec {
            omit_standard_signature: true,
            body_signature: Some(pb::BodySignature {
                header: "X-Signature".into(),
                encoding: pb::SignatureEncoding::Hex as i32,
            }),
            ..spec(&rx, "hex")
        },
    )
    .await?;
    let both = create(
        api,
        pb::EndpointSpec {
            body_signature: Some(pb::BodySignature {
                header: "X-Hook-Signature".into(),
                encoding: pb::SignatureEncoding::Base64 as i32,
            }),
            ..spec(&rx, "both")
        },
    )
    .await?;
    create(
        api,
        pb::EndpointSpec {
            omit_standard_signature: true,
            ..spec(&rx, "none")
        },
    )
    .await?;
    let basic = create(
        api,
        pb::EndpointSpec {
            auth: Some(pb::ReceiverAuth {
                kind: Some(pb::receiver_auth::Kind::Basic(pb::BasicAuth {
                    username: "herald".into(),
                    password: "s3cret pass".into(),
                })),
            }),
            ..spec(&rx, "basic")
        },
    )
    .await?;
    let jwt_secret = "a-shared-jwt-secret-of-at-least-32-bytes".to_string();
    let jwt_post = create(
        api,
        pb::EndpointSpec {
            custom_data_json: r#"{"purpose":"demo"}"#.into(),
            timeout_ms: 7_000,
            auth: Some(pb::ReceiverAuth {
                kind: Some(pb::receiver_auth::Kind::Jwt(pb::JwtAuth {
                    secret: jwt_secret.clone(),
                    ttl_secs: 120,
                    ..Default::default()
                })),
            }),
            ..spec(&rx, "jwt")
        },
    )
    .await?;
    // GET with a JWT Herald generates: the token carries what the body would.
    let jwt_get = create(
        api,
        pb::EndpointSpec {
            method: pb::HttpMethod::Get as i32,
            auth: Some(pb::ReceiverAuth {
                kind: Some(pb::receiver_auth::Kind::Jwt(pb::JwtAuth::default())),
            }),
            ..spec(&rx, "jwt-get")
        },
    )
    .await?;
    assert_eq!(jwt_get.jwt_secret.len(), 43, "a generated 256-bit secret");
    assert!(
        jwt_post.jwt_secret.is_empty(),
        "a given secret is not echoed"
    );

    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let mut publish = pb::PublishRequest {
        tenant_id: "acme".into(),
        event_type: "order.created".into(),
        payload_json: json!({"seq": 1}).to_string(),
        resource: Some(pb::Resource {
            r#type: "order".into(),
            id: "ord_1".into(),
        }),
        ..Default::default()
    };
    publish.idempotency_key = "one".into();
    let matched = api.publish.publish(publish).await?.into_inner();
    assert_eq!(matched.endpoints_matched, 7);
    let got = rx.wait_for(7, WAIT).await;
    assert_eq!(got.len(), 7, "one request per endpoint");

    let r = &on(&got, "/standard")[0];
    assert!(standard_ok(r, &standard.signing_secret));
    assert!(
        !standard_ok(r, &hex_only.signing_secret),
        "another secret fails"
    );

    let r = &on(&got, "/hex")[0];
    assert!(body_ok(r, "x-signature", &hex_only.signing_secret, false));
    assert!(!body_ok(r, "x-signature", &standard.signing_secret, false));
    assert_eq!(
        r.header("webhook-signature"),
        "",
        "standard headers omitted"
    );
    assert_eq!(r.header("webhook-id"), "");

    let r = &on(&got, "/both")[0];
    assert!(standard_ok(r, &both.signing_secret));
    assert!(body_ok(r, "x-hook-signature", &both.signing_secret, true));

    let r = &on(&got, "/none")[0];
    assert_eq!(r.header("webhook-signature"), "");
    assert_eq!(r.header("authorization"), "");
    assert_eq!(r.json()["data"]["seq"], 1);

    let r = &on(&got, "/basic")[0];
    let cred = r
        .header("authorization")
        .strip_prefix("Basic ")
        .expect("Basic auth");
    assert_eq!(B64.decode(cred)?, b"herald:s3cret pass");
    assert!(
        standard_ok(r, &basic.signing_secret),
        "auth and signing combine"
    );

    let r = &on(&got, "/jwt")[0];
    assert_eq!(r.method, "POST");
    assert!(jwt_claims(r, "another-secret-that-is-32-bytes-long!!").is_none());
    let claims = jwt_claims(r, &jwt_secret).expect("JWT verifies with the shared secret");
    let id = jwt_post.endpoint.as_ref().expect("endpoint").id.clone();
    assert_eq!(claims["endpoint_id"], id.as_str());
    assert_eq!(claims["endpoint_name"], "jwt");
    assert_eq!(claims["tenant_id"], "acme");
    assert_eq!(claims["event_type"], "order.created");
    assert_eq!(claims["event_id"], r.json()["id"]);
    assert_eq!(claims["resource"], json!({"type": "order", "id": "ord_1"}));
    assert_eq!(claims["data"], json!({"purpose": "demo"}));
    // The endpoint's custom data rides in every delivery's body too (C3).
    assert_eq!(r.json()["custom_data"], json!({"purpose": "demo"}));
    assert!(on(&got, "/basic")[0].json().get("custom_data").is_none());
    assert_eq!(claims["processing_timeout"], 7);
    assert_eq!(claims["last_success_at"], Value::Null);
    assert_eq!(claims["last_failure_at"], Value::Null);
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert!((t0 - 1..=t0 + 30).contains(&iat), "iat {iat} near {t0}");
    assert_eq!(exp - iat, 120);
    assert!(claims["triggered_at"].as_str().unwrap().ends_with('Z'));

    let r = &on(&got, "/jwt-get")[0];
    assert_eq!(r.method, "GET");
    assert!(r.body.is_empty(), "GET sends no body");
    let claims = jwt_claims(r, &jwt_get.jwt_secret).expect("JWT verifies");
    assert_eq!(claims["event_type"], "order.created");
    assert_eq!(claims["resource"]["id"], "ord_1");
    assert!(
        standard_ok(r, &jwt_get.signing_secret),
        "signed over the empty body"
    );

    // Secrets never come back from reads.
    let listed = api
        .endpoints
        .list_endpoints(pb::ListEndpointsRequest {
            tenant_id: "acme".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let text = format!("{listed:?}");
    for secret in [
        standard.signing_secret.as_str(),
        jwt_get.jwt_secret.as_str(),
        jwt_secret.as_str(),
        "s3cret pass",
    ] {
        assert!(!text.contains(secret), "a list response leaks a secret");
    }
    assert!(text.contains("herald"), "the Basic user name is shown");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn jwt_claims_report_the_last_success_and_failure() -> anyhow::Result<()> {
    let mut c = setup().await?;
    let rx = Receiver::start().await;
    let secret = "0123456789abcdef0123456789abcdef".to_string();
    let ep = create(
        &mut c.api,
        pb::EndpointSpec {
            retry: Some(pb::RetryPolicy {
                delays_ms: vec![200],
            }),
            auth: Some(pb::ReceiverAuth {
                kind: Some(pb::receiver_auth::Kind::Jwt(pb::JwtAuth {
                    secret: secret.clone(),
                    ttl_secs: 0,
                    ..Default::default()
                })),
            }),
            ..spec(&rx, "jwt")
        },
    )
    .await?;
    rx.script(&[(500, None)]);
    c.api.publish_seqs(0..1).await?;
    let got = rx.wait_for(2, WAIT).await;
    assert_eq!(got.len(), 2, "a failure, then the retry");
    c.api.publish_seqs(1..2).await?;
    let got = rx.wait_for(3, WAIT).await;
    assert_eq!(got.len(), 3);
    let claims: Vec<Value> = got
        .iter()
        .map(|r| jwt_claims(r, &secret).expect("verifies"))
        .collect();
    assert_eq!(claims[0]["last_failure_at"], Value::Null);
    assert_eq!(
        claims[0]["exp"].as_i64().unwrap() - claims[0]["iat"].as_i64().unwrap(),
        300
    );
    assert!(claims[1]["last_failure_at"].is_string(), "{:?}", claims[1]);
    assert_eq!(claims[1]["last_success_at"], Value::Null);
    assert!(claims[2]["last_success_at"].is_string(), "{:?}", claims[2]);
    assert_eq!(claims[2]["last_failure_at"], claims[1]["last_failure_at"]);

    // Rotating the JWT secret: the next request verifies with the new one only.
    let rotated = c
        .api
        .endpoints
        .rotate_secret(pb::RotateSecretRequest {
            tenant_id: "acme".into(),
            id: ep.endpoint.expect("endpoint").id,
            kind: pb::SecretKind::Jwt as i32,
            ..Default::default()
        })
        .await?
        .into_inner();
    c.api.publish_seqs(2..3).await?;
    let got = rx.wait_for(4, WAIT).await;
    assert!(jwt_claims(&got[3], &rotated.secret).is_some());
    assert!(jwt_claims(&got[3], &secret).is_none());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_signs_with_both_secrets_during_the_overlap_only() -> anyhow::Result<()> {
    let mut c = setup().await?;
    let rx = Receiver::start().await;
    let created = create(
        &mut c.api,
        pb::EndpointSpec {
            body_signature: Some(pb::BodySignature {
                header: "X-Signature".into(),
                encoding: pb::SignatureEncoding::Hex as i32,
            }),
            ..spec(&rx, "rot")
        },
    )
    .await?;
    let id = created.endpoint.as_ref().expect("endpoint").id.clone();
    let old = created.signing_secret;
    let rotate = |overlap: Option<u32>, secret: &str| pb::RotateSecretRequest {
        tenant_id: "acme".into(),
        id: id.clone(),
        kind: pb::SecretKind::Signing as i32,
        secret: secret.into(),
        overlap_secs: overlap,
        scheme: 0,
    };
    let verifies = |r: &Received, s: &str| standard_ok(r, s) && body_ok(r, "x-signature", s, false);

    c.api.publish_seqs(0..1).await?;
    let r = rx.wait_for(1, WAIT).await.remove(0);
    assert!(verifies(&r, &old));

    let rotated = c
        .api
        .endpoints
        .rotate_secret(rotate(Some(3), ""))
        .await?
        .into_inner();
    let new = rotated.secret;
    assert_ne!(new, old);
    let ep = rotated.endpoint.expect("endpoint");
    assert!(ep.previous_secret_expires_at_ms > 0, "the overlap is shown");
    assert!(!format!("{ep:?}").contains(&old) && !format!("{ep:?}").contains(&new));

    c.api.publish_seqs(1..2).await?;
    let r = rx.wait_for(2, WAIT).await.remove(1);
    assert!(
        verifies(&r, &old),
        "the old secret still verifies in the overlap"
    );
    assert!(verifies(&r, &new), "the new one too");
    assert_eq!(r.header("webhook-signature").split(' ').count(), 2);

    // After the window only the new secret signs.
    let until = ep.previous_secret_expires_at_ms;
    loop {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
        if now.as_millis() as i64 > until + 100 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.api.publish_seqs(2..3).await?;
    let r = rx.wait_for(3, WAIT).await.remove(2);
    assert!(verifies(&r, &new));
    assert!(!standard_ok(&r, &old) && !body_ok(&r, "x-signature", &old, false));
    assert_eq!(r.header("webhook-signature").split(' ').count(), 1);

    // A regenerate (no overlap), with a secret the caller chose.
    let chosen = format!("whsec_{}", B64.encode([7u8; 32]));
    let regen = c
        .api
        .endpoints
        .rotate_secret(rotate(Some(0), &chosen))
        .await?
        .into_inner();
    assert_eq!(regen.secret, chosen);
    assert_eq!(
        regen
            .endpoint
            .expect("endpoint")
            .previous_secret_expires_at_ms,
        0
    );
    c.api.publish_seqs(3..4).await?;
    let r = rx.wait_for(4, WAIT).await.remove(3);
    assert!(verifies(&r, &chosen));
    assert!(
        !standard_ok(&r, &new),
        "a regenerate stops the old secret at once"
    );

    // Bad requests name their field.
    let e = &mut c.api.endpoints;
    let status = e
        .rotate_secret(rotate(None, "whsec_short"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("secret: "),
        "{}",
        status.message()
    );
    let status = e
        .rotate_secret(rotate(Some(31 * 86_400), ""))
        .await
        .unwrap_err();
    assert!(
        status.message().starts_with("overlap_secs: "),
        "{}",
        status.message()
    );
    let mut jwt = rotate(None, "");
    jwt.kind = pb::SecretKind::Jwt as i32;
    let status = e.rotate_secret(jwt.clone()).await.unwrap_err();
    assert_eq!(
        status.code(),
        Code::FailedPrecondition,
        "{}",
        status.message()
    );
    jwt.overlap_secs = Some(5);
    let status = e.rotate_secret(jwt).await.unwrap_err();
    assert!(
        status.message().starts_with("overlap_secs: "),
        "{}",
        status.message()
    );
    Ok(())
}

/// Standard Webhooks `v1a`: an Ed25519 signature over "id.ts.body",
/// checked with the endpoint's public key.
fn ed25519_ok(r: &Received, public_key: &str) -> bool {
    use ring::signature::{ED25519, UnparsedPublicKey};
    let Some(pk) = public_key
        .strip_prefix("whpk_")
        .and_then(|b| B64.decode(b).ok())
    else {
        return false;
    };
    let msg = [
        r.header("webhook-id").as_bytes(),
        b".",
        r.header("webhook-timestamp").as_bytes(),
        b".",
        &r.body,
    ]
    .concat();
    r.header("webhook-signature").split(' ').any(|s| {
        s.strip_prefix("v1a,")
            .and_then(|b| B64.decode(b).ok())
            .is_some_and(|sig| {
                UnparsedPublicKey::new(&ED25519, &pk)
                    .verify(&msg, &sig)
                    .is_ok()
            })
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn ed25519_signatures_verify_with_the_public_key_and_can_be_rotated_to() -> anyhow::Result<()>
{
    let mut c = setup().await?;
    let rx = Receiver::start().await;
    let created = create(
        &mut c.api,
        pb::EndpointSpec {
            signature_scheme: pb::SignatureScheme::Ed25519 as i32,
            ..spec(&rx, "ed")
        },
    )
    .await?;
    assert!(
        created.signing_secret.starts_with("whsk_"),
        "the private key, once"
    );
    let ep = created.endpoint.expect("endpoint");
    assert_eq!(ep.signing_public_keys.len(), 1);
    let public = ep.signing_public_keys[0].clone();
    assert!(public.starts_with("whpk_"));
    assert_eq!(
        ep.spec.as_ref().map(|s| s.signature_scheme),
        Some(pb::SignatureScheme::Ed25519 as i32)
    );
    assert!(!format!("{ep:?}").contains(&created.signing_secret));

    c.api.publish_seqs(0..1).await?;
    let r = rx.wait_for(1, WAIT).await.remove(0);
    assert!(ed25519_ok(&r, &public));
    assert!(
        !r.header("webhook-signature").contains("v1,"),
        "no HMAC signature"
    );

    // Moving to HMAC with an overlap: both signatures meanwhile.
    let rotated = c
        .api
        .endpoints
        .rotate_secret(pb::RotateSecretRequest {
            tenant_id: "acme".into(),
            id: ep.id.clone(),
            scheme: pb::SignatureScheme::HmacSha256 as i32,
            overlap_secs: Some(60),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(rotated.secret.starts_with("whsec_"));
    let after = rotated.endpoint.expect("endpoint");
    assert_eq!(
        after.signing_public_keys,
        vec![public.clone()],
        "the old key still signs"
    );
    c.api.publish_seqs(1..2).await?;
    let r = rx.wait_for(2, WAIT).await.remove(1);
    assert!(ed25519_ok(&r, &public));
    assert!(standard_ok(&r, &rotated.secret));

    // The scheme changes only through RotateSecret.
    let mut spec = after.spec.clone().expect("spec");
    spec.signature_scheme = pb::SignatureScheme::Ed25519 as i32;
    let status = c
        .api
        .endpoints
        .update_endpoint(pb::UpdateEndpointRequest {
            tenant_id: "acme".into(),
            id: ep.id.clone(),
            spec: Some(spec),
            expected_revision: after.revision,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("spec.signature_scheme: "),
        "{}",
        status.message()
    );
    Ok(())
}
