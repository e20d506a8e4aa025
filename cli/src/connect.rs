//! The connection every command uses: the control plane's address, and the
//! API key sent with each call.

use anyhow::{Context, Result};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Adds `authorization: Bearer <key>` to every call.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// A channel to the control plane that sends the key.
pub type Ch = InterceptedService<Channel, Bearer>;

/// A lazily connected channel to `server`, sending `api_key` if given.
pub fn channel(server: &str, api_key: Option<&str>) -> Result<Ch> {
    let channel = Channel::from_shared(server.to_string())
        .with_context(|| format!("invalid --server {server:?}"))?
        .connect_lazy();
    let bearer = match api_key {
        // The error would not hold the key: MetadataValue's says only
        // that a character is invalid.
        Some(k) => Some(
            format!("Bearer {}", k.trim())
                .parse()
                .context("--api-key holds characters a header cannot carry")?,
        ),
        None => None,
    };
    Ok(InterceptedService::new(channel, Bearer(bearer)))
}
