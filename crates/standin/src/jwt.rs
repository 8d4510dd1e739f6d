//! Reading and checking the JWTs the stand-ins receive: APNs provider tokens (ES256) and OAuth
//! assertions (RS256). Checking is by ring alone, so a test's own signing cannot share a bug
//! with it through a common JWT library.

use anyhow::{bail, Context};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{UnparsedPublicKey, VerificationAlgorithm};
use serde_json::Value;

/// A JWT's header and claims as received, decoded but not yet trusted.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodedJwt {
    pub header: Value,
    pub claims: Value,
    signing_input: String,
    signature: Vec<u8>,
}

impl DecodedJwt {
    pub fn parse(token: &str) -> anyhow::Result<DecodedJwt> {
        let mut parts = token.split('.');
        let (Some(header), Some(claims), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            bail!("a JWT has three parts");
        };
        let json = |part: &str, what: &str| -> anyhow::Result<Value> {
            let bytes = URL_SAFE_NO_PAD
                .decode(part)
                .with_context(|| format!("the JWT {what} is not base64url"))?;
            let value: Value = serde_json::from_slice(&bytes)
                .with_context(|| format!("the JWT {what} is not JSON"))?;
            if !value.is_object() {
                bail!("the JWT {what} is not a JSON object");
            }
            Ok(value)
        };
        Ok(DecodedJwt {
            header: json(header, "header")?,
            claims: json(claims, "claims")?,
            signing_input: format!("{header}.{claims}"),
            signature: URL_SAFE_NO_PAD
                .decode(signature)
                .context("the JWT signature is not base64url")?,
        })
    }

    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header.get(name)?.as_str()
    }

    pub fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name)?.as_str()
    }

    /// An integer claim (`iat`, `exp`).
    pub fn claim_i64(&self, name: &str) -> Option<i64> {
        self.claims.get(name)?.as_i64()
    }

    /// Whether the signature verifies under `public` with `alg` (e.g.
    /// `ECDSA_P256_SHA256_FIXED` for ES256, which JWS signs as r‖s, not DER).
    pub(crate) fn verifies(&self, alg: &'static dyn VerificationAlgorithm, public: &[u8]) -> bool {
        UnparsedPublicKey::new(alg, public)
            .verify(self.signing_input.as_bytes(), &self.signature)
            .is_ok()
    }
}

/// Now, in Unix seconds.
pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
