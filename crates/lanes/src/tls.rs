//! The API's TLS: a certificate authority made at first start (`<state-dir>/ca.crt`,
//! `ca.key`, mode 0600) and, at every start, a serving certificate it signs for the
//! loopback names and the API address. kubectl and the client libraries send a bearer
//! token only over TLS, so the kubeconfig points at `https://` and carries the CA.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// What the API serves TLS with, and the CA clients trust.
pub struct ApiTls {
    /// The acceptor of the API listener.
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// The CA certificate, PEM (the kubeconfig's `certificate-authority-data`).
    pub ca_pem: String,
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The CA's subject and uses: the same at every start, so that with the kept key it
/// signs as the certificate in `ca.crt` does.
fn ca_params() -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "lanes-ca");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

/// The state directory's CA (made if missing): its certificate PEM and key.
fn ca(state_dir: &Path) -> Result<(String, KeyPair)> {
    let (crt, key) = (state_dir.join("ca.crt"), state_dir.join("ca.key"));
    if let (Ok(c), Ok(k)) = (std::fs::read_to_string(&crt), std::fs::read_to_string(&key)) {
        let pair = KeyPair::from_pem(&k)
            .with_context(|| format!("{} is not a private key", key.display()))?;
        return Ok((c, pair));
    }
    let pair = KeyPair::generate()?;
    let cert = ca_params()?.self_signed(&pair)?;
    write_private(&key, &pair.serialize_pem())?;
    std::fs::write(&crt, cert.pem()).with_context(|| format!("cannot write {}", crt.display()))?;
    Ok((cert.pem(), pair))
}

/// The API's TLS for an API listening on `ip`.
pub fn for_api(state_dir: &Path, ip: IpAddr) -> Result<ApiTls> {
    let (ca_pem, ca_key) = ca(state_dir)?;
    let issuer = Issuer::new(ca_params()?, ca_key);
    let mut params = CertificateParams::new(vec!["localhost".to_string()])?;
    params
        .distinguished_name
        .push(DnType::CommonName, "lanes-apiserver");
    let mut ips = vec![
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ];
    if !ip.is_unspecified() && !ips.contains(&ip) {
        ips.push(ip);
    }
    params
        .subject_alt_names
        .extend(ips.into_iter().map(SanType::IpAddress));
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    let chain = vec![cert.der().clone()];
    let der_key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der())
        .map_err(|e| anyhow::anyhow!("serving key: {e}"))?;
    Ok(ApiTls {
        acceptor: acceptor(chain, der_key).context("cannot make the API's TLS configuration")?,
        ca_pem,
    })
}

/// A TLS acceptor (HTTP/2 and HTTP/1.1) serving `chain` with `key`.
fn acceptor(
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> Result<tokio_rustls::TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// A TLS acceptor serving the PEM certificate chain in `cert` with the PEM key in `key`
/// (the webhook's, from a mounted Secret).
pub fn from_files(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read the certificate chain in {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read the private key in {}", key.display()))?;
    acceptor(chain, key).with_context(|| {
        format!(
            "{} and its key do not make a TLS configuration",
            cert.display()
        )
    })
}
