//! ListEndpoints in pages: a tenant's endpoints come in id order, a page at
//! a time, each page's token leading to the next, and bad paging input is
//! refused naming the field.

use herald_proto::v1 as pb;
use herald_tests::cluster::Cluster;

#[tokio::test(flavor = "multi_thread")]
async fn endpoints_list_in_pages() -> anyhow::Result<()> {
    let (mut c, receiver) = Cluster::with_receiver("order.created").await?;
    let mut made = Vec::new();
    for _ in 0..5 {
        let r = c
            .api
            .endpoint("acme", &receiver.url("/hook"), &["order.created"])
            .await?;
        made.push(r.endpoint.unwrap_or_default().id);
    }
    made.sort();
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = c
            .api
            .endpoints
            .list_endpoints(pb::ListEndpointsRequest {
                tenant_id: "acme".into(),
                page_size: 2,
                page_token,
            })
            .await?
            .into_inner();
        sizes.push(page.endpoints.len());
        seen.extend(page.endpoints.into_iter().map(|e| e.id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(sizes, [2, 2, 1]);
    assert_eq!(seen, made, "every endpoint once, in id order");
    for (req, field) in [
        (
            pb::ListEndpointsRequest {
                tenant_id: "acme".into(),
                page_size: 1001,
                ..Default::default()
            },
            "page_size: ",
        ),
        (
            pb::ListEndpointsRequest {
                tenant_id: "acme".into(),
                page_token: "not a token!".into(),
                ..Default::default()
            },
            "page_token: ",
        ),
    ] {
        let e = c.api.endpoints.list_endpoints(req).await.expect_err(field);
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().starts_with(field), "{}", e.message());
    }
    Ok(())
}
