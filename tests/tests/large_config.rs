//! A control plane starting on an etcd that holds more config than one
//! gRPC message carries (4 MiB) loads it all and serves: the first load is
//! read in pages. (Before, the one read of the whole prefix failed and the
//! replica retried forever, so a restart with a few thousand endpoints
//! never served.)

use herald_proto::v1 as pb;
use herald_tests::cluster::{ControlPlane, Etcd};

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_loads_more_config_than_one_message_holds() -> anyhow::Result<()> {
    let etcd = Etcd::start()?;
    let cp = ControlPlane::start(&etcd, &[])?;
    let mut api = cp.clients().await?;
    api.event_type("order.created").await?;
    api.tenant("acme").await?;
    // 80 endpoints of 60 KiB each: 4.8 MiB of records.
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(60 * 1024));
    let mut ids = Vec::new();
    for i in 0..80 {
        let r = api
            .endpoints
            .create_endpoint(pb::CreateEndpointRequest {
                tenant_id: "acme".into(),
                spec: Some(pb::EndpointSpec {
                    name: format!("e{i}"),
                    url: "http://127.0.0.1:9/hook".into(),
                    event_types: vec!["order.created".into()],
                    custom_data_json: big.clone(),
                    ..Default::default()
                }),
            })
            .await?
            .into_inner();
        ids.push(r.endpoint.unwrap_or_default().id);
    }
    let second = ControlPlane::start(&etcd, &[])?;
    let mut on2 = second.clients().await?;
    for id in [&ids[0], &ids[40], &ids[79]] {
        let e = on2
            .endpoints
            .get_endpoint(pb::GetEndpointRequest {
                tenant_id: "acme".into(),
                id: id.clone(),
            })
            .await?
            .into_inner();
        assert_eq!(e.spec.map(|s| s.custom_data_json.len()), Some(big.len()));
    }
    Ok(())
}
