//! A shared secret the user chooses (issue 18, item 1; seeds 002 and 003):
//! any 24 to 256 visible ASCII characters, for the body-HMAC mode, keyed by
//! exactly the text typed; refused where it cannot sign (the Standard
//! Webhooks signature needs a `whsec_` key).

use std::time::Duration;

use herald_proto::v1 as pb;
use herald_tests::cluster::Cluster;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tonic::Code;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_typed_secret_keys_the_body_hmac() -> anyhow::Result<()> {
    let (mut c, receiver) = Cluster::with_receiver("order.created").await?;
    let body_hmac = pb::EndpointSpec {
        name: "crm".into(),
        url: receiver.url("/crm"),
        event_types: vec!["order.created".into()],
        enabled: true,
        omit_standard_signature: true,
        body_signature: Some(pb::BodySignature {
            header: "x-signature".into(),
            encoding: pb::SignatureEncoding::Hex as i32,
        }),
        ..Default::default()
    };
    let ep = c
        .api
        .endpoints
        .create_endpoint(pb::CreateEndpointRequest {
            tenant_id: "acme".into(),
            spec: Some(body_hmac.clone()),
        })
        .await?
        .into_inner()
        .endpoint
        .unwrap();
    let rotate = |secret: &str| pb::RotateSecretRequest {
        tenant_id: "acme".into(),
        id: ep.id.clone(),
        secret: secret.into(),
        overlap_secs: Some(0),
        ..Default::default()
    };
    // The rule, on both sides: 24 to 256 visible ASCII characters.
    for (bad, why) in [
        ("a".repeat(23), "24 to 256"),
        ("a".repeat(257), "24 to 256"),
        (format!("{} spaces", "a".repeat(24)), "visible ASCII"),
    ] {
        let s = c
            .api
            .endpoints
            .rotate_secret(rotate(&bad))
            .await
            .expect_err(why);
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(
            s.message().starts_with("secret: ") && s.message().contains(why),
            "{}",
            s.message()
        );
    }
    let typed = "Nexudus-shared-secret-42!";
    c.api.endpoints.rotate_secret(rotate(typed)).await?;

    // Delivered with x-signature = hex(HMAC-SHA256(key = the typed text, body)).
    c.api
        .publish("acme", "order.created", serde_json::json!({ "n": 1 }), "k1")
        .await?;
    let got = receiver.wait_for(1, Duration::from_secs(20)).await;
    let mut mac = Hmac::<Sha256>::new_from_slice(typed.as_bytes())?;
    mac.update(&got[0].body);
    assert_eq!(
        got[0].header("x-signature"),
        hex(&mac.finalize().into_bytes())
    );
    assert_eq!(
        got[0].header("webhook-signature"),
        "",
        "no standard signature"
    );

    // It cannot turn the Standard Webhooks signature on, nor the body HMAC off.
    let current = c
        .api
        .endpoints
        .get_endpoint(pb::GetEndpointRequest {
            tenant_id: "acme".into(),
            id: ep.id.clone(),
        })
        .await?
        .into_inner();
    for spec in [
        pb::EndpointSpec {
            omit_standard_signature: false,
            ..body_hmac.clone()
        },
        pb::EndpointSpec {
            body_signature: None,
            ..body_hmac.clone()
        },
    ] {
        let s = c
            .api
            .endpoints
            .update_endpoint(pb::UpdateEndpointRequest {
                tenant_id: "acme".into(),
                id: ep.id.clone(),
                spec: Some(spec),
                expected_revision: current.revision,
            })
            .await
            .expect_err("refused");
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(
            s.message()
                .starts_with("spec.omit_standard_signature: a secret of your own"),
            "{}",
            s.message()
        );
    }
    // And an endpoint with the standard signature refuses one.
    let standard = c
        .api
        .endpoint("acme", &receiver.url("/std"), &["order.created"])
        .await?
        .endpoint
        .unwrap();
    let s = c
        .api
        .endpoints
        .rotate_secret(pb::RotateSecretRequest {
            id: standard.id,
            ..rotate(typed)
        })
        .await
        .expect_err("refused");
    assert!(
        s.message()
            .starts_with("secret: a secret of your own keys only the body HMAC"),
        "{}",
        s.message()
    );
    Ok(())
}
