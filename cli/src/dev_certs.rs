//! `herald dev-certs`: a private CA and certificates for loopback, to run
//! Herald with TLS and cluster mutual TLS on one machine (what
//! `deploy/local/run.sh` does). Real deployments use their own PKI.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// Flags of `herald dev-certs`.
#[derive(Debug, Args)]
pub struct DevCertsArgs {
    /// Directory to write `ca.pem` and `<name>.pem` / `<name>.key` into.
    #[arg(long)]
    out: PathBuf,
    /// One certificate per name, each valid for 127.0.0.1, ::1 and
    /// localhost, as a server and as a client.
    #[arg(long = "name", default_values_t = ["control-plane".to_string(), "agent".to_string()])]
    names: Vec<String>,
}

/// Writes the CA and the certificates; prints the files.
pub fn run(a: DevCertsArgs) -> Result<()> {
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "Herald development CA");
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
    write(&a.out.join("ca.pem"), &ca.pem(), false)?;
    println!("{}", a.out.join("ca.pem").display());
    for name in &a.names {
        let mut params = CertificateParams::new(vec![
            "127.0.0.1".to_string(),
            "::1".to_string(),
            "localhost".to_string(),
        ])?;
        params
            .distinguished_name
            .push(DnType::CommonName, name.clone());
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca)?;
        write(&a.out.join(format!("{name}.pem")), &cert.pem(), false)?;
        write(
            &a.out.join(format!("{name}.key")),
            &key.serialize_pem(),
            true,
        )?;
        println!("{}", a.out.join(format!("{name}.pem")).display());
    }
    Ok(())
}

/// Writes `text`; a private key readable by its owner only.
fn write(path: &Path, text: &str, private: bool) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    if private {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}
