//! The connection every command uses: the control plane's address, and the
//! API key sent with each call.

use anyhow::{Context, Result};
use std::path::Path;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;

use tonic::transport::{Certificate, Channel, ClientTlsConfig};

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
/// An `https://` server is verified against `ca_file`, or the system's
/// roots.
pub fn channel(server: &str, api_key: Option<&str>, ca_file: Option<&Path>) -> Result<Ch> {
    let mut endpoint = Channel::from_shared(server.to_string())
        .with_context(|| format!("invalid --server {server:?}"))?;
    if server.starts_with("https://") {
        let tls = match ca_file {
            Some(path) => {
                let pem = std::fs::read(path)
                    .with_context(|| format!("reading --ca-file {}", path.display()))?;
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem))
            }
            None => ClientTlsConfig::new().with_native_roots(),
        };
        endpoint = endpoint.tls_config(tls)?;
    }
    let channel = endpoint.connect_lazy();
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
