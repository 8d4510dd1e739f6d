//! The test CA: one root that signs the stand-ins' server certificates (so Bindery trusts them
//! through `delivery.tls.ca_file`) and the client certificates of APNs certificate auth.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::der::{self, Reader, OID, SEQUENCE, SET};
use crate::keys::{self, RsaTestKey};

/// The UID attribute (0.9.2342.19200300.100.1.1) where Apple's push certificates carry the
/// bundle id.
const UID: [u64; 7] = [0, 9, 2342, 19200300, 100, 1, 1];

/// A certificate authority made for one test (or one bench run), with its root written as PEM.
pub struct TestCa {
    ca_file: PathBuf,
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    server_cert: CertificateDer<'static>,
    server_key: Vec<u8>,
}

/// What client certificate to issue: [`ClientCertSpec::new`] gives a valid EC P-256 one.
#[derive(Clone, Debug)]
pub struct ClientCertSpec {
    pub bundle_id: String,
    /// Goes in the subject's `OU`, as in Apple's certificates.
    pub team_id: String,
    pub key: ClientKey,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

/// The key a client certificate is made for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientKey {
    /// A fresh P-256 key; its traditional form is SEC1.
    EcP256,
    /// A committed RSA key (Apple's own push certificates are RSA); its traditional form is
    /// PKCS#1.
    Rsa(RsaTestKey),
}

/// An issued client certificate and its key, in the PEM forms a credential may be given in.
#[derive(Clone, Debug)]
pub struct ClientCert {
    /// As the stand-ins record it: `UID=…, CN=…, OU=…, O=…, C=…`.
    pub subject: String,
    pub bundle_id: String,
    pub cert_pem: String,
    /// `-----BEGIN PRIVATE KEY-----`.
    pub key_pkcs8_pem: String,
    /// SEC1 (`EC PRIVATE KEY`) for an EC key, PKCS#1 (`RSA PRIVATE KEY`) for an RSA one.
    pub key_traditional_pem: String,
    pub not_after: SystemTime,
    pub(crate) cert_der: CertificateDer<'static>,
    pub(crate) key_pkcs8_der: Vec<u8>,
}

impl ClientCertSpec {
    /// A certificate valid from a day ago for a year, for `bundle_id`.
    pub fn new(bundle_id: &str) -> Self {
        let now = SystemTime::now();
        ClientCertSpec {
            bundle_id: bundle_id.to_owned(),
            team_id: "TEAMID1234".to_owned(),
            key: ClientKey::EcP256,
            not_before: now - Duration::from_secs(86_400),
            not_after: now + Duration::from_secs(365 * 86_400),
        }
    }

    pub fn rsa(mut self, key: RsaTestKey) -> Self {
        self.key = ClientKey::Rsa(key);
        self
    }

    /// Expired yesterday (valid for the 30 days before), for expiry tests.
    pub fn expired(mut self) -> Self {
        let now = SystemTime::now();
        self.not_after = now - Duration::from_secs(86_400);
        self.not_before = now - Duration::from_secs(31 * 86_400);
        self
    }

    pub fn not_after(mut self, at: SystemTime) -> Self {
        self.not_after = at;
        self
    }
}

impl TestCa {
    /// A new CA, its root written to `dir/ca.pem`, with a server certificate for `localhost`,
    /// `127.0.0.1` and `::1`.
    pub fn new(dir: impl AsRef<Path>) -> anyhow::Result<TestCa> {
        let dir = dir.as_ref();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "Bindery stand-in test CA");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Bindery tests");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let ca = params.self_signed(&key)?;
        let issuer = Issuer::new(params, key);

