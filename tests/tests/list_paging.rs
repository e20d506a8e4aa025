//! ListEndpoints and ListTenants in pages: items come in id order, a page
//! at a time, each page's token leading to the next, and bad paging input
//! is refused naming the field.

use std::time::{Duration, Instant};

use herald_proto::v1 as pb;
use herald_tests::cluster::{Clients, Cluster};

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

/// Every page of ListTenants with `page_size`: the ids, and each page's size.
async fn tenant_pages(
    api: &mut Clients,
    page_size: u32,
) -> anyhow::Result<(Vec<String>, Vec<usize>)> {
    let (mut ids, mut sizes, mut page_token) = (Vec::new(), Vec::new(), String::new());
    loop {
        let page = api
            .tenants
            .list_tenants(pb::ListTenantsRequest {
                page_size,
                page_token,
            })
            .await?
            .into_inner();
        sizes.push(page.tenants.len());
        ids.extend(page.tenants.into_iter().map(|t| t.id));
        if page.next_page_token.is_empty() {
            return Ok((ids, sizes));
        }
        page_token = page.next_page_token;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_list_in_pages_and_a_limited_key_sees_full_pages_of_its_own() -> anyhow::Result<()>
{
    let mut c = Cluster::start().await?;
    let names = ["t-a", "t-b", "t-c", "t-d", "t-e"];
    for t in names {
        c.api.tenant(t).await?;
    }
    let (ids, sizes) = tenant_pages(&mut c.api, 2).await?;
    assert_eq!(ids, names, "every tenant once, in id order");
    assert_eq!(sizes, [2, 2, 1]);
    let (all, _) = tenant_pages(&mut c.api, 0).await?;
    assert_eq!(all, names, "the default page holds them all");

    // A key for t-b and t-d: pages of one are filled past the others.
    let key = c
        .api
        .access
        .create_api_key(pb::CreateApiKeyRequest {
            name: "two tenants".into(),
            scopes: vec!["config:read".into()],
            tenants: vec!["t-b".into(), "t-d".into()],
            expires_at_ms: 0,
        })
        .await?
        .into_inner()
        .key;
    let mut limited = Clients::connect(&c.cp.url, Some(&key)).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let (ids, sizes) = loop {
        // The replica learns of the new key through its watch.
        match tenant_pages(&mut limited, 1).await {
            Ok(r) => break r,
            Err(e) if Instant::now() < deadline => {
                eprintln!("key not known yet: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e),
        }
    };
    assert_eq!(ids, ["t-b", "t-d"], "only the key's tenants");
    assert!(sizes.iter().all(|n| *n <= 1), "{sizes:?}");
    assert_eq!(&sizes[..2], [1, 1], "full pages while there are more");

    for (req, field) in [
        (
            pb::ListTenantsRequest {
                page_size: 1001,
                ..Default::default()
            },
            "page_size: ",
        ),
        (
            pb::ListTenantsRequest {
                page_token: "not a token!".into(),
                ..Default::default()
            },
            "page_token: ",
        ),
    ] {
        let e = c.api.tenants.list_tenants(req).await.expect_err(field);
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().starts_with(field), "{}", e.message());
    }
    Ok(())
}
