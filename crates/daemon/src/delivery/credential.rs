//! A push credential's secrets read into what a sender pushes with, and checked on the way:
//! the same reading validates a credential when it is created or updated (CONTRACT §6.2) and
//! builds the APNs or FCM client that uses it, so what is accepted is exactly what can push.
//!
//! Keys and certificates are read with rustls's own loaders (ring provider) where TLS will use
//! them, with ring for the JWT signing keys, and with x509-parser for what a certificate says
//! (its expiry and the subject's `UID`, where Apple's push certificates carry the bundle id).

use std::sync::Arc;

use bindery_domain::{BindingType, CredentialAuth, CredentialProfile, Timestamp};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// What a credential's form gave, before it is sealed: the plaintext a sender needs.
#[derive(Debug, Clone, Copy, Default)]
pub struct CredentialInput<'a> {
    pub certificate: Option<&'a str>,
    pub private_key: Option<&'a str>,
    /// FCM's service-account JSON (Twilio's `Secret`; GCM's `ApiKey` takes the same).
    pub service_account: Option<&'a str>,
    pub key_id: Option<&'a str>,
    pub team_id: Option<&'a str>,
    pub topic: Option<&'a str>,
}

/// A credential ready to push with.
#[derive(Clone)]
pub enum ProviderCredential {
    /// APNs token auth: JWTs signed with the team's `.p8` key.
    ApnsToken {
        key: Arc<EcdsaKeyPair>,
        key_id: String,
        team_id: String,
        topic: String,
    },
    /// APNs certificate auth: the certificate presented as the TLS client certificate.
    ApnsCertificate {
        chain: Vec<CertificateDer<'static>>,
        key: Arc<PrivateKeyDer<'static>>,
        topic: String,
        expires: Timestamp,
    },
    /// FCM HTTP v1: OAuth tokens from `token_uri`, asked for with RS256 JWTs.
    ServiceAccount {
        key: Arc<RsaKeyPair>,
        project_id: String,
        client_email: String,
        token_uri: String,
    },
}

impl std::fmt::Debug for ProviderCredential {
    // Never the key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderCredential")
            .field("auth", &self.auth().as_str())
            .field("topic", &self.topic())
            .finish_non_exhaustive()
    }
}

impl ProviderCredential {
    pub fn auth(&self) -> CredentialAuth {
        match self {
            ProviderCredential::ApnsToken { .. } => CredentialAuth::Token,
            ProviderCredential::ApnsCertificate { .. } => CredentialAuth::Certificate,
            ProviderCredential::ServiceAccount { .. } => CredentialAuth::ServiceAccount,
        }
    }

    /// The app the pushes are for: the APNs topic (bundle id), or the Firebase project.
    pub fn topic(&self) -> &str {
        match self {
            ProviderCredential::ApnsToken { topic, .. }
            | ProviderCredential::ApnsCertificate { topic, .. } => topic,
            ProviderCredential::ServiceAccount { project_id, .. } => project_id,
        }
    }

    /// When the credential stops working by itself (a certificate's notAfter).
    pub fn expires(&self) -> Option<Timestamp> {
        match self {
            ProviderCredential::ApnsCertificate { expires, .. } => Some(*expires),
            _ => None,
        }
    }

    /// What is kept of this reading beside the sealed secrets.
    pub fn profile(&self) -> CredentialProfile {
        let (key_id, team_id) = match self {
            ProviderCredential::ApnsToken {
                key_id, team_id, ..
            } => (Some(key_id.clone()), Some(team_id.clone())),
            _ => (None, None),
        };
        CredentialProfile {
            auth: Some(self.auth()),
            key_id,
            team_id,
            topic: Some(self.topic().to_owned()),
            expires: self.expires(),
        }
    }
}

/// Why a credential cannot push, naming the form field to mend. The text never quotes the
/// field's value (it is secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {why}")]
pub struct InvalidCredential {
    pub field: &'static str,
    pub why: String,
}

fn invalid(field: &'static str, why: impl Into<String>) -> InvalidCredential {
    InvalidCredential {
        field,
        why: why.into(),
    }
}

/// Reads and checks a credential of `credential_type` as of `now`.
pub fn read(
    credential_type: BindingType,
    input: &CredentialInput<'_>,
    now: Timestamp,
) -> Result<ProviderCredential, InvalidCredential> {
    match credential_type {
        BindingType::Apn if input.certificate.is_some() => read_apns_certificate(input, now),
        BindingType::Apn => read_apns_token(input),
        BindingType::Fcm => read_service_account(input, "Secret"),
        BindingType::Gcm => read_service_account(input, "ApiKey"),
    }
}

/// The bundle id a certificate names (its leaf's subject UID), if it names one: the topic a
/// certificate-auth credential takes when none is given.
pub fn certificate_uid(pem: &str) -> Option<String> {
    let leaf = CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()?
        .ok()?;
    let (_, leaf) = x509_parser::parse_x509_certificate(&leaf).ok()?;
    subject_uid(&leaf)
}

fn subject_uid(certificate: &x509_parser::certificate::X509Certificate<'_>) -> Option<String> {
    certificate
        .subject()
        .iter_attributes()
        .find(|a| a.attr_type().to_id_string() == UID_OID)
        .and_then(|a| a.as_str().ok())
        .map(str::to_owned)
}

