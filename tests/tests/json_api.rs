//! The JSON API (issue 17, part 1): every public RPC over HTTP with a JSON
//! body, against a real cluster. Each is called once as it should be
//! (200), and once with bad input, whose answer must carry the same code
//! and the same field-naming message as the gRPC call with that request.

use std::time::Duration;

use herald_proto::v1 as pb;
use herald_tests::cluster::{Agent, ControlPlane, Etcd};
use herald_tests::receiver::Receiver;
use serde_json::{Value, json};

/// A plain HTTP client (reqwest is built without a TLS provider).
fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// The HTTP side: the control plane's JSON API with a key.
struct Http {
    base: String,
    key: String,
    client: reqwest::Client,
}

impl Http {
    /// POSTs `body` to `/api/{path}`: the status and the JSON answer.
    async fn call(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let resp = self
            .client
            .post(format!("{}/api/{path}", self.base))
            .header("authorization", format!("Bearer {}", self.key))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    /// Like [`Http::call`], expecting 200.
    async fn ok(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let (status, answer) = self.call(path, &body).await?;
        anyhow::ensure!(status == 200, "{path} {body}: {status} {answer}");
        Ok(answer)
    }
}

/// The same request over gRPC: the error's code name and message.
async fn grpc_error<Req, Resp>(
    channel: &tonic::transport::Channel,
    key: &str,
    path: &'static str,
    body: &Value,
) -> anyhow::Result<(String, String)>
where
    Req: prost::Message + serde::de::DeserializeOwned + Default + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
{
    let req: Req = serde_json::from_value(body.clone())?;
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await?;
    let mut request = tonic::Request::new(req);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse()?);
    let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
    match grpc
        .unary(
            request,
            tonic::codegen::http::uri::PathAndQuery::from_static(path),
            codec,
        )
        .await
    {
        Ok(_) => anyhow::bail!("{path} {body}: gRPC accepted it"),
        Err(s) => Ok((code_name(s.code()), s.message().to_string())),
    }
}

fn code_name(c: tonic::Code) -> String {
    // tonic's Debug names ("InvalidArgument") in Connect's snake_case.
    let mut out = String::new();
    for (i, ch) in format!("{c:?}").chars().enumerate() {
        if ch.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_lowercase());
    }
    out
}

/// Calls `path` with `bad` over HTTP and gRPC: same code, same message,
/// and the message names `field`.
macro_rules! same_error {
    ($http:expr, $ch:expr, $svc:literal / $m:literal, $req:ty => $resp:ty, $bad:expr, $field:expr) => {{
        let bad: Value = $bad;
        let (status, answer) = $http.call(concat!($svc, "/", $m), &bad).await?;
        let (code, message) =
            grpc_error::<$req, $resp>($ch, &$http.key, concat!("/", $svc, "/", $m), &bad).await?;
        assert!(status >= 400, "{} {bad}: {status}", $m);
        assert_eq!(answer["code"], code.as_str(), "{} {bad}: {answer}", $m);
        assert_eq!(answer["message"], message.as_str(), "{} {bad}", $m);
        assert!(
            message.starts_with(&format!("{}", $field)),
            "{}: {message:?} does not name {}",
            $m,
            $field
        );
        status
    }};
}