        let mut server = CertificateParams::new(vec!["localhost".to_owned()])?;
        server
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        server
            .subject_alt_names
            .push(SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()));
        server.distinguished_name = DistinguishedName::new();
        server
            .distinguished_name
            .push(DnType::CommonName, "bindery stand-in");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        server.use_authority_key_identifier_extension = true;
        let server_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let server_cert = server.signed_by(&server_key, &issuer)?;

        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca.pem())
            .with_context(|| format!("writing {}", ca_file.display()))?;
        Ok(TestCa {
            ca_file,
            ca_pem: ca.pem(),
            ca_der: ca.der().clone(),
            issuer,
            server_cert: server_cert.der().clone(),
            server_key: server_key.serialize_der(),
        })
    }

    /// The root as a PEM file: what `delivery.tls.ca_file` names.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }

    /// A client certificate shaped like Apple's push certificates: subject
    /// `UID=<bundle id>, CN=Apple Push Services: <bundle id>, OU=<team id>, O=…, C=US`.
    pub fn client_cert(&self, spec: &ClientCertSpec) -> anyhow::Result<ClientCert> {
        let (key, pkcs8, traditional) = match spec.key {
            ClientKey::EcP256 => {
                let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
                let pkcs8 = key.serialize_der();
                let sec1 = der::pem("EC PRIVATE KEY", &keys::ec_pkcs8_to_sec1(&pkcs8)?);
                (key, pkcs8, sec1)
            }
            ClientKey::Rsa(rsa) => {
                let pkcs8 = rsa.pkcs8_der();
                let key = KeyPair::from_pkcs8_der_and_sign_algo(
                    &PrivatePkcs8KeyDer::from(pkcs8.clone()),
                    &rcgen::PKCS_RSA_SHA256,
                )?;
                (key, pkcs8, rsa.pkcs1_pem())
            }
        };
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        let name = &mut params.distinguished_name;
        name.push(
            DnType::CustomDnType(UID.to_vec()),
            DnValue::Utf8String(spec.bundle_id.clone()),
        );
        name.push(
            DnType::CommonName,
            format!("Apple Push Services: {}", spec.bundle_id),
        );
        name.push(DnType::OrganizationalUnitName, spec.team_id.clone());
        name.push(DnType::OrganizationName, "Bindery tests");
        name.push(DnType::CountryName, "US");
        params.not_before = spec.not_before.into();
        params.not_after = spec.not_after.into();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(ClientCert {
            subject: subject_of(cert.der()).context("reading back the issued subject")?,
            bundle_id: spec.bundle_id.clone(),
            cert_pem: cert.pem(),
            key_pkcs8_pem: der::pem("PRIVATE KEY", &pkcs8),
            key_traditional_pem: traditional,
            not_after: spec.not_after,
            cert_der: cert.der().clone(),
            key_pkcs8_der: pkcs8,
        })
    }

    pub(crate) fn server_identity(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        (
            vec![self.server_cert.clone()],
            PrivateKeyDer::Pkcs8(self.server_key.clone().into()),
        )
    }

    pub(crate) fn roots(&self) -> anyhow::Result<Arc<rustls::RootCertStore>> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone())?;
        Ok(Arc::new(roots))
    }
}

impl ClientCert {
    /// The certificate and key as rustls takes them, for a test's own client.
    pub fn rustls_identity(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        (
            vec![self.cert_der.clone()],
            PrivateKeyDer::Pkcs8(self.key_pkcs8_der.clone().into()),
        )
    }
}

/// A certificate's subject as `TYPE=value, …` in the order the certificate lists it.
pub(crate) fn subject_of(cert: &[u8]) -> anyhow::Result<String> {
    let mut outer = Reader::new(cert);
    let mut certificate = Reader::new(outer.expect(SEQUENCE)?);
    let mut tbs = Reader::new(certificate.expect(SEQUENCE)?);
    let mut field = tbs.next()?;
    if field.tag == 0xa0 {
        field = tbs.next()?; // the version; the serial follows
    }
    let _serial = field;
    tbs.expect(SEQUENCE)?; // signature algorithm
    tbs.expect(SEQUENCE)?; // issuer
    tbs.expect(SEQUENCE)?; // validity
    let mut rdns = Reader::new(tbs.expect(SEQUENCE)?);
    let mut parts = Vec::new();
    while !rdns.is_empty() {
        let mut set = Reader::new(rdns.expect(SET)?);
        while !set.is_empty() {
            let mut attribute = Reader::new(set.expect(SEQUENCE)?);
            let oid = der::oid_string(attribute.expect(OID)?);
            let value = attribute.next()?;
            let name = match oid.as_str() {
                "0.9.2342.19200300.100.1.1" => "UID".to_owned(),
                "2.5.4.3" => "CN".to_owned(),
                "2.5.4.11" => "OU".to_owned(),
                "2.5.4.10" => "O".to_owned(),
                "2.5.4.6" => "C".to_owned(),
                other => other.to_owned(),
            };
            parts.push(format!("{name}={}", String::from_utf8_lossy(value.value)));
        }
    }
    Ok(parts.join(", "))
}

/// The `UID` in a subject made by [`subject_of`].
pub(crate) fn uid_of(subject: &str) -> Option<&str> {
    subject.split(", ").find_map(|p| p.strip_prefix("UID="))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_certificate_carries_the_bundle_id_as_uid() {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new(dir.path()).unwrap();
        assert!(std::fs::read_to_string(ca.ca_file())
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----"));
        let cert = ca
            .client_cert(&ClientCertSpec::new("com.example.app"))
            .unwrap();
        assert_eq!(
            cert.subject,
            "UID=com.example.app, CN=Apple Push Services: com.example.app, OU=TEAMID1234, \
             O=Bindery tests, C=US"
        );
        assert_eq!(uid_of(&cert.subject), Some("com.example.app"));
        assert!(cert
            .key_traditional_pem
            .starts_with("-----BEGIN EC PRIVATE KEY-----"));
        let rsa = ca
            .client_cert(&ClientCertSpec::new("com.example.rsa").rsa(RsaTestKey::A))
            .unwrap();
        assert!(rsa
            .key_traditional_pem
            .starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    }
}
