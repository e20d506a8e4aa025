//! An endpoint's own JWT claims (issue 18, item 6; seed 004): static claims
//! such as a product id or the API address a handler calls back, added to
//! Herald's in the receiver's token; names of registered or Herald's claims
//! are refused naming the field.

use std::time::Duration;

use herald_proto::v1 as pb;
use herald_tests::cluster::Cluster;
use serde_json::Value;
use tonic::Code;

#[tokio::test(flavor = "multi_thread")]
async fn own_claims_ride_beside_heralds() -> anyhow::Result<()> {
    let (mut c, receiver) = Cluster::with_receiver("order.created").await?;
    let secret = "a-jwt-secret-of-at-least-32-bytes!!".to_string();
    let spec = |claims_json: &str| pb::EndpointSpec {
        name: "handler".into(),
        url: receiver.url("/h"),
        event_types: vec!["order.created".into()],
        enabled: true,
        auth: Some(pb::ReceiverAuth {
            kind: Some(pb::receiver_auth::Kind::Jwt(pb::JwtAuth {
                secret: secret.clone(),
                ttl_secs: 0,
                claims_json: claims_json.into(),
            })),
        }),
        ..Default::default()
    };
    let create = |s| pb::CreateEndpointRequest {
        tenant_id: "acme".into(),
        spec: Some(s),
    };
    for (bad, why) in [
        (r#"{"exp": 1}"#, "'exp' is a registered JWT claim"),
        (
            r#"{"event_id": "x"}"#,
            "'event_id' is a registered JWT claim or one Herald sets",
        ),
        ("[1]", "must be a JSON object"),
        ("{", "is not valid JSON"),
    ] {
        let s = c
            .api
            .endpoints
            .create_endpoint(create(spec(bad)))
            .await
            .expect_err(bad);
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(
            s.message().starts_with("spec.auth.jwt.claims_json: ") && s.message().contains(why),
            "{}",
            s.message()
        );
    }
    let ep = c
        .api
        .endpoints
        .create_endpoint(create(spec(
            r#"{"product_id": "PRD-7", "api": "https://api.example/v1", "limits": {"n": 3}}"#,
        )))
        .await?
        .into_inner()
        .endpoint
        .unwrap();
    // The claims are not secret: the endpoint shows them.
    let shown = ep.spec.unwrap().auth.unwrap().kind.unwrap();
    let pb::receiver_auth::Kind::Jwt(j) = shown else {
        panic!("jwt")
    };
    assert!(j.secret.is_empty() && j.claims_json.contains("PRD-7"));

    c.api
        .publish("acme", "order.created", serde_json::json!({ "n": 1 }), "k1")
        .await?;
    let got = receiver.wait_for(1, Duration::from_secs(20)).await;
    let token = got[0]
        .header("authorization")
        .strip_prefix("Bearer ")
        .expect("a bearer token");
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    v.validate_exp = true;
    let claims = jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()),
        &v,
    )?
    .claims;
    assert_eq!(claims["product_id"], "PRD-7");
    assert_eq!(claims["api"], "https://api.example/v1");
    assert_eq!(claims["limits"]["n"], 3);
    assert_eq!(claims["endpoint_id"], Value::String(ep.id.clone()));
    assert_eq!(claims["event_type"], "order.created");
    Ok(())
}