#[tokio::test(flavor = "multi_thread")]
async fn every_public_rpc_over_http_with_the_grpc_messages() -> anyhow::Result<()> {
    let etcd = Etcd::start()?;
    let cp = ControlPlane::start(&etcd, &["--http-listen", "127.0.0.1:0"])?;
    let agent = Agent::start(&etcd, &[&cp], &[])?;
    let addr = cp
        .proc
        .seen_line("herald-control-plane http on ")
        .ok_or_else(|| anyhow::anyhow!("no http address printed"))?;
    let h = Http {
        base: format!("http://{addr}"),
        key: cp.admin_key.clone(),
        client: client(),
    };
    let ch = &tonic::transport::Channel::from_shared(cp.url.clone())?
        .connect()
        .await?;
    let receiver = Receiver::start().await;

    // Catalog.
    h.ok(
        "herald.v1.CatalogService/CreateEventType",
        json!({"name": "order.created", "group": "order"}),
    )
    .await?;
    same_error!(h, ch, "herald.v1.CatalogService" / "CreateEventType",
        pb::CreateEventTypeRequest => pb::EventType, json!({"name": "bad name"}), "name: ");
    let et = h
        .ok(
            "herald.v1.CatalogService/GetEventType",
            json!({"name": "order.created"}),
        )
        .await?;
    assert_eq!(et["group"], "order");
    same_error!(h, ch, "herald.v1.CatalogService" / "GetEventType",
        pb::GetEventTypeRequest => pb::EventType, json!({"name": "a..b"}), "name: ");
    h.ok(
        "herald.v1.CatalogService/UpdateEventType",
        json!({"name": "order.created", "group": "order", "description": "An order was placed",
               "expected_revision": et["revision"]}),
    )
    .await?;
    same_error!(h, ch, "herald.v1.CatalogService" / "UpdateEventType",
        pb::UpdateEventTypeRequest => pb::EventType,
        json!({"name": "order.created", "schema_json": "{", "expected_revision": "1"}),
        "schema_json: ");
    let listed = h
        .ok("herald.v1.CatalogService/ListEventTypes", json!({}))
        .await?;
    assert!(
        listed["event_types"]
            .as_array()
            .is_some_and(|a| a.len() >= 5)
    );
    same_error!(h, ch, "herald.v1.CatalogService" / "ArchiveEventType",
        pb::ArchiveEventTypeRequest => pb::EventType,
        json!({"name": "herald.endpoint.enabled"}), "name: ");
    h.ok(
        "herald.v1.CatalogService/CreateEventType",
        json!({"name": "order.old"}),
    )
    .await?;
    let archived = h
        .ok(
            "herald.v1.CatalogService/ArchiveEventType",
            json!({"name": "order.old"}),
        )
        .await?;
    assert_eq!(archived["archived"], true);

    // Tenants.
    h.ok(
        "herald.v1.TenantService/CreateTenant",
        json!({"id": "acme"}),
    )
    .await?;
    same_error!(h, ch, "herald.v1.TenantService" / "CreateTenant",
        pb::CreateTenantRequest => pb::Tenant, json!({"id": "bad id"}), "id: ");
    h.ok("herald.v1.TenantService/GetTenant", json!({"id": "acme"}))
        .await?;
    let status = same_error!(h, ch, "herald.v1.TenantService" / "GetTenant",
        pb::GetTenantRequest => pb::Tenant, json!({"id": "nobody"}), "tenant");
    assert_eq!(status, 404);
    let tenants = h
        .ok("herald.v1.TenantService/ListTenants", json!({}))
        .await?;
    assert_eq!(tenants["tenants"][0]["id"], "acme");

    // Endpoints.
    let spec = json!({"name": "orders", "url": receiver.url("/hook"), "enabled": true,
                      "event_types": ["order.*"]});
    let created = h
        .ok(
            "herald.v1.EndpointService/CreateEndpoint",
            json!({"tenant_id": "acme", "spec": spec}),
        )
        .await?;
    let ep = created["endpoint"]["id"].as_str().unwrap_or("").to_string();
    let secret = created["signing_secret"].as_str().unwrap_or("").to_string();
    assert!(secret.starts_with("whsec_"), "{created}");
    let mut bad_spec = spec.clone();
    bad_spec["url"] = json!("ftp://example.com");
    same_error!(h, ch, "herald.v1.EndpointService" / "CreateEndpoint",
        pb::CreateEndpointRequest => pb::CreateEndpointResponse,
        json!({"tenant_id": "acme", "spec": bad_spec}), "spec.url: ");
    let got = h
        .ok(
            "herald.v1.EndpointService/GetEndpoint",
            json!({"tenant_id": "acme", "id": ep}),
        )
        .await?;
    assert!(
        !got.to_string().contains(&secret),
        "the secret is shown once"
    );
    same_error!(h, ch, "herald.v1.EndpointService" / "GetEndpoint",
        pb::GetEndpointRequest => pb::Endpoint,
        json!({"tenant_id": "acme", "id": "bad id"}), "id: ");
    let eps = h
        .ok(
            "herald.v1.EndpointService/ListEndpoints",
            json!({"tenant_id": "acme"}),
        )
        .await?;
    assert_eq!(eps["endpoints"][0]["id"], ep.as_str());
    same_error!(h, ch, "herald.v1.EndpointService" / "ListEndpoints",
        pb::ListEndpointsRequest => pb::ListEndpointsResponse,
        json!({"tenant_id": "bad id"}), "tenant_id: ");
    let mut renamed = spec.clone();
    renamed["name"] = json!("renamed");
    h.ok(
        "herald.v1.EndpointService/UpdateEndpoint",
        json!({"tenant_id": "acme", "id": ep, "spec": renamed, "expected_revision": got["revision"]}),
    )
    .await?;
    let status = same_error!(h, ch, "herald.v1.EndpointService" / "UpdateEndpoint",
        pb::UpdateEndpointRequest => pb::Endpoint,
        json!({"tenant_id": "acme", "id": ep, "spec": renamed, "expected_revision": got["revision"]}),
        "endpoint");
    assert_eq!(status, 409, "a stale revision is a conflict");
    let rotated = h
        .ok(
            "herald.v1.EndpointService/RotateSecret",
            json!({"tenant_id": "acme", "id": ep, "overlap_secs": 0}),
        )
        .await?;
    let secret = rotated["secret"].as_str().unwrap_or("").to_string();
    assert!(secret.starts_with("whsec_"), "{rotated}");
    same_error!(h, ch, "herald.v1.EndpointService" / "RotateSecret",
        pb::RotateSecretRequest => pb::RotateSecretResponse,
        json!({"tenant_id": "acme", "id": ep, "overlap_secs": 99_999_999}), "overlap_secs: ");
    let secrets = h
        .ok(
            "herald.v1.EndpointService/GetEndpointSecret",
            json!({"tenant_id": "acme", "id": ep}),
        )
        .await?;
    assert_eq!(secrets["signing_secret"], secret.as_str(), "{secrets}");
    same_error!(h, ch, "herald.v1.EndpointService" / "GetEndpointSecret",
        pb::GetEndpointSecretRequest => pb::GetEndpointSecretResponse,
        json!({"tenant_id": "acme", "id": "bad id"}), "id: ");

    // Publishing, and the log.
    let published = h
        .ok(
            "herald.v1.PublishService/Publish",
            json!({"tenant_id": "acme", "event_type": "order.created",
                   "payload_json": "{\"order\": 1}", "idempotency_key": "o1"}),
        )
        .await?;
    assert_eq!(published["endpoints_matched"], 1);
    same_error!(h, ch, "herald.v1.PublishService" / "Publish",
        pb::PublishRequest => pb::PublishResponse,
        json!({"tenant_id": "acme", "event_type": "order.created", "payload_json": "{"}),
        "payload_json: ");
    let batch = h
        .ok(
            "herald.v1.PublishService/PublishBatch",
            json!({"events": [{"tenant_id": "acme", "event_type": "order.created",
                               "payload_json": "{\"order\": 2}"}]}),
        )
        .await?;
    assert_eq!(batch["results"][0]["code"], "OK");
    same_error!(h, ch, "herald.v1.PublishService" / "PublishBatch",
        pb::PublishBatchRequest => pb::PublishBatchResponse, json!({"events": []}), "events: ");
    let arrived = receiver.wait_for(2, Duration::from_secs(15)).await;
    assert_eq!(arrived.len(), 2);
    // Signed with the rotated secret.
    let r = &arrived[0];
    herald_shared::signing::verify(
        &secret,
        r.header("webhook-id"),
        r.header("webhook-timestamp").parse()?,
        &r.body,
        r.header("webhook-signature"),
    )?;
    let log = loop {
        let log = h
            .ok(
                "herald.v1.DeliveryService/ListDeliveries",
                json!({"tenant_id": "acme", "statuses": ["DELIVERY_STATUS_SUCCEEDED"]}),
            )
            .await?;
        if log["deliveries"].as_array().is_some_and(|d| d.len() == 2) {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let delivery = log["deliveries"][0]["delivery_id"]
        .as_str()
        .unwrap_or("")
        .to_string();
    same_error!(h, ch, "herald.v1.DeliveryService" / "ListDeliveries",
        pb::ListDeliveriesRequest => pb::ListDeliveriesResponse,
        json!({"tenant_id": "acme", "page_size": 100_000}), "page_size: ");
    let detail = h
        .ok(
            "herald.v1.DeliveryService/GetDelivery",
            json!({"tenant_id": "acme", "delivery_id": delivery}),
        )
        .await?;
    assert_eq!(detail["attempts"][0]["response_status"], 200);
    same_error!(h, ch, "herald.v1.DeliveryService" / "GetDelivery",
        pb::GetDeliveryRequest => pb::DeliveryDetail,
        json!({"tenant_id": "acme", "delivery_id": "nope"}), "delivery 'nope'");
    h.ok(
        "herald.v1.DeliveryService/ResendDelivery",
        json!({"tenant_id": "acme", "delivery_id": delivery}),
    )
    .await?;
    same_error!(h, ch, "herald.v1.DeliveryService" / "ResendDelivery",
        pb::ResendDeliveryRequest => pb::ResendDeliveryResponse,
        json!({"tenant_id": "acme", "delivery_id": "nope"}), "delivery");
    h.ok(
        "herald.v1.DeliveryService/RecoverDeliveries",
        json!({"tenant_id": "acme", "endpoint_id": ep, "since_ms": "1"}),
    )
    .await?;
    same_error!(h, ch, "herald.v1.DeliveryService" / "RecoverDeliveries",
        pb::RecoverDeliveriesRequest => pb::RecoverDeliveriesResponse,
        json!({"tenant_id": "acme", "endpoint_id": "bad id", "since_ms": "1"}), "endpoint_id: ");
    h.ok(
        "herald.v1.DeliveryService/SendTestEvent",
        json!({"tenant_id": "acme", "endpoint_id": ep, "event_type": "order.created"}),
    )
    .await?;
    same_error!(h, ch, "herald.v1.DeliveryService" / "SendTestEvent",
        pb::SendTestEventRequest => pb::SendTestEventResponse,
        json!({"tenant_id": "acme", "endpoint_id": "bad id"}), "endpoint_id: ");
    let stats = h
        .ok(
            "herald.v1.DeliveryService/GetEndpointStats",
            json!({"tenant_id": "acme", "endpoint_id": ep}),
        )
        .await?;
    assert!(
        stats["successes"].as_str().is_some_and(|n| n != "0"),
        "{stats}"
    );
    same_error!(h, ch, "herald.v1.DeliveryService" / "GetEndpointStats",
        pb::GetEndpointStatsRequest => pb::EndpointStats,
        json!({"tenant_id": "acme", "endpoint_id": "bad id"}), "endpoint_id: ");

    // Keys.
    let made = h
        .ok(
            "herald.v1.AccessService/CreateApiKey",
            json!({"name": "ci", "scopes": ["config:read"]}),
        )
        .await?;
    let key_id = made["api_key"]["id"].as_str().unwrap_or("").to_string();
    same_error!(h, ch, "herald.v1.AccessService" / "CreateApiKey",
        pb::CreateApiKeyRequest => pb::CreateApiKeyResponse,
        json!({"name": "ci2", "scopes": ["everything"]}), "scopes");
    let keys = h
        .ok("herald.v1.AccessService/ListApiKeys", json!({}))
        .await?;
    assert!(keys.to_string().contains(&key_id));
    h.ok(
        "herald.v1.AccessService/RevokeApiKey",
        json!({"id": key_id}),
    )
    .await?;
    same_error!(h, ch, "herald.v1.AccessService" / "RevokeApiKey",
        pb::RevokeApiKeyRequest => pb::RevokeApiKeyResponse, json!({"id": "nope"}), "API key 'nope'");

    // Deleting, and the cluster.
    same_error!(h, ch, "herald.v1.EndpointService" / "DeleteEndpoint",
        pb::DeleteEndpointRequest => pb::DeleteEndpointResponse,
        json!({"tenant_id": "acme", "id": "bad id"}), "id: ");
    h.ok(
        "herald.v1.EndpointService/DeleteEndpoint",
        json!({"tenant_id": "acme", "id": ep}),
    )
    .await?;
    same_error!(h, ch, "herald.v1.TenantService" / "DeleteTenant",
        pb::DeleteTenantRequest => pb::DeleteTenantResponse, json!({"id": "bad id"}), "id: ");
    h.ok(
        "herald.v1.TenantService/DeleteTenant",
        json!({"id": "acme"}),
    )
    .await?;
    let cluster = h
        .ok("herald.v1.ClusterService/GetCluster", json!({}))
        .await?;
    let agent_id = cluster["agents"][0]["id"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(!agent_id.is_empty(), "{cluster}");
    same_error!(h, ch, "herald.v1.ClusterService" / "DrainAgent",
        pb::DrainAgentRequest => pb::DrainAgentResponse, json!({"agent_id": ""}), "agent_id: ");
    h.ok(
        "herald.v1.ClusterService/DrainAgent",
        json!({"agent_id": agent_id}),
    )
    .await?;
    drop(agent);
    Ok(())
}

/// What only HTTP can get wrong: a body that is not the request, an
/// unknown method, no key; and the OpenAPI document is served.
#[tokio::test(flavor = "multi_thread")]
async fn bad_bodies_unknown_methods_and_missing_keys() -> anyhow::Result<()> {
    let etcd = Etcd::start()?;
    let cp = ControlPlane::start(&etcd, &["--http-listen", "127.0.0.1:0"])?;
    let addr = cp
        .proc
        .seen_line("herald-control-plane http on ")
        .ok_or_else(|| anyhow::anyhow!("no http address printed"))?;
    let h = Http {
        base: format!("http://{addr}"),
        key: cp.admin_key.clone(),
        client: client(),
    };
    let (status, answer) = h
        .call(
            "herald.v1.TenantService/CreateTenant",
            &json!({"idd": "acme"}),
        )
        .await?;
    assert_eq!(status, 400);
    assert_eq!(answer["code"], "invalid_argument");
    let message = answer["message"].as_str().unwrap_or("");
    assert!(
        message.starts_with("body: ") && message.contains("idd"),
        "{message}"
    );
    let (status, answer) = h
        .call("herald.v1.TenantService/Frobnicate", &json!({}))
        .await?;
    assert_eq!(
        (status, answer["code"].as_str()),
        (501, Some("unimplemented"))
    );
    let anonymous = Http {
        key: String::new(),
        ..h
    };
    let (status, answer) = anonymous
        .call("herald.v1.TenantService/ListTenants", &json!({}))
        .await?;
    assert_eq!(
        (status, answer["code"].as_str()),
        (401, Some("unauthenticated"))
    );
    let doc: Value = serde_json::from_str(
        &anonymous
            .client
            .get(format!("{}/openapi.json", anonymous.base))
            .send()
            .await?
            .text()
            .await?,
    )?;
    assert_eq!(doc["openapi"], "3.0.3");
    assert!(doc["paths"]["/api/herald.v1.PublishService/Publish"].is_object());
    // A real validator accepts it.
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, doc.to_string())?;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/openapi-validate.sh");
    let out = std::process::Command::new(script).arg(&file).output()?;
    assert!(
        out.status.success(),
        "openapi-spec-validator: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