/// Apple's key and team ids are 10 characters, letters and digits.
fn apple_id(field: &'static str, value: Option<&str>) -> Result<String, InvalidCredential> {
    let value = value.ok_or_else(|| invalid(field, "required for token auth"))?;
    if value.len() != 10 || !value.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(invalid(field, "must be 10 letters or digits"));
    }
    Ok(value.to_owned())
}

fn topic(value: Option<&str>) -> Result<Option<String>, InvalidCredential> {
    match value {
        None => Ok(None),
        Some(topic)
            if !topic.is_empty()
                && topic.len() <= 255
                && topic.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Ok(Some(topic.to_owned()))
        }
        Some(_) => Err(invalid(
            "Topic",
            "must be an app's bundle id (visible ASCII, at most 255 characters)",
        )),
    }
}

fn read_apns_token(input: &CredentialInput<'_>) -> Result<ProviderCredential, InvalidCredential> {
    let pem = input
        .private_key
        .ok_or_else(|| invalid("PrivateKey", "required: the .p8 signing key (PEM)"))?;
    let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| {
        invalid(
            "PrivateKey",
            "is not a PKCS#8 PEM key (a .p8 file: -----BEGIN PRIVATE KEY-----)",
        )
    })?;
    let key = EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        der.secret_pkcs8_der(),
        &SystemRandom::new(),
    )
    .map_err(|_| {
        invalid(
            "PrivateKey",
            "is not an EC P-256 key, as APNs token auth needs",
        )
    })?;
    let key_id = apple_id("KeyId", input.key_id)?;
    let team_id = apple_id("TeamId", input.team_id)?;
    let topic = topic(input.topic)?.ok_or_else(|| invalid("Topic", "required for token auth"))?;
    Ok(ProviderCredential::ApnsToken {
        key: Arc::new(key),
        key_id,
        team_id,
        topic,
    })
}

fn read_apns_certificate(
    input: &CredentialInput<'_>,
    now: Timestamp,
) -> Result<ProviderCredential, InvalidCredential> {
    for (field, given) in [("KeyId", input.key_id), ("TeamId", input.team_id)] {
        if given.is_some() {
            return Err(invalid(
                field,
                "is for token auth; a credential with a Certificate uses certificate auth",
            ));
        }
    }
    let pem = input.certificate.unwrap_or_default();
    let chain = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .ok()
        .filter(|chain| !chain.is_empty())
        .ok_or_else(|| invalid("Certificate", "is not a PEM certificate"))?;
    let key_pem = input.private_key.ok_or_else(|| {
        invalid(
            "PrivateKey",
            "required: the certificate's key (PEM: PKCS#1, PKCS#8 or SEC1)",
        )
    })?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|_| {
        invalid(
            "PrivateKey",
            "is not a PEM private key (PKCS#1, PKCS#8 or SEC1)",
        )
    })?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|_| invalid("PrivateKey", "is not a key type TLS can sign with"))?;
    rustls::sign::CertifiedKey::new(chain.clone(), signer)
        .keys_match()
        .map_err(|_| invalid("PrivateKey", "does not match the Certificate"))?;

    let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0])
        .map_err(|_| invalid("Certificate", "cannot be read as X.509"))?;
    let expires = Timestamp::from_unix(leaf.validity().not_after.timestamp());
    if expires.unix() <= now.unix() {
        return Err(invalid("Certificate", format!("expired at {expires}")));
    }
    let uid = subject_uid(&leaf);
    let topic = topic(input.topic)?.or(uid).ok_or_else(|| {
        invalid(
            "Topic",
            "required: the Certificate's subject names no UID (bundle id)",
        )
    })?;
    Ok(ProviderCredential::ApnsCertificate {
        chain: chain.into_iter().map(|c| c.into_owned()).collect(),
        key: Arc::new(key.clone_key()),
        topic,
        expires,
    })
}

/// The subject attribute where Apple's push certificates carry the bundle id.
const UID_OID: &str = "0.9.2342.19200300.100.1.1";

#[derive(serde::Deserialize)]
struct ServiceAccountJson {
    project_id: String,
    client_email: String,
    private_key: String,
    token_uri: String,
}

/// `field` is the form field that holds the JSON: FCM's `Secret`, GCM's `ApiKey`.
fn read_service_account(
    input: &CredentialInput<'_>,
    field: &'static str,
) -> Result<ProviderCredential, InvalidCredential> {
    let json = input
        .service_account
        .ok_or_else(|| invalid(field, "required: the Firebase service-account JSON"))?;
    // Google shut the legacy server-key API down: only a service account pushes.
    let account: ServiceAccountJson = serde_json::from_str(json).map_err(|_| {
        invalid(
            field,
            "is not a Firebase service-account JSON (project_id, client_email, private_key, \
             token_uri); legacy server keys no longer work",
        )
    })?;
    let der = PrivatePkcs8KeyDer::from_pem_slice(account.private_key.as_bytes())
        .map_err(|_| invalid(field, "private_key is not a PKCS#8 PEM key"))?;
    let key = RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
        .map_err(|_| invalid(field, "private_key is not an RSA key"))?;
    let token_uri = url::Url::parse(&account.token_uri)
        .ok()
        .filter(|u| u.scheme() == "https")
        .ok_or_else(|| invalid(field, "token_uri is not an https URL"))?;
    if account.project_id.is_empty() || account.client_email.is_empty() {
        return Err(invalid(
            field,
            "project_id and client_email must not be empty",
        ));
    }
    Ok(ProviderCredential::ServiceAccount {
        key: Arc::new(key),
        project_id: account.project_id,
        client_email: account.client_email,
        token_uri: token_uri.into(),
    })
}
