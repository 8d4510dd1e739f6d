//! Test credentials: the `.p8` signing key of APNs token auth, the committed RSA keys, and the
//! conversions between the key formats a credential may arrive in (PKCS#8, SEC1, PKCS#1).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

use crate::der::{self, Reader, BIT_STRING, INTEGER, OCTET_STRING, SEQUENCE};

/// DER of the OID prime256v1 (1.2.840.10045.3.1.7), the curve of every EC key here.
const PRIME256V1: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// An APNs token-auth signing key as Apple hands it out: EC P-256 in a PKCS#8 `.p8` file, with
/// the 10-character key id and the team id it belongs to.
#[derive(Clone)]
pub struct ApnsKey {
    pub key_id: String,
    pub team_id: String,
    pkcs8: Vec<u8>,
    public: ApnsPublicKey,
}

/// The public half of an [`ApnsKey`] (an uncompressed P-256 point), which is all the APNs
/// stand-in needs to check a provider token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApnsPublicKey(pub(crate) Vec<u8>);

impl ApnsKey {
    /// A fresh key. Apple's ids are 10 characters; these are not checked here so that a test
    /// can hand Bindery a wrong one on purpose.
    pub fn generate(key_id: &str, team_id: &str) -> anyhow::Result<Self> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| anyhow::anyhow!("ring could not generate a P-256 key"))?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|e| anyhow::anyhow!("ring refused its own P-256 key: {e}"))?;
        Ok(ApnsKey {
            key_id: key_id.to_owned(),
            team_id: team_id.to_owned(),
            public: ApnsPublicKey(pair.public_key().as_ref().to_vec()),
            pkcs8: pkcs8.as_ref().to_vec(),
        })
    }

    /// The `.p8` file's text: PKCS#8 PEM, `-----BEGIN PRIVATE KEY-----`.
    pub fn p8_pem(&self) -> String {
        der::pem("PRIVATE KEY", &self.pkcs8)
    }

    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    pub fn public(&self) -> ApnsPublicKey {
        self.public.clone()
    }

    /// Writes `AuthKey_<key id>.p8` (Apple's file name) into `dir`.
    pub fn write_p8(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        let path = dir.join(format!("AuthKey_{}.p8", self.key_id));
        std::fs::write(&path, self.p8_pem())
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }
}

/// The committed RSA test keys (see `fixtures/README.md`): nothing here can generate RSA keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RsaTestKey {
    A,
    B,
}

impl RsaTestKey {
    /// PKCS#8 PEM, `-----BEGIN PRIVATE KEY-----`.
    pub fn pkcs8_pem(self) -> &'static str {
        match self {
            RsaTestKey::A => include_str!("../fixtures/test-only-rsa-a.pem"),
            RsaTestKey::B => include_str!("../fixtures/test-only-rsa-b.pem"),
        }
    }

    pub fn pkcs8_der(self) -> Vec<u8> {
        der::unpem("PRIVATE KEY", self.pkcs8_pem()).expect("the RSA fixtures are PKCS#8 PEM")
    }

    /// PKCS#1 PEM, `-----BEGIN RSA PRIVATE KEY-----` (what older tools and Twilio users have).
    pub fn pkcs1_pem(self) -> String {
        der::pem(
            "RSA PRIVATE KEY",
            &inner_private_key(&self.pkcs8_der()).expect("fixture"),
        )
    }

    /// The public key as a DER `RSAPublicKey`, the form ring verifies with.
    pub fn public_der(self) -> Vec<u8> {
        RsaKeyPair::from_pkcs8(&self.pkcs8_der())
            .expect("the RSA fixtures load in ring")
            .public()
            .as_ref()
            .to_vec()
    }
}

/// The key inside a PKCS#8 `PrivateKeyInfo`: for RSA that is the PKCS#1 `RSAPrivateKey`, for EC
/// the SEC1 `ECPrivateKey` (without its curve, which PKCS#8 keeps outside).
fn inner_private_key(pkcs8: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut outer = Reader::new(pkcs8);
    let mut info = Reader::new(outer.expect(SEQUENCE)?);
    info.expect(INTEGER)?;
    info.expect(SEQUENCE)?;
    Ok(info.expect(OCTET_STRING)?.to_vec())
}

/// A P-256 PKCS#8 key as SEC1 DER, `-----BEGIN EC PRIVATE KEY-----`, with the curve named
/// inside as openssl writes it, so that a reader that needs the parameters finds them.
pub(crate) fn ec_pkcs8_to_sec1(pkcs8: &[u8]) -> anyhow::Result<Vec<u8>> {
    let inner = inner_private_key(pkcs8)?;
    let mut outer = Reader::new(&inner);
    let mut fields = Reader::new(outer.expect(SEQUENCE)?);
    let version = fields.expect(INTEGER)?;
    let private = fields.expect(OCTET_STRING)?;
    let mut public = None;
    while !fields.is_empty() {
        let tlv = fields.next()?;
        match tlv.tag {
            0xa0 => {} // the curve, rewritten below
            0xa1 => public = Some(tlv.value.to_vec()),
            other => bail!("unexpected field {other:#04x} in an ECPrivateKey"),
        }
    }
    let mut body = der::tlv(INTEGER, version);
    body.extend(der::tlv(OCTET_STRING, private));
    body.extend(der::tlv(0xa0, &PRIME256V1));
    if let Some(public) = public {
        // Keep the [1] wrapper's content (a BIT STRING) as it was.
        let mut check = Reader::new(&public);
        check.expect(BIT_STRING)?;
        body.extend(der::tlv(0xa1, &public));
    }
    Ok(der::tlv(SEQUENCE, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_curve_constant_is_prime256v1() {
        assert!(Reader::new(&PRIME256V1).expect(crate::der::OID).is_ok());
        assert_eq!(der::oid_string(&PRIME256V1[2..]), "1.2.840.10045.3.1.7");
    }

    #[test]
    fn an_apns_key_is_pkcs8_p256_and_its_sec1_form_names_the_curve() {
        let key = ApnsKey::generate("KEYID12345", "TEAMID1234").unwrap();
        assert!(key.p8_pem().starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert_eq!(key.public().0.len(), 65);
        let sec1 = ec_pkcs8_to_sec1(key.pkcs8_der()).unwrap();
        assert!(sec1.windows(PRIME256V1.len()).any(|w| w == PRIME256V1));
    }

    #[test]
    fn the_rsa_fixtures_load_and_convert() {
        for key in [RsaTestKey::A, RsaTestKey::B] {
            assert!(key
                .pkcs1_pem()
                .starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
            assert!(key.public_der().len() > 256);
        }
        assert_ne!(RsaTestKey::A.public_der(), RsaTestKey::B.public_der());
    }
}
