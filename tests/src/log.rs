//! Reading the delivery log in tests: page through lists, wait for states.

use std::time::{Duration, Instant};

use herald_proto::v1 as pb;

use crate::cluster::Clients;

impl Clients {
    /// Every delivery matching `filter`, following the page tokens with
    /// pages of `page_size`; also returns how many pages it took.
    pub async fn list_all(
        &mut self,
        filter: pb::ListDeliveriesRequest,
        page_size: u32,
    ) -> anyhow::Result<(Vec<pb::DeliverySummary>, usize)> {
        let mut out = Vec::new();
        let mut token = String::new();
        let mut pages = 0;
        loop {
            let page = self
                .deliveries
                .list_deliveries(pb::ListDeliveriesRequest {
                    page_size,
                    page_token: token,
                    ..filter.clone()
                })
                .await?
                .into_inner();
            pages += 1;
            anyhow::ensure!(page.deliveries.len() <= page_size as usize, "page too big");
            out.extend(page.deliveries);
            if page.next_page_token.is_empty() {
                return Ok((out, pages));
            }
            anyhow::ensure!(pages < 100_000, "paging does not end");
            token = page.next_page_token;
        }
    }

    /// Every delivery of `tenant`, or of one of its endpoints when `endpoint_id` is set.
    pub async fn deliveries_of(
        &mut self,
        tenant: &str,
        endpoint_id: &str,
    ) -> anyhow::Result<Vec<pb::DeliverySummary>> {
        let filter = pb::ListDeliveriesRequest {
            tenant_id: tenant.into(),
            endpoint_id: endpoint_id.into(),
            ..Default::default()
        };
        Ok(self.list_all(filter, 500).await?.0)
    }

    /// One delivery with its attempts.
    pub async fn delivery(&mut self, tenant: &str, id: &str) -> anyhow::Result<pb::DeliveryDetail> {
        Ok(self
            .deliveries
            .get_delivery(pb::GetDeliveryRequest {
                tenant_id: tenant.into(),
                delivery_id: id.into(),
            })
            .await?
            .into_inner())
    }

    /// Waits until `count` deliveries of the endpoint are in `status`; returns them.
    pub async fn wait_for_status(
        &mut self,
        tenant: &str,
        endpoint_id: &str,
        status: pb::DeliveryStatus,
        count: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<pb::DeliverySummary>> {
        let deadline = Instant::now() + timeout;
        loop {
            let filter = pb::ListDeliveriesRequest {
                tenant_id: tenant.into(),
                endpoint_id: endpoint_id.into(),
                statuses: vec![status as i32],
                ..Default::default()
            };
            let (got, _) = self.list_all(filter, 500).await?;
            if got.len() >= count {
                return Ok(got);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{} of {count} deliveries reached {status:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The endpoint's statistics.
    pub async fn stats(
        &mut self,
        tenant: &str,
        endpoint_id: &str,
    ) -> anyhow::Result<pb::EndpointStats> {
        Ok(self
            .deliveries
            .get_endpoint_stats(pb::GetEndpointStatsRequest {
                tenant_id: tenant.into(),
                endpoint_id: endpoint_id.into(),
            })
            .await?
            .into_inner())
    }
}
